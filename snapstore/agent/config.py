"""The config file (``backup_schedule.json``): finding it, validating it, resolving its paths.

This module owns the schema of the config file (pydantic v2 models, unknown keys rejected),
the duration syntax (``30d``, ``1y6m``), turning validation failures into one-line
:class:`~snapstore.errors.ConfigError` messages (``FILE: FIELD.PATH: PROBLEM``), resolving a
tier's sources to paths on disk, and building the :class:`~snapstore.ops.retention.RetentionPolicy`
the config describes. The format is documented in docs/config.md; keep both in step.

Relative paths in the file (sources, ``from_json`` files, ``repository``, ``history_file``)
are relative to the directory of the config file, never to the working directory; a path
read from a ``from_json`` file is relative to that JSON file's directory.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from snapstore.agent.configpath import DEFAULT_CONFIG_NAME
from snapstore.agent.depgraph import find_cycle
from snapstore.agent.schedule import fires_ever
from snapstore.errors import ConfigError
from snapstore.ops.retention import RetentionPolicy, TierRule

# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------

#: Length of each duration unit. ``m`` is a month (as in restic's ``--keep-within``), not a
#: minute; minutes are ``min``. Years and months are fixed lengths, not calendar arithmetic.
DURATION_UNITS: dict[str, timedelta] = {
    "y": timedelta(days=365),
    "m": timedelta(days=30),
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "min": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_DURATION_PART = re.compile(r"(\d+)(min|y|m|w|d|h|s)")
#: The longest duration accepted: ``now - D`` must stay a date (year 1 is datetime's floor),
#: and a retention or ``--since`` longer than this cannot mean anything else than "forever".
MAX_DURATION = timedelta(days=365 * 1000)
_DURATION_HELP = "a duration like 30d, 12h, 2w or 1y6m (units y=365d, m=30d, w, d, h, min, s)"


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``2w``, ``1y6m``, ``90min``, ``0s`` into a timedelta.

    One or more ``<integer><unit>`` parts, no spaces, each unit at most once. Units:
    ``y`` = 365 days, ``m`` = 30 days, ``w`` = 7 days, ``d``, ``h``, ``min``, ``s``.
    Raises ``ValueError`` for anything else, :class:`DurationTooLong` beyond 1000 years.
    """
    value = text.strip()
    parts = list(_DURATION_PART.finditer(value))
    if not value or "".join(p.group(0) for p in parts) != value:
        raise ValueError(f"not {_DURATION_HELP}: {text!r}")
    units = [p.group(2) for p in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"repeated unit in duration {text!r}")
    second = timedelta(seconds=1)
    total = sum(int(p.group(1)) * (DURATION_UNITS[p.group(2)] // second) for p in parts)  # ints: no overflow
    if total > MAX_DURATION // second:
        raise DurationTooLong(f"duration {text!r} is longer than the 1000y snapstore accepts")
    return timedelta(seconds=total)


class DurationTooLong(ValueError):
    """A well-formed duration beyond :data:`MAX_DURATION` (``99999999999999d``)."""


def _duration_field(positive: bool) -> Callable[[Any], timedelta]:
    def validate(value: Any) -> timedelta:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, str):
            result = parse_duration(value)
        else:
            raise ValueError(f"must be {_DURATION_HELP} (got {_show(value)})")
        if result < timedelta(0) or (positive and result == timedelta(0)):
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"must be a {kind} duration (got {_show(value)})")
        return result

    return validate


Duration = Annotated[timedelta, PlainValidator(_duration_field(positive=False))]
PositiveDuration = Annotated[timedelta, PlainValidator(_duration_field(positive=True))]

# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------

TIER_NAME_PATTERN = r"[a-z0-9][a-z0-9_-]*"
_TIER_NAME = re.compile(TIER_NAME_PATTERN)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _check_tier_name(name: str) -> str:
    if not _TIER_NAME.fullmatch(name):
        raise ValueError(f"invalid tier name {name!r}: must match {TIER_NAME_PATTERN}")
    return name


TierName = Annotated[str, AfterValidator(_check_tier_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FromJsonSource(_Model):
    """A source path read from another JSON file: ``{"from_json": FILE, "key": KEY}``.

    ``FILE`` is relative to the config file's directory; the value at ``KEY`` (a top-level
    key, or a dotted path ``a.b`` into nested objects) is a path relative to ``FILE``'s directory.
    """

    from_json: str = Field(min_length=1)
    key: str = Field(min_length=1)
    optional: bool = False  # a missing path is a warning, not a failed take


class PathSource(_Model):
    """A path with settings: ``{"path": "logs/", "optional": true}`` (a missing optional source
    is a warning; a missing required one makes the snapshot incomplete and the take fail)."""

    path: str = Field(min_length=1)
    optional: bool = False


def _source_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "@path"
    if isinstance(value, FromJsonSource) or (isinstance(value, dict) and "from_json" in value):
        return "@from_json"
    if isinstance(value, dict | PathSource):
        return "@path_object"
    return None


Source = Annotated[
    Annotated[str, Tag("@path"), Field(min_length=1)] | Annotated[FromJsonSource, Tag("@from_json")]
    | Annotated[PathSource, Tag("@path_object")],
    Discriminator(
        _source_kind,
        custom_error_type="source_type",
        custom_error_message=('must be a path string, {"path": PATH, "optional": BOOL} '
                              'or {"from_json": FILE, "key": KEY}'),
    ),
]


@dataclass(frozen=True)
class SourceScan:
    """A tier's sources on disk: the paths found, and a message per missing source."""

    found: list[Path]
    missing_optional: tuple[str, ...] = ()
    missing_required: tuple[str, ...] = ()


class TierConfig(_Model):
    """One tier: what it backs up, when, and how many of its snapshots to keep."""

    sources: list[Source] = Field(min_length=1)
    schedule: str | None = None  # 5-field cron; None for tiers taken on demand (on-change)
    keep: int | None = Field(default=None, ge=0)  # newest N of this tier
    keep_within: PositiveDuration | None = None  # and all of this tier newer than now - D
    include_config: bool = False  # also back up the config file and from_json files
    compression_level: int | None = Field(default=None, ge=1, le=22)  # zstd level
    tags: list[Annotated[str, Field(pattern=r"^[^,\s]+$")]] = Field(default_factory=list)
    require_approval: bool = False  # a take without --approved-by is marked unapproved and alerted
    one_file_system: bool = False  # do not descend into other file systems (take --one-file-system)
    exclude_caches: bool = False  # leave out the contents of CACHEDIR.TAG directories (take --exclude-caches)
    required: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)  # paths the snapshot must hold
    before: str | None = Field(default=None, min_length=1)  # shell command before each take (a failure stops it)
    after: str | None = Field(default=None, min_length=1)  # ... and after it, always
    hook_timeout: PositiveDuration | None = None  # for before and after (default 60s)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return _check_cron(value)

    def rule(self) -> TierRule:
        return TierRule(keep=self.keep, keep_within=self.keep_within)


def _check_cron(value: str | None) -> str | None:
    """A 5-field cron expression or macro, normalised (None stays None); ValueError else."""
    if value is None:
        return None
    text = " ".join(value.split())
    if text in _CRON_MACROS:
        return text
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"not a valid cron expression (minute hour day-of-month month day-of-week): {value!r}"
        )
    if not fires_ever(text):
        raise ValueError(f"cron expression {value!r} never fires (no such date, e.g. 31 February)")
    return text


class GcSettings(_Model):
    """Garbage collection: when to repack, how recent unreferenced data is spared, and when
    ``snap schedule`` runs it (after the takes: it waits for a take holding the lock)."""

    repack_threshold: float = Field(default=0.1, ge=0.0, le=1.0, allow_inf_nan=False)
    #: None (unset): the repository's default, 0 on a local disk and 1h on object storage
    safety_window: Duration | None = None
    schedule: str | None = "30 4 * * *"  # cron; null: snap schedule installs no gc

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return _check_cron(value)


class VerifySettings(_Model):
    """The scheduled check ``snap schedule`` installs (seed 000's monthly verification)."""

    schedule: str | None = "0 5 1 * *"  # cron; null: none installed
    read_data_subset: float = Field(default=10.0, gt=0.0, le=100.0, allow_inf_nan=False)  # percent of the packs

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return _check_cron(value)


class HostTierRule(_Model):
    """A tier's counts for one host's snapshots."""

    keep: int | None = Field(default=None, ge=0)
    keep_within: PositiveDuration | None = None


class HostRetention(_Model):
    """``retention.hosts.<hostname>``: the counts of that host's snapshots, each key unset
    meaning "as for every host"; ``tiers`` overrides the tiers' ``keep`` / ``keep_within``."""

    keep_last: int | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_yearly: int | None = Field(default=None, ge=0)
    keep_within: PositiveDuration | None = None
    tiers: dict[str, HostTierRule] = Field(default_factory=dict)


class RetentionSettings(_Model):
    """Calendar rules across all snapshots (restic's ``forget`` semantics)."""

    keep_last: int = Field(default=0, ge=0)
    keep_hourly: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)
    keep_yearly: int = Field(default=0, ge=0)
    keep_within: PositiveDuration | None = None
    group_by_host: bool = False
    #: per host: its own counts, decided among its snapshots only (unset keys: as above)
    hosts: dict[Annotated[str, Field(min_length=1)], HostRetention] = Field(default_factory=dict)


# -- agents and notifications (recovery: snapstore.agent.recover) -----------------------------

AGENT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class CommandCheck(_Model):
    """A file check that runs a shell command (exit 0 passes), ``{}`` replaced by the path."""

    command: str = Field(min_length=1)


FileCheck = Annotated[
    Annotated[str, Tag("@name"), Field(pattern=r"^(json|jsonl)$")] | Annotated[CommandCheck, Tag("@command")],
    Discriminator(
        lambda v: "@name" if isinstance(v, str) else "@command" if isinstance(v, dict | CommandCheck) else None,
        custom_error_type="check_type",
        custom_error_message='must be "json", "jsonl" or an object {"command": CMD}',
    ),
]


class HealthCheck(_Model):
    """How to tell an agent is alive; every check given must pass."""

    command: str | None = Field(default=None, min_length=1)  # exits 0 when healthy
    url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")  # answers 2xx
    heartbeat: Source | None = None  # a file the agent touches: its mtime moves after the start
    #: a heartbeat older than this is a dead agent (for ``snap recover --all``)
    stale_after: PositiveDuration = timedelta(minutes=1)
    timeout: PositiveDuration = timedelta(seconds=5)  # for one run of the command or one request

    @model_validator(mode="after")
    def _one_at_least(self) -> HealthCheck:
        if self.command is None and self.url is None and self.heartbeat is None:
            raise ValueError("give at least one of command, url, heartbeat")
        return self


class AgentConfig(_Model):
    """One agent: what to restore, how to stop and start it, how to tell it is healthy."""

    #: the agent's folder (or its files, e.g. the orchestrator's state file and config)
    folder: Annotated[list[Source], BeforeValidator(_as_list), Field(min_length=1)]
    tiers: list[TierName] | None = None  # default: every tier whose sources cover part of the folder
    start: str | None = Field(default=None, min_length=1)
    stop: str | None = Field(default=None, min_length=1)
    restart: str | None = Field(default=None, min_length=1)  # instead of stop + start
    health: HealthCheck
    within: PositiveDuration = timedelta(minutes=5)  # the seed: "responds to heartbeat within 5 minutes"
    depends_on: list[str] = Field(default_factory=list)
    checks: list[FileCheck] = Field(default_factory=list)  # on the restored files, before the start
    attempts: int = Field(default=2, ge=1)  # snapshots tried, newest first, before escalating
    #: paths inside the folder that are never rolled back unless the live copy fails the checks
    keep_live: list[Source] = Field(default_factory=list)

    @model_validator(mode="after")
    def _commands(self) -> AgentConfig:
        if self.restart is not None and (self.start is not None or self.stop is not None):
            raise ValueError("give 'restart' or 'start' (with an optional 'stop'), not both")
        if self.restart is None and self.start is None:
            raise ValueError("required: 'start' (or 'restart')")
        return self


class NotificationSettings(_Model):
    """Where failures are sent (Apprise URLs: mailto://, slack://, ntfy://, json://, ...)."""

    urls: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")]] = Field(default_factory=list)
    title: str = "snap"  # the start of every message's title


class Config(_Model):
    """A validated config file. Build it with :func:`load_config`."""

    repository: str | None = Field(default=None, min_length=1)
    history_file: str | None = Field(default=None, min_length=1)
    on_failure: str | None = None  # shell command run when a scheduled take fails
    gc: GcSettings = Field(default_factory=GcSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    tiers: dict[TierName, TierConfig] = Field(default_factory=dict)
    agents: dict[Annotated[str, Field(pattern=f"^{AGENT_NAME_PATTERN}$")], AgentConfig] = Field(default_factory=dict)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    @model_validator(mode="after")
    def _agent_graph(self) -> Config:
        for name, agent in self.agents.items():
            for dep in agent.depends_on:
                if dep not in self.agents:
                    known = ", ".join(self.agents)
                    raise ValueError(f"agents.{name}.depends_on: unknown agent {dep!r} (known: {known})")
            for tier in agent.tiers or ():
                if tier not in self.tiers:
                    known = ", ".join(self.tiers) or "none"
                    raise ValueError(f"agents.{name}.tiers: unknown tier {tier!r} (known: {known})")
        cycle = find_cycle({name: a.depends_on for name, a in self.agents.items()})
        if cycle is not None:
            raise ValueError("agents: depends_on cycle: " + " -> ".join(cycle))
        return self

    _path: Path = PrivateAttr(default=Path(DEFAULT_CONFIG_NAME))

    @property
    def path(self) -> Path:
        """The config file, as it was named (used in error messages)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """The absolute directory relative paths in the file are resolved against."""
        return self._path.absolute().parent

    def _resolve(self, value: str) -> Path:
        return _absolute(value, self.base_dir)

    def repository_path(self) -> Path | None:
        return None if self.repository is None else self._resolve(self.repository)

    def history_path(self) -> Path | None:
        return None if self.history_file is None else self._resolve(self.history_file)

    def tier(self, name: str) -> TierConfig:
        """The tier called ``name``; ``ConfigError`` naming the known tiers if there is none."""
        try:
            return self.tiers[name]
        except KeyError:
            known = ", ".join(self.tiers) or "none"
            raise ConfigError(f"{self.path}: unknown tier {name!r} (known: {known})") from None

    def resolve_sources(self, tier: str) -> list[Path]:
        """The absolute paths tier ``tier`` backs up, in the order listed, without duplicates.

        Globs (``*``, ``?``, ``[``) expand to their sorted matches; a required glob matching
        nothing or a required path that does not exist is a ``ConfigError`` naming the tier,
        source and path (optional ones are left out). With ``include_config`` the config file
        and every ``from_json`` file used are added last.
        """
        scan = self.scan_sources(tier)
        if scan.missing_required:
            raise ConfigError(scan.missing_required[0])
        return scan.found

    def scan_sources(self, tier: str) -> SourceScan:
        """What :meth:`resolve_sources` finds, with the missing sources described rather than
        raised: a take takes what is there and then says what was not."""
        settings = self.tier(tier)
        found: dict[Path, None] = {}  # ordered set
        json_files: list[Path] = []
        optional: list[str] = []
        required: list[str] = []
        for index, source in enumerate(settings.sources):
            where = f"{self.path}: tiers.{tier}.sources[{index}]"
            missing = optional if not isinstance(source, str) and source.optional else required
            if isinstance(source, FromJsonSource):
                json_file, path = self._read_from_json(source, where)
                json_files.append(json_file)
                if not path.exists():
                    missing.append(f"{where}: path does not exist: {path} (from key {source.key!r} of {json_file})")
                    continue
                found[path] = None
                continue
            pattern = source.path if isinstance(source, PathSource) else source
            if _is_glob(pattern):
                matches = _expand_glob(pattern, self.base_dir)
                if not matches:
                    missing.append(f"{where}: pattern {pattern!r} matches nothing (in {self.base_dir})")
                found.update(dict.fromkeys(matches))
            else:
                path = self._resolve(pattern)
                if not path.exists():
                    missing.append(f"{where}: path does not exist: {path}")
                    continue
                found[path] = None
        if settings.include_config:
            found[self.path.absolute()] = None
            found.update(dict.fromkeys(json_files))
        return SourceScan(list(found), tuple(optional), tuple(required))

    def watch_patterns(self, tier: str) -> list[str]:
        """The tier's path sources as absolute patterns (globs kept, ``~`` expanded): what a
        watcher must keep an eye on for paths that do not exist yet (a new agent's
        ``agents/*/priority_weights.json``, an optional ``logs/`` created later)."""
        out = []
        for source in self.tier(tier).sources:
            if isinstance(source, FromJsonSource):
                continue  # its path is read from a file; that file changing is seen as a change of it
            pattern = os.path.expanduser(source.path if isinstance(source, PathSource) else source)
            out.append(os.path.normpath(os.path.join(str(self.base_dir), pattern)))
        return out

    def agent(self, name: str) -> AgentConfig:
        """The agent called ``name``; ``NotFound`` naming the known agents if there is none."""
        from snapstore.errors import NotFound

        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(self.agents) or "none (add an 'agents' section, see docs/config.md)"
            raise NotFound(f"{self.path}: unknown agent {name!r} (known: {known})") from None

    def resolve_path(self, source: Source, where: str) -> Path:
        """One path named in the file (a string, or ``from_json``), absolute; it need not exist."""
        if isinstance(source, FromJsonSource):
            return self._read_from_json(source, where)[1]
        return self._resolve(source.path if isinstance(source, PathSource) else source)

    def _read_from_json(self, source: FromJsonSource, where: str) -> tuple[Path, Path]:
        """(the JSON file, the path its ``key`` names, resolved against the JSON file's dir)."""
        json_file = self._resolve(source.from_json)
        try:
            data = json.loads(json_file.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise ConfigError(f"{where}.from_json: file not found: {json_file}") from None
        except OSError as exc:
            raise ConfigError(f"{where}.from_json: cannot read {json_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}.from_json: {json_file} is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            problem = f"line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"
            raise ConfigError(f"{where}.from_json: {json_file}: {problem}") from None
        value = _lookup(data, source.key)
        if value is _ABSENT:
            raise ConfigError(f"{where}.key: key {source.key!r} not found in {json_file}")
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{where}.key: key {source.key!r} in {json_file} must be a path string (got {_show(value)})"
            )
        return json_file, _absolute(value, json_file.parent)

    def retention_policy(self) -> RetentionPolicy:
        """The retention policy this config describes (tiers without keep/keep_within keep all)."""
        r = self.retention
        base = RetentionPolicy(
            tiers={name: t.rule() for name, t in self.tiers.items() if not t.rule().is_empty},
            keep_last=r.keep_last,
            keep_hourly=r.keep_hourly,
            keep_daily=r.keep_daily,
            keep_weekly=r.keep_weekly,
            keep_monthly=r.keep_monthly,
            keep_yearly=r.keep_yearly,
            keep_within=r.keep_within,
            group_by_host=r.group_by_host,
        )
        return replace(base, hosts={host: self._host_policy(base, host, rule) for host, rule in r.hosts.items()})

    def _host_policy(self, base: RetentionPolicy, host: str, rule: HostRetention) -> RetentionPolicy:
        for tier in rule.tiers:
            if tier not in self.tiers:
                known = ", ".join(self.tiers) or "none"
                raise ConfigError(f"{self.path}: retention.hosts.{host}.tiers: unknown tier {tier!r} (known: {known})")
        tiers = dict(base.tiers)
        for tier, override in rule.tiers.items():
            old = tiers.get(tier, TierRule())
            tiers[tier] = TierRule(keep=old.keep if override.keep is None else override.keep,
                                   keep_within=old.keep_within if override.keep_within is None
                                   else override.keep_within)
        counts = {name: getattr(rule, name) for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                                                         "keep_monthly", "keep_yearly", "keep_within")}
        return replace(base, tiers=tiers, **{k: v for k, v in counts.items() if v is not None})


def _absolute(value: str, base_dir: Path) -> Path:
    """``value`` with ``~`` expanded, made absolute against ``base_dir``, ``..`` folded lexically."""
    return Path(os.path.normpath(base_dir / os.path.expanduser(value)))


_ABSENT = object()


def _lookup(data: Any, key: str) -> Any:
    """``data[key]``, or the dotted path ``a.b.c`` into nested objects; ``_ABSENT`` when absent."""
    if isinstance(data, dict) and key in data:
        return data[key]
    current = data
    for part in key.split("."):
        if not isinstance(current, dict) or part not in current:
            return _ABSENT
        current = current[part]
    return current


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _expand_glob(pattern: str, base_dir: Path) -> list[Path]:
    expanded = os.path.expanduser(pattern)
    if not os.path.isabs(expanded):
        expanded = os.path.join(glob.escape(str(base_dir)), expanded)
    return sorted(Path(os.path.normpath(match)) for match in glob.glob(expanded, recursive=True))


# ---------------------------------------------------------------------------------------------
# Finding and loading
# ---------------------------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def load_config(path: Path) -> Config:
    """Read and validate the config file at ``path``; any problem is a one-line ``ConfigError``."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: duplicate key {exc.key!r} (a key may appear once per object)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level: must be a JSON object (got {_json_type(data)})")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    config._path = Path(path)
    return config


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def format_validation_error(path: Path | str, exc: ValidationError) -> str:
    """One line for a pydantic error: ``FILE: FIELD.PATH: PROBLEM``, plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(part for part in first["loc"] if not _is_marker(part))
    if not loc and first["type"] == "value_error":  # a whole-file check names its own field
        line = f"{path}: {_describe(first, loc)}"
    else:
        line = f"{path}: {_format_loc(loc)}: {_describe(first, loc)}"
    if len(errors) > 1:
        more = len(errors) - 1
        line += f" (and {more} more error{'s' if more > 1 else ''})"
    return line


def _is_marker(part: str | int) -> bool:
    """Parts of a pydantic loc that are not keys: union tags (``@path``) and ``[key]``."""
    return isinstance(part, str) and (part.startswith("@") or part == "[key]")


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "top level"


def _describe(error: Any, loc: tuple[str | int, ...]) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = f" (got {_show(error.get('input'))})"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), loc[:-1])
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind in ("source_type", "check_type"):
        return str(error["msg"]) + got
    for bound, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx and kind.startswith(("greater", "less")):
            return f"must be {op} {ctx[bound]}{got}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{got}"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind] + got
    message = str(error["msg"])
    return message[:1].lower() + message[1:] + got


def _unknown_key(key: str, parent: tuple[str | int, ...]) -> str:
    model: type[BaseModel] | None = None
    if parent == ():
        model = Config
    elif parent == ("gc",):
        model = GcSettings
    elif parent == ("retention",):
        model = RetentionSettings
    elif len(parent) == 2 and parent[0] == "tiers":
        model = TierConfig
    elif len(parent) == 4 and parent[0] == "tiers" and parent[2] == "sources":
        model = FromJsonSource
    elif len(parent) == 2 and parent[0] == "agents":
        model = AgentConfig
    elif len(parent) == 3 and parent[0] == "agents" and parent[2] == "health":
        model = HealthCheck
    elif parent == ("notifications",):
        model = NotificationSettings
    if model is None:
        return "unknown key"
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known: {', '.join(known)})"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "an object"


def _show(value: Any, limit: int = 40) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
