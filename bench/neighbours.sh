#!/usr/bin/env bash
# Noisy neighbour (issue 18): tenant B sends a modest open-loop load alone, then again while
# tenant A floods at 10x its rate limit; B's acknowledged throughput and ack p99 must stay within
# 20 % of B alone. A release daemon pinned to core 0, both load generators on core 1, a fresh
# daemon and data dir per run. A names its tenant in X-Scope-OrgID (as a gateway or SDK header
# does), so its excess is refused from the headers.
#
#   bench/neighbours.sh [--shape audit-v1] [--seconds 20] [--quota 20000] [--b-rate 20000]
#                       [--grpc] [--daemon DIR] [--a-by-attribute]
#
# `--a-by-attribute`: A names its tenant only in the resource attribute `tenant.id`, so each of
# its requests is read and decoded before its rate limit refuses it.
#
# Loopback only. Needs the release binaries, taskset and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
shape=audit-v1 seconds=20 quota=20000 b_rate=20000 transport=http daemon_target=""
a_header=--tenant-header
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) shape="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --quota) quota="$2"; shift 2 ;;
        --b-rate) b_rate="$2"; shift 2 ;;
        --grpc) transport=grpc; shift ;;
        --daemon) daemon_target="$2"; shift 2 ;;
        --a-by-attribute) a_header=""; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
pid="" flood=""
trap '[ -n "$flood" ] && kill "$flood" 2>/dev/null; [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'tenants:\n  tenant-000:\n    limits: {records_per_second: %s}\n' "$quota" > "$work/config.yaml"
export DAEMON_CONFIG="$work/config.yaml"
load() {
    local addr="$http" secs="$1"
    shift
    [ "$transport" = grpc ] && addr="$grpc"
    taskset -c 1 "$target/tenantscope-bench" load "--$transport" "$addr" --shape "$shape" \
        --seconds "$secs" --tenants 1 --json "$@"
}
run() {
    start_daemon "$work" taskset -c 0
    sleep 1
    if [ "$1" = with-flood ]; then
        load "$seconds" --first-tenant 0 $a_header --connections 4 \
            --rate "$((quota * 10))" > "$work/flood.json" &
        flood=$!
        sleep 1
    fi
    load "$((seconds - 2))" --first-tenant 1 --connections 2 --rate "$b_rate"
    if [ -n "$flood" ]; then wait "$flood" || true; flood=""; fi
    kill -TERM "$pid"; wait "$pid" || true; pid=""
}
alone="$(run alone)"
together="$(run with-flood)"
python3 - "$alone" "$together" "$work/flood.json" <<'PY'
import json, sys
a, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
try:
    f = json.load(open(sys.argv[3]))
    print(f"A (10x its quota): {f['records_per_second']:.0f} records/s acknowledged, answers {f['by_status']}")
except Exception:
    pass
for name, x in (("B alone", a), ("B beside A", t)):
    print(f"{name}: {x['records_per_second']:.0f} records/s acknowledged, p99 {x['latency_ms']['p99']:.1f} ms, answers {x['by_status']}")
print(json.dumps({
    "b_throughput_ratio": round(t["records_per_second"] / max(a["records_per_second"], 1), 3),
    "b_p99_ratio": round(t["latency_ms"]["p99"] / max(a["latency_ms"]["p99"], 1e-9), 3),
}))
PY
