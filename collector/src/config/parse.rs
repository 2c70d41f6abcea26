//! YAML text → [`Config`], collecting every error with its key path.
//!
//! Hand-walked rather than derived: serde stops at the first error, and a user fixing a config
//! wants all of them at once. Unknown keys are errors (a typo must not silently fall back to a
//! default).

use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::walker::{
    ConfigErrors, Walker, byte_size, duration, instance_id, integer, path, socket_addr, string,
    yaml,
};
use super::{Audit, Config, Connections, IngestLimits, Listen, LogFormat, Storage, tenants};

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
        parse_listen(&mut w, &m, &mut config.listen);
    }
    if let Some(m) = w.section(&root, "", "ingest") {
        parse_ingest(&mut w, &m, &mut config.ingest);
    }
    if let Some(m) = w.section(&root, "", "storage") {
        parse_storage(&mut w, &m, &mut config.storage);
    }
    if let Some(m) = w.section(&root, "", "audit") {
        parse_audit(&mut w, &m, &mut config.audit);
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

/// `listen`: the four listeners and how they treat connections.
fn parse_listen(w: &mut Walker, m: &Mapping, c: &mut Listen) {
    let keys = [
        "otlp_grpc",
        "otlp_http",
        "metrics",
        "api",
        "max_connections",
        "max_header_size",
        "header_read_timeout",
        "idle_timeout",
        "body_read_timeout",
        "http2_max_concurrent_streams",
        "http2_max_pending_accept_reset_streams",
        "http2_max_local_error_reset_streams",
        "keepalive_interval",
        "keepalive_timeout",
        "max_connection_age",
        "max_connection_age_grace",
    ];
    w.known_keys(m, "listen", &keys);
    w.field(m, "listen", "otlp_grpc", &mut c.otlp_grpc, socket_addr);
    w.field(m, "listen", "otlp_http", &mut c.otlp_http, socket_addr);
    w.field(m, "listen", "metrics", &mut c.metrics, socket_addr);
    w.field(m, "listen", "api", &mut c.api, socket_addr);
    parse_connections(w, m, &mut c.connections);
}

/// `listen.*` connection limits and timeouts.
fn parse_connections(w: &mut Walker, m: &Mapping, c: &mut Connections) {
    let p = "listen";
    w.field(m, p, "max_connections", &mut c.max_connections, |v| {
        integer(v, 1, 1_000_000)
    });
    w.field(m, p, "max_header_size", &mut c.max_header_size, |v| {
        let size = byte_size(v)?;
        u32::try_from(size)
            .ok()
            .filter(|s| (1024..=16 << 20).contains(s))
            .ok_or_else(|| format!("{size} bytes is out of range 1KiB..=16MiB"))
    });
    let count = |v: &Value| integer(v, 1, 1 << 20);
    let streams = &mut c.http2_max_concurrent_streams;
    w.field(m, p, "http2_max_concurrent_streams", streams, |v| {
        count(v).map(|n| n as u32)
    });
    let resets = &mut c.http2_max_pending_accept_reset_streams;
    w.field(
        m,
        p,
        "http2_max_pending_accept_reset_streams",
        resets,
        count,
    );
    let resets = &mut c.http2_max_local_error_reset_streams;
    w.field(m, p, "http2_max_local_error_reset_streams", resets, count);
    parse_connection_times(w, m, c);
}

/// `listen.*` timeouts, keepalive and connection age.
fn parse_connection_times(w: &mut Walker, m: &Mapping, c: &mut Connections) {
    let p = "listen";
    let between = |min_ms: u64, max_s: u64| {
        move |v: &Value| duration(v, Duration::from_millis(min_ms), Duration::from_secs(max_s))
    };
    let day = 86_400;
    let times = [
        ("header_read_timeout", &mut c.header_read_timeout, 100, day),
        ("idle_timeout", &mut c.idle_timeout, 100, 7 * day),
        ("body_read_timeout", &mut c.body_read_timeout, 100, day),
        (
            "keepalive_interval",
            &mut c.keepalive_interval,
            1000,
            7 * day,
        ),
        ("keepalive_timeout", &mut c.keepalive_timeout, 100, day),
        (
            "max_connection_age_grace",
            &mut c.max_connection_age_grace,
            0,
            day,
        ),
    ];
    for (key, slot, min_ms, max_s) in times {
        w.field(m, p, key, slot, between(min_ms, max_s));
    }
    w.field(
        m,
        p,
        "max_connection_age",
        &mut c.max_connection_age,
        |v| match v {
            Value::Null => Ok(None),
            v => between(1000, 365 * day)(v).map(Some),
        },
    );
}

/// `ingest`: request size limits (each at most its hard ceiling).
fn parse_ingest(w: &mut Walker, m: &Mapping, c: &mut IngestLimits) {
    let keys = [
        "max_request_body_size",
        "max_decompressed_body_size",
        "max_expanded_request_size",
        "max_value_depth",
        "max_attribute_key_length",
        "max_attribute_value_length",
        "max_value_elements",
        "max_records_per_request",
        "max_memory",
    ];
    w.known_keys(m, "ingest", &keys);
    let p = "ingest";
    w.field(
        m,
        p,
        "max_request_body_size",
        &mut c.max_request_body_size,
        byte_size,
    );
    w.field(
        m,
        p,
        "max_decompressed_body_size",
        &mut c.max_decompressed_body_size,
        byte_size,
    );
    w.field(
        m,
        p,
        "max_expanded_request_size",
        &mut c.max_expanded_request_size,
        byte_size,
    );
    w.field(m, p, "max_value_depth", &mut c.max_value_depth, |v| {
        integer(v, 1, super::MAX_VALUE_DEPTH as u64)
    });
    parse_record_limits(w, m, c);
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

/// `ingest.*` bounds on a record's values and a request's records.
fn parse_record_limits(w: &mut Walker, m: &Mapping, c: &mut IngestLimits) {
    let p = "ingest";
    let bytes = |v: &Value| {
        let size = byte_size(v)?;
        usize::try_from(size).map_err(|_| format!("{size} is too large for this machine"))
    };
    w.field(
        m,
        p,
        "max_attribute_key_length",
        &mut c.max_attribute_key_length,
        bytes,
    );
    let values = &mut c.max_attribute_value_length;
    w.field(m, p, "max_attribute_value_length", values, bytes);
    w.field(m, p, "max_value_elements", &mut c.max_value_elements, |v| {
        integer(v, 1, u32::MAX.into())
    });
    w.field(m, p, "max_memory", &mut c.max_memory, byte_size);
    let records = &mut c.max_records_per_request;
    w.field(m, p, "max_records_per_request", records, |v| {
        integer(v, 1, u32::MAX.into()).map(|n| n as u64)
    });
}

/// `storage`: where and how records are stored.
fn parse_storage(w: &mut Walker, m: &Mapping, c: &mut Storage) {
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
    w.known_keys(m, "storage", &keys);
    let p = "storage";
    w.field(m, p, "data_dir", &mut c.data_dir, path);
    w.field(m, p, "max_file_age", &mut c.max_file_age, |v| {
        duration(v, Duration::from_millis(1), Duration::from_secs(86_400))
    });
    w.field(m, p, "target_file_rows", &mut c.target_file_rows, |v| {
        integer(v, 1, 100_000_000)
    });
    w.field(
        m,
        p,
        "target_file_buffer_bytes",
        &mut c.target_file_buffer_bytes,
        byte_size,
    );
    w.field(
        m,
        p,
        "max_buffered_bytes",
        &mut c.max_buffered_bytes,
        byte_size,
    );
    w.field(m, p, "wal_segment_size", &mut c.wal_segment_size, byte_size);
    w.field(m, p, "queue_capacity", &mut c.queue_capacity, |v| {
        integer(v, 1, 1_000_000)
    });
    w.field(m, p, "zstd_level", &mut c.zstd_level, |v| {
        integer(v, 1, 22).map(|n| n as i32)
    });
    w.field(m, p, "instance_id", &mut c.instance_id, |v| {
        instance_id(string(v)?).map(Some)
    });
}

/// `audit`: checkpoints, the signing key, retention runs.
fn parse_audit(w: &mut Walker, m: &Mapping, c: &mut Audit) {
    let keys = [
        "checkpoint_interval",
        "signing_key_file",
        "retention_interval",
    ];
    w.known_keys(m, "audit", &keys);
    w.field(
        m,
        "audit",
        "checkpoint_interval",
        &mut c.checkpoint_interval,
        |v| duration(v, Duration::from_secs(1), Duration::from_secs(86_400)),
    );
    w.field(
        m,
        "audit",
        "signing_key_file",
        &mut c.signing_key_file,
        |v| path(v).map(Some),
    );
    w.field(
        m,
        "audit",
        "retention_interval",
        &mut c.retention_interval,
        |v| duration(v, Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
    );
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
