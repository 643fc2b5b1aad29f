"""Agent recovery, the use case behind ``snap recover``: restore, restart, check, escalate.

Planned first, then executed (so ``--dry-run`` prints exactly the plan a real run follows):

:func:`plan_recovery` resolves the agents (config ``agents``), decides who is recovered
(``--all``: those whose health check fails, unless ``--force``), their start levels
(:mod:`snapstore.agent.depgraph`), and for each agent its **restore points**, newest first.
A restore point is a set of layers: for each of the agent's paths the newest snapshot that
holds all of it (a tier whose source is ``agents`` holds ``agents/Z``), and over it, for each
part of it that a newer snapshot of a narrower tier holds (``agents/*/memory``), that newer
copy. So "the most recent backup (daily or weekly)" is the newest copy of every part.
Everything that can be wrong with the input (unknown agent, a command that does not exist, no
snapshot holding the folder) is found here, before anything is touched.

:func:`run_recovery` executes a plan:

1. **stage**: every agent's newest point is restored into a staging directory (in parallel;
   the live folder is not touched), and the file checks run there; a point that fails them is
   skipped for the next older one;
2. **stop** the agents, dependents first (their ``stop`` command; processes this run started);
3. **swap**: each live path is moved aside to ``.snap-aside/<agent>-<time>/`` in the config's
   directory (never deleted; directories named ``.snap-aside`` are never backed up or watched)
   and the staged tree renamed into its place, so the live folder ends equal to the snapshot
   (files added since the backup are only in the aside copy). ``keep_live`` paths (the
   orchestrator's message-queue log) are moved from the live folder into the new tree instead,
   unless the live copy fails the checks;
4. **start** level by level: an agent starts only when everything it depends on is healthy;
   its health check must pass within its deadline (``within``). An agent that does not come
   back is stopped, its next older point staged, checked and swapped in (the failed tree goes
   aside too) and started again, up to ``attempts`` points; then it is **escalated** (the
   alert carries the snapshots tried, the failing step, the last lines of the start command's
   and health check's output, and where the pre-recovery folder was kept), and its dependents
   are not started.

Every step is an event handed to ``emit`` as it happens (``step``: plan, checks, stopped,
restored, started, healthy, unhealthy, escalated, blocked), with the agent, snapshot ids,
paths and durations; ``time`` is the real wall-clock time with microseconds, so the order of
steps can be read from the history log.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snapstore import clock
from snapstore.agent.depgraph import dependents, start_levels, stop_order
from snapstore.agent.health import HealthCheck, Probe, tail
from snapstore.errors import ConfigError, PathNotFound, SnapError, SnapshotNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.host import host_name
from snapstore.ops.backup import ASIDE_DIR_NAME, source_for
from snapstore.ops.restore import restore_snapshot
from snapstore.view.selectors import contains, resolve_snapshot
from snapstore.view.vfs import SnapshotView, show_path

if TYPE_CHECKING:
    from snapstore.agent.config import AgentConfig, Config

Emit = Callable[[dict[str, Any]], None]
Alert = Callable[[dict[str, Any]], None]
_SHELL_WORDS = {"cd", "exec", ".", ":", "true", "false", "test", "[", "export", "set", "if", "for", "while",
                "case", "{", "(", "!", "exit", "eval", "command", "ulimit", "umask", "wait", "kill", "trap"}


def event_time() -> str:
    """Wall-clock UTC with microseconds (recovery happens in real time, whatever ``SNAP_NOW`` says)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- agents, resolved -------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentSpec:
    """One agent from the config with every path resolved and its commands checked."""

    name: str
    paths: tuple[Path, ...]  # absolute, live
    members: tuple[bytes, ...]  # the same paths inside a snapshot
    keep_live: tuple[Path, ...]
    tiers: tuple[str, ...] | None
    start: str | None
    stop: str | None
    restart: str | None
    health: HealthCheck
    within_s: float
    depends_on: tuple[str, ...]
    checks: tuple[str, ...]  # "json", "jsonl", or "command:CMD"
    attempts: int
    base_dir: Path

    def rel(self, path: Path) -> str:
        """A path for messages: relative to the config's directory when inside it."""
        try:
            return str(path.relative_to(self.base_dir))
        except ValueError:
            return str(path)

    @property
    def shown_paths(self) -> list[str]:
        return [self.rel(p) for p in self.paths]


def _missing_command(command: str, cwd: Path) -> str | None:
    """The first word of ``command`` when it names no program (PATH, or a path from ``cwd``)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"cannot parse ({exc})"
    words = [w for w in words if not ("=" in w and w.split("=", 1)[0].isidentifier())]
    if not words or words[0] in _SHELL_WORDS:
        return None
    word = words[0]
    if "/" in word:
        path = Path(os.path.expanduser(word))
        path = path if path.is_absolute() else cwd / path
        return None if os.access(path, os.X_OK) and path.is_file() else word
    return None if shutil.which(word) else word


def agent_spec(config: Config, name: str) -> AgentSpec:
    """Resolve agent ``name``: ``NotFound`` when unknown, ``ConfigError`` for a bad path or command."""
    agent: AgentConfig = config.agent(name)
    base = config.base_dir
    where = f"{config.path}: agents.{name}"
    paths = tuple(config.resolve_path(src, f"{where}.folder[{i}]") for i, src in enumerate(agent.folder))
    for i, path in enumerate(paths):
        if any(path != other and (path in other.parents or other in path.parents) for other in paths):
            raise ConfigError(f"{where}.folder[{i}]: {path} is inside another of the agent's paths")
        if path == base or path in base.parents:
            raise ConfigError(f"{where}.folder[{i}]: {path} contains the config file's directory; "
                              "an agent's folder must be inside it")
    keep = tuple(config.resolve_path(src, f"{where}.keep_live[{i}]") for i, src in enumerate(agent.keep_live))
    for i, path in enumerate(keep):
        if not any(path == p or p in path.parents for p in paths):
            raise ConfigError(f"{where}.keep_live[{i}]: {path} is not inside the agent's folder")
    for key in ("start", "stop", "restart"):
        command = getattr(agent, key)
        missing = _missing_command(command, base) if command else None
        if missing:
            raise ConfigError(f"{where}.{key}: command not found: {missing} (in {command!r})")
    health = agent.health
    if health.command:
        missing = _missing_command(health.command, base)
        if missing:
            raise ConfigError(f"{where}.health.command: command not found: {missing} (in {health.command!r})")
    heartbeat = None if health.heartbeat is None else config.resolve_path(health.heartbeat, f"{where}.health")
    checks = tuple(c if isinstance(c, str) else f"command:{c.command}" for c in agent.checks)
    for check in checks:
        if check.startswith("command:"):
            missing = _missing_command(check[len("command:"):], base)
            if missing:
                raise ConfigError(f"{where}.checks: command not found: {missing}")
    base_str = str(base)
    members = tuple(source_for(os.path.relpath(p, base_str), base_str).member for p in paths)
    return AgentSpec(
        name=name, paths=paths, members=members, keep_live=keep,
        tiers=tuple(agent.tiers) if agent.tiers is not None else None,
        start=agent.start, stop=agent.stop, restart=agent.restart,
        health=HealthCheck(command=health.command, url=health.url, heartbeat=heartbeat,
                           stale_after_s=health.stale_after.total_seconds(),
                           timeout_s=health.timeout.total_seconds(), cwd=base),
        within_s=agent.within.total_seconds(), depends_on=tuple(agent.depends_on), checks=checks,
        attempts=agent.attempts, base_dir=base,
    )


# -- restore points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """What one snapshot contributes to a restore point: these paths, whole."""

    snapshot: Snapshot
    members: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot.id, "tier": self.snapshot.tier, "time": clock.format_time(self.snapshot.time),
                "paths": [show_path(m) for m in self.members]}


@dataclass(frozen=True)
class RestorePoint:
    """Layers applied oldest first; each replaces its paths whole (the newest copy of each part wins)."""

    layers: tuple[Layer, ...]

    @property
    def newest(self) -> Snapshot:
        return self.layers[-1].snapshot

    @property
    def ids(self) -> list[str]:
        return [layer.snapshot.id for layer in self.layers]

    def describe(self) -> str:
        parts = []
        for i, layer in enumerate(self.layers):
            s = layer.snapshot
            text = f"{s.short_id} ({s.tier}, {s.time:%Y-%m-%d %H:%M:%S})"
            if i:
                text += ": " + ", ".join(show_path(m) for m in layer.members)
            parts.append(text)
        return " + ".join(parts)

    def to_json(self) -> list[dict[str, Any]]:
        return [layer.to_json() for layer in self.layers]


def _under(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def restore_points(snapshots: Iterable[Snapshot], paths: Sequence[Path], members: Sequence[bytes], base_dir: Path,
                   holds: Callable[[Snapshot, bytes], bool]) -> list[RestorePoint]:
    """Every distinct restore point for ``paths`` (live, absolute; ``members`` the same inside a
    snapshot), newest first. For each path the base is the newest snapshot (at or before the
    point) whose recorded sources contain the path and whose tree ``holds`` it; newer
    snapshots whose sources lie inside the path are laid over it, the newest per part."""
    base_str = str(base_dir)

    def member(path: Path) -> bytes:
        return source_for(os.path.relpath(path, base_str), base_str).member

    def key(s: Snapshot) -> tuple[datetime, str]:
        return (s.time, s.id)

    sources = {s.id: [Path(p) for p in s.paths] for s in snapshots}
    relevant = sorted((s for s in snapshots if any(_under(p, q) or _under(q, p) for p in paths for q in sources[s.id])),
                      key=key, reverse=True)
    points: list[RestorePoint] = []
    seen: set[tuple[tuple[str, tuple[bytes, ...]], ...]] = set()
    for i in range(len(relevant)):
        older = relevant[i:]  # the point as of relevant[i]: nothing newer counts
        layers: dict[str, tuple[Snapshot, set[bytes]]] = {}
        complete = True
        for path, whole in zip(paths, members, strict=True):
            base = next((s for s in older if any(_under(path, q) for q in sources[s.id]) and holds(s, whole)), None)
            if base is None:
                complete = False
                break
            layers.setdefault(base.id, (base, set()))[1].add(whole)
            newest_part: dict[bytes, Snapshot] = {}
            for s in older:
                if key(s) <= key(base):
                    break
                for q in sources[s.id]:
                    if q != path and _under(q, path):
                        newest_part.setdefault(member(q), s)
            for part, s in newest_part.items():
                layers.setdefault(s.id, (s, set()))[1].add(part)
        if not complete:
            continue
        ordered = sorted(layers.values(), key=lambda item: key(item[0]))
        point = RestorePoint(tuple(Layer(s, tuple(sorted(ms))) for s, ms in ordered))
        signature = tuple((layer.snapshot.id, layer.members) for layer in point.layers)
        if signature not in seen:
            seen.add(signature)
            points.append(point)
    return points


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentPlan:
    spec: AgentSpec
    points: tuple[RestorePoint, ...]  # newest first; the first ``attempts`` that pass the checks are tried
    why: str  # why this agent is recovered
    source: str  # how its snapshots were chosen

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.spec.name, "why": self.why, "paths": self.spec.shown_paths,
                "snapshots": self.source, "restore_point": self.points[0].to_json(),
                "older_points": len(self.points) - 1, "attempts": self.spec.attempts,
                "depends_on": list(self.spec.depends_on), "within_s": self.spec.within_s,
                "health": self.spec.health.describe()}


@dataclass(frozen=True)
class RecoveryPlan:
    agents: dict[str, AgentPlan]
    levels: list[list[str]]
    left_alone: list[tuple[str, str]]  # (agent, why): healthy agents --all does not touch
    outside: dict[str, list[str]]  # agent -> dependencies not being recovered
    host: str | None
    aside_root: Path

    @property
    def names(self) -> list[str]:
        return [name for level in self.levels for name in level]

    def lines(self) -> list[str]:
        """The plan in words (printed first by a real run and by ``--dry-run``, identically)."""
        out = []
        if not self.agents:
            out.append("nothing to recover: every agent is healthy (--force recovers healthy agents too)")
        for name, why in self.left_alone:
            out.append(f"{name}: healthy, left alone ({why})")
        for name in self.names:
            plan = self.agents[name]
            out.append(f"{name}: {plan.why}")
            out.append(f"  restore {', '.join(plan.spec.shown_paths)} from {plan.points[0].describe()}")
            out.append(f"  chosen as: {plan.source}; {len(plan.points) - 1} older point(s), "
                       f"at most {plan.spec.attempts} tried")
            out.append(f"  healthy when: {plan.spec.health.describe()}, within {plan.spec.within_s:g} s")
            if self.outside.get(name):
                out.append(f"  depends on {', '.join(self.outside[name])} (not recovered: must be healthy)")
        if self.agents:
            stops = [", ".join(level) for level in stop_order(self.levels)]
            out.append("stop (dependents first): " + " | ".join(stops))
            for i, level in enumerate(self.levels, 1):
                together = " (in parallel)" if len(level) > 1 else ""
                out.append(f"start level {i}: {', '.join(level)}{together}")
            out.append(f"current folders will be kept in {self.aside_root}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"agents": [self.agents[n].to_json() for n in self.names], "levels": self.levels,
                "stop_order": stop_order(self.levels),
                "left_alone": [{"agent": n, "why": w} for n, w in self.left_alone],
                "outside_dependencies": self.outside, "host": self.host, "aside_dir": str(self.aside_root)}


def this_host() -> str:
    """The host name snapshots record (``SNAP_HOSTNAME`` overrides, as for a take)."""
    return host_name()


def plan_recovery(config: Config, view: SnapshotView, names: Sequence[str], *, all_agents: bool = False,
                  force: bool = False, from_spec: str | None = None, before: datetime | None = None,
                  host: str | None = None) -> RecoveryPlan:
    """Decide everything a recovery will do; raises before anything is touched."""
    chosen_names = list(dict.fromkeys(config.agents if all_agents else names))
    specs = [agent_spec(config, name) for name in chosen_names]  # unknown agent, bad commands: raise here
    left_alone: list[tuple[str, str]] = []
    whys: dict[str, str] = {}
    for spec in specs:
        if not all_agents:
            whys[spec.name] = "named on the command line"
            continue
        probe = spec.health.probe()
        if probe.healthy and not force:
            left_alone.append((spec.name, probe.detail))
        else:
            whys[spec.name] = f"healthy, recovered anyway (--force): {probe.detail}" if probe.healthy \
                else f"dead: {probe.detail}"
    specs = [s for s in specs if s.name in whys]
    graph = {name: list(a.depends_on) for name, a in config.agents.items()}
    levels = start_levels(graph, [s.name for s in specs])
    snaps = [s for s in view.repo.snapshots() if (host is None or s.hostname == host)
             and (before is None or s.time < before)]
    cache: dict[tuple[str, bytes], bool] = {}

    def holds(snap: Snapshot, member: bytes) -> bool:
        k = (snap.id, member)
        if k not in cache:
            cache[k] = contains(view, snap, member)
        return cache[k]

    plans: dict[str, AgentPlan] = {}
    chosen = None if from_spec is None or not specs else resolve_snapshot(view.repo, from_spec, host=host,
                                                                        before=before, view=view)
    for spec in specs:
        tiers = spec.tiers
        if chosen is not None:
            snap = chosen
            for path, member in zip(spec.paths, spec.members, strict=True):
                if not holds(snap, member):
                    raise PathNotFound(f"snapshot {snap.short_id} does not hold {spec.rel(path)} (agent {spec.name})")
                if not any(_under(path, Path(q)) for q in snap.paths):
                    # restoring it alone would drop what its tier does not back up (SOUL.md, skills)
                    raise PathNotFound(f"snapshot {snap.short_id} ({snap.tier}) holds only parts of "
                                       f"{spec.rel(path)} (agent {spec.name}); nothing was changed")
            points = [RestorePoint((Layer(snap, spec.members),))]
            source = f"--from {from_spec}"
        else:
            candidates = [s for s in snaps if tiers is None or s.tier in tiers]
            points = restore_points(candidates, spec.paths, spec.members, spec.base_dir, holds)
            which = f"tier {' or '.join(tiers)}" if tiers else "any tier"
            where = (f" from host {host}" if host else "") + (f" before {clock.format_time(before)}" if before else "")
            if not points:
                raise SnapshotNotFound(f"agent {spec.name}: no snapshot of {which}{where} holds "
                                       f"{', '.join(spec.shown_paths)}; nothing was changed")
            source = f"the newest copy of each part in {which}{where}"
        plans[spec.name] = AgentPlan(spec, tuple(points), whys[spec.name], source)
    outside = {name: [d for d in graph[name] if d not in plans] for name in plans}
    return RecoveryPlan(plans, levels, left_alone, {k: v for k, v in outside.items() if v}, host,
                        config.base_dir / ASIDE_DIR_NAME.decode())


# -- file checks --------------------------------------------------------------------------------


def _files(root: Path, suffix: str) -> Iterable[Path]:
    if root.is_file():
        if root.name.endswith(suffix):
            yield root
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(suffix):
                yield Path(dirpath) / name


def run_checks(checks: Sequence[str], roots: Sequence[Path], cwd: Path, timeout_s: float = 60.0) -> str | None:
    """None when every check passes on every file under ``roots``, else the first problem."""
    for check in checks:
        for root in roots:
            if not root.exists():
                continue
            if check == "json":
                for path in _files(root, ".json"):
                    try:
                        json.loads(path.read_bytes().decode("utf-8-sig"))
                    except (ValueError, UnicodeDecodeError) as exc:
                        return f"json: {path.name}: {str(exc).splitlines()[0]}"
            elif check == "jsonl":
                for path in _files(root, ".jsonl"):
                    lines = path.read_bytes().split(b"\n")
                    for number, line in enumerate(lines[:-1], 1):  # the last is unfinished (or empty)
                        if not line.strip():
                            continue
                        try:
                            json.loads(line)
                        except ValueError:
                            return f"jsonl: {path.name} line {number} is not JSON"
            else:
                command = check[len("command:"):]
                argv = command.replace("{}", shlex.quote(str(root))) if "{}" in command \
                    else f"{command} {shlex.quote(str(root))}"
                try:
                    proc = subprocess.run(["/bin/sh", "-c", argv], cwd=cwd, capture_output=True, timeout=timeout_s,
                                          stdin=subprocess.DEVNULL, check=False)
                except subprocess.TimeoutExpired:
                    return f"check {command!r} timed out after {timeout_s:g} s"
                if proc.returncode != 0:
                    said = tail((proc.stdout + proc.stderr).decode("utf-8", "replace"), 3).replace("\n", " / ")
                    return f"check {command!r} exited {proc.returncode}" + (f": {said}" if said else "")
    return None


# -- execution ----------------------------------------------------------------------------------


@dataclass
class AgentRun:
    """What happened to one agent (filled in as the run goes)."""

    plan: AgentPlan
    status: str = "pending"  # healthy, failed, blocked
    step: str = ""  # the failing step: checks, restore, start, health
    detail: str = ""
    tried: list[dict[str, Any]] = field(default_factory=list)  # {"snapshots": [...], "result": ...}
    point: RestorePoint | None = None  # what is live now
    next_point: int = 0  # index of the next point to try
    staged: Path | None = None
    kept_aside: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    start_output: str = ""
    health_output: str = ""
    attempts_started: int = 0

    @property
    def name(self) -> str:
        return self.plan.spec.name

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.name, "status": self.status, "step": self.step or None, "detail": self.detail or None,
                "snapshot": self.point.newest.id if self.point else None,
                "snapshots": self.point.ids if self.point else [], "tried": self.tried,
                "kept_aside": self.kept_aside, "start_log": str(self.log) if self.log else None}


@dataclass(frozen=True)
class RecoveryOutcome:
    runs: list[AgentRun]
    duration_s: float

    @property
    def failed(self) -> list[AgentRun]:
        return [r for r in self.runs if r.status != "healthy"]

    def to_json(self) -> dict[str, Any]:
        return {"agents": [r.to_json() for r in self.runs], "duration_s": round(self.duration_s, 3),
                "recovered": [r.name for r in self.runs if r.status == "healthy"],
                "failed": [r.name for r in self.runs if r.status == "failed"],
                "not_started": [r.name for r in self.runs if r.status == "blocked"]}


def _move(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` (parents made); across filesystems copy, then remove the source."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dest)
    except OSError as exc:
        import errno

        if exc.errno != errno.EXDEV:
            raise
        shutil.move(str(src), str(dest))


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


class Recovery:
    """One execution of a :class:`RecoveryPlan` (see the module docstring for the steps)."""

    def __init__(self, plan: RecoveryPlan, view: SnapshotView, *, emit: Emit, alert: Alert | None = None,
                 graph: dict[str, list[str]] | None = None, outside_probes: dict[str, Probe] | None = None) -> None:
        self.plan = plan
        self.outside_probes = outside_probes or {}
        self.view = view
        self._emit = emit
        self.alert = alert
        self.graph = graph or {n: list(p.spec.depends_on) for n, p in plan.agents.items()}
        self.stamp = clock.format_path_time(datetime.now(UTC))
        self.runs = {name: AgentRun(plan.agents[name]) for name in plan.names}
        self._lock = threading.Lock()

    def emit(self, step: str, run: AgentRun | None = None, **fields: Any) -> None:
        event: dict[str, Any] = {"time": event_time(), "command": "recover", "step": step}
        if run is not None:
            event.update(agent=run.name, paths=run.plan.spec.shown_paths)
        event.update({k: v for k, v in fields.items() if v is not None})
        event.setdefault("result", "ok")
        with self._lock:
            self._emit(event)

    # -- staging ---------------------------------------------------------------------------
    def _stage(self, run: AgentRun) -> bool:
        """Restore the next point that passes the checks into a staging directory."""
        spec = run.plan.spec
        points = run.plan.points
        while run.next_point < len(points):
            point = points[run.next_point]
            run.next_point += 1
            staging = _unique(self.plan.aside_root / ".staging" / f"{spec.name}-{self.stamp}-{run.next_point}")
            started = time.monotonic()
            try:
                for layer in point.layers:
                    for member in layer.members:
                        inside = staging / os.fsdecode(member)
                        if inside.is_dir() and not inside.is_symlink():
                            shutil.rmtree(inside)  # our own staging copy: an older layer's version of this part
                        elif inside.exists() or inside.is_symlink():
                            inside.unlink()
                        stats = restore_snapshot(self.view, layer.snapshot, [show_path(member)], str(staging),
                                                 overwrite=True)
                        if stats.errors:
                            raise SnapError(f"{len(stats.errors)} item(s) could not be restored: {stats.errors[0]}")
            except SnapError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                run.tried.append({"snapshots": point.ids, "result": f"restore failed: {exc.message}"})
                self.emit("checks", run, snapshot=point.newest.id, snapshots=point.ids, result="error",
                          error=f"restore failed: {exc.message}", duration_s=round(time.monotonic() - started, 3))
                continue
            roots = [staging / os.fsdecode(m) for m in spec.members]
            problem = run_checks(spec.checks, roots, spec.base_dir)
            duration = round(time.monotonic() - started, 3)
            if problem:
                shutil.rmtree(staging, ignore_errors=True)
                run.tried.append({"snapshots": point.ids, "result": f"checks failed: {problem}"})
                self.emit("checks", run, snapshot=point.newest.id, snapshots=point.ids, result="error",
                          error=problem, duration_s=duration)
                continue
            self.emit("checks", run, snapshot=point.newest.id, snapshots=point.ids, duration_s=duration,
                      checks=list(spec.checks) or None, staged=str(staging))
            run.staged = staging
            run.point = point
            return True
        return False

    # -- stop / swap / start ---------------------------------------------------------------
    def _stop(self, run: AgentRun) -> None:
        spec = run.plan.spec
        started = time.monotonic()
        fields: dict[str, Any] = {}
        if run.process is not None and run.process.poll() is None:
            try:
                os.killpg(run.process.pid, signal.SIGTERM)
                run.process.wait(timeout=10)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(run.process.pid, signal.SIGKILL)
                run.process.wait()
            fields["killed_pid"] = run.process.pid
        if spec.stop:
            try:
                proc = subprocess.run(["/bin/sh", "-c", spec.stop], cwd=spec.base_dir, capture_output=True,
                                      timeout=max(spec.within_s, 10.0), stdin=subprocess.DEVNULL, check=False)
                fields["stop_exit"] = proc.returncode
                if proc.returncode:
                    fields["stop_output"] = tail((proc.stdout + proc.stderr).decode("utf-8", "replace"), 5)
            except subprocess.TimeoutExpired:
                fields["stop_exit"] = "timeout"
        elif not spec.restart and "killed_pid" not in fields:
            fields["note"] = "no stop command"
        self.emit("stopped", run, duration_s=round(time.monotonic() - started, 3), **fields)

    def _swap(self, run: AgentRun, aside_name: str) -> None:
        """Move the live paths aside and the staged tree into their place; keep_live paths stay live."""
        spec = run.plan.spec
        assert run.staged is not None and run.point is not None
        started = time.monotonic()
        aside = _unique(self.plan.aside_root / aside_name)
        kept_live: list[str] = []
        for live in spec.keep_live:
            if not live.exists():
                continue
            problem = run_checks(spec.checks, [live], spec.base_dir)
            if problem:
                kept_live.append(f"{spec.rel(live)} rolled back ({problem})")
                continue
            base = str(spec.base_dir)
            staged = run.staged / os.fsdecode(source_for(os.path.relpath(live, base), base).member)
            if staged.is_dir() and not staged.is_symlink():
                shutil.rmtree(staged)  # the snapshot's copy, in our staging: the live one wins
            _move(live, staged)
            kept_live.append(f"{spec.rel(live)} kept live")
        moved = False
        for path, member in zip(spec.paths, spec.members, strict=True):
            if path.exists() or path.is_symlink():
                _move(path, aside / os.fsdecode(member))
                moved = True
            _move(run.staged / os.fsdecode(member), path)
        shutil.rmtree(run.staged, ignore_errors=True)  # only the empty parents of what was moved out remain
        run.staged = None
        if moved and not run.kept_aside:  # the pre-recovery folder (later ones: failed attempts' trees)
            run.kept_aside.append(str(aside))
        self.emit("restored", run, snapshot=run.point.newest.id, snapshots=run.point.ids,
                  layers=run.point.to_json(), kept_aside=str(aside) if moved else None,
                  keep_live=kept_live or None, duration_s=round(time.monotonic() - started, 3))

    def _start(self, run: AgentRun) -> bool:
        spec = run.plan.spec
        command = spec.restart or spec.start
        assert command is not None
        logs = self.plan.aside_root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        run.attempts_started += 1
        run.log = _unique(logs / f"{spec.name}-{self.stamp}-{run.attempts_started}.log")
        since = time.time()
        with open(run.log, "wb") as out:
            run.process = subprocess.Popen(["/bin/sh", "-c", command], cwd=spec.base_dir, stdout=out,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        self.emit("started", run, snapshot=run.point.newest.id if run.point else None, pid=run.process.pid,
                  start_command=command, log=str(run.log))
        process = run.process

        def failed() -> str | None:
            code = process.poll()
            return f"start command exited {code}" if code not in (None, 0) else None

        probe, waited = spec.health.wait(since, spec.within_s, failed=failed,
                                         interval_s=min(0.2, max(spec.within_s / 20, 0.02)))
        run.start_output = self._log_tail(run)
        run.health_output = "\n".join(x for x in (probe.detail, probe.output) if x)
        run.tried.append({"snapshots": run.point.ids if run.point else [],
                          "result": "healthy" if probe.healthy else probe.detail})
        if probe.healthy:
            self.emit("healthy", run, snapshot=run.point.newest.id if run.point else None, detail=probe.detail,
                      duration_s=round(waited, 3))
            return True
        run.step = "start" if failed() else "health"
        self.emit("unhealthy", run, snapshot=run.point.newest.id if run.point else None, result="error",
                  error=probe.detail, duration_s=round(waited, 3), start_output=run.start_output or None,
                  health_output=probe.output or None)
        return False

    @staticmethod
    def _log_tail(run: AgentRun) -> str:
        if run.log is None:
            return ""
        try:
            with open(run.log, "rb") as handle:
                handle.seek(max(0, os.path.getsize(run.log) - 16384))
                return tail(handle.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def _bring_up(self, run: AgentRun) -> None:
        """Start; on failure try older points (stop, stage, swap, start) until attempts run out."""
        spec = run.plan.spec
        while True:
            if self._start(run):
                run.status = "healthy"
                return
            if run.attempts_started >= spec.attempts:
                break
            self._stop(run)
            if not self._stage(run):
                break
            self._swap(run, f"{spec.name}-{self.stamp}-attempt{run.attempts_started}")
        self._stop(run)  # a half-alive agent must not run unwatched
        self._escalate(run, run.step or "health", run.tried[-1]["result"] if run.tried else "not healthy")

    def _escalate(self, run: AgentRun, step: str, detail: str) -> None:
        run.status, run.step, run.detail = "failed", step, detail
        event = {"time": event_time(), "command": "recover", "step": "escalated", "agent": run.name,
                 "paths": run.plan.spec.shown_paths, "result": "error", "failing_step": step,
                 "error": f"agent {run.name} did not come back ({step}): {detail}",
                 "snapshots_tried": [f"{'+'.join(i[:8] for i in t['snapshots'])}: {t['result']}" for t in run.tried],
                 "kept_aside": run.kept_aside or None, "start_log": str(run.log) if run.log else None,
                 "start_output": run.start_output or None, "health_output": run.health_output or None,
                 "exit_code": 8}
        event = {k: v for k, v in event.items() if v is not None}
        with self._lock:
            self._emit(event)
        if self.alert is not None:
            self.alert(event)

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> RecoveryOutcome:
        started = time.monotonic()
        self.emit("plan", agents=self.plan.names, levels=self.plan.levels,
                  snapshots={n: p.points[0].ids for n, p in self.plan.agents.items()})
        runs = [self.runs[n] for n in self.plan.names]
        with ThreadPoolExecutor(max(1, min(4, len(runs)))) as pool:  # restores may all run in parallel
            staged = dict(zip([r.name for r in runs], pool.map(self._stage, runs), strict=True))
        for run in runs:
            if not staged[run.name]:
                self._escalate(run, "checks", "no snapshot passes the checks"
                               + (f" (last: {run.tried[-1]['result']})" if run.tried else ""))
        for level in stop_order(self.plan.levels):
            for name in level:
                if staged[name] and not self.plan.agents[name].spec.restart:
                    self._stop(self.runs[name])
        for run in runs:
            if staged[run.name]:
                self._swap(run, f"{run.name}-{self.stamp}")
        for level in self.plan.levels:
            ready: list[AgentRun] = []
            for name in level:
                run = self.runs[name]
                if run.status == "failed":
                    continue
                failed = {n for n, r in self.runs.items() if r.status in ("failed", "blocked")}
                blocker = [d for d in self.graph.get(name, ()) if d in failed]
                blocker += [d for d in self.plan.outside.get(name, []) if not self._outside_healthy(d)]
                if blocker:
                    run.status, run.step = "blocked", "dependency"
                    run.detail = f"not started: depends on {', '.join(blocker)}, which is not healthy"
                    self.emit("blocked", run, result="error", error=run.detail)
                    continue
                ready.append(run)
            with ThreadPoolExecutor(max(1, len(ready))) as pool:
                list(pool.map(self._bring_up, ready))
        for name in dependents(self.graph, [n for n, r in self.runs.items() if r.status == "failed"]):
            blocked = self.runs.get(name)
            if blocked is not None and blocked.status == "pending":
                blocked.status = "blocked"
        return RecoveryOutcome(runs, time.monotonic() - started)

    def _outside_healthy(self, name: str) -> bool:
        probe = self.outside_probes.get(name)
        return probe is None or probe.healthy


def run_recovery(plan: RecoveryPlan, view: SnapshotView, config: Config, *, emit: Emit,
                 alert: Alert | None = None) -> RecoveryOutcome:
    """Execute ``plan`` (see the module docstring); returns what happened to each agent.
    A dependency that is not being recovered is asked once, now, whether it is healthy."""
    graph = {name: list(a.depends_on) for name, a in config.agents.items()}
    outside = sorted({d for deps in plan.outside.values() for d in deps})
    probes = {d: agent_spec(config, d).health.probe() for d in outside}
    return Recovery(plan, view, emit=emit, alert=alert, graph=graph, outside_probes=probes).run()
