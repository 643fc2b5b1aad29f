"""Integration tests for ``snap diff`` and ``snap versions``: the real CLI in a subprocess.

One repository (built once per module with the CLI) holds three snapshots of a small agent
workspace: s1, then s2 (one memory file added, one skill removed, SOUL.md edited, two keys
of weights.json changed, one skill chmod'ed), then s3 (a JSON file broken, a binary file
rewritten, a symlink retargeted, another tier). A second repository, built with the core API
for speed, holds 30 snapshots in which weights.json has 4 versions.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from snapstore.errors import ExitCode
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo.repository import Repository

SOUL_V1 = "# Z\n\nYou are Z, chief of staff.\nRank the queue every morning.\nNever skip the kaizen review.\n"
SOUL_V2 = "# Z\n\nYou are Z, chief of staff.\nRank the queue every hour.\nNever skip the kaizen review.\n"
WEIGHTS_V1 = {"weights": {"relevance": 0.42, "recency": 0.3, "risk": 0.1}, "approvedBy": "Z", "version": 3}
WEIGHTS_V2 = {"weights": {"relevance": 0.57, "recency": 0.3, "risk": 0.15}, "approvedBy": "Z", "version": 3}
MEMORY_NEW = "- ranked 15 tasks\n- weights tuned\n"  # 34 bytes
BACKUP_SKILL = "def run():\n    return 'backup'\n"  # 31 bytes


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def snap(repo: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    full_env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG", "SNAP_NOW")}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "snapstore", "--repo", str(repo), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def take(repo: Path, ws: Path, when: str, tier: str = "daily") -> str:
    result = snap(repo, "take", ".", "--tier", tier, "--json", cwd=ws, env={"SNAP_NOW": when})
    assert result.code == 0, result.err
    return str(result.json()["id"])


@dataclass
class Repo:
    path: Path
    s1: str
    s2: str
    s3: str
    other: str


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("diffcli")
    ws = base / "ws"
    rng = random.Random(7)
    write(ws, "agents/Z/SOUL.md", SOUL_V1)
    write(ws, "agents/Z/weights.json", json.dumps(WEIGHTS_V1, indent=2) + "\n")
    write(ws, "agents/Z/weights.bin", rng.randbytes(4096))
    write(ws, "agents/Z/memory/2025-03-01.md", "- ranked 12 tasks\n")
    write(ws, "agents/Z/skills/prioritize.py", "def run():\n    return 'prioritize'\n")
    write(ws, "agents/Z/skills/backup.py", BACKUP_SKILL)
    write(ws, "agents/Jay/SOUL.md", "# Jay\n\nResearcher.\n")
    write(ws, "agents/Jay/skills/summarize.py", "def run():\n    return 'summarize'\n")
    write(ws, "agents/Jay/notes.json", json.dumps({"ok": True, "sources": 3}))
    write(ws, "state/orchestrator_state.json", json.dumps({"tasks": [{"id": 1, "state": "done"}]}))
    os.chmod(ws / "agents/Jay/skills/summarize.py", 0o644)
    os.symlink("agents/Z/SOUL.md", ws / "soul-link")
    repo_path = base / "repo"
    assert snap(repo_path, "init").code == 0
    s1 = take(repo_path, ws, "2025-03-01T06:00:00Z")

    write(ws, "agents/Z/memory/2025-03-02.md", MEMORY_NEW)
    (ws / "agents/Z/skills/backup.py").unlink()
    write(ws, "agents/Z/SOUL.md", SOUL_V2)
    write(ws, "agents/Z/weights.json", json.dumps(WEIGHTS_V2, indent=2) + "\n")
    os.chmod(ws / "agents/Jay/skills/summarize.py", 0o755)
    s2 = take(repo_path, ws, "2025-03-02T06:00:00Z")

    write(ws, "agents/Jay/notes.json", '{"ok": true, "sources": 4,\n')  # does not parse any more
    write(ws, "agents/Z/weights.bin", rng.randbytes(4096))
    os.unlink(ws / "soul-link")
    os.symlink("agents/Jay/SOUL.md", ws / "soul-link")
    s3 = take(repo_path, ws, "2025-03-03T06:00:00Z")
    other = take(repo_path, ws, "2025-03-03T07:00:00Z", tier="weekly")
    return Repo(repo_path, s1, s2, s3, other)


EXPECTED = {
    ("added", "agents/Z/memory/2025-03-02.md"),
    ("removed", "agents/Z/skills/backup.py"),
    ("modified", "agents/Z/SOUL.md"),
    ("modified", "agents/Z/weights.json"),
    ("metadata", "agents/Jay/skills/summarize.py"),
}


# -- snap diff ----------------------------------------------------------------------------
def test_diff_lists_exactly_the_changes(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"--- {repo.s1[:8]}  2025-03-01 06:00:00 UTC  daily")
    assert lines[1].startswith(f"+++ {repo.s2[:8]}  2025-03-02 06:00:00 UTC  daily")
    body = lines[2:-1]
    assert {(line.split()[0], line.split()[1]) for line in body} == EXPECTED
    assert len(body) == len(EXPECTED)
    chmod = next(line for line in body if "summarize.py" in line)
    assert "mode 0644 -> 0755" in chmod
    added = next(line for line in body if line.startswith("added"))
    assert added.endswith("34 B (+34 B)")
    assert lines[-1].startswith("1 added (+34 B), 1 removed (-31 B), 2 modified")
    assert "1 metadata only" in lines[-1]


def test_diff_json_returns_the_changes_as_data(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["from"]["id"] == repo.s1
    assert data["to"]["id"] == repo.s2
    assert data["paths"] == []
    changes = {(c["change"], c["path"]): c for c in data["changes"]}
    assert set(changes) == EXPECTED
    chmod = changes[("metadata", "agents/Jay/skills/summarize.py")]
    assert chmod["fields"] == ["mode"]
    assert (chmod["old"]["mode"], chmod["new"]["mode"]) == ("0o644", "0o755")
    soul = changes[("modified", "agents/Z/SOUL.md")]
    assert soul["fields"][0] == "content"
    assert soul["type"] == "file"
    assert soul["size_delta"] == len(SOUL_V2) - len(SOUL_V1)
    removed = changes[("removed", "agents/Z/skills/backup.py")]
    assert "new" not in removed and removed["old"]["size"] == 31 and removed["size_delta"] == -31
    assert data["summary"] == {
        "added": 1, "removed": 1, "modified": 2, "metadata": 1, "total": 5, "added_bytes": 34,
        "removed_bytes": 31, "modified_delta": soul["size_delta"] + changes[("modified", "agents/Z/weights.json")]
        ["size_delta"], "net_delta": data["summary"]["net_delta"],
    }
    assert data["summary"]["net_delta"] == 34 - 31 + data["summary"]["modified_delta"]


def test_diff_content_shows_text_lines_and_json_keys(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--content")
    assert result.code == 0, result.err
    out = result.out
    assert "    --- a/agents/Z/SOUL.md" in out
    assert "    -Rank the queue every morning." in out
    assert "    +Rank the queue every hour." in out
    assert "    weights.relevance: 0.42 -> 0.57" in out
    assert "    weights.risk: 0.1 -> 0.15" in out
    assert "recency" not in out and "approvedBy" not in out


def test_diff_content_json_returns_key_changes_as_data(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--content", "--json", "--path", "agents/Z")
    assert result.code == 0, result.err
    data = result.json()
    assert data["paths"] == ["agents/Z"]
    by_path = {c["path"]: c for c in data["changes"]}
    weights = by_path["agents/Z/weights.json"]["content"]
    assert weights == {"kind": "json", "changes": [
        {"path": "weights.relevance", "keys": ["weights", "relevance"], "op": "changed", "old": 0.42, "new": 0.57},
        {"path": "weights.risk", "keys": ["weights", "risk"], "op": "changed", "old": 0.1, "new": 0.15},
    ]}
    soul = by_path["agents/Z/SOUL.md"]["content"]
    assert soul["kind"] == "text"
    assert "-Rank the queue every morning." in soul["unified_diff"]
    assert "content" not in by_path["agents/Z/memory/2025-03-02.md"]  # added: listed, not diffed
    assert "agents/Jay/skills/summarize.py" not in by_path  # outside --path


def test_diff_stat_prints_only_the_summary(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--stat")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 3
    data = snap(repo.path, "diff", repo.s1, repo.s2, "--stat", "--json").json()
    assert "changes" not in data and data["summary"]["total"] == 5


def test_default_second_snapshot(repo: Repo) -> None:
    # SNAP_A not the newest of its tier: compared with the newest of the tier (not of the repo).
    data = snap(repo.path, "diff", repo.s1, "--stat", "--json").json()
    assert (data["from"]["id"], data["to"]["id"]) == (repo.s1, repo.s3)
    # SNAP_A is the newest of its tier: the previous one is compared with it.
    data = snap(repo.path, "diff", "latest:daily", "--stat", "--json").json()
    assert (data["from"]["id"], data["to"]["id"]) == (repo.s2, repo.s3)
    data = snap(repo.path, "diff", repo.s2[:10], "latest:daily", "--stat", "--json").json()
    assert (data["from"]["id"], data["to"]["id"]) == (repo.s2, repo.s3)


def test_only_snapshot_of_its_tier_needs_a_second_one(repo: Repo) -> None:
    result = snap(repo.path, "diff", "latest:weekly")
    assert result.code == ExitCode.NOT_FOUND
    assert result.err.strip() == (f"snap: error: snapshot {repo.other[:8]} is the only one in tier 'weekly'; "
                                  "give a second snapshot to compare with")


def test_same_snapshot_has_no_differences(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s2, repo.s2)
    assert result.code == 0
    assert result.out.splitlines()[-1] == "no differences"


def test_unknown_snapshot_is_a_one_line_error(repo: Repo) -> None:
    result = snap(repo.path, "diff", "deadbeef", repo.s2)
    assert result.code == ExitCode.NOT_FOUND
    assert result.out == ""
    assert result.err == "snap: error: no snapshot with id 'deadbeef'\n"
    result = snap(repo.path, "diff", repo.s1, "nope!", "--json")
    assert result.code == ExitCode.NOT_FOUND
    assert json.loads(result.err)["error"] == "snapshot_not_found"


def test_path_in_neither_snapshot(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--path", "agents/Nobody")
    assert result.code == ExitCode.NOT_FOUND
    assert result.err == (f"snap: error: path not in snapshot {repo.s1[:8]} nor in {repo.s2[:8]}: "
                          "agents/Nobody\n")
    assert result.out == ""


def test_path_on_one_side_only(repo: Repo) -> None:
    data = snap(repo.path, "diff", repo.s1, repo.s2, "-p", "agents/Z/skills/backup.py", "--json").json()
    assert [(c["change"], c["path"]) for c in data["changes"]] == [("removed", "agents/Z/skills/backup.py")]
    nested = snap(repo.path, "diff", repo.s1, repo.s2, "-p", "agents/Z", "-p", "agents/Z/skills", "--json").json()
    assert nested["paths"] == ["agents/Z"]
    assert len(nested["changes"]) == 4


def test_json_that_does_not_parse_falls_back_to_text(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s2, repo.s3, "--content", "-p", "agents/Jay/notes.json")
    assert result.code == 0, result.err
    assert "    note: new version is not valid JSON (Expecting property name enclosed in double quotes at line 2 " \
        "column 1); showing a text diff" in result.out.splitlines()
    assert '    +{"ok": true, "sources": 4,' in result.out
    data = snap(repo.path, "diff", repo.s2, repo.s3, "--content", "--json", "-p", "agents/Jay/notes.json").json()
    content = data["changes"][0]["content"]
    assert content["kind"] == "text" and content["json_fallback"] is True
    assert content["note"].startswith("new version is not valid JSON")


def test_binary_and_too_large_files_get_a_clear_note(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s2, repo.s3, "--content", "-p", "agents/Z/weights.bin")
    assert result.code == 0, result.err
    assert result.out.splitlines()[2].startswith("modified  agents/Z/weights.bin  4.0 KiB -> 4.0 KiB (+0 B)")
    assert "    note: binary files differ: 4096 -> 4096 bytes" in result.out.splitlines()
    result = snap(repo.path, "diff", repo.s1, repo.s2, "--content", "--max-size", "10", "-p", "agents/Z/SOUL.md")
    assert result.code == 0, result.err
    assert "too large for a content diff" in result.out
    assert "Rank the queue" not in result.out


def test_symlink_retarget_is_metadata(repo: Repo) -> None:
    data = snap(repo.path, "diff", repo.s2, repo.s3, "--json", "-p", "soul-link").json()
    [change] = data["changes"]
    assert change["change"] == "metadata" and change["fields"] == ["mtime", "target"]
    assert (change["old"]["target"], change["new"]["target"]) == ("agents/Z/SOUL.md", "agents/Jay/SOUL.md")


def test_stat_and_content_together_is_a_usage_error(repo: Repo) -> None:
    result = snap(repo.path, "diff", repo.s1, "--stat", "--content")
    assert result.code == ExitCode.USAGE
    assert result.err.startswith("snap: error: --stat and --content")


# -- snap versions ------------------------------------------------------------------------
START = datetime(2025, 3, 1, 6, tzinfo=UTC)
CHANGES_AT = (0, 8, 15, 22)  # weights.json written at these snapshots: 4 versions
SOUL_AT = {0: "a", 10: "b", 20: "a"}  # SOUL.md reverted: 3 versions, the third same as the first


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    base = tmp_path_factory.mktemp("versions")
    ws = base / "ws"
    repo_path = base / "repo"
    Repository.init(str(repo_path))
    ids: list[str] = []
    with Repository.open(str(repo_path), mode="write") as repo:
        for i in range(30):
            if i in CHANGES_AT:
                n = CHANGES_AT.index(i)
                write(ws, "agents/Z/weights.json", json.dumps({"weights": {"relevance": 0.4 + n / 10}}))
            if i in SOUL_AT:
                write(ws, "agents/Z/SOUL.md", SOUL_AT[i] * 10)
            if i == 5:
                write(ws, "agents/Z/tmp.txt", "x")
            if i == 7:
                (ws / "agents/Z/tmp.txt").unlink()
            tier = "weekly" if i % 7 == 6 else "daily"
            result = take_snapshot(repo, [source_for(".", str(ws))], tier=tier, verify="none",
                                   when=START + timedelta(days=i))
            ids.append(result.snapshot.id)
    return repo_path, ids


def test_versions_lists_each_content_with_first_and_last_snapshot(history: tuple[Path, list[str]]) -> None:
    repo_path, ids = history
    result = snap(repo_path, "versions", "agents/Z/weights.json", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["snapshots_searched"] == 30 and data["snapshots_present"] == 30
    versions = data["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    bounds = [*CHANGES_AT, 30]
    for v, lo, hi in zip(versions, bounds, bounds[1:], strict=False):
        assert v["first"]["id"] == ids[lo]
        assert v["last"]["id"] == ids[hi - 1]
        assert v["snapshots"] == hi - lo
        assert v["same_as"] is None
        assert v["type"] == "file"
    assert versions[0]["size"] == len(json.dumps({"weights": {"relevance": 0.4}}))
    assert len({v["content_id"] for v in versions}) == 4
    assert versions[1]["first"]["time"] == "2025-03-09T06:00:00Z"


def test_versions_human_table(history: tuple[Path, list[str]]) -> None:
    repo_path, ids = history
    result = snap(repo_path, "versions", "agents/Z/weights.json")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "agents/Z/weights.json: 4 version(s) in 30 snapshot(s)"
    assert lines[1].split() == ["#", "FIRST", "LAST", "SNAPS", "SIZE", "MTIME", "(UTC)", "CONTENT"]
    assert lines[2].split()[:6] == ["1", ids[0][:8], "2025-03-01", "06:00", ids[7][:8], "2025-03-08"]
    assert len(lines) == 6


def test_versions_marks_reverts_and_absences(history: tuple[Path, list[str]]) -> None:
    repo_path, ids = history
    data = snap(repo_path, "versions", "agents/Z/SOUL.md", "--json").json()
    assert [(v["version"], v["snapshots"], v["same_as"]) for v in data["versions"]] == \
        [(1, 10, None), (2, 10, None), (3, 10, 1)]
    assert data["distinct_contents"] == 2
    assert data["versions"][0]["content_id"] == data["versions"][2]["content_id"]
    tmp = snap(repo_path, "versions", "agents/Z/tmp.txt")
    assert tmp.out.splitlines()[0] == "agents/Z/tmp.txt: 1 version(s) in 30 snapshot(s), absent from 28"


def test_versions_of_one_tier(history: tuple[Path, list[str]]) -> None:
    repo_path, ids = history
    data = snap(repo_path, "versions", "agents/Z/weights.json", "--tier", "weekly", "--json").json()
    weekly = [i for i in range(30) if i % 7 == 6]
    assert data["snapshots_searched"] == len(weekly)
    assert [v["first"]["id"] for v in data["versions"]] == [ids[6], ids[13], ids[20], ids[27]]


def test_versions_bad_input(history: tuple[Path, list[str]]) -> None:
    repo_path, _ids = history
    missing = snap(repo_path, "versions", "agents/Z/nothing.json")
    assert missing.code == ExitCode.NOT_FOUND
    assert missing.err == "snap: error: path not in any of 30 snapshot(s): agents/Z/nothing.json\n"
    tier = snap(repo_path, "versions", "agents/Z/weights.json", "--tier", "hourly", "--json")
    assert tier.code == ExitCode.NOT_FOUND
    assert json.loads(tier.err) == {"error": "snapshot_not_found", "exit_code": 5,
                                    "message": "no snapshot in tier 'hourly' in this repository"}
    climb = snap(repo_path, "versions", "../etc/passwd")
    assert climb.code == ExitCode.NOT_FOUND
    assert climb.err.startswith("snap: error: '..' is not allowed")
