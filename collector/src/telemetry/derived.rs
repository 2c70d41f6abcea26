//! Metrics derived from what tenants send, gathered per request and applied to the
//! [`SeriesStore`] once the request is stored (never for refused records):
//!
//! - from spans, RED metrics by tenant, `service_name`, `span_name`, `span_kind` and
//!   `status_code` — `tenantscope_span_calls_total` and the `tenantscope_span_duration_seconds`
//!   histogram (buckets from `metrics.span_duration_buckets`), as the OTel Collector's
//!   spanmetrics connector names them;
//! - from logs, `tenantscope_log_records_total` by tenant, `service_name` and `severity` (the
//!   severity number's range: TRACE, DEBUG, INFO, WARN, ERROR, FATAL, UNSPECIFIED);
//! - from events, `tenantscope_events_total` by tenant and `event_name`.
//!
//! A request aggregates into a small map first, so the store's lock is taken once per request.

use std::collections::HashMap;
use std::sync::Arc;

use audit_store::TenantId;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::catalog::names;
use super::series::{Buckets, Kind, Point, Update};
use crate::otlp::trace::{span_kind, status_code};

/// The `severity` label values, indexed by [`severity_index`].
const SEVERITIES: [&str; 7] = [
    "UNSPECIFIED",
    "TRACE",
    "DEBUG",
    "INFO",
    "WARN",
    "ERROR",
    "FATAL",
];

/// Log records of one resource by severity (see [`severity_index`]), counted without allocating.
pub type SeverityCounts = [u64; 7];

/// The index in [`SeverityCounts`] of an OTLP severity number's range.
pub fn severity_index(severity_number: i32) -> usize {
    match severity_number {
        1..=24 => ((severity_number - 1) / 4 + 1) as usize,
        _ => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SpanKey {
    tenant: TenantId,
    service: String,
    name: String,
    kind: &'static str,
    status: &'static str,
}

/// What one request contributes to the derived metrics (and, for OTLP metrics, its points).
#[derive(Debug)]
pub struct DerivedBatch {
    bounds: Arc<[f64]>,
    spans: HashMap<SpanKey, Buckets>,
    logs: HashMap<(TenantId, String, &'static str), u64>,
    events: HashMap<(TenantId, String), u64>,
    /// OTLP metric data points, already translated.
    pub points: Vec<Point>,
}

impl DerivedBatch {
    /// `bounds`: the span duration buckets, in seconds.
    pub fn new(bounds: Arc<[f64]>) -> Self {
        Self {
            bounds,
            spans: HashMap::new(),
            logs: HashMap::new(),
            events: HashMap::new(),
            points: Vec::new(),
        }
    }

    pub fn span(&mut self, tenant: &TenantId, service: &str, span: &Span) {
        let key = SpanKey {
            tenant: tenant.clone(),
            service: service.to_owned(),
            name: span.name.clone(),
            kind: span_kind(span.kind),
            status: status_code(span.status.as_ref().map_or(0, |s| s.code)),
        };
        let seconds = if span.start_time_unix_nano > 0 {
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano) as f64
                / 1e9
        } else {
            0.0
        };
        let bounds = &self.bounds;
        self.spans
            .entry(key)
            .or_insert_with(|| Buckets::new(bounds.clone()))
            .observe(seconds);
    }

    /// Adds a resource's log records, counted by [`severity_index`].
    pub fn logs(&mut self, tenant: &TenantId, service: &str, counts: &SeverityCounts) {
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 {
                *self
                    .logs
                    .entry((tenant.clone(), service.to_owned(), SEVERITIES[i]))
                    .or_default() += n;
            }
        }
    }

    pub fn event(&mut self, tenant: &TenantId, name: &str) {
        *self
            .events
            .entry((tenant.clone(), name.to_owned()))
            .or_default() += 1;
    }

    /// The series updates of everything gathered.
    pub fn into_points(self) -> Vec<Point> {
        let mut points = self.points;
        let point = |family: &str, help: &str, kind, tenant: &TenantId, labels, update| Point {
            family: family.to_owned(),
            help: help.to_owned(),
            kind,
            tenant: tenant.to_string(),
            labels,
            update,
        };
        for (key, buckets) in self.spans {
            let labels = vec![
                ("service_name".to_owned(), key.service),
                ("span_kind".to_owned(), key.kind.to_owned()),
                ("span_name".to_owned(), key.name),
                ("status_code".to_owned(), key.status.to_owned()),
            ];
            points.push(point(
                names::SPAN_CALLS,
                "Spans received, by tenant, service, span name, kind and status.",
                Kind::Counter,
                &key.tenant,
                labels.clone(),
                Update::Add(buckets.count as f64),
            ));
            points.push(point(
                names::SPAN_DURATION,
                "Span durations (end - start), by tenant, service, span name, kind and status.",
                Kind::Histogram,
                &key.tenant,
                labels,
                Update::AddHistogram(buckets),
            ));
        }
        for ((tenant, service, severity), n) in self.logs {
            points.push(point(
                names::LOG_RECORDS,
                "Log records received (events excluded), by tenant, service and severity.",
                Kind::Counter,
                &tenant,
                vec![
                    ("service_name".to_owned(), service),
                    ("severity".to_owned(), severity.to_owned()),
                ],
                Update::Add(n as f64),
            ));
        }
        for ((tenant, name), n) in self.events {
            points.push(point(
                names::EVENTS,
                "Domain events received, by tenant and event name.",
                Kind::Counter,
                &tenant,
                vec![("event_name".to_owned(), name)],
                Update::Add(n as f64),
            ));
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranges() {
        let label = |n| SEVERITIES[severity_index(n)];
        let table = [
            (0, "UNSPECIFIED"),
            (1, "TRACE"),
            (4, "TRACE"),
            (5, "DEBUG"),
            (9, "INFO"),
            (12, "INFO"),
            (13, "WARN"),
            (17, "ERROR"),
            (21, "FATAL"),
            (24, "FATAL"),
            (25, "UNSPECIFIED"),
            (-3, "UNSPECIFIED"),
        ];
        for (n, want) in table {
            assert_eq!(label(n), want, "{n}");
        }
    }
}
