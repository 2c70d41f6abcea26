//! The flusher: memtable buffers → records read back from the log → Parquet files + audit log
//! entries → log segments deleted.
//!
//! Runs as one task; each round of commits runs on a thread of its own at a lower CPU priority
//! (nice +10), so that encoding Parquet uses the CPU the acknowledgement path leaves idle instead
//! of delaying acknowledgements. A buffer whose commit fails (disk full, I/O error) goes back into
//! the memtable and is tried again on the next tick; its records stay in the write-ahead log
//! meanwhile. A record that cannot be read back (damaged since it was written) is reported,
//! counted as corrupt and left out of its file. Log segments are deleted only below the oldest LSN
//! still waiting.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use audit_store::layout::Layout;
use audit_store::log::AuditLogs;
use audit_store::wal::payload::{OTLP_LOGS, decode_batches};
use audit_store::wal::{WalReader, WalWriter, remove_segments};
use audit_store::writer::{
    CommittedFile, SortedWriter, WriteError, WriterOptions, commit_files, write_batches,
};
use audit_store::{Table, TenantId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::log_payload;
use super::memtable::{Buffer, Memtable};
use super::{PipelineOptions, check_interval};
use crate::telemetry::Catalog;

pub struct Flusher {
    pub layout: Layout,
    pub options: PipelineOptions,
    pub memtable: Arc<Memtable>,
    pub wal: Arc<Mutex<WalWriter>>,
    pub catalog: Catalog,
    pub logs: Arc<AuditLogs>,
}

impl Flusher {
    pub async fn run(
        self,
        mut commands: mpsc::Receiver<oneshot::Sender<()>>,
        mut wal_task: JoinHandle<()>,
    ) {
        let mut tick = tokio::time::interval(check_interval(self.options.flush.max_age));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(false).await,
                command = commands.recv(), if commands_open => match command {
                    Some(reply) => {
                        self.flush(true).await;
                        let _ = reply.send(());
                    }
                    None => commands_open = false,
                },
                _ = &mut wal_task => break,
            }
        }
        // The log thread is gone: nothing new can arrive. Commit everything, empty the log.
        self.wal.lock().unwrap_or_else(|e| e.into_inner()).close();
        self.flush(true).await;
        let left = self.memtable.oldest_lsn();
        match left {
            None => tracing::info!("all acknowledged records are committed to Parquet"),
            Some(lsn) => tracing::error!(
                oldest_lsn = lsn,
                "records remain uncommitted at shutdown; they will be replayed at the next start"
            ),
        }
    }

    /// Commits the due buffers (all of them when `all`), then deletes log segments no longer
    /// needed.
    async fn flush(&self, all: bool) {
        let due = self.memtable.take_due(&self.options.flush, all);
        if !due.is_empty() {
            let layout = self.layout.clone();
            let options = self.options.writer.clone();
            let logs = self.logs.clone();
            let catalog = self.catalog.clone();
            let untraced = self.options.untraced_tenant.clone();
            let wal_dir = self.options.wal_dir.clone();
            let target_bytes = self.options.flush.target_bytes;
            let failed = run_in_background(move || {
                let mut reader = WalReader::new(&wal_dir);
                let mut failed: Vec<(TenantId, Table, Vec<Buffer>)> = Vec::new();
                // A commit holds its records in memory while it writes: at most about
                // `target_bytes` of them, whatever a buffer grew to between two ticks.
                let pieces = due.into_iter().flat_map(|(tenant, table, buffer)| {
                    buffer
                        .split(target_bytes)
                        .into_iter()
                        .map(move |piece| (tenant.clone(), table, piece))
                });
                for (tenant, table, buffer) in pieces {
                    // Once a piece failed, the later pieces of its pair wait behind it.
                    if let Some(last) = failed.last_mut()
                        && let (t, tb, pieces) = last
                        && *t == tenant
                        && *tb == table
                    {
                        pieces.push(buffer);
                        continue;
                    }
                    let span = if untraced.as_ref() == Some(&tenant) {
                        tracing::Span::none()
                    } else {
                        tracing::info_span!(
                            "store.commit",
                            tenant = %tenant,
                            table = table.name(),
                            rows = buffer.rows
                        )
                    };
                    let committed = span.in_scope(|| {
                        commit_buffer(
                            &layout,
                            &logs,
                            &mut reader,
                            (&tenant, table),
                            &buffer,
                            &options,
                            &catalog,
                        )
                    });
                    if !committed {
                        failed.push((tenant, table, vec![buffer]));
                    }
                }
                release_free_memory();
                failed
            })
            .await;
            for (tenant, table, pieces) in failed {
                if let Some(buffer) = Buffer::join(pieces) {
                    self.memtable.put_back(tenant, table, buffer);
                }
            }
        }
        // Off the runtime: taking the log's lock can wait for an fsync, and unlinking segments
        // for their writeback.
        let wal = self.wal.clone();
        let memtable = self.memtable.clone();
        let catalog = self.catalog.clone();
        run_in_background(move || trim_log(&wal, &memtable, &catalog)).await;
    }
}

/// Deletes the log segments no buffer needs any more.
fn trim_log(wal: &Mutex<WalWriter>, memtable: &Memtable, catalog: &Catalog) {
    let (keep_from, done) = {
        let wal = wal.lock().unwrap_or_else(|e| e.into_inner());
        let keep_from = memtable.oldest_lsn().unwrap_or(wal.next_lsn());
        (keep_from, wal.segments_before(keep_from))
    };
    match done.and_then(|paths| remove_segments(&paths)) {
        Ok(0) => {}
        Ok(n) => {
            catalog.wal().segments_deleted.increment(n as u64);
            tracing::debug!(
                segments = n,
                keep_from,
                "deleted committed write-ahead log segments"
            )
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot delete committed write-ahead log segments")
        }
    }
}

/// Gives the pages the allocator holds free back to the OS, after a round of commits.
///
/// A commit frees tens of MiB (the records it read back, Arrow batches, Parquet buffers). glibc's
/// malloc keeps freed memory in the arena of the thread that allocated it, each round of commits
/// runs on a new thread that may be handed another arena, and the request threads use their own:
/// without this, what one round freed was never reused, and at 220,000 audit-v1 records/s peak
/// RSS was 153–160 MiB for a heap that never held more than 68 MiB at once; with it, 87–97 MiB
/// (and 41 MiB instead of 83 once idle again). The next round faults the pages in again: no
/// difference in records per CPU-second within the benchmark's noise (BENCHMARKS.md).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Nice value of the commit threads: under contention the scheduler gives them about a tenth of
/// the CPU the request threads get; when the CPU is idle they take all of it.
const COMMIT_NICE: i32 = 10;

/// Runs `work` on a new thread at [`COMMIT_NICE`] and waits for its result without blocking the
/// runtime. If the thread dies, the result is `Default` (nothing committed is reported failed;
/// the buffers stay in the log and are replayed at the next start).
async fn run_in_background<T: Send + Default + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("tenantscope-commit".into())
        .spawn(move || {
            if let Err(error) =
                rustix::process::setpriority_process(Some(rustix::thread::gettid()), COMMIT_NICE)
            {
                tracing::debug!(error = %error, "cannot lower the commit thread's priority");
            }
            let _ = tx.send(work());
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or_default(),
        Err(error) => {
            tracing::error!(error = %error, "cannot start a commit thread");
            T::default()
        }
    }
}

/// A buffer's records as read back from the log.
#[derive(Default)]
struct ReadBack {
    /// Arrow IPC payloads, decoded (spans).
    batches: Vec<RecordBatch>,
    /// OTLP log payloads, not yet converted.
    logged: Vec<log_payload::Logged>,
}

/// Reads a buffer's records back from the log. A record that cannot be read or decoded is
/// reported and left out: it was acknowledged, so this is data loss, and loud.
fn read_back(
    reader: &mut WalReader,
    (tenant, table): (&TenantId, Table),
    buffer: &Buffer,
    catalog: &Catalog,
) -> ReadBack {
    let mut back = ReadBack::default();
    for pending in &buffer.records {
        let record = match reader.read(pending.lsn, pending.location) {
            Ok(record) if record.tenant != *tenant || record.table != table => {
                let owner = format!("it belongs to {}/{}", record.tenant, record.table.name());
                lost(catalog, (tenant, table), pending.lsn, pending.rows, &owner);
                continue;
            }
            Ok(record) => record,
            Err(error) => {
                lost(
                    catalog,
                    (tenant, table),
                    pending.lsn,
                    pending.rows,
                    &error.to_string(),
                );
                continue;
            }
        };
        if record.payload.starts_with(&OTLP_LOGS) {
            match log_payload::Logged::parse(record.payload) {
                Ok(parsed) => back.logged.push(parsed),
                Err(error) => lost(catalog, (tenant, table), pending.lsn, pending.rows, &error),
            }
            continue;
        }
        match decode_batches(record.table, record.payload) {
            Ok(mut decoded) => back.batches.append(&mut decoded),
            Err(error) => lost(
                catalog,
                (tenant, table),
                pending.lsn,
                pending.rows,
                &error.to_string(),
            ),
        }
    }
    back
}

/// Reports acknowledged records that cannot be read back.
fn lost(
    catalog: &Catalog,
    (tenant, table): (&TenantId, Table),
    lsn: u64,
    rows: usize,
    error: &str,
) {
    tracing::error!(tenant = %tenant, table = table.name(), lsn, rows, error = %error, "an acknowledged record cannot be read back from the write-ahead log; it is left out of its Parquet file");
    catalog.wal().corrupt_segments.increment(1);
}

/// Writes a buffer's records as Parquet files (not yet committed).
///
/// Log records alone (the usual case) are converted in time order a batch at a time and streamed
/// into a [`SortedWriter`]: a commit holds the buffer's OTLP bytes and one batch, not all its rows
/// as Arrow (at 220k audit-v1 records/s that was 46 MiB of a 76 MiB heap peak). Otherwise —
/// spans, a log written by an older version, or converted rows that are somehow not in time order
/// — every row is converted first and [`write_batches`] sorts them.
fn write_buffer(
    layout: &Layout,
    (tenant, table): (&TenantId, Table),
    back: ReadBack,
    buffer: &Buffer,
    options: &WriterOptions,
    catalog: &Catalog,
) -> Result<Vec<CommittedFile>, WriteError> {
    let report = |converted: log_payload::Converted| {
        if converted.unreadable > 0 {
            let error = "some of its log records cannot be read";
            lost(
                catalog,
                (tenant, table),
                buffer.last_lsn,
                converted.unreadable,
                error,
            );
        }
    };
    if back.batches.is_empty() && !back.logged.is_empty() {
        let rows = back.logged.iter().map(log_payload::Logged::rows).sum();
        let mut writer = SortedWriter::new(layout, tenant, table, options).expecting_rows(rows);
        let streamed = log_payload::for_each_sorted_batch(tenant, table, &back.logged, |batch| {
            writer.write(&batch)
        });
        match streamed {
            Ok(converted) => {
                report(converted);
                return writer.finish();
            }
            Err(WriteError::OutOfOrder { .. }) => {
                drop(writer);
                tracing::warn!(tenant = %tenant, table = table.name(), "converted log records are not in time order; sorting the buffer in memory");
            }
            Err(error) => return Err(error),
        }
    }
    let ReadBack {
        mut batches,
        logged,
    } = back;
    if !logged.is_empty() {
        let (converted, outcome) = log_payload::to_sorted_batches(tenant, table, &logged);
        drop(logged);
        batches.extend(converted);
        report(outcome);
    }
    write_batches(layout, tenant, table, &batches, options)
}

/// Commits one buffer; false when it failed (the caller puts it back).
fn commit_buffer(
    layout: &Layout,
    logs: &AuditLogs,
    reader: &mut WalReader,
    (tenant, table): (&TenantId, Table),
    buffer: &Buffer,
    options: &WriterOptions,
    catalog: &Catalog,
) -> bool {
    let started = Instant::now();
    let log = match logs.get(tenant) {
        Ok(log) => log,
        Err(error) => {
            tracing::error!(tenant = %tenant, error = %error, "cannot open the audit log");
            catalog.commit_failures().increment(1);
            return false;
        }
    };
    let lsns = buffer.first_lsn..=buffer.last_lsn;
    let back = read_back(reader, (tenant, table), buffer, catalog);
    // The files first, the log locked only for their entries (the API reads it meanwhile).
    let committed =
        write_buffer(layout, (tenant, table), back, buffer, options, catalog).and_then(|files| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            commit_files(&mut log, table, &files, lsns)
        });
    match committed {
        Ok(committed) => {
            let counters = catalog.store(table);
            counters
                .commit_seconds
                .record(started.elapsed().as_secs_f64());
            for file in &committed {
                counters.files.increment(1);
                counters.rows.increment(file.rows);
                counters.bytes.increment(file.bytes);
            }
            tracing::debug!(tenant = %tenant, table = table.name(), rows = buffer.rows, files = committed.len(), seconds = started.elapsed().as_secs_f64(), "committed");
            true
        }
        Err(error) => {
            tracing::error!(tenant = %tenant, table = table.name(), error = %error, "audit commit failed; will retry");
            catalog.commit_failures().increment(1);
            false
        }
    }
}

#[cfg(test)]
mod tests;
