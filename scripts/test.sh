#!/usr/bin/env bash
# The test command (README, "Run it, test it"): installs what the suite needs that cargo cannot —
# Debian's `prometheus` package, for `promtool` (the metrics and dashboards tests check the
# daemon's /metrics and rules with it) — then runs the whole suite. Arguments go to `cargo test`.
#
#   scripts/test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool is missing: installing Debian's prometheus package" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "error: installing prometheus needs root (or sudo): apt-get install prometheus" >&2
            exit 2
        }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
exec cargo test --workspace "$@"
