//! The ceiling on what requests in flight hold (`ingest.max_memory`): every byte of a request
//! body as it arrives, and every byte decompression makes of it, is charged to one budget shared
//! by both receivers and released when the request is answered. A request whose next bytes do not
//! fit is refused 503 / UNAVAILABLE with `Retry-After` (retryable): the daemon slows its clients
//! down instead of growing until the kernel kills it.
//!
//! Charged as bytes arrive, not from `Content-Length`, so a client announcing a large body and
//! sending it slowly holds only what it sent (and `listen.body_read_timeout` ends it). What else
//! grows with input is bounded per request or elsewhere: decoded structures by
//! `ingest.max_decompressed_body_size` and `max_expanded_request_size`, the write-ahead log queue
//! by `storage.queue_capacity` (its requests stay charged while they wait), derived metrics by the
//! family and series budgets, query results by `query.memory_limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::IngestError;

/// The budget: bytes charged, and the most that may be.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicU64,
    limit: u64,
}

/// Bytes charged to a [`MemoryBudget`], released when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// Bytes charged now, by every request in flight.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty charge, to grow as bytes arrive.
    pub fn start(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> Result<(), IngestError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.limit {
                return Err(IngestError::OutOfMemory { limit: self.limit });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }
}

impl Charge {
    /// Charges `bytes` more, or refuses them (the charge keeps what it had).
    pub fn grow(&mut self, bytes: u64) -> Result<(), IngestError> {
        self.budget.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_released() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.start();
        a.grow(60).unwrap();
        let mut b = budget.start();
        assert!(matches!(
            b.grow(50),
            Err(IngestError::OutOfMemory { limit: 100 })
        ));
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow(60).unwrap();
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
