"""Restores and exports are exact: judged by GNU tar and rsync, on real files from a Debian package.

The trees are copies of what the ``base-files`` package (Essential: on every Debian system)
installed: licence texts and their symlinks (``GPL -> GPL-3``). Copying gives them fresh
nanosecond mtimes from the kernel, which is what a float loses. Archives are made by GNU tar
in the tests; the judges are ``tar --compare`` and ``rsync -aHc --dry-run --itemize-changes``
(each prints nothing when the two sides agree).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Result, SnapRunner

DEB_PACKAGE = "base-files"
DEB_DIRS = ("/usr/share/common-licenses", "/usr/share/base-files")


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def debian_tree(root: Path) -> Path:
    """A copy of the files of a Debian package (``dpkg -L``): regular files and symlinks, new
    mtimes with nanosecond digits, and one file set to a time no float of seconds can hold."""
    listed = subprocess.run(["dpkg", "-L", DEB_PACKAGE], capture_output=True, text=True, check=True).stdout.split()
    tree = root / "tree"
    copied = 0
    for path in listed:
        if not path.startswith(tuple(d + "/" for d in DEB_DIRS)) or not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            continue
        dest = tree / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), dest)
        else:
            shutil.copyfile(path, dest)
        copied += 1
    assert copied > 10 and any(p.is_symlink() for p in tree.rglob("*"))
    licence = tree / "usr/share/common-licenses/GPL-3"
    os.utime(licence, ns=(1_796_155_305_527_300_538, 1_796_155_305_527_300_538))
    link = tree / "usr/share/common-licenses/GPL"
    os.utime(link, ns=(1_700_000_000_987_654_321, 1_700_000_000_987_654_321), follow_symlinks=False)
    return tree


def judge_rsync(source: Path, restored: Path, *extra: str) -> str:
    """What rsync would change to make ``restored`` equal ``source`` (empty: nothing)."""
    out = subprocess.run(["rsync", "-aHc", *extra, "--dry-run", "--itemize-changes", f"{source}/", f"{restored}/"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def tar_compare(archive: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tar", "--compare", "-f", str(archive), "-C", str(directory)], capture_output=True,
                          text=True)


def test_export_keeps_nanosecond_mtimes(snap: SnapRunner, tmp_path: Path) -> None:
    tree = debian_tree(tmp_path)
    ok(snap("init"))
    ok(snap("take", ".", cwd=tree))
    out = tmp_path / "export.tar"
    ok(snap("export", "latest", "-o", str(out)))
    judged = tar_compare(out, tree)
    assert judged.returncode == 0 and judged.stdout == "" and judged.stderr == "", judged

    # the same through an import of a GNU tar (pax) archive: its times come back exact too
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", "--format=posix", "-cf", str(archive), "-C", str(tmp_path), "tree"], check=True)
    ok(snap("import", str(archive), "--tier", "imported"))
    again = tmp_path / "again.tar"
    ok(snap("export", "latest:imported", "-o", str(again)))
    judged = tar_compare(again, tree)
    assert judged.returncode == 0 and judged.stdout == "" and judged.stderr == "", judged


def test_import_then_restore_keeps_symlink_mtimes(snap: SnapRunner, tmp_path: Path) -> None:
    tree = debian_tree(tmp_path)
    archive = tmp_path / "gnu.tar.gz"
    subprocess.run(["tar", "--format=posix", "-czf", str(archive), "-C", str(tmp_path), "tree"], check=True)
    ok(snap("init"))
    ok(snap("import", str(archive)))
    restored = tmp_path / "restored"
    ok(snap("restore", "latest", "--target", str(restored)))
    assert judge_rsync(tree, restored) == ""
    link = "usr/share/common-licenses/GPL"
    assert os.lstat(restored / link).st_mtime_ns == os.lstat(tree / link).st_mtime_ns == 1_700_000_000_987_654_321


@pytest.mark.parametrize("offset", [40_000_001, 4096 * 2000, 63 * 1024 * 1024 + 17])
def test_sparse_file_from_gnu_tar_import_stays_sparse(snap: SnapRunner, tmp_path: Path, offset: int) -> None:
    """64 MiB with one byte written: GNU tar -S stores one byte; the restore allocates a block
    or two, as ``tar -x`` does, wherever the byte falls inside its chunk."""
    src = tmp_path / "src"
    src.mkdir()
    sparse = src / "disk.img"
    with open(sparse, "wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.seek(offset)
        f.write(b"x")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-cSf", str(archive), "-C", str(tmp_path), "src"], check=True)
    ok(snap("init"))
    ok(snap("import", str(archive)))
    restored = tmp_path / "restored"
    ok(snap("restore", "latest", "--target", str(restored)))
    out = restored / "disk.img"
    assert out.stat().st_size == 64 * 1024 * 1024
    assert out.stat().st_blocks * 512 <= 16 * 1024, out.stat().st_blocks
    with open(out, "rb") as f:
        f.seek(offset - 1)
        assert f.read(3) == (b"\0x\0" if offset + 1 < 64 * 1024 * 1024 else b"\0x")
    assert judge_rsync(src, restored) == ""


def test_extended_attributes_and_acls_are_stored_and_restored(snap: SnapRunner, tmp_path: Path) -> None:
    """user.* and security.capability attributes and POSIX ACLs (access and default) come back:
    ``rsync -aHcAX --dry-run --itemize-changes`` finds nothing to change."""
    src = tmp_path / "src"
    (src / "shared" / "inbox").mkdir(parents=True)
    (src / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(src / "tool", 0o755)
    (src / "notes.md").write_text("notes\n")
    (src / "shared" / "inbox" / "a.txt").write_text("a\n")
    os.symlink("notes.md", src / "link")
    os.setxattr(src / "notes.md", "user.origin", b"agent Z")
    os.setxattr(src / "notes.md", "user.empty", b"")
    os.setxattr(src / "shared", "user.purpose", "w\u00e4chter".encode())
    os.setxattr(src / "shared" / "inbox" / "a.txt", "user.bin", bytes(range(256)))
    subprocess.run(["setcap", "cap_net_bind_service=+ep", str(src / "tool")], check=True)
    subprocess.run(["setfacl", "-m", "u:nobody:rw,g:daemon:r", str(src / "notes.md")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rwx", str(src / "shared")], check=True)
    subprocess.run(["setfacl", "-m", "u:nobody:rx", str(src / "shared" / "inbox")], check=True)
    assert judge_rsync(src, tmp_path / "empty", "-AX")  # the judge sees a difference at all
    ok(snap("init"))
    ok(snap("take", ".", cwd=src))
    restored = tmp_path / "restored"
    ok(snap("restore", "latest", "--target", str(restored)))
    assert judge_rsync(src, restored, "-AX") == ""
    assert os.getxattr(restored / "tool", "security.capability") == os.getxattr(src / "tool", "security.capability")
    acl = subprocess.run(["getfacl", "-cd", str(restored / "shared")], capture_output=True, text=True, check=True)
    assert "user:nobody:rwx" in acl.stdout
    # a second take skips reading the unchanged files (files cache), attributes still kept
    ok(snap("take", ".", cwd=src))
    again = tmp_path / "again"
    ok(snap("restore", "latest", "--target", str(again)))
    assert judge_rsync(src, again, "-AX") == ""
