#!/usr/bin/env bash
# The soak run (issue 18; not part of the default test run): the release daemon at ~70 % of the
# capacity a 20-second probe measures for the same load, four tenants, SIGHUP every minute,
# SIGKILL and a restart every five minutes, for 30 minutes (or SECONDS). It prints the daemon's
# RSS every 30 s, the answers by status, and checks that no acknowledged request was lost and
# no record stored twice (`collector/tests/soak.rs`).
#
#   bench/soak.sh [SECONDS]
#
# Loopback only. Builds the release binary and the test first.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-1800}"
cargo build --release -p tenantscope
target="${CARGO_TARGET_DIR:-target}/release"
TENANTSCOPE_BIN="$target/tenantscope" TENANTSCOPE_SOAK_SECONDS="$seconds" \
    cargo test --release -p tenantscope --test soak -- --ignored --nocapture
