"""Query benchmark: audit-v1 rows over 7 days and 100 tenants, written through a release daemon,
then the same five queries through tenantscope's HTTP query API and through DuckDB on the same
Parquet files, p50/p99 of 20 hot runs and the first ("cold") run of each.

Usage (needs the release binaries and the interop venv for duckdb/pyarrow):
    cargo build --release -p tenantscope -p tenantscope-bench
    bash tests/interop/run.sh target/release/tenantscope   # creates the venv once
    ~/.cache/tenantscope-interop-venv/bin/python bench/query_bench.py [--records 10000000]

"Cold" is the first run in a fresh process (a restarted daemon; a new DuckDB connection); the
operating system's page cache stays warm, since dropping it needs privileges a shared machine
does not give. Loopback only.
"""

import argparse
import datetime
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import duckdb
import pyarrow as pa


def start(binary, data_dir, config):
    proc = subprocess.Popen(
        [binary, "run", "--config", config, "--data-dir", data_dir, "--log-format", "json",
         "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0",
         "--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True)
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("the daemon did not start")
        event = json.loads(line)
        if event.get("message") == "tenantscope started":
            # Keep draining its log so it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, event


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)


def api_query(api, tenant, sql, range_):
    body = {"sql": sql, "tenant": tenant, "format": "arrow", **range_}
    request = urllib.request.Request(f"http://{api}/api/v1/query", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        data = response.read()
    return time.perf_counter() - started, data


def pct(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    args = parser.parse_args()
    release = os.path.abspath(os.path.join(args.target, "release"))
    binary, bench = os.path.join(release, "tenantscope"), os.path.join(release, "tenantscope-bench")

    with tempfile.TemporaryDirectory() as work:
        data_dir, config = os.path.join(work, "data"), os.path.join(work, "tenantscope.yaml")
        with open(config, "w") as f:
            f.write("storage:\n  max_file_age: 1h\n")
        proc, started = start(binary, data_dir, config)
        # Refused requests (503 under back-pressure) are sent again until the target is stored.
        stored, rates, refused = 0, [], {}
        while stored < args.records:
            load = subprocess.run(
                [bench, "load", "--http", started["otlp_http"], "--shape", "audit-v1", "--days", "7",
                 "--tenants", "100", "--total-records", str(args.records - stored),
                 "--connections", "4", "--seconds", "3600", "--json"],
                capture_output=True, text=True, check=True)
            run = json.loads(load.stdout)
            stored += run["requests_ok"] * 512
            rates.append(run["records_per_second"])
            for status, n in run["by_status"].items():
                if status != "http 200":
                    refused[status] = refused.get(status, 0) + n
        urllib.request.urlopen(urllib.request.Request(f"http://{started['api']}/admin/flush", method="POST"))
        stop(proc)  # a graceful stop commits everything; the next start is the "cold" one

        files = glob.glob(os.path.join(data_dir, "audit", "**", "*.parquet"), recursive=True)
        parquet_bytes = sum(os.path.getsize(f) for f in files)
        rows = stored
        tenant = "tenant-042"
        day = (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=3))
        frm = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.timezone.utc)
        to = frm + datetime.timedelta(days=1)
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
        tenant_glob = os.path.join(data_dir, "audit", f"tenant={tenant}", "signal=logs", "**", "*.parquet")

        con = duckdb.connect()
        request_id = con.execute(
            f"SELECT attributes['request.id'] FROM read_parquet('{tenant_glob}') LIMIT 1 OFFSET 777"
        ).fetchone()[0]
        ts = f"TIMESTAMPTZ '{frm.isoformat()}'"
        te = f"TIMESTAMPTZ '{to.isoformat()}'"
        queries = [
            ("tenant-day, ordered by time", "SELECT * FROM logs ORDER BY timestamp",
             {"from": iso(frm), "to": iso(to)},
             f"SELECT * FROM read_parquet('{tenant_glob}') WHERE timestamp >= {ts} AND timestamp < {te} ORDER BY timestamp"),
            ("count(*), 7 days", "SELECT count(*) FROM logs", {},
             f"SELECT count(*) FROM read_parquet('{tenant_glob}')"),
            ("group by audit.action", "SELECT attributes['audit.action'] AS a, count(*) FROM logs GROUP BY 1", {},
             f"SELECT attributes['audit.action'] AS a, count(*) FROM read_parquet('{tenant_glob}') GROUP BY 1"),
            ("body LIKE, 7 days", "SELECT count(*) FROM logs WHERE body LIKE '%invoice.pay completed with status 500%'", {},
             f"SELECT count(*) FROM read_parquet('{tenant_glob}') WHERE body LIKE '%invoice.pay completed with status 500%'"),
            ("lookup by request.id", f"SELECT * FROM logs WHERE attributes['request.id'] = '{request_id}'", {},
             f"SELECT * FROM read_parquet('{tenant_glob}') WHERE attributes['request.id'] = '{request_id}'"),
        ]

        proc, started = start(binary, data_dir, config)
        results = []
        try:
            for name, sql, range_, duck_sql in queries:
                cold, data = api_query(started["api"], tenant, sql, range_)
                ours = pa.ipc.open_stream(data).read_all().num_rows
                hot = [api_query(started["api"], tenant, sql, range_)[0] for _ in range(args.runs)]
                duck = duckdb.connect()
                t = time.perf_counter()
                out = duck.sql(duck_sql).to_arrow_table()
                duck_cold = time.perf_counter() - t
                duck_hot = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    out = duck.sql(duck_sql).to_arrow_table()
                    duck_hot.append(time.perf_counter() - t)
                if ours != out.num_rows:
                    raise SystemExit(f"{name}: tenantscope returned {ours} rows, DuckDB {out.num_rows}")
                results.append((name, out.num_rows, hot, cold, duck_hot, duck_cold))
        finally:
            stop(proc)

    ms = lambda s: f"{s * 1000:.1f}"
    print(f"{rows:,} rows ({min(rates):,.0f}-{max(rates):,.0f} records/s while loading; refused and "
          f"resent: {refused or 'none'}), "
          f"{len(files)} Parquet files, {parquet_bytes / rows:.1f} bytes per record on disk; "
          f"tenant {tenant}, day {day}; {args.runs} hot runs each")
    print()
    print("| query | rows | tenantscope p50 ms | p99 ms | cold ms | DuckDB p50 ms | p99 ms | cold ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, hot, cold, duck_hot, duck_cold in results:
        print(f"| {name} | {n:,} | {ms(statistics.median(hot))} | {ms(pct(hot, 0.99))} | {ms(cold)} "
              f"| {ms(statistics.median(duck_hot))} | {ms(pct(duck_hot, 0.99))} | {ms(duck_cold)} |")


if __name__ == "__main__":
    sys.exit(main())
