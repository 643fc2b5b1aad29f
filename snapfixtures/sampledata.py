"""Deterministic generator of realistic AI-agent workspaces, for tests, the demo and benchmarks.

This module owns the *shape of the data snap is built for*: an orchestrator workspace like the
ones our users back up today with tar + cron (see the design brief), and one day of change in it.

- :func:`generate_workspace` writes a workspace of a requested size under a directory:
  ``orchestrator_config.json``, the orchestrator state JSON, knowledge packs, a large ``logs/``
  tree (active logs of varied, realistically compressible text lines, rotated ``*.log.1`` and
  gzip'd ``*.log.N.gz``), and ``agents/{Z,Jay,Rick,Leroy}/`` with ``SOUL.md``, skills (Python
  scripts), memory files, ``priority_weights.json`` and a binary ``weights.bin`` (the largest
  file is Z's). ``small_files=N`` adds N small files spread over many directories.
- :func:`simulate_day` applies one day of change: appended log lines, one log rotation, edited
  memory, state and weight files, three files added and two removed.

Everything is a function of ``seed`` (and ``day``): two runs with the same arguments write the
same bytes (file times are not set and so are not part of that promise). Generation streams:
text is built in blocks from pre-generated pools with random fields and written at once; memory
stays bounded whatever ``size_bytes``. Pure standard library, so it also runs outside the venv.

Command line: ``python -m snapfixtures.sampledata ROOT [--size 1G] [--small-files N] [--seed S]``,
or ``--day D`` to apply one day of change to an existing workspace.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

__all__ = [
    "AGENTS",
    "LOG_NAMES",
    "DayChange",
    "WorkspaceInfo",
    "generate_workspace",
    "parse_size",
    "simulate_day",
]

AGENTS: tuple[str, ...] = ("Z", "Jay", "Rick", "Leroy")
CONFIG_NAME = "orchestrator_config.json"
STATE_FILE = "state/orchestrator_state.json"
LOGS_DIR = "logs"
KP_DIR = "knowledge-packs"
LOG_NAMES: tuple[str, ...] = (
    "app",
    "orchestrator",
    "scheduler",
    "tools",
    "agent-Z",
    "agent-Jay",
    "agent-Rick",
    "agent-Leroy",
)
_JSON_LOGS = frozenset({"tools"})  # structured (JSON lines) logs; the others are plain text
_GZ_GENERATIONS = (2, 3, 4)  # app.log.2.gz ... app.log.4.gz; rotation drops the last one
_KP_DAYS = 30  # knowledge packs kept (one .md and one .json per day)
_BASE_DAY = 1_740_787_200  # 2025-03-01T00:00:00Z: "day 0", the day the workspace is generated
_DAY_S = 86_400
_BLOCK = 4 << 20  # write unit for text and binary data
_SKILLS: dict[str, tuple[str, ...]] = {
    "Z": ("prioritize", "score_tasks", "kaizen_review", "backup"),
    "Jay": ("web_research", "summarize", "cite_sources", "knowledge_pack"),
    "Rick": ("run_tests", "code_review", "deploy", "refactor"),
    "Leroy": ("monitor", "incident_response", "log_triage", "heartbeat"),
}
_ROLES = {
    "Z": "chief of staff: ranks the queue, tunes the scoring weights and runs the kaizen loop",
    "Jay": "researcher: gathers sources, writes summaries and builds the knowledge packs",
    "Rick": "engineer: writes and reviews code, runs the test suites and ships the fixes",
    "Leroy": "operator: watches health, triages logs and answers incidents at any hour",
}
_WEIGHT_SHARE = {"Z": 0.12, "Jay": 0.05, "Rick": 0.04, "Leroy": 0.03}  # of size_bytes

_WORD_TEXT = (
    "agent task queue priority weight score kaizen lesson memory state runtime heartbeat "
    "orchestrator pipeline skill charter summary knowledge pack source citation retry "
    "timeout latency budget token model prompt context window embedding vector index cache "
    "snapshot backup restore retention schedule daily weekly escalate human approval rule "
    "review deploy test suite coverage regression incident alert metric threshold dashboard "
    "health check worker lease lock message route handoff dependency graph failure recovery "
    "rollback commit branch patch release config path file directory log rotation archive "
    "checksum verify research question answer evidence claim confidence estimate plan step "
    "goal constraint customer request ticket report insight trend anomaly signal noise "
    "batch stream event the a an of to in on for with by from after before when while "
    "during because so that fast slow stable flaky critical minor major new old stale fresh "
    "partial complete pending improve reduce increase track measure compare rank route "
    "assign retry cancel resume"
)
_WORDS = _WORD_TEXT.split()


@dataclass(frozen=True)
class WorkspaceInfo:
    """What :func:`generate_workspace` wrote."""

    root: Path
    files: int
    total_bytes: int
    largest_file: Path  # relative to root
    largest_bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class DayChange:
    """What :func:`simulate_day` changed (paths relative to the workspace root, POSIX style)."""

    day: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    bytes_appended: int = 0
    rotated: str = ""  # the log that was rotated, e.g. "logs/app.log"


# --------------------------------------------------------------------------------------------
# small helpers


def parse_size(text: str) -> int:
    """Parse ``100M``, ``1G``, ``1.5GiB``, ``5000`` (decimal units: K=1000, Ki=1024)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 5000, 50M, 1G)")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.lower()]
    return int(float(number) * base**power)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(_BASE_DAY + day * _DAY_S))


class _Tally:
    """Counts what was written: files, bytes, the largest file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.bytes = 0
        self.largest = Path()
        self.largest_bytes = -1

    def add(self, path: Path, size: int) -> None:
        self.files += 1
        self.bytes += size
        if size > self.largest_bytes:
            self.largest, self.largest_bytes = path.relative_to(self.root), size


def _write(path: Path, data: str | bytes, tally: _Tally | None = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    with open(path, "wb") as handle:
        handle.write(raw)
    if tally is not None:
        tally.add(path, len(raw))
    return len(raw)


def _write_json(path: Path, value: object, tally: _Tally | None = None) -> int:
    return _write(path, json.dumps(value, indent=2) + "\n", tally)


# --------------------------------------------------------------------------------------------
# text


class _Text:
    """Sentences, paragraphs and markdown from pools, cheap enough for megabytes of output."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sentences = [self._sentence() for _ in range(2048)]

    def _sentence(self) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randint(6, 22))
        if self.rng.random() < 0.3:
            words.insert(self.rng.randrange(len(words)), f"T-{self.rng.randint(10000, 99999)}")
        if self.rng.random() < 0.2:
            words.insert(self.rng.randrange(len(words)), f"{self.rng.randint(2, 98)}%")
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def paragraph(self, sentences: int = 4) -> str:
        return " ".join(self.rng.choices(self.sentences, k=sentences))

    def title(self, words: int = 4) -> str:
        return " ".join(self.rng.choices(_WORDS, k=words)).capitalize()

    def markdown(self, size: int, title: str) -> str:
        """A markdown document of about ``size`` bytes: headings, paragraphs, bullet lists."""
        parts = [f"# {title}\n"]
        total = len(parts[0])
        rng = self.rng
        while total < size:
            kind = rng.random()
            if kind < 0.15:
                part = f"\n## {self.title()}\n"
            elif kind < 0.45:
                items = rng.choices(self.sentences, k=rng.randint(2, 6))
                part = "\n" + "".join(f"- {item}\n" for item in items)
            else:
                part = "\n" + self.paragraph(rng.randint(2, 6)) + "\n"
            parts.append(part)
            total += len(part)
        return "".join(parts)


class _LogLines:
    """Blocks of log lines for one log: unique timestamps and request ids, varied bodies.

    Bodies come from a pool of pre-rendered messages with random fields, so a block is one
    list comprehension and one join. The mix (timestamp, request id, latency and the body's
    own numbers) compresses about 5x with zstd -3, like production logs.
    """

    _TOOL_TEXT = (
        "web_search read_file write_file run_python http_get summarize embed vector_query "
        "send_message schedule_task git_diff run_tests"
    )
    _TOOLS = _TOOL_TEXT.split()
    _MODELS = ("claude-sonnet-4", "claude-haiku-3.5", "gpt-4o-mini", "llama3-70b")
    _STATES = ("IDLE", "BUSY", "BUSY", "WAITING", "BUSY")

    def __init__(self, rng: random.Random, name: str) -> None:
        self.rng = rng
        self.json = name in _JSON_LOGS
        agent = name.removeprefix("agent-") if name.startswith("agent-") else ""
        self.actors = [agent] if agent else [*AGENTS, "orchestrator", "router"]
        self.pool = [self._body() for _ in range(6000)]
        self.latencies = [str(int(rng.lognormvariate(4.0, 1.3))) for _ in range(4096)]

    def _body(self) -> str:
        rng = self.rng
        task = f"T-{rng.randint(10000, 99999)}"
        pick = rng.random()
        if self.json:
            if pick < 0.5:
                return (
                    f'"level":"info","event":"tool_result","tool":"{rng.choice(self._TOOLS)}",'
                    f'"task":"{task}","tokens_in":{rng.randint(50, 9000)},'
                    f'"tokens_out":{rng.randint(5, 2000)},"model":"{rng.choice(self._MODELS)}","ok":true'
                )
            if pick < 0.97:
                return (
                    f'"level":"debug","event":"tool_call","tool":"{rng.choice(self._TOOLS)}",'
                    f'"task":"{task}","args_bytes":{rng.randint(10, 40000)},"attempt":{rng.randint(1, 3)}'
                )
            return (
                f'"level":"error","event":"tool_error","tool":"{rng.choice(self._TOOLS)}",'
                f'"task":"{task}","error":"TimeoutError: no answer after {rng.randint(5, 120)}s"'
            )
        if pick < 0.35:
            return (
                f"INFO  tool_call tool={rng.choice(self._TOOLS)} task={task} "
                f"tokens_in={rng.randint(50, 9000)} tokens_out={rng.randint(5, 2000)} "
                f"model={rng.choice(self._MODELS)} status=ok"
            )
        if pick < 0.6:
            return (
                f"INFO  dispatch task={task} to={rng.choice(AGENTS)} queue_depth={rng.randint(0, 40)} "
                f"priority={rng.random():.3f}"
            )
        if pick < 0.75:
            return (
                f"DEBUG memory.write key=lessons/{rng.randint(1, 5000)} bytes={rng.randint(100, 20000)} "
                f"kaizen_score={rng.random():.2f}"
            )
        if pick < 0.9:
            return (
                f"DEBUG heartbeat state={rng.choice(self._STATES)} rss_mb={rng.randint(100, 3000)} "
                f"open_tasks={rng.randint(0, 20)}"
            )
        if pick < 0.97:
            return (
                f"WARN  retry task={task} attempt={rng.randint(2, 5)} reason=rate_limited "
                f"backoff_ms={rng.randint(100, 30000)}"
            )
        line = rng.randint(20, 900)
        return (
            f"ERROR task failed task={task} error=TimeoutError\n"
            f"Traceback (most recent call last):\n"
            f'  File "/opt/orchestrator/agents/runner.py", line {line}, in run_step\n'
            f"    result = await skill.run(task, timeout={rng.randint(5, 120)})\n"
            f"TimeoutError: skill did not answer in time"
        )

    def block(self, start_ms: int, lines: int, mean_gap_ms: float) -> tuple[str, int]:
        """``lines`` lines from ``start_ms`` on, and the time of the last line."""
        rng = self.rng
        top = max(2, int(2 * mean_gap_ms))
        times = list(accumulate(rng.choices(range(1, top), k=lines), initial=start_ms))[1:]
        stamps = {s: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) for s in {t // 1000 for t in times}}
        rids = rng.randbytes(8 * lines).hex()
        bodies = rng.choices(self.pool, k=lines)
        actors = rng.choices(self.actors, k=lines)
        lats = rng.choices(self.latencies, k=lines)
        if self.json:
            text = "".join(
                [
                    f'{{"ts":"{stamps[t // 1000]}.{t % 1000:03d}Z","agent":"{a}",'
                    f'"req":"{rids[16 * i : 16 * i + 16]}",{b},"latency_ms":{x}}}\n'
                    for i, (t, a, b, x) in enumerate(zip(times, actors, bodies, lats, strict=True))
                ]
            )
        else:
            text = "".join(
                [
                    f"{stamps[t // 1000]}.{t % 1000:03d}Z {b[:5]} [{a}] req={rids[16 * i : 16 * i + 16]} "
                    f"{b[6:]} latency_ms={x}\n"
                    for i, (t, a, b, x) in enumerate(zip(times, actors, bodies, lats, strict=True))
                ]
            )
        return text, times[-1]

    def stream(self, nbytes: int, start_s: int, span_s: int) -> Iterator[bytes]:
        """Encoded blocks totalling about ``nbytes``, spread over ``span_s`` seconds."""
        avg = 150.0
        lines_total = max(1, int(nbytes / avg))
        gap = span_s * 1000 / lines_total
        clock = start_s * 1000
        left = nbytes
        while left > 0:
            lines = max(1, min(30_000, int(left / avg) + 1))
            text, clock = self.block(clock, lines, gap)
            data = text.encode()
            if len(data) > left and lines > 1:  # trim the overshoot at a line boundary
                cut = data.rfind(b"\n", 0, left)
                data = data[: cut + 1] if cut >= 0 else data
            avg = max(40.0, len(text) / lines)
            left -= len(data)
            yield data


def _write_log(path: Path, lines: _LogLines, nbytes: int, start_s: int, span_s: int, tally: _Tally) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as handle:
        for block in lines.stream(nbytes, start_s, span_s):
            handle.write(block)
            written += len(block)
    tally.add(path, written)


def _write_gz_log(
    path: Path, lines: _LogLines, nbytes: int, start_s: int, span_s: int, tally: _Tally
) -> None:
    """A gzip'd log of about ``nbytes`` compressed bytes (level 1: fast, and as incompressible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ratio = 4  # about what gzip -1 gets on these lines
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename=path.stem, mode="wb", fileobj=raw, compresslevel=1, mtime=start_s) as gz:
            clock_s = start_s
            while raw.tell() < nbytes:
                chunk = min(_BLOCK, max(1024, (nbytes - raw.tell()) * ratio))
                step_s = max(1, span_s * chunk // max(1, nbytes * ratio))
                for block in lines.stream(chunk, clock_s, step_s):
                    gz.write(block)
                gz.flush()  # so that raw.tell() counts what is written
                clock_s += step_s
        size = raw.tell()
    tally.add(path, size)


def _write_random(path: Path, nbytes: int, rng: random.Random, tally: _Tally) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    left = nbytes
    with open(path, "wb") as handle:
        while left > 0:
            step = min(_BLOCK, left)
            handle.write(rng.randbytes(step))
            left -= step
    tally.add(path, nbytes)


# --------------------------------------------------------------------------------------------
# workspace parts


def _state(rng: random.Random, nbytes: int, day: int) -> dict[str, object]:
    """The orchestrator state: tasks with histories, runtime history, counters."""
    statuses = ("queued", "running", "done", "done", "done", "failed", "blocked")
    events = ("created", "assigned", "started", "tool_call", "checkpoint", "retried", "completed")
    tasks: dict[str, object] = {}
    runtime: list[dict[str, object]] = []
    size = 0
    number = 10_000
    now = _BASE_DAY + day * _DAY_S
    while size < nbytes:
        number += 1
        created = now - rng.randint(0, 30 * _DAY_S)
        history = [
            {
                "ts": _iso(created + k * rng.randint(5, 900)),
                "event": rng.choice(events),
                "by": rng.choice(AGENTS),
            }
            for k in range(rng.randint(2, 8))
        ]
        task = {
            "id": f"T-{number}",
            "title": " ".join(rng.choices(_WORDS, k=rng.randint(3, 8))),
            "status": rng.choice(statuses),
            "agent": rng.choice(AGENTS),
            "priority": round(rng.random(), 4),
            "created": _iso(created),
            "attempts": rng.randint(0, 3),
            "tokens": {"in": rng.randint(100, 90_000), "out": rng.randint(10, 12_000)},
            "history": history,
        }
        tasks[task["id"]] = task  # type: ignore[index]
        size += 190 + 95 * len(history) + 40
        if rng.random() < 0.25:
            runtime.append(
                {
                    "ts": _iso(created),
                    "event": rng.choice(("restart", "scale", "config_reload", "heartbeat_miss")),
                    "agent": rng.choice(AGENTS),
                    "detail": {"uptime_s": rng.randint(1, 900_000), "rss_mb": rng.randint(100, 3000)},
                }
            )
            size += 190
    return {
        "version": 3,
        "updatedAt": _iso(now),
        "counters": {"tasksCreated": number - 10_000, "restarts": len(runtime)},
        "agents": {a: {"state": "RUNNING", "lastHeartbeat": _iso(now)} for a in AGENTS},
        "tasks": tasks,
        "runtime": {"history": runtime},
    }


def _knowledge_pack(
    text: _Text, rng: random.Random, day: int, size: int
) -> tuple[str, str, str, dict[str, object]]:
    topic = "-".join(rng.choices(_WORDS[:120], k=2))
    stem = f"kp-{_date(day)}-{topic}"
    md = text.markdown(max(400, size // 2), f"Knowledge pack {_date(day)}: {topic.replace('-', ' ')}")
    sources = [
        {
            "url": f"https://example.org/{rng.choice(_WORDS)}/{rng.randint(1000, 99999)}",
            "score": round(rng.random(), 3),
        }
        for _ in range(rng.randint(3, 12))
    ]
    body: dict[str, object] = {
        "pack": stem,
        "generatedAt": _iso(_BASE_DAY + day * _DAY_S + 25_200),
        "by": "Jay",
    }
    body["sources"] = sources
    summary: list[str] = []
    used = 300
    while used < size // 2:
        sentence = text.paragraph(2)
        summary.append(sentence)
        used += len(sentence) + 8
    body["summary"] = summary
    body["entities"] = {w: rng.randint(1, 50) for w in rng.sample(_WORDS, 12)}
    return stem, md, json.dumps(body, indent=2) + "\n", body


def _weights(rng: random.Random) -> dict[str, object]:
    names = ("relevance", "urgency", "impact", "effort", "confidence", "recency", "risk", "human_request")
    weights = {name: round(rng.uniform(0.02, 0.6), 4) for name in names}
    return {
        "version": 1,
        "weights": weights,
        "rules": [
            {"if": "task.source == 'human'", "boost": round(rng.uniform(1.1, 2.0), 2)},
            {"if": "task.age_hours > 48", "boost": round(rng.uniform(1.0, 1.5), 2)},
            {"if": "task.status == 'blocked'", "penalty": round(rng.uniform(0.1, 0.9), 2)},
        ],
        "approvedBy": "human",
        "approvedAt": _iso(_BASE_DAY - rng.randint(1, 20) * _DAY_S),
    }


_PY_HEADER = '''"""{title}.

Skill `{skill}` of agent {agent}. {doc}
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("{agent}.{skill}.{module}")
MAX_RETRIES = {retries}
TIMEOUT_S = {timeout}
'''

_PY_FUNCS = (
    """

@dataclass
class {cls}:
    task_id: str
    score: float = {score}
    attempts: int = 0

    def bump(self, factor: float = {factor}) -> float:
        self.score = min(1.0, self.score * factor)
        return self.score
""",
    '''

def {name}(path: Path, limit: int = {limit}) -> list[dict]:
    """{doc}"""
    items = []
    with path.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            items.append(json.loads(line))
            if len(items) >= limit:
                break
    LOG.info("{name}: %d items from %s", len(items), path)
    return items
''',
    '''

def {name}(weights: dict[str, float], features: dict[str, float]) -> float:
    """{doc}"""
    total = sum(weights.get(key, 0.0) * value for key, value in features.items())
    return round(total / max(1e-9, sum(weights.values())), {digits})
''',
    '''

def {name}(task: dict, attempt: int = 0) -> dict:
    """{doc}"""
    started = time.monotonic()
    while attempt < MAX_RETRIES:
        attempt += 1
        if time.monotonic() - started > TIMEOUT_S:
            LOG.warning("{name}: timeout on %s after %d attempts", task.get("id"), attempt)
            break
        if task.get("status") in ("done", "{status}"):
            return task
        task["status"] = "{status}"
    return task
''',
)


def _python_script(text: _Text, rng: random.Random, agent: str, skill: str, module: str) -> str:
    parts = [
        _PY_HEADER.format(
            title=text.title(5),
            skill=skill,
            agent=agent,
            module=module,
            doc=text.paragraph(2),
            retries=rng.randint(1, 6),
            timeout=rng.choice((30, 60, 120, 300)),
        )
    ]
    for _ in range(rng.randint(3, 9)):
        template = rng.choice(_PY_FUNCS)
        name = "_".join(rng.choices(_WORDS[:110], k=2))
        parts.append(
            template.format(
                cls="".join(w.capitalize() for w in rng.choices(_WORDS[:110], k=2)),
                name=name,
                doc=text.paragraph(1)[:100],
                score=round(rng.random(), 3),
                factor=round(rng.uniform(1.01, 1.5), 2),
                limit=rng.choice((100, 500, 1000, 5000)),
                digits=rng.randint(2, 6),
                status=rng.choice(("review", "blocked", "escalated")),
            )
        )
    parts.append(
        f'\n\nif __name__ == "__main__":\n    logging.basicConfig(level=logging.INFO)\n'
        f"    print(json.dumps({{'skill': '{skill}', 'module': '{module}', 'ok': True}}))\n"
    )
    return "".join(parts)


def _soul(text: _Text, rng: random.Random, agent: str) -> str:
    sections = (
        "Identity",
        "Mission",
        "Principles",
        "Responsibilities",
        "Boundaries",
        "Escalation",
        "Heartbeat",
    )
    out = [f"# SOUL of {agent}\n\n> {agent} is the {_ROLES[agent]}.\n"]
    for section in sections:
        out.append(f"\n## {section}\n\n{text.paragraph(rng.randint(3, 6))}\n")
        out.append("".join(f"- {s}\n" for s in rng.choices(text.sentences, k=rng.randint(2, 5))))
    return "".join(out)


def _jsonl(rng: random.Random, text: _Text, agent: str, lines: int, start_s: int) -> str:
    kinds = ("observation", "decision", "lesson", "handoff", "feedback")
    out = []
    clock = start_s
    for _ in range(lines):
        clock += rng.randint(1, 900)
        record = {
            "ts": _iso(clock),
            "agent": agent,
            "kind": rng.choice(kinds),
            "task": f"T-{rng.randint(10000, 99999)}",
            "text": rng.choice(text.sentences),
            "score": round(rng.random(), 3),
            "id": rng.randbytes(8).hex(),
        }
        out.append(json.dumps(record))
    return "\n".join(out) + "\n"


def _episodes(path: Path, rng: random.Random, text: _Text, agent: str, nbytes: int, tally: _Tally) -> None:
    """A large jsonl of episodes (the agent's long-term memory), streamed in blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = ("observation", "decision", "lesson", "handoff", "feedback", "tool_result")
    written = 0
    clock = _BASE_DAY - 90 * _DAY_S
    with open(path, "wb") as handle:
        while written < nbytes:
            n = max(1, min(20_000, (nbytes - written) // 200 + 1))
            ids = rng.randbytes(8 * n).hex()
            steps = list(accumulate(rng.choices(range(1, 240), k=n), initial=clock))[1:]
            clock = steps[-1]
            texts = rng.choices(text.sentences, k=n)
            kind = rng.choices(kinds, k=n)
            tasks = rng.choices(range(10000, 99999), k=n)
            block = "".join(
                [
                    f'{{"ts": {s}, "agent": "{agent}", "kind": "{k}", "task": "T-{t}", '
                    f'"id": "{ids[16 * i : 16 * i + 16]}", "text": "{x}"}}\n'
                    for i, (s, k, t, x) in enumerate(zip(steps, kind, tasks, texts, strict=True))
                ]
            ).encode()
            if written + len(block) > nbytes and n > 1:
                cut = block.rfind(b"\n", 0, nbytes - written)
                block = block[: cut + 1] if cut >= 0 else block
            handle.write(block)
            written += len(block)
    tally.add(path, written)


def _registry(rng: random.Random, day: int) -> dict[str, object]:
    now = _BASE_DAY + day * _DAY_S
    return {
        "updatedAt": _iso(now + rng.randint(0, 3600)),
        "agents": [
            {
                "id": a,
                "role": _ROLES[a].split(":")[0],
                "state": rng.choice(("RUNNING", "RUNNING", "IDLE")),
                "lastHeartbeat": _iso(now + rng.randint(0, 3600)),
                "restarts": rng.randint(0, 5),
                "dependsOn": {"Z": [], "Jay": ["Z"], "Rick": ["Z"], "Leroy": ["Jay", "Rick"]}[a],
            }
            for a in AGENTS
        ],
    }


def _journal_entry(text: _Text, rng: random.Random, day: int) -> str:
    change = rng.choice(text.sentences)
    return f"\n## {_date(day)}\n\n{text.paragraph(rng.randint(2, 5))}\n\n- Change: {change}\n"


_SMALL_KINDS = (
    (0.40, "agents/{agent}/memory/notes/{bucket:04d}/note-{i}.md"),
    (0.25, "agents/{agent}/memory/sessions/{bucket:04d}/session-{i}.jsonl"),
    (0.20, "logs/tasks/{bucket:04d}/task-{i}.log"),
    (0.15, "agents/{agent}/skills/generated/{bucket:04d}/tool_{i}.py"),
)


def _small_files(root: Path, count: int, rng: random.Random, text: _Text, tally: _Tally) -> None:
    """``count`` files of 100-2000 bytes, 100 to a directory, each with a unique header."""
    blob = "\n".join(text.paragraph(3) for _ in range(600))
    made: set[Path] = set()
    per_dir = 100
    start = 0
    for share, pattern in _SMALL_KINDS:
        n = round(count * share) if pattern != _SMALL_KINDS[-1][1] else count - start
        sizes = rng.choices(range(100, 2001), k=n)
        offsets = rng.choices(range(len(blob) - 2000), k=n)
        ids = rng.randbytes(8 * n).hex()
        for j in range(n):
            i = start + j
            agent = AGENTS[(j // per_dir) % len(AGENTS)]
            path = root / pattern.format(agent=agent, bucket=j // (per_dir * len(AGENTS)), i=i)
            parent = path.parent
            if parent not in made:
                parent.mkdir(parents=True, exist_ok=True)
                made.add(parent)
            head = f"id={ids[16 * j : 16 * j + 16]} n={i} ts={_iso(_BASE_DAY - i)}\n"
            body = blob[offsets[j] : offsets[j] + max(0, sizes[j] - len(head))]
            if pattern.endswith(".py"):
                data = f'"""{head.strip()}"""\n\n# {body.replace(chr(10), chr(10) + "# ")}\n'
            elif pattern.endswith(".jsonl"):
                data = json.dumps({"head": head.strip(), "text": body}) + "\n"
            else:
                data = head + body + "\n"
            raw = data.encode()
            with open(path, "wb") as handle:
                handle.write(raw)
            tally.add(path, len(raw))
        start += n


# --------------------------------------------------------------------------------------------
# public API


def generate_workspace(
    root: Path, size_bytes: int = 1_000_000_000, *, small_files: int = 0, seed: int = 0
) -> WorkspaceInfo:
    """Write an orchestrator workspace of about ``size_bytes`` under ``root`` (plus small files).

    ``root`` must be missing or empty. About 70% of the bytes are logs (60% text lines that
    compress ~5x with zstd, 10% gzip'd rotated logs), 24% the agents' binary ``weights.bin``
    (Z's, 12% of ``size_bytes``, is the largest file), the rest state, knowledge packs, skills
    and memory. ``small_files`` adds that many 100-2000 byte files, 100 to a directory, on top.
    """
    started = time.perf_counter()
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"not empty: {root}")
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    text = _Text(rng)
    tally = _Tally(root)
    size = max(0, int(size_bytes))

    config = {
        "name": "orchestrator",
        "stateFile": STATE_FILE,
        "logsDir": LOGS_DIR,
        "knowledgePackDir": KP_DIR,
        "agentsDir": "agents",
        "agents": list(AGENTS),
        "heartbeatTimeoutS": 300,
        "backup": {"daily": "07:00", "weekly": "Sun 23:00", "keepDaily": 30, "keepWeekly": 12},
    }
    _write_json(root / CONFIG_NAME, config, tally)
    _write_json(root / STATE_FILE, _state(rng, min(4_000_000, max(8_000, size * 3 // 1000)), 0), tally)

    kp_size = max(1_000, size * 15 // 1000 // _KP_DAYS)
    for day in range(-_KP_DAYS + 1, 1):
        stem, md, js, _ = _knowledge_pack(text, rng, day, kp_size)
        _write(root / KP_DIR / f"{stem}.md", md, tally)
        _write(root / KP_DIR / f"{stem}.json", js, tally)

    for agent in AGENTS:
        base = root / "agents" / agent
        _write(base / "SOUL.md", _soul(text, rng, agent), tally)
        for skill in _SKILLS[agent]:
            _write(base / "skills" / skill / "SKILL.md", text.markdown(800, f"Skill {skill}"), tally)
            for module in rng.sample(
                ("main", "runner", "scoring", "io_utils", "policy", "checks"), rng.randint(2, 4)
            ):
                _write(
                    base / "skills" / skill / f"{module}.py",
                    _python_script(text, rng, agent, skill, module),
                    tally,
                )
        if agent == "Z":
            schedule = {
                "daily": {
                    "at": "07:00",
                    "what": ["agents/*/priority_weights.json", "agents/*/memory"],
                    "keep": 30,
                },
                "weekly": {"at": "Sun 23:00", "what": ["agents"], "keep": 12},
                "onChange": {"what": ["agents/*/priority_weights.json"], "keep": 10},
            }
            _write_json(base / "skills" / "backup" / "backup_schedule.json", schedule, tally)
        memory = base / "memory"
        _write_json(memory / "agent_registry.json", _registry(rng, 0), tally)
        journal = "".join(_journal_entry(text, rng, d) for d in range(-20, 1))
        _write(memory / "kaizen_journal.md", f"# Kaizen journal of {agent}\n" + journal, tally)
        _write(
            memory / "lessons_learned.md",
            text.markdown(3_000 + size // 20_000, f"Lessons learned by {agent}"),
            tally,
        )
        _write(
            memory / "events.jsonl",
            _jsonl(rng, text, agent, 40 + size // 200_000, _BASE_DAY - 7 * _DAY_S),
            tally,
        )
        _write_json(base / "priority_weights.json", _weights(rng), tally)
        _write_random(base / "weights.bin", int(size * _WEIGHT_SHARE[agent]), rng, tally)

    logs = root / LOGS_DIR
    text_total = size * 60 // 100
    gz_total = size * 10 // 100
    per_log = text_total // (2 * len(LOG_NAMES))
    per_gz = gz_total // (len(LOG_NAMES) * len(_GZ_GENERATIONS))
    for index, name in enumerate(LOG_NAMES):
        lines = _LogLines(rng, name)
        # a little unevenness between logs, like real services
        share = per_log * (0.7 + 0.6 * ((index * 5) % len(LOG_NAMES)) / len(LOG_NAMES))
        _write_log(logs / f"{name}.log", lines, int(share * 0.8), _BASE_DAY, 7 * 3600, tally)
        _write_log(logs / f"{name}.log.1", lines, int(share * 1.2), _BASE_DAY - _DAY_S, _DAY_S, tally)
        for gen in _GZ_GENERATIONS:
            start = _BASE_DAY - gen * _DAY_S
            _write_gz_log(logs / f"{name}.log.{gen}.gz", lines, per_gz, start, _DAY_S, tally)
    history = _jsonl(rng, text, "orchestrator", 50, _BASE_DAY - 2 * _DAY_S)
    _write(logs / "system-history.jsonl", history, tally)

    filler = size - tally.bytes
    if filler > 0:  # the rest: each agent's long-term episode memory
        for agent in AGENTS:
            path = root / "agents" / agent / "memory" / "episodes.jsonl"
            _episodes(path, rng, text, agent, filler // len(AGENTS), tally)

    if small_files > 0:
        _small_files(root, small_files, rng, text, tally)

    return WorkspaceInfo(
        root=root,
        files=tally.files,
        total_bytes=tally.bytes,
        largest_file=tally.largest,
        largest_bytes=tally.largest_bytes,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _Changes:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    appended: int = 0

    def touch(self, rel: str) -> None:
        if rel not in self.modified and rel not in self.added:
            self.modified.append(rel)


def _rotate(logs: Path, name: str, changes: _Changes) -> None:
    """logrotate: drop the oldest .gz, shift the others, gzip .1 to .2.gz, .log to .1, new .log."""
    last = _GZ_GENERATIONS[-1]
    oldest = logs / f"{name}.log.{last}.gz"
    if oldest.exists():
        oldest.unlink()
    for gen in reversed(_GZ_GENERATIONS[:-1]):
        src = logs / f"{name}.log.{gen}.gz"
        if src.exists():
            src.rename(logs / f"{name}.log.{gen + 1}.gz")
    one = logs / f"{name}.log.1"
    first_gz = logs / f"{name}.log.{_GZ_GENERATIONS[0]}.gz"
    if one.exists():
        with (
            open(one, "rb") as src_handle,
            open(first_gz, "wb") as raw,
            gzip.GzipFile(filename=one.name, mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
        ):
            while block := src_handle.read(_BLOCK):
                gz.write(block)
        one.unlink()
    active = logs / f"{name}.log"
    if active.exists():
        active.rename(one)
    active.touch()
    for gen in (1, *_GZ_GENERATIONS):
        rel = f"{LOGS_DIR}/{name}.log.{gen}" + (".gz" if gen > 1 else "")
        if (logs.parent / rel).exists():
            changes.touch(rel)
    changes.touch(f"{LOGS_DIR}/{name}.log")


def simulate_day(root: Path, day: int, *, seed: int = 0) -> DayChange:
    """Apply day ``day`` (1, 2, ...) of change to a workspace made by :func:`generate_workspace`.

    Appends ~1-2% of the log bytes to the active logs, rotates one log (``x.log`` -> ``x.log.1``,
    the old ``.1`` gzip'd to ``.2.gz``, older ones shifted, the oldest dropped), rewrites the
    state file with progressed tasks, edits memory files and one or two priority weights,
    adds a knowledge pack (.md + .json) and a daily note, removes the oldest knowledge pack.
    Deterministic for (existing content, day, seed).
    """
    root = Path(root)
    rng = random.Random(f"snapstore-sampledata/{seed}/{day}")
    text = _Text(rng)
    changes = _Changes()
    logs = root / LOGS_DIR
    now = _BASE_DAY + day * _DAY_S

    # 1. logs: rotate one, then append the day's lines to every active log
    rotated = LOG_NAMES[day % len(LOG_NAMES)]
    log_bytes = sum(p.stat().st_size for p in logs.iterdir() if p.is_file())
    _rotate(logs, rotated, changes)
    budget = int(log_bytes * rng.uniform(0.01, 0.02))
    for index, name in enumerate(LOG_NAMES):
        path = logs / f"{name}.log"
        share = budget * (0.7 + 0.6 * ((index * 5) % len(LOG_NAMES)) / len(LOG_NAMES)) // len(LOG_NAMES)
        lines = _LogLines(rng, name)
        with open(path, "ab") as handle:
            for block in lines.stream(max(200, int(share)), now, 16 * 3600):
                handle.write(block)
                changes.appended += len(block)
        changes.touch(f"{LOGS_DIR}/{name}.log")
    history = root / LOGS_DIR / "system-history.jsonl"
    entry = json.dumps({"ts": _iso(now + 25_200), "event": "backup", "day": day, "ok": True}) + "\n"
    with open(history, "a") as handle:
        handle.write(entry)
    changes.appended += len(entry)
    changes.touch(f"{LOGS_DIR}/system-history.jsonl")

    # 2. state: some tasks progress, a few new ones arrive
    state_path = root / STATE_FILE
    state = json.loads(state_path.read_text())
    tasks = state["tasks"]
    ids = sorted(tasks)
    for task_id in rng.sample(ids, min(len(ids), 25)):
        task = tasks[task_id]
        task["status"] = rng.choice(("running", "done", "done", "failed"))
        task["history"].append(
            {"ts": _iso(now + rng.randint(0, _DAY_S)), "event": "updated", "by": task["agent"]}
        )
    for k in range(rng.randint(5, 15)):
        new_id = f"T-{90_000 + day * 100 + k}"
        tasks[new_id] = {
            "id": new_id,
            "title": " ".join(rng.choices(_WORDS, k=5)),
            "status": "queued",
            "agent": rng.choice(AGENTS),
            "priority": round(rng.random(), 4),
            "created": _iso(now),
            "attempts": 0,
            "tokens": {"in": 0, "out": 0},
            "history": [{"ts": _iso(now), "event": "created", "by": "orchestrator"}],
        }
    state["updatedAt"] = _iso(now + _DAY_S - 1)
    state["counters"]["tasksCreated"] = len(tasks)
    _write_json(state_path, state)
    changes.touch(STATE_FILE)

    # 3. memory: journals, lessons, events, registry of two agents
    for agent in rng.sample(AGENTS, 2):
        memory = root / "agents" / agent / "memory"
        with open(memory / "kaizen_journal.md", "a") as handle:
            handle.write(_journal_entry(text, rng, day))
        with open(memory / "events.jsonl", "a") as handle:
            handle.write(_jsonl(rng, text, agent, rng.randint(5, 30), now))
        _write_json(memory / "agent_registry.json", _registry(rng, day))
        for rel in ("kaizen_journal.md", "events.jsonl", "agent_registry.json"):
            changes.touch(f"agents/{agent}/memory/{rel}")
    lessons = root / "agents" / "Z" / "memory" / "lessons_learned.md"
    with open(lessons, "a") as handle:
        handle.write(f"\n## Lesson of {_date(day)}\n\n{text.paragraph(3)}\n")
    changes.touch("agents/Z/memory/lessons_learned.md")

    # 4. scoring weights: one or two values tuned (an on-change backup trigger in the seeds)
    for agent in rng.sample(AGENTS, rng.randint(1, 2)):
        path = root / "agents" / agent / "priority_weights.json"
        weights = json.loads(path.read_text())
        name = rng.choice(sorted(weights["weights"]))
        weights["weights"][name] = round(
            min(0.99, max(0.01, weights["weights"][name] + rng.uniform(-0.05, 0.05))), 4
        )
        weights["approvedAt"] = _iso(now + 3600)
        _write_json(path, weights)
        changes.touch(f"agents/{agent}/priority_weights.json")

    # 5. three files added, two removed: today's knowledge pack and note in, the oldest pack out
    kp = root / KP_DIR
    existing = sorted(p for p in kp.glob("kp-*.md"))
    sample_size = existing[-1].stat().st_size * 2 if existing else 4_000
    stem, md, js, _ = _knowledge_pack(text, rng, day, sample_size)
    for suffix, content in ((".md", md), (".json", js)):
        _write(kp / f"{stem}{suffix}", content)
        changes.added.append(f"{KP_DIR}/{stem}{suffix}")
    note_agent = AGENTS[day % len(AGENTS)]
    note = f"agents/{note_agent}/memory/daily/{_date(day)}.md"
    _write(root / note, text.markdown(1_500, f"Daily notes of {note_agent}, {_date(day)}"))
    changes.added.append(note)
    if existing:
        oldest = existing[0]
        for path in (oldest, oldest.with_suffix(".json")):
            if path.exists():
                path.unlink()
                changes.removed.append(f"{KP_DIR}/{path.name}")

    return DayChange(
        day=day,
        added=tuple(changes.added),
        removed=tuple(changes.removed),
        modified=tuple(m for m in changes.modified if m not in changes.added),
        bytes_appended=changes.appended,
        rotated=f"{LOGS_DIR}/{rotated}.log",
    )


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snapfixtures.sampledata",
        description="Write a realistic AI-agent workspace (deterministic for a seed), "
        "or apply one day of change to it.",
    )
    parser.add_argument("root", type=Path, help="directory to write (must be missing or empty)")
    parser.add_argument("--size", default="1G", help="approximate size, e.g. 50M, 1G (default 1G)")
    parser.add_argument("--small-files", type=int, default=0, help="extra small files (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--day", type=int, help="apply day DAY of change to an existing workspace instead")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        if args.day is not None:
            started = time.perf_counter()
            change = simulate_day(args.root, args.day, seed=args.seed)
            summary: dict[str, object] = {
                "day": change.day,
                "added": list(change.added),
                "removed": list(change.removed),
                "modified": len(change.modified),
                "bytes_appended": change.bytes_appended,
                "rotated": change.rotated,
                "seconds": round(time.perf_counter() - started, 3),
            }
            if args.json:
                print(json.dumps(summary))
            else:
                print(
                    f"day {change.day}: +{len(change.added)} -{len(change.removed)} files, "
                    f"{len(change.modified)} modified, {_human(change.bytes_appended)} appended, "
                    f"rotated {change.rotated} ({summary['seconds']} s)"
                )
            return 0
        info = generate_workspace(
            args.root, parse_size(args.size), small_files=args.small_files, seed=args.seed
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"sampledata: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "root": str(info.root),
                    "files": info.files,
                    "total_bytes": info.total_bytes,
                    "largest_file": info.largest_file.as_posix(),
                    "largest_bytes": info.largest_bytes,
                    "seconds": round(info.seconds, 3),
                }
            )
        )
    else:
        print(
            f"{info.root}: {info.files} files, {_human(info.total_bytes)}, largest {info.largest_file} "
            f"({_human(info.largest_bytes)}), {info.seconds:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
