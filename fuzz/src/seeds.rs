//! The seed corpora (`fuzz/corpus/<target>/`), made from the test fixtures and the example
//! configs by the daemon's own code: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`
//! writes them (see fuzz/README.md).

use std::path::Path;

use arrow::record_batch::RecordBatch;
use audit_store::wal::{Durability, Entry, WalWriter};
use audit_store::{Table, TenantId};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tenantscope::ingest::ExportRequest;
use tenantscope::otlp::logs::LogsRequest;
use tenantscope::pipeline::Record;

use crate::store::{PART, build_store};
use crate::{RECEIVED_AT, batches_of, daemon, selector};

/// OTLP/JSON requests: the test fixtures, and events and metrics of every kind.
pub const LOGS: &str = include_str!("../../tests/fixtures/otlp/logs.json");
pub const TRACES: &str = include_str!("../../tests/fixtures/otlp/trace.json");
pub const EVENTS: &str = include_str!("../seeds/events.json");
pub const METRICS: &str = include_str!("../seeds/metrics.json");

/// The write-ahead log records the daemon makes of a logs request in OTLP/JSON sent for `acme`.
fn records<R: ExportRequest>(json: &str) -> Vec<Record> {
    let daemon = daemon();
    let decoded = R::decode_json(json.as_bytes()).expect("a fixture decodes");
    let access = daemon.auth.authenticate(None, None).expect("no keys");
    let tenancy = access.for_ingest(Some(b"acme")).expect("acme");
    let request = &decoded.request;
    let resolved = (0..request.resource_count())
        .map(|i| {
            Some(
                tenancy
                    .resolve(request.resource_attributes(i))
                    .expect("acme"),
            )
        })
        .collect::<Vec<_>>();
    let prepared = daemon
        .bounds
        .prepare(decoded, &resolved, RECEIVED_AT)
        .expect("a fixture is accepted");
    prepared.records
}

/// Rows of the fixtures, by table, as a commit would write them.
pub fn fixture_rows() -> Vec<(Table, Vec<RecordBatch>)> {
    let mut by_table: Vec<(Table, Vec<RecordBatch>)> = Vec::new();
    for record in records::<LogsRequest>(LOGS)
        .into_iter()
        .chain(records::<LogsRequest>(EVENTS))
    {
        let batches = batches_of(&record);
        match by_table.iter_mut().find(|(t, _)| *t == record.table) {
            Some((_, all)) => all.extend(batches),
            None => by_table.push((record.table, batches)),
        }
    }
    by_table
}

/// Writes every target's seed corpus under `corpus`.
pub fn write_all(corpus: &Path) {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        std::fs::write(dir.join(name), bytes).expect("a seed");
    };
    otlp_seeds(&write);
    write("wal_replay", "segment", &prefixed(0, &wal_segment()));
    store_seeds(&write);
    text_seeds(&write);
}

/// A seed of a target whose first byte selects: `selector`, then `body`.
fn prefixed(selector: u8, body: &[u8]) -> Vec<u8> {
    [&[selector][..], body].concat()
}

/// OTLP: each request sent without a header (tenant.id alone), as acme and as globex.
fn otlp_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    let requests: [(&str, u8, &str, Vec<u8>); 4] = [
        ("logs", 0, LOGS, protobuf::<ExportLogsServiceRequest>(LOGS)),
        (
            "events",
            0,
            EVENTS,
            protobuf::<ExportLogsServiceRequest>(EVENTS),
        ),
        (
            "traces",
            1,
            TRACES,
            protobuf::<ExportTraceServiceRequest>(TRACES),
        ),
        (
            "metrics",
            2,
            METRICS,
            protobuf::<ExportMetricsServiceRequest>(METRICS),
        ),
    ];
    for (name, signal, json, proto) in &requests {
        for header in 0..3 {
            let s = selector(*signal, header);
            write(
                "otlp_json",
                &format!("{name}-{header}"),
                &prefixed(s, json.as_bytes()),
            );
            write(
                "otlp_protobuf",
                &format!("{name}-{header}"),
                &prefixed(s, proto),
            );
        }
    }
}

/// The audit log and Parquet files of a store the daemon's own writer commits.
fn store_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    let scratch = tempfile::tempdir().expect("a directory");
    let tenant = TenantId::parse("acme").expect("a tenant");
    build_store(scratch.path(), &tenant);
    let layout = audit_store::layout::Layout::new(scratch.path());
    let dir = layout.tenant_dir(&tenant);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a store file");
    let log = [
        read(audit_store::log::LOG_FILE),
        read(audit_store::log::CHECKPOINTS_FILE),
        read(audit_store::log::CHECKPOINT_FILE),
    ]
    .join(PART);
    write("audit_log", "store", &log);
    for (i, table) in Table::ALL.iter().enumerate() {
        for (n, file) in parquet_files(&layout.table_dir(&tenant, *table))
            .iter()
            .enumerate()
        {
            write(
                "parquet_file",
                &format!("{}-{n}", table.name()),
                &prefixed(i as u8, file),
            );
        }
    }
}

/// The example configs and query request bodies.
fn text_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    let configs = [
        (
            "example",
            include_str!("../../config/tenantscope.example.yaml").to_string(),
        ),
        ("tenants", tenants_section()),
        ("fuzzing", crate::CONFIG.to_string()),
    ];
    for (name, text) in configs {
        write("config", name, text.as_bytes());
    }
    let queries = [
        r#"{"sql": "SELECT count(*) FROM logs"}"#,
        r#"{"sql": "SELECT * FROM events", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00+01:00", "format": "csv"}"#,
        r#"{"sql": "SELECT 1", "since": "24h", "tenant": "acme", "format": "parquet"}"#,
        r#"{"sql": "SELECT name FROM spans", "format": "arrow", "since": "1w 2d"}"#,
    ];
    for (i, q) in queries.iter().enumerate() {
        write(
            "query_request",
            &format!("q{i}"),
            &prefixed(i as u8, q.as_bytes()),
        );
    }
}

fn protobuf<M: Message + Default + serde::de::DeserializeOwned>(json: &str) -> Vec<u8> {
    serde_json::from_str::<M>(json)
        .expect("a fixture reads as the proto message")
        .encode_to_vec()
}

/// A write-ahead log segment holding the fixtures' records, two requests of them.
fn wal_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a directory");
    let mut wal = WalWriter::new(dir.path(), 1, 1 << 30).expect("a log");
    for (json, traces) in [(LOGS, false), (EVENTS, false), (TRACES, true)] {
        let records = if traces {
            records::<ExportTraceServiceRequest>(json)
        } else {
            records::<LogsRequest>(json)
        };
        let entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Entry {
                tenant: &r.tenant,
                table: r.table,
                durability: Durability::Sync,
                ends_request: i + 1 == records.len(),
                payload: &r.payload,
            })
            .collect();
        wal.append(&entries).expect("an append");
    }
    wal.close();
    let (_, path) = audit_store::wal::list_segments(dir.path())
        .expect("segments")
        .into_iter()
        .next()
        .expect("a segment");
    std::fs::read(path).expect("the segment")
}

/// The Parquet files under a table directory (its date partitions).
fn parquet_files(table_dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for day in std::fs::read_dir(table_dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "parquet") {
                files.push(std::fs::read(file.path()).expect("a Parquet file"));
            }
        }
    }
    files
}

/// The example tenants file as the `tenants:` section of a config.
fn tenants_section() -> String {
    let tenants = include_str!("../../config/tenants.example.yaml");
    let indented: String = tenants.lines().map(|l| format!("  {l}\n")).collect();
    format!("tenants:\n{indented}")
}
