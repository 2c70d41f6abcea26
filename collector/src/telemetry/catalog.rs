//! The metric catalog: every metric the daemon exports, with its name, type, unit, help text and
//! labels, registered once. Contexts receive a [`Catalog`] and use its pre-built handles; no
//! metric name is spelled anywhere else.
//!
//! Names follow `tenantscope_<subsystem>_<name>_<unit>[_total]`. Label values are closed sets
//! (transport, signal, reason, table), so series are bounded. The catalog owns its own
//! Prometheus recorder instead of a process-global one, so that several daemons in one process
//! (the test suite) each have their own numbers.

use std::collections::HashMap;
use std::sync::Arc;

use audit_store::Table;
use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// How a request reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Grpc, Transport::Http];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// The OTLP signal of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Logs,
    Traces,
}

impl Signal {
    pub const ALL: [Signal; 2] = [Signal::Logs, Signal::Traces];

    pub fn label(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }
}

/// Why records or requests were refused: the metric label of an ingest error.
pub const REJECT_REASONS: [&str; 8] = [
    "malformed",
    "unsupported_media_type",
    "too_large",
    "missing_tenant",
    "invalid_tenant",
    "tenant_mismatch",
    "overloaded",
    "store_failed",
];

/// Every metric name, in one place.
pub mod names {
    pub const BUILD_INFO: &str = "tenantscope_build_info";
    pub const RECORDS_RECEIVED: &str = "tenantscope_ingest_records_received_total";
    pub const RECORDS_REJECTED: &str = "tenantscope_ingest_records_rejected_total";
    pub const REQUESTS_REJECTED: &str = "tenantscope_ingest_requests_rejected_total";
    pub const FILES_COMMITTED: &str = "tenantscope_store_files_committed_total";
    pub const ROWS_COMMITTED: &str = "tenantscope_store_rows_committed_total";
    pub const BYTES_COMMITTED: &str = "tenantscope_store_bytes_committed_total";
    pub const COMMIT_FAILURES: &str = "tenantscope_store_commit_failures_total";
}

/// Counters of one (transport, signal) pair.
#[derive(Clone)]
pub struct IngestCounters {
    pub records_received: Counter,
    records_rejected: HashMap<&'static str, Counter>,
    requests_rejected: HashMap<&'static str, Counter>,
}

impl IngestCounters {
    /// Counts a refused request and the records it carried (0 when they could not be decoded).
    pub fn rejected(&self, reason: &'static str, records: u64) {
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
        if let Some(c) = self.requests_rejected.get(reason) {
            c.increment(1);
        }
        if let (Some(c), true) = (self.records_rejected.get(reason), records > 0) {
            c.increment(records);
        }
    }
}

/// Counters of one table's commits.
#[derive(Clone)]
pub struct StoreCounters {
    pub files: Counter,
    pub rows: Counter,
    pub bytes: Counter,
}

/// The daemon's metrics.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    ingest: HashMap<(Transport, Signal), IngestCounters>,
    store: HashMap<Table, StoreCounters>,
    commit_failures: Counter,
    _build_info: Gauge,
}

impl Catalog {
    /// Registers every metric of the catalog with a new recorder.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Unit, help: &'static str| {
            recorder.describe_counter(name.into(), Some(unit), SharedString::const_str(help));
        };
        describe(
            names::RECORDS_RECEIVED,
            Unit::Count,
            "Records decoded from OTLP requests, by transport and signal.",
        );
        describe(
            names::RECORDS_REJECTED,
            Unit::Count,
            "Records refused, by transport, signal and reason.",
        );
        describe(
            names::REQUESTS_REJECTED,
            Unit::Count,
            "OTLP requests refused, by transport, signal and reason.",
        );
        describe(
            names::FILES_COMMITTED,
            Unit::Count,
            "Parquet files committed to the audit store, by table.",
        );
        describe(
            names::ROWS_COMMITTED,
            Unit::Count,
            "Rows committed to the audit store, by table.",
        );
        describe(
            names::BYTES_COMMITTED,
            Unit::Bytes,
            "Bytes of Parquet committed to the audit store, by table.",
        );
        describe(
            names::COMMIT_FAILURES,
            Unit::Count,
            "Batches whose commit to the audit store failed.",
        );
        recorder.describe_gauge(
            names::BUILD_INFO.into(),
            None,
            "Always 1; the version label names the running build.".into(),
        );

        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &metadata())
        };
        let mut ingest = HashMap::new();
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
                            (reason, counter(name, labels))
                        })
                        .collect()
                };
                let counters = IngestCounters {
                    records_received: counter(names::RECORDS_RECEIVED, base.clone()),
                    records_rejected: by_reason(names::RECORDS_REJECTED),
                    requests_rejected: by_reason(names::REQUESTS_REJECTED),
                };
                ingest.insert((transport, signal), counters);
            }
        }
        let store = Table::ALL
            .into_iter()
            .map(|table| {
                let labels = || vec![Label::new("table", table.name())];
                let counters = StoreCounters {
                    files: counter(names::FILES_COMMITTED, labels()),
                    rows: counter(names::ROWS_COMMITTED, labels()),
                    bytes: counter(names::BYTES_COMMITTED, labels()),
                };
                (table, counters)
            })
            .collect();
        let commit_failures = counter(names::COMMIT_FAILURES, vec![]);
        let build_info = recorder.register_gauge(
            &Key::from_parts(
                names::BUILD_INFO,
                vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            ),
            &metadata(),
        );
        build_info.set(1.0);
        Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                ingest,
                store,
                commit_failures,
                _build_info: build_info,
            }),
        }
    }

    pub fn ingest(&self, transport: Transport, signal: Signal) -> &IngestCounters {
        &self.inner.ingest[&(transport, signal)]
    }

    pub fn store(&self, table: Table) -> &StoreCounters {
        &self.inner.store[&table]
    }

    pub fn commit_failures(&self) -> &Counter {
        &self.inner.commit_failures
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let _ = &self.inner.recorder;
        self.inner.handle.render()
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}
