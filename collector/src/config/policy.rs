//! Who may send and read, and each tenant's policy: the typed values of the `auth`, `tenants`,
//! `query` and `reload` sections (parsed by [`super::tenants`]).
//!
//! API keys appear only as SHA-256 hashes (`sha256:<64 hex>`, printed by `tenantscope hash-key`),
//! and a redaction HMAC key is named by its source (a file or an environment variable) and read by
//! the tenancy context when it builds its directory.

use std::path::PathBuf;
use std::time::Duration;

/// Global authentication settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// Keys that may query any tenant and use the admin endpoints.
    pub admin_keys: Vec<KeyHash>,
    /// Failed authentications allowed per source address and minute; beyond it 429.
    pub max_failures_per_minute: u32,
}

/// The SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl KeyHash {
    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected sha256:<64 hex digits> (see `tenantscope hash-key`)";
        s.strip_prefix("sha256:")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(KeyHash)
            .ok_or_else(|| EXPECTED.to_owned())
    }
}

/// What a tenant's key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    pub ingest: bool,
    pub query: bool,
}

/// One API key of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub hash: KeyHash,
    pub roles: Roles,
}

/// Which signals a tenant may send. Records of a disabled signal are refused one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub logs: bool,
    pub traces: bool,
    pub events: bool,
    pub metrics: bool,
}

/// Admission limits of one tenant. Rates are token buckets; `None` is unlimited.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLimits {
    pub records_per_second: Option<u64>,
    /// Bucket size; defaults to one second's worth.
    pub records_burst: Option<u64>,
    /// Bytes of OTLP protobuf (the tenant's share of a request, decompressed).
    pub bytes_per_second: Option<u64>,
    pub bytes_burst: Option<u64>,
    /// Attributes of one record (resource attributes not counted); more: the record is refused.
    pub max_attributes_per_record: usize,
}

/// A regular expression (compared by its text).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Replace every match of `pattern` in string values and bodies with `with` (`$1` works).
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub pattern: Pattern,
    pub with: String,
}

/// Where a tenant's pseudonymisation key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Redaction applied to a tenant's records before anything reaches disk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Redaction {
    /// Attribute keys removed (record, resource and scope attributes).
    pub drop_attributes: Vec<String>,
    /// Applied to string attribute values and string bodies.
    pub replace: Vec<Replacement>,
    /// Attribute keys whose values become `hmac-sha256:<hex>` under the tenant's key.
    pub pseudonymize: Vec<String>,
    pub hmac_key: Option<SecretSource>,
}

impl Redaction {
    pub fn is_empty(&self) -> bool {
        self.drop_attributes.is_empty() && self.replace.is_empty() && self.pseudonymize.is_empty()
    }
}

/// How a tenant's records are made durable before the acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityClass {
    /// fsync'd to the write-ahead log before the answer (the only class so far).
    Sync,
}

/// Everything configured for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy {
    pub enabled: bool,
    pub keys: Vec<ApiKey>,
    pub signals: Signals,
    pub limits: TenantLimits,
    pub redaction: Redaction,
    /// How long records are kept: the retention job deletes whole files whose newest row is
    /// older (`None`: forever).
    pub retention: Option<Duration>,
    /// While true, nothing of the tenant is deleted (recorded in its audit log as a hold).
    pub legal_hold: bool,
    pub durability: DurabilityClass,
}

impl Default for TenantPolicy {
    /// The policy of a tenant the config does not list (header/attribute mode only).
    fn default() -> Self {
        Self {
            enabled: true,
            keys: Vec::new(),
            signals: Signals {
                logs: true,
                traces: true,
                events: true,
                metrics: true,
            },
            limits: TenantLimits {
                records_per_second: None,
                records_burst: None,
                bytes_per_second: None,
                bytes_burst: None,
                max_attributes_per_record: 128,
            },
            redaction: Redaction::default(),
            retention: None,
            legal_hold: false,
            durability: DurabilityClass::Sync,
        }
    }
}

/// Limits of the query API.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// A query (planning, execution and streaming the answer) is cancelled after this long.
    pub timeout: Duration,
    /// Memory a query's operators may hold; beyond it the query fails.
    pub memory_limit: u64,
    /// Longest SQL text accepted.
    pub max_sql_length: usize,
    /// Threads of the query runtime, where queries are planned and run (apart from ingest's).
    pub threads: usize,
}

impl QueryLimits {
    /// The limits in the store's terms.
    pub fn store_limits(&self) -> audit_store::query::QueryLimits {
        audit_store::query::QueryLimits {
            memory_limit: usize::try_from(self.memory_limit).ok(),
            max_sql_length: Some(self.max_sql_length),
        }
    }
}

/// How configuration changes are picked up at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// How often the config file (and tenants file) are checked for changes; `None`: only SIGHUP.
    pub watch_interval: Option<Duration>,
}

/// Bounds of the metrics derived from tenants' data and of OTLP metrics re-exposed on `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Series one tenant may have across all its metrics; beyond it, new series collapse into
    /// one `otel_metric_overflow="true"` series per metric.
    pub max_series_per_tenant: usize,
    /// Series one tenant may have in one metric.
    pub max_series_per_metric: usize,
    /// Series of all tenants together.
    pub max_series: usize,
    /// Metric families (names) one tenant may have series in; a point of a further family is
    /// refused (OTLP `partial_success`), so a tenant cannot grow `/metrics` by inventing names.
    pub max_families_per_tenant: usize,
    /// Metric families of all tenants together (same refusal).
    pub max_families: usize,
    /// Distinct `tenant` label values; further tenants are labelled `__other__`.
    pub max_tenant_labels: usize,
    /// A series not updated for this long disappears from `/metrics`.
    pub stale_after: Duration,
    /// Upper bounds (seconds) of `tenantscope_span_duration_seconds`.
    pub span_duration_buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_series_per_tenant: 10_000,
            max_series_per_metric: 2_000,
            max_series: 200_000,
            max_families_per_tenant: 1_000,
            max_families: 10_000,
            max_tenant_labels: 1_000,
            stale_after: Duration::from_secs(300),
            // The OTel Collector spanmetrics connector's defaults.
            span_duration_buckets: vec![
                0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0,
                10.0, 15.0,
            ],
        }
    }
}

/// Where the daemon's own spans go.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfTracing {
    /// OTLP/gRPC endpoint (`http://host:port`); `None`: no spans are exported. It may be this
    /// daemon's own OTLP/gRPC listener: spans about ingesting its own spans are never made.
    pub otlp_endpoint: Option<String>,
    /// The `tenant.id` resource attribute of the exported spans.
    pub tenant: audit_store::TenantId,
    /// Fraction of request traces kept (0 to 1).
    pub sample_ratio: f64,
}

impl Default for SelfTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            tenant: audit_store::TenantId::parse("tenantscope").expect("a valid tenant id"),
            sample_ratio: 1.0,
        }
    }
}
