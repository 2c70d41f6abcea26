//! Accepting a decoded, authenticated request: the pipeline's front door.
//!
//! Ingest hands [`Intake::accept`] a decoded request and each resource's tenant
//! ([`Resolved`]); from there the pipeline owns the rest: the tenant's signal switches and
//! [`validate`] refuse records one by one (OTLP `partial_success`), redaction rewrites the rest,
//! spans become rows ([`super::convert`]) and log records stay OTLP ([`super::log_payload`]), the
//! write-ahead log acknowledges them ([`super::Pipeline::submit`]), and only then do derived
//! metrics and OTLP metric points reach the series store. Each signal's part lives in its own
//! file ([`logs`], [`traces`], [`metrics`]).

mod logs;
mod metrics;
mod traces;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use audit_store::TenantId;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::convert::Converter;
use super::{Pipeline, PipelineError, Record};
use crate::config::{IngestLimits, MetricsConfig};
use crate::otlp::any_value::{self, ValueLimits};
use crate::otlp::{Decoded, Signal};
use crate::telemetry::derived::DerivedBatch;
use crate::telemetry::series::SeriesStore;
use crate::tenancy::Resolved;
use crate::tenancy::redact::Redactor;

/// A decoded OTLP request the pipeline can accept: each signal's validation, redaction and
/// conversion.
pub trait Accept: Send + 'static {
    const SIGNAL: Signal;
    /// Validates, redacts and converts the records of every resolved resource into `into`;
    /// records that cannot be stored are refused there one by one.
    fn accept(&mut self, resolved: &[Resolved], into: &mut Acceptance);
}

/// What accepting one request produces: rows being converted, write-ahead log records (log
/// records kept as OTLP), refusals, and what derived metrics will see once it is stored.
pub struct Acceptance {
    /// `ingest.max_value_depth` and the other bounds on values.
    values: ValueLimits,
    converter: Converter,
    records: Vec<Record>,
    refusals: Refusals,
    derived: DerivedBatch,
}

/// Records of an accepted request that were refused one by one (OTLP `partial_success`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub rejected: u64,
    /// Empty when nothing was refused.
    pub message: String,
}

/// An accepted, stored request: its outcome and what the ingest metrics count.
#[derive(Debug, Default)]
pub struct Accepted {
    pub outcome: Outcome,
    /// Records refused one by one, by reason (`signal_disabled`, `invalid_record` — including
    /// those decoding refused —, `metric_families`).
    pub refused: Vec<(&'static str, u64)>,
    /// Records stored (points, for OTLP metrics), by tenant.
    pub stored: Vec<(TenantId, u64)>,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcceptError {
    /// The records could not be made into rows (ingest answers 400).
    #[error("cannot convert records: {0}")]
    Convert(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Collects per-record refusals during acceptance, and counts records against
/// `ingest.max_records_per_request`.
#[derive(Debug, Default)]
struct Refusals {
    /// Records refused, by reason (a metric label of `REJECT_REASONS`).
    by_reason: Vec<(&'static str, u64)>,
    first: Option<String>,
    /// `ingest.max_records_per_request`, and how many more records this request may carry.
    max_records: u64,
    records_left: u64,
}

impl Acceptance {
    /// The bounds records of a tenant with `policy` are checked against.
    fn limits(&self, policy: &crate::config::TenantPolicy) -> validate::Limits {
        validate::Limits {
            max_attributes: policy.limits.max_attributes_per_record,
            values: self.values,
        }
    }
}

impl Refusals {
    /// Counts one more record of the request; past `ingest.max_records_per_request`, refuses
    /// it (`true`).
    fn over_records(&mut self, at: &dyn Fn() -> String) -> bool {
        if self.records_left > 0 {
            self.records_left -= 1;
            return false;
        }
        let max = self.max_records;
        self.refuse("too_many_records", || {
            format!(
                "{}: past the request's first {max} records (ingest.max_records_per_request)",
                at()
            )
        });
        true
    }

    fn refuse(&mut self, reason: &'static str, message: impl FnOnce() -> String) {
        self.count(reason, 1);
        if self.first.is_none() {
            self.first = Some(message());
        }
    }

    fn count(&mut self, reason: &'static str, n: u64) {
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None if n > 0 => self.by_reason.push((reason, n)),
            None => {}
        }
    }

    fn outcome(&self) -> Outcome {
        let rejected = self.by_reason.iter().map(|(_, n)| n).sum::<u64>();
        Outcome {
            rejected,
            message: match &self.first {
                Some(first) if rejected > 1 => {
                    format!("{rejected} records refused; the first: {first}")
                }
                Some(first) => format!("1 record refused: {first}"),
                None => String::new(),
            },
        }
    }
}

/// The pipeline's front door, shared by both receivers: cheap to clone.
#[derive(Clone)]
pub struct Intake {
    pipeline: Pipeline,
    series: Arc<SeriesStore>,
    bounds: Bounds,
}

impl Intake {
    /// `limits`: the `ingest.*` bounds on records.
    pub fn new(pipeline: Pipeline, series: Arc<SeriesStore>, limits: &IngestLimits) -> Self {
        let bounds = Bounds::new(limits, series.config());
        Self {
            pipeline,
            series,
            bounds,
        }
    }

    /// Whether the pipeline is over its backlog bound (see [`Pipeline::overloaded`]).
    pub fn overloaded(&self) -> bool {
        self.pipeline.overloaded()
    }

    /// Validates, redacts, converts and stores one decoded request whose resources' tenants are
    /// `resolved`; derived metrics see it once the write-ahead log has acknowledged it.
    pub async fn accept<R: Accept>(
        &self,
        decoded: Decoded<R>,
        resolved: &[Resolved],
        received_at: i64,
    ) -> Result<Accepted, AcceptError> {
        let mut prepared = self.bounds.prepare(decoded, resolved, received_at)?;
        let records = std::mem::take(&mut prepared.records);
        if !records.is_empty() {
            self.pipeline.submit(records).await?;
        }
        // Stored (or, for OTLP metrics, nothing to store): now it counts.
        Ok(prepared.stored(&self.series))
    }
}

/// The bounds a request is accepted under: `ingest.*` limits and the span duration buckets of
/// derived metrics.
#[derive(Clone)]
pub struct Bounds {
    pub values: ValueLimits,
    pub max_records: u64,
    pub span_buckets: Arc<[f64]>,
}

/// A request validated, redacted and converted, not yet stored: the write-ahead log records,
/// and what is counted once they are stored.
pub struct Prepared {
    pub records: Vec<Record>,
    /// Rows of `records` by tenant (counted as stored once they are).
    rows: Vec<(TenantId, u64)>,
    refusals: Refusals,
    derived: DerivedBatch,
    signal: Signal,
}

impl Bounds {
    /// The `ingest.*` bounds on records and the span buckets of `metrics`.
    pub fn new(limits: &IngestLimits, metrics: &MetricsConfig) -> Self {
        Self {
            values: ValueLimits {
                max_depth: limits.max_value_depth,
                max_key_length: limits.max_attribute_key_length,
                max_value_length: limits.max_attribute_value_length,
                max_elements: limits.max_value_elements,
            },
            max_records: limits.max_records_per_request,
            span_buckets: Arc::from(metrics.span_duration_buckets.as_slice()),
        }
    }

    /// Everything accepting a request does before the write-ahead log: per-record checks and
    /// refusals, redaction, conversion to write-ahead log records. Pure (no I/O), so the fuzz
    /// targets run it on arbitrary requests.
    pub fn prepare<R: Accept>(
        &self,
        decoded: Decoded<R>,
        resolved: &[Resolved],
        received_at: i64,
    ) -> Result<Prepared, AcceptError> {
        let mut request = decoded.request;
        let mut into = Acceptance {
            values: self.values,
            converter: Converter::new(received_at),
            records: Vec::new(),
            refusals: Refusals {
                by_reason: Vec::new(),
                first: decoded.first_refusal,
                max_records: self.max_records,
                records_left: self.max_records,
            },
            derived: DerivedBatch::new(self.span_buckets.clone()),
        };
        into.refusals.count("invalid_record", decoded.refused);
        request.accept(resolved, &mut into);
        let Acceptance {
            values: _,
            converter,
            mut records,
            refusals,
            derived,
        } = into;
        let batches = converter
            .finish()
            .map_err(|e| AcceptError::Convert(e.to_string()))?;
        for batch in batches {
            records.push(Record::from_batch(batch)?);
        }
        let mut rows: Vec<(TenantId, u64)> = Vec::new();
        for r in &records {
            match rows.iter_mut().find(|a| a.0 == r.tenant) {
                Some(a) => a.1 += r.rows as u64,
                None => rows.push((r.tenant.clone(), r.rows as u64)),
            }
        }
        Ok(Prepared {
            records,
            rows,
            refusals,
            derived,
            signal: R::SIGNAL,
        })
    }
}

impl Prepared {
    /// Once its records are stored: hands derived metrics and OTLP metric points to `series`
    /// (which may refuse points past a family budget) and counts what was stored and refused.
    pub fn stored(self, series: &SeriesStore) -> Accepted {
        let Prepared {
            records: _,
            rows: mut stored,
            mut refusals,
            derived,
            signal,
        } = self;
        let mut count = |tenant: &TenantId, n: u64| match stored.iter_mut().find(|a| &a.0 == tenant)
        {
            Some(a) => a.1 += n,
            None => stored.push((tenant.clone(), n)),
        };
        let points = derived.into_points();
        // OTLP metric points count as stored once the series store has taken them.
        let mut sent: Vec<(usize, TenantId)> = Vec::new();
        if signal == Signal::Metrics {
            let points = points.iter().enumerate();
            for (i, p) in points.filter(|(_, p)| p.family != "target_info") {
                if let Ok(t) = TenantId::parse(&p.tenant) {
                    sent.push((i, t));
                }
            }
        }
        let refused = series.apply(points, Instant::now());
        // Both in point order: walk them together.
        let mut refused_at = refused.iter().map(|(i, _)| *i).peekable();
        for (i, tenant) in &sent {
            while refused_at.next_if(|r| r < i).is_some() {}
            if refused_at.peek() != Some(i) {
                count(tenant, 1);
            }
        }
        for (_, error) in refused {
            refusals.refuse(error.reason(), || error.to_string());
        }
        Accepted {
            outcome: refusals.outcome(),
            refused: refusals.by_reason,
            stored,
        }
    }
}

fn attributes_of(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[][..], |r| &r.attributes)
}

/// The `service.name` of a resource (after redaction), empty when absent.
fn service_name(resource: Option<&Resource>) -> String {
    attributes_of(resource)
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| any_value::to_text(kv.value.as_ref()))
        .unwrap_or_default()
        .into_owned()
}

/// Redacts a resource's and its scopes' attributes; the scopes, taken out of their messages.
fn redact_origin(
    redactor: Option<&Redactor>,
    resource: &mut Option<Resource>,
    scopes: impl Iterator<Item = Option<InstrumentationScope>>,
) -> Vec<Option<InstrumentationScope>> {
    if let (Some(r), Some(res)) = (redactor, resource.as_mut()) {
        r.attributes(&mut res.attributes);
    }
    scopes
        .map(|mut scope| {
            if let (Some(r), Some(s)) = (redactor, scope.as_mut()) {
                r.attributes(&mut s.attributes);
            }
            scope
        })
        .collect()
}
