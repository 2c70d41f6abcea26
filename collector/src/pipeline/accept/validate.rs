//! Checks on decoded OTLP records that neither prost nor serde make: id lengths (a 15-byte trace
//! id decodes without complaint), timestamps the store can represent, and the tenant's bound on
//! attributes per record. A record that fails is refused alone, through OTLP `partial_success`;
//! the rest of its request is stored.

use opentelemetry_proto::tonic::trace::v1::Span;

use crate::otlp::logs::LogFields;

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Why `record` (found at `at`, e.g. `resourceLogs[0].scopeLogs[1].logRecords[2]`) cannot be
/// stored, if it cannot.
pub fn log<R: LogFields>(
    record: &R,
    max_attributes: usize,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    id(record.trace_id(), TRACE_ID_LEN, "traceId", at)?;
    id(record.span_id(), SPAN_ID_LEN, "spanId", at)?;
    time(record.time_unix_nano(), "timeUnixNano", at)?;
    time(record.observed_time_unix_nano(), "observedTimeUnixNano", at)?;
    attributes(record.attribute_count(), max_attributes, at)
}

/// Why `span` cannot be stored, if it cannot.
pub fn span(span: &Span, max_attributes: usize, at: &dyn Fn() -> String) -> Result<(), String> {
    id(&span.trace_id, TRACE_ID_LEN, "traceId", at)?;
    id(&span.span_id, SPAN_ID_LEN, "spanId", at)?;
    id(&span.parent_span_id, SPAN_ID_LEN, "parentSpanId", at)?;
    time(span.start_time_unix_nano, "startTimeUnixNano", at)?;
    time(span.end_time_unix_nano, "endTimeUnixNano", at)?;
    attributes(span.attributes.len(), max_attributes, at)?;
    for (l, link) in span.links.iter().enumerate() {
        let at = || format!("{}.links[{l}]", at());
        id(&link.trace_id, TRACE_ID_LEN, "traceId", &at)?;
        id(&link.span_id, SPAN_ID_LEN, "spanId", &at)?;
    }
    for (e, event) in span.events.iter().enumerate() {
        let at = || format!("{}.events[{e}]", at());
        time(event.time_unix_nano, "timeUnixNano", &at)?;
    }
    Ok(())
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
