//! The pipeline: converted record batches in, committed Parquet out, and the acknowledgement
//! that lets a receiver answer its client.
//!
//! Receivers call [`Pipeline::submit`] with the batches of one request and wait. One writer task
//! gathers submissions for up to `flush_interval` (or `max_batch_records` records), commits them
//! as one file per tenant, table and day on a blocking thread, and only then acknowledges each
//! submission: a client is answered after its records are in a committed file. The queue in
//! front of the writer is bounded; when it is full a submission is refused at once
//! ([`PipelineError::Overloaded`]) instead of growing memory.
//!
//! Known limit of this first version (replaced by the write-ahead log): a request whose rows span
//! several files can be half committed when a later file fails; its client then retries and the
//! committed half is stored twice.

pub mod any_value;
pub mod convert;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use audit_store::layout::Layout;
use audit_store::writer::{WriteError, WriterOptions, write_batches};
use audit_store::{Table, TenantId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use convert::TenantBatch;

use crate::telemetry::Catalog;

/// Why a submission was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    #[error("the writer queue is full; retry later")]
    Overloaded,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("committing to the audit store failed; retry later")]
    Store,
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub flush_interval: Duration,
    pub max_batch_records: usize,
    pub queue_capacity: usize,
    pub writer: WriterOptions,
}

/// The handle receivers submit through. Cheap to clone; the writer stops once every clone is
/// dropped and the queue is drained.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Submission>,
}

struct Submission {
    batches: Vec<TenantBatch>,
    ack: oneshot::Sender<Result<(), PipelineError>>,
}

impl Pipeline {
    /// Starts the writer task.
    pub fn spawn(
        layout: Layout,
        options: PipelineOptions,
        catalog: Catalog,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let writer = Writer {
            layout,
            options,
            catalog,
        };
        let task = tokio::spawn(writer.run(rx));
        (Self { tx }, task)
    }

    /// Submits the batches of one request and waits until they are committed.
    pub async fn submit(&self, batches: Vec<TenantBatch>) -> Result<(), PipelineError> {
        if batches.iter().all(|b| b.batch.num_rows() == 0) {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .try_send(Submission { batches, ack })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PipelineError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => PipelineError::ShuttingDown,
            })?;
        done.await.unwrap_or(Err(PipelineError::ShuttingDown))
    }
}

struct Writer {
    layout: Layout,
    options: PipelineOptions,
    catalog: Catalog,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Submission>) {
        while let Some(first) = rx.recv().await {
            let deadline = Instant::now() + self.options.flush_interval;
            let mut records = rows(&first);
            let mut pending = vec![first];
            while records < self.options.max_batch_records {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(s)) => {
                        records += rows(&s);
                        pending.push(s);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.commit(pending).await;
        }
        tracing::debug!("pipeline writer drained and stopped");
    }

    /// Commits every submission of one flush, then acknowledges each.
    async fn commit(&self, pending: Vec<Submission>) {
        let mut groups: BTreeMap<(TenantId, Table), (Vec<RecordBatch>, Vec<usize>)> =
            BTreeMap::new();
        let mut acks = Vec::with_capacity(pending.len());
        for (i, submission) in pending.into_iter().enumerate() {
            for b in submission.batches {
                let group = groups.entry((b.tenant, b.table)).or_default();
                group.0.push(b.batch);
                group.1.push(i);
            }
            acks.push(Some(submission.ack));
        }
        let layout = self.layout.clone();
        let options = self.options.writer.clone();
        let catalog = self.catalog.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for ((tenant, table), (batches, owners)) in groups {
                if let Err(error) = commit_group(&layout, &tenant, table, &batches, &options, &catalog) {
                    tracing::error!(tenant = %tenant, table = table.name(), error = %error, "audit commit failed");
                    catalog.commit_failures().increment(1);
                    failed.extend(owners);
                }
            }
            failed
        })
        .await;
        let failed = match written {
            Ok(failed) => failed,
            Err(join_error) => {
                tracing::error!(error = %join_error, "audit writer thread failed");
                (0..acks.len()).collect()
            }
        };
        for i in failed {
            if let Some(ack) = acks[i].take() {
                let _ = ack.send(Err(PipelineError::Store));
            }
        }
        for ack in acks.into_iter().flatten() {
            // The receiver may have gone (client disconnected); its records are committed anyway.
            let _ = ack.send(Ok(()));
        }
    }
}

fn commit_group(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    batches: &[RecordBatch],
    options: &WriterOptions,
    catalog: &Catalog,
) -> Result<(), WriteError> {
    for file in write_batches(layout, tenant, table, batches, options)? {
        let counters = catalog.store(table);
        counters.files.increment(1);
        counters.rows.increment(file.rows as u64);
        counters.bytes.increment(file.bytes);
        tracing::debug!(tenant = %tenant, table = table.name(), rows = file.rows, bytes = file.bytes, path = %file.path.display(), "committed file");
    }
    Ok(())
}

fn rows(s: &Submission) -> usize {
    s.batches.iter().map(|b| b.batch.num_rows()).sum()
}
