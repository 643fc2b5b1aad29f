#!/usr/bin/env bash
# Installs snap (scripts/bootstrap.sh) and runs its main job on a generated agent workspace:
# init a repository, take two snapshots, list them, restore one file and the whole tree,
# and browse the FUSE mount.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m snapfixtures.demo "$@"
