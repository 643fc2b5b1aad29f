"""A robustness soak for snap: weighted random actions from concurrent clients, with damage.

In the style of kopia's ``tests/robustness`` and ``tests/endurance_test``: the engine drives the
real ``snap`` command (a subprocess per action, nothing imported from the store) against one
repository from two or three clients, each with a source tree of its own that changes between
takes. What every snapshot must contain is kept *outside* the repository: the engine hashes a
client's tree just before each take and files that manifest under the snapshot id the take
prints. After every step the engine checks what a user relies on:

- every snapshot the engine did not forget is still listed and, when restored, is byte for
  byte its manifest (types, sizes, BLAKE3 of contents, symlink targets);
- no command printed a traceback, died of a signal it was not sent, or left the repository in a
  state that asks a person to run ``snap repair`` while nothing was damaged;
- damage the soak injected itself (a flipped bit in a pack) is found by ``verify --read-data``
  and is never returned as data: a restore either gives the right bytes or fails naming damage.

Injected faults: SIGKILL of a running take / gc / forget / copy at a random moment, bit flips
in blob payloads and in pack tables (stop-the-world steps: the flip is undone afterwards, so
"data lost" counts only what the store lost, never what the soak broke), ENOSPC from a small
tmpfs holding the repository (root only), and simulated time (``SNAP_NOW``: days pass between
steps, each client's clock skewed against the others by less than the 30 s the lease protocol
allows). Besides take, restore, forget, gc, verify, mount and copy, clients import tar archives
of their folders and run ``repair index`` (killed half way at times).

A seed makes a run reproducible up to thread interleaving: the actions each client draws,
their arguments, the kill delays and the flip positions all come from per-client generators
seeded from it. ``run_soak`` returns a :class:`SoakReport`; ``benchmarks/soak.py`` prints it as
a table and tests/soak runs a short one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import blake3

#: exit codes a command may end with under the soak's faults (docs/cli.md): 0 ok, 3 partial,
#: 4 damage found, 5 not found (a snapshot another client forgot), 11 locked, 13 disk full,
#: 15 remote failing. Anything else (1, a traceback, a signal we did not send) is a problem.
EXPECTED_CODES = {0, 3, 4, 5, 11, 13, 15}
DAMAGE_CODES = {3, 4}

Manifest = dict[str, tuple[str, int, str]]  # relative path -> (kind, size, digest or link target)

BASE_TIME = 1_790_000_000  # 2026-09-21: simulated time starts here
DAY = 86_400
LEASE_SKEW_S = 30  # the clock skew between hosts the lease protocol allows (docs/format.md, Leases)


@dataclass
class SoakConfig:
    """What to run: the repository, how long, how many clients, which faults."""

    workdir: Path
    repo: str = ""  # a path or s3:// URL; empty: a local repository under workdir
    seed: int = 1
    steps: int = 60  # actions per client (the run ends at steps or seconds, whichever first)
    seconds: float = 0.0  # wall-clock budget (0: no limit)
    clients: int = 2
    env: dict[str, str] = field(default_factory=dict)  # extra environment (S3 endpoint, keys)
    kills: bool = True
    flips: bool = True  # needs a local repository
    enospc: bool = False  # needs root: the repository lives on a small tmpfs
    tmpfs_mb: int = 96
    mount: bool = False  # mount-and-read actions (needs /dev/fuse)
    copy: bool = True
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "snapstore"])
    timeout: float = 300.0


@dataclass
class SoakReport:
    """What happened: counts by action and outcome, faults injected, problems found."""

    seed: int
    actions: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # "take:0", "gc:11", ...
    kills: int = 0
    flips: int = 0
    flips_found: int = 0
    enospc_hits: int = 0
    restores_checked: int = 0
    problems: list[str] = field(default_factory=list)
    data_lost: int = 0  # snapshots (or files in them) the store lost on its own
    seconds: float = 0.0

    def table(self) -> list[tuple[str, str]]:
        rows = [("seed", str(self.seed)), ("seconds", f"{self.seconds:.0f}"),
                ("actions", str(sum(self.actions.values())))]
        rows += [(f"  {name}", str(n)) for name, n in sorted(self.actions.items())]
        rows += [("kills (SIGKILL)", str(self.kills)), ("bit flips", str(self.flips)),
                 ("  found by verify", str(self.flips_found)), ("ENOSPC hits", str(self.enospc_hits)),
                 ("restores compared", str(self.restores_checked)),
                 ("problems", str(len(self.problems))), ("data lost", str(self.data_lost))]
        return rows

    def to_json(self) -> dict[str, object]:
        return {"seed": self.seed, "seconds": round(self.seconds, 1), "actions": dict(self.actions),
                "outcomes": dict(self.outcomes), "kills": self.kills, "flips": self.flips,
                "flips_found": self.flips_found, "enospc_hits": self.enospc_hits,
                "restores_checked": self.restores_checked, "problems": self.problems,
                "data_lost": self.data_lost}


@dataclass(frozen=True)
class Kill:
    """How one command is killed: SIGKILL after ``after`` seconds, and/or ``env`` (a crash mark)."""

    after: float | None
    env: dict[str, str]


@dataclass
class Result:
    code: int
    out: str
    err: str


def manifest_of(root: Path) -> Manifest:
    """What a restore of ``root`` must give back: kind, size and content digest per path."""
    out: Manifest = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, broot))
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", 0, "")
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.fsdecode(os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                hasher = blake3.blake3()
                with open(full, "rb") as handle:
                    while block := handle.read(1 << 20):
                        hasher.update(block)
                out[rel] = ("file", st.st_size, hasher.hexdigest())
    return out


class SourceTree:
    """One client's changing agent folder: SOUL.md, skills, memory, weights, a growing log."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.counter = 0
        for sub in ("skills/triage", "memory", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "SOUL.md").write_text("# Agent\nYou keep the fleet's state safe.\n" * 40)
        (root / "skills/triage/run.py").write_text("print('triage')\n")
        (root / "priority_weights.json").write_text(json.dumps({"relevance": 0.5, "urgency": 0.3}))
        (root / "weights.bin").write_bytes(rng.randbytes(1_500_000))
        (root / "logs/agent.log").write_text("".join(f"{i} started task {i * 7}\n" for i in range(3000)))
        os.symlink("SOUL.md", root / "charter-link")

    def mutate(self) -> None:
        """A few changes of the kinds agents make between backups."""
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            self.counter += 1
            kind = rng.choice(["append-log", "rewrite-json", "new-memory", "delete-memory", "weights",
                               "rotate-log", "new-skill", "touch"])
            if kind == "append-log":
                with open(self.root / "logs/agent.log", "a") as handle:
                    handle.write("".join(f"{self.counter} event {rng.random():.6f}\n" for _ in range(200)))
            elif kind == "rewrite-json":
                (self.root / "priority_weights.json").write_text(
                    json.dumps({"relevance": rng.random(), "urgency": rng.random(), "n": self.counter}))
            elif kind == "new-memory":
                (self.root / f"memory/lesson-{self.counter}.md").write_text(f"- lesson {self.counter}\n" * 30)
            elif kind == "delete-memory":
                notes = sorted((self.root / "memory").glob("*.md"))
                if notes:
                    rng.choice(notes).unlink()
            elif kind == "weights":
                data = bytearray((self.root / "weights.bin").read_bytes())
                at = rng.randrange(len(data) - 4096)
                data[at : at + 4096] = rng.randbytes(4096)
                (self.root / "weights.bin").write_bytes(bytes(data))
            elif kind == "rotate-log":
                log = self.root / "logs/agent.log"
                if log.exists():
                    log.rename(self.root / f"logs/agent.log.{self.counter}")
                    log.write_text(f"rotated {self.counter}\n")
                old = sorted((self.root / "logs").glob("agent.log.*"))
                for extra in old[:-2]:
                    extra.unlink()
            elif kind == "new-skill":
                skill = self.root / f"skills/s{self.counter}"
                skill.mkdir(exist_ok=True)
                (skill / "main.py").write_text(f"def run():\n    return {self.counter}\n")
            else:
                os.utime(self.root / "SOUL.md")


class Soak:
    """The engine. ``run()`` returns the report; see the module docstring."""

    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.report = SoakReport(seed=cfg.seed)
        self.work = cfg.workdir
        self.work.mkdir(parents=True, exist_ok=True)
        self.tmpfs: Path | None = None
        self.repo = cfg.repo
        self.repo2 = str(self.work / "copy-target")
        self.expected: dict[str, Manifest] = {}  # snapshot id -> what it must restore to
        # snapshot id -> when it became expected (time.monotonic()): a listing that began before
        # then may rightly not show it (the take committed while the listing ran)
        self.expected_since: dict[str, float] = {}
        self.origin: dict[str, int] = {}  # snapshot id -> the client whose tree it holds
        self.copied: set[str] = set()
        self.lock = threading.Lock()  # guards expected / report
        self.world = _SharedExclusive()  # normal actions shared, flips and disk-full exclusive
        self.pending_takes: dict[str, tuple[int, Manifest]] = {}  # tag -> (client, manifest) of a take in flight
        # a killed (or failed) forget's snapshot, and when the forget ended: it may stay, or the
        # next command may finish the forget (its intent was stored)
        self.forgotten_maybe: dict[str, tuple[Manifest, float]] = {}
        self.last_step = 0  # the latest simulated step any client reached
        # every command run, in order of completion: what a reported loss is explained with
        self.events: list[str] = []
        self.adopted: dict[str, str] = {}  # tag -> snapshot id adopted from a listing
        self.stop_at = time.monotonic() + cfg.seconds if cfg.seconds else float("inf")

    # -- running snap -----------------------------------------------------------------------
    def env_for(self, client: int, step: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
        env.update(self.cfg.env)
        # simulated time: half a day per step; each client's clock is off against client 0's by
        # a skew that changes from step to step and stays below what the lease protocol allows
        skew = 0 if client == 0 else (client * 11 + step * 7) % (LEASE_SKEW_S - 1)
        now = BASE_TIME + step * DAY // 2 + skew
        env["SNAP_NOW"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.lock:
            self.last_step = max(self.last_step, step)
        env["SNAP_HOSTNAME"] = env.get("SNAP_HOSTNAME", f"soak-client-{client}")
        env.setdefault("XDG_CACHE_HOME", str(self.work / f"cache-{client}"))
        # the repository is encrypted (the default): a throwaway password, and the test-only
        # key-derivation parameters (recorded in the key file) when none were chosen
        env.setdefault("SNAP_PASSWORD", "soak throwaway password")
        env.setdefault("SNAP_KDF_PROFILE", "test")
        return env

    def snap(self, client: int, step: int, *args: str, repo: str | None = None, name: str = "",
             kill: Kill | None = None, cwd: Path | None = None) -> Result:
        cmd = [*self.cfg.command, "--repo", repo or self.repo, "--wait", "20", *args]
        env = self.env_for(client, step)
        env.update(kill.env if kill else {})
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd or self.work)
        killed = False
        kill_after = kill.after if kill else None
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                killed = True
        try:
            out, err = proc.communicate(timeout=self.cfg.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.problem(f"{name or args[0]} hung for {self.cfg.timeout:.0f} s: {' '.join(args)}")
        result = Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        what = name or args[0]
        if kill is not None and kill.env and proc.returncode == -signal.SIGKILL:
            killed = True  # it reached the crash mark and killed itself there
        last_err = result.err.strip().splitlines()[-1:] if result.err.strip() else []
        mark = kill.env.get("SNAP_TEST_CRASH_AT", "a random moment") if kill else ""
        outcome = f"killed at {mark}" if killed else str(result.code)
        with self.lock:
            self.events.append(f"client {client} step {step}: {' '.join(args)} -> {outcome} "
                               f"{result.out.strip()[:120]!r} {last_err}")
            self.report.outcomes[f"{what}:{'killed' if killed else result.code}"] += 1
            if killed:
                self.report.kills += 1
            elif result.code == 13:
                self.report.enospc_hits += 1
        if killed:
            return result
        if "Traceback" in result.err or "Traceback" in result.out:
            self.problem(f"{what} printed a traceback: {result.err.strip().splitlines()[-6:]}")
        elif result.code not in EXPECTED_CODES:
            self.problem(f"{what} exited {result.code}: {result.err.strip()[:300]}")
        elif result.code in DAMAGE_CODES and not self.world.damaged:
            self.problem(f"{what} reported damage nobody injected (exit {result.code}): {result.err.strip()[:300]}")
        if "repair" in result.err and result.code not in (0, 11) and not self.world.damaged:
            # (exit 11 names the holder of a lock, which may be a running 'snap repair')
            self.problem(f"{what} asked for a repair after a crash: {result.err.strip()[:300]}")
        return result

    def problem(self, text: str) -> None:
        with self.lock:
            self.report.problems.append(text)

    def lost(self, text: str, snap_id: str = "") -> None:
        with self.lock:
            self.report.data_lost += 1
            self.report.problems.append("DATA LOST: " + text)
            if snap_id:
                # the commands that named it (its take by id or by tag, forgets, restores)
                tags = [t for t, sid in self.adopted.items() if sid == snap_id]
                keys = [snap_id[:8], *tags]
                self.report.problems += [f"  {e}" for e in self.events if any(k in e for k in keys)][-12:]

    # -- actions ----------------------------------------------------------------------------
    def live(self) -> list[str]:
        with self.lock:
            return sorted(self.expected)

    def kill_plan(self, rng: random.Random, probability: float, marks: tuple[str, ...] = ()) -> Kill | None:
        """How to kill the next command, or None. Half the kills come at a random moment (the
        command slowed down a little so the moment falls inside its work, not after it), half at
        a named progress mark where the command SIGKILLs itself (``SNAP_TEST_CRASH_AT``)."""
        if not self.cfg.kills or rng.random() >= probability:
            return None
        if marks and rng.random() < 0.5:
            return Kill(after=None, env={"SNAP_TEST_CRASH_AT": rng.choice(marks)})
        return Kill(after=rng.uniform(0.2, 0.8), env={"SNAP_TEST_SLOW_STORE": "0.05"})

    def do_take(self, client: int, step: int, tree: SourceTree, rng: random.Random, *, kills: bool = True) -> None:
        tree.mutate()
        manifest = manifest_of(tree.root)
        tag = f"c{client}-s{step}-{rng.randrange(1 << 30):x}"
        with self.lock:
            self.pending_takes[tag] = (client, manifest)
        kill = self.kill_plan(rng, 0.25, ("take-before-commit", "take-after-record")) if kills else None
        # run from the client's directory: the snapshot holds agents/A<client>/..., as a user's would
        res = self.snap(client, step, "take", "--tag", tag, "--json", f"agents/{tree.root.name}", name="take",
                        kill=kill, cwd=tree.root.parent.parent)
        if res.code in (0, 3) and res.out.strip():
            try:
                snap_id = json.loads(res.out)["id"]
            except (ValueError, KeyError, TypeError):
                self.problem(f"take printed no snapshot id: {res.out[:200]}")
                return
            with self.lock:
                self.expected[snap_id] = manifest
                self.expected_since[snap_id] = time.monotonic()
                self.origin[snap_id] = client
                self.pending_takes.pop(tag, None)

    def adopt_killed_takes(self, listing: list[dict[str, object]]) -> None:
        """A take killed after its commit made a snapshot we did not hear of: adopt it by tag."""
        with self.lock:
            for snap in listing:
                sid = str(snap["id"])
                if sid in self.expected:
                    continue
                tags = snap.get("tags")
                for tag in tags if isinstance(tags, list) else []:
                    pending = self.pending_takes.pop(str(tag), None)
                    if pending is not None:
                        self.origin[sid], self.expected[sid] = pending
                        self.expected_since[sid] = time.monotonic()
                        self.adopted[str(tag)] = sid
                        self.events.append(f"adopted {sid[:8]} (tag {tag}) from a listing")

    def do_list_check(self, client: int, step: int) -> list[dict[str, object]] | None:
        began = time.monotonic()
        res = self.snap(client, step, "list", "--json", name="list")
        if res.code != 0:
            return None
        try:
            listing = json.loads(res.out)
        except ValueError:
            self.problem(f"list --json printed no JSON: {res.out[:200]}")
            return None
        items = listing if isinstance(listing, list) else listing.get("snapshots", [])
        self.adopt_killed_takes(items)
        present = {str(s["id"]) for s in items}
        with self.lock:
            # Only a listing by a command that began after the forget ended says the forget did
            # not happen (that command would have finished it): a listing already under way
            # when the forget was killed may still show a snapshot whose intent was stored.
            for sid in [s for s, (_m, ended) in self.forgotten_maybe.items() if s in present and ended < began]:
                self.expected[sid] = self.forgotten_maybe.pop(sid)[0]  # the killed forget did not happen
                self.expected_since[sid] = time.monotonic()
        with self.lock:
            # only what was expected before the listing began must be in it: a take that ended
            # while the listing ran committed after the listing's sync, or before it
            missing = [sid for sid in self.expected if sid not in present and self.expected_since.get(sid, 0.0) < began]
        for sid in missing:
            if "://" not in self.repo and (Path(self.repo) / "snapshots" / f"{sid}.json").is_file():
                # its record is still there: no loss, but a listing must show every snapshot
                # whose take ended before it began; it stays expected, so a later listing says
                # whether the miss was passing
                self.problem(f"client {client} step {step}: the listing missed snapshot {sid[:8]}, whose record "
                             "is in the repository")
                continue
            # forgotten concurrently by this engine? forget removes from expected before it runs
            self.lost(f"snapshot {sid[:8]} vanished from the listing", sid)
            with self.lock:
                self.expected.pop(sid, None)
        return items

    def do_restore(self, client: int, step: int, rng: random.Random, snap_id: str | None = None,
                   repo: str | None = None) -> None:
        live = self.live()
        if not live:
            return
        sid = snap_id or rng.choice(live)
        with self.lock:
            want = self.expected.get(sid)
        if want is None:
            return
        target = Path(tempfile.mkdtemp(prefix="restore-", dir=self.work))
        try:
            res = self.snap(client, step, "restore", sid, "--target", str(target), name="restore", repo=repo)
            if res.code == 5:  # forgotten by another client meanwhile
                return
            if res.code != 0:
                if res.code in DAMAGE_CODES and self.world.damaged:
                    return  # the soak's own flip: a refusal naming damage is the right answer
                if res.code not in (11, 13):
                    self.lost(f"restore of {sid[:8]} failed (exit {res.code}): {res.err.strip()[:200]}", sid)
                return
            got = self.restored_manifest(target)
            with self.lock:
                self.report.restores_checked += 1
            if got != want:
                diff = sorted(set(got.items()) ^ set(want.items()))[:3]
                self.lost(f"restore of {sid[:8]} differs from what was taken: {diff}", sid)
        finally:
            shutil.rmtree(target, ignore_errors=True)

    @staticmethod
    def restored_manifest(target: Path) -> Manifest:
        """The restored tree below its one agents/A<client> folder (what the take was of), or
        its one A<client> folder (an import: the archive's top directory was stripped)."""
        if not (target / "agents").is_dir():
            tops = sorted(target.iterdir())
            if len(tops) == 1 and tops[0].is_dir() and tops[0].name.startswith("A"):
                return manifest_of(tops[0])
        agents = sorted((target / "agents").iterdir()) if (target / "agents").is_dir() else []
        if len(agents) != 1:
            return {"<restore layout>": ("dir", len(agents), "not one agents/ folder")}
        return manifest_of(agents[0])

    def do_forget(self, client: int, step: int, rng: random.Random) -> None:
        live = self.live()
        if len(live) < 4:
            return
        sid = rng.choice(live)
        with self.lock:
            manifest = self.expected.pop(sid)  # from now on its absence is no loss
        kill = self.kill_plan(rng, 0.3, ("forget-after-intent", "forget-mid-delete"))
        res = self.snap(client, step, "forget", sid, name="forget", kill=kill)
        if res.code == 11 and kill is None:
            with self.lock:
                self.expected[sid] = manifest  # refused (a lock): it must still be there
                self.expected_since[sid] = time.monotonic()
        elif res.code == 13 or (kill is not None and res.code < 0):
            # killed, or a full disk after its intent was stored: either outcome is right
            with self.lock:
                self.forgotten_maybe[sid] = (manifest, time.monotonic())

    def do_import(self, client: int, step: int, tree: SourceTree, rng: random.Random) -> None:
        """A tar of the client's folder (``agents/A<client>/...``) imported as a snapshot: the
        importer strips the one top directory, so the snapshot holds ``A<client>/...``."""
        tree.mutate()
        manifest = manifest_of(tree.root)
        tag = f"i{client}-s{step}-{rng.randrange(1 << 30):x}"
        archive = self.work / f"import-{tag}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(tree.root.parent, arcname="agents")
        with self.lock:
            self.pending_takes[tag] = (client, manifest)
        kill = self.kill_plan(rng, 0.2, ("take-before-commit", "take-after-record"))
        try:
            res = self.snap(client, step, "import", str(archive), "--tag", tag, "--json", name="import", kill=kill)
        finally:
            archive.unlink(missing_ok=True)
        if res.code != 0 or not res.out.strip():
            return
        try:
            imported = json.loads(res.out)["imported"]
        except (ValueError, KeyError, TypeError):
            self.problem(f"import printed no snapshot: {res.out[:200]}")
            return
        with self.lock:
            for item in imported:
                self.expected[str(item["id"])] = manifest
                self.expected_since[str(item["id"])] = time.monotonic()
                self.origin[str(item["id"])] = client
            self.pending_takes.pop(tag, None)

    def do_repair(self, client: int, step: int, rng: random.Random) -> None:
        """``repair index`` with nothing damaged (flips are stop-the-world): every snapshot must
        survive it, and a repair killed half way must leave the old index working."""
        kill = self.kill_plan(rng, 0.3, ("repair-mid-build",))
        self.snap(client, step, "repair", "index", name="repair", kill=kill)

    def do_gc(self, client: int, step: int, rng: random.Random) -> None:
        kill = self.kill_plan(rng, 0.3, ("gc-after-rewrite", "gc-after-commit", "gc-mid-delete"))
        self.snap(client, step, "gc", name="gc", kill=kill)

    def do_verify(self, client: int, step: int, rng: random.Random) -> None:
        args = ["verify", "--read-data"] if rng.random() < 0.5 else ["verify"]
        self.snap(client, step, *args, name="verify")

    def do_copy(self, client: int, step: int, rng: random.Random) -> None:
        live = self.live()
        if not live:
            return
        sid = rng.choice(live)
        kill = self.kill_plan(rng, 0.2)
        res = self.snap(client, step, "copy", sid, "--to", self.repo2, "--init", name="copy", kill=kill)
        if res.code == 0:
            with self.lock:
                self.copied.add(sid)
            self.do_restore(client, step, rng, snap_id=sid, repo=self.repo2)

    def do_mount(self, client: int, step: int, rng: random.Random) -> None:
        live = self.live()
        if not live:
            return
        sid = rng.choice(live)
        with self.lock:
            want = self.expected.get(sid)
        if want is None:
            return
        mp = Path(tempfile.mkdtemp(prefix="mnt-", dir=self.work))
        cmd = [*self.cfg.command, "--repo", self.repo, "mount", "--foreground", str(mp)]
        proc = subprocess.Popen(cmd, env=self.env_for(client, step), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while not os.path.ismount(mp) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            if not os.path.ismount(mp):
                err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None and proc.stderr else ""
                if "Traceback" in err:
                    self.problem(f"mount printed a traceback: {err.strip().splitlines()[-1:]}")
                return
            with self.lock:
                self.report.outcomes["mount:0"] += 1
            base = self.find_snapshot_dir(mp / "snapshots", sid)
            if base is None:
                return  # forgotten meanwhile
            files = [p for p, (kind, _s, _d) in want.items() if kind == "file"]
            for rel in rng.sample(files, min(3, len(files))):
                try:
                    data = (base / rel).read_bytes()
                except FileNotFoundError:
                    self.lost(f"mount: {sid[:8]}/{rel} is missing")
                    continue
                except OSError as exc:
                    if not self.world.damaged:
                        self.lost(f"mount: reading {sid[:8]}/{rel} failed: {exc}")
                    continue
                if blake3.blake3(data).hexdigest() != want[rel][2]:
                    self.lost(f"mount: {sid[:8]}/{rel} differs from what was taken")
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                mp.rmdir()

    @staticmethod
    def find_snapshot_dir(snapshots: Path, sid: str) -> Path | None:
        """The agent folder inside a mounted snapshot, or None when the snapshot is gone."""
        for entry in snapshots.iterdir():
            if sid.startswith(entry.name) or entry.name.startswith(sid[:8]):
                agents = sorted((entry / "agents").iterdir()) if (entry / "agents").is_dir() else []
                return agents[0] if len(agents) == 1 else None
        return None

    # -- stop-the-world faults ----------------------------------------------------------------
    def pack_files(self) -> list[Path]:
        root = Path(self.repo) / "packs"
        return sorted(p for p in root.rglob("*.pack") if p.is_file()) if root.is_dir() else []

    def do_flip(self, client: int, step: int, rng: random.Random) -> None:
        """Flip one bit in a pack (payload or table), check that verify finds it and that no
        restore returns wrong bytes, then undo the flip and check the repository is clean."""
        with self.world.exclusive():
            packs = self.pack_files()
            if not packs:
                return
            pack = rng.choice(packs)
            size = pack.stat().st_size
            if size < 64:
                return
            where = "table" if rng.random() < 0.3 else "payload"
            offset = rng.randrange(max(size - 200, 0), size) if where == "table" else rng.randrange(0, size)
            bit = 1 << rng.randrange(8)
            with open(pack, "r+b") as handle:
                handle.seek(offset)
                original = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([original[0] ^ bit]))
            with self.lock:
                self.report.flips += 1
                self.report.actions[f"flip-{where}"] += 1
            self.world.damaged = True
            try:
                res = self.snap(client, step, "verify", "--read-data", name="verify-flip")
                if res.code == 4 and pack.stem[:8] in (res.out + res.err):
                    with self.lock:
                        self.report.flips_found += 1
                elif res.code == 4:
                    self.problem(f"verify found damage but did not name pack {pack.stem[:12]}: {res.err[:200]}")
                    with self.lock:
                        self.report.flips_found += 1
                else:
                    self.problem(f"verify --read-data missed a bit flip in the {where} of pack {pack.stem[:12]} "
                                 f"at {offset}/{size} (exit {res.code})")
                for sid in rng.sample(self.live(), min(3, len(self.live()))):
                    self.do_restore(client, step, rng, snap_id=sid)
            finally:
                if pack.exists():  # nothing may move a damaged pack aside without a repair command
                    with open(pack, "r+b") as handle:
                        handle.seek(offset)
                        handle.write(original)
                else:
                    self.problem(f"pack {pack.stem[:12]} disappeared while damaged")
                self.world.damaged = False
            res = self.snap(client, step, "verify", name="verify-after-flip")
            if res.code != 0:
                self.problem(f"verify after undoing a flip exited {res.code}: {res.err.strip()[:200]}")

    def do_disk_full(self, client: int, step: int, tree: SourceTree, rng: random.Random) -> None:
        """Fill the repository's tmpfs almost to the brim, take, then free the space again."""
        if self.tmpfs is None:
            return
        with self.world.exclusive():
            filler = self.tmpfs / "filler"
            free = shutil.disk_usage(self.tmpfs).free
            leave = rng.randrange(0, 400_000)
            try:
                with open(filler, "wb") as handle:
                    handle.truncate(0)
                    remaining = max(free - leave, 0)
                    block = b"\0" * (1 << 20)
                    while remaining > 0:
                        handle.write(block[: min(len(block), remaining)])
                        remaining -= len(block)
            except OSError:
                pass
            with self.lock:
                self.report.actions["disk-full"] += 1
            burst = tree.root / f"burst-{step}.bin"  # more new data than the room left: a real ENOSPC
            burst.write_bytes(rng.randbytes(1_000_000))
            try:
                self.do_take(client, step, tree, rng, kills=False)  # this take is for the full disk
                self.snap(client, step, "gc", name="gc-full")
            finally:
                filler.unlink(missing_ok=True)
                burst.unlink(missing_ok=True)
            res = self.snap(client, step, "verify", name="verify-after-full")
            if res.code != 0:
                self.problem(f"verify after a full disk exited {res.code}: {res.err.strip()[:200]}")

    # -- the run ------------------------------------------------------------------------------
    def client_loop(self, client: int) -> None:
        rng = random.Random(self.cfg.seed * 1000 + client)
        tree = SourceTree(self.work / f"client-{client}" / "agents" / f"A{client}", rng)
        weights = {"take": 30, "restore": 14, "list": 8, "forget": 8, "gc": 8, "verify": 6, "import": 3, "repair": 2}
        if self.cfg.copy:
            weights["copy"] = 4
        if self.cfg.mount:
            weights["mount"] = 3
        if self.cfg.flips and client == 0 and "://" not in self.repo:
            weights["flip"] = 3
        if self.cfg.enospc and client == 0 and self.tmpfs is not None:
            weights["disk-full"] = 2
        names, w = zip(*sorted(weights.items()), strict=True)
        for step in range(self.cfg.steps):
            # the first four steps run whatever the time budget: two takes, then (client 0) a
            # bit flip and a full disk, so that every run meets each fault it was asked for
            if step >= 4 and time.monotonic() > self.stop_at:
                break
            action = "take" if step < 2 else rng.choices(names, w)[0]
            if step == 2 and "flip" in weights:
                action = "flip"
            elif step == 3 and "disk-full" in weights:
                action = "disk-full"
            with self.lock:
                if action not in ("flip", "disk-full"):
                    self.report.actions[action] += 1
            if action == "flip":
                self.do_flip(client, step, rng)
                continue
            if action == "disk-full":
                self.do_disk_full(client, step, tree, rng)
                continue
            with self.world.shared():
                if action == "take":
                    self.do_take(client, step, tree, rng)
                elif action == "restore":
                    self.do_restore(client, step, rng)
                elif action == "list":
                    self.do_list_check(client, step)
                elif action == "forget":
                    self.do_forget(client, step, rng)
                elif action == "gc":
                    self.do_gc(client, step, rng)
                elif action == "verify":
                    self.do_verify(client, step, rng)
                elif action == "import":
                    self.do_import(client, step, tree, rng)
                elif action == "repair":
                    self.do_repair(client, step, rng)
                elif action == "copy":
                    self.do_copy(client, step, rng)
                elif action == "mount":
                    self.do_mount(client, step, rng)

    def setup(self) -> None:
        if not self.repo:
            base = self.work
            if self.cfg.enospc and os.geteuid() == 0:
                self.tmpfs = self.work / "tmpfs"
                self.tmpfs.mkdir(exist_ok=True)
                done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.cfg.tmpfs_mb}m", "soak",
                                       str(self.tmpfs)], capture_output=True)
                if done.returncode == 0:
                    base = self.tmpfs
                else:
                    self.tmpfs = None
            self.repo = str(base / "repo")
        res = self.snap(0, 0, "init", name="init")
        if res.code != 0:
            raise RuntimeError(f"snap init failed: {res.err.strip()}")

    def teardown(self) -> None:
        if self.report.problems:
            # what went wrong stays for a post-mortem: the repository (off the tmpfs that goes
            # away) and the log of every command
            if self.tmpfs is not None:
                shutil.copytree(self.tmpfs / "repo", self.work / "repo-at-the-end", symlinks=True,
                                dirs_exist_ok=True)
            (self.work / "events.log").write_text("\n".join(self.events) + "\n")
        if self.tmpfs is not None:
            subprocess.run(["umount", "-l", str(self.tmpfs)], capture_output=True)

    def final_check(self) -> None:
        """Everything at the end: the listing, every live snapshot restored, a full verify."""
        rng = random.Random(self.cfg.seed)
        step = self.last_step + 1
        self.do_list_check(0, step)
        for sid in self.live():
            self.do_restore(0, step, rng, snap_id=sid)
        res = self.snap(0, step, "verify", "--read-data", name="verify-final")
        if res.code != 0:
            self.problem(f"final verify --read-data exited {res.code}: {res.err.strip()[:300]}")

    def run(self) -> SoakReport:
        started = time.monotonic()
        self.setup()
        try:
            threads = [threading.Thread(target=self._guarded, args=(c,), name=f"soak-client-{c}")
                       for c in range(self.cfg.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.final_check()
        finally:
            self.teardown()
            self.report.seconds = time.monotonic() - started
        return self.report

    def _guarded(self, client: int) -> None:
        try:
            self.client_loop(client)
        except Exception as exc:  # an engine bug must show up as a problem, not vanish in a thread
            self.problem(f"soak engine error in client {client}: {exc!r}")


class _SharedExclusive:
    """A reader-writer lock: ordinary actions share it, fault injection holds it alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self.damaged = False  # the soak's own damage is in the repository right now

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def run_soak(cfg: SoakConfig) -> SoakReport:
    """Run one soak and return its report (see :class:`Soak`)."""
    return Soak(cfg).run()
