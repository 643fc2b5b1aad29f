"""A short deterministic robustness soak (snapfixtures.soak) on a local repository, with faults.

The long run is ``benchmarks/soak.py --minutes N``; docs/reliability.md has its table. This run
has a 50-second budget (the suite stays short); the seed fixes what each client draws. The S3
variant is tests/s3/test_soak_s3.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from snapfixtures.soak import SoakConfig, run_soak


def test_soak_local_with_kills_flips_and_full_disk(tmp_path: Path) -> None:
    cfg = SoakConfig(workdir=tmp_path, seed=20261201, steps=45, seconds=50, clients=2, kills=True, flips=True,
                     enospc=os.geteuid() == 0, mount=os.path.exists("/dev/fuse"), copy=True)
    report = run_soak(cfg)
    shown = "\n".join(f"{k}: {v}" for k, v in report.table())
    assert not report.problems, "soak problems:\n" + "\n".join(report.problems) + "\n" + shown
    assert report.data_lost == 0, shown
    # the run really did something of every kind it was asked for
    assert report.actions["take"] >= 4 and report.restores_checked >= 3, shown
    assert report.flips_found == report.flips, shown
    assert report.flips >= 1, shown
    if cfg.enospc:
        assert report.enospc_hits >= 1, shown  # a take met the full tmpfs for real (exit 13)
