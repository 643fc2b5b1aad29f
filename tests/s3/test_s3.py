"""Repositories on S3 through the real ``snap`` command, against a real SeaweedFS server.

Hosts are simulated by processes with their own ``SNAP_HOSTNAME`` and their own cache
directory (``XDG_CACHE_HOME``), sharing one bucket prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from tests.conftest import run_snap, tree_state
from tests.s3.conftest import S3Server, free_ports, make_host

MiB = 1024 * 1024


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _random(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _require_fuse() -> None:
    """Mount checks may skip only where /dev/fuse is absent, and never under CI."""
    if not os.path.exists("/dev/fuse"):
        if os.environ.get("CI") == "true":
            pytest.fail("/dev/fuse is missing: the S3 mount checks cannot run (not allowed to skip under CI)")
        pytest.skip("/dev/fuse is missing on this machine: S3 mount checks skipped")


def _mount(host, mountpoint: Path) -> subprocess.Popen[bytes]:
    """Serve the host's remote repository at ``mountpoint`` (FUSE) until unmounted."""
    mountpoint.mkdir(exist_ok=True)
    code = ("import sys; from snapstore.fuse.runner import serve; serve(sys.argv[1], sys.argv[2])")
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    env.update(host.env)
    proc = subprocess.Popen([sys.executable, "-c", code, host.url, str(mountpoint)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"mount failed: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.1)
    return proc


def _unmount(mountpoint: Path, proc: subprocess.Popen[bytes]) -> None:
    subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False, capture_output=True)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False, capture_output=True)
        proc.kill()
        proc.wait(timeout=10)


# -- 1. the round trip ----------------------------------------------------------------------------
def test_round_trip_on_s3(s3_server: S3Server, bucket: str, agent_tree: Path, tmp_path: Path) -> None:
    url = f"s3://{bucket}/agents"
    host = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    res = run_snap("init", url, "--s3-endpoint", s3_server.endpoint, "--json",  # as a user types it
                   env={**host.env, "SNAP_S3_ENDPOINT": ""})
    assert res.code == 0, res.err
    assert res.json()["repository"] == url
    assert "agents/config.json" in s3_server.keys(bucket)
    assert host.snap("init").code == ExitCode.EXISTS
    res = host.snap("take", ".", "--tier", "weekly", "--json", cwd=agent_tree)
    assert res.code == 0, res.err
    info = res.json()
    assert info["files"] == 12 and info["hostname"] == "alpha"
    listed = host.snap("list", "--json").json()
    assert [s["id"] for s in listed] == [info["id"]]
    out = tmp_path / "out"
    res = host.snap("restore", "latest", "--target", str(out), "--json")
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(agent_tree)
    assert os.stat(out / "sparse.bin").st_blocks * 512 < MiB
    cat = host.snap("cat", "latest", "agents/Z/SOUL.md")
    assert cat.raw == (agent_tree / "agents" / "Z" / "SOUL.md").read_bytes()
    names = {e["name"] for e in host.snap("ls", "latest", "--json").json()}
    assert {"agents", "weights.bin", "soul-link"} <= names
    res = host.snap("verify", "--read-data", "--json")
    assert res.code == 0, res.err
    assert res.json()["damaged"] is False and res.json()["snapshots"] == 1
    # the repository's files are in the bucket; the index and locks are in the host's cache
    keys = s3_server.keys(bucket, "agents/")
    assert any(k.startswith("agents/packs/") for k in keys)
    assert any(k.startswith("agents/snapshots/") for k in keys)
    assert not any(k.startswith("agents/locks/") for k in keys)  # every lease was released
    assert not any("index" in k for k in keys)
    cache = Path(host.env["XDG_CACHE_HOME"]) / "snapstore"
    (repo_cache,) = list(cache.iterdir())
    assert (repo_cache / "index" / "data.mdb").exists()
    _require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = host.snap("mount", str(mp))  # the real command, in the background, as a user runs it
    assert res.code == 0, res.err
    try:
        weekly = mp / "tiers" / "weekly" / "latest"
        assert (weekly / "agents" / "Z" / "SOUL.md").read_bytes() == \
            (agent_tree / "agents" / "Z" / "SOUL.md").read_bytes()
        assert (weekly / "weights.bin").read_bytes() == (agent_tree / "weights.bin").read_bytes()
    finally:
        res = host.snap("umount", str(mp))
        if res.code != 0:
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], check=False, capture_output=True)
    assert res.code == 0, res.err
    assert not os.path.ismount(mp)


# -- 2. several hosts, one repository ------------------------------------------------------------
def test_two_hosts_share_and_deduplicate(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/fleet"
    alpha = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    beta = make_host(tmp_path, "beta", url, s3_server.endpoint)
    shared = {f"knowledge/pack-{i}.bin": _random(MiB, i) for i in range(4)}
    tree_a = _write_tree(tmp_path / "a", {**shared, "agents/Z/SOUL.md": b"# Z\n" * 100,
                                          "agents/Z/memory.bin": _random(MiB, 100)})
    tree_b = _write_tree(tmp_path / "b", {**shared, "agents/Jay/SOUL.md": b"# Jay\n" * 100,
                                          "agents/Jay/memory.bin": _random(MiB, 200)})
    assert alpha.snap("init").code == 0
    first = alpha.snap("take", ".", "--json", cwd=tree_a)
    assert first.code == 0, first.err
    # beta has never seen the repository: its take deduplicates against what alpha stored
    second = beta.snap("take", ".", "--json", cwd=tree_b)
    assert second.code == 0, second.err
    assert first.json()["new_bytes"] > 5 * MiB
    assert MiB <= second.json()["new_bytes"] < MiB + 256 * 1024, second.json()
    # both at the same time, each with new data
    (tree_a / "agents/Z/new.bin").write_bytes(_random(MiB, 300))
    (tree_b / "agents/Jay/new.bin").write_bytes(_random(MiB, 400))
    procs = [alpha.popen("take", ".", "--json", cwd=tree_a), beta.popen("take", ".", "--json", cwd=tree_b)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    taken = [json.loads(o[0]) for o in outs]
    assert {t["hostname"] for t in taken} == {"alpha", "beta"}
    assert all(t["new_bytes"] < 2 * MiB for t in taken)
    listed = alpha.snap("list", "--json").json()
    assert len(listed) == 4
    assert {s["hostname"] for s in listed} == {"alpha", "beta"}
    assert len(beta.snap("list", "--host", "beta", "--json").json()) == 2
    for host, tree, snap in ((alpha, tree_a, taken[0]), (beta, tree_b, taken[1])):
        other = alpha if host is beta else beta  # each host restores the other's snapshot
        out = tmp_path / f"out-{host.name}"
        res = other.snap("restore", snap["id"], "--target", str(out))
        assert res.code == 0, res.err
        assert tree_state(out) == tree_state(tree)
    assert beta.snap("verify", "--read-data").code == 0


def test_tag_on_s3_is_seen_by_the_other_host(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """``snap tag`` rewrites the record in the bucket: the other host's next sync lists the new id
    (pinned, with the new tags and ``original``) and not the old one; the counts stay exact."""
    url = f"s3://{bucket}/tagged"
    alpha = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    beta = make_host(tmp_path, "beta", url, s3_server.endpoint)
    tree = _write_tree(tmp_path / "t", {"agents/Z/SOUL.md": b"# Z\n" * 100, "agents/Z/w.bin": _random(MiB, 7)})
    assert alpha.snap("init").code == 0
    first = alpha.snap("take", ".", "--tag", "nightly", "--json", cwd=tree).json()
    assert beta.snap("pin", first["id"][:8]).code == 0
    assert [s["id"] for s in beta.snap("list", "--json").json()] == [first["id"]]
    res = alpha.snap("tag", first["id"][:8], "--add", "pre-upgrade", "--remove", "nightly", "--json")
    assert res.code == 0, res.err
    [change] = res.json()
    listed = beta.snap("list", "--json").json()
    assert [(s["id"], s["tags"], s["original"], s["pinned"]) for s in listed] == [
        (change["new"], ["pre-upgrade"], first["id"], True)]
    assert beta.snap("cat", first["id"][:8], "agents/Z/SOUL.md").code == ExitCode.NOT_FOUND
    assert beta.snap("verify", "--read-data").code == 0
    assert alpha.snap("verify").code == 0


# -- 3. a new host with an empty cache -----------------------------------------------------------
def test_new_host_fetches_only_what_it_needs(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/agents"
    writer = make_host(tmp_path, "old", url, s3_server.endpoint)
    files = {f"logs/day-{i}.log": _random(2 * MiB, i) for i in range(8)}
    files["agents/Z/priority_weights.json"] = json.dumps({"relevance": 0.42}).encode()
    src = _write_tree(tmp_path / "src", files)
    assert writer.snap("init").code == 0
    assert writer.snap("take", ".", "--tier", "daily", cwd=src).code == 0
    total = sum(size for key, size in s3_server.keys(bucket, "agents/packs/").items())
    assert total > 16 * MiB

    fresh = make_host(tmp_path, "fresh", url, s3_server.endpoint)
    listed = fresh.snap("list", "--json")
    assert listed.code == 0, listed.err
    assert len(listed.json()) == 1
    out = tmp_path / "out"
    res = fresh.snap("restore", "latest", "agents/Z/priority_weights.json", "--target", str(out), "--json")
    assert res.code == 0, res.err
    assert (out / "agents/Z/priority_weights.json").read_bytes() == files["agents/Z/priority_weights.json"]
    fetched = res.json()["fetched_bytes"]
    assert 0 < fetched < total / 20, (fetched, total)
    cat = fresh.snap("cat", "latest", "logs/day-3.log")
    assert cat.raw == files["logs/day-3.log"]
    per_process = fresh.fetched()
    assert len(per_process) == 3
    assert per_process[-1]["fetched_bytes"] < 2 * MiB + total / 20  # the one file, and pack tables
    _require_fuse()
    mounter = make_host(tmp_path, "mounter", url, s3_server.endpoint)
    mp = tmp_path / "mnt"
    proc = _mount(mounter, mp)
    try:
        daily = mp / "tiers" / "daily" / "latest"
        assert (daily / "logs/day-5.log").read_bytes() == files["logs/day-5.log"]
    finally:
        _unmount(mp, proc)
    (mounted,) = mounter.fetched()
    assert mounted["fetched_bytes"] < 2 * MiB + total / 20


# -- 4. gc while another host takes ---------------------------------------------------------------
def test_gc_while_another_host_takes(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/agents"
    alpha = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    beta = make_host(tmp_path, "beta", url, s3_server.endpoint)
    config = tmp_path / "gc.json"
    config.write_text(json.dumps({"gc": {"safety_window": "0s"},
                                  "tiers": {"daily": {"sources": ["src"], "keep": 1}}}))
    src = _write_tree(tmp_path / "src", {f"agents/a{i}.bin": _random(MiB, i) for i in range(3)})
    assert alpha.snap("init").code == 0
    ids = []
    for step in range(3):
        (src / f"agents/step-{step}.bin").write_bytes(_random(MiB, 50 + step))
        res = alpha.snap("take", ".", "--tier", "daily", "--json", cwd=src)
        assert res.code == 0, res.err
        ids.append(res.json()["id"])
        (src / f"agents/step-{step}.bin").unlink()
    states = {}
    for snap_id in ids:
        out = tmp_path / f"before-{snap_id[:8]}"
        assert alpha.snap("restore", snap_id, "--target", str(out)).code == 0
        states[snap_id] = tree_state(out)

    # beta takes slowly: overlapping data (dedup against alpha's packs) plus its own
    other = _write_tree(tmp_path / "other", {f"agents/a{i}.bin": _random(MiB, i) for i in range(3)})
    for i in range(12):
        (other / f"beta/b{i}.bin").parent.mkdir(exist_ok=True)
        (other / f"beta/b{i}.bin").write_bytes(_random(256 * 1024, 1000 + i))
    # beta's take stops with its packs stored and its lease held, just before its commit, until
    # alpha's gc is over (the same race runs at other exact points, in process, in
    # tests/unit/test_shared_repository.py)
    pause = tmp_path / "pause"
    pause.mkdir()
    take = beta.popen("take", ".", "--json", cwd=other,
                      env={"SNAP_TEST_PAUSE_AT": "take-before-commit", "SNAP_TEST_PAUSE_DIR": str(pause)})
    deadline = time.monotonic() + 60
    while not (pause / "paused-take-before-commit").exists():
        assert take.poll() is None and time.monotonic() < deadline, "beta's take never reached its commit"
        time.sleep(0.05)
    # (the lease names a host by a keyed token in an encrypted repository: any take lease is beta's)
    assert any(k.startswith("agents/locks/take-") for k in s3_server.keys(bucket, "agents/locks/"))

    # alpha forgets two snapshots and collects garbage while beta's take runs
    res = alpha.snap("--config", str(config), "gc", "--json")
    assert res.code == 0, res.err
    gc = res.json()
    assert len(gc["forgotten"]) == 2
    assert gc["deferred"] > 0 and any("left for the next gc" in p for p in gc["problems"]), gc
    assert take.poll() is None, "the take should still be waiting"
    (pause / "resume-take-before-commit").touch()
    out, err = take.communicate(timeout=120)
    assert take.returncode == 0, err.decode()
    beta_snap = json.loads(out)

    # a host with an empty cache restores everything that is committed
    check = make_host(tmp_path, "checker", url, s3_server.endpoint)
    listed = {s["id"] for s in check.snap("list", "--json").json()}
    assert listed == {ids[-1], beta_snap["id"]}
    res = check.snap("restore", ids[-1], "--target", str(tmp_path / "after-alpha"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "after-alpha") == states[ids[-1]]
    res = check.snap("restore", beta_snap["id"], "--target", str(tmp_path / "after-beta"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "after-beta") == tree_state(other)
    # with nobody else at work the next gc deletes what was deferred, and loses nothing
    before = sum(s3_server.keys(bucket, "agents/packs/").values())
    res = alpha.snap("--config", str(config), "gc", "--json")
    assert res.code == 0, res.err
    assert res.json()["deferred"] == 0
    assert sum(s3_server.keys(bucket, "agents/packs/").values()) < before
    assert check.snap("verify", "--read-data").code == 0
    res = beta.snap("restore", ids[-1], "--target", str(tmp_path / "final"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "final") == states[ids[-1]]


def test_gc_lease_is_exclusive(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/agents"
    alpha = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    # plaintext: the test writes the other gc's lease note itself (encrypted ones: test_s3_encryption)
    assert alpha.snap("init", "--encryption", "none").code == 0
    lease = {"kind": "gc", "owner": "someone", "host": "elsewhere", "pid": 4242, "command": "snap gc",
             "started": time.time(), "expires": time.time() + 300, "deleting": []}
    s3_server.client().put_object(Bucket=bucket, Key="agents/locks/gc.json", Body=json.dumps(lease).encode())
    res = alpha.snap("gc")
    assert res.code == ExitCode.LOCKED and "snap gc (pid 4242 on elsewhere)" in res.err
    assert len(res.err.strip().splitlines()) == 1
    lease["expires"] = time.time() - 3600  # a dead gc's lease is taken over
    s3_server.client().put_object(Bucket=bucket, Key="agents/locks/gc.json", Body=json.dumps(lease).encode())
    res = alpha.snap("gc")
    assert res.code == 0, res.err
    assert "agents/locks/gc.json" not in s3_server.keys(bucket)


# -- 5. a dead server, transient errors ---------------------------------------------------------
def test_server_killed_during_take(own_s3_server: S3Server, tmp_path: Path) -> None:
    server = own_s3_server
    bucket = server.make_bucket()
    url = f"s3://{bucket}/agents"
    host = make_host(tmp_path, "alpha", url, server.endpoint)
    host.env["SNAP_S3_MAX_ATTEMPTS"] = "3"
    first = _write_tree(tmp_path / "first", {"agents/Z/SOUL.md": b"# Z\n" * 200, "w.bin": _random(MiB, 1)})
    assert host.snap("init").code == 0
    res = host.snap("take", ".", "--json", cwd=first)
    assert res.code == 0, res.err
    kept = res.json()["id"]
    big = _write_tree(tmp_path / "big", {f"logs/{i}.bin": _random(512 * 1024, 10 + i) for i in range(16)})
    take = host.popen("take", ".", cwd=big, env={"SNAP_TEST_SLOW_STORE": "0.15"})
    time.sleep(1.5)
    assert take.poll() is None
    server.stop(kill=True)
    _out, err = take.communicate(timeout=120)
    assert take.returncode == ExitCode.REMOTE, err.decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snap: error: cannot reach S3 endpoint"), lines
    assert "Traceback" not in err.decode()
    server.start()
    listed = host.snap("list", "--json")
    assert listed.code == 0, listed.err
    assert [s["id"] for s in listed.json()] == [kept]
    res = host.snap("restore", kept, "--target", str(tmp_path / "out1"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "out1") == tree_state(first)
    res = host.snap("take", ".", "--json", cwd=big)
    assert res.code == 0, res.err
    res = host.snap("restore", "latest", "--target", str(tmp_path / "out2"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "out2") == tree_state(big)
    assert host.snap("verify", "--read-data").code == 0


def test_transient_errors_are_retried(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/agents"
    host = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    src = _write_tree(tmp_path / "src", {"a.bin": _random(MiB, 7), "b.txt": b"hello\n"})
    assert host.snap("init").code == 0
    res = host.snap("take", ".", "--json", cwd=src,
                    env={"SNAP_TEST_S3_FAIL_FIRST": "3", "SNAP_S3_MAX_ATTEMPTS": "5"})
    assert res.code == 0, res.err
    assert host.fetched()[-1]["injected_failures"] == 3
    out = tmp_path / "out"
    res = host.snap("restore", "latest", "--target", str(out), env={"SNAP_TEST_S3_FAIL_FIRST": "2"})
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)
    # more failures in a row than attempts: a clear error, nothing committed
    res = host.snap("take", ".", cwd=src, env={"SNAP_TEST_S3_FAIL_FIRST": "50", "SNAP_S3_MAX_ATTEMPTS": "2"})
    assert res.code == ExitCode.REMOTE and res.err.startswith("snap: error:") and "ServiceUnavailable" in res.err
    assert len(host.snap("list", "--json").json()) == 1


# -- 6. copy --------------------------------------------------------------------------------------
def test_copy_sends_only_what_is_missing(s3_server: S3Server, bucket: str, agent_tree: Path, tmp_path: Path) -> None:
    local = tmp_path / "local-repo"
    host = make_host(tmp_path, "alpha", f"s3://{bucket}/offsite", s3_server.endpoint)
    assert host.snap("init", repo=str(local)).code == 0
    assert host.snap("take", ".", "--tier", "daily", repo=str(local), cwd=agent_tree).code == 0
    (agent_tree / "agents/Z/memory/lessons.md").write_text("- a new lesson\n")
    assert host.snap("take", ".", "--tier", "weekly", repo=str(local), cwd=agent_tree).code == 0
    res = host.snap("copy", "latest:weekly", "--to", host.url, "--init", "--json", repo=str(local))
    assert res.code == 0, res.err
    first = res.json()
    assert len(first["copied"]) == 1 and first["blobs_sent"] > 0
    assert first["tables_checked"] == first["packs_written"] > 0
    res = host.snap("copy", "latest:weekly", "--to", host.url, "--json", repo=str(local))
    assert res.code == 0, res.err
    again = res.json()
    assert again["copied"] == [] and len(again["skipped"]) == 1
    assert again["bytes_sent"] == 0 and again["blobs_sent"] == 0
    # the daily one shares almost everything with the weekly one already there
    res = host.snap("copy", "--tier", "daily", "--to", host.url, "--json", repo=str(local))
    assert res.code == 0, res.err
    assert len(res.json()["copied"]) == 1 and res.json()["bytes_sent"] < 64 * 1024
    out = tmp_path / "out"
    res = host.snap("restore", "latest:weekly", "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(agent_tree)
    # S3 -> S3 (another prefix) and S3 -> local
    res = host.snap("copy", "--to", f"s3://{bucket}/second", "--init", "--json")
    assert res.code == 0, res.err
    assert len(res.json()["copied"]) == 2
    back = tmp_path / "back"
    res = host.snap("copy", "--latest", "--to", str(back), "--init", "--json", repo=f"s3://{bucket}/second")
    assert res.code == 0, res.err
    res = host.snap("restore", "latest", "--target", str(tmp_path / "out-back"), repo=str(back))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "out-back") == tree_state(agent_tree)
    assert host.snap("verify", "--read-data", repo=str(back)).code == 0
    assert host.snap("verify", "--read-data").code == 0


# -- 7. bad input ---------------------------------------------------------------------------------
def test_bad_input_gets_one_line_and_writes_nothing(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    url = f"s3://{bucket}/agents"
    host = make_host(tmp_path, "alpha", url, s3_server.endpoint)
    cache = Path(host.env["XDG_CACHE_HOME"])

    def fails(code: int, words: str, *args: str, env: dict[str, str] | None = None, repo: str | None = None) -> None:
        res = host.snap(*args, env=env, repo=repo, cwd=work)
        assert res.code == code, (args, res.code, res.err)
        lines = res.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("snap: error:") and words in lines[0], lines
        assert "Traceback" not in res.err

    fails(ExitCode.ACCESS_DENIED, "refused access", "init", env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    fails(ExitCode.ACCESS_DENIED, "no S3 credentials", "init",
          env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    fails(ExitCode.NO_REPO, "does not exist", "init", repo="s3://no-such-bucket-here/agents")
    fails(ExitCode.NO_REPO, "does not exist", "list", repo="s3://no-such-bucket-here/agents")
    (closed,) = free_ports(1)  # nothing listens there
    fails(ExitCode.REMOTE, "cannot reach S3 endpoint", "init",
          env={"SNAP_S3_ENDPOINT": f"http://127.0.0.1:{closed}", "SNAP_S3_MAX_ATTEMPTS": "2"})
    fails(ExitCode.USAGE, "did you mean 's3://bucket'", "init", repo="s3:/bucket")
    fails(ExitCode.USAGE, "unsupported repository URL", "init", repo="s4://x")
    fails(ExitCode.USAGE, "invalid bucket name", "init", repo="s3://A_B/x")
    fails(ExitCode.USAGE, "invalid S3 endpoint", "init", env={"SNAP_S3_ENDPOINT": "htp:/127.0.0.1"})
    fails(ExitCode.NO_REPO, "no repository at", "list")
    res = host.snap("list", "--json", repo="s4://x", cwd=work)
    assert res.code == ExitCode.USAGE and json.loads(res.err)["error"] == "usage"
    # nothing was written: not in the bucket, not in the cache, not in the working directory
    assert set(s3_server.keys(bucket)) == set()
    assert not cache.exists()
    assert os.listdir(work) == []
    assert host.snap("init").code == 0
    fails(ExitCode.EXISTS, "already exists", "init")
    shutil.rmtree(work)


# -- pieces that need no server ---------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind", "bucket", "prefix"), [
    ("s3://backups/agents", "s3", "backups", "agents"),
    ("s3://backups/agents/prod/", "s3", "backups", "agents/prod"),
    ("s3://backups", "s3", "backups", ""),
    ("S3://my.bucket-1/x", "s3", "my.bucket-1", "x"),
    ("relative/dir", "local", "", ""),
    ("name:with-colon", "local", "", ""),
])
def test_locations(text: str, kind: str, bucket: str, prefix: str) -> None:
    from snapstore.storage.locations import parse_location

    loc = parse_location(text)
    assert (loc.kind, loc.bucket, loc.prefix) == (kind, bucket, prefix)
    if kind == "local":
        assert loc.path == os.path.abspath(text)


@pytest.mark.parametrize(("text", "words"), [
    ("s3:/backups", "did you mean 's3://backups'"),
    ("s3:backups", "did you mean 's3://backups'"),
    ("s3:///backups", "did you mean 's3://backups'"),
    ("s4://x", "unsupported repository URL"),
    ("http://host/bucket", "unsupported repository URL"),
    ("s3://ab/x", "invalid bucket name"),
    ("s3://Upper/x", "invalid bucket name"),
    ("s3://bucket/a/../b", "invalid key prefix"),
    ("", "empty repository location"),
])
def test_bad_locations(text: str, words: str) -> None:
    from snapstore.errors import UsageError
    from snapstore.storage.locations import parse_location

    with pytest.raises(UsageError) as info:
        parse_location(text)
    assert words in str(info.value)


def test_local_repositories_never_load_boto3(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from snapstore.repo.repository import Repository\n"
        "from snapstore.ops.backup import source_for, take_snapshot\n"
        "from snapstore.ops.gc import collect_garbage\n"
        "Repository.init(sys.argv[1])\n"
        "with Repository.open(sys.argv[1], mode='exclusive') as repo:\n"
        "    take_snapshot(repo, [source_for(sys.argv[2], '/')])\n"
        "    collect_garbage(repo, [])\n"
        "import snapstore.cli.app\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 was imported'\n"
    )
    src = _write_tree(tmp_path / "src", {"a.txt": b"a\n"})
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "repo"), str(src)], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
