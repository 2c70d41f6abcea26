//! The pre-built handles the contexts count with, one struct per subsystem, each registered from
//! the families of [`super::families`] over every value of its closed labels.

use std::collections::HashMap;

use audit_store::Table;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::families::{CHECKPOINT_RESULTS, REJECT_REASONS, names};
use crate::otlp::{Signal, Transport};

/// Registers series with a recorder.
pub(super) struct Registry<'r>(pub &'r PrometheusRecorder);

impl Registry<'_> {
    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.0
            .register_counter(&Key::from_parts(name, labels), &metadata())
    }

    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.0
            .register_histogram(&Key::from_parts(name, labels), &metadata())
    }

    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.0
            .register_gauge(&Key::from_parts(name, labels), &metadata())
    }

    /// One counter per value of its `result` label.
    pub fn by_result(
        &self,
        name: &'static str,
        results: &[&'static str],
    ) -> HashMap<&'static str, Counter> {
        results
            .iter()
            .map(|&r| (r, self.counter(name, vec![Label::new("result", r)])))
            .collect()
    }
}

pub(super) fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

/// Write-ahead log metrics.
#[derive(Clone)]
pub struct WalCounters {
    pub bytes: Counter,
    pub segments_opened: Counter,
    pub segments_deleted: Counter,
    pub records: Counter,
    pub groups: Counter,
    pub append_failures: Counter,
    pub append_seconds: Histogram,
    pub replayed: Counter,
    pub torn_tails: Counter,
    pub corrupt_segments: Counter,
}

impl WalCounters {
    pub(super) fn register(r: &Registry<'_>) -> Self {
        Self {
            bytes: r.counter(names::WAL_BYTES, vec![]),
            segments_opened: r.counter(names::WAL_SEGMENTS_OPENED, vec![]),
            segments_deleted: r.counter(names::WAL_SEGMENTS_DELETED, vec![]),
            records: r.counter(names::WAL_RECORDS, vec![]),
            groups: r.counter(names::WAL_GROUPS, vec![]),
            append_failures: r.counter(names::WAL_APPEND_FAILURES, vec![]),
            append_seconds: r.histogram(names::WAL_APPEND_SECONDS, vec![]),
            replayed: r.counter(names::WAL_REPLAYED, vec![]),
            torn_tails: r.counter(names::WAL_TORN_TAILS, vec![]),
            corrupt_segments: r.counter(names::WAL_CORRUPT, vec![]),
        }
    }
}

/// Counters of one (transport, signal) pair.
#[derive(Clone)]
pub struct IngestCounters {
    pub requests: Counter,
    pub request_seconds: Histogram,
    pub records_received: Counter,
    records_rejected: HashMap<&'static str, Counter>,
    requests_rejected: HashMap<&'static str, Counter>,
    /// Requests refused whole and records refused alone, together: where a limit bites.
    rejected: HashMap<&'static str, Counter>,
}

impl IngestCounters {
    /// The counters of every (transport, signal) pair.
    pub(super) fn register_all(r: &Registry<'_>) -> HashMap<(Transport, Signal), Self> {
        let mut all = HashMap::new();
        for transport in Transport::ALL {
            for signal in Signal::ALL {
                let base = vec![
                    Label::new("transport", transport.label()),
                    Label::new("signal", signal.label()),
                ];
                let by_reason = |name| {
                    REJECT_REASONS
                        .iter()
                        .map(|&reason| {
                            let mut labels = base.clone();
                            labels.push(Label::new("reason", reason));
                            (reason, r.counter(name, labels))
                        })
                        .collect()
                };
                let counters = IngestCounters {
                    requests: r.counter(names::REQUESTS, base.clone()),
                    request_seconds: r.histogram(names::REQUEST_SECONDS, base.clone()),
                    records_received: r.counter(names::RECORDS_RECEIVED, base.clone()),
                    records_rejected: by_reason(names::RECORDS_REJECTED),
                    requests_rejected: by_reason(names::REQUESTS_REJECTED),
                    rejected: by_reason(names::REJECTED),
                };
                all.insert((transport, signal), counters);
            }
        }
        all
    }

    /// Counts a refused request and the records it carried (0 when they could not be decoded).
    pub fn rejected(&self, reason: &'static str, records: u64) {
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
        if let Some(c) = self.requests_rejected.get(reason) {
            c.increment(1);
        }
        if let Some(c) = self.rejected.get(reason) {
            c.increment(1);
        }
        if let (Some(c), true) = (self.records_rejected.get(reason), records > 0) {
            c.increment(records);
        }
    }

    /// Counts records refused one by one inside an accepted request.
    pub fn refused(&self, reason: &'static str, records: u64) {
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
        if records == 0 {
            return;
        }
        for family in [&self.records_rejected, &self.rejected] {
            if let Some(c) = family.get(reason) {
                c.increment(records);
            }
        }
    }
}

/// Counters of one table's commits.
#[derive(Clone)]
pub struct StoreCounters {
    pub files: Counter,
    pub rows: Counter,
    pub bytes: Counter,
    pub commit_seconds: Histogram,
}

impl StoreCounters {
    /// The counters of every table.
    pub(super) fn register_all(r: &Registry<'_>) -> HashMap<Table, Self> {
        Table::ALL
            .into_iter()
            .map(|table| {
                let labels = || vec![Label::new("table", table.name())];
                let counters = StoreCounters {
                    files: r.counter(names::FILES_COMMITTED, labels()),
                    rows: r.counter(names::ROWS_COMMITTED, labels()),
                    bytes: r.counter(names::BYTES_COMMITTED, labels()),
                    commit_seconds: r.histogram(names::COMMIT_SECONDS, labels()),
                };
                (table, counters)
            })
            .collect()
    }
}

/// The write-ahead log queue and the wait for a durable acknowledgement.
#[derive(Clone)]
pub struct PipelineCounters {
    /// Requests queued for the write-ahead log; `in - out` is the queue depth.
    pub queue_in: Counter,
    pub queue_out: Counter,
    pub ack_seconds: Histogram,
}

impl PipelineCounters {
    pub(super) fn register(r: &Registry<'_>) -> Self {
        Self {
            queue_in: r.counter(names::QUEUE_IN, vec![]),
            queue_out: r.counter(names::QUEUE_OUT, vec![]),
            ack_seconds: r.histogram(names::ACK_SECONDS, vec![]),
        }
    }
}

/// The audit log's counters.
pub struct AuditCounters {
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
    pub quarantined: Counter,
    pub retention_deleted: Counter,
}

impl AuditCounters {
    pub(super) fn register(r: &Registry<'_>) -> Self {
        let [ok, failure] = CHECKPOINT_RESULTS;
        Self {
            checkpoints: r.counter(names::CHECKPOINTS, vec![Label::new("result", ok)]),
            checkpoint_failures: r.counter(names::CHECKPOINTS, vec![Label::new("result", failure)]),
            quarantined: r.counter(names::QUARANTINED, vec![]),
            retention_deleted: r.counter(names::RETENTION_DELETED, vec![]),
        }
    }
}
