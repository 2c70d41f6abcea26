//! Checks on decoded OTLP records that neither prost nor serde make: id lengths (a 15-byte trace
//! id decodes without complaint), timestamps the store can represent, the tenant's bound on
//! attributes per record, and the bounds on values (`ingest.max_value_depth`,
//! `max_attribute_key_length`, `max_attribute_value_length`, `max_value_elements`). A record
//! that fails is refused alone, through OTLP `partial_success`; the rest of its request is
//! stored.

use opentelemetry_proto::tonic::trace::v1::Span;

use crate::otlp::any_value::{ValueLimits, ValueProblem};
use crate::otlp::logs::LogFields;

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Why `record` (found at `at`, e.g. `resourceLogs[0].scopeLogs[1].logRecords[2]`) cannot be
/// stored, if it cannot.
pub fn log<R: LogFields>(
    record: &R,
    limits: Limits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    id(record.trace_id(), TRACE_ID_LEN, "traceId", at)?;
    id(record.span_id(), SPAN_ID_LEN, "spanId", at)?;
    time(record.time_unix_nano(), "timeUnixNano", at)?;
    time(record.observed_time_unix_nano(), "observedTimeUnixNano", at)?;
    attributes(record.attribute_count(), limits.max_attributes, at)?;
    values(record.check_values(&limits.values), &limits.values, at)
}

/// Why `span` cannot be stored, if it cannot.
pub fn span(span: &Span, limits: Limits, at: &dyn Fn() -> String) -> Result<(), String> {
    let max_attributes = limits.max_attributes;
    id(&span.trace_id, TRACE_ID_LEN, "traceId", at)?;
    id(&span.span_id, SPAN_ID_LEN, "spanId", at)?;
    id(&span.parent_span_id, SPAN_ID_LEN, "parentSpanId", at)?;
    time(span.start_time_unix_nano, "startTimeUnixNano", at)?;
    time(span.end_time_unix_nano, "endTimeUnixNano", at)?;
    attributes(span.attributes.len(), max_attributes, at)?;
    let v = &limits.values;
    values(v.check_attributes(&span.attributes), v, at)?;
    for (l, link) in span.links.iter().enumerate() {
        let at = || format!("{}.links[{l}]", at());
        id(&link.trace_id, TRACE_ID_LEN, "traceId", &at)?;
        id(&link.span_id, SPAN_ID_LEN, "spanId", &at)?;
        values(v.check_attributes(&link.attributes), v, &at)?;
    }
    for (e, event) in span.events.iter().enumerate() {
        let at = || format!("{}.events[{e}]", at());
        time(event.time_unix_nano, "timeUnixNano", &at)?;
        values(v.check_attributes(&event.attributes), v, &at)?;
    }
    Ok(())
}

/// The bounds a record is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The tenant's `limits.max_attributes_per_record`.
    pub max_attributes: usize,
    /// `ingest.max_value_depth` and the other bounds on values.
    pub values: ValueLimits,
}

fn values(
    checked: Result<(), ValueProblem>,
    limits: &ValueLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    let Err(problem) = checked else {
        return Ok(());
    };
    let at = at();
    Err(match problem {
        ValueProblem::TooDeep => format!(
            "{at} nests a value more than {} levels deep (ingest.max_value_depth)",
            limits.max_depth
        ),
        ValueProblem::KeyTooLong(n) => format!(
            "{at} has a key of {n} bytes; the limit is {} (ingest.max_attribute_key_length)",
            limits.max_key_length
        ),
        ValueProblem::ValueTooLong(n) => format!(
            "{at} has an attribute value of {n} bytes; the limit is {} \
             (ingest.max_attribute_value_length)",
            limits.max_value_length
        ),
        ValueProblem::TooManyElements(n) => format!(
            "{at} has an array or key-value list of {n} elements; the limit is {} \
             (ingest.max_value_elements)",
            limits.max_elements
        ),
    })
}

fn id(bytes: &[u8], len: usize, field: &str, at: &dyn Fn() -> String) -> Result<(), String> {
    if bytes.is_empty() || bytes.len() == len {
        return Ok(());
    }
    Err(format!(
        "{}.{field} is {} bytes long; it must be {len} bytes or empty",
        at(),
        bytes.len()
    ))
}

fn time(nanos: u64, field: &str, at: &dyn Fn() -> String) -> Result<(), String> {
    if i64::try_from(nanos).is_ok() {
        return Ok(());
    }
    Err(format!(
        "{}.{field} {nanos} is past the year 2262, the latest time the store can hold",
        at()
    ))
}

fn attributes(count: usize, max: usize, at: &dyn Fn() -> String) -> Result<(), String> {
    if count <= max {
        return Ok(());
    }
    Err(format!(
        "{} has {count} attributes; the tenant's limit is {max} \
         (limits.max_attributes_per_record)",
        at()
    ))
}
