//! The memtable: an index of the records that are durable in the write-ahead log but not yet in
//! Parquet, grouped by (tenant, table) in LSN order.
//!
//! It holds where each record is in the log (a [`Location`]), its row count and size — not the
//! records: the flusher reads them back from the log when it writes their Parquet file, so the
//! daemon's memory does not grow with what waits for Parquet (the log's pages are the operating
//! system's cache, not the daemon's heap).
//!
//! The write-ahead log thread inserts a whole group of records under one lock, right after their
//! fsync and before their acknowledgement; the flusher takes whole buffers. So a buffer taken for
//! (tenant, table) with last LSN `n` holds every uncommitted record of that pair up to `n` — the
//! coverage rule the manifest relies on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use audit_store::wal::Location;
use audit_store::{Table, TenantId};

/// One uncommitted record: where it is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub lsn: u64,
    pub location: Location,
    pub rows: usize,
}

/// Uncommitted records of one tenant and table.
#[derive(Debug)]
pub struct Buffer {
    pub records: Vec<Pending>,
    pub rows: usize,
    /// Bytes of the records in the log (OTLP log records take about 1.7× as much once converted;
    /// Arrow IPC spans about as much).
    pub bytes: usize,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub since: Instant,
}

impl Buffer {
    /// Splits the buffer into consecutive pieces of at most `max_bytes` each (a single record
    /// larger than that is a piece of its own), in LSN order: committed one after the other, each
    /// piece covers every record of the pair up to its last LSN, as the coverage rule wants.
    pub fn split(self, max_bytes: usize) -> Vec<Buffer> {
        if self.bytes <= max_bytes {
            return vec![self];
        }
        let mut pieces: Vec<Buffer> = Vec::new();
        for record in self.records {
            let bytes = record.location.len as usize;
            match pieces.last_mut() {
                Some(piece) if piece.bytes + bytes <= max_bytes => {
                    piece.rows += record.rows;
                    piece.bytes += bytes;
                    piece.last_lsn = record.lsn;
                    piece.records.push(record);
                }
                _ => pieces.push(Buffer {
                    rows: record.rows,
                    bytes,
                    first_lsn: record.lsn,
                    last_lsn: record.lsn,
                    since: self.since,
                    records: vec![record],
                }),
            }
        }
        pieces
    }

    /// Joins pieces that follow each other (the inverse of [`Buffer::split`]).
    pub fn join(pieces: Vec<Buffer>) -> Option<Buffer> {
        pieces.into_iter().reduce(|mut a, b| {
            a.rows += b.rows;
            a.bytes += b.bytes;
            a.last_lsn = b.last_lsn;
            a.records.extend(b.records);
            a
        })
    }
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
    pub fn insert(&self, records: impl IntoIterator<Item = (TenantId, Table, Pending)>) {
        let mut inner = self.lock();
        let now = Instant::now();
        for (tenant, table, record) in records {
            let bytes = record.location.len as usize;
            let lsn = record.lsn;
            inner.bytes += bytes;
            let buffer = inner
                .buffers
                .entry((tenant, table))
                .or_insert_with(|| Buffer {
                    records: Vec::new(),
                    rows: 0,
                    bytes: 0,
                    first_lsn: lsn,
                    last_lsn: lsn,
                    since: now,
                });
            debug_assert!(buffer.records.is_empty() || lsn > buffer.last_lsn);
            buffer.rows += record.rows;
            buffer.bytes += bytes;
            buffer.last_lsn = lsn;
            buffer.records.push(record);
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
            failed.records.extend(newer.records);
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

    /// Bytes of log records waiting for Parquet.
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
    use super::*;

    /// A record of `rows` rows, 4 bytes each in the log.
    fn pending(lsn: u64, rows: usize) -> Pending {
        Pending {
            lsn,
            location: Location {
                segment: 0,
                offset: lsn * 1000,
                len: 4 * rows as u32,
            },
            rows,
        }
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
            (tenant("a"), Table::Logs, pending(1, 10)),
            (tenant("b"), Table::Logs, pending(2, 5)),
        ]);
        m.insert([(tenant("a"), Table::Logs, pending(3, 10))]);
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
            (tenant("small"), Table::Logs, pending(1, 100)),
            (tenant("big"), Table::Logs, pending(2, 100_000)),
            (tenant("mid"), Table::Logs, pending(3, 10_000)),
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
    fn buffers_split_by_bytes_in_lsn_order_and_join_back() {
        let m = Memtable::default();
        m.insert((1..=10).map(|lsn| (tenant("a"), Table::Logs, pending(lsn, 10))));
        let buffer = m.take_due(&policy(usize::MAX), true).pop().unwrap().2;
        assert_eq!(buffer.bytes, 400);
        let pieces = buffer.split(120);
        let shape: Vec<(u64, u64, usize, usize)> = pieces
            .iter()
            .map(|p| (p.first_lsn, p.last_lsn, p.rows, p.bytes))
            .collect();
        assert_eq!(
            shape,
            [
                (1, 3, 30, 120),
                (4, 6, 30, 120),
                (7, 9, 30, 120),
                (10, 10, 10, 40)
            ]
        );
        let joined = Buffer::join(pieces.into_iter().skip(1).collect()).unwrap();
        assert_eq!(
            (
                joined.first_lsn,
                joined.last_lsn,
                joined.rows,
                joined.records.len()
            ),
            (4, 10, 70, 7)
        );
        // A record larger than the bound is a piece of its own.
        m.insert([(tenant("a"), Table::Logs, pending(11, 100))]);
        let big = m.take_due(&policy(usize::MAX), true).pop().unwrap().2;
        assert_eq!(big.split(10).len(), 1);
    }

    #[test]
    fn a_failed_buffer_goes_back_before_newer_records() {
        let m = Memtable::default();
        m.insert([(tenant("a"), Table::Logs, pending(1, 1))]);
        let mut due = m.take_due(&policy(usize::MAX), true);
        m.insert([(tenant("a"), Table::Logs, pending(2, 2))]);
        let (t, table, failed) = due.pop().unwrap();
        m.put_back(t, table, failed);
        let again = m.take_due(&policy(usize::MAX), true);
        let b = &again[0].2;
        assert_eq!(
            (b.rows, b.first_lsn, b.last_lsn, b.records[0].rows),
            (3, 1, 2, 1)
        );
    }
}
