"""Taking a tier without the CLI: planning, --if-changed, and every due tier under one lock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from snapstore.agent.config import load_config
from snapstore.agent.tiers import TakeOptions, plan_tier, take_due, take_tier
from snapstore.errors import ConfigError, ExitCode, UsageError
from snapstore.repo.repository import Repository


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "agents" / "Z").mkdir(parents=True)
    (ws / "agents" / "Z" / "SOUL.md").write_text("You are Z.\n")
    (ws / "logs").mkdir()
    (ws / "logs" / "a.log").write_text("tick\n")
    config = {
        "repository": "repo",
        "tiers": {
            "daily": {"sources": ["agents"], "schedule": "0 7 * * *", "tags": ["agent"], "compression_level": 9},
            "logs": {"sources": ["logs"], "schedule": "0 8 * * *"},
            "broken": {"sources": ["missing/*.md"], "schedule": "0 6 * * *"},
        },
    }
    (ws / "backup_schedule.json").write_text(json.dumps(config))
    Repository.init(str(ws / "repo"))
    return ws


def test_plan_uses_the_tier_settings_and_keeps_relative_members(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    cfg = load_config(ws / "backup_schedule.json")
    plan = plan_tier("daily", config=cfg, options=TakeOptions(tags=("mine", "agent")))
    assert plan.from_config
    assert [s.member for s in plan.sources] == [b"agents"]
    assert plan.tags == ("mine", "agent")  # the tier's tags after the caller's, once each
    assert plan.level == 9
    assert plan_tier("daily", config=cfg, options=TakeOptions(compression=1)).level == 1
    given = plan_tier("daily", config=cfg, paths=["logs"], cwd=str(ws))
    assert not given.from_config and given.level is None and given.tags == ()
    assert [s.member for s in given.sources] == [b"logs"]


def test_plan_errors_before_any_repository(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    cfg = load_config(ws / "backup_schedule.json")
    with pytest.raises(UsageError, match="no paths given"):
        plan_tier("daily", config=None)
    with pytest.raises(ConfigError, match="unknown tier 'nope'"):
        plan_tier("nope", config=cfg)
    with pytest.raises(UsageError, match="--verify"):
        TakeOptions(verify="sometimes")


def test_if_changed_takes_once_then_reports_unchanged(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    cfg = load_config(ws / "backup_schedule.json")
    plan = plan_tier("daily", config=cfg, options=TakeOptions(if_changed=True))
    with Repository.open(str(ws / "repo"), mode="write") as repo:
        first = take_tier(repo, plan)
        assert first.snapshot is not None and first.change == "no earlier snapshot of the tier"
        assert first.to_json()["taken"] is True and first.exit_code == ExitCode.OK
        assert first.history_fields()["snapshot"] == first.snapshot.id
        second = take_tier(repo, plan)
        assert second.snapshot is None and second.unchanged_since == first.snapshot
        assert second.to_json() == {"taken": False, "tier": "daily", "unchanged_since": first.snapshot.id}
        (ws / "agents" / "Z" / "SOUL.md").write_text("You are Z, changed.\n")
        third = take_tier(repo, plan)
        assert third.snapshot is not None and "SOUL.md" in third.change
        assert [s.tier for s in repo.snapshots()] == ["daily", "daily"]
        assert repo.snapshots()[-1].tags == ("agent",)


def test_take_due_continues_past_a_failing_tier(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    cfg = load_config(ws / "backup_schedule.json")
    started: list[str] = []
    done: list[str] = []
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    with Repository.open(str(ws / "repo"), mode="write") as repo:
        run = take_due(repo, cfg, now=now, on_start=lambda s: started.append(s.tier),  # type: ignore[func-returns-value]
                       on_done=lambda r: done.append(r.status.tier))
        assert started == done == ["daily", "logs", "broken"]
        assert [r.take is not None for r in run.results] == [True, True, False]
        assert isinstance(run.first_error, ConfigError)
        out = run.to_json()
        assert [t["tier"] for t in out["taken"]] == ["daily", "logs"]
        assert [e["tier"] for e in out["errors"]] == ["broken"]
        assert run.exit_code == ExitCode.OK
        again = take_due(repo, cfg, now=now)  # the slot is taken: only the broken tier is still due
        assert [s.tier for s in again.due] == ["broken"]
