//! The write-ahead log thread: group commit.
//!
//! One OS thread owns the appends. It takes every request waiting in its queue, writes all their
//! records with one `write` and one `fdatasync`, inserts where they are into the memtable (still
//! holding the log lock, so the flusher never sees a logged record missing from the memtable) and
//! answers each request. While one fsync runs, new requests queue up and share the next one; when
//! the previous group was shared, the next waits up to [`LINGER`] for as many requests as it had.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_store::wal::{Durability, Entry, WalWriter};
use tokio::sync::{mpsc, oneshot};

use super::memtable::{Memtable, Pending};
use super::{PipelineError, Record};
use crate::telemetry::Catalog;

/// Largest group written with one fsync, in payload bytes.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// How long a group waits for more requests when the previous group had several (concurrent
/// clients): a fraction of an fsync (1–4 ms here), so waiting costs acks little and saves syncs.
const LINGER: Duration = Duration::from_micros(300);
const LINGER_STEP: Duration = Duration::from_micros(50);

pub struct Request {
    pub items: Vec<Record>,
    pub ack: oneshot::Sender<Result<(), PipelineError>>,
}

/// Starts the thread; the returned task completes when every sender is gone and the queue is
/// answered.
pub fn spawn(
    wal: Arc<Mutex<WalWriter>>,
    mut rx: mpsc::Receiver<Request>,
    memtable: Arc<Memtable>,
    catalog: Catalog,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let mut previous = 0;
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = size(&first);
            let mut group = vec![first];
            // Clients answered by the last group are likely sending again right now: when that
            // group shared its fsync, wait a moment for them (until as many requests as it had
            // are here) rather than syncing for one.
            let concurrent = previous > 1;
            let deadline = Instant::now() + if concurrent { LINGER } else { Duration::ZERO };
            loop {
                while bytes < MAX_GROUP_BYTES {
                    match rx.try_recv() {
                        Ok(request) => {
                            bytes += size(&request);
                            group.push(request);
                        }
                        Err(_) => break,
                    }
                }
                if bytes >= MAX_GROUP_BYTES || group.len() >= previous || Instant::now() >= deadline
                {
                    break;
                }
                std::thread::sleep(LINGER_STEP);
            }
            previous = group.len();
            commit_group(&wal, group, &memtable, &catalog);
        }
        tracing::debug!("write-ahead log thread stopped");
    })
}

fn size(request: &Request) -> usize {
    request.items.iter().map(|i| i.payload.len()).sum()
}

fn commit_group(
    wal: &Mutex<WalWriter>,
    group: Vec<Request>,
    memtable: &Memtable,
    catalog: &Catalog,
) {
    // A request's records go together, the last one flagged: replay keeps all or none of them.
    let entries: Vec<Entry<'_>> = group
        .iter()
        .flat_map(|r| {
            let last = r.items.len().saturating_sub(1);
            r.items.iter().enumerate().map(move |(i, item)| Entry {
                tenant: &item.tenant,
                table: item.table,
                durability: Durability::Sync,
                ends_request: i == last,
                payload: &item.payload,
            })
        })
        .collect();
    let count = entries.len() as u64;
    let bytes: u64 = entries.iter().map(|e| e.payload.len() as u64).sum();
    catalog.pipeline().queue_out.increment(group.len() as u64);
    let started = Instant::now();
    let mut wal = wal.lock().unwrap_or_else(|e| e.into_inner());
    let result = wal.append(&entries);
    drop(entries);
    let metrics = catalog.wal();
    match result {
        Ok(appended) => {
            metrics.records.increment(count);
            metrics.bytes.increment(bytes);
            metrics.segments_opened.absolute(wal.segments_opened());
            metrics.groups.increment(1);
            metrics
                .append_seconds
                .record(started.elapsed().as_secs_f64());
            let mut acks = Vec::with_capacity(group.len());
            let mut lsn = appended.first_lsn;
            let mut locations = appended.locations.into_iter();
            let mut records = Vec::with_capacity(count as usize);
            for request in group {
                for item in request.items {
                    let Some(location) = locations.next() else {
                        unreachable!("the log returns one location per entry")
                    };
                    let pending = Pending {
                        lsn,
                        location,
                        rows: item.rows,
                    };
                    records.push((item.tenant, item.table, pending));
                    lsn += 1;
                }
                acks.push(request.ack);
            }
            memtable.insert(records);
            drop(wal);
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
        }
        Err(error) => {
            drop(wal);
            metrics.append_failures.increment(1);
            tracing::error!(error = %error, records = count, disk_full = error.is_disk_full(), "write-ahead log append failed; refusing the requests");
            for request in group {
                let _ = request.ack.send(Err(PipelineError::Store));
            }
        }
    }
}
