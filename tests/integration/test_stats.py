"""``snap stats`` against repositories whose figures are known by construction, and ``--what-if``
against a real take at the same settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SnapRunner

KIB = 1024


def _json(result: Any) -> Any:
    assert result.code == 0, result.err
    return result.json()


@pytest.fixture
def two_snapshots(snap: SnapRunner, tmp_path: Path) -> dict[str, Any]:
    """Snapshot 1 holds a (10,000 B) and b (20,000 B); snapshot 2, two days later, a and c
    (30,000 B). Random bytes with compression 0, no encryption (no frames, no padding) and chunks
    far above the file sizes: every file is one chunk whose stored size is its size, so shared and
    unique bytes are exact."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(10_000))
    (src / "b.bin").write_bytes(os.urandom(20_000))
    assert snap("init", "--compression", "0", "--chunk-min", "64", "--chunk-avg", "256",
                "--chunk-max", "1024", "--encryption", "none").code == 0
    first = _json(snap("take", "src", "--tier", "daily", "--json", cwd=tmp_path,
                       env={"SNAP_NOW": "2026-03-01T00:00:00Z"}))
    (src / "b.bin").unlink()
    (src / "c.bin").write_bytes(os.urandom(30_000))
    second = _json(snap("take", "src", "--tier", "daily", "--json", cwd=tmp_path,
                        env={"SNAP_NOW": "2026-03-03T00:00:00Z"}))
    return {"first": first["id"], "second": second["id"]}


def test_shared_and_unique_bytes_are_exact(snap: SnapRunner, two_snapshots: dict[str, Any]) -> None:
    first, second = two_snapshots["first"], two_snapshots["second"]
    one = _json(snap("stats", first, "--json"))["totals"]
    two = _json(snap("stats", second, "--json"))["totals"]
    both = _json(snap("stats", "--json"))["totals"]
    assert (one["logical_bytes"], one["data_bytes"], one["chunks"]) == (30_000, 30_000, 2)
    assert (two["logical_bytes"], two["data_bytes"], two["chunks"]) == (40_000, 40_000, 2)
    assert (both["logical_bytes"], both["raw_bytes"], both["data_bytes"], both["chunks"]) == (70_000, 60_000, 60_000, 3)
    assert one["data_bytes"] + two["data_bytes"] - both["data_bytes"] == 10_000  # a.bin, shared
    assert both["dedup"] == round(70_000 / 60_000, 3) and both["compression"] == 1.0
    assert both["stored_bytes"] == 60_000 + one["tree_bytes"] + two["tree_bytes"]  # no tree is shared

    rows = {r["id"]: r for r in _json(snap("stats", "--by", "snapshot", "--json"))["snapshots"]}
    # what each added: everything for the first; only c.bin (and its trees) for the second
    assert rows[first]["added_raw_bytes"] == 30_000
    assert rows[second]["added_raw_bytes"] == 30_000
    assert rows[second]["added_stored_bytes"] == 30_000 + two["tree_bytes"]
    # what only it holds: b.bin for the first, c.bin for the second, with their own trees
    assert rows[first]["forget_frees_bytes"] == 20_000 + one["tree_bytes"]
    assert rows[second]["forget_frees_bytes"] == 30_000 + two["tree_bytes"]
    assert both["forget_frees_bytes"] == both["stored_bytes"]

    # forgetting the first frees exactly what stats said it would
    assert snap("forget", first).code == 0
    after = _json(snap("stats", "--json"))["totals"]
    assert after["stored_bytes"] == both["stored_bytes"] - rows[first]["forget_frees_bytes"]


def test_tier_growth_and_paths(snap: SnapRunner, two_snapshots: dict[str, Any]) -> None:
    out = _json(snap("stats", "--by", "tier", "--json"))
    (daily,) = out["tiers"]
    second = _json(snap("stats", two_snapshots["second"], "--json"))["totals"]
    assert daily["snapshots"] == 2 and daily["logical_bytes"] == 70_000
    assert daily["added_stored_per_day"] == round((30_000 + second["tree_bytes"]) / 2)  # two days apart
    assert daily["logical_per_day"] == round((40_000 - 30_000) / 2)

    paths = {p["path"]: p for p in _json(snap("stats", "--by", "path", "--depth", "2", "--json"))["paths"]}
    assert set(paths) == {"src/a.bin", "src/b.bin", "src/c.bin"}
    assert (paths["src/a.bin"]["snapshots"], paths["src/a.bin"]["logical_bytes"], paths["src/a.bin"]["raw_bytes"]) \
        == (2, 20_000, 10_000)
    assert paths["src/a.bin"]["dedup"] == 2.0
    (src,) = _json(snap("stats", "--by", "path", "--json"))["paths"]
    assert (src["path"], src["type"], src["logical_bytes"], src["raw_bytes"]) == ("src", "dir", 70_000, 60_000)

    human = snap("stats", "--by", "snapshot")
    assert human.code == 0 and "FREES" in human.out and two_snapshots["first"][:8] in human.out


def test_what_if_agrees_with_a_real_take(snap: SnapRunner, tmp_path: Path) -> None:
    from snapfixtures.sampledata import generate_workspace

    generate_workspace(tmp_path / "ws", 6_000_000, seed=3)
    logs = tmp_path / "ws" / "logs"
    trial = _json(snap("stats", "--what-if", str(logs), "--chunk-avg", "128K,256K", "--compression", "1,3",
                       "--json"))["rows"]
    assert [(r["chunk_avg"], r["compression_level"]) for r in trial] == [
        (128 * KIB, 1), (128 * KIB, 3), (256 * KIB, 1), (256 * KIB, 3)]
    row = trial[3]
    assert row["logical_bytes"] == sum(p.stat().st_size for p in logs.rglob("*") if p.is_file())
    human = snap("stats", "--what-if", str(logs), "--chunk-avg", "256K")
    assert human.code == 0 and "DEDUP" in human.out and "ZSTD MB/S" in human.out

    # a real take at the same settings (min = avg / 4, max = avg * 4); the trial does not model
    # encryption's frames and padding (up to 0.8% more per blob), so the take is unencrypted
    assert snap("init", "--compression", "3", "--chunk-min", "64", "--chunk-avg", "256",
                "--chunk-max", "1024", "--encryption", "none").code == 0
    taken = _json(snap("take", str(logs), "--json"))
    real = _json(snap("stats", "--json"))["totals"]
    assert abs(row["stored_bytes"] - real["data_bytes"]) <= 0.01 * real["data_bytes"]
    assert abs(row["stored_bytes"] - taken["new_bytes"]) <= 0.01 * taken["new_bytes"]
    assert abs(row["dedup"] - real["dedup"]) <= 0.01 * real["dedup"]
    assert row["distinct_chunks"] == real["chunks"]

    # against the snapshot just taken, the same directory adds nothing; a new file adds itself
    (logs / "new.log").write_bytes(os.urandom(50_000))
    against = _json(snap("stats", "--what-if", str(logs), "--against", "latest", "--json"))
    (only,) = against["rows"]
    assert only["against"]["snapshot"]["new_raw_bytes"] == 50_000
    assert only["against"]["repository"]["new_raw_bytes"] == 50_000


def test_bad_input_is_one_line(snap: SnapRunner, tmp_path: Path, two_snapshots: dict[str, Any]) -> None:
    for args, code in [(("--by", "disk"), 2), (("--what-if", str(tmp_path / "missing")), 5),
                       (("--what-if", str(tmp_path), "--chunk-avg", "huge"), 2), (("--compression", "3"), 2),
                       (("--what-if", str(tmp_path), "--compression", "30"), 2), (("ffffffff",), 5),
                       (("--what-if", str(tmp_path), "--against", "latest", "--chunk-avg", "1M"), 2),
                       (("--by", "path", "--path", "no/such/dir"), 5), (("--path", "src"), 2)]:
        result = snap("stats", *args)
        assert result.code == code, (args, result.err)
        assert result.err.startswith("snap: error: ") and result.err.count("\n") == 1, result.err
