//! The Parquet writer and its commit protocol.
//!
//! [`write_partition`] writes the rows of one tenant, one table and one UTC day as one Parquet
//! file: sorted by `timestamp`, zstd-compressed, with page statistics on times and numbers (where
//! they prune), dictionaries where values repeat, and a bloom filter on
//! `trace_id`. The file is written under a hidden temporary name, fsync'd, renamed to its final
//! `.parquet` name, and the directory is fsync'd: a reader never sees a partial file.
//!
//! This is blocking code (encoding, compression, fsync); async callers run it on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampNanosecondArray};
use arrow::compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::error::ArrowError;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::layout::{Layout, PARQUET_EXTENSION, temporary_name};
use crate::manifest::{Commit, FileEntry, Manifest, ManifestError};
use crate::{Table, TenantId};

/// Why a file could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("record batch does not match the {table} schema: {source}")]
    Schema {
        table: &'static str,
        source: ArrowError,
    },
    #[error("encoding parquet failed: {0}")]
    Encode(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file that is renamed into place and durable (but not yet named by the manifest).
#[derive(Debug, Clone)]
pub struct CommittedFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub sha256: String,
}

impl CommittedFile {
    /// The manifest entry of this file; `tenant_dir` is the directory paths are relative to.
    pub fn entry(&self, tenant_dir: &Path) -> FileEntry {
        FileEntry {
            path: self
                .path
                .strip_prefix(tenant_dir)
                .unwrap_or(&self.path)
                .to_string_lossy()
                .into_owned(),
            rows: self.rows as u64,
            bytes: self.bytes,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            sha256: self.sha256.clone(),
        }
    }
}

/// Writes `batches` of one tenant and table as Parquet files and commits them with one manifest
/// line covering write-ahead log positions `lsns` (see [`crate::manifest`]).
pub fn commit(
    layout: &Layout,
    manifest: &mut Manifest,
    tenant: &TenantId,
    table: Table,
    batches: &[RecordBatch],
    lsns: std::ops::RangeInclusive<u64>,
    options: &WriterOptions,
) -> Result<Commit, WriteError> {
    let files = write_batches(layout, tenant, table, batches, options)?;
    let tenant_dir = layout.tenant_dir(tenant);
    let commit = Commit {
        table: table.name().to_owned(),
        lsn_first: *lsns.start(),
        lsn_last: *lsns.end(),
        committed_at_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default(),
        files: files.iter().map(|f| f.entry(&tenant_dir)).collect(),
    };
    manifest.append(commit.clone())?;
    Ok(commit)
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub zstd_level: i32,
    pub max_row_group_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            zstd_level: 1,
            max_row_group_rows: 1 << 20,
        }
    }
}

/// Writes `batches` (all of `table`'s schema, all for `tenant`) as one committed file per UTC
/// day of their `timestamp` column.
pub fn write_batches(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    batches: &[RecordBatch],
    options: &WriterOptions,
) -> Result<Vec<CommittedFile>, WriteError> {
    let schema_err = |source| WriteError::Schema {
        table: table.name(),
        source,
    };
    let batch = concat_batches(&table.schema(), batches).map_err(schema_err)?;
    let mut committed = Vec::new();
    for (date, rows) in split_by_date(&batch).map_err(schema_err)? {
        if let Some(file) = write_partition(layout, tenant, table, date, &[rows], options)? {
            committed.push(file);
        }
    }
    Ok(committed)
}

/// Splits rows by the UTC date of their `timestamp`.
fn split_by_date(batch: &RecordBatch) -> Result<Vec<(NaiveDate, RecordBatch)>, ArrowError> {
    let ts = batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("no timestamp(ns) column".into()))?;
    const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
    let days: Vec<i64> = ts
        .values()
        .iter()
        .map(|ns| ns.div_euclid(NANOS_PER_DAY))
        .collect();
    let to_date = |day: i64| {
        chrono::DateTime::from_timestamp(day * 86_400, 0)
            .map(|t| t.date_naive())
            .ok_or_else(|| ArrowError::ComputeError(format!("day {day} out of range")))
    };
    let Some(&first) = days.first() else {
        return Ok(vec![]);
    };
    if days.iter().all(|&d| d == first) {
        return Ok(vec![(to_date(first)?, batch.clone())]);
    }
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|day| {
            let mask: BooleanArray = days.iter().map(|&d| Some(d == day)).collect();
            Ok((to_date(day)?, filter_record_batch(batch, &mask)?))
        })
        .collect()
}

/// Writes `batches` (all of `table`'s schema, all for `tenant`, all dated `date`) as one
/// committed Parquet file. Returns `None` when there are no rows.
pub fn write_partition(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    date: NaiveDate,
    batches: &[RecordBatch],
    options: &WriterOptions,
) -> Result<Option<CommittedFile>, WriteError> {
    let schema = table.schema();
    let schema_err = |source| WriteError::Schema {
        table: table.name(),
        source,
    };
    let batch = concat_batches(&schema, batches).map_err(schema_err)?;
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    let batch = sort_by_timestamp(&batch).map_err(schema_err)?;

    let dir = layout.partition_dir(tenant, table, date);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let final_name = unique_file_name();
    let tmp_path = dir.join(temporary_name(&final_name));
    let final_path = dir.join(&final_name);

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(io_err(&tmp_path))?;
    let result = encode(file, &batch, options, &tmp_path).and_then(|bytes| {
        std::fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&dir)?;
        Ok(bytes)
    });
    let ts = batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
    let (min_timestamp, max_timestamp) = ts
        .map(|t| (t.value(0), t.value(t.len() - 1)))
        .unwrap_or_default();
    match result {
        Ok((bytes, sha256)) => Ok(Some(CommittedFile {
            path: final_path,
            rows: batch.num_rows(),
            bytes,
            min_timestamp,
            max_timestamp,
            sha256,
        })),
        Err(e) => {
            // Best effort: a temporary file is invisible to readers either way.
            let _ = std::fs::remove_file(&tmp_path);
            Err(e)
        }
    }
}

/// Passes writes through to the file and hashes them.
struct HashingWriter {
    file: File,
    hasher: Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Columns written with page statistics (see [`encode`]); the others have none.
const STATISTICS: &[&str] = &[
    "timestamp",
    "observed_timestamp",
    "severity_number",
    "start_time",
    "end_time",
    "duration_ns",
];

/// Columns of (nearly) unique values, written without a dictionary.
const NO_DICTIONARY: &[&str] = &[
    "body",
    "trace_id",
    "span_id",
    "parent_span_id",
    "events",
    "links",
];

/// Encodes `batch` into `file`, fsyncs it; returns its size and SHA-256.
fn encode(
    file: File,
    batch: &RecordBatch,
    options: &WriterOptions,
    path: &Path,
) -> Result<(u64, String), WriteError> {
    let level = ZstdLevel::try_new(options.zstd_level)?;
    // Statistics only where a query can prune by them (times and numbers, the file being sorted
    // by time): min/max of every string column cost a byte comparison per value — 10 % of the
    // daemon's CPU under load — and prune nothing for unsorted or unique values. Dictionary
    // encoding likewise only where values repeat.
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.max_row_group_rows))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_bloom_filter_enabled("trace_id".into(), true);
    for column in STATISTICS {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Page);
    }
    for column in NO_DICTIONARY {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    let props = props.build();
    let sink = HashingWriter {
        file,
        hasher: Sha256::new(),
    };
    let mut writer = ArrowWriter::try_new(sink, batch.schema(), Some(props))?;
    writer.write(batch)?;
    let sink = writer.into_inner()?;
    sink.file.sync_all().map_err(io_err(path))?;
    let bytes = sink.file.metadata().map_err(io_err(path))?.len();
    Ok((bytes, hex::encode(sink.hasher.finalize())))
}

fn sort_by_timestamp(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let column = batch
        .column_by_name("timestamp")
        .ok_or_else(|| ArrowError::SchemaError("no timestamp column".into()))?;
    let already_sorted = column
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .is_some_and(|ts| ts.values().windows(2).all(|w| w[0] <= w[1]));
    if already_sorted {
        return Ok(batch.clone());
    }
    let indices = sort_to_indices(column, None, None)?;
    take_record_batch(batch, &indices)
}

/// `<nanoseconds since epoch, 20 digits>-<pid>-<sequence>.parquet`: unique within a data
/// directory, and in write order when listed lexically.
fn unique_file_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{nanos:020}-{}-{seq:06}{PARQUET_EXTENSION}",
        std::process::id()
    )
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}
