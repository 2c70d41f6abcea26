//! Parquet encoding cost and size of real write-ahead log data under several writer settings.
//!
//!     cargo run --release -p tenantscope --example writer_cost -- DIR/wal [ROWS_PER_FILE]
//!
//! Reads every record of the log (e.g. one left by `tenantscope-bench load` against a daemon
//! killed before its commits), converts each tenant's log records as a commit converts a buffer
//! (timed, five rounds), then encodes the rows in files of ROWS_PER_FILE rows with each setting
//! and prints CPU time per row and bytes per row. Used to choose the writer's settings
//! (BENCHMARKS.md). With `PER_COLUMN=1` it instead encodes each column alone with the daemon's
//! settings (only the column named by `COLUMN=name`, if set; `COLUMN=none` stops after the
//! conversion), to see what each costs.

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use audit_store::wal::payload::{OTLP_LOGS, decode_batches};
use audit_store::wal::replay;
use audit_store::{Table, TenantId};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use tenantscope::pipeline::log_payload::{Logged, to_sorted_batches};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: writer_cost DIR/wal [ROWS_PER_FILE]");
    let rows_per_file: usize = args.next().map_or(43_000, |a| a.parse().unwrap());
    // Payloads by tenant, converted as a commit converts a tenant's buffer.
    let mut logged: std::collections::BTreeMap<TenantId, Vec<Logged>> = Default::default();
    let mut batches = Vec::new();
    replay(std::path::Path::new(&dir), |r| {
        if r.table != Table::Logs {
            return;
        }
        if r.payload.starts_with(&OTLP_LOGS) {
            let payload = Logged::parse(r.payload).unwrap();
            logged.entry(r.tenant).or_default().push(payload);
        } else {
            batches.extend(decode_batches(r.table, r.payload).unwrap());
        }
    })
    .unwrap();
    for round in 0..5 {
        let started = Instant::now();
        let mut rows = 0;
        for (tenant, payloads) in &logged {
            let converted = to_sorted_batches(tenant, Table::Logs, payloads).0;
            rows += converted.iter().map(|b| b.num_rows()).sum::<usize>();
            if round == 0 {
                batches.extend(converted);
            }
        }
        println!(
            "conversion at commit, round {round}: {:6.3} µs/row",
            started.elapsed().as_secs_f64() * 1e6 / rows.max(1) as f64
        );
    }
    let all = concat_batches(&Table::Logs.schema(), &batches).unwrap();
    let files: Vec<RecordBatch> = (0..all.num_rows())
        .step_by(rows_per_file)
        .map(|o| all.slice(o, rows_per_file.min(all.num_rows() - o)))
        .collect();
    println!("{} rows, files of {rows_per_file}", all.num_rows());
    // The daemon's settings (audit_store::writer): no dictionaries, statistics on times only.
    let base = || {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_dictionary_enabled(false)
            .set_column_statistics_enabled("timestamp".into(), EnabledStatistics::Page)
            .set_column_statistics_enabled("observed_timestamp".into(), EnabledStatistics::Page)
            .set_column_statistics_enabled("severity_number".into(), EnabledStatistics::Page)
            .set_column_bloom_filter_enabled("trace_id".into(), true)
    };
    let dict = |mut b: WriterPropertiesBuilder, cols: &[&str]| {
        for c in cols {
            b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
        }
        b
    };
    let resource = [
        "resource_attributes.key_value.key",
        "resource_attributes.key_value.value",
    ];
    let repeating = [
        "tenant_id",
        "service_name",
        "severity_text",
        "resource_attributes.key_value.key",
        "resource_attributes.key_value.value",
        "attributes.key_value.key",
        "scope_name",
        "scope_version",
        "redaction_policy",
        "event_name",
        "resource_schema_url",
        "scope_schema_url",
    ];
    let settings: Vec<(&str, WriterProperties)> = vec![
        ("no dictionary (current)", base().build()),
        (
            "dictionary on resource attributes",
            dict(base(), &resource).build(),
        ),
        (
            "dictionary on repeating columns",
            dict(base(), &repeating).build(),
        ),
        (
            "current, no bloom filter",
            base()
                .set_column_bloom_filter_enabled("trace_id".into(), false)
                .build(),
        ),
        (
            "current, data pages of 4 MiB",
            base().set_data_page_size_limit(4 << 20).build(),
        ),
    ];
    let per_row = |(secs, bytes): (f64, usize)| {
        let rows = all.num_rows() as f64;
        (secs * 1e6 / rows, bytes as f64 / rows)
    };
    if std::env::var("PER_COLUMN").is_ok() {
        let only = std::env::var("COLUMN").ok();
        for (i, field) in all.schema().fields().iter().enumerate() {
            if only.as_ref().is_some_and(|c| c != field.name()) {
                continue;
            }
            let column: Vec<RecordBatch> = files.iter().map(|f| f.project(&[i]).unwrap()).collect();
            let (micros, bytes) = per_row(encode(&column, &base().build()));
            println!("{:40} {micros:6.3} µs/row {bytes:7.2} B/row", field.name());
        }
        return;
    }
    for (name, props) in settings {
        let (micros, bytes) = per_row(encode(&files, &props));
        println!("{name:48} {micros:6.2} µs/row {bytes:7.1} B/row");
    }
}

/// Writes each batch as one Parquet file in memory: seconds taken, bytes written.
fn encode(files: &[RecordBatch], props: &WriterProperties) -> (f64, usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for file in files {
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, file.schema(), Some(props.clone())).unwrap();
        w.write(file).unwrap();
        w.close().unwrap();
        bytes += out.len();
    }
    (started.elapsed().as_secs_f64(), bytes)
}
