//! The series behind the tenant-facing half of `/metrics`: metrics derived from what tenants send
//! and the OTLP metrics they send, each series labelled with its `tenant`, within budgets.
//!
//! `metrics-exporter-prometheus` (which renders the daemon's own metrics, see [`super::catalog`])
//! can neither take pre-aggregated histograms nor bound cardinality per tenant, so this module
//! keeps its own table and writes the Prometheus text format for it.
//!
//! Budgets ([`MetricsConfig`]): a tenant may own `max_series_per_tenant` series in all and
//! `max_series_per_metric` in one metric, the whole table `max_series`; a new series past a budget
//! is folded into its metric's single `otel_metric_overflow="true"` series for that tenant and
//! counted in `tenantscope_metrics_series_overflow_total`. Past `max_tenant_labels` distinct tenants the
//! label value is `__other__`. So one tenant's explosion costs a bounded amount of memory and never
//! evicts another tenant's series. Metric names are bounded too: a point of a metric its tenant
//! has no series in is refused (reason `metric_families`) once the tenant has series in
//! `max_families_per_tenant` metrics, or the table holds `max_families`. A series not updated for
//! `stale_after` is dropped.
//!
//! The overflow series accumulates additive updates (counter increments, delta sums, histogram
//! observations); a cumulative value or a gauge reading that lands there only counts as
//! collapsed, since summing absolute values of unknown series would be wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::MetricsConfig;

pub const TENANT_LABEL: &str = "tenant";
pub const OTHER_TENANT: &str = "__other__";
pub const OVERFLOW_LABEL: &str = "otel_metric_overflow";
/// The counter of series folded into an overflow series, by tenant.
pub const OVERFLOW_COUNTER: &str = "tenantscope_metrics_series_overflow_total";

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A series' labels other than `tenant`, sorted by name.
pub type Labels = Vec<(String, String)>;

/// Histogram counts: one per bucket of `bounds` (upper bounds, increasing) plus the +Inf bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub bounds: Arc<[f64]>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Buckets {
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let n = bounds.len() + 1;
        Self {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Adds `other`'s counts; bucket by bucket when the bounds agree, else each of `other`'s
    /// buckets into the bucket of ours that holds its upper bound. Counts saturate at u64::MAX
    /// (a sender's absurd deltas must not wrap a series round, nor panic).
    fn add(&mut self, other: &Buckets) {
        if self.bounds == other.bounds {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a = a.saturating_add(*b);
            }
        } else {
            for (i, &c) in other.counts.iter().enumerate() {
                let upper = other.bounds.get(i).copied().unwrap_or(f64::INFINITY);
                let j = self.bounds.partition_point(|&b| b < upper);
                self.counts[j] = self.counts[j].saturating_add(c);
            }
        }
        self.sum += other.sum;
        self.count = self.count.saturating_add(other.count);
    }
}

/// What a data point does to its series.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Add to a counter.
    Add(f64),
    /// Set a counter (cumulative) or a gauge.
    Set(f64),
    /// Add observations to a histogram.
    AddHistogram(Buckets),
    /// Replace a histogram's state (cumulative).
    SetHistogram(Buckets),
}

/// One update of one series.
#[derive(Debug, Clone)]
pub struct Point {
    pub family: String,
    pub help: String,
    pub kind: Kind,
    pub tenant: String,
    pub labels: Labels,
    pub update: Update,
}

/// Why a point was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("metric {family:?} is already a {existing}; a {new} of the same name is refused")]
    KindConflict {
        family: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error("metric {family:?} would be more than {limit} metric names ({key})")]
    TooManyFamilies {
        family: String,
        limit: usize,
        key: &'static str,
    },
}

impl PointError {
    /// The `reason` label the refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            PointError::KindConflict { .. } => "invalid_record",
            PointError::TooManyFamilies { .. } => "metric_families",
        }
    }
}

#[derive(Debug)]
enum Value {
    Number(f64),
    Histogram(Buckets),
}

#[derive(Debug)]
struct Series {
    value: Value,
    updated: Instant,
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: HashMap<(String, Labels), Series>,
    per_tenant: HashMap<String, usize>,
}

#[derive(Debug, Default)]
struct Table {
    families: BTreeMap<String, Family>,
    /// Families each tenant has series in.
    families_of: HashMap<String, usize>,
    per_tenant: HashMap<String, usize>,
    total: usize,
    tenants: HashSet<String>,
    overflowed: HashMap<String, u64>,
}

/// The series table.
pub struct SeriesStore {
    config: MetricsConfig,
    /// Beyond this many series in all, every new series overflows.
    max_series: usize,
    table: Mutex<Table>,
}

impl SeriesStore {
    pub fn new(config: MetricsConfig) -> Self {
        let max_series = config.max_series;
        Self {
            config,
            max_series,
            table: Mutex::new(Table::default()),
        }
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Applies `points` under one lock; returns the index and error of each refused point, in
    /// point order.
    pub fn apply(&self, points: Vec<Point>, now: Instant) -> Vec<(usize, PointError)> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut refused = Vec::new();
        for (i, point) in points.into_iter().enumerate() {
            if let Err(e) = self.apply_one(&mut table, point, now) {
                refused.push((i, e));
            }
        }
        refused
    }

    fn apply_one(&self, t: &mut Table, p: Point, now: Instant) -> Result<(), PointError> {
        let tenant = if t.tenants.contains(&p.tenant) {
            p.tenant
        } else if t.tenants.len() < self.config.max_tenant_labels {
            t.tenants.insert(p.tenant.clone());
            p.tenant
        } else {
            OTHER_TENANT.to_owned()
        };
        self.check_family_budgets(t, &tenant, &p.family)?;
        let family = t
            .families
            .entry(p.family.clone())
            .or_insert_with(|| Family {
                help: p.help.clone(),
                kind: p.kind,
                series: HashMap::new(),
                per_tenant: HashMap::new(),
            });
        if family.kind != p.kind {
            return Err(PointError::KindConflict {
                family: p.family,
                existing: family.kind.as_str(),
                new: p.kind.as_str(),
            });
        }
        let key = (tenant, p.labels);
        if let Some(series) = family.series.get_mut(&key) {
            update(series, p.update, now, false);
            return Ok(());
        }
        let (tenant, _) = &key;
        let tenant_total = t.per_tenant.get(tenant).copied().unwrap_or(0);
        let in_family = family.per_tenant.get(tenant).copied().unwrap_or(0);
        let fits = tenant_total < self.config.max_series_per_tenant
            && in_family < self.config.max_series_per_metric
            && t.total < self.max_series;
        let key = if fits {
            key
        } else {
            *t.overflowed.entry(key.0.clone()).or_default() += 1;
            (key.0, vec![(OVERFLOW_LABEL.to_owned(), "true".to_owned())])
        };
        let overflow = !fits;
        if let Some(series) = family.series.get_mut(&key) {
            update(series, p.update, now, overflow);
            return Ok(());
        }
        // A new series: a real one within budget, or the first overflow series of this
        // (tenant, family) — at most one each, so bounded too.
        *t.per_tenant.entry(key.0.clone()).or_default() += 1;
        let in_family = family.per_tenant.entry(key.0.clone()).or_default();
        if *in_family == 0 {
            *t.families_of.entry(key.0.clone()).or_default() += 1;
        }
        *in_family += 1;
        t.total += 1;
        let mut series = Series {
            value: match &p.update {
                Update::AddHistogram(b) | Update::SetHistogram(b) => {
                    Value::Histogram(Buckets::new(b.bounds.clone()))
                }
                _ => Value::Number(0.0),
            },
            updated: now,
        };
        update(&mut series, p.update, now, overflow);
        family.series.insert(key, series);
        Ok(())
    }

    /// Refuses a point of a family `tenant` has no series in yet when that tenant, or the table,
    /// is at its family budget (`metrics.max_families_per_tenant`, `metrics.max_families`).
    fn check_family_budgets(&self, t: &Table, tenant: &str, name: &str) -> Result<(), PointError> {
        let family = t.families.get(name);
        let refuse = |limit, key| {
            Err(PointError::TooManyFamilies {
                family: name.to_owned(),
                limit,
                key,
            })
        };
        if family.is_none() && t.families.len() >= self.config.max_families {
            return refuse(self.config.max_families, "metrics.max_families");
        }
        let has_series = family.is_some_and(|f| f.per_tenant.get(tenant).is_some_and(|n| *n > 0));
        let families = t.families_of.get(tenant).copied().unwrap_or(0);
        if !has_series && families >= self.config.max_families_per_tenant {
            return refuse(
                self.config.max_families_per_tenant,
                "metrics.max_families_per_tenant",
            );
        }
        Ok(())
    }

    /// Drops series not updated within `stale_after`.
    pub fn expire(&self, now: Instant) {
        let Some(cutoff) = now.checked_sub(self.config.stale_after) else {
            return;
        };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let Table {
            families,
            families_of,
            per_tenant,
            total,
            ..
        } = &mut *table;
        for family in families.values_mut() {
            family.series.retain(|(tenant, _), s| {
                let keep = s.updated >= cutoff;
                if !keep {
                    if let Some(n) = per_tenant.get_mut(tenant) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(n) = family.per_tenant.get_mut(tenant) {
                        *n = n.saturating_sub(1);
                        if *n == 0
                            && let Some(f) = families_of.get_mut(tenant)
                        {
                            *f = f.saturating_sub(1);
                        }
                    }
                    *total = total.saturating_sub(1);
                }
                keep
            });
        }
        families.retain(|_, f| !f.series.is_empty());
    }

    /// Series in the table now (overflow series included).
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Prometheus text exposition of every series, after dropping stale ones.
    pub fn render(&self, now: Instant) -> String {
        self.expire(now);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, family) in &table.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            let mut series: Vec<_> = family.series.iter().collect();
            series.sort_by(|a, b| a.0.cmp(b.0));
            for ((tenant, labels), s) in series {
                match &s.value {
                    Value::Number(v) => {
                        out.push_str(name);
                        write_labels(&mut out, tenant, labels, None);
                        let _ = writeln!(out, " {}", number(*v));
                    }
                    Value::Histogram(h) => write_histogram(&mut out, name, tenant, labels, h),
                }
            }
        }
        if !table.overflowed.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {OVERFLOW_COUNTER} New series folded into an otel_metric_overflow series because a cardinality budget was spent, by tenant."
            );
            let _ = writeln!(out, "# TYPE {OVERFLOW_COUNTER} counter");
            let mut tenants: Vec<_> = table.overflowed.iter().collect();
            tenants.sort();
            for (tenant, n) in tenants {
                out.push_str(OVERFLOW_COUNTER);
                write_labels(&mut out, tenant, &[], None);
                let _ = writeln!(out, " {n}");
            }
        }
        out
    }
}

fn update(series: &mut Series, update: Update, now: Instant, overflow: bool) {
    series.updated = now;
    match (&mut series.value, update) {
        (Value::Number(v), Update::Add(d)) => *v += d,
        (Value::Number(v), Update::Set(x)) if !overflow => *v = x,
        (Value::Histogram(h), Update::AddHistogram(b)) => h.add(&b),
        (Value::Histogram(h), Update::SetHistogram(b)) if !overflow => *h = b,
        // Absolute values in an overflow series, or a histogram/number mix-up within one family
        // (the kind check prevents it): nothing to add.
        _ => {}
    }
}

fn write_histogram(
    out: &mut String,
    name: &str,
    tenant: &str,
    labels: &[(String, String)],
    h: &Buckets,
) {
    let mut cumulative = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(*c);
        let le = h.bounds.get(i).map_or("+Inf".to_owned(), |b| number(*b));
        let _ = write!(out, "{name}_bucket");
        write_labels(out, tenant, labels, Some(&le));
        let _ = writeln!(out, " {cumulative}");
    }
    let _ = write!(out, "{name}_sum");
    write_labels(out, tenant, labels, None);
    let _ = writeln!(out, " {}", number(h.sum));
    let _ = write!(out, "{name}_count");
    write_labels(out, tenant, labels, None);
    let _ = writeln!(out, " {}", h.count);
}

fn write_labels(out: &mut String, tenant: &str, labels: &[(String, String)], le: Option<&str>) {
    let _ = write!(out, "{{{TENANT_LABEL}=\"{}\"", escape_value(tenant));
    for (k, v) in labels {
        let _ = write!(out, ",{k}=\"{}\"", escape_value(v));
    }
    if let Some(le) = le {
        let _ = write!(out, ",le=\"{le}\"");
    }
    out.push('}');
}

/// A sample value as Prometheus writes it.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
