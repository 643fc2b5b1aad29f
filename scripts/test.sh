#!/usr/bin/env bash
# Installs snap with its test extras (scripts/bootstrap.sh), checks lint and types, runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --with-browser
.venv/bin/ruff check snapstore snapfixtures tests benchmarks
.venv/bin/mypy
# the layers of docs/architecture.md, as contracts in .importlinter (quiet when they hold)
if ! out=$(.venv/bin/lint-imports --no-cache 2>&1); then echo "$out" >&2; exit 1; fi
# the suite starts thousands of snap processes: let them keep compiled bytecode (an environment
# that forbids it makes each one compile every module again, about 0.1 s a process)
unset PYTHONDONTWRITEBYTECODE
# one worker per core (SNAP_TEST_WORKERS overrides; 0 runs in this process); a file's tests stay
# on one worker, so its module fixtures (an S3 server, a browser) start once
workers=${SNAP_TEST_WORKERS:-auto}
if [ "$workers" = 0 ]; then exec .venv/bin/python -m pytest -q "$@"; fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile "$@"
