"""The config's ``agents`` and ``notifications`` sections: defaults and one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from snapstore.agent.config import CommandCheck, FromJsonSource, load_config
from snapstore.errors import ConfigError, ExitCode, NotFound

TIERS = {"daily": {"sources": ["agents/*/priority_weights.json"]}, "weekly": {"sources": ["agents"]}}


def agent(**extra: Any) -> dict[str, Any]:
    return {"folder": "agents/Z", "start": "python3 run.py", "health": {"heartbeat": "agents/Z/heartbeat"}, **extra}


def load(tmp_path: Path, agents: dict[str, Any], **top: Any) -> Any:
    path = tmp_path / "backup_schedule.json"
    path.write_text(json.dumps({"tiers": TIERS, "agents": agents, **top}))
    return load_config(path)


def error(tmp_path: Path, agents: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, agents, **top)
    assert info.value.exit_code == ExitCode.CONFIG
    message = str(info.value)
    assert "\n" not in message
    return message.split(": ", 1)[1]


def test_defaults(tmp_path: Path) -> None:
    z = load(tmp_path, {"Z": agent()}).agent("Z")
    assert z.within == timedelta(minutes=5)  # the seed's heartbeat deadline
    assert z.attempts == 2 and z.tiers is None and z.depends_on == [] and z.checks == []
    assert z.folder == ["agents/Z"]
    assert z.health.stale_after == timedelta(minutes=1)


def test_full_agent(tmp_path: Path) -> None:
    em = {"folder": [{"from_json": "orchestrator_config.json", "key": "stateFile"}, "orchestrator_config.json"],
          "restart": "systemctl restart orchestrator", "health": {"url": "http://127.0.0.1:8080/health",
                                                                   "timeout": "2s"},
          "checks": ["json", "jsonl", {"command": "jq empty {}"}], "within": "30s", "attempts": 3,
          "keep_live": [{"from_json": "orchestrator_config.json", "key": "queueLog"}], "tiers": ["weekly"]}
    cfg = load(tmp_path, {"Z": agent(), "em": em, "Jay": agent(depends_on=["Z", "em"])},
               notifications={"urls": ["json://127.0.0.1:9000/hook", "mailto://ops@example.com"]})
    got = cfg.agent("em")
    assert got.folder[0] == FromJsonSource(from_json="orchestrator_config.json", key="stateFile")
    assert got.checks == ["json", "jsonl", CommandCheck(command="jq empty {}")]
    assert got.within == timedelta(seconds=30) and got.attempts == 3
    assert cfg.notifications.urls[0] == "json://127.0.0.1:9000/hook"


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ({"Z": agent(depends_on=["Z"])}, "agents: depends_on cycle: Z -> Z"),
        ({"Z": agent(depends_on=["Jay"]), "Jay": agent(depends_on=["Z"])}, "agents: depends_on cycle: Jay -> Z -> Jay"),
        ({"Z": agent(depends_on=["Q"])}, "agents.Z.depends_on: unknown agent 'Q' (known: Z)"),
        ({"Z": agent(tiers=["hourly"])}, "agents.Z.tiers: unknown tier 'hourly' (known: daily, weekly)"),
        ({"Z": {"folder": "agents/Z", "health": {"url": "http://127.0.0.1:1/"}}},
         "agents.Z: required: 'start' (or 'restart')"),
        ({"Z": agent(restart="x")}, "agents.Z: give 'restart' or 'start' (with an optional 'stop'), not both"),
        ({"Z": agent(health={})}, "agents.Z.health: give at least one of command, url, heartbeat"),
        ({"Z": agent(health={"url": "ftp://host/x"})}, "agents.Z.health.url: must match"),
        ({"Z": agent(checks=["yaml"])}, "agents.Z.checks[0]: must match ^(json|jsonl)$"),
        ({"Z": agent(checks=[3])}, 'agents.Z.checks[0]: must be "json", "jsonl" or an object {"command": CMD}'),
        ({"Z": agent(within="5")}, "agents.Z.within: not a duration like"),
        ({"Z": agent(attempts=0)}, "agents.Z.attempts: must be >= 1"),
        ({"Z": agent(chekcs=[])}, "agents.Z.chekcs: unknown key (did you mean 'checks'?)"),
        ({"Z": agent(health={"hearbeat": "x"})}, "agents.Z.health.hearbeat: unknown key (did you mean 'heartbeat'?)"),
        ({"Z": agent(folder=[])}, "agents.Z.folder: must not be empty"),
        ({"bad name": agent()}, 'agents["bad name"]: must match'),
    ],
)
def test_one_line_errors(tmp_path: Path, agents: dict[str, Any], expected: str) -> None:
    assert error(tmp_path, agents).startswith(expected)


def test_notification_url_must_be_a_url(tmp_path: Path) -> None:
    message = error(tmp_path, {}, notifications={"urls": ["ops@example.com"]})
    assert message.startswith("notifications.urls[0]: must match")


def test_unknown_agent(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"unknown agent 'Q' \(known: Z\)"):
        load(tmp_path, {"Z": agent()}).agent("Q")
