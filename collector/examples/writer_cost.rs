//! Parquet encoding cost and size of real write-ahead log data under several writer settings.
//!
//!     cargo run --release -p tenantscope --example writer_cost -- DIR/wal [ROWS_PER_FILE]
//!
//! Reads every record of the log (e.g. one left by `tenantscope-bench load` against a daemon
//! killed before its commits), then encodes the rows in files of ROWS_PER_FILE rows with each
//! setting and prints CPU time per row and bytes per row. Used to choose the writer's settings
//! (BENCHMARKS.md). Log records logged as OTLP are converted as a commit converts them.

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use audit_store::Table;
use audit_store::wal::payload::{OTLP_LOGS, decode_batches};
use audit_store::wal::replay;
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
    let mut batches = Vec::new();
    replay(std::path::Path::new(&dir), |r| {
        if r.table != Table::Logs {
            return;
        }
        if r.payload.starts_with(&OTLP_LOGS) {
            let logged = Logged::parse(r.payload).unwrap();
            batches.extend(to_sorted_batches(&r.tenant, r.table, &[logged]).0);
        } else {
            batches.extend(decode_batches(r.table, r.payload).unwrap());
        }
    })
    .unwrap();
    let all = concat_batches(&Table::Logs.schema(), &batches).unwrap();
    let files: Vec<RecordBatch> = (0..all.num_rows())
        .step_by(rows_per_file)
        .map(|o| all.slice(o, rows_per_file.min(all.num_rows() - o)))
        .collect();
    println!("{} rows, files of {rows_per_file}", all.num_rows());
    let base = || {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled("timestamp".into(), EnabledStatistics::Page)
            .set_column_bloom_filter_enabled("trace_id".into(), true)
    };
    let no_dict = |mut b: WriterPropertiesBuilder, cols: &[&str]| {
        for c in cols {
            b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
        }
        b
    };
    let maps = [
        "attributes.key_value.key",
        "attributes.key_value.value",
        "resource_attributes.key_value.key",
        "resource_attributes.key_value.value",
    ];
    let unique = ["body", "trace_id", "span_id"];
    let settings: Vec<(&str, WriterProperties)> = vec![
        (
            "dictionary except unique columns (current)",
            no_dict(base(), &unique).build(),
        ),
        (
            "no dictionary at all",
            base().set_dictionary_enabled(false).build(),
        ),
        (
            "no dictionary on unique columns and maps",
            no_dict(no_dict(base(), &unique), &maps).build(),
        ),
        (
            "current, no bloom filter",
            no_dict(base(), &unique)
                .set_column_bloom_filter_enabled("trace_id".into(), false)
                .build(),
        ),
    ];
    for (name, props) in settings {
        let started = Instant::now();
        let mut bytes = 0;
        for file in &files {
            let mut out = Vec::new();
            let mut w = ArrowWriter::try_new(&mut out, file.schema(), Some(props.clone())).unwrap();
            w.write(file).unwrap();
            w.close().unwrap();
            bytes += out.len();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:48} {:6.2} µs/row {:7.1} B/row",
            secs * 1e6 / all.num_rows() as f64,
            bytes as f64 / all.num_rows() as f64
        );
    }
}
