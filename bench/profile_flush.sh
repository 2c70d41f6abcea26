#!/usr/bin/env bash
# perf profile of the Parquet commit alone: a release daemon pinned to core 0 takes SECONDS of
# closed-loop load (its commits mostly wait for `max_file_age`), then `POST /admin/flush` commits
# everything while `perf record` samples the daemon. Prints the flush's wall and CPU time.
#
#   bench/profile_flush.sh [--shape tiny-v1] [--seconds 8] [--out /tmp/flush]   # writes OUT.data
#
# Needs the release binaries, taskset, perf (Debian linux-perf) and python3. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
shape=tiny-v1 seconds=8 out=/tmp/flush
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) shape="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
pid="" perf_pid=""
trap '[ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
start_daemon "$work" taskset -c 0
sleep 1
taskset -c 1 "$target/tenantscope-bench" load --http "$http" --shape "$shape" --connections 4 \
    --seconds "$seconds" --pid "$pid" | sed -n 2p
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before="$(ticks)"
perf record -F 999 --call-graph dwarf,16384 -p "$pid" -o "$out.data" 2>/dev/null &
perf_pid=$!
sleep 0.5
started="$(date +%s.%N)"
python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=600).read()' "http://$api/admin/flush"
ended="$(date +%s.%N)"
after="$(ticks)"
kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""
python3 -c 'import sys; print(f"flush: {float(sys.argv[2]) - float(sys.argv[1]):.2f} s wall, {(int(sys.argv[4]) - int(sys.argv[3])) / int(sys.argv[5]):.2f} s CPU; profile in {sys.argv[6]}.data")' \
    "$started" "$ended" "$before" "$after" "$(getconf CLK_TCK)" "$out"
