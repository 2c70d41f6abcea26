#!/usr/bin/env bash
# Runs the ingest benchmark suite: a release tenantscope in a temp dir, every payload shape over
# OTLP/HTTP and OTLP/gRPC, closed loop, and prints a Markdown table (BENCHMARKS.md keeps the
# figures). `--smoke` runs each case for 2 s (CI's smoke test); `--seconds N` sets the length.
# Loopback only. Needs the release binaries:
#   cargo build --release -p tenantscope -p tenantscope-bench
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
seconds=10
connections=4
case "${1:-}" in
    --smoke) seconds=2 ;;
    --seconds) seconds="$2" ;;
esac
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
start_daemon "$work"
echo "| shape | transport | records/s | per daemon CPU-s | MB/s wire | p50 ms | p99 ms | p99.9 ms | failed | daemon RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
failures=0
for shape in audit-v1 tiny-v1 spans-v1 events-v1; do
    for transport in http grpc; do
        addr="$http"; [ "$transport" = grpc ] && addr="$grpc"
        json="$("$target/tenantscope-bench" load "--$transport" "$addr" --shape "$shape" \
            --connections "$connections" --seconds "$seconds" --pid "$pid" --json)"
        if ! python3 - "$shape" "$transport" "$json" <<'PY'
import json, sys
shape, transport, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
print(f"| {shape} | {transport} | {f(r['records_per_second'])} | {f(r['records_per_daemon_cpu_second'])} "
      f"| {f(r['wire_mb_per_second'], 1)} | {f(r['latency_ms']['p50'], 1)} | {f(r['latency_ms']['p99'], 1)} "
      f"| {f(r['latency_ms']['p999'], 1)} | {r['requests_failed']} | {f(r['daemon_rss_mib'])} |")
# Refusals for overload (the log's backlog over storage.max_buffered_bytes while commits catch up)
# are the daemon shedding load as designed; anything else is a failure.
retryable = {"http 503", "http 429", "grpc Unavailable", "grpc ResourceExhausted"}
hard = {k: v for k, v in r["by_status"].items() if not (k.startswith("http 2") or k == "grpc Ok" or k in retryable)}
if hard:
    print(f"  {shape} over {transport}: answers {hard}", file=sys.stderr)
sys.exit(0 if r["requests_ok"] > 0 and not hard else 1)
PY
        then
            failures=$((failures + 1))
        fi
    done
done
kill -TERM "$pid"
wait "$pid"
[ "$failures" -eq 0 ] || { echo "$failures cases had errors (other than overload refusals) or no acknowledged request" >&2; exit 1; }
