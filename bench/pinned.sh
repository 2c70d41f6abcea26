#!/usr/bin/env bash
# Per-core ingest figures: a release daemon pinned to core 0, the generator to core 1, a fresh
# daemon and data dir per run. After the load, `POST /admin/flush` commits everything still
# waiting for Parquet, and the daemon's CPU for that flush is counted too: records per daemon
# CPU-second here include the Parquet work, however long the run.
#
#   bench/pinned.sh [--shape audit-v1] [--runs 3] [--seconds 8] [--connections 4] [--rate N]
#
# Prints one line per run and the median. Loopback only. Needs the release binaries, taskset
# and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
shape=audit-v1 runs=3 seconds=8 connections=4 rate=""
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) shape="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
results=()
for run in $(seq 1 "$runs"); do
    start_daemon "$work" taskset -c 0
    sleep 1
    rss_idle="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
    before="$(cpu_ticks "$pid")"
    json="$(taskset -c 1 "$target/tenantscope-bench" load --http "$http" --shape "$shape" \
        --connections "$connections" --seconds "$seconds" --pid "$pid" --json ${rate:+--rate "$rate"})"
    rss_peak="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=300).read()' "http://$api/admin/flush"
    after="$(cpu_ticks "$pid")"
    hz="$(getconf CLK_TCK)"
    line="$(python3 - "$json" "$before" "$after" "$hz" "$rss_idle" "$rss_peak" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); before, after, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu = (after - before) / hz
records = r["requests_ok"] * r["records_per_request"]
lat = r["latency_ms"]
print(json.dumps({
    "records_per_second": round(r["records_per_second"]),
    "records_per_cpu_second_with_flush": round(records / cpu) if cpu else None,
    "records_per_cpu_second_during_load": round(r["records_per_daemon_cpu_second"] or 0),
    "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p999_ms": lat["p999"],
    "failed": r["requests_failed"],
    "rss_mib_idle": round(int(sys.argv[5]) / 1024), "rss_mib_peak": round(int(sys.argv[6]) / 1024),
    "rss_mib_end_of_load": round(r["daemon_rss_mib"]),
}))
PY
)"
    echo "run $run: $line"
    results+=("$line")
    kill -TERM "$pid"; wait "$pid" || true; pid=""
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(a) for a in sys.argv[1:]]
keys = rows[0].keys()
print("median: " + json.dumps({k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys}))
PY
