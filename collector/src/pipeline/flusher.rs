//! The flusher: memtable buffers → Parquet files + manifest lines → log segments deleted.
//!
//! Runs as one task; commits run on blocking threads. A buffer whose commit fails (disk full, I/O
//! error) goes back into the memtable and is tried again on the next tick; its records stay in the
//! write-ahead log meanwhile. Log segments are deleted only below the oldest LSN still waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use audit_store::layout::Layout;
use audit_store::manifest::Manifest;
use audit_store::wal::WalWriter;
use audit_store::writer::commit;
use audit_store::{Table, TenantId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::memtable::{Buffer, Memtable};
use super::{PipelineOptions, check_interval};
use crate::telemetry::Catalog;

pub struct Flusher {
    pub layout: Layout,
    pub options: PipelineOptions,
    pub memtable: Arc<Memtable>,
    pub wal: Arc<Mutex<WalWriter>>,
    pub catalog: Catalog,
    pub manifests: Arc<Mutex<HashMap<TenantId, Manifest>>>,
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
            let manifests = self.manifests.clone();
            let catalog = self.catalog.clone();
            let untraced = self.options.untraced_tenant.clone();
            let failed = tokio::task::spawn_blocking(move || {
                let mut failed = Vec::new();
                for (tenant, table, buffer) in due {
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
                            &layout, &manifests, &tenant, table, &buffer, &options, &catalog,
                        )
                    });
                    if !committed {
                        failed.push((tenant, table, buffer));
                    }
                }
                failed
            })
            .await
            .unwrap_or_default();
            for (tenant, table, buffer) in failed {
                self.memtable.put_back(tenant, table, buffer);
            }
        }
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        let keep_from = self.memtable.oldest_lsn().unwrap_or(wal.next_lsn());
        match wal.delete_before(keep_from) {
            Ok(0) => {}
            Ok(n) => {
                self.catalog.wal().segments_deleted.increment(n as u64);
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
}

/// Commits one buffer; false when it failed (the caller puts it back).
fn commit_buffer(
    layout: &Layout,
    manifests: &Mutex<HashMap<TenantId, Manifest>>,
    tenant: &TenantId,
    table: Table,
    buffer: &Buffer,
    options: &audit_store::writer::WriterOptions,
    catalog: &Catalog,
) -> bool {
    let started = Instant::now();
    let mut manifests = manifests.lock().unwrap_or_else(|e| e.into_inner());
    let manifest = match manifests.get_mut(tenant) {
        Some(m) => m,
        None => match Manifest::load(layout, tenant) {
            Ok(m) => manifests.entry(tenant.clone()).or_insert(m),
            Err(error) => {
                tracing::error!(tenant = %tenant, error = %error, "cannot load the manifest");
                catalog.commit_failures().increment(1);
                return false;
            }
        },
    };
    let lsns = buffer.first_lsn..=buffer.last_lsn;
    match commit(
        layout,
        manifest,
        tenant,
        table,
        &buffer.batches,
        lsns,
        options,
    ) {
        Ok(committed) => {
            let counters = catalog.store(table);
            counters
                .commit_seconds
                .record(started.elapsed().as_secs_f64());
            for file in &committed.files {
                counters.files.increment(1);
                counters.rows.increment(file.rows);
                counters.bytes.increment(file.bytes);
            }
            tracing::debug!(tenant = %tenant, table = table.name(), rows = buffer.rows, files = committed.files.len(), seconds = started.elapsed().as_secs_f64(), "committed");
            true
        }
        Err(error) => {
            tracing::error!(tenant = %tenant, table = table.name(), error = %error, "audit commit failed; will retry");
            catalog.commit_failures().increment(1);
            // A failed append may have left the cached manifest behind the file: reload next time.
            manifests.remove(tenant);
            false
        }
    }
}
