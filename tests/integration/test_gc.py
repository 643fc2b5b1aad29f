"""Retention and garbage collection through the real CLI, with real kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.refcheck import refcount_mismatches
from snapstore.repo.repository import Repository, pack_name
from tests.conftest import run_snap, tree_state

EXAMPLE_POLICY = {
    "tiers": {
        "daily": {"sources": ["agents"], "schedule": "0 7 * * *", "keep": 30},
        "weekly": {"sources": ["agents"], "schedule": "0 23 * * 0", "keep": 12},
        "monthly": {"sources": ["agents"], "schedule": "0 1 1 * *", "keep": 12},
        "on-change": {"sources": ["agents"], "keep": 10},
    }
}


def _write_config(path: Path, repo: Path, body: dict | None = None) -> Path:
    data = {"repository": str(repo), **(body or EXAMPLE_POLICY)}
    path.write_text(json.dumps(data, indent=2))
    return path


def _populate(repo: Path, src: Path, plan: list[tuple[str, datetime]], unique: bool = False) -> list[str]:
    ids = []
    with Repository.open(str(repo), mode="write") as opened:
        for i, (tier, when) in enumerate(plan):
            (src / "counter.txt").write_text(f"{tier} {i}\n")
            if unique:
                (src / "unique.bin").write_bytes(os.urandom(256 * 1024))
            result = take_snapshot(opened, [source_for(src.name, str(src.parent))], tier=tier, when=when)
            ids.append(result.snapshot.id)
    return ids


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "agents" / "Z").mkdir(parents=True)
    (ws / "agents" / "Z" / "SOUL.md").write_text("# Z\n" * 100)
    return ws


def _schedule(now: datetime) -> list[tuple[str, datetime]]:
    plan = [("daily", now - timedelta(days=d, hours=1)) for d in range(40)]
    plan += [("weekly", now - timedelta(weeks=w, hours=2)) for w in range(15)]
    plan += [("monthly", now - timedelta(days=31 * m, hours=3)) for m in range(3)]
    plan += [("on-change", now - timedelta(hours=5 * c, minutes=7)) for c in range(12)]
    return sorted(plan, key=lambda p: p[1])


def test_example_policy_keeps_30_12_3_10(snap, workspace: Path, tmp_path: Path) -> None:
    assert snap("init").code == 0
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    _populate(snap.repo, workspace / "agents", _schedule(now))
    config = _write_config(tmp_path / "backup_schedule.json", snap.repo)
    env = {"SNAP_NOW": "2026-11-22T12:00:00Z"}
    before = sorted(os.walk(snap.repo / "packs"))
    dry = run_snap("--config", str(config), "gc", "--dry-run", "--json", env=env)
    assert dry.code == 0, dry.err
    dry_data = dry.json()
    assert sorted(os.walk(snap.repo / "packs")) == before
    assert len(run_snap("--config", str(config), "list", "--json").json()) == 70
    res = run_snap("--config", str(config), "gc", "--json", env=env)
    assert res.code == 0, res.err
    data = res.json()
    assert len(data["forgotten"]) == len(dry_data["forgotten"]) == 70 - 55
    assert {f["id"] for f in data["forgotten"]} == {f["id"] for f in dry_data["forgotten"]}
    left = run_snap("--config", str(config), "list", "--json").json()
    counts: dict[str, int] = {}
    for s in left:
        counts[s["tier"]] = counts.get(s["tier"], 0) + 1
    assert counts == {"daily": 30, "weekly": 12, "monthly": 3, "on-change": 10}
    newest = {}
    for tier, when in _schedule(now):
        newest[tier] = max(newest.get(tier, when), when)
    for tier, when in newest.items():
        assert any(s["tier"] == tier and s["time"] == when.strftime("%Y-%m-%dT%H:%M:%SZ") for s in left)
    human = run_snap("--config", str(config), "gc", "--dry-run", env=env)
    assert human.code == 0 and "would forget 0 snapshot(s)" in human.out


def test_gc_frees_data_only_forgotten_snapshots_held(snap, workspace: Path, tmp_path: Path) -> None:
    assert snap("init").code == 0
    base = datetime(2026, 1, 1, tzinfo=UTC)
    plan = [("daily", base + timedelta(days=d)) for d in range(10)]
    ids = _populate(snap.repo, workspace / "agents", plan, unique=True)
    with Repository.open(str(snap.repo)) as repo:
        size_before = repo.pack_bytes()
    res = snap("gc", "--keep", "daily=4", "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert len(data["forgotten"]) == 6
    with Repository.open(str(snap.repo)) as repo:
        size_after = repo.pack_bytes()
        assert refcount_mismatches(repo) == []
    freed = size_before - size_after
    assert data["reclaimed_bytes"] == freed
    # six snapshots each held 256 KiB of random data that no other snapshot has
    assert 6 * 256 * 1024 * 0.9 < freed < 6 * 256 * 1024 * 1.3
    for snap_id in ids[6:]:
        out = tmp_path / f"out-{snap_id[:8]}"
        assert snap("restore", snap_id, "--target", str(out)).code == 0
        assert (out / "agents" / "Z" / "SOUL.md").read_text() == "# Z\n" * 100
    # pins survive retention; forget refuses a pinned snapshot
    assert snap("pin", ids[6]).code == 0
    res = snap("gc", "--keep", "daily=1", "--json")
    assert res.code == 0
    assert {s["id"] for s in snap("list", "--json").json()} == {ids[6], ids[9]}
    res = snap("forget", ids[6][:12])
    assert res.code == ExitCode.USAGE and "pinned" in res.err
    assert snap("unpin", ids[6]).code == 0
    res = snap("forget", ids[6][:12], "--prune", "--json")
    assert res.code == 0, res.err
    assert [s["id"] for s in snap("list", "--json").json()] == [ids[9]]


def _packs_on_disk(repo: Path) -> set[str]:
    return {f[: -len(".pack")] for _d, _s, files in os.walk(repo / "packs") for f in files}


@pytest.mark.parametrize("point", ["gc-after-rewrite", "gc-after-commit", "gc-mid-delete"])
def test_gc_killed_loses_nothing(snap, workspace: Path, tmp_path: Path, point: str) -> None:
    assert run_snap("init", repo=snap.repo).code == 0
    # small packs so that there are several to rewrite and delete
    cfg = json.loads((snap.repo / "config.json").read_text())
    cfg["pack_size"] = 300 * 1024
    (snap.repo / "config.json").write_text(json.dumps(cfg))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = _populate(snap.repo, workspace / "agents", [("daily", base + timedelta(days=d)) for d in range(8)],
                    unique=True)
    env = dict(os.environ, SNAP_TEST_CRASH_AT=point)
    proc = subprocess.run([sys.executable, "-m", "snapstore", "--repo", str(snap.repo), "gc", "--keep", "daily=3"],
                          env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    remaining = [s["id"] for s in snap("list", "--json").json()]
    assert set(ids[-3:]) <= set(remaining)
    for snap_id in remaining:
        out = tmp_path / f"r-{point}-{snap_id[:8]}"
        res = snap("restore", snap_id, "--target", str(out))
        assert res.code == 0, res.err
    res = snap("gc", "--keep", "daily=3", "--json")
    assert res.code == 0, res.err
    with Repository.open(str(snap.repo)) as repo:
        assert refcount_mismatches(repo) == []
        with repo.index.read() as txn:
            indexed = {p.hex() for p, _s, _c in repo.index.iter_packs(txn)}
            for _blob, loc in repo.index.iter_chunks(txn):
                assert os.path.exists(repo.path + "/" + pack_name(loc.pack))
    assert _packs_on_disk(snap.repo) == indexed  # no orphan pack left
    assert [s["id"] for s in snap("list", "--json").json()] == ids[-3:]
    for snap_id in ids[-3:]:
        out = tmp_path / f"final-{point}-{snap_id[:8]}"
        assert snap("restore", snap_id, "--target", str(out)).code == 0
        assert tree_state(out / "agents" / "Z", with_mtime=False)[b"SOUL.md"][3] is not None


def test_interrupted_take_is_collected(snap, workspace: Path) -> None:
    assert snap("init").code == 0
    (workspace / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    env = dict(os.environ, SNAP_TEST_CRASH_AT="take-before-commit")
    proc = subprocess.run([sys.executable, "-m", "snapstore", "--repo", str(snap.repo), "take", "."],
                          cwd=workspace, env=env, capture_output=True)
    assert proc.returncode == -9
    assert snap("list", "--json").json() == []
    assert _packs_on_disk(snap.repo)
    res = snap("gc", "--json")
    assert res.code == 0, res.err
    assert res.json()["reclaimed_bytes"] > 3 * 1024 * 1024
    assert _packs_on_disk(snap.repo) == set()


def _one_line(res) -> str:
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ('{"tiers": {"daily": {"sources": ["agents"], "keep": -1}}}', ["tiers.daily.keep", ">= 0"]),
        ('{"tiers": {"daily": {"sources": ["agents"], "keep": 3,}}}', ["line 1"]),
        ('{"tiers": {"daily": {"sources": ["agents"], "kep": 3}}}', ["tiers.daily", "kep"]),
        ('{"tiers": {"daily": {"sources": ["agents"], "schedule": "every day"}}}', ["tiers.daily.schedule"]),
    ],
)
def test_bad_config_is_one_line_with_file_and_field(tmp_path: Path, body: str, needles: list[str]) -> None:
    config = tmp_path / "backup_schedule.json"
    config.write_text(body)
    res = run_snap("--config", str(config), "--repo", str(tmp_path / "repo"), "gc", "--dry-run")
    assert res.code == ExitCode.CONFIG
    line = _one_line(res)
    assert "backup_schedule.json" in line
    for needle in needles:
        assert needle in line


def test_bad_tier_and_missing_source(snap, tmp_path: Path, workspace: Path) -> None:
    assert snap("init").code == 0
    config = _write_config(workspace / "backup_schedule.json", snap.repo,
                           {"tiers": {"daily": {"sources": ["agents", "missing-dir"], "keep": 3}}})
    res = run_snap("--config", str(config), "take", "--tier", "weekly")
    assert res.code == ExitCode.CONFIG and "weekly" in _one_line(res) and "daily" in res.err
    res = run_snap("--config", str(config), "take", "--tier", "daily")
    # the rest is taken and committed, marked incomplete; the take fails naming what is missing
    assert res.code == ExitCode.PARTIAL and "missing-dir" in res.err.splitlines()[-1]
    res = run_snap("--config", str(config), "gc", "--keep", "weekly=2")
    assert res.code == ExitCode.CONFIG and "weekly" in _one_line(res)
    res = snap("gc", "--keep", "daily=-2")
    assert res.code == ExitCode.USAGE and ">= 0" in _one_line(res)
    assert [s["incomplete"] for s in snap("list", "--json").json()] == [True]
    # the tier's sources come from the config, relative to its directory, from any cwd
    config.write_text(json.dumps({"repository": str(snap.repo),
                                  "tiers": {"weekly": {"sources": ["agents"], "keep": 2}}}))
    res = run_snap("--config", str(config), "take", "--tier", "weekly", "--json", cwd=tmp_path)
    assert res.code == 0, res.err
    names = {e["path"] for e in run_snap("--config", str(config), "ls", "latest:weekly", "-R", "--json").json()}
    assert "agents/Z/SOUL.md" in names


def test_gc_prunes_files_cache_entries_it_made_useless(snap, workspace: Path) -> None:
    assert snap("init").code == 0
    doomed = workspace / "agents" / "scratch.bin"
    doomed.write_bytes(os.urandom(300_000))
    first = snap("take", "agents", "--json", cwd=workspace).json()["id"]
    doomed.unlink()
    assert snap("take", "agents", "--json", cwd=workspace).code == 0
    with Repository.open(str(snap.repo)) as repo, repo.index.read() as txn:
        assert repo.index.get_file(txn, os.fsencode(doomed)) is not None
    assert snap("forget", first).code == 0
    res = snap("gc", "--json")
    assert res.code == 0 and res.json()["files_cache_pruned"] == 1
    with Repository.open(str(snap.repo)) as repo, repo.index.read() as txn:
        assert repo.index.get_file(txn, os.fsencode(doomed)) is None
        assert repo.index.get_file(txn, os.fsencode(workspace / "agents" / "Z" / "SOUL.md")) is not None
