//! The metric families, as data: every metric the daemon exports, with its name, kind, unit,
//! labels and help text, in one table ([`FAMILIES`]). [`super::Catalog`] describes and registers
//! them from it; no metric name is spelled anywhere else.
//!
//! Names follow `tenantscope_<subsystem>_<name>_<unit>[_total]`. Label values are closed sets
//! (transport, signal, reason, table, result), or tenants bounded by `metrics.max_tenant_labels`,
//! so series are bounded. To add a metric: a name in [`names`], a row in [`FAMILIES`], its name in
//! [`ALL_NAMES`], and its handle in [`super::handles`].

use metrics::Unit;

/// Every metric name, in one place.
pub mod names {
    pub const BUILD_INFO: &str = "tenantscope_build_info";
    pub const RECORDS_RECEIVED: &str = "tenantscope_ingest_records_received_total";
    pub const RECORDS_REJECTED: &str = "tenantscope_ingest_records_rejected_total";
    pub const REQUESTS_REJECTED: &str = "tenantscope_ingest_requests_rejected_total";
    pub const REJECTED: &str = "tenantscope_ingest_rejected_total";
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
    pub const SERIES_OVERFLOW: &str = super::super::super::series::OVERFLOW_COUNTER;
    pub const QUERIES: &str = "tenantscope_query_requests_total";
    pub const CHECKPOINTS: &str = "tenantscope_audit_checkpoints_total";
    pub const QUARANTINED: &str = "tenantscope_audit_quarantined_files_total";
    pub const RETENTION_DELETED: &str = "tenantscope_audit_retention_deleted_files_total";
}

/// Every metric family name the daemon exposes (histograms also as `_bucket`, `_sum`, `_count`):
/// [`FAMILIES`], the families the series store renders, and what Prometheus adds to a scrape.
/// Dashboards and rules may use only these (a test checks it).
pub const ALL_NAMES: [&str; 43] = [
    names::RATE_LIMITED,
    names::REJECTED,
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

/// Why records or requests were refused: the metric label of an ingest error.
pub const REJECT_REASONS: [&str; 19] = [
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
    "log_set_aside",
    "metric_families",
    "timeout",
    "too_many_records",
    "memory",
];

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

/// Results of a checkpoint.
pub const CHECKPOINT_RESULTS: [&str; 2] = ["ok", "failure"];

/// Buckets of the write-ahead log append (write + fdatasync) histogram, in seconds.
const WAL_APPEND_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.025, 0.05, 0.1, 0.5,
];

/// Buckets of request, acknowledgement, commit and query latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// With its bucket bounds, in the family's unit.
    Histogram(&'static [f64]),
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    /// The names of its labels (a histogram's series also have `le`).
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn counter(
    name: &'static str,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        unit: Some(unit),
        labels,
        help,
    }
}

const fn histogram(
    name: &'static str,
    buckets: &'static [f64],
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Histogram(buckets),
        unit: Some(Unit::Seconds),
        labels,
        help,
    }
}

const fn gauge(
    name: &'static str,
    unit: Option<Unit>,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        unit,
        labels,
        help,
    }
}

const BY_SIGNAL: &[&str] = &["transport", "signal"];
const BY_REASON: &[&str] = &["transport", "signal", "reason"];
const BY_TABLE: &[&str] = &["table"];
const BY_RESULT: &[&str] = &["result"];
const NONE: &[&str] = &[];

use Unit::{Bytes, Count};

/// The families the catalog registers (those the series store renders are described there).
#[rustfmt::skip]
pub const FAMILIES: &[Family] = &[
    // Ingest.
    counter(names::REQUESTS, Count, BY_SIGNAL, "OTLP export requests received (decoded), by transport and signal."),
    histogram(names::REQUEST_SECONDS, LATENCY_BUCKETS, BY_SIGNAL, "Time from a decoded OTLP request to its answer (authentication to acknowledgement), by transport and signal."),
    counter(names::RECORDS_RECEIVED, Count, BY_SIGNAL, "Records decoded from OTLP requests, by transport and signal."),
    counter(names::RECORDS_REJECTED, Count, BY_REASON, "Records refused, by transport, signal and reason."),
    counter(names::REQUESTS_REJECTED, Count, BY_REASON, "OTLP requests refused, by transport, signal and reason."),
    counter(names::REJECTED, Count, BY_REASON, "Refusals, by transport, signal and reason: a request refused whole counts one, and so does each record refused alone."),
    counter(names::RECORDS_ACCEPTED, Count, &["transport", "signal", "tenant"], "Records stored (acknowledged), by transport, signal and tenant."),
    counter(names::RATE_LIMITED, Count, &["tenant", "limit"], "Requests refused because a tenant was over its rate limit, by tenant and limit."),
    // Pipeline and write-ahead log.
    counter(names::QUEUE_IN, Count, NONE, "Requests queued for the write-ahead log (minus queue_out: the queue depth)."),
    counter(names::QUEUE_OUT, Count, NONE, "Requests taken from the write-ahead log queue."),
    histogram(names::ACK_SECONDS, LATENCY_BUCKETS, NONE, "Time a request waits for its records to be fsync'd in the write-ahead log."),
    counter(names::WAL_RECORDS, Count, NONE, "Records appended and fsync'd to the write-ahead log."),
    counter(names::WAL_GROUPS, Count, NONE, "Group commits: appends sharing one fsync."),
    counter(names::WAL_BYTES, Bytes, NONE, "Payload bytes appended to the write-ahead log."),
    counter(names::WAL_APPEND_FAILURES, Count, NONE, "Write-ahead log appends that failed (their requests were refused)."),
    histogram(names::WAL_APPEND_SECONDS, WAL_APPEND_BUCKETS, NONE, "Time to write and fdatasync one group of write-ahead log records."),
    counter(names::WAL_SEGMENTS_OPENED, Count, NONE, "Write-ahead log segments opened."),
    counter(names::WAL_SEGMENTS_DELETED, Count, NONE, "Write-ahead log segments deleted once committed (opened minus deleted: live segments)."),
    counter(names::WAL_REPLAYED, Count, NONE, "Records replayed from the write-ahead log at start-up."),
    counter(names::WAL_TORN_TAILS, Count, NONE, "Torn write-ahead log tails truncated at start-up."),
    counter(names::WAL_CORRUPT, Count, NONE, "Corrupt write-ahead log records found at start-up (segment copies kept under wal/corrupt/)."),
    // Store and audit log.
    counter(names::FILES_COMMITTED, Count, BY_TABLE, "Parquet files committed to the audit store, by table."),
    counter(names::ROWS_COMMITTED, Count, BY_TABLE, "Rows committed to the audit store, by table."),
    counter(names::BYTES_COMMITTED, Bytes, BY_TABLE, "Bytes of Parquet committed to the audit store, by table."),
    histogram(names::COMMIT_SECONDS, LATENCY_BUCKETS, BY_TABLE, "Time to write, fsync and commit one buffer as Parquet, by table."),
    counter(names::COMMIT_FAILURES, Count, NONE, "Batches whose commit to the audit store failed."),
    counter(names::CHECKPOINTS, Count, BY_RESULT, "Signed checkpoints of tenants' audit logs written (result ok) or that failed."),
    counter(names::QUARANTINED, Count, NONE, "Parquet files no audit log entry named, moved to DATA/quarantine/ at start."),
    counter(names::RETENTION_DELETED, Count, NONE, "Parquet files deleted by the retention job (each recorded in its tenant's audit log first)."),
    gauge(names::DISK_FREE, Some(Bytes), NONE, "Bytes available to the daemon on the data directory's file system (read at scrape)."),
    gauge(names::DISK_SIZE, Some(Bytes), NONE, "Size of the data directory's file system (read at scrape)."),
    // Queries, configuration, the build.
    counter(names::QUERIES, Count, BY_RESULT, "Query API requests, by result."),
    histogram(names::QUERY_SECONDS, LATENCY_BUCKETS, NONE, "Time to plan a query and produce its first rows."),
    counter(names::CONFIG_RELOADS, Count, BY_RESULT, "Configuration reloads (SIGHUP or file change), by result."),
    gauge(names::BUILD_INFO, None, &["version"], "Always 1; the version label names the running build."),
];
