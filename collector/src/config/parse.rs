//! YAML text → [`Config`], collecting every error with its key path.
//!
//! Hand-walked rather than derived: serde stops at the first error, and a user fixing a config
//! wants all of them at once. Unknown keys are errors (a typo must not silently fall back to a
//! default).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::{Config, LogFormat, tenants};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `storage.max_file_age`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a config file, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The YAML document of `text`, or the one error saying it is not YAML.
fn yaml(text: &str) -> Result<Value, ConfigErrors> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: "<document>".into(),
            message: format!("not valid YAML: {e}"),
        }])
    })
}

/// Parses YAML config text. An empty document is the default config.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let root = yaml(text)?;
    let mut w = Walker::default();
    let mut config = Config::default();
    let root = match root {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            w.error("<document>", "expected a mapping of sections");
            Mapping::new()
        }
    };
    w.known_keys(
        &root,
        "",
        &[
            "listen",
            "ingest",
            "storage",
            "log",
            "auth",
            "tenants",
            "tenants_file",
            "query",
            "reload",
            "metrics",
            "tracing",
            "audit",
        ],
    );

    if let Some(m) = w.section(&root, "", "listen") {
        let keys = ["otlp_grpc", "otlp_http", "metrics", "api"];
        w.known_keys(&m, "listen", &keys);
        let c = &mut config.listen;
        w.field(&m, "listen", "otlp_grpc", &mut c.otlp_grpc, socket_addr);
        w.field(&m, "listen", "otlp_http", &mut c.otlp_http, socket_addr);
        w.field(&m, "listen", "metrics", &mut c.metrics, socket_addr);
        w.field(&m, "listen", "api", &mut c.api, socket_addr);
    }
    if let Some(m) = w.section(&root, "", "ingest") {
        let keys = [
            "max_request_body_size",
            "max_decompressed_body_size",
            "max_expanded_request_size",
        ];
        w.known_keys(&m, "ingest", &keys);
        let c = &mut config.ingest;
        let p = "ingest";
        w.field(
            &m,
            p,
            "max_request_body_size",
            &mut c.max_request_body_size,
            byte_size,
        );
        w.field(
            &m,
            p,
            "max_decompressed_body_size",
            &mut c.max_decompressed_body_size,
            byte_size,
        );
        w.field(
            &m,
            p,
            "max_expanded_request_size",
            &mut c.max_expanded_request_size,
            byte_size,
        );
        if c.max_decompressed_body_size < c.max_request_body_size {
            w.error(
                "ingest.max_decompressed_body_size",
                "must be at least ingest.max_request_body_size",
            );
        }
        let at_most = [
            (
                "max_decompressed_body_size",
                c.max_decompressed_body_size,
                super::MAX_BODY_SIZE,
            ),
            (
                "max_expanded_request_size",
                c.max_expanded_request_size,
                super::MAX_EXPANDED_REQUEST_SIZE,
            ),
        ];
        for (key, value, max) in at_most {
            if value > max {
                w.error(
                    &format!("ingest.{key}"),
                    format!("must be at most {}MiB", max >> 20),
                );
            }
        }
    }
    if let Some(m) = w.section(&root, "", "storage") {
        let keys = [
            "data_dir",
            "max_file_age",
            "target_file_rows",
            "target_file_buffer_bytes",
            "max_buffered_bytes",
            "queue_capacity",
            "wal_segment_size",
            "zstd_level",
            "instance_id",
        ];
        w.known_keys(&m, "storage", &keys);
        let c = &mut config.storage;
        let p = "storage";
        w.field(&m, p, "data_dir", &mut c.data_dir, path);
        w.field(&m, p, "max_file_age", &mut c.max_file_age, |v| {
            duration(v, Duration::from_millis(1), Duration::from_secs(86_400))
        });
        w.field(&m, p, "target_file_rows", &mut c.target_file_rows, |v| {
            integer(v, 1, 100_000_000)
        });
        w.field(
            &m,
            p,
            "target_file_buffer_bytes",
            &mut c.target_file_buffer_bytes,
            byte_size,
        );
        w.field(
            &m,
            p,
            "max_buffered_bytes",
            &mut c.max_buffered_bytes,
            byte_size,
        );
        w.field(
            &m,
            p,
            "wal_segment_size",
            &mut c.wal_segment_size,
            byte_size,
        );
        w.field(&m, p, "queue_capacity", &mut c.queue_capacity, |v| {
            integer(v, 1, 1_000_000)
        });
        w.field(&m, p, "zstd_level", &mut c.zstd_level, |v| {
            integer(v, 1, 22).map(|n| n as i32)
        });
        w.field(&m, p, "instance_id", &mut c.instance_id, |v| {
            instance_id(string(v)?).map(Some)
        });
    }
    if let Some(m) = w.section(&root, "", "audit") {
        let keys = [
            "checkpoint_interval",
            "signing_key_file",
            "retention_interval",
        ];
        w.known_keys(&m, "audit", &keys);
        let c = &mut config.audit;
        w.field(
            &m,
            "audit",
            "checkpoint_interval",
            &mut c.checkpoint_interval,
            |v| duration(v, Duration::from_secs(1), Duration::from_secs(86_400)),
        );
        w.field(
            &m,
            "audit",
            "signing_key_file",
            &mut c.signing_key_file,
            |v| path(v).map(Some),
        );
        w.field(
            &m,
            "audit",
            "retention_interval",
            &mut c.retention_interval,
            |v| duration(v, Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        );
    }
    if let Some(m) = w.section(&root, "", "log") {
        w.known_keys(&m, "log", &["format", "level"]);
        w.field(&m, "log", "format", &mut config.log.format, log_format);
        w.field(&m, "log", "level", &mut config.log.level, log_level);
    }
    if let Some(m) = w.section(&root, "", "auth") {
        tenants::parse_auth(&mut w, &m, &mut config.auth);
    }
    if let Some(v) = root.get("tenants") {
        tenants::parse_tenants(&mut w, v, "tenants", &mut config.tenants);
    }
    w.field(&root, "", "tenants_file", &mut config.tenants_file, |v| {
        path(v).map(Some)
    });
    if let Some(m) = w.section(&root, "", "query") {
        tenants::parse_query(&mut w, &m, &mut config.query);
    }
    if let Some(m) = w.section(&root, "", "reload") {
        tenants::parse_reload(&mut w, &m, &mut config.reload);
    }
    if let Some(m) = w.section(&root, "", "metrics") {
        tenants::parse_metrics(&mut w, &m, &mut config.metrics);
    }
    if let Some(m) = w.section(&root, "", "tracing") {
        tenants::parse_tracing(&mut w, &m, &mut config.tracing);
    }
    // With a tenants file, keys are checked once both are merged (`merge_tenants_file`).
    if config.tenants_file.is_none() {
        tenants::check_keys(&mut w, &config.auth, &config.tenants);
    }
    if w.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(w.errors))
    }
}

/// Parses a tenants file (a mapping of tenant id to settings) into `config`; a tenant listed in
/// both places is an error, and so is a key used twice anywhere.
pub(super) fn merge_tenants_file(text: &str, config: &mut Config) -> Result<(), ConfigErrors> {
    let root = yaml(text)?;
    let mut w = Walker::default();
    let mut extra = std::collections::BTreeMap::new();
    tenants::parse_tenants(&mut w, &root, "", &mut extra);
    for (id, policy) in extra {
        match config.tenants.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => {
                w.error(
                    e.key().as_str(),
                    "tenant also listed in the main config file",
                );
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(policy);
            }
        }
    }
    tenants::check_keys(&mut w, &config.auth, &config.tenants);
    if w.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(w.errors))
    }
}

#[derive(Default)]
pub(super) struct Walker {
    pub(super) errors: Vec<ConfigError>,
}

impl Walker {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn known_keys(&mut self, map: &Mapping, parent: &str, known: &[&str]) {
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => self.error(
                    &join(parent, k),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                ),
                None => self.error(parent, format!("keys must be strings, found {key:?}")),
            }
        }
    }

    pub(super) fn section(&mut self, map: &Mapping, parent: &str, key: &str) -> Option<Mapping> {
        match map.get(key)? {
            Value::Mapping(m) => Some(m.clone()),
            Value::Null => None,
            _ => {
                self.error(&join(parent, key), "expected a mapping");
                None
            }
        }
    }

    /// Parses `map[key]` into `slot` when present; records an error otherwise left default.
    pub(super) fn field<T>(
        &mut self,
        map: &Mapping,
        parent: &str,
        key: &str,
        slot: &mut T,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) {
        let Some(value) = map.get(key) else { return };
        match parse(value) {
            Ok(v) => *slot = v,
            Err(message) => self.error(&join(parent, key), message),
        }
    }
}

pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn string(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, found {}", describe(value)))
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

fn socket_addr(value: &Value) -> Result<SocketAddr, String> {
    let s = string(value)?;
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:4317 or [::1]:4317"))
}

pub(super) fn path(value: &Value) -> Result<PathBuf, String> {
    let s = string(value)?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(s))
}

pub(super) fn integer(value: &Value, min: u64, max: u64) -> Result<usize, String> {
    let n = value
        .as_u64()
        .ok_or_else(|| format!("expected a whole number, found {}", describe(value)))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    usize::try_from(n).map_err(|_| format!("{n} is too large for this machine"))
}

pub(super) fn duration(value: &Value, min: Duration, max: Duration) -> Result<Duration, String> {
    let s = string(value)?;
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 200ms or 5s: {e}"))?;
    if d < min || d > max {
        return Err(format!(
            "{s} is out of range {}..={}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// A byte size: a whole number of bytes, or a string with a unit (`512KiB`, `16MiB`, `1GB`).
pub(crate) fn byte_size(value: &Value) -> Result<u64, String> {
    if let Some(n) = value.as_u64() {
        return if n == 0 {
            Err("must be greater than 0".into())
        } else {
            Ok(n)
        };
    }
    let s = string(value)?;
    parse_byte_size(s).ok_or_else(|| {
        format!("{s:?} is not a size like 1048576, 512KiB, 16MiB or 1GB (and must be > 0)")
    })
}

pub(crate) fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(multiplier).filter(|&b| b > 0)
}

/// An instance id: what a host name may hold (it becomes part of a checkpoint's origin line).
pub(crate) fn instance_id(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an instance id (letters, digits, '.', '-', '_'; at most 253)"
        ))
    }
}

fn log_format(value: &Value) -> Result<LogFormat, String> {
    match string(value)? {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "{other:?} is not a log format; expected text or json"
        )),
    }
}

fn log_level(value: &Value) -> Result<String, String> {
    let s = string(value)?;
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{s:?} is not a log filter: {e}"))
}
