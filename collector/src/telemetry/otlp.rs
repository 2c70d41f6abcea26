//! OTLP metrics → series of the [`super::series::SeriesStore`], named as the OpenTelemetry →
//! Prometheus compatibility specification says.
//!
//! - Names: characters outside `[a-zA-Z0-9_:]` become `_` (runs collapse), a leading digit gets a
//!   `_`; the unit is appended as a word (`s` → `_seconds`, `By` → `_bytes`, `m/s` →
//!   `_meters_per_second`, `{requests}` annotations dropped), `1` on a gauge → `_ratio`; monotonic
//!   sums end in `_total`.
//! - Labels: attribute keys sanitised the same way (a leading digit gets `key_`, a leading `__`
//!   gets `key`), colliding keys' values joined with `;`; `job` (`service.namespace/service.name`)
//!   and `instance` (`service.instance.id`) from the resource; `tenant` from tenancy. Attributes
//!   that would clash with `tenant`, `le`, `job`, `instance` or `otel_metric_overflow` are renamed
//!   `exported_<key>`. Other resource attributes go to one `target_info` series per resource.
//! - Kinds: a monotonic sum is a counter, a non-monotonic sum and a gauge are gauges, a histogram
//!   is a histogram; an exponential histogram becomes a histogram with one bucket per exponential
//!   bucket (upper bounds `base^(index+1)`, the zero bucket at the zero threshold). Delta
//!   temporality is accumulated, cumulative replaces. Summaries are refused (not supported), as
//!   are points without a value, unknown temporality, malformed buckets and names in our own
//!   `tenantscope_` namespace. A point flagged "no recorded value" is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use audit_store::TenantId;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::series::{Buckets, Kind, Labels, Point, Update};
use crate::otlp::any_value;

/// The most buckets an exponential histogram may convert to.
const MAX_BUCKETS: usize = 1_000;
const FLAG_NO_RECORDED_VALUE: u32 = 1;
const RESERVED: [&str; 5] = ["tenant", "le", "job", "instance", "otel_metric_overflow"];

/// The `job`/`instance` labels of a resource and its `target_info` point.
pub struct Target {
    labels: Labels,
}

impl Target {
    pub fn new(resource: Option<&Resource>) -> Self {
        let attrs = resource.map_or(&[][..], |r| &r.attributes);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| any_value::to_text(kv.value.as_ref()))
                .map(|text| text.into_owned())
        };
        let mut labels = Vec::new();
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name),
            _ => None,
        };
        if let Some(instance) = get("service.instance.id") {
            labels.push(("instance".to_owned(), instance));
        }
        if let Some(job) = job {
            labels.push(("job".to_owned(), job));
        }
        Self { labels }
    }

    /// The `target_info` point of this resource: its attributes other than those that make
    /// `job` and `instance` (and the tenant), value 1.
    pub fn info(&self, tenant: &TenantId, resource: Option<&Resource>) -> Option<Point> {
        let attrs: Vec<&KeyValue> = resource
            .map_or(&[][..], |r| &r.attributes)
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id" | "tenant.id"
                )
            })
            .collect();
        if attrs.is_empty() && self.labels.is_empty() {
            return None;
        }
        let mut labels = attributes(attrs.into_iter());
        labels.extend(self.labels.iter().cloned());
        labels.sort();
        Some(Point {
            family: "target_info".into(),
            help: "Target metadata: the resource attributes of each OTLP sender.".into(),
            kind: Kind::Gauge,
            tenant: tenant.to_string(),
            labels,
            update: Update::Set(1.0),
        })
    }
}

/// Appends the points of one OTLP metric to `points`; returns one message per refused data
/// point.
pub fn translate(
    tenant: &TenantId,
    target: &Target,
    metric: &Metric,
    points: &mut Vec<Point>,
) -> Vec<String> {
    let Some(data) = &metric.data else {
        return vec![format!("metric {:?} has no data", metric.name)];
    };
    let count = data_points(data);
    let Some((kind, monotonic, temporality)) = shape(data) else {
        return vec![format!("metric {:?}: summaries are not supported", metric.name); count];
    };
    let name = match metric_name(&metric.name, &metric.unit, kind, monotonic) {
        Ok(n) => n,
        Err(e) => return vec![e; count],
    };
    let delta = match temporality.map(AggregationTemporality::try_from) {
        None => false,
        Some(Ok(AggregationTemporality::Delta)) => true,
        Some(Ok(AggregationTemporality::Cumulative)) => false,
        Some(_) => {
            return vec![
                format!("metric {:?}: unknown aggregation temporality", metric.name);
                count
            ];
        }
    };
    let help = if metric.description.is_empty() {
        metric.name.clone()
    } else {
        metric.description.clone()
    };
    let mut refused = Vec::new();
    each_update(data, delta, |attrs, update| match update {
        Ok(Some(update)) => {
            let mut labels = attributes(attrs.iter());
            labels.extend(target.labels.iter().cloned());
            labels.sort();
            points.push(Point {
                family: name.clone(),
                help: help.clone(),
                kind,
                tenant: tenant.to_string(),
                labels,
                update,
            });
        }
        Ok(None) => {}
        Err(e) => refused.push(format!("metric {:?}: {e}", metric.name)),
    });
    refused
}

/// The series kind, monotonicity and aggregation temporality of `data`; `None` for a summary.
fn shape(data: &Data) -> Option<(Kind, bool, Option<i32>)> {
    Some(match data {
        Data::Gauge(_) => (Kind::Gauge, false, None),
        Data::Sum(s) => (
            if s.is_monotonic {
                Kind::Counter
            } else {
                Kind::Gauge
            },
            s.is_monotonic,
            Some(s.aggregation_temporality),
        ),
        Data::Histogram(h) => (Kind::Histogram, false, Some(h.aggregation_temporality)),
        Data::ExponentialHistogram(h) => (Kind::Histogram, false, Some(h.aggregation_temporality)),
        Data::Summary(_) => return None,
    })
}

/// Calls `f` with each data point's attributes and its series update (`None` for a point without
/// a recorded value), or why it cannot be one. Delta points add; cumulative ones and gauges set.
fn each_update(
    data: &Data,
    delta: bool,
    mut f: impl FnMut(&[KeyValue], Result<Option<Update>, String>),
) {
    let add_or_set = |v: f64| {
        if delta {
            Update::Add(v)
        } else {
            Update::Set(v)
        }
    };
    let histogram = |b: Buckets| {
        if delta {
            Update::AddHistogram(b)
        } else {
            Update::SetHistogram(b)
        }
    };
    match data {
        Data::Gauge(g) => {
            for p in &g.data_points {
                f(&p.attributes, number(p).map(|v| v.map(Update::Set)));
            }
        }
        Data::Sum(s) => {
            for p in &s.data_points {
                f(&p.attributes, number(p).map(|v| v.map(add_or_set)));
            }
        }
        Data::Histogram(h) => {
            for p in &h.data_points {
                f(&p.attributes, explicit(p).map(|b| b.map(histogram)));
            }
        }
        Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                f(&p.attributes, exponential(p).map(|b| b.map(histogram)));
            }
        }
        Data::Summary(_) => {}
    }
}

/// Data points of a metric.
pub fn data_points(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

fn number(p: &NumberDataPoint) -> Result<Option<f64>, String> {
    if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => Ok(Some(v)),
        Some(number_data_point::Value::AsInt(v)) => Ok(Some(v as f64)),
        None => Err("a data point has no value (asInt or asDouble)".into()),
    }
}

fn explicit(p: &HistogramDataPoint) -> Result<Option<Buckets>, String> {
    if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let bounds = &p.explicit_bounds;
    let increasing = |a: f64, b: f64| a.partial_cmp(&b) == Some(std::cmp::Ordering::Less);
    if !bounds.windows(2).all(|w| increasing(w[0], w[1])) || bounds.iter().any(|b| b.is_nan()) {
        return Err("histogram bounds must increase".into());
    }
    let counts = if p.bucket_counts.is_empty() {
        let mut c = vec![0; bounds.len() + 1];
        c[bounds.len()] = p.count;
        c
    } else if p.bucket_counts.len() == bounds.len() + 1 {
        p.bucket_counts.clone()
    } else {
        return Err(format!(
            "a histogram has {} bucket counts for {} bounds (want bounds + 1)",
            p.bucket_counts.len(),
            bounds.len()
        ));
    };
    // Checked: counts near u64::MAX must not wrap round to a matching total.
    if counts.iter().try_fold(0u64, |a, &c| a.checked_add(c)) != Some(p.count) {
        return Err("histogram bucket counts do not add up to its count".into());
    }
    Ok(Some(Buckets {
        bounds: Arc::from(bounds.as_slice()),
        counts,
        sum: p.sum.unwrap_or(0.0),
        count: p.count,
    }))
}

fn exponential(p: &ExponentialHistogramDataPoint) -> Result<Option<Buckets>, String> {
    if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    if !(-10..=20).contains(&p.scale) {
        return Err(format!(
            "exponential histogram scale {} is out of range -10..=20",
            p.scale
        ));
    }
    let base = 2f64.powf(2f64.powi(-p.scale));
    // (upper bound, count), increasing bounds.
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    if let Some(neg) = &p.negative {
        // Index i holds values in [-base^(i+1), -base^i): upper bound -base^i.
        for (k, &c) in neg.bucket_counts.iter().enumerate().rev() {
            let i = neg.offset as f64 + k as f64;
            buckets.push((-base.powf(i), c));
        }
    }
    buckets.push((p.zero_threshold.max(0.0), p.zero_count));
    if let Some(pos) = &p.positive {
        for (k, &c) in pos.bucket_counts.iter().enumerate() {
            let i = pos.offset as f64 + k as f64;
            buckets.push((base.powf(i + 1.0), c));
        }
    }
    if buckets.len() > MAX_BUCKETS {
        return Err(format!(
            "an exponential histogram converts to {} buckets; at most {MAX_BUCKETS}",
            buckets.len()
        ));
    }
    if buckets.iter().try_fold(0u64, |a, b| a.checked_add(b.1)) != Some(p.count) {
        return Err("exponential histogram bucket counts do not add up to its count".into());
    }
    // Bounds must strictly increase; float rounding at extreme scales could tie them.
    if !buckets
        .windows(2)
        .all(|w| w[0].0.partial_cmp(&w[1].0) == Some(std::cmp::Ordering::Less))
    {
        return Err("exponential histogram buckets do not have increasing bounds".into());
    }
    let mut counts: Vec<u64> = buckets.iter().map(|b| b.1).collect();
    counts.push(0);
    Ok(Some(Buckets {
        bounds: buckets.iter().map(|b| b.0).collect(),
        counts,
        sum: p.sum.unwrap_or(0.0),
        count: p.count,
    }))
}

/// The Prometheus name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: Kind, monotonic: bool) -> Result<String, String> {
    let mut n = sanitize(name);
    if n.is_empty() || n == "_" {
        return Err(format!("metric name {name:?} is empty after translation"));
    }
    if monotonic && let Some(stripped) = n.strip_suffix("_total") {
        n = stripped.to_owned();
    }
    let unit = unit_suffix(unit, kind);
    if let Some(unit) = unit
        && !n.ends_with(&format!("_{unit}"))
    {
        n = format!("{n}_{unit}");
    }
    if monotonic {
        n.push_str("_total");
    }
    if n.starts_with("tenantscope_") || n == "target_info" {
        return Err(format!(
            "metric name {name:?} translates to {n:?}, which is reserved for tenantscope"
        ));
    }
    Ok(n)
}

fn unit_suffix(unit: &str, kind: Kind) -> Option<String> {
    // Drop `{annotations}`.
    let mut clean = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = (depth - 1_i32).max(0),
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let clean = clean.trim();
    if clean.is_empty() {
        return None;
    }
    if clean == "1" {
        return (kind == Kind::Gauge).then(|| "ratio".to_owned());
    }
    let word = |u: &str| -> String {
        match u {
            "d" => "days".into(),
            "h" => "hours".into(),
            "min" => "minutes".into(),
            "s" => "seconds".into(),
            "ms" => "milliseconds".into(),
            "us" => "microseconds".into(),
            "ns" => "nanoseconds".into(),
            "By" => "bytes".into(),
            "KiBy" => "kibibytes".into(),
            "MiBy" => "mebibytes".into(),
            "GiBy" => "gibibytes".into(),
            "TiBy" => "tibibytes".into(),
            "KBy" => "kilobytes".into(),
            "MBy" => "megabytes".into(),
            "GBy" => "gigabytes".into(),
            "TBy" => "terabytes".into(),
            "m" => "meters".into(),
            "V" => "volts".into(),
            "A" => "amperes".into(),
            "J" => "joules".into(),
            "W" => "watts".into(),
            "g" => "grams".into(),
            "Cel" => "celsius".into(),
            "Hz" => "hertz".into(),
            "%" => "percent".into(),
            other => sanitize(other),
        }
    };
    let per = |u: &str| -> String {
        match u {
            "s" => "second".into(),
            "m" => "minute".into(),
            "h" => "hour".into(),
            "d" => "day".into(),
            "w" => "week".into(),
            "mo" => "month".into(),
            "y" => "year".into(),
            other => sanitize(other),
        }
    };
    let out = match clean.split_once('/') {
        Some((a, b)) if !a.is_empty() => format!("{}_per_{}", word(a), per(b)),
        Some((_, b)) => format!("per_{}", per(b)),
        None => word(clean),
    };
    let out = out.trim_matches('_').to_owned();
    (!out.is_empty()).then_some(out)
}

/// `[a-zA-Z0-9_:]` only, runs of `_` collapsed, no leading digit.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Labels of data point attributes.
fn attributes<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Labels {
    let mut by_key: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for kv in attrs {
        let mut key: String = kv
            .key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if key.starts_with(|c: char| c.is_ascii_digit()) {
            key = format!("key_{key}");
        } else if key.starts_with("__") {
            key = format!("key{key}");
        }
        if key.is_empty() {
            continue;
        }
        if RESERVED.contains(&key.as_str()) {
            key = format!("exported_{key}");
        }
        let value = any_value::to_text(kv.value.as_ref()).unwrap_or_default();
        let value = value.into_owned();
        by_key.entry(key).or_default().push((kv.key.clone(), value));
    }
    by_key
        .into_iter()
        .map(|(k, mut values)| {
            values.sort();
            let joined = values
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(";");
            (k, joined)
        })
        .collect()
}

#[cfg(test)]
mod tests;
