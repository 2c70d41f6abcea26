//! The Parquet writer and its commit protocol.
//!
//! [`write_batches`] writes the rows of one tenant and table as one Parquet file per UTC day:
//! sorted by `timestamp`, zstd-compressed, with page statistics on times and numbers (where
//! they prune), no dictionaries (zstd finds the repeats), and a bloom filter on
//! `trace_id`. The file is written under a hidden temporary name, fsync'd, renamed to its final
//! `.parquet` name, and the directory is fsync'd: a reader never sees a partial file.
//!
//! [`SortedWriter`] writes the same files from batches that already come in time order, one batch
//! at a time, so that a commit does not hold all its rows in memory; [`commit_files`] then names
//! them in the tenant's audit log ([`crate::log`]). Each file's SHA-256 and rows digest
//! ([`crate::rows_digest`]) are computed as it is written.
//!
//! One file being written (temporary name, hashing, rename) is `file`'s.
//!
//! This is blocking code (encoding, compression, fsync); async callers run it on a blocking thread.

mod file;

use std::path::PathBuf;

use arrow::array::{RecordBatch, TimestampNanosecondArray};
use arrow::compute::interleave_record_batch;
use arrow::error::ArrowError;
use chrono::NaiveDate;

use crate::layout::Layout;
use crate::log::entry::FileEntry;
use crate::log::{LogError, TenantLog};
use crate::rows_digest::RowsDigestError;
use crate::{Table, TenantId};
use file::OpenFile;

/// Why a file could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("record batch does not match the {table} schema: {source}")]
    Schema {
        table: &'static str,
        source: ArrowError,
    },
    /// A [`SortedWriter`] was given a row earlier than one it already wrote.
    #[error("rows of {table} do not come in time order")]
    OutOfOrder { table: &'static str },
    #[error("encoding parquet failed: {0}")]
    Encode(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot compute the rows digest: {0}")]
    RowsDigest(#[from] RowsDigestError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file that is renamed into place and durable (but not yet named by the log).
#[derive(Debug, Clone)]
pub struct CommittedFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub sha256: String,
    /// `blake3:<hex>`: the digest of its rows ([`crate::rows_digest`]).
    pub rows_digest: String,
}

/// Writes `batches` of one tenant and table as Parquet files and commits them with `file`
/// entries in the tenant's log covering write-ahead log positions `lsns` (see [`crate::log`]).
pub fn commit(
    layout: &Layout,
    log: &mut TenantLog,
    table: Table,
    batches: &[RecordBatch],
    lsns: std::ops::RangeInclusive<u64>,
    options: &WriterOptions,
) -> Result<Vec<FileEntry>, WriteError> {
    let tenant = log.tenant().clone();
    let files = write_batches(layout, &tenant, table, batches, options)?;
    commit_files(log, table, &files, lsns)
}

/// Commits `files` (written for the log's tenant and `table`) with their entries, covering
/// write-ahead log positions `lsns`: after this returns, they are part of the store.
pub fn commit_files(
    log: &mut TenantLog,
    table: Table,
    files: &[CommittedFile],
    lsns: std::ops::RangeInclusive<u64>,
) -> Result<Vec<FileEntry>, WriteError> {
    Ok(log.commit_files(table, files, lsns)?)
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
        let day = day_of(run[0].0);
        committed.push(write_sorted(
            layout, tenant, table, day, batches, run, options,
        )?);
    }
    Ok(committed)
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Days since the epoch (UTC) of a time in nanoseconds.
fn day_of(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_DAY)
}

/// The date of `day` (days since the epoch, UTC).
fn date_of(day: i64) -> Result<NaiveDate, ArrowError> {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.date_naive())
        .ok_or_else(|| ArrowError::ComputeError(format!("day {day} out of range")))
}

/// The batch's `timestamp` column.
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
/// file: runs already in order as slices of their batch, the rest gathered a chunk at a time.
fn write_sorted(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    day: i64,
    batches: &[RecordBatch],
    order: &[(i64, u32, u32)],
    options: &WriterOptions,
) -> Result<CommittedFile, WriteError> {
    let mut file = OpenFile::create(layout, tenant, table, day, options, order.len())?;
    let sources: Vec<&RecordBatch> = batches.iter().collect();
    let mut gathered: Vec<(usize, usize)> = Vec::with_capacity(CHUNK_ROWS);
    let mut gathered_times = (i64::MAX, i64::MIN);
    let gather = |file: &mut OpenFile,
                  gathered: &mut Vec<(usize, usize)>,
                  times: &mut (i64, i64)| {
        if gathered.is_empty() {
            return Ok(());
        }
        let chunk =
            interleave_record_batch(&sources, gathered).map_err(|source| WriteError::Schema {
                table: table.name(),
                source,
            })?;
        gathered.clear();
        let (first, last) = std::mem::replace(times, (i64::MAX, i64::MIN));
        file.write(&chunk, first, last)
    };
    // Maximal runs of consecutive rows of one batch.
    for run in order.chunk_by(|a, b| a.1 == b.1 && a.2 + 1 == b.2) {
        let (batch, first) = (run[0].1 as usize, run[0].2 as usize);
        if run.len() >= MIN_SLICE_ROWS {
            gather(&mut file, &mut gathered, &mut gathered_times)?;
            let slice = batches[batch].slice(first, run.len());
            file.write(&slice, run[0].0, run[run.len() - 1].0)?;
            continue;
        }
        for &(t, b, r) in run {
            gathered.push((b as usize, r as usize));
            gathered_times = (gathered_times.0.min(t), gathered_times.1.max(t));
            if gathered.len() == CHUNK_ROWS {
                gather(&mut file, &mut gathered, &mut gathered_times)?;
            }
        }
    }
    gather(&mut file, &mut gathered, &mut gathered_times)?;
    file.finish()
}

/// Writes batches that come in time order as committed Parquet files, one per UTC day, a batch
/// at a time: memory is the batch being written and the open file's row group, however many rows
/// pass through. The files are the ones [`write_batches`] would write; [`commit_files`] then
/// commits them.
///
/// A batch that is not in time order, or starts before the last row written, is refused
/// ([`WriteError::OutOfOrder`]): the files are declared sorted to the query engine. Dropping the
/// writer before [`SortedWriter::finish`] removes every file it wrote (none is committed yet).
pub struct SortedWriter<'a> {
    layout: &'a Layout,
    tenant: &'a TenantId,
    table: Table,
    options: &'a WriterOptions,
    open: Option<OpenFile>,
    written: Vec<CommittedFile>,
    last: i64,
    /// At most this many rows will be written (sizes the files' bloom filters).
    expected_rows: usize,
}

impl<'a> SortedWriter<'a> {
    pub fn new(
        layout: &'a Layout,
        tenant: &'a TenantId,
        table: Table,
        options: &'a WriterOptions,
    ) -> Self {
        Self {
            layout,
            tenant,
            table,
            options,
            open: None,
            written: Vec::new(),
            last: i64::MIN,
            expected_rows: options.max_row_group_rows,
        }
    }

    /// Says how many rows at most will be written: the `trace_id` bloom filter of each file is
    /// sized for that many distinct values rather than for a full row group, as the Parquet
    /// writer advises. (Sized for a row group of 1 Mi rows, every file's filter started at 1 MiB
    /// and was folded down to its target false-positive rate at close: ~2 million instructions
    /// per file, 11 % of the daemon's CPU when 100 tenants' small buffers were committed.) More
    /// rows are still written correctly, with a filter that answers "maybe" more often.
    pub fn expecting_rows(mut self, rows: usize) -> Self {
        self.expected_rows = rows;
        self
    }

    /// Writes `batch` (of the table's schema, rows in time order, none earlier than the rows
    /// written before).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        let table = self.table.name();
        if batch.schema().fields() != self.table.schema().fields() {
            return Err(WriteError::Schema {
                table,
                source: ArrowError::SchemaError("a record batch has another schema".into()),
            });
        }
        let times = timestamps(batch)
            .map_err(|source| WriteError::Schema { table, source })?
            .values();
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Ok(());
        };
        if first < self.last || times.windows(2).any(|w| w[1] < w[0]) {
            return Err(WriteError::OutOfOrder { table });
        }
        self.last = last;
        // Sorted, so each day's rows are one run.
        let mut start = 0;
        while start < times.len() {
            let day = day_of(times[start]);
            let end = start + times[start..].partition_point(|&t| day_of(t) == day);
            let file = self.file_for(day)?;
            file.write(
                &batch.slice(start, end - start),
                times[start],
                times[end - 1],
            )?;
            start = end;
        }
        Ok(())
    }

    /// Completes the open file; returns every file written, renamed into place and durable.
    pub fn finish(mut self) -> Result<Vec<CommittedFile>, WriteError> {
        if let Some(open) = self.open.take() {
            self.written.push(open.finish()?);
        }
        Ok(std::mem::take(&mut self.written))
    }

    /// The open file of `day`, completing the previous day's first.
    fn file_for(&mut self, day: i64) -> Result<&mut OpenFile, WriteError> {
        if self.open.as_ref().is_some_and(|f| f.day() != day)
            && let Some(done) = self.open.take()
        {
            self.written.push(done.finish()?);
        }
        if self.open.is_none() {
            self.open = Some(OpenFile::create(
                self.layout,
                self.tenant,
                self.table,
                day,
                self.options,
                self.expected_rows,
            )?);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }
}

impl Drop for SortedWriter<'_> {
    fn drop(&mut self) {
        // Not finished: the files are orphans no manifest will name (the open one's temporary
        // file is removed by its own drop). Best effort; recovery removes any left.
        for file in &self.written {
            let _ = std::fs::remove_file(&file.path);
        }
    }
}

#[cfg(test)]
mod tests;
