//! Protobuf decoding that keeps the good records of a request with a few bad ones.
//!
//! prost refuses a whole message when one string field holds invalid UTF-8. The OTLP spec wants
//! records that can never be stored refused one by one (`partial_success`), so when the strict
//! decode fails the request is decoded again through mirror messages whose record list is raw
//! bytes, and each record is decoded on its own: the ones that decode are kept, the others
//! counted with their error. Only the failure path pays for this; a request whose envelope
//! (resource, scope) is broken is still refused whole. For OTLP metrics the unit is a metric:
//! an undecodable one is counted as one refusal, however many points it held.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::DecodeError;

/// A decoded request and the records decoding already refused.
#[derive(Debug, Default)]
pub struct Decoded<R> {
    pub request: R,
    pub refused: u64,
    /// Why the first refused record was refused.
    pub first_refusal: Option<String>,
}

impl<R> Decoded<R> {
    /// A request every record of which decoded.
    pub fn whole(request: R) -> Self {
        Self {
            request,
            refused: 0,
            first_refusal: None,
        }
    }
}

/// Decodes OTLP protobuf, salvaging the good records with `salvage` when some are undecodable.
pub fn decode<R: Message + Default>(
    bytes: Bytes,
    salvage: impl FnOnce(&[u8]) -> Option<Decoded<R>>,
) -> Result<Decoded<R>, DecodeError> {
    match R::decode(bytes.clone()) {
        Ok(request) => Ok(Decoded::whole(request)),
        Err(strict) => salvage(&bytes)
            .filter(|d| d.refused > 0)
            .ok_or_else(|| DecodeError(format!("invalid OTLP protobuf: {strict}"))),
    }
}

#[derive(Clone, PartialEq, Message)]
struct LenientLogsRequest {
    #[prost(message, repeated, tag = "1")]
    resource_logs: Vec<LenientResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
struct LenientResourceLogs {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_logs: Vec<LenientScopeLogs>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LenientScopeLogs {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    log_records: Vec<Bytes>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LenientTraceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<LenientResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct LenientResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<LenientScopeSpans>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LenientScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LenientMetricsRequest {
    #[prost(message, repeated, tag = "1")]
    resource_metrics: Vec<LenientResourceMetrics>,
}

#[derive(Clone, PartialEq, Message)]
struct LenientResourceMetrics {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_metrics: Vec<LenientScopeMetrics>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LenientScopeMetrics {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    metrics: Vec<Bytes>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

/// Decodes each raw record; keeps the good ones and notes the bad ones.
fn records<T: Message + Default>(
    raw: Vec<Bytes>,
    at: impl Fn(usize) -> String,
    refused: &mut u64,
    first: &mut Option<String>,
) -> Vec<T> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, bytes)| match T::decode(bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                *refused += 1;
                first.get_or_insert_with(|| format!("{}: undecodable: {e}", at(i)));
                None
            }
        })
        .collect()
}

pub fn logs(
    bytes: &[u8],
) -> Option<Decoded<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>> {
    let lenient = LenientLogsRequest::decode(bytes).ok()?;
    let (mut refused, mut first) = (0, None);
    let resource_logs = lenient
        .resource_logs
        .into_iter()
        .enumerate()
        .map(|(r, rl)| ResourceLogs {
            resource: rl.resource,
            schema_url: rl.schema_url,
            scope_logs: rl
                .scope_logs
                .into_iter()
                .enumerate()
                .map(|(s, sl)| ScopeLogs {
                    scope: sl.scope,
                    schema_url: sl.schema_url,
                    log_records: records::<LogRecord>(
                        sl.log_records,
                        |i| format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]"),
                        &mut refused,
                        &mut first,
                    ),
                })
                .collect(),
        })
        .collect();
    Some(Decoded {
        request: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs,
        },
        refused,
        first_refusal: first,
    })
}

pub fn traces(
    bytes: &[u8],
) -> Option<Decoded<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>> {
    let lenient = LenientTraceRequest::decode(bytes).ok()?;
    let (mut refused, mut first) = (0, None);
    let resource_spans = lenient
        .resource_spans
        .into_iter()
        .enumerate()
        .map(|(r, rs)| ResourceSpans {
            resource: rs.resource,
            schema_url: rs.schema_url,
            scope_spans: rs
                .scope_spans
                .into_iter()
                .enumerate()
                .map(|(s, ss)| ScopeSpans {
                    scope: ss.scope,
                    schema_url: ss.schema_url,
                    spans: records::<Span>(
                        ss.spans,
                        |i| format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"),
                        &mut refused,
                        &mut first,
                    ),
                })
                .collect(),
        })
        .collect();
    Some(Decoded {
        request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans,
        },
        refused,
        first_refusal: first,
    })
}

/// An undecodable metric is refused as one: how many points it held cannot be known.
pub fn metrics(
    bytes: &[u8],
) -> Option<Decoded<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>>
{
    let lenient = LenientMetricsRequest::decode(bytes).ok()?;
    let (mut refused, mut first) = (0, None);
    let resource_metrics = lenient
        .resource_metrics
        .into_iter()
        .enumerate()
        .map(|(r, rm)| ResourceMetrics {
            resource: rm.resource,
            schema_url: rm.schema_url,
            scope_metrics: rm
                .scope_metrics
                .into_iter()
                .enumerate()
                .map(|(s, sm)| ScopeMetrics {
                    scope: sm.scope,
                    schema_url: sm.schema_url,
                    metrics: records::<Metric>(
                        sm.metrics,
                        |i| format!("resourceMetrics[{r}].scopeMetrics[{s}].metrics[{i}]"),
                        &mut refused,
                        &mut first,
                    ),
                })
                .collect(),
        })
        .collect();
    Some(Decoded {
        request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
            resource_metrics,
        },
        refused,
        first_refusal: first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

    fn record(body: &str) -> LogRecord {
        LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_utf8_refuses_only_its_record() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record("good"), record("BAD!"), record("fine")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut bytes = request.encode_to_vec();
        // Turn "BAD!" into invalid UTF-8 in place.
        let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
        bytes[at] = 0xff;
        assert!(ExportLogsServiceRequest::decode(&bytes[..]).is_err());
        let decoded = decode(Bytes::from(bytes), logs).unwrap();
        assert_eq!(decoded.refused, 1);
        let first = decoded.first_refusal.unwrap();
        assert!(
            first.starts_with("resourceLogs[0].scopeLogs[0].logRecords[1]: undecodable"),
            "{first}"
        );
        let kept = &decoded.request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(kept.len(), 2);

        // Metrics too: a metric whose name is not UTF-8 is refused alone.
        let metric = |name: &str| Metric {
            name: name.into(),
            ..Default::default()
        };
        let request =
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![metric("ok_total"), metric("BAD!")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
        let mut bytes = request.encode_to_vec();
        let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
        bytes[at] = 0xc3;
        let decoded = decode(Bytes::from(bytes), metrics).unwrap();
        assert_eq!(decoded.refused, 1);
        let kept = &decoded.request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "ok_total");

        // Garbage is still refused whole.
        let err = decode(Bytes::from_static(&[0xff, 0xff, 0xff]), logs);
        assert!(matches!(err, Err(DecodeError(_))));
    }
}
