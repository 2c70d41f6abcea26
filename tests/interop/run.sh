#!/usr/bin/env bash
# Runs the interop suite: creates (or reuses) a Python venv with the pinned packages, then runs
# interop.py against the tenantscope binary given as $1 (default: the workspace's debug build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-${CARGO_TARGET_DIR:-$here/../../target}/debug/tenantscope}"
venv="${TENANTSCOPE_VENV:-$HOME/.cache/tenantscope-interop-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" "$here/interop.py" "$binary"
