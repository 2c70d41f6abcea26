//! Configuration: the typed, validated settings of the daemon, and where they come from.
//!
//! [`Config`] is what every other context receives; it holds only parsed values (socket
//! addresses, byte sizes, durations). [`parse`] turns YAML text into a [`Config`] without any
//! I/O and reports *every* problem at once, each with its key path. Command-line flags are
//! applied on top by the CLI. Defaults live in [`Config::default`] and are documented in
//! `config/tenantscope.example.yaml`, which a test loads.

mod parse;
mod policy;
mod redaction;
mod tenants;
mod walker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use audit_store::TenantId;
pub use parse::parse;
pub use policy::{
    ApiKey, Auth, DurabilityClass, KeyHash, MetricsConfig, Pattern, QueryLimits, Redaction, Reload,
    Replacement, Roles, SecretSource, SelfTracing, Signals, TenantLimits, TenantPolicy,
};
pub use walker::{ConfigError, ConfigErrors};

/// Format of the daemon's own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub ingest: IngestLimits,
    pub storage: Storage,
    pub log: Log,
    pub auth: Auth,
    /// Tenants listed in the config (and in `tenants_file`, merged in by [`Config::load`]).
    pub tenants: BTreeMap<TenantId, TenantPolicy>,
    /// A separate YAML file holding more tenants (a mapping like the `tenants` section),
    /// relative to the config file.
    pub tenants_file: Option<PathBuf>,
    pub query: QueryLimits,
    pub reload: Reload,
    pub metrics: MetricsConfig,
    pub tracing: SelfTracing,
    pub audit: Audit,
}

impl Config {
    /// Whether any API key is configured: then every request must authenticate.
    pub fn auth_required(&self) -> bool {
        !self.auth.admin_keys.is_empty() || self.tenants.values().any(|t| !t.keys.is_empty())
    }
}

/// Listener addresses. Port 0 picks a free port (tests use it).
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub metrics: SocketAddr,
    pub api: SocketAddr,
    /// How each of the four listeners treats its connections.
    pub connections: Connections,
}

/// Connection limits and timeouts, the same on every listener (`listen.*`). Defaults follow the
/// OpenTelemetry Collector's `confighttp` (header and idle timeouts), nginx (concurrent HTTP/2
/// streams, the body timeout's value) and grpc-go (keepalive); README, "Limits and what you get
/// past them", says which.
#[derive(Debug, Clone, PartialEq)]
pub struct Connections {
    /// Open connections per listener; past it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Largest request head (HTTP/1 request line and headers; HTTP/2 header list), in bytes.
    pub max_header_size: u32,
    /// An HTTP/1 request's head must arrive within this after its first byte (or after the
    /// connection opened); otherwise the connection is closed (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    pub idle_timeout: Duration,
    /// A request's whole body must arrive within this after its head; otherwise it is answered
    /// 408 / DEADLINE_EXCEEDED and the connection closed (slow body).
    pub body_read_timeout: Duration,
    /// Concurrent streams one HTTP/2 connection may open.
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset before the server accepted them, at once, before the
    /// connection is closed with `ENHANCE_YOUR_CALM` (HTTP/2 rapid reset, CVE-2023-44487).
    pub http2_max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because of the client's errors before it closes the
    /// connection.
    pub http2_max_local_error_reset_streams: usize,
    /// HTTP/2 (gRPC) keepalive: a PING after this long without frames...
    pub keepalive_interval: Duration,
    /// ... must be answered within this, or the connection is closed.
    pub keepalive_timeout: Duration,
    /// A connection older than this is asked to go away (HTTP/2 GOAWAY, HTTP/1 `Connection:
    /// close` after its request), so clients rebalance across daemons; `None`: never.
    pub max_connection_age: Option<Duration>,
    /// ... and closed this long after that, whatever is in flight.
    pub max_connection_age_grace: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_size: 64 << 10,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            http2_max_concurrent_streams: 128,
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
            keepalive_interval: Duration::from_secs(2 * 3600),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: None,
            max_connection_age_grace: Duration::from_secs(30),
        }
    }
}

/// Size limits on what one request may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestLimits {
    /// Largest request body as sent (compressed), in bytes. Larger: HTTP 413.
    pub max_request_body_size: u64,
    /// Largest request after decompression, in bytes; also gRPC's max decoded message size.
    /// At most [`MAX_BODY_SIZE`].
    pub max_decompressed_body_size: u64,
    /// Most bytes of resource and scope attributes (and schema URLs) a request's stored rows may
    /// repeat: each row carries its resource's and scope's, so a large resource attribute over
    /// many small records is stored once per record. Larger: 413 / RESOURCE_EXHAUSTED. At most
    /// [`MAX_EXPANDED_REQUEST_SIZE`].
    pub max_expanded_request_size: u64,
    /// Deepest nesting of an attribute value or body (arrays and key-value lists in each other);
    /// a record with a deeper value is refused alone. At most [`MAX_VALUE_DEPTH`].
    pub max_value_depth: usize,
    /// Longest key of an attribute (or of a key-value list inside one), in bytes; a record with
    /// a longer one is refused alone.
    pub max_attribute_key_length: usize,
    /// Longest string or bytes value of an attribute, at any depth, in bytes; a record with a
    /// longer one is refused alone. A log body is bounded by the request's size only.
    pub max_attribute_value_length: usize,
    /// Most elements of one array or key-value list in a value; a record with more is refused
    /// alone.
    pub max_value_elements: usize,
    /// Most log records or spans one request may carry; those past it are refused alone.
    pub max_records_per_request: u64,
    /// Most bytes request bodies in flight may hold together, as received and decompressed
    /// (`ingest::memory`); past it, 503 / UNAVAILABLE with `Retry-After`.
    pub max_memory: u64,
}

/// The largest `ingest.max_value_depth` accepted: prost refuses deeper messages (its recursion
/// limit is 100), and so does the record then.
pub const MAX_VALUE_DEPTH: usize = 64;

/// The largest `ingest.max_decompressed_body_size` accepted: a request's text, even escaped as
/// JSON (up to 6 bytes per byte), stays within an Arrow string column's 2 GiB.
pub const MAX_BODY_SIZE: u64 = 256 << 20;

/// The largest `ingest.max_expanded_request_size` accepted: below the 2 GiB an Arrow string
/// column holds.
pub const MAX_EXPANDED_REQUEST_SIZE: u64 = 1 << 30;

/// Where and how records are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub data_dir: PathBuf,
    /// A (tenant, table) buffer becomes a Parquet file at the latest this long after its first
    /// record: the bound on how long an acknowledged record takes to become queryable.
    pub max_file_age: Duration,
    /// ... or once it holds this many rows.
    pub target_file_rows: usize,
    /// ... or once its records take this many bytes in the write-ahead log (log records as OTLP
    /// protobuf, about 0.6× their size as Arrow; spans as Arrow IPC; Parquet is roughly 4.5×
    /// smaller than OTLP). Also the most a commit reads back at once: a larger buffer is written
    /// as several files.
    pub target_file_buffer_bytes: u64,
    /// All buffers together, in bytes of write-ahead log records not yet in Parquet (on disk, not
    /// in memory); beyond it ingest answers 503 / UNAVAILABLE. Above half of it the largest
    /// buffers are written early.
    pub max_buffered_bytes: u64,
    /// Requests that may wait for the write-ahead log; more are refused with 503 / UNAVAILABLE.
    pub queue_capacity: usize,
    /// A write-ahead log segment is closed once it reaches this size.
    pub wal_segment_size: u64,
    /// zstd level of Parquet pages (1–22).
    pub zstd_level: i32,
    /// Names this daemon in the origin of new audit logs (`<instance_id>/tenantscope/<tenant>`);
    /// `None`: the host name.
    pub instance_id: Option<String>,
}

/// The audit log's checkpoints and jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// How often each tenant's log is checkpointed (signed) when it grew; also at shutdown.
    pub checkpoint_interval: Duration,
    /// The checkpoint signing key (`tenantscope keygen`); `None`: `DATA/keys/signing.key`,
    /// made at first start.
    pub signing_key_file: Option<PathBuf>,
    /// How often the retention job runs (also once at start).
    pub retention_interval: Duration,
}

/// The daemon's own logging.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `tenantscope=debug,info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Listen {
                otlp_grpc: ([127, 0, 0, 1], 4317).into(),
                otlp_http: ([127, 0, 0, 1], 4318).into(),
                metrics: ([127, 0, 0, 1], 9464).into(),
                api: ([127, 0, 0, 1], 8090).into(),
                connections: Connections::default(),
            },
            ingest: IngestLimits {
                max_request_body_size: 16 << 20,
                max_decompressed_body_size: 64 << 20,
                max_expanded_request_size: 256 << 20,
                max_value_depth: 32,
                max_attribute_key_length: 1024,
                max_attribute_value_length: 256 << 10,
                max_value_elements: 10_000,
                max_records_per_request: 100_000,
                max_memory: 1 << 30,
            },
            storage: Storage {
                data_dir: PathBuf::from("./data"),
                max_file_age: Duration::from_secs(30),
                target_file_rows: 1_000_000,
                target_file_buffer_bytes: 32 << 20,
                max_buffered_bytes: 1 << 30,
                queue_capacity: 1024,
                wal_segment_size: 64 << 20,
                zstd_level: 1,
                instance_id: None,
            },
            log: Log {
                format: LogFormat::Text,
                level: "info".into(),
            },
            auth: Auth {
                admin_keys: Vec::new(),
                max_failures_per_minute: 30,
            },
            tenants: BTreeMap::new(),
            tenants_file: None,
            query: QueryLimits {
                timeout: Duration::from_secs(30),
                memory_limit: 512 << 20,
                max_sql_length: 64 << 10,
                threads: 2,
            },
            reload: Reload {
                watch_interval: Some(Duration::from_secs(2)),
            },
            metrics: MetricsConfig::default(),
            tracing: SelfTracing::default(),
            audit: Audit {
                checkpoint_interval: Duration::from_secs(60),
                signing_key_file: None,
                retention_interval: Duration::from_secs(3600),
            },
        }
    }
}

impl Config {
    /// Reads and parses a YAML file, and the tenants file it names.
    pub fn load(path: &std::path::Path) -> Result<Config, LoadError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let text = read(path)?;
        let mut config = parse(&text).map_err(|errors| LoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        })?;
        if let Some(file) = &config.tenants_file {
            let file = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(file);
            let text = read(&file)?;
            parse::merge_tenants_file(&text, &mut config).map_err(|errors| LoadError::Invalid {
                path: file.clone(),
                errors,
            })?;
            config.tenants_file = Some(file);
        }
        Ok(config)
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}:\n{errors}")]
    Invalid { path: PathBuf, errors: ConfigErrors },
}

#[cfg(test)]
mod tests;
