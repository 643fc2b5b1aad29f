"""The sample workspace generator: deterministic, the documented layout, the requested size,
and a simulated day that changes exactly what it reports."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from snapfixtures.sampledata import (
    AGENTS,
    LOG_NAMES,
    generate_workspace,
    main,
    parse_size,
    simulate_day,
)

SIZE = 5_000_000


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws") / "a"
    generate_workspace(root, SIZE, seed=7)
    return root


def test_same_seed_same_bytes(workspace: Path, tmp_path: Path) -> None:
    generate_workspace(tmp_path / "b", SIZE, seed=7)
    assert _digest(tmp_path / "b") == _digest(workspace)


def test_other_seed_other_bytes(workspace: Path, tmp_path: Path) -> None:
    generate_workspace(tmp_path / "c", SIZE, seed=8)
    other = _digest(tmp_path / "c")
    mine = _digest(workspace)
    shared = set(other) & set(mine)
    assert {"orchestrator_config.json", "agents/Z/SOUL.md"} <= shared
    assert other["agents/Z/SOUL.md"] != mine["agents/Z/SOUL.md"]


def test_layout(workspace: Path) -> None:
    config = json.loads((workspace / "orchestrator_config.json").read_text())
    assert config["stateFile"] == "state/orchestrator_state.json"
    assert config["logsDir"] == "logs"
    assert config["knowledgePackDir"] == "knowledge-packs"
    state = json.loads((workspace / config["stateFile"]).read_text())
    assert state["tasks"]
    packs = list((workspace / config["knowledgePackDir"]).iterdir())
    assert {p.suffix for p in packs} == {".md", ".json"}
    for agent in AGENTS:
        base = workspace / "agents" / agent
        assert (base / "SOUL.md").read_text().startswith(f"# SOUL of {agent}")
        scripts = list(base.glob("skills/*/*.py"))
        assert len({p.parent for p in scripts}) >= 3
        for script in scripts:
            compile(script.read_text(), str(script), "exec")  # real Python
        memory = base / "memory"
        for name in ("agent_registry.json", "kaizen_journal.md", "lessons_learned.md"):
            assert (memory / name).is_file()
        assert list(memory.glob("*.jsonl"))
        weights = json.loads((base / "priority_weights.json").read_text())
        assert all(isinstance(v, float) for v in weights["weights"].values())
        assert weights["rules"]
        assert (base / "weights.bin").stat().st_size > 0


def test_logs(workspace: Path) -> None:
    logs = workspace / "logs"
    for name in LOG_NAMES:
        lines = (logs / f"{name}.log").read_text().splitlines()
        stamped = [line for line in lines if line.startswith(("2025-", '{"ts":'))]
        assert len(stamped) > 100 and len(stamped) > 0.8 * len(lines)
        assert len(set(stamped)) == len(stamped)  # realistic lines, not one line repeated
        assert (logs / f"{name}.log.1").stat().st_size > 0
        with gzip.open(logs / f"{name}.log.2.gz", "rt") as handle:
            assert handle.readline().startswith(("2025-", '{"ts":"2025-'))


def test_size_and_info(workspace: Path, tmp_path: Path) -> None:
    info = generate_workspace(tmp_path / "d", SIZE, seed=7)
    files = [p for p in info.root.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert info.files == len(files)
    assert info.total_bytes == total
    assert abs(total - SIZE) < 0.2 * SIZE
    assert info.largest_file == Path("agents/Z/weights.bin")
    assert info.largest_bytes == max(p.stat().st_size for p in files)


def test_refuses_non_empty_root(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    with pytest.raises(FileExistsError):
        generate_workspace(tmp_path, SIZE)


def test_small_files(tmp_path: Path) -> None:
    plain = generate_workspace(tmp_path / "p", 1_000_000, seed=1)
    more = generate_workspace(tmp_path / "s", 1_000_000, small_files=1000, seed=1)
    assert more.files == plain.files + 1000
    notes = list((tmp_path / "s" / "agents").glob("*/memory/notes/*/note-*.md"))
    assert notes
    assert all(100 <= p.stat().st_size <= 2200 for p in notes)
    dirs = {p.parent for p in (tmp_path / "s").rglob("*") if p.is_file()}
    assert len(dirs) > 10


def test_simulate_day(workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "w"
    generate_workspace(root, SIZE, seed=7)
    before = _digest(root)
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    change = simulate_day(root, 1, seed=7)
    after = _digest(root)

    assert len(change.added) == 3 and len(change.removed) == 2
    assert set(after) - set(before) == set(change.added)
    assert set(before) - set(after) == set(change.removed)
    changed = {p for p in set(before) & set(after) if before[p] != after[p]}
    assert changed == set(change.modified)
    assert any(p.endswith("priority_weights.json") for p in change.modified)
    assert "state/orchestrator_state.json" in change.modified
    assert any("/memory/" in p for p in change.modified)

    # what was appended: the growth of every active log, the rotated one starting from empty
    grown = 0
    for name in (*[f"logs/{n}.log" for n in LOG_NAMES], "logs/system-history.jsonl"):
        new = (root / name).stat().st_size
        grown += new if name == change.rotated else new - sizes[name]
    assert grown == change.bytes_appended
    log_bytes = sum(v for k, v in sizes.items() if k.startswith("logs/"))
    assert 0.005 * log_bytes < change.bytes_appended < 0.03 * log_bytes

    # the rotation: the old active log is now .1, the old .1 is gzip'd as .2.gz
    rotated = change.rotated
    assert after[f"{rotated}.1"] == before[rotated]
    with gzip.open(root / f"{rotated}.2.gz", "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == before[f"{rotated}.1"]


def test_simulate_day_is_deterministic(tmp_path: Path) -> None:
    for name in ("x", "y"):
        generate_workspace(tmp_path / name, 1_000_000, seed=3)
        for day in (1, 2):
            simulate_day(tmp_path / name, day, seed=3)
    assert _digest(tmp_path / "x") == _digest(tmp_path / "y")


def test_parse_size() -> None:
    assert parse_size("5000") == 5000
    assert parse_size("50M") == 50_000_000
    assert parse_size("1G") == 1_000_000_000
    assert parse_size("1GiB") == 1 << 30
    with pytest.raises(ValueError):
        parse_size("lots")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "ws"), "--size", "1M", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["largest_file"] == "agents/Z/weights.bin"
    assert main([str(tmp_path / "ws"), "--day", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["added"]) == 3
    assert main([str(tmp_path / "ws"), "--size", "1M"]) == 2  # not empty
