//! The Parquet writer and its commit protocol.
//!
//! [`write_batches`] writes the rows of one tenant and table as one Parquet file per UTC day:
//! sorted by `timestamp`, zstd-compressed, with page statistics on times and numbers (where
//! they prune), no dictionaries (zstd finds the repeats), and a bloom filter on
//! `trace_id`. The file is written under a hidden temporary name, fsync'd, renamed to its final
//! `.parquet` name, and the directory is fsync'd: a reader never sees a partial file.
//!
//! This is blocking code (encoding, compression, fsync); async callers run it on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{RecordBatch, TimestampNanosecondArray};
use arrow::compute::interleave_record_batch;
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
/// day of their `timestamp` column, each sorted by time.
///
/// The batches are never concatenated: one sorted order of (time, batch, row) is computed, split
/// into days (contiguous once sorted), and each file is written from it in chunks — runs that
/// are already in order are written as slices of their batch (no copy), the rest gathered
/// (`interleave`) a chunk at a time. So memory is the input plus one chunk.
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
    let schema = table.schema();
    let mut order: Vec<(i64, u32, u32)> =
        Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for (b, batch) in batches.iter().enumerate() {
        if batch.schema().fields() != schema.fields() {
            return Err(schema_err(ArrowError::SchemaError(
                "a record batch has another schema".into(),
            )));
        }
        let ts = timestamps(batch).map_err(schema_err)?;
        order.extend(
            ts.values()
                .iter()
                .enumerate()
                .map(|(r, &t)| (t, b as u32, r as u32)),
        );
    }
    // Stable, and linear when the rows already come in order.
    order.sort_by_key(|&(t, _, _)| t);
    let mut committed = Vec::new();
    for run in order.chunk_by(|a, b| day_of(a.0) == day_of(b.0)) {
        let date = date_of(day_of(run[0].0)).map_err(schema_err)?;
        committed.push(write_sorted(
            layout, tenant, table, date, batches, run, options,
        )?);
    }
    Ok(committed)
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn day_of(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_DAY)
}

fn date_of(day: i64) -> Result<NaiveDate, ArrowError> {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.date_naive())
        .ok_or_else(|| ArrowError::ComputeError(format!("day {day} out of range")))
}

fn timestamps(batch: &RecordBatch) -> Result<&TimestampNanosecondArray, ArrowError> {
    batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("no timestamp(ns) column".into()))
}

/// Rows gathered per `interleave` call.
const CHUNK_ROWS: usize = 8192;
/// An in-order run at least this long is written as a slice of its batch instead of gathered.
const MIN_SLICE_ROWS: usize = 256;

/// Writes the rows `order` names (sorted by time, all dated `date`) as one committed Parquet
/// file: temporary name, fsync, rename, directory fsync.
fn write_sorted(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    date: NaiveDate,
    batches: &[RecordBatch],
    order: &[(i64, u32, u32)],
    options: &WriterOptions,
) -> Result<CommittedFile, WriteError> {
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
    let result = encode(file, table, batches, order, options, &tmp_path).and_then(|bytes| {
        std::fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&dir)?;
        Ok(bytes)
    });
    match result {
        Ok((bytes, sha256)) => Ok(CommittedFile {
            path: final_path,
            rows: order.len(),
            bytes,
            min_timestamp: order[0].0,
            max_timestamp: order[order.len() - 1].0,
            sha256,
        }),
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

/// Encodes the rows `order` names into `file`, fsyncs it; returns its size and SHA-256.
fn encode(
    file: File,
    table: Table,
    batches: &[RecordBatch],
    order: &[(i64, u32, u32)],
    options: &WriterOptions,
    path: &Path,
) -> Result<(u64, String), WriteError> {
    let level = ZstdLevel::try_new(options.zstd_level)?;
    // Statistics only where a query can prune by them (times and numbers, the file being sorted
    // by time): min/max of every string column cost a byte comparison per value — 10 % of the
    // daemon's CPU under load — and prune nothing for unsorted or unique values. No dictionary
    // encoding: on audit-v1 data zstd finds the repeats anyway (103.0 B/row without dictionaries,
    // 104.0 with them on every repeating column) and interning every value cost 38 % of the
    // encoding time (`collector/examples/writer_cost.rs`, BENCHMARKS.md).
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.max_row_group_rows))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_dictionary_enabled(false)
        .set_column_bloom_filter_enabled("trace_id".into(), true);
    for column in STATISTICS {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Page);
    }
    let props = props.build();
    let sink = HashingWriter {
        file,
        hasher: Sha256::new(),
    };
    let mut writer = ArrowWriter::try_new(sink, table.schema(), Some(props))?;
    let sources: Vec<&RecordBatch> = batches.iter().collect();
    let mut gathered: Vec<(usize, usize)> = Vec::with_capacity(CHUNK_ROWS);
    let gather = |writer: &mut ArrowWriter<HashingWriter>, gathered: &mut Vec<(usize, usize)>| {
        if gathered.is_empty() {
            return Ok(());
        }
        let chunk =
            interleave_record_batch(&sources, gathered).map_err(|source| WriteError::Schema {
                table: table.name(),
                source,
            })?;
        gathered.clear();
        writer.write(&chunk).map_err(WriteError::from)
    };
    // Maximal runs of consecutive rows of one batch.
    for run in order.chunk_by(|a, b| a.1 == b.1 && a.2 + 1 == b.2) {
        let (batch, first) = (run[0].1 as usize, run[0].2 as usize);
        if run.len() >= MIN_SLICE_ROWS {
            gather(&mut writer, &mut gathered)?;
            writer.write(&batches[batch].slice(first, run.len()))?;
            continue;
        }
        for &(_, b, r) in run {
            gathered.push((b as usize, r as usize));
            if gathered.len() == CHUNK_ROWS {
                gather(&mut writer, &mut gathered)?;
            }
        }
    }
    gather(&mut writer, &mut gathered)?;
    let sink = writer.into_inner()?;
    sink.file.sync_all().map_err(io_err(path))?;
    let bytes = sink.file.metadata().map_err(io_err(path))?.len();
    Ok((bytes, hex::encode(sink.hasher.finalize())))
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
