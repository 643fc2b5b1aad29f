"""Time to bring agent Z back: ``snap recover Z`` beside the old runbook's steps typed by hand.

On the sample workspace (``snapfixtures.sampledata``, default 200 MB; Z's folder holds its
SOUL.md, skills, memory, priority_weights.json and the largest file, weights.bin) with a
weekly snapshot of ``agents`` and a daily one of the weights and memory, Z runs as a real
process (``snapfixtures.agentproc``, touching a heartbeat file). Each round kills Z, corrupts
its priority_weights.json and adds a rogue skill, then measures from the command's start to
"Z restored and started" (its heartbeat moving):

- ``snap recover Z``: one command (plan, restore to staging, json check, stop, move aside,
  swap, start, wait for the heartbeat);
- the old runbook, each step a command run as fast as a script can: ``snap restore
  latest:weekly agents/Z --target TMP``, ``snap restore latest:daily agents/Z/memory
  agents/Z/priority_weights.json --target TMP --overwrite``, ``cp -a TMP/agents/Z/. agents/Z/``,
  then restart Z and poll its heartbeat. (It leaves the rogue file in place: the runbook has
  no step that removes it.)

    python benchmarks/bench_recover.py [--size 200M] [--rounds 5] [--workdir /tmp/snapbench-recover] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import human_bytes, print_table, tree_bytes  # noqa: E402
from snapfixtures.sampledata import generate_workspace, parse_size  # noqa: E402

SNAP = [sys.executable, "-m", "snapstore"]
AGENT = [sys.executable, "-m", "snapfixtures.agentproc"]


def snap(ws: Path, *args: str, now: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ="UTC")
    env.pop("SNAP_REPO", None)
    if now:
        env["SNAP_NOW"] = now
    proc = subprocess.run([*SNAP, "--config", str(ws / "backup_schedule.json"), *args], cwd=ws, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snap {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def start_z(ws: Path, run: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*AGENT, "Z", "--run", str(run), "--heartbeat", "agents/Z/heartbeat", "--delay", "0",
                             "--state", "agents/Z/priority_weights.json"], cwd=ws,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_z(run: Path) -> None:
    try:
        os.killpg(int((run / "Z.pid").read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    time.sleep(0.05)


def damage(ws: Path) -> None:
    (ws / "agents" / "Z" / "priority_weights.json").write_text('{"relevance": 0.4, "urg')
    rogue = ws / "agents" / "Z" / "skills" / "bad"
    rogue.mkdir(parents=True, exist_ok=True)
    (rogue / "evil.py").write_text("import os\n")


def wait_heartbeat(ws: Path, since: float, timeout: float = 60.0) -> None:
    beat = ws / "agents" / "Z" / "heartbeat"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if beat.stat().st_mtime > since:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise SystemExit("Z's heartbeat did not move")


def setup(workdir: Path, size: int) -> tuple[Path, Path]:
    if workdir.exists():
        shutil.rmtree(workdir)
    ws, run = workdir / "ws", workdir / "run"
    generate_workspace(ws, size, seed=5)
    schedule = {
        "repository": "../repo",
        "tiers": {"weekly": {"sources": ["agents"]},
                  "daily": {"sources": ["agents/*/priority_weights.json", "agents/*/memory"]}},
        "agents": {"Z": {
            "folder": "agents/Z",
            "start": " ".join([*AGENT, "Z", "--run", str(run), "--heartbeat", "agents/Z/heartbeat", "--delay", "0",
                               "--state", "agents/Z/priority_weights.json"]),
            "stop": f"kill $(cat {run}/Z.pid) 2>/dev/null",
            "health": {"heartbeat": "agents/Z/heartbeat", "stale_after": "1s"},
            "within": "60s", "checks": ["json"]}},
    }
    (ws / "backup_schedule.json").write_text(json.dumps(schedule, indent=2))
    snap(ws, "init")
    snap(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z")
    with open(ws / "agents" / "Z" / "memory" / "kaizen_journal.md", "a") as journal:
        journal.write("- day 1\n")
    snap(ws, "take", "--tier", "daily", now="2026-11-30T07:00:00Z")
    return ws, run


def round_recover(ws: Path, run: Path) -> float:
    kill_z(run)
    damage(ws)
    started = time.perf_counter()
    snap(ws, "recover", "Z")  # returns once Z is healthy
    seconds = time.perf_counter() - started
    if (ws / "agents" / "Z" / "skills" / "bad").exists():
        raise SystemExit("snap recover left the rogue skill in place")
    return seconds


def round_runbook(ws: Path, run: Path, workdir: Path) -> float:
    kill_z(run)
    damage(ws)
    tmp = workdir / "runbook-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    started = time.perf_counter()
    snap(ws, "restore", "latest:weekly", "agents/Z", "--target", str(tmp))
    snap(ws, "restore", "latest:daily", "agents/Z/memory", "agents/Z/priority_weights.json", "--target", str(tmp),
         "--overwrite")
    subprocess.run(["cp", "-a", f"{tmp}/agents/Z/.", str(ws / "agents" / "Z") + "/"], check=True)
    since = time.time()
    start_z(ws, run)
    wait_heartbeat(ws, since)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="200M")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/snapbench-recover")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    ws, run = setup(workdir, parse_size(args.size))
    z_bytes = tree_bytes(ws / "agents" / "Z")
    recover, runbook, plan = [], [], []
    try:
        start_z(ws, run)
        wait_heartbeat(ws, 0)
        for _ in range(args.rounds):
            recover.append(round_recover(ws, run))
            runbook.append(round_runbook(ws, run, workdir))
            kill_z(run)
            started = time.perf_counter()
            snap(ws, "recover", "Z", "--dry-run")
            plan.append(time.perf_counter() - started)
    finally:
        kill_z(run)
    result = {"size": args.size, "z_folder_bytes": z_bytes, "rounds": args.rounds,
              "recover_s": recover, "runbook_s": runbook, "dry_run_s": plan}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    print(f"agents/Z: {human_bytes(z_bytes)}; median of {args.rounds} (min-max)")
    print_table(["what", "time to Z restored and started"], [
        ["snap recover Z", cell(recover)],
        ["old runbook: restore weekly + restore daily + cp -a + restart", cell(runbook)],
        ["snap recover Z --dry-run (the plan only)", cell(plan)],
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
