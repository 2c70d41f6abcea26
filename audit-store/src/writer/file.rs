//! One Parquet file being written: under a hidden temporary name, through a writer that hashes
//! every byte (SHA-256) while the rows digest is computed from the batches, then fsync'd, renamed
//! to its final name and its directory fsync'd ([`OpenFile::finish`]). Also the Parquet writer
//! settings every file gets ([`properties`]).
//!
//! It never names a file in the audit log: committing is the caller's ([`super::commit_files`]).
//! A file dropped before it is finished is removed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::{CommittedFile, WriteError, WriterOptions, date_of};
use crate::layout::{Layout, PARQUET_EXTENSION, temporary_name};
use crate::rows_digest::RowsHasher;
use crate::{Table, TenantId};

/// A Parquet file being written under its temporary name.
pub(super) struct OpenFile {
    day: i64,
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    writer: Option<ArrowWriter<HashingWriter>>,
    rows_digest: RowsHasher,
    rows: usize,
    min_timestamp: i64,
    max_timestamp: i64,
}

impl OpenFile {
    /// The day (since the epoch, UTC) of the file's rows.
    pub(super) fn day(&self) -> i64 {
        self.day
    }

    /// Creates the file of `day` (days since the epoch, UTC) under its temporary name, for at
    /// most `rows` rows (a hint: see [`super::SortedWriter::expecting_rows`]).
    pub(super) fn create(
        layout: &Layout,
        tenant: &TenantId,
        table: Table,
        day: i64,
        options: &WriterOptions,
        rows: usize,
    ) -> Result<Self, WriteError> {
        let date = date_of(day).map_err(|source| WriteError::Schema {
            table: table.name(),
            source,
        })?;
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
        let mut open = Self {
            day,
            dir,
            tmp_path,
            final_path,
            writer: None,
            rows_digest: RowsHasher::new(table),
            rows: 0,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
        };
        let sink = HashingWriter {
            file,
            hasher: Sha256::new(),
        };
        open.writer = Some(ArrowWriter::try_new(
            sink,
            table.schema(),
            Some(properties(options, rows)?),
        )?);
        Ok(open)
    }

    /// Writes `batch`, whose times run from `first` to `last`.
    pub(super) fn write(
        &mut self,
        batch: &RecordBatch,
        first: i64,
        last: i64,
    ) -> Result<(), WriteError> {
        let writer = self.writer.as_mut().expect("written before finish");
        writer.write(batch)?;
        self.rows_digest.update(batch)?;
        self.rows += batch.num_rows();
        self.min_timestamp = self.min_timestamp.min(first);
        self.max_timestamp = self.max_timestamp.max(last);
        Ok(())
    }

    /// Completes the file: footer, fsync, rename to its final name, directory fsync.
    pub(super) fn finish(mut self) -> Result<CommittedFile, WriteError> {
        let writer = self.writer.take().expect("finished once");
        let sink = writer.into_inner()?;
        let rows_digest =
            std::mem::replace(&mut self.rows_digest, RowsHasher::new(Table::Logs)).finish()?;
        sink.file.sync_all().map_err(io_err(&self.tmp_path))?;
        let bytes = sink.file.metadata().map_err(io_err(&self.tmp_path))?.len();
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(io_err(&self.final_path))?;
        // Renamed: nothing for drop to remove.
        self.tmp_path = PathBuf::new();
        sync_dir(&self.dir)?;
        Ok(CommittedFile {
            path: std::mem::take(&mut self.final_path),
            rows: self.rows,
            bytes,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            sha256: hex::encode(sink.hasher.finalize()),
            rows_digest,
        })
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        // Best effort: a temporary file is invisible to readers either way.
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
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

/// Columns written with page statistics (see [`properties`]); the others have none.
const STATISTICS: &[&str] = &[
    "timestamp",
    "observed_timestamp",
    "severity_number",
    "start_time",
    "end_time",
    "duration_ns",
];

/// The Parquet writer settings of a file of at most `rows` rows.
pub(super) fn properties(
    options: &WriterOptions,
    rows: usize,
) -> Result<WriterProperties, WriteError> {
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
        .set_column_bloom_filter_enabled("trace_id".into(), true)
        .set_column_bloom_filter_max_ndv(
            "trace_id".into(),
            rows.clamp(1, options.max_row_group_rows) as u64,
        );
    for column in STATISTICS {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Page);
    }
    Ok(props.build())
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

/// Makes the entries of `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The error of an i/o failure on `path`.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}
