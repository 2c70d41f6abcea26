//! Checks on decoded OTLP that neither prost nor serde make: id lengths (a 15-byte trace id
//! decodes without complaint) and timestamps the store can represent. A request that fails is
//! refused whole with a message naming the first offending record.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::IngestError;

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

pub fn logs(request: &ExportLogsServiceRequest) -> Result<(), IngestError> {
    for (r, rl) in request.resource_logs.iter().enumerate() {
        for (s, sl) in rl.scope_logs.iter().enumerate() {
            for (i, record) in sl.log_records.iter().enumerate() {
                let at = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                id(&record.trace_id, TRACE_ID_LEN, "traceId", &at)?;
                id(&record.span_id, SPAN_ID_LEN, "spanId", &at)?;
                time(record.time_unix_nano, "timeUnixNano", &at)?;
                time(record.observed_time_unix_nano, "observedTimeUnixNano", &at)?;
            }
        }
    }
    Ok(())
}

pub fn traces(request: &ExportTraceServiceRequest) -> Result<(), IngestError> {
    for (r, rs) in request.resource_spans.iter().enumerate() {
        for (s, ss) in rs.scope_spans.iter().enumerate() {
            for (i, span) in ss.spans.iter().enumerate() {
                let at = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                id(&span.trace_id, TRACE_ID_LEN, "traceId", &at)?;
                id(&span.span_id, SPAN_ID_LEN, "spanId", &at)?;
                id(&span.parent_span_id, SPAN_ID_LEN, "parentSpanId", &at)?;
                time(span.start_time_unix_nano, "startTimeUnixNano", &at)?;
                time(span.end_time_unix_nano, "endTimeUnixNano", &at)?;
                for (l, link) in span.links.iter().enumerate() {
                    let at = || format!("{}.links[{l}]", at());
                    id(&link.trace_id, TRACE_ID_LEN, "traceId", &at)?;
                    id(&link.span_id, SPAN_ID_LEN, "spanId", &at)?;
                }
                for (e, event) in span.events.iter().enumerate() {
                    let at = || format!("{}.events[{e}]", at());
                    time(event.time_unix_nano, "timeUnixNano", &at)?;
                }
            }
        }
    }
    Ok(())
}

fn id(bytes: &[u8], len: usize, field: &str, at: &dyn Fn() -> String) -> Result<(), IngestError> {
    if bytes.is_empty() || bytes.len() == len {
        return Ok(());
    }
    Err(IngestError::Malformed(format!(
        "{}.{field} is {} bytes long; it must be {len} bytes or empty",
        at(),
        bytes.len()
    )))
}

fn time(nanos: u64, field: &str, at: &dyn Fn() -> String) -> Result<(), IngestError> {
    if i64::try_from(nanos).is_ok() {
        return Ok(());
    }
    Err(IngestError::Malformed(format!(
        "{}.{field} {nanos} is past the year 2262, the latest time the store can hold",
        at()
    )))
}
