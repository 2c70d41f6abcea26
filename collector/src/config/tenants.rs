//! Parsing the `auth`, `tenants`, `query` and `reload` sections into the types of
//! [`super::policy`].
//!
//! Pure like the rest of [`super::parse`]: secrets are never read here.

use std::collections::BTreeMap;
use std::time::Duration;

use audit_store::TenantId;
use serde_yaml_ng::{Mapping, Value};

use super::policy::{
    ApiKey, Auth, DurabilityClass, KeyHash, MetricsConfig, QueryLimits, Reload, Roles, SelfTracing,
    Signals, TenantLimits, TenantPolicy,
};
use super::walker::{Walker, byte_size, describe, duration, integer, join, list, string};

pub(super) fn parse_auth(w: &mut Walker, m: &Mapping, auth: &mut Auth) {
    w.known_keys(m, "auth", &["admin_keys", "max_failures_per_minute"]);
    if let Some(v) = m.get("admin_keys") {
        auth.admin_keys = list(w, v, "auth.admin_keys", |w, p, item| {
            match string(item).and_then(KeyHash::parse) {
                Ok(h) => Some(h),
                Err(e) => {
                    w.error(p, e);
                    None
                }
            }
        });
    }
    w.field(
        m,
        "auth",
        "max_failures_per_minute",
        &mut auth.max_failures_per_minute,
        |v| integer(v, 1, 1_000_000).map(|n| n as u32),
    );
}

pub(super) fn parse_query(w: &mut Walker, m: &Mapping, q: &mut QueryLimits) {
    w.known_keys(
        m,
        "query",
        &["timeout", "memory_limit", "max_sql_length", "threads"],
    );
    w.field(m, "query", "timeout", &mut q.timeout, |v| {
        duration(v, Duration::from_millis(10), Duration::from_secs(3600))
    });
    w.field(m, "query", "memory_limit", &mut q.memory_limit, byte_size);
    w.field(m, "query", "max_sql_length", &mut q.max_sql_length, |v| {
        byte_size(v).and_then(|n| usize::try_from(n).map_err(|_| "too large".to_string()))
    });
    w.field(m, "query", "threads", &mut q.threads, |v| {
        integer(v, 1, 256)
    });
}

pub(super) fn parse_reload(w: &mut Walker, m: &Mapping, r: &mut Reload) {
    w.known_keys(m, "reload", &["watch_interval"]);
    w.field(m, "reload", "watch_interval", &mut r.watch_interval, |v| {
        if v.as_str() == Some("off") {
            return Ok(None);
        }
        duration(v, Duration::from_millis(100), Duration::from_secs(3600)).map(Some)
    });
}

/// Parses a mapping of tenant id → policy (the `tenants` section or a tenants file).
pub(super) fn parse_tenants(
    w: &mut Walker,
    value: &Value,
    parent: &str,
    out: &mut BTreeMap<TenantId, TenantPolicy>,
) {
    let Value::Mapping(m) = value else {
        if !value.is_null() {
            w.error(parent, "expected a mapping of tenant id to tenant settings");
        }
        return;
    };
    for (key, value) in m {
        let Some(id) = key.as_str() else {
            w.error(parent, format!("tenant ids must be strings, found {key:?}"));
            continue;
        };
        let p = join(parent, id);
        let tenant = match TenantId::parse(id) {
            Ok(t) => t,
            Err(e) => {
                w.error(&p, format!("invalid tenant id: {e}"));
                continue;
            }
        };
        let policy = match value {
            Value::Null => TenantPolicy::default(),
            Value::Mapping(m) => tenant_policy(w, m, &p),
            other => {
                w.error(&p, format!("expected a mapping, found {}", describe(other)));
                continue;
            }
        };
        // Ids differing only in case would share a directory on a case-insensitive filesystem
        // (macOS, Windows) and are easily confused: refused everywhere.
        if let Some(twin) = out
            .keys()
            .find(|t| t.as_str() != id && t.as_str().eq_ignore_ascii_case(id))
        {
            w.error(&p, format!("differs from tenant {twin} only in case"));
            continue;
        }
        if out.insert(tenant, policy).is_some() {
            w.error(&p, "tenant listed twice");
        }
    }
}

/// A tenant's `signals`: the list of what it may send.
fn signals(w: &mut Walker, v: &Value, kp: &str) -> Signals {
    let names = list(w, v, kp, |w, ip, item| match string(item) {
        Ok(s @ ("logs" | "traces" | "events" | "metrics")) => Some(s.to_owned()),
        Ok(other) => {
            w.error(
                ip,
                format!("unknown signal {other:?}; expected logs, traces, events or metrics"),
            );
            None
        }
        Err(e) => {
            w.error(ip, e);
            None
        }
    });
    let has = |s: &str| names.iter().any(|n| n == s);
    Signals {
        logs: has("logs"),
        traces: has("traces"),
        events: has("events"),
        metrics: has("metrics"),
    }
}

/// A tenant's `limits`: rates and bursts (a burst needs its rate), attributes per record.
fn tenant_limits(w: &mut Walker, limits: &Mapping, lp: &str, l: &mut TenantLimits) {
    w.known_keys(
        limits,
        lp,
        &[
            "records_per_second",
            "records_burst",
            "bytes_per_second",
            "bytes_burst",
            "max_attributes_per_record",
        ],
    );
    let count = |v: &Value| integer(v, 1, 1 << 40).map(|n| Some(n as u64));
    let bytes = |v: &Value| byte_size(v).map(Some);
    w.field(
        limits,
        lp,
        "records_per_second",
        &mut l.records_per_second,
        count,
    );
    w.field(limits, lp, "records_burst", &mut l.records_burst, count);
    w.field(
        limits,
        lp,
        "bytes_per_second",
        &mut l.bytes_per_second,
        bytes,
    );
    w.field(limits, lp, "bytes_burst", &mut l.bytes_burst, bytes);
    w.field(
        limits,
        lp,
        "max_attributes_per_record",
        &mut l.max_attributes_per_record,
        |v| integer(v, 1, 100_000),
    );
    if l.records_burst.is_some() && l.records_per_second.is_none() {
        w.error(&join(lp, "records_burst"), "needs records_per_second");
    }
    if l.bytes_burst.is_some() && l.bytes_per_second.is_none() {
        w.error(&join(lp, "bytes_burst"), "needs bytes_per_second");
    }
}

fn tenant_policy(w: &mut Walker, m: &Mapping, p: &str) -> TenantPolicy {
    let mut t = TenantPolicy::default();
    w.known_keys(
        m,
        p,
        &[
            "enabled",
            "keys",
            "signals",
            "limits",
            "redaction",
            "retention",
            "legal_hold",
            "durability",
        ],
    );
    w.field(m, p, "enabled", &mut t.enabled, |v| {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", describe(v)))
    });
    if let Some(v) = m.get("keys") {
        t.keys = list(w, v, &join(p, "keys"), api_key);
    }
    if let Some(v) = m.get("signals") {
        t.signals = signals(w, v, &join(p, "signals"));
    }
    if let Some(limits) = w.section(m, p, "limits") {
        tenant_limits(w, &limits, &join(p, "limits"), &mut t.limits);
    }
    if let Some(r) = w.section(m, p, "redaction") {
        t.redaction = super::redaction::redaction(w, &r, &join(p, "redaction"));
    }
    w.field(m, p, "retention", &mut t.retention, |v| {
        duration(
            v,
            Duration::from_secs(3600),
            Duration::from_secs(100 * 366 * 86_400),
        )
        .map(Some)
    });
    w.field(m, p, "legal_hold", &mut t.legal_hold, |v| {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", describe(v)))
    });
    w.field(m, p, "durability", &mut t.durability, |v| {
        match string(v)? {
            "sync" => Ok(DurabilityClass::Sync),
            other => Err(format!("unknown durability class {other:?}; expected sync")),
        }
    });
    t
}

fn api_key(w: &mut Walker, p: &str, item: &Value) -> Option<ApiKey> {
    let Value::Mapping(m) = item else {
        w.error(p, "expected a mapping with hash and roles");
        return None;
    };
    w.known_keys(m, p, &["hash", "roles"]);
    let hash = match m.get("hash").map(|v| string(v).and_then(KeyHash::parse)) {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            w.error(&join(p, "hash"), e);
            None
        }
        None => {
            w.error(p, "missing hash (sha256:<hex>, see `tenantscope hash-key`)");
            None
        }
    };
    let mut roles = Roles::default();
    match m.get("roles") {
        None => w.error(p, "missing roles (a list of ingest, query)"),
        Some(v) => {
            let rp = join(p, "roles");
            for role in list(w, v, &rp, |w, ip, item| match string(item) {
                Ok(s @ ("ingest" | "query")) => Some(s.to_owned()),
                Ok("admin") => {
                    w.error(ip, "admin keys are global: list them under auth.admin_keys");
                    None
                }
                Ok(other) => {
                    w.error(
                        ip,
                        format!("unknown role {other:?}; expected ingest or query"),
                    );
                    None
                }
                Err(e) => {
                    w.error(ip, e);
                    None
                }
            }) {
                match role.as_str() {
                    "ingest" => roles.ingest = true,
                    _ => roles.query = true,
                }
            }
        }
    }
    Some(ApiKey { hash: hash?, roles })
}

/// Errors that need the whole tenant table: a key hash used twice.
pub(super) fn check_keys(w: &mut Walker, auth: &Auth, tenants: &BTreeMap<TenantId, TenantPolicy>) {
    let mut seen: std::collections::HashMap<KeyHash, String> = std::collections::HashMap::new();
    for h in &auth.admin_keys {
        seen.insert(*h, "auth.admin_keys".into());
    }
    for (id, policy) in tenants {
        for (i, key) in policy.keys.iter().enumerate() {
            let here = format!("tenants.{id}.keys[{i}]");
            if let Some(first) = seen.insert(key.hash, here.clone()) {
                w.error(&here, format!("the same key is already used by {first}"));
            }
        }
    }
}

pub(super) fn parse_metrics(w: &mut Walker, m: &Mapping, c: &mut MetricsConfig) {
    let p = "metrics";
    w.known_keys(
        m,
        p,
        &[
            "max_series_per_tenant",
            "max_series_per_metric",
            "max_series",
            "max_families_per_tenant",
            "max_families",
            "max_tenant_labels",
            "stale_after",
            "span_duration_buckets",
        ],
    );
    w.field(
        m,
        p,
        "max_series_per_tenant",
        &mut c.max_series_per_tenant,
        |v| integer(v, 1, 10_000_000),
    );
    w.field(
        m,
        p,
        "max_series_per_metric",
        &mut c.max_series_per_metric,
        |v| integer(v, 1, 10_000_000),
    );
    w.field(m, p, "max_series", &mut c.max_series, |v| {
        integer(v, 1, 100_000_000)
    });
    w.field(
        m,
        p,
        "max_families_per_tenant",
        &mut c.max_families_per_tenant,
        |v| integer(v, 1, 1_000_000),
    );
    w.field(m, p, "max_families", &mut c.max_families, |v| {
        integer(v, 1, 10_000_000)
    });
    w.field(m, p, "max_tenant_labels", &mut c.max_tenant_labels, |v| {
        integer(v, 1, 1_000_000)
    });
    w.field(m, p, "stale_after", &mut c.stale_after, |v| {
        duration(v, Duration::from_secs(1), Duration::from_secs(86_400))
    });
    if let Some(v) = m.get("span_duration_buckets") {
        let kp = join(p, "span_duration_buckets");
        let buckets = list(w, v, &kp, |w, ip, item| {
            match duration(item, Duration::from_micros(1), Duration::from_secs(86_400)) {
                Ok(d) => Some(d.as_secs_f64()),
                Err(e) => {
                    w.error(ip, e);
                    None
                }
            }
        });
        if buckets.is_empty() || buckets.windows(2).any(|b| b[0] >= b[1]) {
            w.error(
                &kp,
                "expected a non-empty list of increasing durations like [5ms, 10ms, 1s]",
            );
        } else {
            c.span_duration_buckets = buckets;
        }
    }
    if c.max_series_per_metric > c.max_series_per_tenant {
        w.error(
            "metrics.max_series_per_metric",
            "must be at most metrics.max_series_per_tenant",
        );
    }
}

pub(super) fn parse_tracing(w: &mut Walker, m: &Mapping, t: &mut SelfTracing) {
    let p = "tracing";
    w.known_keys(m, p, &["otlp_endpoint", "tenant", "sample_ratio"]);
    w.field(m, p, "otlp_endpoint", &mut t.otlp_endpoint, |v| {
        let s = string(v)?;
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Ok(Some(s.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is not an endpoint like http://127.0.0.1:4317"
            )),
        }
    });
    w.field(m, p, "tenant", &mut t.tenant, |v| {
        TenantId::parse(string(v)?).map_err(|e| format!("invalid tenant id: {e}"))
    });
    w.field(m, p, "sample_ratio", &mut t.sample_ratio, |v| {
        match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!(
                "expected a number from 0 to 1, found {}",
                describe(v)
            )),
        }
    });
}
