"""An encrypted repository in a real bucket (SeaweedFS on loopback): no object reveals content,
names, hosts or tiers; a write-only host takes and dedups against it; a full host reads it all."""

from __future__ import annotations

import os
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import make_agent_z, run_snap, tree_state
from tests.s3.conftest import S3Server, make_host

SOUL_LINE = b"You are Z, the orchestrator's planner."


def test_no_object_reveals_plaintext(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/vault"
    src = tmp_path / "ws"
    make_agent_z(src, soul_lines=40)
    (src / "agents" / "Z" / "weights.bin").write_bytes(os.urandom(200_000))
    alpha = make_host(tmp_path, "alpha-host-91c", url, s3_server.endpoint)
    assert alpha.snap("init").code == 0
    res = alpha.snap("take", ".", "--tier", "quarterly", "--tag", "offsite", "--json", cwd=src)
    assert res.code == 0, res.err
    assert alpha.snap("pin", "latest").code == 0
    # a write-only backup host: its own cache, its own password
    res = alpha.snap("key", "add", "--write-only", env={"SNAP_NEW_PASSWORD": "backup only"})
    assert res.code == 0, res.err
    beta = make_host(tmp_path, "beta-host-22d", url, s3_server.endpoint)
    beta.env["SNAP_PASSWORD"] = "backup only"
    (src / "agents" / "Z" / "memory" / "today.md").write_text("beta was here\n")
    res = beta.snap("take", ".", "--tier", "quarterly", "--json", cwd=src)
    assert res.code == 0, res.err
    assert res.json()["new_bytes"] < 100_000  # the weights were deduplicated against alpha's take
    refused = beta.snap("restore", "latest", "--target", str(tmp_path / "nope"))
    assert refused.code == ExitCode.WRITE_ONLY

    client = s3_server.client()
    keys = s3_server.keys(bucket, "vault/")
    assert any(k.startswith("vault/packs/") for k in keys) and any(k.startswith("vault/keys/") for k in keys)
    needles = [SOUL_LINE, b"SOUL.md", b"lessons.md", b"today.md", b"beta was here", b"alpha-host-91c",
               b"beta-host-22d", b"quarterly", b"offsite", b"relevance"]
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for needle in needles:
            assert needle not in body, f"{needle!r} readable in s3://{bucket}/{key}"
            assert needle.decode() not in key

    # the full host reads both snapshots, the write-only host's included
    listed = alpha.snap("list", "--json")
    assert listed.code == 0 and len(listed.json()) == 2
    out = tmp_path / "out"
    res = alpha.snap("restore", "latest", "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)
    res = run_snap("verify", "--read-data", repo=url, env=alpha.env)
    assert res.code == 0, res.err
