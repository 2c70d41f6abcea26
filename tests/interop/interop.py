"""Interop suite: the Python OpenTelemetry SDK's OTLP exporters (gRPC and HTTP) send to the real
tenantscope binary; DuckDB and pyarrow read the Parquet it wrote, with Hive partitioning and
without the daemon.

Also: a real Prometheus (Debian's `prometheus`) scrapes the daemon under load with our rules loaded,
and every query of the dashboards and rules must return data; and the audit log's proofs and
checkpoint signatures are checked by an implementation of our own here (RFC 6962 / RFC 9162 §2.1
in a few lines of `hashlib`, Ed25519 with the `cryptography` package), not by tenantscope's.

Usage: python interop.py PATH/TO/tenantscope
Prints "N passed, M failed" and exits non-zero on any failure.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import glob
import io
import re
import socket
import urllib.error
import urllib.parse
import urllib.request

import base64
import hashlib

import duckdb
import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

PASSED = 0
FAILED = 0


def check(name, got, want):
    global PASSED, FAILED
    if got == want:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED += 1
        print(f"FAIL {name}: got {got!r}, want {want!r}")


class Recording:
    """Wraps an exporter and records every export result, so a refused export is a failure."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, batch):
        result = self.inner.export(batch)
        self.results.append(result.name)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def start_daemon(binary, data_dir, config=None):
    proc = subprocess.Popen(
        [
            binary, "run",
            "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0",
            "--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0",
            "--data-dir", data_dir, "--log-format", "json",
        ] + (["--config", config] if config else []),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("message") == "tenantscope started":
            return proc, event
    proc.kill()
    raise SystemExit("the daemon did not start")


def resource(tenant, by_attribute):
    attrs = {"service.name": f"{tenant}-py"}
    if by_attribute:
        attrs["tenant.id"] = tenant
    return Resource.create(attrs)


def send_logs(exporter, tenant, by_attribute, plain, events):
    recording = Recording(exporter)
    provider = LoggerProvider(resource=resource(tenant, by_attribute))
    provider.add_log_record_processor(SimpleLogRecordProcessor(recording))
    logger = provider.get_logger("interop")
    for i in range(plain):
        logger.emit(LogRecord(
            body=f"{tenant} log {i}", severity_number=SeverityNumber.INFO, severity_text="INFO",
            attributes={"seq": i, "ratio": 0.5, "tags": ["a", "b"]},
        ))
    for i in range(events):
        logger.emit(LogRecord(
            event_name="order.completed", body=f"{tenant} order {i}",
            attributes={"order.id": f"o-{i}"},
        ))
    # One event named the older way, by attribute.
    logger.emit(LogRecord(attributes={"event.name": "subscription.upgraded"}))
    provider.shutdown()
    return recording.results


def send_spans(exporter, tenant, by_attribute, count):
    recording = Recording(exporter)
    provider = TracerProvider(resource=resource(tenant, by_attribute))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("interop")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}", kind=SpanKind.CLIENT) as span:
            span.set_attribute("peer.service", "db")
            span.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return recording.results


def hash_key(binary, key):
    return subprocess.run([binary, "hash-key"], input=key, capture_output=True, text=True,
                          check=True).stdout.strip()


def api_query(api, key, body, accept=None):
    """POST /api/v1/query; returns (status, content type, body bytes)."""
    request = urllib.request.Request(f"http://{api}/api/v1/query", data=json.dumps(body).encode(),
                                     method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def keyed_phase(binary):
    """Keys bind tenants; rate limits are retried by the SDK; the query API answers per tenant."""
    acme_key, globex_key, admin_key = "interop-acme-key-0001", "interop-globex-key-01", "interop-admin-key-001"
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "tenantscope.yaml")
        with open(config, "w") as f:
            f.write(
                f"auth:\n  admin_keys: [\"{hash_key(binary, admin_key)}\"]\n"
                "tenants:\n"
                f"  acme:\n    keys: [{{hash: \"{hash_key(binary, acme_key)}\", roles: [ingest, query]}}]\n"
                "    limits: {records_per_second: 10, records_burst: 10}\n"
                f"  globex:\n    keys: [{{hash: \"{hash_key(binary, globex_key)}\", roles: [ingest, query]}}]\n"
            )
        proc, started = start_daemon(binary, os.path.join(work, "data"), config)
        grpc_addr, http_addr, api = started["otlp_grpc"], started["otlp_http"], started["api"]
        try:
            bearer = {"authorization": f"Bearer {acme_key}"}
            began = time.time()
            results = send_logs(GrpcLogExporter(endpoint=grpc_addr, insecure=True, headers=bearer),
                                "acme", False, plain=24, events=0)
            check("grpc exporter retries rate-limited exports until all succeed", set(results), {"SUCCESS"})
            results = send_logs(HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs", headers=bearer),
                                "acme", False, plain=24, events=0)
            check("http exporter honours Retry-After until all succeed", set(results), {"SUCCESS"})
            # 2 x (24 logs + 1 event) = 50 records at 10/s after a burst of 10.
            check("the rate limit held (50 records at 10/s)", time.time() - began >= 3.0, True)
            exposition = urllib.request.urlopen(f"http://{started['metrics']}/metrics").read().decode()
            limited = [l for l in exposition.splitlines()
                       if 'reason="rate_limited"' in l and l.startswith("tenantscope_ingest_requests_rejected_total")
                       and not l.endswith(" 0")]
            check("rate-limited answers counted for both transports", len(limited), 2)
            results = send_logs(
                HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs", headers={"Authorization": "Bearer wrong-key-000000"}),
                "acme", False, plain=1, events=0)
            check("an unknown key is refused", set(results), {"FAILURE"})
            results = send_logs(
                GrpcLogExporter(endpoint=grpc_addr, insecure=True,
                                headers={"authorization": f"Bearer {acme_key}", "x-scope-orgid": "globex"}),
                "acme", False, plain=1, events=0)
            check("a key of acme naming globex is refused", set(results), {"FAILURE"})

            flush = urllib.request.Request(f"http://{api}/admin/flush", method="POST",
                                           headers={"Authorization": f"Bearer {admin_key}"})
            check("admin flush", urllib.request.urlopen(flush).status, 200)
            status, ctype, body = api_query(api, acme_key, {"sql": "SELECT tenant_id, count(*) AS n FROM logs GROUP BY tenant_id"})
            rows = [json.loads(line) for line in body.decode().splitlines()]
            check("query API: acme's key reads acme's rows", (status, ctype, rows),
                  (200, "application/x-ndjson", [{"tenant_id": "acme", "n": 48}]))
            status, _, body = api_query(api, globex_key, {"sql": "SELECT count(*) FROM logs", "tenant": "acme"})
            check("query API: globex's key naming acme is refused", (status, json.loads(body)["error_type"]),
                  (403, "forbidden"))
            status, ctype, body = api_query(api, acme_key, {"sql": "SELECT body FROM logs ORDER BY body LIMIT 2"},
                                            accept="text/csv")
            check("query API: CSV", (status, body.decode().splitlines()[0]), (200, "body"))
            status, ctype, body = api_query(api, acme_key, {"sql": "SELECT * FROM logs", "format": "parquet"})
            table = pq.read_table(io.BytesIO(body))
            check("query API: Parquet read by pyarrow", (status, table.num_rows, "redaction_policy" in table.column_names),
                  (200, 48, True))
            status, _, body = api_query(api, acme_key, {"sql": "SELECT * FROM read_csv('/etc/passwd')"})
            check("query API: reading a file is refused", (status, b"root:" in body), (400, False))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        check("keyed daemon exits 0 on SIGTERM", code, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_queries(root):
    """(where, PromQL) of every dashboard panel and rule; alerts without their threshold."""
    queries = []
    for path in sorted(glob.glob(os.path.join(root, "dashboards", "grafana", "*.json"))):
        with open(path) as f:
            dashboard = json.load(f)
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$tenant", ".+").replace("$__rate_interval", "30s")
                queries.append((f"{os.path.basename(path)}: {panel['title']}", expr))
    with open(os.path.join(root, "dashboards", "prometheus", "rules.yaml")) as f:
        text = f.read()
    # A small reader for our own rules file: "- record: NAME" / "- alert: NAME" then "expr: ...".
    name = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("- record:"):
            name = ("record", line.split(":", 1)[1].strip())
            queries.append((f"rules.yaml: {name[1]}", name[1]))
        elif line.startswith("- alert:"):
            name = ("alert", line.split(":", 1)[1].strip())
        elif line.startswith("expr:") and name and name[0] == "alert":
            expr = line.split(":", 1)[1].strip()
            expr = re.sub(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.]+\s*$", "", expr)
            queries.append((f"rules.yaml: {name[1]}", expr))
    return queries


def prometheus_phase(binary):
    """A real Prometheus scrapes a loaded daemon; every dashboard and rule query returns data."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "tenantscope.yaml")
        with open(config, "w") as f:
            f.write("metrics:\n  max_series_per_metric: 5\n  max_series_per_tenant: 50\n"
                    "storage:\n  max_file_age: 1s\n"
                    "tenants:\n  limited:\n    limits: {records_per_second: 1, records_burst: 1}\n")
        proc, started = start_daemon(binary, os.path.join(work, "data"), config)
        port = free_port()
        prom_config = os.path.join(work, "prometheus.yml")
        with open(prom_config, "w") as f:
            f.write(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                f"rule_files: [{json.dumps(os.path.join(root, 'dashboards', 'prometheus', 'rules.yaml'))}]\n"
                "scrape_configs:\n"
                f"  - job_name: tenantscope\n    static_configs: [{{targets: [\"{started['metrics']}\"]}}]\n"
            )
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{base}/-/ready").status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            http_addr, api = started["otlp_http"], started["api"]
            tracer_provider = TracerProvider(resource=Resource.create({"service.name": "shop", "tenant.id": "acme"}))
            tracer_provider.add_span_processor(SimpleSpanProcessor(HttpSpanExporter(endpoint=f"http://{http_addr}/v1/traces")))
            tracer = tracer_provider.get_tracer("prom")
            logger_provider = LoggerProvider(resource=Resource.create({"service.name": "shop", "tenant.id": "acme"}))
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs")))
            logger = logger_provider.get_logger("prom")
            reader = PeriodicExportingMetricReader(
                HttpMetricExporter(endpoint=f"http://{http_addr}/v1/metrics"), export_interval_millis=1000)
            meter_provider = MeterProvider(metric_readers=[reader],
                                           resource=Resource.create({"service.name": "shop", "tenant.id": "acme"}))
            counter = meter_provider.get_meter("prom").create_counter("checkout.requests", unit="{request}")
            began = time.time()
            i = 0
            while time.time() - began < 15:
                for status in (StatusCode.OK, StatusCode.OK, StatusCode.ERROR):
                    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as span:
                        span.set_status(Status(status))
                logger.emit(LogRecord(body="ok", severity_number=SeverityNumber.INFO, severity_text="INFO"))
                logger.emit(LogRecord(event_name="order.completed", body="order"))
                counter.add(1, {"customer": f"c{i % 20}"})  # 20 series > the budget of 5: overflow
                bad = urllib.request.Request(f"http://{http_addr}/v1/logs", data=b"{not json",
                                             headers={"Content-Type": "application/json", "X-Scope-OrgID": "acme"})
                limited = urllib.request.Request(
                    f"http://{http_addr}/v1/logs",
                    data=b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{},{}]}]}]}',
                    headers={"Content-Type": "application/json", "X-Scope-OrgID": "limited"})
                for request in (bad, limited):
                    try:
                        urllib.request.urlopen(request)
                    except urllib.error.HTTPError:
                        pass
                api_query(api, "unused", {"sql": "SELECT count(*) FROM logs", "tenant": "acme"})
                if i % 5 == 0:
                    urllib.request.urlopen(urllib.request.Request(f"http://{api}/admin/flush", method="POST"))
                i += 1
                time.sleep(0.2)
            time.sleep(3)  # a few more scrapes and rule evaluations
            empty = []
            queries = dashboard_queries(root)
            for where, expr in queries:
                answer = json.load(urllib.request.urlopen(
                    f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
                if answer["status"] != "success" or not answer["data"]["result"]:
                    empty.append(f"{where}: {expr}")
            check(f"all {len(queries)} dashboard and rule queries return data from Prometheus", empty, [])
            meter_provider.shutdown()
            tracer_provider.shutdown()
            logger_provider.shutdown()
        finally:
            prom.terminate()
            prom.wait(timeout=30)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        check("daemon scraped by Prometheus exits 0 on SIGTERM", code, 0)


# --- The audit log, checked independently -------------------------------------------------------
# RFC 6962 §2.1: leaf hash SHA-256(0x00 || leaf), node hash SHA-256(0x01 || left || right). The
# proof checks follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step.

def leaf_hash(leaf):
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or None if malformed."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistency_ok(size1, size2, root1, root2, path):
    """RFC 9162 §2.1.4.2."""
    if size1 == size2:
        return not path and root1 == root2
    if size1 == 0 or size1 > size2 or not path:
        return False
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        path = [root1] + path
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


def check_signed_checkpoint(note, verifier_key):
    """C2SP signed-note + tlog-checkpoint: returns (origin, size, root) if the Ed25519 signature
    of `verifier_key` (<name>+<id>+<base64(0x01 || key)>) verifies, else None."""
    name, key_id, key = verifier_key.strip().split("+", 2)
    key = base64.b64decode(key)
    assert key[0] == 1, "Ed25519"
    assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == key_id
    text, signatures = note.split("\n\n", 1)
    text += "\n"
    public = Ed25519PublicKey.from_public_bytes(key[1:])
    for line in signatures.splitlines():
        prefix, signer, blob = line.split(" ")
        blob = base64.b64decode(blob)
        if prefix != "\u2014" or signer != name or blob[:4].hex() != key_id:
            continue
        try:
            public.verify(blob[4:], text.encode())
        except InvalidSignature:
            return None
        origin, size, root = text.splitlines()[:3]
        return origin, int(size), base64.b64decode(root)
    return None


def api_get(api, path):
    with urllib.request.urlopen(urllib.request.Request(
            f"http://{api}{path}", headers={"X-Scope-OrgID": "acme"}), timeout=30) as r:
        return r.read().decode()


def integrity_phase(binary):
    with tempfile.TemporaryDirectory() as root:
        private, public = os.path.join(root, "signing.key"), os.path.join(root, "signing.pub")
        subprocess.run([binary, "keygen", "--private", private, "--public", public,
                        "--name", "interop.example/tenantscope"], check=True, capture_output=True)
        check("keygen: private key mode 0600", oct(os.stat(private).st_mode & 0o777), "0o600")
        verifier_key = open(public).read().strip()
        config = os.path.join(root, "config.yaml")
        with open(config, "w") as f:
            f.write(f"audit:\n  signing_key_file: {private}\n  checkpoint_interval: 1s\n"
                    "storage:\n  instance_id: interop\n")
        data_dir = os.path.join(root, "data")
        proc, started = start_daemon(binary, data_dir, config)
        http_addr, api = started["otlp_http"], started["api"]
        try:
            exporter = HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs",
                                       headers={"X-Scope-OrgID": "acme"})
            send_logs(exporter, "acme", False, plain=3, events=1)
            urllib.request.urlopen(urllib.request.Request(f"http://{api}/admin/flush", method="POST")).read()
            first_note = api_get(api, "/api/v1/checkpoint")
            first = check_signed_checkpoint(first_note, verifier_key)
            check("checkpoint signature verifies with the cryptography package", first is not None, True)
            check("checkpoint origin names the instance and the tenant", first and first[0],
                  "interop/tenantscope/acme")
            with open(os.path.join(root, "first.checkpoint"), "w") as f:
                f.write(first_note)
            forged = first_note.replace(f"\n{first[1]}\n", f"\n{first[1] + 1}\n", 1)
            check("an edited checkpoint does not verify", check_signed_checkpoint(forged, verifier_key), None)
            # More data, a newer checkpoint, and a consistency proof between the two.
            # (a provider's shutdown closes its exporter: a new one for the second batch)
            results = send_logs(HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs",
                                                headers={"X-Scope-OrgID": "acme"}),
                                "acme", False, plain=2, events=2)
            check("second log exports succeeded", set(results), {"SUCCESS"})
            urllib.request.urlopen(urllib.request.Request(f"http://{api}/admin/flush", method="POST")).read()
            second = check_signed_checkpoint(api_get(api, "/api/v1/checkpoint"), verifier_key)
            check("the log grew", second[1] > first[1], True)
            proof = json.loads(api_get(api, f"/api/v1/proof/consistency?from={first[1]}"))
            check("consistency proof (RFC 9162 §2.1.4.2) from the first checkpoint to the second",
                  (proof["to"], consistency_ok(first[1], second[1], first[2], second[2],
                                               [base64.b64decode(h) for h in proof["proof"]])),
                  (second[1], True))
            check("a consistency proof against another root fails",
                  consistency_ok(first[1], second[1], first[2], hashlib.sha256(b"x").digest(),
                                 [base64.b64decode(h) for h in proof["proof"]]), False)
            # Every committed file is in the checkpointed tree.
            log = [json.loads(line) for line in open(os.path.join(data_dir, "audit", "tenant=acme", "_log.jsonl"))]
            files = [e["path"] for e in log if e["type"] == "file"]
            proven = 0
            for path in files:
                p = json.loads(api_get(api, "/api/v1/proof/inclusion?file=" + urllib.parse.quote(path)))
                ckpt = check_signed_checkpoint(p["checkpoint"], verifier_key)
                r = root_from_inclusion(p["leaf_index"], p["tree_size"], p["leaf"].encode(),
                                        [base64.b64decode(h) for h in p["proof"]])
                entry = json.loads(p["leaf"])
                sha = hashlib.sha256(open(os.path.join(data_dir, "audit", "tenant=acme", path), "rb").read()).hexdigest()
                if ckpt and r == ckpt[2] and ckpt[1] == p["tree_size"] and entry["sha256"] == sha:
                    proven += 1
            check("inclusion proofs (RFC 9162 §2.1.3.2) of every file check against the signed root",
                  (proven, len(files) > 0), (len(files), True))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        check("integrity daemon exits 0", code, 0)
        out = subprocess.run([binary, "verify", "--data-dir", data_dir, "--public-key", public,
                              "--trusted-checkpoint", os.path.join(root, "first.checkpoint")],
                             capture_output=True, text=True)
        check("verify: intact", (out.returncode, "intact" in out.stdout.splitlines()[-1]), (0, True))
        victim = os.path.join(data_dir, "audit", "tenant=acme", files[0])
        data = bytearray(open(victim, "rb").read())
        data[len(data) // 2] ^= 1
        open(victim, "wb").write(bytes(data))
        out = subprocess.run([binary, "verify", "--data-dir", data_dir, "--public-key", public,
                              "--format", "json"], capture_output=True, text=True)
        report = json.loads(out.stdout)
        kinds = [(f["kind"], f["subject"]) for t in report["tenants"] for f in t["findings"]
                 if f["severity"] == "tampered"]
        check("verify: a flipped byte is named (exit 1)", (out.returncode, kinds), (1, [("file_altered", files[0])]))


def main():
    binary = os.path.abspath(sys.argv[1])
    prometheus_phase(binary)
    keyed_phase(binary)
    integrity_phase(binary)
    with tempfile.TemporaryDirectory() as data_dir:
        proc, started = start_daemon(binary, data_dir)
        grpc_addr, http_addr = started["otlp_grpc"], started["otlp_http"]
        try:
            # acme over gRPC (tenant in metadata, gzip), globex over HTTP/protobuf (tenant as a
            # resource attribute), and initech over HTTP with the header.
            results = send_logs(
                GrpcLogExporter(endpoint=grpc_addr, insecure=True, headers={"x-scope-orgid": "acme"},
                                compression=grpc.Compression.Gzip),
                "acme", False, plain=7, events=3)
            check("grpc log exports all succeeded", set(results), {"SUCCESS"})
            results = send_logs(
                HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs", compression=HttpCompression.Gzip),
                "globex", True, plain=4, events=2)
            check("http log exports all succeeded", set(results), {"SUCCESS"})
            results = send_spans(
                GrpcSpanExporter(endpoint=grpc_addr, insecure=True, headers={"x-scope-orgid": "acme"}),
                "acme", False, 5)
            check("grpc span exports all succeeded", set(results), {"SUCCESS"})
            results = send_spans(
                HttpSpanExporter(endpoint=f"http://{http_addr}/v1/traces", headers={"X-Scope-OrgID": "initech"}),
                "initech", False, 6)
            check("http span exports all succeeded", set(results), {"SUCCESS"})
            # A mismatch is refused (403) and not stored.
            results = send_logs(
                HttpLogExporter(endpoint=f"http://{http_addr}/v1/logs", headers={"X-Scope-OrgID": "acme"}),
                "globex", True, plain=1, events=0)
            check("tenant mismatch is refused", set(results), {"FAILURE"})
            # The exposition is valid for Prometheus and counts what was received.
            exposition = urllib.request.urlopen(f"http://{started['metrics']}/metrics").read()
            lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True)
            check("promtool check metrics", (lint.returncode, lint.stdout + lint.stderr), (0, b""))
            received = [
                line for line in exposition.decode().splitlines()
                if line.startswith('tenantscope_ingest_records_received_total{transport="grpc",signal="logs"}')
            ]
            check("records received on /metrics", received,
                  ['tenantscope_ingest_records_received_total{transport="grpc",signal="logs"} 11'])
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        check("daemon exits 0 on SIGTERM", code, 0)

        glob = os.path.join(data_dir, "audit", "**", "*.parquet")
        con = duckdb.connect()
        rows = con.execute(
            f"SELECT tenant, signal, count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        check("duckdb counts per tenant and signal", rows, [
            ("acme", "events", 4), ("acme", "logs", 7), ("acme", "spans", 5),
            ("globex", "events", 3), ("globex", "logs", 4), ("initech", "spans", 6),
        ])
        events = con.execute(
            f"SELECT tenant_id, event_name, count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
            "WHERE signal = 'events' GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        check("event_name survived", events, [
            ("acme", "order.completed", 3), ("acme", "subscription.upgraded", 1),
            ("globex", "order.completed", 2), ("globex", "subscription.upgraded", 1),
        ])
        leaked = con.execute(
            f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) WHERE tenant <> tenant_id"
        ).fetchone()[0]
        check("every file holds only its partition's tenant", leaked, 0)
        attrs = con.execute(
            f"SELECT attributes['seq'], attributes['ratio'], attributes['tags'], service_name, "
            f"length(trace_id), typeof(timestamp) FROM read_parquet('{glob}', hive_partitioning=true) "
            "WHERE tenant = 'acme' AND signal = 'logs' AND body = 'acme log 3'"
        ).fetchall()
        check("attribute values and columns as DuckDB sees them", attrs,
              [("3", "0.5", '["a","b"]', "acme-py", 0, "TIMESTAMPTZ_NS")])
        spans = con.execute(
            f"SELECT kind, status_code, count(*), min(duration_ns) >= 0, min(length(trace_id)) "
            f"FROM read_parquet('{glob}', hive_partitioning=true, union_by_name=true) "
            "WHERE signal = 'spans' AND tenant = 'initech' GROUP BY ALL"
        ).fetchall()
        check("spans as DuckDB sees them", spans, [("SPAN_KIND_CLIENT", "STATUS_CODE_OK", 6, True, 32)])

        dataset = ds.dataset(os.path.join(data_dir, "audit"), format="parquet", partitioning="hive")
        table = dataset.to_table(filter=(ds.field("tenant") == "globex") & (ds.field("signal") == "logs"))
        check("pyarrow reads the hive dataset", table.num_rows, 4)
        check("pyarrow sees the partition columns",
              {"tenant", "signal", "date"} <= set(dataset.schema.names), True)

        out = subprocess.run(
            [binary, "query", "--data-dir", data_dir, "--tenant", "acme", "--format", "json",
             "SELECT event_name, count(*) AS n FROM events GROUP BY event_name ORDER BY event_name"],
            capture_output=True, text=True, check=True,
        ).stdout
        check("tenantscope query agrees with DuckDB",
              [json.loads(line) for line in out.splitlines()],
              [{"event_name": "order.completed", "n": 3}, {"event_name": "subscription.upgraded", "n": 1}])

    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
