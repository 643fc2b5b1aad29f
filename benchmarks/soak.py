"""Run the robustness soak (snapfixtures.soak) for a while and print what happened.

    python benchmarks/soak.py --minutes 30                 # local repository, 3 clients, every fault
    python benchmarks/soak.py --minutes 5 --seed 7 --json  # reproducible, machine-readable
    python benchmarks/soak.py --minutes 10 --repo s3://bucket/soak --env SNAP_S3_ENDPOINT=http://127.0.0.1:8333

The table: actions done by kind, SIGKILLs, bit flips (and how many verify found), ENOSPC hits,
restores compared byte for byte, problems found and data lost (must be 0). Exit status 1 when
there was a problem. Faults that need root (a tmpfs for ENOSPC) or /dev/fuse (mount actions)
are used when available.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snapfixtures.soak import SoakConfig, run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--repo", default="", help="repository location (default: a new local one)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every snap command")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--no-kills", action="store_true")
    parser.add_argument("--no-flips", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="snap-soak-"))
    env = dict(item.split("=", 1) for item in args.env)
    cfg = SoakConfig(workdir=workdir, repo=args.repo, seed=args.seed, steps=10**9, seconds=args.minutes * 60,
                     clients=args.clients, env=env, kills=not args.no_kills, flips=not args.no_flips,
                     enospc=os.geteuid() == 0 and not args.repo, mount=os.path.exists("/dev/fuse"))
    report = run_soak(cfg)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        width = max(len(k) for k, _ in report.table())
        for key, value in report.table():
            print(f"{key:<{width}}  {value:>8}")
        for problem in report.problems:
            print("problem:", problem)
        print(f"workdir: {workdir}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
