"""The output mode comes from the parsed options, not from words found on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import run_snap


def test_errors_follow_the_parsed_json_option(tmp_path: Path) -> None:
    repo = tmp_path / "none"
    as_json = run_snap("list", "--json", repo=repo, cwd=tmp_path)
    assert as_json.code == ExitCode.NO_REPO
    assert json.loads(as_json.err) == {"error": "no_repository", "exit_code": 10,
                                       "message": f"no repository at {repo} (run 'snap init' first)"}
    # '--json' as the value of --tag is a tag, not the output mode
    tagged = run_snap("list", "--tag", "--json", repo=repo, cwd=tmp_path)
    assert tagged.code == ExitCode.NO_REPO and tagged.err.startswith("snap: error: no repository at")
    # a command line that does not parse: the words decide, as nothing was read
    bad = run_snap("list", "--json", "--bogus", repo=repo, cwd=tmp_path)
    assert bad.code == ExitCode.USAGE and json.loads(bad.err)["error"] == "usage"
    assert run_snap("list", "--bogus", repo=repo, cwd=tmp_path).err.startswith("snap: error: No such option")
    quiet = run_snap("-q", "verify", "--json", repo=repo, cwd=tmp_path)
    assert quiet.code == ExitCode.NO_REPO and json.loads(quiet.err)["error"] == "no_repository"
