# Sourced by the benchmark scripts: starts a release tenantscope on port 0 in a data directory
# and reads its addresses from its "tenantscope started" log line.
#
#   start_daemon WORK_DIR [PREFIX...]   # PREFIX: e.g. `taskset -c 0`
#
# Sets `pid`, `http`, `grpc`, `api`; needs `target` (the release directory; `daemon_target`, if
# set, is where the daemon's binary is instead). With
# `DAEMON_CONFIG` set, the daemon reads that config file too.
start_daemon() {
    local work="$1"
    shift
    rm -rf "$work/data" "$work/log"
    "$@" "${daemon_target:-$target}/tenantscope" run ${DAEMON_CONFIG:+--config "$DAEMON_CONFIG"} \
        --data-dir "$work/data" --log-format json \
        --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --metrics 127.0.0.1:0 --api 127.0.0.1:0 \
        2> "$work/log" &
    pid=$!
    for _ in $(seq 1 100); do
        grep -q '"tenantscope started"' "$work/log" 2>/dev/null && break
        sleep 0.1
    done
    local started
    started="$(grep '"tenantscope started"' "$work/log")"
    http="$(echo "$started" | sed -E 's/.*"otlp_http":"([^"]+)".*/\1/')"
    grpc="$(echo "$started" | sed -E 's/.*"otlp_grpc":"([^"]+)".*/\1/')"
    api="$(echo "$started" | sed -E 's/.*"api":"([^"]+)".*/\1/')"
}
