//! Writing a buffer's records: streamed in time order, or sorted in memory when the order the
//! commit computed turns out wrong.

use std::time::Instant;

use arrow::array::{Array, StringArray, TimestampNanosecondArray};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use prost::Message;

use super::*;
use crate::pipeline::log_payload::testing::logged_request;

/// A length-delimited protobuf field.
fn field(key: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// An `ExportLogsServiceRequest` of one resource and one scope holding `records` as given.
fn request_of(records: &[Vec<u8>]) -> Vec<u8> {
    let scope: Vec<u8> = records.iter().flat_map(|r| field(0x12, r)).collect();
    field(0x0a, &field(0x12, &scope))
}

fn record(time: u64, body: &str) -> Vec<u8> {
    LogRecord {
        time_unix_nano: time,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Writes `request`'s `rows` records, logged for acme's `logs` (received at 1,000), as a commit
/// writes a buffer of them.
fn write_logged(layout: &Layout, request: Vec<u8>, rows: usize) -> Vec<CommittedFile> {
    let back = ReadBack {
        batches: Vec::new(),
        logged: vec![logged_request(request, 1_000)],
    };
    let buffer = Buffer {
        records: Vec::new(),
        rows,
        bytes: 0,
        first_lsn: 1,
        last_lsn: 1,
        since: Instant::now(),
    };
    let acme = TenantId::parse("acme").unwrap();
    write_buffer(
        layout,
        (&acme, Table::Logs),
        back,
        &buffer,
        &WriterOptions::default(),
        &Catalog::with_tenant_labels(10),
    )
    .unwrap()
}

/// `(timestamp, body)` of every row of a Parquet file, in file order.
fn rows_of(path: &std::path::Path) -> Vec<(i64, String)> {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = |name| batch.column_by_name(name).unwrap().as_any();
        let times = column("timestamp")
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        let bodies = column("body").downcast_ref::<StringArray>().unwrap();
        rows.extend((0..batch.num_rows()).map(|i| (times.value(i), bodies.value(i).to_owned())));
    }
    rows
}

fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(parquet_files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn log_records_in_time_order_are_streamed_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    // Out of order in the log; the commit orders them.
    let request = request_of(&[record(300, "c"), record(100, "a"), record(200, "b")]);
    let files = write_logged(&layout, request, 3);
    assert_eq!(files.len(), 1);
    assert_eq!(
        (
            files[0].rows,
            files[0].min_timestamp,
            files[0].max_timestamp
        ),
        (3, 100, 300)
    );
    assert_eq!(
        rows_of(&files[0].path),
        [(100, "a"), (200, "b"), (300, "c")].map(|(t, b)| (t, b.to_owned()))
    );
}

#[test]
fn log_records_whose_order_hint_is_wrong_are_sorted_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    // The second record carries an unknown field as a protobuf group (field 20), then its time
    // again: the commit orders it by the first time (2,000), the in-place reader gives up on it,
    // but prost reads it, and it is stored under the last time (50) — earlier than the first
    // record's 100.
    let mut grouped = record(2_000, "early");
    grouped.extend([0xa3, 0x01, 0xa4, 0x01, 0x09]);
    grouped.extend(50u64.to_le_bytes());
    assert_eq!(crate::otlp::logs::record_time(&grouped, 1_000), 2_000);
    assert_eq!(
        LogRecord::decode(grouped.as_slice())
            .unwrap()
            .time_unix_nano,
        50
    );
    let request = request_of(&[record(100, "late"), grouped]);
    let files = write_logged(&layout, request, 2);
    assert_eq!(files.len(), 1);
    assert_eq!(
        (
            files[0].rows,
            files[0].min_timestamp,
            files[0].max_timestamp
        ),
        (2, 50, 100)
    );
    assert_eq!(
        rows_of(&files[0].path),
        [(50, "early"), (100, "late")].map(|(t, b)| (t, b.to_owned()))
    );
    // The streamed attempt left nothing behind: one file in the store, no temporary.
    assert_eq!(parquet_files(dir.path()), vec![files[0].path.clone()]);
}
