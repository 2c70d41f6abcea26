#!/usr/bin/env bash
# verify's throughput on a store of at least 1 GB, against sha256sum over the same files.
#
#   bench/verify_bench.sh [--gigabytes 1] [--keep DIR]
#
# Fills a fresh store with audit-v1 records from the load generator (release daemon, both cores,
# 100 tenants) until its Parquet files reach the size asked, stops the daemon (its shutdown
# checkpoint signs everything), then times, with the page cache warm for both: sha256sum over
# every Parquet file (one core, what a plain integrity check costs), and `tenantscope verify`
# with rows digests and with `--no-rows-digest`. Prints MB/s, files/s and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh
target="${CARGO_TARGET_DIR:-target}/release"
gigabytes=1 keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --gigabytes) gigabytes="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work="${keep:-$(mktemp -d)}"
mkdir -p "$work"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -z "$keep" ] && rm -rf "$work"' EXIT
want=$(python3 -c "print(int($gigabytes * 10**9))")
parquet_bytes() { find "$work/data/audit" -name '*.parquet' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
start_daemon "$work"
while [ "$(parquet_bytes)" -lt "$want" ]; do
    "$target/tenantscope-bench" load --http "$http" --shape audit-v1 --connections 4 --seconds 20 --json >/dev/null
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=600).read()' "http://$api/admin/flush"
done
kill -TERM "$pid"; wait "$pid" || true; pid=""
list="$work/files"
find "$work/data/audit" -name '*.parquet' > "$list"
files=$(wc -l < "$list")
bytes=$(parquet_bytes)
xargs cat < "$list" > /dev/null   # warm the page cache for everyone
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); python3 -c "print($t1 - $t0)"; }
sha=$(seconds sh -c "xargs sha256sum < '$list'")
full=$(seconds "$target/tenantscope" verify --data-dir "$work/data")
bytes_only=$(seconds "$target/tenantscope" verify --data-dir "$work/data" --no-rows-digest)
"$target/tenantscope" verify --data-dir "$work/data" | tail -1
python3 - "$bytes" "$files" "$sha" "$full" "$bytes_only" <<'PY'
import sys
size, files, sha, full, bytes_only = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
mb = size / 1e6
print(f"store: {files} Parquet files, {mb:,.0f} MB")
for name, t in [("sha256sum (1 core)", sha), ("verify (rows digests too)", full), ("verify --no-rows-digest", bytes_only)]:
    print(f"{name:28} {t:7.2f} s  {mb / t:8.1f} MB/s  {files / t:8.1f} files/s  {sha / t * 100:5.0f} % of sha256sum")
PY
