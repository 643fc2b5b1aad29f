"""--exclude means one thing: a glob on the name or on the path in the snapshot, for a take,
for the change check of --if-changed and for the watcher alike."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from snapstore.agent.watch import Watcher, find_change
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.excludes import ASIDE_DIR_NAME, Excludes, member_path
from snapstore.repo.repository import Repository


def test_patterns_match_names_and_snapshot_paths() -> None:
    ex = Excludes(["*.tmp", "agents/Z/cache"])
    assert ex.match(b"agents/Z/x.tmp", b"x.tmp")
    assert ex.match(b"agents/Z/cache")
    assert not ex.match(b"agents/Jay/cache")  # the path pattern names one place in the snapshot
    assert not ex.match(b"srv/agents/Z/cache")
    assert Excludes().match(b"a/" + ASIDE_DIR_NAME) and not Excludes().match(b"a/b")
    assert member_path(b"/w/agents/Z/cache", b"/w/agents", b"agents") == b"agents/Z/cache"
    assert member_path(b"/w/agents", b"/w/agents", b"agents") == b"agents"
    assert member_path(b"/w/x", b"/w", b"") == b"x"
    assert member_path(b"/w/agentsX", b"/w/agents", b"agents") is None


_GLOB = st.text(alphabet="ab*?[]!-/.\\\nü+(", max_size=8)
_PATH = st.binary(max_size=10) | st.text(alphabet="ab*?/.\\\nü+(", max_size=10).map(os.fsencode)


@given(st.lists(_GLOB, max_size=4), _PATH)
def test_patterns_match_as_fnmatch_does(patterns: list[str], path: bytes) -> None:
    # the patterns are matched as one expression; it must mean what fnmatchcase says of each
    want = any(fnmatch.fnmatchcase(path, os.fsencode(p)) for p in patterns)
    assert Excludes(patterns).match_name(path) == (want or path == ASIDE_DIR_NAME)


def test_take_change_check_and_watcher_agree(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "agents" / "Z" / "cache").mkdir(parents=True)
    (ws / "agents" / "Z" / "SOUL.md").write_text("Z\n")
    (ws / "agents" / "Z" / "cache" / "blob").write_text("junk\n")
    sources = [source_for("agents", str(ws))]
    excludes = ["agents/Z/cache"]
    Repository.init(str(tmp_path / "repo"))
    with Repository.open(str(tmp_path / "repo"), mode="write") as repo:
        snap = take_snapshot(repo, sources, excludes=excludes, verify="none").snapshot
        assert snap.stats.files == 1
        (ws / "agents" / "Z" / "cache" / "blob").write_text("more junk\n")
        assert find_change(repo, snap, sources, excludes) is None
        (ws / "agents" / "Z" / "SOUL.md").write_text("Z changed\n")
        assert find_change(repo, snap, sources, excludes) == "agents/Z/SOUL.md: modified"
    watcher = Watcher(sources, excludes)
    try:
        watched = set(watcher.dirs.values())
        assert str(ws / "agents" / "Z").encode() in watched
        assert str(ws / "agents" / "Z" / "cache").encode() not in watched
    finally:
        watcher.close()
