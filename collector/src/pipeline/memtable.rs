//! The memtable: records that are durable in the write-ahead log but not yet in Parquet, grouped
//! by (tenant, table) in LSN order.
//!
//! The write-ahead log thread inserts a whole group of records under one lock, right after their
//! fsync and before their acknowledgement; the flusher takes whole buffers. So a buffer taken for
//! (tenant, table) with last LSN `n` holds every uncommitted record of that pair up to `n` — the
//! coverage rule the manifest relies on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use audit_store::{Table, TenantId};

/// Uncommitted records of one tenant and table.
#[derive(Debug)]
pub struct Buffer {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub bytes: usize,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub since: Instant,
}

/// When a buffer is due for a Parquet file.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub target_rows: usize,
    pub target_bytes: usize,
    pub max_age: Duration,
    /// Memory pressure: while all buffers together hold more than this, the largest are due too
    /// (so that ingest slows down by writing earlier, smaller files before it refuses requests).
    pub high_water_bytes: usize,
}

#[derive(Default)]
pub struct Memtable {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    buffers: HashMap<(TenantId, Table), Buffer>,
    bytes: usize,
}

impl Memtable {
    /// Adds records; `records` must come in increasing LSN order.
    pub fn insert(&self, records: impl IntoIterator<Item = (TenantId, Table, u64, RecordBatch)>) {
        let mut inner = self.lock();
        let now = Instant::now();
        for (tenant, table, lsn, batch) in records {
            let bytes = batch.get_array_memory_size();
            inner.bytes += bytes;
            let buffer = inner
                .buffers
                .entry((tenant, table))
                .or_insert_with(|| Buffer {
                    batches: Vec::new(),
                    rows: 0,
                    bytes: 0,
                    first_lsn: lsn,
                    last_lsn: lsn,
                    since: now,
                });
            debug_assert!(buffer.batches.is_empty() || lsn > buffer.last_lsn);
            buffer.rows += batch.num_rows();
            buffer.bytes += bytes;
            buffer.last_lsn = lsn;
            buffer.batches.push(batch);
        }
    }

    /// Removes and returns the buffers that are due (all of them when `all`).
    pub fn take_due(&self, policy: &FlushPolicy, all: bool) -> Vec<(TenantId, Table, Buffer)> {
        let mut inner = self.lock();
        let now = Instant::now();
        let due: Vec<(TenantId, Table)> = inner
            .buffers
            .iter()
            .filter(|(_, b)| {
                all || b.rows >= policy.target_rows
                    || b.bytes >= policy.target_bytes
                    || now.duration_since(b.since) >= policy.max_age
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            if let Some(buffer) = inner.buffers.remove(&key) {
                inner.bytes -= buffer.bytes;
                out.push((key.0, key.1, buffer));
            }
        }
        if inner.bytes > policy.high_water_bytes {
            let mut by_size: Vec<((TenantId, Table), usize)> = inner
                .buffers
                .iter()
                .map(|(k, b)| (k.clone(), b.bytes))
                .collect();
            by_size.sort_by_key(|entry| std::cmp::Reverse(entry.1));
            for (key, _) in by_size {
                if inner.bytes <= policy.high_water_bytes / 2 {
                    break;
                }
                if let Some(buffer) = inner.buffers.remove(&key) {
                    inner.bytes -= buffer.bytes;
                    out.push((key.0, key.1, buffer));
                }
            }
        }
        out
    }

    /// Returns a buffer whose commit failed; it goes before anything inserted since.
    pub fn put_back(&self, tenant: TenantId, table: Table, mut failed: Buffer) {
        let mut inner = self.lock();
        inner.bytes += failed.bytes;
        if let Some(newer) = inner.buffers.remove(&(tenant.clone(), table)) {
            failed.batches.extend(newer.batches);
            failed.rows += newer.rows;
            failed.bytes += newer.bytes;
            failed.last_lsn = newer.last_lsn;
        }
        inner.buffers.insert((tenant, table), failed);
    }

    /// The lowest LSN still waiting for a commit.
    pub fn oldest_lsn(&self) -> Option<u64> {
        self.lock().buffers.values().map(|b| b.first_lsn).min()
    }

    /// Memory held, in bytes of Arrow buffers.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than stopping ingest: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![0; rows]))]).unwrap()
    }

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    fn policy(high_water_bytes: usize) -> FlushPolicy {
        FlushPolicy {
            target_rows: 1_000_000,
            target_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
            high_water_bytes,
        }
    }

    #[test]
    fn due_by_rows_and_in_lsn_order() {
        let m = Memtable::default();
        m.insert([
            (tenant("a"), Table::Logs, 1, batch(10)),
            (tenant("b"), Table::Logs, 2, batch(5)),
        ]);
        m.insert([(tenant("a"), Table::Logs, 3, batch(10))]);
        let p = FlushPolicy {
            target_rows: 20,
            ..policy(usize::MAX)
        };
        let due = m.take_due(&p, false);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (
                due[0].0.as_str(),
                due[0].2.rows,
                due[0].2.first_lsn,
                due[0].2.last_lsn
            ),
            ("a", 20, 1, 3)
        );
        assert_eq!(m.oldest_lsn(), Some(2));
    }

    #[test]
    fn memory_pressure_takes_the_largest_buffers_first() {
        let m = Memtable::default();
        m.insert([
            (tenant("small"), Table::Logs, 1, batch(100)),
            (tenant("big"), Table::Logs, 2, batch(100_000)),
            (tenant("mid"), Table::Logs, 3, batch(10_000)),
        ]);
        let total = m.bytes();
        let due = m.take_due(&policy(total - 1), false);
        let names: Vec<&str> = due.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(
            names,
            ["big"],
            "the biggest alone brings memory under half the high water"
        );
        assert!(m.bytes() <= (total - 1) / 2);
        assert!(
            m.take_due(&policy(total), false).is_empty(),
            "no pressure, nothing due"
        );
    }

    #[test]
    fn a_failed_buffer_goes_back_before_newer_records() {
        let m = Memtable::default();
        m.insert([(tenant("a"), Table::Logs, 1, batch(1))]);
        let mut due = m.take_due(&policy(usize::MAX), true);
        m.insert([(tenant("a"), Table::Logs, 2, batch(2))]);
        let (t, table, failed) = due.pop().unwrap();
        m.put_back(t, table, failed);
        let again = m.take_due(&policy(usize::MAX), true);
        let b = &again[0].2;
        assert_eq!(
            (b.rows, b.first_lsn, b.last_lsn, b.batches[0].num_rows()),
            (3, 1, 2, 1)
        );
    }
}
