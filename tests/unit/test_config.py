"""Unit tests for snapstore.agent.config: loading, one-line errors, source resolution, policy."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from snapstore.agent.config import (
    Config,
    FromJsonSource,
    load_config,
    parse_duration,
)
from snapstore.agent.configpath import DEFAULT_CONFIG_NAME, find_config_path
from snapstore.errors import ConfigError, ExitCode
from snapstore.ops.retention import TierRule

EXAMPLE: dict[str, Any] = {
    "repository": "/backups/snapstore",
    "history_file": "system-history.jsonl",
    "on_failure": "mail -s 'snap failed' ops@example.com",
    "gc": {"repack_threshold": 0.1, "safety_window": "0s"},
    "retention": {
        "keep_last": 0,
        "keep_hourly": 0,
        "keep_daily": 0,
        "keep_weekly": 0,
        "keep_monthly": 0,
        "keep_yearly": 0,
        "keep_within": None,
    },
    "tiers": {
        "daily": {
            "sources": ["agents/*/memory", "agents/*/priority_weights.json"],
            "schedule": "0 7 * * *",
            "keep": 30,
        },
        "weekly": {"sources": ["agents"], "schedule": "0 23 * * 0", "keep": 12},
        "monthly": {
            "sources": ["agents", "logs"],
            "schedule": "0 1 1 * *",
            "keep": 12,
            "keep_within": "400d",
        },
        "on-change": {"sources": ["agents/*/priority_weights.json", "rules"], "keep": 10},
    },
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An agent-system tree like the seeds describe: agents/<name>/{memory,SOUL.md,...}."""
    for agent in ("z", "jay", "rick"):
        (tmp_path / "agents" / agent / "memory").mkdir(parents=True)
        (tmp_path / "agents" / agent / "SOUL.md").write_text(f"# {agent}\n")
    (tmp_path / "agents" / "z" / "priority_weights.json").write_text("{}")
    (tmp_path / "agents" / "jay" / "priority_weights.json").write_text("{}")
    (tmp_path / "logs").mkdir()
    (tmp_path / "rules").mkdir()
    return tmp_path


def write(directory: Path, data: Any, name: str = DEFAULT_CONFIG_NAME) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def config_error(directory: Path, data: Any) -> str:
    """Load ``data`` as a config and return the ConfigError message (asserting it is one line)."""
    path = write(directory, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert info.value.exit_code == ExitCode.CONFIG == 6
    return message


def edited(**changes: Any) -> dict[str, Any]:
    """EXAMPLE with changes applied at dotted paths (``tiers.daily.keep=-1``)."""
    data = copy.deepcopy(EXAMPLE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return data


# --- the valid example ---------------------------------------------------------------------


def test_example_loads(workspace: Path) -> None:
    config = load_config(write(workspace, EXAMPLE))
    assert list(config.tiers) == ["daily", "weekly", "monthly", "on-change"]
    assert config.tiers["daily"].schedule == "0 7 * * *"
    assert config.tiers["on-change"].schedule is None
    assert config.tiers["monthly"].keep_within == timedelta(days=400)
    assert config.gc.repack_threshold == 0.1
    assert config.gc.safety_window == timedelta(0)
    assert config.on_failure == "mail -s 'snap failed' ops@example.com"
    assert config.path == workspace / DEFAULT_CONFIG_NAME
    assert config.repository_path() == Path("/backups/snapstore")
    assert config.history_path() == workspace / "system-history.jsonl"


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {}))
    assert config.tiers == {}
    assert config.repository is None and config.repository_path() is None
    assert config.retention.keep_daily == 0
    assert config.gc.repack_threshold == 0.1


def test_optional_tier_keys(workspace: Path) -> None:
    data = edited(
        tiers__daily__include_config=True, tiers__daily__compression_level=19, tiers__daily__tags=["ops", "z"]
    )
    tier = load_config(write(workspace, data)).tiers["daily"]
    assert tier.include_config is True
    assert tier.compression_level == 19
    assert tier.tags == ["ops", "z"]


def test_cron_macros_and_spacing_are_accepted(workspace: Path) -> None:
    data = edited(tiers__daily__schedule="@daily", tiers__weekly__schedule="0  23 * *   sun")
    config = load_config(write(workspace, data))
    assert config.tiers["daily"].schedule == "@daily"
    assert config.tiers["weekly"].schedule == "0 23 * * sun"


def test_retention_policy(workspace: Path) -> None:
    data = edited(retention__keep_daily=7, retention__keep_within="2w", retention__group_by_host=True)
    data["tiers"]["manual"] = {"sources": ["agents"]}  # no keep: keeps everything
    policy = load_config(write(workspace, data)).retention_policy()
    assert policy.tiers == {
        "daily": TierRule(keep=30),
        "weekly": TierRule(keep=12),
        "monthly": TierRule(keep=12, keep_within=timedelta(days=400)),
        "on-change": TierRule(keep=10),
    }
    assert policy.keep_daily == 7
    assert policy.keep_within == timedelta(weeks=2)
    assert policy.group_by_host is True


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("1y6m", timedelta(days=365 + 180)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90min", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("400d", timedelta(days=400)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "30", "30 d", "-1d", "1.5d", "30x", "1d1d", "30D", "forever"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --- one-line errors naming file, field and problem ------------------------------------------


def test_negative_keep(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__keep=-1))
    assert message == f"{workspace / DEFAULT_CONFIG_NAME}: tiers.daily.keep: must be >= 0 (got -1)"


def test_relative_path_is_named_as_given(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    write(workspace, edited(tiers__daily__keep=-1))
    with pytest.raises(ConfigError) as info:
        load_config(Path(DEFAULT_CONFIG_NAME))
    assert str(info.value) == "backup_schedule.json: tiers.daily.keep: must be >= 0 (got -1)"


def test_unknown_tier_key(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__kep=3))
    assert "tiers.daily.kep: unknown key (did you mean 'keep'?)" in message


def test_unknown_top_level_key(workspace: Path) -> None:
    message = config_error(workspace, edited(colour="blue"))
    assert message.endswith(
        ": colour: unknown key (known: repository, history_file, on_failure, gc, verify, retention, tiers, agents, "
        "notifications)"
    )


def test_unknown_retention_key(workspace: Path) -> None:
    message = config_error(workspace, edited(retention__keep_dayly=3))
    assert "retention.keep_dayly: unknown key (did you mean 'keep_daily'?)" in message


def test_malformed_json_names_line_and_column(workspace: Path) -> None:
    text = '{\n  "tiers": {\n    "daily": {"sources": ["a"] "keep": 3}\n  }\n}\n'
    message = config_error(workspace, text)
    assert message.endswith("line 3 column 32: invalid JSON: Expecting ',' delimiter")


def test_trailing_comma(workspace: Path) -> None:
    message = config_error(workspace, '{"repository": "/r",\n}')
    assert "line 2 column 1: invalid JSON" in message


def test_empty_file(workspace: Path) -> None:
    assert "line 1 column 1: invalid JSON" in config_error(workspace, "")


def test_top_level_not_object(workspace: Path) -> None:
    assert config_error(workspace, "[1, 2]").endswith(": top level: must be a JSON object (got a list)")


def test_duplicate_key(workspace: Path) -> None:
    message = config_error(workspace, '{"tiers": {"daily": {"sources": ["a"], "keep": 3, "keep": 5}}}')
    assert "duplicate key 'keep'" in message


def test_unparsable_schedule(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__schedule="0 25 * * *"))
    assert "tiers.daily.schedule: not a valid cron expression" in message
    assert "'0 25 * * *'" in message


@pytest.mark.parametrize("schedule", ["0 7 * *", "0 0 7 * * *", "every day", ""])
def test_schedule_must_be_five_field_cron(workspace: Path, schedule: str) -> None:
    assert "tiers.daily.schedule: not a valid cron expression" in config_error(
        workspace, edited(tiers__daily__schedule=schedule)
    )


def test_bad_keep_within(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__monthly__keep_within="400 days"))
    assert "tiers.monthly.keep_within: not a duration like 30d" in message
    assert "'400 days'" in message


def test_keep_within_must_be_positive(workspace: Path) -> None:
    message = config_error(workspace, edited(retention__keep_within="0d"))
    assert 'retention.keep_within: must be a positive duration (got "0d")' in message


def test_keep_within_wrong_type(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__monthly__keep_within=400))
    assert "tiers.monthly.keep_within: must be a duration like 30d" in message
    assert "(got 400)" in message


def test_keep_must_be_an_integer_not_a_string(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__keep="30"))
    assert message.endswith('tiers.daily.keep: must be an integer (got "30")')


def test_keep_rejects_boolean(workspace: Path) -> None:
    assert "tiers.daily.keep: must be an integer (got true)" in config_error(
        workspace, edited(tiers__daily__keep=True)
    )


def test_bad_tier_name(workspace: Path) -> None:
    data = copy.deepcopy(EXAMPLE)
    data["tiers"]["Daily"] = data["tiers"].pop("daily")
    message = config_error(workspace, data)
    assert "tiers.Daily: invalid tier name 'Daily': must match [a-z0-9][a-z0-9_-]*" in message


def test_tier_name_with_odd_characters_is_quoted(workspace: Path) -> None:
    data = copy.deepcopy(EXAMPLE)
    data["tiers"]["my tier"] = data["tiers"].pop("daily")
    assert 'tiers["my tier"]: invalid tier name' in config_error(workspace, data)


def test_missing_sources(workspace: Path) -> None:
    data = copy.deepcopy(EXAMPLE)
    del data["tiers"]["weekly"]["sources"]
    assert config_error(workspace, data).endswith("tiers.weekly.sources: required key is missing")


def test_empty_sources(workspace: Path) -> None:
    assert "tiers.weekly.sources: must not be empty" in config_error(
        workspace, edited(tiers__weekly__sources=[])
    )


def test_bad_source_type(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__weekly__sources=["agents", 7]))
    assert "tiers.weekly.sources[1]: must be a path string, {\"path\": PATH, \"optional\": BOOL} or" in message


def test_from_json_source_missing_key_field(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__weekly__sources=[{"from_json": "o.json"}]))
    assert message.endswith("tiers.weekly.sources[0].key: required key is missing")


def test_from_json_source_unknown_field(workspace: Path) -> None:
    source = {"from_json": "o.json", "key": "stateFile", "kye": 1}
    message = config_error(workspace, edited(tiers__weekly__sources=[source]))
    assert "tiers.weekly.sources[0].kye: unknown key (did you mean 'key'?)" in message


def test_repack_threshold_range(workspace: Path) -> None:
    message = config_error(workspace, edited(gc__repack_threshold=1.5))
    assert message.endswith("gc.repack_threshold: must be <= 1.0 (got 1.5)")


def test_compression_level_range(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__compression_level=30))
    assert "tiers.daily.compression_level: must be <= 22 (got 30)" in message


def test_tags_must_be_words(workspace: Path) -> None:
    assert "tiers.daily.tags[1]: must match" in config_error(
        workspace, edited(tiers__daily__tags=["a", "b c"])
    )


def test_several_errors_report_the_first_and_a_count(workspace: Path) -> None:
    message = config_error(workspace, edited(tiers__daily__keep=-1, tiers__weekly__keep=-2))
    assert message.endswith("tiers.daily.keep: must be >= 0 (got -1) (and 1 more error)")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b'{"on_failure": "caf\xe9"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "latin1.json")


# --- resolving sources -------------------------------------------------------------------------


def test_resolve_sources_expands_sorted_globs(workspace: Path) -> None:
    config = load_config(write(workspace, EXAMPLE))
    agents = workspace / "agents"
    assert config.resolve_sources("daily") == [
        agents / "jay" / "memory",
        agents / "rick" / "memory",
        agents / "z" / "memory",
        agents / "jay" / "priority_weights.json",
        agents / "z" / "priority_weights.json",
    ]
    assert config.resolve_sources("monthly") == [agents, workspace / "logs"]


def test_resolve_sources_relative_to_config_dir_not_cwd(
    workspace: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_config(write(workspace, EXAMPLE))
    assert config.resolve_sources("weekly") == [workspace / "agents"]


def test_resolve_sources_with_relative_config_path(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    write(workspace, EXAMPLE)
    config = load_config(Path(DEFAULT_CONFIG_NAME))
    assert config.resolve_sources("weekly") == [workspace / "agents"]
    assert all(p.is_absolute() for p in config.resolve_sources("daily"))


def test_resolve_sources_absolute_and_duplicates(workspace: Path) -> None:
    data = edited(tiers__weekly__sources=[str(workspace / "rules"), "rules", "agents"])
    assert load_config(write(workspace, data)).resolve_sources("weekly") == [
        workspace / "rules",
        workspace / "agents",
    ]


def test_source_path_that_does_not_exist(workspace: Path) -> None:
    config = load_config(write(workspace, edited(tiers__weekly__sources=["agents", "knowledge-packs"])))
    with pytest.raises(ConfigError) as info:
        config.resolve_sources("weekly")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{workspace / DEFAULT_CONFIG_NAME}: tiers.weekly.sources[1]: path does not exist: "
        f"{workspace / 'knowledge-packs'}"
    )


def test_glob_matching_nothing(workspace: Path) -> None:
    config = load_config(write(workspace, edited(tiers__daily__sources=["agents/*/skills"])))
    with pytest.raises(
        ConfigError, match=r"tiers\.daily\.sources\[0\]: pattern 'agents/\*/skills' matches nothing"
    ):
        config.resolve_sources("daily")


def test_unknown_tier(workspace: Path) -> None:
    config = load_config(write(workspace, EXAMPLE))
    with pytest.raises(
        ConfigError, match=r"unknown tier 'hourly' \(known: daily, weekly, monthly, on-change\)"
    ):
        config.resolve_sources("hourly")


# --- from_json sources -------------------------------------------------------------------------


@pytest.fixture
def orchestrator(workspace: Path) -> Path:
    """orchestrator_config.json in a subdirectory, naming its state file relative to itself."""
    (workspace / "orch" / "state").mkdir(parents=True)
    (workspace / "orch" / "state" / "tasks.json").write_text("{}")
    (workspace / "orch" / "orchestrator_config.json").write_text(
        json.dumps({"stateFile": "state/tasks.json", "paths": {"logs": "../logs"}, "empty": None})
    )
    return workspace


def from_json_config(directory: Path, key: str, json_file: str = "orch/orchestrator_config.json") -> Config:
    source = {"from_json": json_file, "key": key}
    return load_config(write(directory, edited(tiers__weekly__sources=[source, "rules"])))


def test_from_json_resolves_relative_to_that_json_file(orchestrator: Path) -> None:
    config = from_json_config(orchestrator, "stateFile")
    assert config.tiers["weekly"].sources[0] == FromJsonSource(
        from_json="orch/orchestrator_config.json", key="stateFile"
    )
    assert config.resolve_sources("weekly") == [
        orchestrator / "orch" / "state" / "tasks.json",
        orchestrator / "rules",
    ]


def test_from_json_dotted_key(orchestrator: Path) -> None:
    assert from_json_config(orchestrator, "paths.logs").resolve_sources("weekly")[0] == orchestrator / "logs"


def test_from_json_missing_file(orchestrator: Path) -> None:
    config = from_json_config(orchestrator, "stateFile", json_file="missing.json")
    with pytest.raises(ConfigError) as info:
        config.resolve_sources("weekly")
    assert str(info.value) == (
        f"{orchestrator / DEFAULT_CONFIG_NAME}: tiers.weekly.sources[0].from_json: "
        f"file not found: {orchestrator / 'missing.json'}"
    )


def test_from_json_missing_key(orchestrator: Path) -> None:
    config = from_json_config(orchestrator, "knowledgePackDir")
    with pytest.raises(ConfigError) as info:
        config.resolve_sources("weekly")
    message = str(info.value)
    assert "tiers.weekly.sources[0].key: key 'knowledgePackDir' not found in " in message
    assert message.endswith("orchestrator_config.json")


def test_from_json_key_not_a_string(orchestrator: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'empty' in .* must be a path string \(got null\)"):
        from_json_config(orchestrator, "empty").resolve_sources("weekly")


def test_from_json_file_malformed(orchestrator: Path) -> None:
    (orchestrator / "orch" / "orchestrator_config.json").write_text('{"stateFile": }')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.from_json: .*line 1 column 15: invalid JSON"):
        from_json_config(orchestrator, "stateFile").resolve_sources("weekly")


def test_from_json_path_that_does_not_exist(orchestrator: Path) -> None:
    (orchestrator / "orch" / "state" / "tasks.json").unlink()
    with pytest.raises(ConfigError, match=r"tiers\.weekly\.sources\[0\]: path does not exist: .*tasks\.json"):
        from_json_config(orchestrator, "stateFile").resolve_sources("weekly")


def test_include_config_adds_config_and_json_files(orchestrator: Path) -> None:
    data = edited(
        tiers__weekly__sources=[{"from_json": "orch/orchestrator_config.json", "key": "stateFile"}],
        tiers__weekly__include_config=True,
    )
    config = load_config(write(orchestrator, data))
    assert config.resolve_sources("weekly") == [
        orchestrator / "orch" / "state" / "tasks.json",
        orchestrator / DEFAULT_CONFIG_NAME,
        orchestrator / "orch" / "orchestrator_config.json",
    ]


# --- finding the config file -------------------------------------------------------------------


def test_find_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SNAP_CONFIG", raising=False)
    assert find_config_path(None) is None
    write(tmp_path, {})
    assert find_config_path(None) == Path(DEFAULT_CONFIG_NAME)
    env_file = write(tmp_path, {}, name="env.json")
    monkeypatch.setenv("SNAP_CONFIG", str(env_file))
    assert find_config_path(None) == env_file
    explicit = write(tmp_path, {}, name="explicit.json")
    assert find_config_path(str(explicit)) == explicit


def test_find_config_path_missing_named_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SNAP_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"nope\.json: config file not found \(from --config\)"):
        find_config_path("nope.json")
    monkeypatch.setenv("SNAP_CONFIG", "gone.json")
    with pytest.raises(ConfigError, match=r"gone\.json: config file not found \(from SNAP_CONFIG\)"):
        find_config_path(None)
    write(tmp_path, {})  # the default file does not rescue a broken SNAP_CONFIG
    with pytest.raises(ConfigError):
        find_config_path(None)
    monkeypatch.setenv("SNAP_CONFIG", "")  # empty means unset
    assert find_config_path(None) == Path(DEFAULT_CONFIG_NAME)


def test_optional_source_missing_is_listed_not_raised(workspace: Path) -> None:
    data = edited(tiers__weekly__sources=["agents", {"path": "no-logs", "optional": True}, "gone"])
    path = write(workspace, data)
    scan = load_config(path).scan_sources("weekly")
    assert [p.name for p in scan.found] == ["agents"]
    assert len(scan.missing_optional) == 1 and "no-logs" in scan.missing_optional[0]
    assert len(scan.missing_required) == 1 and "gone" in scan.missing_required[0]
    with pytest.raises(ConfigError, match="gone"):
        load_config(path).resolve_sources("weekly")
