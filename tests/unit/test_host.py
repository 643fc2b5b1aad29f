"""One host name everywhere: SNAP_HOSTNAME is honoured by snapshots, lock notes and history."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from snapstore.agent.history import complete_event
from snapstore.host import host_name
from snapstore.storage.locking import acquire, release_all


def test_the_override_reaches_lock_notes_and_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNAP_HOSTNAME", raising=False)
    assert host_name() == socket.gethostname()
    monkeypatch.setenv("SNAP_HOSTNAME", "agent-box-7")
    assert host_name() == "agent-box-7"
    assert complete_event({}, command="take", exit_code=0)["host"] == "agent-box-7"
    held = acquire(str(tmp_path), "write", exclusive=True, wait=0, command="snap take")
    try:
        (note,) = (tmp_path / "holders").iterdir()
        assert json.loads(note.read_text())["host"] == "agent-box-7"
    finally:
        release_all([held])
