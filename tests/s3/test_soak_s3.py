"""The short robustness soak against a real S3 server (SeaweedFS on 127.0.0.1): two hosts with
caches of their own take, restore, forget, gc and verify one bucket while commands are killed."""

from __future__ import annotations

from pathlib import Path

from snapfixtures.soak import SoakConfig, run_soak
from tests.s3.conftest import S3Server, base_env


def test_soak_s3_two_hosts_with_kills(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    cfg = SoakConfig(workdir=tmp_path / "soak", repo=f"s3://{bucket}/soak", seed=20261202, steps=25, seconds=90,
                     clients=2, env=base_env(tmp_path, s3_server.endpoint), kills=True, flips=False,
                     enospc=False, mount=False, copy=True)
    report = run_soak(cfg)
    shown = "\n".join(f"{k}: {v}" for k, v in report.table())
    assert not report.problems, "soak problems:\n" + "\n".join(report.problems) + "\n" + shown
    assert report.data_lost == 0
    assert report.actions["take"] >= 5 and report.restores_checked >= 5, shown
