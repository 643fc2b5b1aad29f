"""A tiny agent process for the recovery tests and benchmarks: ``python -m snapfixtures.agentproc``.

``agentproc NAME --run DIR [--heartbeat FILE] [--port N] [--state FILE] [--never-healthy]``: writes
its pid to DIR/NAME.pid, checks its state (``--state``: must be JSON, else it exits 1 like a real
agent refusing a corrupt file), waits a little (so that agents started together are seen
starting before either is healthy), then touches FILE every 0.1 s and/or serves GET /health on
127.0.0.1:N, and writes DIR/NAME.ready. ``--never-healthy``: runs, but never does any of that.

``agentproc --probe DIR/NAME.ready``: exit 0 when the ready file names a live process.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path


def probe(ready: str) -> int:
    try:
        pid = int(Path(ready).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        print(f"not ready: {ready}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", nargs="?")
    parser.add_argument("--run")
    parser.add_argument("--heartbeat")
    parser.add_argument("--port", type=int)
    parser.add_argument("--state")
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--delay", type=float, default=0.4)
    parser.add_argument("--probe")
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{args.name}.pid").write_text(str(os.getpid()))
    print(f"{args.name}: starting (pid {os.getpid()})", flush=True)
    if args.state:
        try:
            json.loads(Path(args.state).read_text())
        except ValueError as exc:
            print(f"{args.name}: corrupt state {args.state}: {exc}", flush=True)
            return 1
    if args.never_healthy:
        print(f"{args.name}: stuck loading skills", flush=True)
        while True:
            time.sleep(1)
    time.sleep(args.delay)
    if args.port:
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                code = 200 if self.path == "/health" else 404
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok\n" if code == 200 else b"")

            def log_message(self, *_args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    (run / f"{args.name}.ready").write_text(str(os.getpid()))
    print(f"{args.name}: healthy", flush=True)
    while True:
        if args.heartbeat:
            Path(args.heartbeat).touch()
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
