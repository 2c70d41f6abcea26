#!/usr/bin/env bash
# Goodput under overload (issue 18): what a release daemon pinned to core 0 acknowledges from
# clients that wait out a refusal (closed loop, 100 ms after a 503, as OTel exporters do), and
# from clients that resend at once (as a misconfigured or non-OTel client does), each on a fresh
# daemon and data dir whose Parquet backlog bound (`storage.max_buffered_bytes`, 128 MiB unless
# `--max-buffered` says otherwise)
# the load overruns within seconds. Prints both runs and the ratio; the target is >= 0.85.
#
#   bench/overload.sh [--shape audit-v1] [--seconds 30] [--connections 4] [--grpc]
#                     [--max-buffered 128MiB] [--daemon DIR]
#
# `--daemon DIR`: the daemon binary in DIR (another build, for comparison); the load generator
# stays this build's.
# Loopback only. Needs the release binaries, taskset and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
shape=audit-v1 seconds=30 connections=4 transport=http max_buffered=128MiB daemon_target=""
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) shape="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --grpc) transport=grpc; shift ;;
        --max-buffered) max_buffered="$2"; shift 2 ;;
        --daemon) daemon_target="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'storage:\n  max_buffered_bytes: %s\n' "$max_buffered" > "$work/config.yaml"
export DAEMON_CONFIG="$work/config.yaml"
run() {
    start_daemon "$work" taskset -c 0
    sleep 1
    local addr="$http"
    [ "$transport" = grpc ] && addr="$grpc"
    taskset -c 1 "$target/tenantscope-bench" load "--$transport" "$addr" --shape "$shape" \
        --connections "$connections" --seconds "$seconds" --pid "$pid" --json "$@"
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=600).read()' "http://$api/admin/flush"
    kill -TERM "$pid"; wait "$pid" || true; pid=""
}
waiting="$(run)"
resending="$(run --retry-at-once)"
python3 - "$waiting" "$resending" <<'PY'
import json, sys
w, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name, x in (("waiting 100 ms after a refusal", w), ("resending at once", r)):
    print(f"{name}: {x['records_per_second']:.0f} records/s acknowledged, answers {x['by_status']}, "
          f"p99 {x['latency_ms']['p99']:.1f} ms, daemon RSS {x['daemon_rss_mib']:.0f} MiB")
print(json.dumps({"goodput_ratio": round(r["records_per_second"] / max(w["records_per_second"], 1), 3)}))
PY
