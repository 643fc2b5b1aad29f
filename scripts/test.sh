#!/usr/bin/env bash
# Installs snap with its test extras (scripts/bootstrap.sh), checks lint and types, runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/ruff check snapstore tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
