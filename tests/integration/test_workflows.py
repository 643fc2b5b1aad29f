"""The users' workflows through the real ``snap`` command: config-derived tiers on a schedule,
``take --due``, on-change snapshots and ``snap watch`` (real inotify), latest-good restore of a
corrupt state file, tar.gz import/export, the history log and ``on_failure`` alerts.

Time is simulated with ``SNAP_NOW``; schedules are evaluated in ``TZ=UTC``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from snapstore.errors import ExitCode
from tests.conftest import Result, run_snap

AGENTS = ("Z", "Jay", "Rick", "Leroy")
STATE = "state/orchestrator_state.json"
SCHEDULE: dict = {
    "repository": "../repo",
    "on_failure": "cat > alert.json",
    "tiers": {
        "daily": {"schedule": "0 7 * * *", "keep": 30,
                  "sources": ["agents/*/priority_weights.json", "agents/*/memory"]},
        "weekly": {"schedule": "0 23 * * 0", "keep": 12, "sources": ["agents"]},
        "on-change": {"keep": 10, "sources": ["agents/*/priority_weights.json"]},
        "monthly": {"schedule": "0 1 1 * *", "keep": 12, "include_config": True,
                    "sources": [{"from_json": "orchestrator_config.json", "key": "stateFile"},
                                {"from_json": "orchestrator_config.json", "key": "logsDir"},
                                {"from_json": "orchestrator_config.json", "key": "knowledgePackDir"}]},
    },
}


# -- helpers ----------------------------------------------------------------------------------


def build_workspace(root: Path, schedule: dict | None = None) -> Path:
    """An orchestrator workspace like the seeds': config with stateFile/logsDir/knowledgePackDir,
    agents Z, Jay, Rick, Leroy (SOUL.md, skills, memory, priority_weights.json), a schedule."""
    ws = root / "orchestrator"
    (ws / "state").mkdir(parents=True)
    (ws / "logs").mkdir()
    (ws / "knowledge-packs").mkdir()
    (ws / "orchestrator_config.json").write_text(json.dumps(
        {"stateFile": STATE, "logsDir": "logs", "knowledgePackDir": "knowledge-packs", "healthPort": 8080}, indent=2))
    (ws / STATE).write_text(json.dumps({"version": 1, "tasks": []}))
    (ws / "logs" / "orchestrator.log").write_text("boot\n")
    (ws / "knowledge-packs" / "kp-0001.md").write_text("# pack 1\n" + "summary line\n" * 50)
    for agent in AGENTS:
        base = ws / "agents" / agent
        for skill in ("triage", "report"):
            (base / "skills" / skill).mkdir(parents=True)
            (base / "skills" / skill / f"{skill}.py").write_text(f"def run():\n    return '{agent}:{skill}'\n")
        (base / "memory").mkdir()
        (base / "SOUL.md").write_text(f"# {agent}\nYou are {agent}.\n" * 20)
        (base / "memory" / "lessons_learned.md").write_text(f"- {agent}: verify backups\n")
        (base / "memory" / "kaizen_journal.md").write_text(f"- {agent}: day 0\n")
        (base / "priority_weights.json").write_text(json.dumps({"relevance": 0.4, "urgency": 0.3}))
    (ws / "backup_schedule.json").write_text(json.dumps(schedule or SCHEDULE, indent=2))
    return ws


def snap_in(ws: Path, *args: str, now: str | None = None, config: str = "backup_schedule.json",
            env: dict[str, str] | None = None) -> Result:
    full = {"TZ": "UTC", **(env or {})}
    if now:
        full["SNAP_NOW"] = now
    return run_snap("--config", str(ws / config), *args, cwd=ws, env=full)


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def snapshots(ws: Path, tier: str | None = None) -> list[dict]:
    args = ["list", "--json"] + (["--tier", tier] if tier else [])
    return ok(snap_in(ws, *args)).json()  # type: ignore[return-value]


def names_in(ws: Path, snap_id: str) -> set[str]:
    return {row["path"] for row in ok(snap_in(ws, "ls", "-R", snap_id, "--json")).json()}  # type: ignore[union-attr]


def history(ws: Path) -> list[dict]:
    path = ws.parent / "system-history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- 1. the orchestrator's tiers over several simulated days ----------------------------------


def test_orchestrator_tiers_over_simulated_days(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    first = datetime(2026, 11, 27, tzinfo=UTC)  # a Friday; Sunday 29th; Tuesday 1 December
    weights = ws / "agents" / "Z" / "priority_weights.json"
    state_path = STATE
    for day in range(6):
        date = first + timedelta(days=day)
        stamp = date.strftime("%Y-%m-%d")
        for agent in AGENTS:  # the day's growth
            with open(ws / "agents" / agent / "memory" / "kaizen_journal.md", "a") as journal:
                journal.write(f"- {agent}: day {stamp}\n")
        (ws / "logs" / f"{stamp}.log").write_text(f"{stamp} tick\n" * 200)
        state = json.loads((ws / state_path).read_text())
        state["tasks"].append({"day": stamp})
        (ws / state_path).write_text(json.dumps(state))
        if date.day == 1:  # the monthly slot at 01:00 on the first
            res = ok(snap_in(ws, "take", "--due", "--json", now=f"{stamp}T01:05:00Z")).json()
            assert [t["tier"] for t in res["taken"]] == ["monthly"]  # type: ignore[index]
        ok(snap_in(ws, "take", "--due", now=f"{stamp}T07:05:00Z"))
        if day in (1, 3):  # a human adjusts the weights: on-change snapshot, then nothing more
            weights.write_text(json.dumps({"relevance": 0.5 + day / 100, "urgency": 0.3}))
            res = ok(snap_in(ws, "take", "--tier", "on-change", "--if-changed", now=f"{stamp}T10:00:00Z"))
            assert "saved" in res.out
            res = ok(snap_in(ws, "take", "--tier", "on-change", "--if-changed", now=f"{stamp}T10:01:00Z"))
            assert "unchanged since" in res.out
        if date.weekday() == 6:
            ok(snap_in(ws, "take", "--due", now=f"{stamp}T23:05:00Z"))
        if day == 2:  # the runtime moves its state file: the config says where, snap follows
            (ws / "runtime").mkdir()
            (ws / STATE).rename(ws / "runtime" / "state.json")
            cfg = json.loads((ws / "orchestrator_config.json").read_text())
            cfg["stateFile"] = "runtime/state.json"
            (ws / "orchestrator_config.json").write_text(json.dumps(cfg))
            state_path = "runtime/state.json"

    counts = {tier: len(snapshots(ws, tier)) for tier in ("daily", "weekly", "monthly", "on-change")}
    # daily: one a day; weekly: the first run's catch-up and Sunday 29th; monthly: catch-up and 1 Dec
    assert counts == {"daily": 6, "weekly": 2, "monthly": 2, "on-change": 2}
    assert ok(snap_in(ws, "due", "--json", now="2026-12-02T07:06:00Z")).json() == []

    daily = snapshots(ws, "daily")[-1]
    names = names_in(ws, daily["id"])
    assert {f"agents/{a}/priority_weights.json" for a in AGENTS} <= names
    assert {f"agents/{a}/memory/kaizen_journal.md" for a in AGENTS} <= names
    assert not any(n.endswith("SOUL.md") for n in names)
    journal = ok(snap_in(ws, "cat", daily["id"], "agents/Rick/memory/kaizen_journal.md")).out
    assert journal.count("day 2026-") == 6

    weekly = snapshots(ws, "weekly")[-1]
    assert weekly["time"] == "2026-11-29T23:05:00Z"
    names = names_in(ws, weekly["id"])
    assert {f"agents/{a}/SOUL.md" for a in AGENTS} | {f"agents/{a}/skills/triage/triage.py" for a in AGENTS} <= names

    monthly = snapshots(ws, "monthly")[-1]
    assert monthly["time"] == "2026-12-01T01:05:00Z"
    names = names_in(ws, monthly["id"])
    assert {state_path, "logs/2026-12-01.log", "knowledge-packs/kp-0001.md", "orchestrator_config.json",
            "backup_schedule.json"} <= names
    assert STATE not in names  # the old location is gone from the config
    state = json.loads(ok(snap_in(ws, "cat", monthly["id"], state_path)).out)
    assert state["tasks"][-1] == {"day": "2026-12-01"}

    on_change = snapshots(ws, "on-change")
    assert all(names_in(ws, s["id"]) >= {"agents/Z/priority_weights.json"} for s in on_change)
    assert not any("memory" in n for n in names_in(ws, on_change[-1]["id"]))
    assert json.loads(ok(snap_in(ws, "cat", on_change[-1]["id"], "agents/Z/priority_weights.json")).out) == \
        {"relevance": 0.53, "urgency": 0.3}

    # every take is in the history log, in order, with its tier and snapshot
    takes = [e for e in history(ws) if e["command"] == "take"]
    assert len(takes) == sum(counts.values()) and all(e["result"] == "ok" for e in takes)

    # a config-derived source that is missing is one line naming file, tier and key (exit 6)
    cfg = json.loads((ws / "orchestrator_config.json").read_text())
    del cfg["stateFile"]
    (ws / "orchestrator_config.json").write_text(json.dumps(cfg))
    res = snap_in(ws, "take", "--tier", "monthly")
    assert res.code == ExitCode.CONFIG
    assert res.err.count("\n") == 1 and "'stateFile' not found" in res.err and "tiers.monthly" in res.err
    (ws / "orchestrator_config.json").unlink()
    res = snap_in(ws, "take", "--tier", "monthly")
    assert res.code == ExitCode.CONFIG and "file not found" in res.err and res.err.count("\n") == 1


# -- 2. schedules: due, take --due, catch-up, cron/systemd entries ----------------------------


def test_due_take_due_and_catch_up(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))

    def due(now: str) -> list[str]:
        return [s["tier"] for s in ok(snap_in(ws, "due", "--json", now=now)).json()]  # type: ignore[union-attr]

    assert due("2026-11-22T07:00:30Z") == ["daily", "weekly", "monthly"]  # never taken
    first = ok(snap_in(ws, "take", "--due", "--json", now="2026-11-22T07:00:30Z")).json()
    assert [t["tier"] for t in first["taken"]] == ["daily", "weekly", "monthly"]  # type: ignore[index]
    again = ok(snap_in(ws, "take", "--due", "--json", now="2026-11-22T07:04:00Z")).json()
    assert again["taken"] == [] and again["due"] == []  # type: ignore[index]
    assert "nothing due" in ok(snap_in(ws, "take", "--due", now="2026-11-22T07:09:00Z")).out
    assert len(snapshots(ws)) == 3

    # Sunday 23:00 (2026-11-22 is a Sunday)
    assert due("2026-11-22T22:59:59Z") == []
    assert due("2026-11-22T23:00:00Z") == ["weekly"]
    ok(snap_in(ws, "take", "--due", now="2026-11-22T23:00:20Z"))
    # around midnight nothing is due until 07:00
    assert due("2026-11-23T00:00:00Z") == []
    assert due("2026-11-23T06:59:59Z") == []
    assert due("2026-11-23T07:00:00Z") == ["daily"]

    # the machine is off for two days: one catch-up snapshot, not one per missed slot
    status = {s["tier"]: s for s in ok(snap_in(ws, "due", "--all", "--json", now="2026-11-24T09:00:00Z")).json()}
    assert status["daily"]["due"] and status["daily"]["missed_slots"] == 2
    assert not status["on-change"]["due"] and not status["weekly"]["due"]
    res = ok(snap_in(ws, "take", "--due", "--json", now="2026-11-24T09:00:00Z")).json()
    assert [t["tier"] for t in res["taken"]] == ["daily"]  # type: ignore[index]
    assert due("2026-11-24T09:05:00Z") == []
    assert len(snapshots(ws, "daily")) == 2

    # month end: nothing on the 30th at 23:59, monthly at 01:00 on the first
    status = {s["tier"]: s for s in ok(snap_in(ws, "due", "--all", "--json", now="2026-11-30T23:59:00Z")).json()}
    assert not status["monthly"]["due"] and status["monthly"]["next_slot"] == "2026-12-01T01:00:00Z"
    status = {s["tier"]: s for s in ok(snap_in(ws, "due", "--all", "--json", now="2026-12-01T01:00:00Z")).json()}
    assert status["monthly"]["due"] and status["monthly"]["slot"] == "2026-12-01T01:00:00Z"

    # ready-to-install entries: absolute snap and config paths, 'take --due'
    cron = next(line for line in ok(snap_in(ws, "schedule", "--cron")).out.splitlines() if "take --due" in line)
    fields = cron.split()
    assert fields[:5] == ["*/5", "*", "*", "*", "*"] and os.path.isabs(fields[5])
    assert str(ws / "backup_schedule.json") in cron and cron.endswith("take --due")
    units = ok(snap_in(ws, "schedule", "--systemd", "--every", "10", "--json")).json()["units"]  # type: ignore[index]
    assert "OnCalendar=*:0/10" in units["snap-take.timer"]
    assert "take --due" in units["snap-take.service"] and str(ws / "backup_schedule.json") in units["snap-take.service"]
    assert snap_in(ws, "schedule").code == ExitCode.USAGE


# -- 3. snap watch: real inotify, debounce, clean stop ----------------------------------------


class LineReader:
    """Lines of a child's stdout, read on a thread so a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(raw.decode()) for raw in stream], daemon=True).start()

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} in {timeout} s; seen: {self.seen}")

    def drain(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        got = []
        while time.monotonic() < end:
            try:
                got.append(self.lines.get(timeout=max(0.0, end - time.monotonic())))
            except queue.Empty:
                break
        self.seen += got
        return got


def test_watch_debounces_bursts_and_stops_cleanly(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "on-change"))  # the baseline: the watcher starts with nothing to do
    weights = ws / "agents" / "Jay" / "priority_weights.json"
    env = {**os.environ, "TZ": "UTC", "SNAP_TEST_SLOW_STORE": "0.25"}
    env.pop("SNAP_REPO", None)
    env.pop("SNAP_NOW", None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--config", str(ws / "backup_schedule.json"),
                             "watch", "--debounce", "1"], cwd=ws, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out = LineReader(proc)
        out.wait_for("watching")
        for i in range(1, 6):  # five changes inside the debounce window (the last is new content:
            # 0.4 would be the baseline's bytes again, which is no change)
            weights.write_text(json.dumps({"relevance": 0.1 * i, "urgency": 0.3}))
            time.sleep(0.1)
        out.wait_for("snapshot")
        assert not any("snapshot" in line for line in out.drain(1.5))  # one snapshot for the burst
        assert len(snapshots(ws, "on-change")) == 2

        tmp = weights.with_suffix(".tmp")  # an editor's atomic replace, later on
        tmp.write_text(json.dumps({"relevance": 0.9, "urgency": 0.1}))
        tmp.replace(weights)
        out.wait_for("snapshot")
        assert len(snapshots(ws, "on-change")) == 3

        # SIGTERM while a take is running: it commits, then the watcher stops (no half snapshot)
        weights.write_text(json.dumps({"relevance": 0.2, "urgency": 0.2}))
        out.wait_for("checking tier on-change")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = out.drain(0.5)
        assert any("snapshot" in line for line in rest) and any("stopped (SIGTERM)" in line for line in rest), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    taken = snapshots(ws, "on-change")
    assert len(taken) == 4
    last = ok(snap_in(ws, "cat", taken[-1]["id"], "agents/Jay/priority_weights.json")).out
    assert json.loads(last) == {"relevance": 0.2, "urgency": 0.2}
    assert ok(snap_in(ws, "verify")).code == 0
    assert not [n for n in os.listdir(tmp_path / "repo" / "tmp") if n.endswith(".tmp")]
    watch_takes = [e for e in history(ws) if e.get("trigger", "").startswith("watch")]
    assert len(watch_takes) == 3 and all(e["result"] == "ok" and e["tier"] == "on-change" for e in watch_takes)


# -- 4. latest-good restore of a corrupt state file -------------------------------------------


def test_latest_good_restores_newest_valid_state(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    state = ws / STATE
    versions = {}
    for day, text in ((1, json.dumps({"version": 1, "tasks": ["a"]})),
                      (2, json.dumps({"version": 2, "tasks": ["a", "b"]})),
                      (3, json.dumps({"version": 3, "tasks": ["a", "b", "c"]})[:-7])):  # written half-way
        state.write_text(text)
        info = ok(snap_in(ws, "take", "--tier", "monthly", "--json", now=f"2026-11-0{day}T01:00:00Z")).json()
        versions[day] = info["id"]  # type: ignore[index]
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-03T07:00:00Z"))  # has no state file
    state.write_text('{"version": 4, "tasks": [')  # the live file is corrupt now

    res = ok(snap_in(ws, "restore", "--latest-good", STATE, "--check", "json", "--target", str(ws), "--json",
                     now="2026-11-04T09:30:00Z")).json()
    assert res["used"] == versions[2]  # type: ignore[index]
    skipped = {s["snapshot"]: s["reason"] for s in res["skipped"]}  # type: ignore[index]
    assert "invalid JSON" in skipped[versions[3]] and versions[1] not in skipped
    assert json.loads(state.read_text()) == {"version": 2, "tasks": ["a", "b"]}
    aside = ws / f"{STATE}.corrupt-20261104T093000Z"
    assert res["kept_aside"] == str(aside) and aside.read_text() == '{"version": 4, "tasks": ['  # type: ignore[index]
    assert not [n for n in os.listdir(state.parent) if n.startswith(".snap-")]

    # the live file is valid now: nothing to do
    res2 = ok(snap_in(ws, "restore", "--latest-good", STATE, "--check", "json", "--target", str(ws)))
    assert "passes the checks; nothing restored" in res2.out

    # a user check (the runbook's health rule): only version 1 is acceptable; human output
    check = f"{sys.executable} -c \"import json,sys; sys.exit(json.load(open(sys.argv[1]))['version'] != 1)\""
    res3 = ok(snap_in(ws, "restore", "--latest-good", STATE, "--check", "json", "--check-cmd", check,
                      "--target", str(ws), "--tier", "monthly", now="2026-11-04T10:00:00Z"))
    assert f"skipped {versions[3][:8]}" in res3.out and "invalid JSON" in res3.out
    assert f"skipped {versions[2][:8]}" in res3.out and "check command exited 1" in res3.out
    assert f"from snapshot {versions[1][:8]}" in res3.out
    assert json.loads(state.read_text())["version"] == 1
    assert (ws / f"{STATE}.corrupt-20261104T100000Z").exists()

    # no good copy at all: exit 5, nothing changed
    before = state.read_text()
    res4 = snap_in(ws, "restore", "--latest-good", STATE, "--check-cmd", "false", "--overwrite",
                   "--target", str(ws))
    assert res4.code == ExitCode.NOT_FOUND and "passes the checks" in res4.err
    assert state.read_text() == before
    restores = [e for e in history(ws) if e["command"] == "restore"]
    assert [e["result"] for e in restores] == ["ok", "ok", "error"]
    assert restores[0]["snapshot"] == versions[2]


# -- 5. 30 daily tar.gz archives import and dedup; export round trip --------------------------

WORDS = ("task", "agent", "route", "retry", "ok", "queue", "score", "weights", "pack", "health", "latency", "done")


def seed_archives(root: Path, days: int = 30) -> list[Path]:
    """Archives made the way the seeds' daily script makes them: STAMP/ with the state file,
    the config, knowledge-packs/ and logs/ (which grow every day), tar -czf."""
    rng = random.Random(6)
    live = root / "live"
    (live / "logs").mkdir(parents=True)
    (live / "knowledge-packs").mkdir()
    config = json.dumps({"stateFile": "orchestrator_state.json", "logsDir": "logs",
                         "knowledgePackDir": "knowledge-packs"})
    archives = []
    tasks: list[dict] = []
    start = datetime(2026, 10, 1, 7, 0, tzinfo=UTC)
    for day in range(days):
        moment = start + timedelta(days=day)
        stamp = moment.strftime("%Y%m%d_%H%M%S")
        lines = [f"{moment:%Y-%m-%d}T{rng.randrange(24):02d}:{rng.randrange(60):02d} "
                 f"{' '.join(rng.choice(WORDS) for _ in range(8))} id={rng.getrandbits(40):x}" for _ in range(600)]
        (live / "logs" / f"orchestrator-{moment:%Y%m%d}.log").write_text("\n".join(lines) + "\n")
        if day % 3 == 0:
            (live / "knowledge-packs" / f"kp-{day:03d}.md").write_text(
                "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(150)))
        tasks += [{"id": rng.getrandbits(32), "agent": rng.choice(AGENTS), "state": "done"} for _ in range(20)]
        state = json.dumps({"version": day, "tasks": tasks})
        stage = root / "stage" / stamp
        (stage / "logs").mkdir(parents=True)
        (stage / "orchestrator_state.json").write_text(state)
        (stage / "orchestrator_config.json").write_text(config)
        for sub in ("logs", "knowledge-packs"):
            os.makedirs(stage / sub, exist_ok=True)
            for name in sorted(os.listdir(live / sub)):
                (stage / sub / name).write_bytes((live / sub / name).read_bytes())
                os.utime(stage / sub / name, (moment.timestamp(), moment.timestamp()))
        archive = root / "backup" / f"orchestrator-{stamp}.tar.gz"
        archive.parent.mkdir(exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(stage, arcname=stamp)
        archives.append(archive)
    return archives


def members(data: tarfile.TarFile) -> dict[str, tuple]:
    out = {}
    for m in data.getmembers():
        content = hashlib.sha256(data.extractfile(m).read()).hexdigest() if m.isfile() else None  # type: ignore[union-attr]
        out[m.name.rstrip("/")] = (m.type, m.size if m.isfile() else 0, content, m.mode, int(m.mtime), m.linkname)
    return out


def test_import_thirty_daily_archives_and_export(tmp_path: Path) -> None:
    archives = seed_archives(tmp_path)
    repo = tmp_path / "repo"
    ok(run_snap("--repo", str(repo), "init"))
    res = ok(run_snap("--repo", str(repo), "import", *[str(a) for a in reversed(archives)], "--tier", "daily",
                      "--json", env={"TZ": "UTC"})).json()
    imported = res["imported"]  # type: ignore[index]
    assert len(imported) == 30 and all(i["time_from"] == "name" for i in imported)
    assert [i["time"] for i in imported][:2] == ["2026-10-01T07:00:00Z", "2026-10-02T07:00:00Z"]
    assert all(i["stripped"] == os.path.basename(i["archive"])[len("orchestrator-"):-len(".tar.gz")]
               for i in imported)
    listed = ok(run_snap("--repo", str(repo), "list", "--tier", "daily", "--json")).json()
    assert len(listed) == 30  # type: ignore[arg-type]

    summed = sum(a.stat().st_size for a in archives)
    repo_bytes = sum(f.stat().st_blocks * 512 for f in repo.rglob("*") if f.is_file())
    packs = sum(f.stat().st_size for f in (repo / "packs").rglob("*.pack"))
    ratio = repo_bytes / summed
    print(f"\nimport dedup: 30 archives {summed / 1e6:.2f} MB -> packs {packs / 1e6:.2f} MB "
          f"({packs / summed:.1%}), whole repository on disk {repo_bytes / 1e6:.2f} MB ({ratio:.1%})")
    assert packs < 0.15 * summed and ratio < 0.25

    # importing again takes nothing
    again = ok(run_snap("--repo", str(repo), "import", str(archives[0]), "--tier", "daily", "--json",
                        env={"TZ": "UTC"})).json()
    assert again["imported"] == [] and len(again["already_imported"]) == 1  # type: ignore[index]

    # export of the last day, under its STAMP, has the same members with the same content
    last = imported[-1]
    stamp = last["stripped"]
    out = tmp_path / "export.tar.gz"
    ok(run_snap("--repo", str(repo), "export", last["id"], "-o", str(out), "--prefix", stamp))
    with tarfile.open(archives[-1]) as original, tarfile.open(out) as exported:
        want, got = members(original), members(exported)
    assert set(got) == set(want)
    for name in want:
        if name == stamp:  # the archive's top directory is not kept in the snapshot
            assert got[name][0] == tarfile.DIRTYPE
            continue
        assert got[name] == want[name], name

    # part of a snapshot, to stdout
    raw = ok(run_snap("--repo", str(repo), "export", last["id"], "orchestrator_state.json", "-o", "-")).raw
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as part:
        assert part.getnames() == ["orchestrator_state.json"]
        assert json.load(part.extractfile("orchestrator_state.json"))["version"] == 29  # type: ignore[arg-type]

    bad = tmp_path / "backup" / "orchestrator-20261201_070000.tar.gz"
    bad.write_bytes(archives[0].read_bytes()[:5000])
    res = run_snap("--repo", str(repo), "import", str(bad))
    assert res.code == ExitCode.ERROR and "not a readable tar archive" in res.err and res.err.count("\n") == 1


# -- 6. the history log and on_failure --------------------------------------------------------

APPENDER = """
import sys
from snapstore.agent.history import append_event
path, who = sys.argv[1], sys.argv[2]
for i in range(300):
    append_event(path, {"time": "2026-11-01T00:00:00Z", "command": "take", "who": who, "i": i,
                        "error": "x" * (i * 7 % 2000)})
"""


def test_history_lines_and_on_failure(tmp_path: Path) -> None:
    schedule = json.loads(json.dumps(SCHEDULE))
    schedule["tiers"]["broken"] = {"sources": ["agents/Z/SOUL.md"]}
    ws = build_workspace(tmp_path, schedule)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-01T07:00:00Z"))
    ok(snap_in(ws, "take", "--help"))  # not an event
    (ws / "agents" / "Z" / "SOUL.md").unlink()
    res = snap_in(ws, "take", "--tier", "broken", now="2026-11-01T08:00:00Z")
    assert res.code == ExitCode.CONFIG and "SOUL.md" in res.err
    alert = json.loads((ws / "alert.json").read_text())
    assert alert["command"] == "take" and alert["tier"] == "broken" and alert["result"] == "error"
    assert alert["exit_code"] == ExitCode.CONFIG and "SOUL.md" in alert["error"]
    ok(snap_in(ws, "verify", now="2026-11-01T09:00:00Z"))
    ok(snap_in(ws, "gc", now="2026-11-01T10:00:00Z"))
    ok(snap_in(ws, "restore", "latest:daily", "--target", str(tmp_path / "out"), now="2026-11-01T11:00:00Z"))

    events = history(ws)
    assert [(e["command"], e["result"]) for e in events] == \
        [("take", "ok"), ("take", "error"), ("verify", "ok"), ("gc", "ok"), ("restore", "ok")]
    for event in events:
        assert {"time", "command", "result", "exit_code", "host", "duration_s"} <= set(event)
    take = events[0]
    assert take["tier"] == "daily" and len(take["snapshot"]) == 64 and take["files"] == 12
    assert take["bytes"] > 0 and take["new_bytes"] > 0 and take["time"] == "2026-11-01T07:00:00Z"
    assert events[4]["snapshot"] == take["snapshot"]

    listed = ok(snap_in(ws, "history", "--json", "--command", "take")).json()
    assert len(listed) == 2  # type: ignore[arg-type]
    assert len(ok(snap_in(ws, "history", "--json", "--tier", "broken")).json()) == 1  # type: ignore[arg-type]
    assert len(ok(snap_in(ws, "history", "--json", "--since", "2026-11-01T09:30:00Z")).json()) == 2  # type: ignore[arg-type]
    assert "error" in ok(snap_in(ws, "history")).out

    # a failing alert command is a warning; the take's own error and exit code stand
    schedule["on_failure"] = "echo alert broke >&2; exit 3"
    (ws / "other.json").write_text(json.dumps(schedule))
    res = snap_in(ws, "take", "--tier", "broken", config="other.json")
    assert res.code == ExitCode.CONFIG
    assert "snap: error:" in res.err and "on_failure command exited 3" in res.err

    # concurrent appenders and a reader: every line the reader sees parses
    log = tmp_path / "concurrent.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(log), str(n)]) for n in range(4)]
    reads = 0
    while any(p.poll() is None for p in procs) or reads == 0:
        if log.exists():
            data = log.read_bytes()
            for line in data.split(b"\n")[:-1]:
                json.loads(line)
            reads += 1
    assert all(p.wait() == 0 for p in procs)
    lines = log.read_text().splitlines()
    assert len(lines) == 1200
    seen = {(e["who"], e["i"]) for e in map(json.loads, lines)}
    assert len(seen) == 1200


def test_archive_names_give_their_time() -> None:
    from snapstore.agent.tarball import time_from_name

    def name(text: str) -> str | None:
        moment = time_from_name(text, UTC)
        return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S")

    assert name("/backup/orchestrator/orchestrator-20261101_070000.tar.gz") == "2026-11-01T07:00:00"
    assert name("orchestrator-2026-11-01-070512.tgz") == "2026-11-01T07:05:12"
    assert name("daily-2026-11-01.tar.gz") == "2026-11-01T00:00:00"
    assert name("weekly-2026-W47.tar.gz") == "2026-11-22T00:00:00"  # the Sunday of ISO week 47
    assert name("monthly-2026-11.tar.gz") == "2026-11-01T00:00:00"
    assert name("orchestrator-20261301_070000.tar.gz") is None  # month 13: no date in the name
    assert name("backup.tar.gz") is None
    berlin = time_from_name("orchestrator-20261101_070000.tar.gz", ZoneInfo("Europe/Berlin"))
    assert berlin == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
