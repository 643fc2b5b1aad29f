"""The layer contract in .importlinter really bites: an upward import makes lint-imports fail.

The test copies the package to a temporary directory, adds one import that goes up a layer
(format -> cli) and runs lint-imports on the copy; the real tree must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def run_lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(tree / ".importlinter")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_tree(dest: Path) -> Path:
    for name in ("snapstore", "snapfixtures"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")
    return dest


def test_the_tree_keeps_its_layers(tmp_path: Path) -> None:
    done = run_lint(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    chunker = tree / "snapstore" / "format" / "chunker.py"
    chunker.write_text(chunker.read_text() + "\nimport snapstore.cli.output  # noqa: E402,F401\n")
    done = run_lint(tree)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout
    assert "snapstore.format.chunker -> snapstore.cli.output" in done.stdout
