"""Restore points (which snapshots bring an agent back), health checks and alert messages."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from snapstore.agent.health import HealthCheck
from snapstore.agent.notify import _redact, alert_message
from snapstore.agent.recover import restore_points, run_checks
from snapstore.format.snapshot import Snapshot

BASE = Path("/ws")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def snap(ident: str, tier: str, day: int, *paths: str) -> Snapshot:
    return Snapshot(time=T0 + timedelta(days=day), tier=tier, root="00", paths=tuple(f"/ws/{p}" for p in paths),
                    id=ident * 8)


def points(snaps: list[Snapshot], *paths: str, missing: set[tuple[str, str]] = frozenset()) -> list[list[tuple]]:
    found = restore_points(snaps, [BASE / p for p in paths], [p.encode() for p in paths], BASE,
                           lambda s, m: (s.id[0], m.decode()) not in missing)
    return [[(layer.snapshot.id[0], [m.decode() for m in layer.members]) for layer in p.layers] for p in found]


def test_newest_copy_of_each_part() -> None:
    weekly = snap("w", "weekly", 0, "agents")
    daily1 = snap("a", "daily", 1, "agents/Z/memory", "agents/Z/priority_weights.json", "agents/Jay/memory")
    daily2 = snap("b", "daily", 2, "agents/Z/memory", "agents/Z/priority_weights.json")
    other = snap("m", "monthly", 3, "logs")
    got = points([weekly, daily1, daily2, other], "agents/Z")
    assert got[0] == [("w", ["agents/Z"]), ("b", ["agents/Z/memory", "agents/Z/priority_weights.json"])]
    assert got[1] == [("w", ["agents/Z"]), ("a", ["agents/Z/memory", "agents/Z/priority_weights.json"])]
    assert got[2] == [("w", ["agents/Z"])]
    assert len(got) == 3  # the monthly one holds nothing of agents/Z


def test_a_base_is_needed_and_must_hold_the_folder() -> None:
    daily = snap("a", "daily", 1, "agents/Z/memory")
    assert points([daily], "agents/Z") == []  # parts only: no exact tree to restore
    older = snap("o", "weekly", 0, "agents")
    newer = snap("n", "weekly", 5, "agents")
    # the newest weekly was taken before agents/Z existed: the older one is the base
    assert points([older, newer], "agents/Z", missing={("n", "agents/Z")}) == [[("o", ["agents/Z"])]]


def test_several_paths_and_a_base_newer_than_a_part() -> None:
    monthly = snap("m", "monthly", 1, "state/orchestrator_state.json", "orchestrator_config.json", "logs")
    daily = snap("d", "daily", 0, "agents/Z/memory")
    got = points([monthly, daily], "state/orchestrator_state.json", "orchestrator_config.json")
    assert got == [[("m", ["orchestrator_config.json", "state/orchestrator_state.json"])]]
    weekly = snap("w", "weekly", 3, "agents")
    # a part older than the base is not laid over it
    assert points([daily, weekly], "agents/Z") == [[("w", ["agents/Z"])]]


def test_file_checks(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ok.json").write_text('{"x": 1}')
    (tmp_path / "a" / "q.jsonl").write_text('{"n": 1}\n{"n": 2')  # an unfinished last line is fine
    assert run_checks(["json", "jsonl"], [tmp_path / "a"], tmp_path) is None
    (tmp_path / "a" / "bad.json").write_text('{"x": ')
    assert (run_checks(["json"], [tmp_path / "a"], tmp_path) or "").startswith("json: bad.json:")
    (tmp_path / "a" / "q.jsonl").write_text('{"n": 1\n{"n": 2}\n')
    assert run_checks(["jsonl"], [tmp_path / "a"], tmp_path) == "jsonl: q.jsonl line 1 is not JSON"
    assert run_checks(["command:test -d {}"], [tmp_path / "a"], tmp_path) is None
    assert "exited 1" in (run_checks(["command:test -f"], [tmp_path / "a"], tmp_path) or "")


def test_heartbeat_before_and_after_a_start(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    check = HealthCheck(heartbeat=beat, stale_after_s=60)
    assert not check.probe().healthy and "does not exist" in check.probe().detail
    beat.touch()
    assert check.probe().healthy  # fresh: alive
    os.utime(beat, (time.time() - 120, time.time() - 120))
    assert not check.probe().healthy  # stale: dead
    since = time.time()
    beat.touch()
    os.utime(beat, (since - 1, since - 1))  # restored with an old mtime: not a live agent
    assert not check.probe(since).healthy
    os.utime(beat, (since + 1, since + 1))
    assert check.probe(since).healthy


def test_url_and_command(tmp_path: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()
            self.wfile.write(b"warming up\n")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert HealthCheck(url=f"http://127.0.0.1:{port}/health").probe().healthy
        bad = HealthCheck(url=f"http://127.0.0.1:{port}/other").probe()
        assert not bad.healthy and "answered 503" in bad.detail and "warming up" in bad.output
    finally:
        server.shutdown()
        server.server_close()
    refused = HealthCheck(url=f"http://127.0.0.1:{port}/health", timeout_s=1).probe()
    assert not refused.healthy and "refused" in refused.detail.lower()
    failing = HealthCheck(command="echo not ready; exit 3", cwd=tmp_path).probe()
    assert not failing.healthy and "exited 3" in failing.detail and failing.output == "not ready"
    probe, _ = HealthCheck(command="exit 1", cwd=tmp_path).wait(time.time(), 5.0, failed=lambda: "start exited 2")
    assert not probe.healthy and probe.detail.startswith("start exited 2")


def test_alert_message_carries_the_diagnostics() -> None:
    event = {"command": "verify", "host": "h1", "error": "2 problem(s)", "exit_code": 4,
             "problems": [{"kind": "pack_corrupt", "message": "pack ab12 checksum mismatch", "pack": "ab12",
                           "blob": "", "affected": [{"snapshot": "3fa1c2d4", "paths": ["agents/Z/SOUL.md"]}]}]}
    title, body = alert_message(event, "snap@h1")
    assert title == "snap@h1: verify failed on h1"
    assert "problem: pack_corrupt: pack ab12 checksum mismatch (pack ab12)" in body
    assert "affects snapshot 3fa1c2d4: agents/Z/SOUL.md" in body
    assert json.loads(body.split("event: ", 1)[1]) == event
    assert _redact("mailto://ops:s3cret@example.com") == "mailto://ops:***@example.com"
    assert _redact("json://127.0.0.1:9000/x") == "json://127.0.0.1:9000/x"
