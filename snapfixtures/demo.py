"""The README's demo: snap's main job on a generated agent workspace, narrated.

``python -m snapfixtures.demo [WORKDIR]`` generates a small orchestrator workspace (agents Z, Jay,
Rick and Leroy; state JSON; logs), creates a repository, takes a weekly and a daily snapshot
through the real ``snap`` command, lists them, restores one SOUL.md and the whole tree, checks
the restore is identical, and browses the FUSE mount when FUSE is available.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str], *, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    shown = " ".join(shlex.quote(a) for a in ["snap", *args])
    print(f"\n$ {shown}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "snapstore", *args], cwd=cwd, env=env, text=True,
                          capture_output=True)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print(out)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: 'snap {args[0]}' failed with exit code {proc.returncode}")
    return proc


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _match, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", help="where to put the workspace and repository (default: a temp dir)")
    parser.add_argument("--size", default="60M", help="size of the generated workspace (default 60M)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    from snapfixtures.sampledata import generate_workspace, parse_size, simulate_day

    work = Path(args.workdir or tempfile.mkdtemp(prefix="snap-demo-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    ws, repo, restore_dir, mnt = work / "workspace", work / "repository", work / "restored", work / "mnt"
    for path in (ws, repo, restore_dir):
        if path.exists():
            shutil.rmtree(path)
    env = dict(os.environ, SNAP_REPO=str(repo))
    env.pop("SNAP_CONFIG", None)
    if not env.get("SNAP_PASSWORD"):
        # the repository is encrypted (the default): a throwaway password for this demo only,
        # kept in a 0600 file beside it, given to snap through the environment (never argv)
        secret = work / "demo-password"
        secret.write_text(secrets.token_urlsafe(18) + "\n")
        secret.chmod(0o600)
        env["SNAP_PASSWORD"] = env["SNAP_NEW_PASSWORD"] = secret.read_text().strip()
        print(f"demo: the repository is encrypted; its throwaway password is in {secret}", flush=True)
    print(f"demo: generating an agent workspace of {args.size} in {ws}", flush=True)
    info = generate_workspace(ws, parse_size(args.size), seed=7)
    print(f"demo: {info.files} files, {info.total_bytes / 1e6:.0f} MB")

    _run(["init"], cwd=work, env=env)
    _run(["take", ".", "--tier", "weekly", "--tag", "demo"], cwd=ws, env=env)
    simulate_day(ws, 1, seed=7)
    _run(["take", "agents", "--tier", "daily"], cwd=ws, env=env)
    _run(["list"], cwd=work, env=env)
    _run(["ls", "latest:weekly", "agents/Z", "-l"], cwd=work, env=env)
    _run(["restore", "latest:weekly", "agents/Z/SOUL.md", "--target", str(restore_dir / "one-file")],
         cwd=work, env=env)
    _run(["restore", "latest:daily", "--target", str(restore_dir / "daily")], cwd=work, env=env)
    same = _same_tree(ws / "agents", restore_dir / "daily" / "agents")
    print(f"\ndemo: restored agents/ is {'identical to' if same else 'DIFFERENT from'} the live agents/")
    mounted = _try_mount(work, mnt, env)
    print(f"\ndemo: done. Workspace, repository and restores are in {work}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
        print("demo: (temporary directory removed; pass a WORKDIR or --keep to keep it)")
    return 0 if same and mounted is not False else 1


def _try_mount(work: Path, mnt: Path, env: dict[str, str]) -> bool | None:
    """Mount, copy a SOUL.md out of tiers/weekly/latest, unmount. None when FUSE is unavailable."""
    if not os.path.exists("/dev/fuse"):
        print("\ndemo: /dev/fuse is missing here: skipping the FUSE mount part")
        return None
    mnt.mkdir(exist_ok=True)
    proc = _run(["mount", str(mnt)], cwd=work, env=env, check=False)
    if proc.returncode != 0:
        print("demo: mount failed (see above)")
        return False
    try:
        time.sleep(0.2)
        print(f"\n$ ls {mnt} {mnt}/tiers/weekly")
        print(" ".join(sorted(os.listdir(mnt))), "|", " ".join(sorted(os.listdir(mnt / "tiers" / "weekly"))))
        soul = mnt / "tiers" / "weekly" / "latest" / "agents" / "Z" / "SOUL.md"
        print(f"$ cp {soul} {work / 'SOUL.md'}")
        shutil.copy(soul, work / "SOUL.md")
        print((work / "SOUL.md").read_text()[:200].rstrip() + "\n...")
    finally:
        _run(["umount", str(mnt)], cwd=work, env=env, check=False)
    return True


if __name__ == "__main__":
    sys.exit(main())
