"""The index as a cache: files-cache keys of any path length, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import tree_state


def _deep_tree(root: Path, length: int = 4000) -> Path:
    """A tree holding one file whose path below ``root`` is ``length`` bytes long."""
    parts: list[str] = []
    used = 0
    while used + 201 < length - 60:
        parts.append(chr(ord("a") + len(parts) % 26) * 200)
        used += 201
    name = "f" * (length - used)
    deep = root.joinpath(*parts)
    deep.mkdir(parents=True)
    target = deep / name
    target.write_bytes(b"deep content\n" * 1000)
    (root / "short.txt").write_text("short\n")
    assert len(os.fsencode(os.path.relpath(target, root))) == length
    return target


def test_take_of_a_4000_byte_path_restores_and_retakes_from_the_files_cache(snap, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _deep_tree(src)
    assert snap("init").code == 0
    first = snap("take", ".", "--json", cwd=src)
    assert first.code == 0, first.err
    assert first.json()["read_bytes"] == 13_000 + len("short\n")
    again = snap("take", ".", "--json", cwd=src)
    assert again.code == 0, again.err
    assert again.json()["read_bytes"] == 0  # both files came from the files cache
    assert snap("verify", "--read-data").code == 0
    out = tmp_path / "out"
    res = snap("restore", "latest", "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)


def test_import_of_a_gnu_tar_archive_with_a_4000_byte_path(snap, tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = _deep_tree(src)
    archive = tmp_path / "deep.tar"
    subprocess.run(["tar", "--format=gnu", "-cf", str(archive), "-C", str(src), "."], check=True)
    assert b"././@LongLink" in archive.read_bytes()  # GNU tar wrote the long name as a long-name entry
    assert snap("init").code == 0
    res = snap("import", str(archive), "--json")
    assert res.code == 0, res.err
    imported = json.loads(res.out)["imported"]
    assert len(imported) == 1
    out = tmp_path / "out"
    res = snap("restore", imported[0]["id"], "--target", str(out))
    assert res.code == 0, res.err
    assert (out / deep.relative_to(src)).read_bytes() == deep.read_bytes()
    assert tree_state(out, with_mtime=False).keys() == tree_state(src, with_mtime=False).keys()
    assert snap("verify", "--read-data").code == 0
    # and back out: GNU tar itself finds the export of the snapshot identical to what it extracts
    # from the original archive (whole-second mtimes: the gnu format holds no more)
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(extracted)], check=True)
    exported = tmp_path / "export.tar"
    res = snap("export", imported[0]["id"], "--output", str(exported), "--format", "tar")
    assert res.code == 0, res.err
    judged = subprocess.run(["tar", "--compare", "-f", str(exported), "-C", str(extracted)], capture_output=True,
                            text=True)
    assert judged.returncode == 0, judged.stdout + judged.stderr
