"""The gc use case without the CLI: the policy from config and overrides, settings, a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from snapstore.agent.cleanup import GcSettings, forget_named, gc_settings, retention_policy, run_gc
from snapstore.agent.config import load_config
from snapstore.errors import ConfigError, UsageError
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo.repository import Repository


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "backup_schedule.json"
    path.write_text(json.dumps({
        "gc": {"repack_threshold": 0.3, "safety_window": "2h"},
        "tiers": {"daily": {"sources": ["."], "keep": 3}, "weekly": {"sources": ["."]}},
    }))
    return path


def test_overrides_replace_a_tier_count_and_keep_the_rest(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path))
    assert retention_policy(None) is None
    base = retention_policy(cfg)
    assert base is not None and base.tiers["daily"].keep == 3 and "weekly" not in base.tiers
    policy = retention_policy(cfg, {"weekly": 1})
    assert policy is not None and policy.tiers["daily"].keep == 3 and policy.tiers["weekly"].keep == 1
    bare = retention_policy(None, {"anything": 2})
    assert bare is not None and bare.tiers["anything"].keep == 2
    with pytest.raises(ConfigError, match="unknown tier 'monthly'"):
        retention_policy(cfg, {"monthly": 1})
    with pytest.raises(UsageError):
        retention_policy(cfg, {"daily": -1})
    assert gc_settings(cfg) == GcSettings(0.3, 7200.0)
    assert gc_settings(None) == GcSettings()


def test_run_gc_forgets_what_the_policy_says(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Repository.init(str(tmp_path / "repo"))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with Repository.open(str(tmp_path / "repo"), mode="write") as repo:
        for day in range(4):
            (src / "f").write_text(f"day {day}\n")
            take_snapshot(repo, [source_for(".", str(src))], tier="daily", when=start + timedelta(days=day))
    with Repository.open(str(tmp_path / "repo"), mode="exclusive") as repo:
        dry = run_gc(repo, retention_policy(None, {"daily": 2}), dry_run=True, now=start + timedelta(days=5))
        assert len(dry.result.forgotten) == 2 and dry.remaining == 2 and len(repo.snapshots()) == 4
        run = run_gc(repo, retention_policy(None, {"daily": 2}), now=start + timedelta(days=5))
        assert run.remaining == 2 and [d.snapshot.time.day for d in run.kept] == [4, 3]
        assert run.to_json()["remaining_snapshots"] == 2
        newest = repo.snapshots()[-1]
        repo.set_pin(newest, True)
        with pytest.raises(UsageError, match="pinned"):
            forget_named(repo, [newest.id[:8]])
        gone = forget_named(repo, [repo.snapshots()[0].id], prune=True)
        assert gone.gc is not None and len(repo.snapshots()) == 1
