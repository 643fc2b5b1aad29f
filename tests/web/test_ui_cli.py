"""``snap ui`` start-up errors: one line and the documented exit code, before anything listens."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SnapRunner


def test_ui_refuses_bad_input_in_one_line(snap: SnapRunner, tmp_path: Path) -> None:
    missing = snap("ui", "--listen", "127.0.0.1:0")
    assert missing.code == 10 and missing.err.startswith("snap: error: no repository")
    assert snap("init").code == 0
    for listen in ("nonsense", "127.0.0.1:99999", "example.com:8080"):
        result = snap("ui", "--listen", listen)
        assert result.code == 2, (listen, result.err)
        assert result.err.startswith("snap: error: --listen") and result.err.count("\n") == 1
