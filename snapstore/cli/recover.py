"""``snap recover``: parse, call :mod:`snapstore.agent.recover`, render its plan and its steps.

Each step event is written to the history log as it happens (so ``snap history`` shows a
recovery in progress) and printed as one line; escalations are alerted at once.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import echo, emit_json, warn
from snapstore.errors import ConfigError, ExitCode, RecoveryFailed, UsageError

if TYPE_CHECKING:
    from snapstore.agent.config import Config

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _config(app: AppContext) -> Config:
    cfg: Config | None = app.config()
    if cfg is None or not cfg.agents:
        raise ConfigError("snap recover needs a config file with an 'agents' section (see docs/config.md)")
    return cfg


def _line(event: dict[str, Any]) -> str | None:
    """One human line for a step event (None: not shown)."""
    step, agent = event.get("step"), event.get("agent", "")
    snap = str(event.get("snapshot", ""))[:8]
    seconds = f"{event['duration_s']:.2f} s" if isinstance(event.get("duration_s"), int | float) else ""
    if step == "checks":
        if event.get("result") == "ok":
            checks = ", ".join(event.get("checks") or []) or "none configured"
            return f"{agent}: restored {' + '.join(s[:8] for s in event.get('snapshots', []))} to staging, " \
                   f"checks passed ({checks}; {seconds})"
        return f"{agent}: skipped {snap}: {event.get('error')}"
    if step == "stopped":
        how = f"stop exit {event['stop_exit']}" if "stop_exit" in event else event.get("note", "")
        if "killed_pid" in event:
            how = f"killed pid {event['killed_pid']}" + (f", {how}" if how else "")
        return f"{agent}: stopped ({how})"
    if step == "restored":
        aside = f"; previous kept in {event['kept_aside']}" if event.get("kept_aside") else ""
        live = f"; {'; '.join(event['keep_live'])}" if event.get("keep_live") else ""
        return f"{agent}: {', '.join(event.get('paths', []))} now equal to {snap}{aside}{live}"
    if step == "started":
        return f"{agent}: started (pid {event.get('pid')}; output in {event.get('log')})"
    if step == "healthy":
        return f"{agent}: healthy after {seconds} ({event.get('detail')})"
    if step == "unhealthy":
        return f"{agent}: NOT healthy after {seconds}: {event.get('error')}"
    if step == "escalated":
        return f"{agent}: ESCALATED: {event.get('error')}"
    if step == "blocked":
        return f"{agent}: {event.get('error')}"
    return None


def cmd_recover(
    ctx: typer.Context,
    agents: Annotated[list[str] | None, typer.Argument(help="Agents to recover (names in the config).",
                                                       show_default=False)] = None,
    all_agents: Annotated[bool, typer.Option("--all", help="Every agent whose health check fails "
                                             "(with --force: every agent).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    from_spec: Annotated[str | None, typer.Option("--from", metavar="SNAPSHOT", help="Restore from this snapshot "
                                                  "(a selector, see 'Naming a snapshot').",
                                                  show_default=False)] = None,
    before: Annotated[str | None, typer.Option("--before", metavar="TIME", help="Only snapshots older than TIME "
                                               "(ISO 8601).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="With --all: recover healthy agents too.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Snapshots of this host (default: this host).",
                                             show_default=False)] = None,
    json_out: JsonOpt = False,
) -> int:
    """Restore agents from their newest good snapshots, restart them in dependency order, check health."""
    from snapstore import clock
    from snapstore.agent import history
    from snapstore.agent.recover import plan_recovery, run_recovery, this_host
    from snapstore.view.vfs import SnapshotView

    app: AppContext = ctx.obj
    if bool(agents) == all_agents:
        raise UsageError("give AGENT... or --all")
    if from_spec is not None and before is not None:
        raise UsageError("give --from or --before, not both")
    if force and not all_agents:
        raise UsageError("--force goes with --all (named agents are always recovered)")
    cutoff = clock.parse_time(before) if before is not None else None
    cfg = _config(app)
    chosen_host = host or this_host()
    app.record_nothing()  # each step is logged as it happens; a failure adds the outcome
    with app.open("read") as repo:
        view = SnapshotView(repo)
        plan = plan_recovery(cfg, view, agents or [], all_agents=all_agents, force=force, from_spec=from_spec,
                             before=cutoff, host=chosen_host)
        if not json_out:
            for line in plan.lines():
                echo(line)
        if dry_run:
            if json_out:
                emit_json({"dry_run": True, "plan": plan.to_json()})
            else:
                echo("dry run: nothing was changed")
            return ExitCode.OK
        if not plan.agents:
            if json_out:
                emit_json({"dry_run": False, "plan": plan.to_json(), "outcome": None})
            return ExitCode.OK
        path = app.history_path()
        repository = app.repo_location()

        def emit(event: dict[str, Any]) -> None:
            done = history.complete_event(event, command="recover", exit_code=int(event.get("exit_code", 0)),
                                          repository=repository)
            try:
                history.append_event(path, done)
            except OSError as exc:
                warn(f"snap: warning: cannot write history log {path}: {exc.strerror or exc}")
            line = _line(done)
            if line and not json_out and not app.quiet:
                echo(line)
                sys.stdout.flush()

        def alert(event: dict[str, Any]) -> None:
            app.alert(history.complete_event(event, command="recover", exit_code=ExitCode.RECOVERY,
                                             repository=repository))

        outcome = run_recovery(plan, view, cfg, emit=emit, alert=alert)
    if json_out:
        emit_json({"dry_run": False, "plan": plan.to_json(), "outcome": outcome.to_json()})
    failed = outcome.failed
    if not failed:
        if not json_out:
            echo(f"recovered {', '.join(r.name for r in outcome.runs)} in {outcome.duration_s:.2f} s")
        return ExitCode.OK
    escalated = [r for r in failed if r.status == "failed"]
    blocked = [r.name for r in failed if r.status == "blocked"]
    parts = [f"{r.name} did not come back ({r.step}: {r.detail})" for r in escalated]
    if blocked:
        parts.append(f"not started: {', '.join(blocked)}")
    aside = [a for r in escalated for a in r.kept_aside]
    where = f"; pre-recovery copies in {', '.join(aside)}" if aside else ""
    message = "; ".join(parts) + where
    app.record(result="error", exit_code=ExitCode.RECOVERY, error=message, alerted=True,  # escalations alerted
               agents=[r.name for r in outcome.runs], failed=[r.name for r in failed])
    raise RecoveryFailed(message)


def register(app: typer.Typer) -> None:
    app.command("recover")(cmd_recover)
