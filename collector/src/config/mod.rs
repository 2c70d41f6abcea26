//! Configuration: the typed, validated settings of the daemon, and where they come from.
//!
//! [`Config`] is what every other context receives; it holds only parsed values (socket
//! addresses, byte sizes, durations). [`parse`] turns YAML text into a [`Config`] without any
//! I/O and reports *every* problem at once, each with its key path. Command-line flags are
//! applied on top by the CLI. Defaults live in [`Config::default`] and are documented in
//! `config/tenantscope.example.yaml`, which a test loads.

mod parse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use parse::{ConfigError, ConfigErrors, parse};

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
}

/// Listener addresses. Port 0 picks a free port (tests use it).
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub metrics: SocketAddr,
    pub api: SocketAddr,
}

/// Size limits on what one request may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestLimits {
    /// Largest request body as sent (compressed), in bytes. Larger: HTTP 413.
    pub max_request_body_size: u64,
    /// Largest request after decompression, in bytes; also gRPC's max decoded message size.
    pub max_decompressed_body_size: u64,
}

/// Where and how records are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub data_dir: PathBuf,
    /// A (tenant, table) buffer becomes a Parquet file at the latest this long after its first
    /// record: the bound on how long an acknowledged record takes to become queryable.
    pub max_file_age: Duration,
    /// ... or once it holds this many rows.
    pub target_file_rows: usize,
    /// ... or once it holds this many bytes of Arrow data (Parquet is roughly 4× smaller).
    pub target_file_buffer_bytes: u64,
    /// All buffers together; beyond it ingest answers 503 / UNAVAILABLE. Above half of it the
    /// largest buffers are written early.
    pub max_buffered_bytes: u64,
    /// Requests that may wait for the write-ahead log; more are refused with 503 / UNAVAILABLE.
    pub queue_capacity: usize,
    /// A write-ahead log segment is closed once it reaches this size.
    pub wal_segment_size: u64,
    /// zstd level of Parquet pages (1–22).
    pub zstd_level: i32,
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
            },
            ingest: IngestLimits {
                max_request_body_size: 16 << 20,
                max_decompressed_body_size: 64 << 20,
            },
            storage: Storage {
                data_dir: PathBuf::from("./data"),
                max_file_age: Duration::from_secs(30),
                target_file_rows: 1_000_000,
                target_file_buffer_bytes: 256 << 20,
                max_buffered_bytes: 1 << 30,
                queue_capacity: 1024,
                wal_segment_size: 64 << 20,
                zstd_level: 1,
            },
            log: Log {
                format: LogFormat::Text,
                level: "info".into(),
            },
        }
    }
}

impl Config {
    /// Reads and parses a YAML file.
    pub fn load(path: &std::path::Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text).map_err(|errors| LoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        })
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
