//! The pipeline: write-ahead log records in (accepted log records as OTLP, spans as Arrow),
//! durable acknowledgements out, Parquet behind.
//!
//! ```text
//! submit ──► WAL thread: group of requests → one write + fdatasync ──► memtable ──► ack
//!                                                                        │
//!                       flusher (by rows, bytes or age; OTLP → Arrow) ──► Parquet + audit log entries ──► WAL segments deleted
//! ```
//!
//! A request is acknowledged once its records are fsync'd in the write-ahead log (and in the
//! memtable); Parquet files are written in the background, one per tenant, table and day, when a
//! buffer reaches `target_file_rows` / `target_file_bytes` or `max_file_age`. At start-up,
//! [`Pipeline::spawn`] recovers the audit logs (files no entry names are quarantined), then
//! replays the write-ahead log records no commit covers.
//! Every queue is bounded: a full log queue or a memtable over `max_buffered_bytes` refuses new
//! requests with [`PipelineError::Overloaded`] (503 / UNAVAILABLE) instead of growing.

pub mod accept;
pub mod convert;
mod flusher;
pub mod log_payload;
pub mod memtable;
mod wal_thread;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_store::log::AuditLogs;
use audit_store::wal::payload::{self, encode_batch};
use audit_store::wal::{WalWriter, replay};
use audit_store::writer::WriterOptions;
use audit_store::{Table, TenantId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use convert::TenantBatch;
use memtable::{FlushPolicy, Memtable};

use crate::telemetry::Catalog;

/// Why a submission was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    #[error("the write-ahead log queue or the memtable is full; retry later")]
    Overloaded,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("writing the write-ahead log failed; retry later")]
    Store,
    /// The tenant's audit log was found damaged at start and set aside: nothing can be committed
    /// for it until an operator repairs it (`tenantscope verify` names the damage).
    #[error(
        "the audit log of tenant {0} was found damaged and is set aside until an operator repairs it; nothing is stored for this tenant until then (retry later)"
    )]
    LogSetAside(TenantId),
}

/// One write-ahead log record: rows of one tenant and table, as the log keeps them (an Arrow IPC
/// batch, or OTLP log records — see [`log_payload`]).
#[derive(Debug)]
pub struct Record {
    pub tenant: TenantId,
    pub table: Table,
    pub rows: usize,
    pub payload: Vec<u8>,
}

impl Record {
    /// A record batch as Arrow IPC.
    pub fn from_batch(batch: TenantBatch) -> Result<Self, PipelineError> {
        let mut payload = Vec::new();
        encode_batch(&batch.batch, &mut payload).map_err(|e| {
            tracing::error!(error = %e, "cannot serialise a record batch for the write-ahead log");
            PipelineError::Store
        })?;
        Ok(Self {
            tenant: batch.tenant,
            table: batch.table,
            rows: batch.batch.num_rows(),
            payload,
        })
    }
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub wal_dir: PathBuf,
    pub wal_segment_bytes: u64,
    /// Requests that may wait for the write-ahead log.
    pub queue_capacity: usize,
    /// Memtable size beyond which new requests are refused.
    pub max_buffered_bytes: usize,
    pub flush: FlushPolicy,
    pub writer: WriterOptions,
    /// Commits of this tenant make no span (the daemon's own spans, when it stores them).
    pub untraced_tenant: Option<TenantId>,
}

/// The handle receivers submit through. Cheap to clone; the pipeline drains and stops once every
/// clone is dropped.
#[derive(Clone)]
pub struct Pipeline {
    /// To refuse the tenants whose audit log was set aside at start.
    logs: Arc<AuditLogs>,
    tx: mpsc::Sender<wal_thread::Request>,
    memtable: Arc<Memtable>,
    max_buffered_bytes: usize,
    catalog: Catalog,
}

/// Control of the running pipeline, kept by the composition root.
pub struct PipelineTask {
    flush: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl PipelineTask {
    /// Commits everything acknowledged so far to Parquet, now.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.flush.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits for the pipeline to stop: after every [`Pipeline`] handle is dropped, the log thread
    /// answers what it has, the flusher commits everything and the log is emptied.
    pub async fn join(self) -> Result<(), tokio::task::JoinError> {
        drop(self.flush);
        self.task.await
    }
}

impl Pipeline {
    /// Recovers the store (orphans, log replay) and starts the log thread and the flusher.
    pub fn spawn(
        logs: Arc<AuditLogs>,
        options: PipelineOptions,
        catalog: Catalog,
    ) -> anyhow::Result<(Self, PipelineTask)> {
        let layout = logs.layout().clone();
        let recovered = logs.recover()?;
        for (tenant, reason) in &recovered.set_aside {
            tracing::error!(tenant = %tenant, reason = %reason, "audit log set aside: this tenant's requests are refused (503) until it is repaired");
        }
        catalog
            .audit()
            .quarantined
            .increment(recovered.quarantined as u64);
        if recovered.quarantined + recovered.temporaries_removed + recovered.deletions_finished > 0
        {
            tracing::warn!(
                quarantined = recovered.quarantined,
                temporaries = recovered.temporaries_removed,
                deletions_finished = recovered.deletions_finished,
                "settled the files of interrupted commits"
            );
        }
        let memtable = Arc::new(Memtable::default());
        let next_lsn = replay_into(&logs, &options, &memtable, &catalog)?;
        let wal = Arc::new(Mutex::new(WalWriter::new(
            &options.wal_dir,
            next_lsn,
            options.wal_segment_bytes,
        )?));
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let wal_task = wal_thread::spawn(wal.clone(), rx, memtable.clone(), catalog.clone());
        let (flush_tx, flush_rx) = mpsc::channel(16);
        let flusher = flusher::Flusher {
            layout,
            options: options.clone(),
            memtable: memtable.clone(),
            wal,
            catalog: catalog.clone(),
            logs: logs.clone(),
        };
        let task = tokio::spawn(flusher.run(flush_rx, wal_task));
        let pipeline = Self {
            logs,
            tx,
            memtable,
            max_buffered_bytes: options.max_buffered_bytes,
            catalog,
        };
        Ok((
            pipeline,
            PipelineTask {
                flush: flush_tx,
                task,
            },
        ))
    }

    /// Whether the log's backlog is over `storage.max_buffered_bytes`: requests are refused
    /// (503, retryable) until commits catch up. Receivers ask before decoding, so shedding load
    /// costs little.
    pub fn overloaded(&self) -> bool {
        self.memtable.bytes() >= self.max_buffered_bytes
    }

    /// Makes the records of one request durable; returns once they are fsync'd in the log.
    pub async fn submit(&self, records: Vec<Record>) -> Result<(), PipelineError> {
        let items: Vec<Record> = records.into_iter().filter(|r| r.rows > 0).collect();
        if items.is_empty() {
            return Ok(());
        }
        if let Some(r) = items
            .iter()
            .find(|r| self.logs.set_aside(&r.tenant).is_some())
        {
            return Err(PipelineError::LogSetAside(r.tenant.clone()));
        }
        if self.overloaded() {
            return Err(PipelineError::Overloaded);
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .try_send(wal_thread::Request { items, ack })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PipelineError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => PipelineError::ShuttingDown,
            })?;
        let counters = self.catalog.pipeline();
        counters.queue_in.increment(1);
        let waiting = std::time::Instant::now();
        let result = done.await.unwrap_or(Err(PipelineError::ShuttingDown));
        counters.ack_seconds.record(waiting.elapsed().as_secs_f64());
        result
    }
}

/// Puts every log record that no commit covers back into the memtable; returns the next LSN.
fn replay_into(
    logs: &AuditLogs,
    options: &PipelineOptions,
    memtable: &Memtable,
    catalog: &Catalog,
) -> anyhow::Result<u64> {
    let mut committed: std::collections::HashMap<(TenantId, Table), Option<u64>> =
        Default::default();
    let mut records = Vec::new();
    let mut skipped = 0u64;
    let mut undecodable = 0u64;
    let report = replay(&options.wal_dir, |record| {
        // Decoded once here to count its rows and to find an undecodable record now rather than
        // at its commit; the memtable keeps only where it is.
        let key = (record.tenant.clone(), record.table);
        let done = *committed.entry(key).or_insert_with(|| {
            logs.get(&record.tenant).ok().and_then(|log| {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .committed_lsn(record.table)
            })
        });
        if done.is_some_and(|lsn| record.lsn <= lsn) {
            skipped += 1;
            return;
        }
        match payload::rows(record.table, &record.payload) {
            Ok(rows) => {
                let pending = memtable::Pending {
                    lsn: record.lsn,
                    location: record.location,
                    rows,
                };
                records.push((record.tenant, record.table, pending));
            }
            Err(error) => {
                undecodable += 1;
                tracing::error!(lsn = record.lsn, tenant = %record.tenant, error = %error, "cannot decode a write-ahead log record");
            }
        }
    })?;
    let replayed = records.len() as u64;
    memtable.insert(records);
    let wal = catalog.wal();
    wal.replayed.increment(replayed);
    wal.torn_tails.increment(report.torn_tails as u64);
    wal.corrupt_segments
        .increment(report.corrupt_segments.len() as u64 + undecodable);
    if report.records > 0 || report.torn_tails > 0 || !report.corrupt_segments.is_empty() {
        // A torn tail's whole last request is dropped: it was never acknowledged.
        tracing::info!(
            segments = report.segments,
            records = report.records,
            replayed,
            already_committed = skipped,
            torn_tails = report.torn_tails,
            incomplete_request_records = report.incomplete_request_records,
            corrupt_segments = report.corrupt_segments.len(),
            "replayed the write-ahead log"
        );
    }
    Ok(report.next_lsn)
}

/// A default check period for the flusher: often enough for `max_age`, at most once a second.
pub fn check_interval(max_age: Duration) -> Duration {
    (max_age / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
}
