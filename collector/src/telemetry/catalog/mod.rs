//! The metric catalog: every metric the daemon exports, registered once from one table of
//! families ([`families::FAMILIES`]: name, kind, unit, labels, help). Contexts receive a
//! [`Catalog`] and use its pre-built handles ([`handles`]); no metric name is spelled anywhere
//! else.
//!
//! The catalog owns its own Prometheus recorder instead of a process-global one, so that several
//! daemons in one process (the test suite) each have their own numbers.

mod families;
mod handles;

use std::collections::HashMap;
use std::sync::Arc;

use audit_store::Table;
use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use families::{
    ALL_NAMES, FAMILIES, Family, Kind, OTHER_TENANT, QUERY_RESULTS, REJECT_REASONS, RELOAD_RESULTS,
    names,
};
pub use handles::{AuditCounters, IngestCounters, PipelineCounters, StoreCounters, WalCounters};
use handles::{Registry, metadata};

use crate::otlp::{Signal, Transport};

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
    audit: AuditCounters,
    wal: WalCounters,
    reloads: HashMap<&'static str, Counter>,
    queries: HashMap<&'static str, Counter>,
    query_seconds: Histogram,
    disk_free: Gauge,
    disk_size: Gauge,
    pipeline: PipelineCounters,
    tenant_labels: std::sync::Mutex<std::collections::HashSet<String>>,
    max_tenant_labels: usize,
    _build_info: Gauge,
}

/// A recorder with every family of [`FAMILIES`] described (and its buckets set).
fn recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for family in FAMILIES {
        if let Kind::Histogram(buckets) = family.kind {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(family.name.into()), buckets)
                .expect("the bucket list is not empty");
        }
    }
    let recorder = builder.build_recorder();
    for family in FAMILIES {
        let (name, unit) = (family.name.into(), family.unit);
        let help = SharedString::const_str(family.help);
        match family.kind {
            Kind::Counter => recorder.describe_counter(name, unit, help),
            Kind::Gauge => recorder.describe_gauge(name, unit, help),
            Kind::Histogram(_) => recorder.describe_histogram(name, unit, help),
        }
    }
    recorder
}

impl Catalog {
    /// Registers every metric of the catalog with a new recorder.
    pub fn new() -> Self {
        Self::with_tenant_labels(1_000)
    }

    /// A catalog whose tenant-labelled metrics name at most `max_tenant_labels` tenants.
    pub fn with_tenant_labels(max_tenant_labels: usize) -> Self {
        let recorder = recorder();
        let r = Registry(&recorder);
        let version = Label::new("version", env!("CARGO_PKG_VERSION"));
        let build_info = r.gauge(names::BUILD_INFO, vec![version]);
        build_info.set(1.0);
        let inner = Inner {
            handle: recorder.handle(),
            ingest: IngestCounters::register_all(&r),
            store: StoreCounters::register_all(&r),
            commit_failures: r.counter(names::COMMIT_FAILURES, vec![]),
            audit: AuditCounters::register(&r),
            wal: WalCounters::register(&r),
            reloads: r.by_result(names::CONFIG_RELOADS, &RELOAD_RESULTS),
            queries: r.by_result(names::QUERIES, &QUERY_RESULTS),
            query_seconds: r.histogram(names::QUERY_SECONDS, vec![]),
            disk_free: r.gauge(names::DISK_FREE, vec![]),
            disk_size: r.gauge(names::DISK_SIZE, vec![]),
            pipeline: PipelineCounters::register(&r),
            tenant_labels: std::sync::Mutex::new(std::collections::HashSet::new()),
            max_tenant_labels,
            _build_info: build_info,
            recorder,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn ingest(&self, transport: Transport, signal: Signal) -> &IngestCounters {
        &self.inner.ingest[&(transport, signal)]
    }

    pub fn store(&self, table: Table) -> &StoreCounters {
        &self.inner.store[&table]
    }

    pub fn wal(&self) -> &WalCounters {
        &self.inner.wal
    }

    /// The reload counter for `result` (one of [`RELOAD_RESULTS`]).
    pub fn config_reloads(&self, result: &'static str) -> &Counter {
        &self.inner.reloads[result]
    }

    /// The query counter for `result` (one of [`QUERY_RESULTS`]).
    pub fn queries(&self, result: &'static str) -> &Counter {
        &self.inner.queries[result]
    }

    /// Reads the data directory's file system usage into the disk gauges.
    pub fn read_disk(&self, data_dir: &std::path::Path) {
        if let Ok(fs) = rustix::fs::statvfs(data_dir) {
            let block = fs.f_frsize.max(1) as f64;
            self.inner.disk_free.set(fs.f_bavail as f64 * block);
            self.inner.disk_size.set(fs.f_blocks as f64 * block);
        }
    }

    pub fn pipeline(&self) -> &PipelineCounters {
        &self.inner.pipeline
    }

    pub fn query_seconds(&self) -> &Histogram {
        &self.inner.query_seconds
    }

    /// The `tenant` label value of `tenant`: itself while fewer than `max_tenant_labels` tenants
    /// have been named, else [`OTHER_TENANT`].
    fn tenant_label(&self, tenant: &str) -> String {
        let mut seen = self
            .inner
            .tenant_labels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(tenant) {
            tenant.to_owned()
        } else if seen.len() < self.inner.max_tenant_labels {
            seen.insert(tenant.to_owned());
            tenant.to_owned()
        } else {
            OTHER_TENANT.to_owned()
        }
    }

    /// Counts `records` stored for `tenant`.
    pub fn records_accepted(
        &self,
        transport: Transport,
        signal: Signal,
        tenant: &str,
        records: u64,
    ) {
        let key = Key::from_parts(
            names::RECORDS_ACCEPTED,
            vec![
                Label::new("transport", transport.label()),
                Label::new("signal", signal.label()),
                Label::new("tenant", self.tenant_label(tenant)),
            ],
        );
        self.inner
            .recorder
            .register_counter(&key, &metadata())
            .increment(records);
    }

    /// Counts a request of `tenant` refused by its rate limit `limit` (`records_per_second` or
    /// `bytes_per_second`).
    pub fn rate_limited(&self, tenant: &str, limit: &'static str) {
        let key = Key::from_parts(
            names::RATE_LIMITED,
            vec![
                Label::new("tenant", self.tenant_label(tenant)),
                Label::new("limit", limit),
            ],
        );
        self.inner
            .recorder
            .register_counter(&key, &metadata())
            .increment(1);
    }

    pub fn commit_failures(&self) -> &Counter {
        &self.inner.commit_failures
    }

    pub fn audit(&self) -> &AuditCounters {
        &self.inner.audit
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

#[cfg(test)]
mod tests;
