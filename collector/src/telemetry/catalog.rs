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
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::otlp::{Signal, Transport};

/// Why records or requests were refused: the metric label of an ingest error.
pub const REJECT_REASONS: [&str; 14] = [
    "malformed",
    "unauthenticated",
    "auth_throttled",
    "forbidden",
    "rate_limited",
    "signal_disabled",
    "invalid_record",
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
    pub const WAL_RECORDS: &str = "tenantscope_wal_records_appended_total";
    pub const WAL_GROUPS: &str = "tenantscope_wal_group_commits_total";
    pub const WAL_APPEND_FAILURES: &str = "tenantscope_wal_append_failures_total";
    pub const WAL_APPEND_SECONDS: &str = "tenantscope_wal_append_duration_seconds";
    pub const WAL_REPLAYED: &str = "tenantscope_wal_replayed_records_total";
    pub const WAL_TORN_TAILS: &str = "tenantscope_wal_torn_tails_total";
    pub const WAL_CORRUPT: &str = "tenantscope_wal_corrupt_records_total";
    pub const CONFIG_RELOADS: &str = "tenantscope_config_reloads_total";
    pub const REQUESTS: &str = "tenantscope_ingest_requests_total";
    pub const REQUEST_SECONDS: &str = "tenantscope_ingest_request_duration_seconds";
    pub const RECORDS_ACCEPTED: &str = "tenantscope_ingest_records_accepted_total";
    pub const QUEUE_IN: &str = "tenantscope_pipeline_queue_in_total";
    pub const QUEUE_OUT: &str = "tenantscope_pipeline_queue_out_total";
    pub const ACK_SECONDS: &str = "tenantscope_pipeline_ack_duration_seconds";
    pub const WAL_BYTES: &str = "tenantscope_wal_bytes_appended_total";
    pub const WAL_SEGMENTS_OPENED: &str = "tenantscope_wal_segments_opened_total";
    pub const WAL_SEGMENTS_DELETED: &str = "tenantscope_wal_segments_deleted_total";
    pub const COMMIT_SECONDS: &str = "tenantscope_store_commit_duration_seconds";
    pub const QUERY_SECONDS: &str = "tenantscope_query_duration_seconds";
    pub const DISK_FREE: &str = "tenantscope_store_disk_free_bytes";
    pub const RATE_LIMITED: &str = "tenantscope_tenancy_rate_limited_total";
    pub const DISK_SIZE: &str = "tenantscope_store_disk_size_bytes";
    // Derived from what tenants send (rendered by `series`, with a tenant label).
    pub const SPAN_CALLS: &str = "tenantscope_span_calls_total";
    pub const SPAN_DURATION: &str = "tenantscope_span_duration_seconds";
    pub const LOG_RECORDS: &str = "tenantscope_log_records_total";
    pub const EVENTS: &str = "tenantscope_events_total";
    pub const SERIES_OVERFLOW: &str = super::super::series::OVERFLOW_COUNTER;
    pub const QUERIES: &str = "tenantscope_query_requests_total";
    pub const CHECKPOINTS: &str = "tenantscope_audit_checkpoints_total";
    pub const QUARANTINED: &str = "tenantscope_audit_quarantined_files_total";
    pub const RETENTION_DELETED: &str = "tenantscope_audit_retention_deleted_files_total";
}

/// Every metric family name the daemon exposes (histograms also as `_bucket`, `_sum`, `_count`);
/// dashboards and rules may use only these (a test checks it).
pub const ALL_NAMES: [&str; 42] = [
    names::RATE_LIMITED,
    names::BUILD_INFO,
    names::RECORDS_RECEIVED,
    names::RECORDS_REJECTED,
    names::REQUESTS_REJECTED,
    names::FILES_COMMITTED,
    names::ROWS_COMMITTED,
    names::BYTES_COMMITTED,
    names::COMMIT_FAILURES,
    names::CHECKPOINTS,
    names::QUARANTINED,
    names::RETENTION_DELETED,
    names::WAL_RECORDS,
    names::WAL_GROUPS,
    names::WAL_APPEND_FAILURES,
    names::WAL_APPEND_SECONDS,
    names::WAL_REPLAYED,
    names::WAL_TORN_TAILS,
    names::WAL_CORRUPT,
    names::CONFIG_RELOADS,
    names::QUERIES,
    names::SPAN_CALLS,
    names::SPAN_DURATION,
    names::LOG_RECORDS,
    names::EVENTS,
    names::SERIES_OVERFLOW,
    names::REQUESTS,
    names::REQUEST_SECONDS,
    names::RECORDS_ACCEPTED,
    names::QUEUE_IN,
    names::QUEUE_OUT,
    names::ACK_SECONDS,
    names::WAL_BYTES,
    names::WAL_SEGMENTS_OPENED,
    names::WAL_SEGMENTS_DELETED,
    names::COMMIT_SECONDS,
    names::QUERY_SECONDS,
    names::DISK_FREE,
    names::DISK_SIZE,
    "target_info",
    "up",
    "scrape_duration_seconds",
];

/// Buckets of the write-ahead log append (write + fdatasync) histogram, in seconds.
const WAL_APPEND_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.025, 0.05, 0.1, 0.5,
];

/// Buckets of request, acknowledgement, commit and query latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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

/// Counters of one (transport, signal) pair.
#[derive(Clone)]
pub struct IngestCounters {
    pub requests: Counter,
    pub request_seconds: Histogram,
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

impl IngestCounters {
    /// Counts records refused one by one inside an accepted request.
    pub fn refused(&self, reason: &'static str, records: u64) {
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
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
    pub commit_seconds: Histogram,
}

/// The write-ahead log queue and the wait for a durable acknowledgement.
#[derive(Clone)]
pub struct PipelineCounters {
    /// Requests queued for the write-ahead log; `in - out` is the queue depth.
    pub queue_in: Counter,
    pub queue_out: Counter,
    pub ack_seconds: Histogram,
}

/// The daemon's metrics.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

/// The audit log's counters.
pub struct AuditCounters {
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
    pub quarantined: Counter,
    pub retention_deleted: Counter,
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

/// The label value standing for tenants beyond `metrics.max_tenant_labels`.
pub const OTHER_TENANT: &str = "__other__";

/// Results of a configuration reload.
pub const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// Results of a query API request: the `result` label.
pub const QUERY_RESULTS: [&str; 8] = [
    "ok",
    "invalid",
    "unauthenticated",
    "forbidden",
    "throttled",
    "timeout",
    "memory_limit",
    "failed",
];

impl Catalog {
    /// Registers every metric of the catalog with a new recorder.
    pub fn new() -> Self {
        Self::with_tenant_labels(1_000)
    }

    /// A catalog whose tenant-labelled metrics name at most `max_tenant_labels` tenants.
    pub fn with_tenant_labels(max_tenant_labels: usize) -> Self {
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::WAL_APPEND_SECONDS.into()),
                &WAL_APPEND_BUCKETS,
            )
            .expect("the bucket list is not empty");
        for name in [
            names::REQUEST_SECONDS,
            names::ACK_SECONDS,
            names::COMMIT_SECONDS,
            names::QUERY_SECONDS,
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty");
        }
        let recorder = builder.build_recorder();
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
        describe(
            names::CHECKPOINTS,
            Unit::Count,
            "Signed checkpoints of tenants' audit logs written (result ok) or that failed.",
        );
        describe(
            names::QUARANTINED,
            Unit::Count,
            "Parquet files no audit log entry named, moved to DATA/quarantine/ at start.",
        );
        describe(
            names::RETENTION_DELETED,
            Unit::Count,
            "Parquet files deleted by the retention job (each recorded in its tenant's audit log first).",
        );
        describe(
            names::WAL_RECORDS,
            Unit::Count,
            "Records appended and fsync'd to the write-ahead log.",
        );
        describe(
            names::WAL_GROUPS,
            Unit::Count,
            "Group commits: appends sharing one fsync.",
        );
        describe(
            names::WAL_APPEND_FAILURES,
            Unit::Count,
            "Write-ahead log appends that failed (their requests were refused).",
        );
        describe(
            names::WAL_REPLAYED,
            Unit::Count,
            "Records replayed from the write-ahead log at start-up.",
        );
        describe(
            names::WAL_TORN_TAILS,
            Unit::Count,
            "Torn write-ahead log tails truncated at start-up.",
        );
        describe(
            names::WAL_CORRUPT,
            Unit::Count,
            "Corrupt write-ahead log records found at start-up (segment copies kept under wal/corrupt/).",
        );
        describe(
            names::CONFIG_RELOADS,
            Unit::Count,
            "Configuration reloads (SIGHUP or file change), by result.",
        );
        describe(
            names::QUERIES,
            Unit::Count,
            "Query API requests, by result.",
        );
        describe(
            names::REQUESTS,
            Unit::Count,
            "OTLP export requests received (decoded), by transport and signal.",
        );
        describe(
            names::RECORDS_ACCEPTED,
            Unit::Count,
            "Records stored (acknowledged), by transport, signal and tenant.",
        );
        describe(
            names::RATE_LIMITED,
            Unit::Count,
            "Requests refused because a tenant was over its rate limit, by tenant and limit.",
        );
        describe(
            names::QUEUE_IN,
            Unit::Count,
            "Requests queued for the write-ahead log (minus queue_out: the queue depth).",
        );
        describe(
            names::QUEUE_OUT,
            Unit::Count,
            "Requests taken from the write-ahead log queue.",
        );
        describe(
            names::WAL_BYTES,
            Unit::Bytes,
            "Payload bytes appended to the write-ahead log.",
        );
        describe(
            names::WAL_SEGMENTS_OPENED,
            Unit::Count,
            "Write-ahead log segments opened.",
        );
        describe(
            names::WAL_SEGMENTS_DELETED,
            Unit::Count,
            "Write-ahead log segments deleted once committed (opened minus deleted: live segments).",
        );
        for (name, help) in [
            (
                names::REQUEST_SECONDS,
                "Time from a decoded OTLP request to its answer (authentication to acknowledgement), by transport and signal.",
            ),
            (
                names::ACK_SECONDS,
                "Time a request waits for its records to be fsync'd in the write-ahead log.",
            ),
            (
                names::COMMIT_SECONDS,
                "Time to write, fsync and commit one buffer as Parquet, by table.",
            ),
            (
                names::QUERY_SECONDS,
                "Time to plan a query and produce its first rows.",
            ),
        ] {
            recorder.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
        }
        recorder.describe_histogram(
            names::WAL_APPEND_SECONDS.into(),
            Some(Unit::Seconds),
            "Time to write and fdatasync one group of write-ahead log records.".into(),
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
                    requests: counter(names::REQUESTS, base.clone()),
                    request_seconds: recorder.register_histogram(
                        &Key::from_parts(names::REQUEST_SECONDS, base.clone()),
                        &metadata(),
                    ),
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
                    commit_seconds: recorder.register_histogram(
                        &Key::from_parts(names::COMMIT_SECONDS, labels()),
                        &metadata(),
                    ),
                };
                (table, counters)
            })
            .collect();
        let commit_failures = counter(names::COMMIT_FAILURES, vec![]);
        let audit = AuditCounters {
            checkpoints: counter(names::CHECKPOINTS, vec![Label::new("result", "ok")]),
            checkpoint_failures: counter(names::CHECKPOINTS, vec![Label::new("result", "failure")]),
            quarantined: counter(names::QUARANTINED, vec![]),
            retention_deleted: counter(names::RETENTION_DELETED, vec![]),
        };
        let wal = WalCounters {
            bytes: counter(names::WAL_BYTES, vec![]),
            segments_opened: counter(names::WAL_SEGMENTS_OPENED, vec![]),
            segments_deleted: counter(names::WAL_SEGMENTS_DELETED, vec![]),
            records: counter(names::WAL_RECORDS, vec![]),
            groups: counter(names::WAL_GROUPS, vec![]),
            append_failures: counter(names::WAL_APPEND_FAILURES, vec![]),
            append_seconds: recorder
                .register_histogram(&Key::from_name(names::WAL_APPEND_SECONDS), &metadata()),
            replayed: counter(names::WAL_REPLAYED, vec![]),
            torn_tails: counter(names::WAL_TORN_TAILS, vec![]),
            corrupt_segments: counter(names::WAL_CORRUPT, vec![]),
        };
        let by_result = |name: &'static str, results: &[&'static str]| {
            results
                .iter()
                .map(|&r| (r, counter(name, vec![Label::new("result", r)])))
                .collect::<HashMap<_, _>>()
        };
        let reloads = by_result(names::CONFIG_RELOADS, &RELOAD_RESULTS);
        let pipeline = PipelineCounters {
            queue_in: counter(names::QUEUE_IN, vec![]),
            queue_out: counter(names::QUEUE_OUT, vec![]),
            ack_seconds: recorder
                .register_histogram(&Key::from_name(names::ACK_SECONDS), &metadata()),
        };
        let query_seconds =
            recorder.register_histogram(&Key::from_name(names::QUERY_SECONDS), &metadata());
        recorder.describe_gauge(
            names::DISK_FREE.into(),
            Some(Unit::Bytes),
            "Bytes available to the daemon on the data directory's file system (read at scrape)."
                .into(),
        );
        recorder.describe_gauge(
            names::DISK_SIZE.into(),
            Some(Unit::Bytes),
            "Size of the data directory's file system (read at scrape).".into(),
        );
        let disk_free = recorder.register_gauge(&Key::from_name(names::DISK_FREE), &metadata());
        let disk_size = recorder.register_gauge(&Key::from_name(names::DISK_SIZE), &metadata());
        let queries = by_result(names::QUERIES, &QUERY_RESULTS);
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
                audit,
                wal,
                reloads,
                queries,
                query_seconds,
                disk_free,
                disk_size,
                pipeline,
                tenant_labels: std::sync::Mutex::new(std::collections::HashSet::new()),
                max_tenant_labels,
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

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}
