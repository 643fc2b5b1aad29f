#!/usr/bin/env bash
# Installs everything snap needs on a fresh Debian machine (run as root):
# the FUSE 3 system packages, the tools the fidelity tests judge with (rsync, setfacl, setfattr),
# a virtualenv in .venv and the package with its extras.
# --with-browser also installs Debian's chromium and its version-matched chromedriver, which the
# browser tests of the web dashboard (tests/web) drive; scripts/test.sh passes it.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(fuse3 libfuse3-dev pkg-config rsync acl attr)
if [ "${1:-}" = "--with-browser" ]; then
  packages+=(chromium chromium-driver)
fi
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import snapstore, snapfixtures, pyfuse3, pytest, importlinter, starlette, selenium" \
     >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "bootstrap: installing snapstore and its extras into .venv (log: .venv/pip.log)" >&2
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[fuse,dev,s3,web]' \
       > .venv/pip.log 2>&1; then
    tail -n 30 .venv/pip.log >&2
    echo "bootstrap: pip install failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
  touch .venv/.installed
fi
# The bytecode a wheel install compiles, compiled here for the editable source tree: without it
# every `snap` run compiles its modules again when the environment sets PYTHONDONTWRITEBYTECODE
# (measured: `snap list` 0.33 s -> 0.15 s). A stale .pyc is ignored by Python, never used.
.venv/bin/python -m compileall -q snapstore snapfixtures >/dev/null
