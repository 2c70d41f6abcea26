#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz: libFuzzer + AddressSanitizer, on the stable toolchain with
# RUSTC_BOOTSTRAP=1) and runs each for SECONDS (default 30) on its seed corpus, then prints
# executions, coverage and corpus size per target. New inputs go to a scratch directory, never
# into fuzz/corpus/; a crash, hang (-timeout) or oversized allocation (-rss_limit_mb,
# -malloc_limit_mb) fails the run and leaves its input in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      # default: every target, one after the other
#   FUZZ_JOBS=2 fuzz/run.sh 600            # two targets at a time (the 10-minute runs)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tenantscope-target}"
# The flags of every build of the targets (CI's and the long runs'), so that none rebuilds.
build_flags=(--fuzz-dir fuzz -O --debug-assertions --sanitizer address)
cargo fuzz build "${build_flags[@]}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
work=$(mktemp -d /tmp/tenantscope-fuzz.XXXXXX)
run_one() {
    local t="$1"
    mkdir -p "$work/$t"
    # Limits: 2 GiB of RSS and of any one allocation; 10 s for one input. Leak detection is off:
    # LeakSanitizer reports the thread-local destructors of threads `verify` joins (glibc's
    # __cxa_thread_atexit_impl), and growth without bound is what -rss_limit_mb catches.
    if cargo fuzz run "${build_flags[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -timeout=10 -detect_leaks=0 >"$work/$t.log" 2>&1; then
        echo ok >"$work/$t.status"
    else
        echo failed >"$work/$t.status"
    fi
}
jobs="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_one "$t" &
done
wait
failed=0
printf '%-15s %12s %8s %8s %8s  %s\n' target executions exec/s cov features status
for t in "${targets[@]}"; do
    log="$work/$t.log"
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    status=$(cat "$work/$t.status")
    printf '%-15s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$status"
    if [ "$status" != ok ]; then
        failed=1
        echo "--- $t: the end of its log ($log)"
        grep -v -e '^Output of' -e '^\s*\[' "$log" | tail -60 | cut -c1-300
    fi
done
echo "logs and new corpus entries: $work"
exit "$failed"
