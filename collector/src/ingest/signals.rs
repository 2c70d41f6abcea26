//! What each OTLP signal's export request provides to [`super::Ingest`]: decoding (record-by-record
//! salvage), per-resource records, attributes and size for tenancy and admission, and the
//! partial-success response. What happens to the records is the pipeline's
//! ([`crate::pipeline::accept`]).

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::{Decoded, ExportRequest, IngestError, Outcome};
use crate::otlp::logs::LogsRequest;
use crate::otlp::{json, salvage};
use crate::telemetry::otlp::data_points;
use bytes::Bytes;

fn attributes_of(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[][..], |r| &r.attributes)
}

/// What the rows of a resource repeat (see [`ExportRequest::repeated_bytes`]): for each of its
/// scopes (scope, schema URL, records), the protobuf size of resource and scope with their schema
/// URLs, once per record.
fn repeated_bytes<'a>(
    resource: Option<&Resource>,
    resource_schema_url: &str,
    scopes: impl Iterator<Item = (Option<&'a InstrumentationScope>, &'a str, usize)>,
) -> u64 {
    let resource = (resource.map_or(0, |r| r.encoded_len()) + resource_schema_url.len()) as u64;
    scopes
        .map(|(scope, schema_url, records)| {
            let scope = (scope.map_or(0, |s| s.encoded_len()) + schema_url.len()) as u64;
            (resource + scope).saturating_mul(records as u64)
        })
        .fold(0, u64::saturating_add)
}

impl ExportRequest for LogsRequest {
    type Response = ExportLogsServiceResponse;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const REJECTED_FIELD: &'static str = "rejectedLogRecords";
    const DECODES_IN_PLACE: bool = true;

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(LogsRequest::decode(bytes)?)
    }

    fn decode_json(body: &[u8]) -> Result<Decoded<Self>, String> {
        let decoded = json::decode::<ExportLogsServiceRequest>(body)?;
        Ok(Decoded {
            request: LogsRequest::from_message(&decoded.request)?,
            refused: decoded.refused,
            first_refusal: decoded.first_refusal,
        })
    }

    fn record_count(&self) -> usize {
        LogsRequest::record_count(self)
    }

    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    fn resource_records(&self, i: usize) -> u64 {
        self.resources[i]
            .scopes
            .iter()
            .map(|s| s.records.len() as u64)
            .sum()
    }

    fn resource_attributes(&self, i: usize) -> &[KeyValue] {
        attributes_of(self.resources[i].resource.as_ref())
    }

    fn resource_bytes(&self, i: usize) -> u64 {
        self.resources[i].encoded_len
    }

    fn repeated_bytes(&self, i: usize) -> u64 {
        let r = &self.resources[i];
        let scopes = r.scopes.iter();
        let scopes = scopes.map(|s| (s.scope.as_ref(), s.schema_url.as_str(), s.records.len()));
        repeated_bytes(r.resource.as_ref(), &r.schema_url, scopes)
    }

    fn response(outcome: &Outcome) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                error_message: outcome.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const REJECTED_FIELD: &'static str = "rejectedSpans";

    fn record_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    fn resource_count(&self) -> usize {
        self.resource_spans.len()
    }

    fn resource_records(&self, i: usize) -> u64 {
        let r = &self.resource_spans[i];
        r.scope_spans.iter().map(|s| s.spans.len() as u64).sum()
    }

    fn resource_attributes(&self, i: usize) -> &[KeyValue] {
        attributes_of(self.resource_spans[i].resource.as_ref())
    }

    fn resource_bytes(&self, i: usize) -> u64 {
        self.resource_spans[i].encoded_len() as u64
    }

    fn repeated_bytes(&self, i: usize) -> u64 {
        let r = &self.resource_spans[i];
        let scopes = r.scope_spans.iter();
        let scopes = scopes.map(|s| (s.scope.as_ref(), s.schema_url.as_str(), s.spans.len()));
        repeated_bytes(r.resource.as_ref(), &r.schema_url, scopes)
    }

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(salvage::decode(bytes, salvage::traces)?)
    }

    fn decode_json(body: &[u8]) -> Result<Decoded<Self>, String> {
        json::decode(body)
    }

    fn response(outcome: &Outcome) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                error_message: outcome.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const REJECTED_FIELD: &'static str = "rejectedDataPoints";

    fn record_count(&self) -> usize {
        (0..self.resource_metrics.len())
            .map(|i| self.resource_records(i) as usize)
            .sum()
    }

    fn resource_count(&self) -> usize {
        self.resource_metrics.len()
    }

    /// Data points; a metric without data counts as one (it is refused as one).
    fn resource_records(&self, i: usize) -> u64 {
        self.resource_metrics[i]
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(|m| m.data.as_ref().map_or(1, |d| data_points(d) as u64))
            .sum()
    }

    fn resource_attributes(&self, i: usize) -> &[KeyValue] {
        attributes_of(self.resource_metrics[i].resource.as_ref())
    }

    fn resource_bytes(&self, i: usize) -> u64 {
        self.resource_metrics[i].encoded_len() as u64
    }

    /// Points become series, not rows: nothing is repeated per point.
    fn repeated_bytes(&self, _i: usize) -> u64 {
        0
    }

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(salvage::decode(bytes, salvage::metrics)?)
    }

    fn decode_json(body: &[u8]) -> Result<Decoded<Self>, String> {
        json::decode(body)
    }

    fn response(outcome: &Outcome) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                error_message: outcome.message.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    use super::*;

    /// Found by the `otlp_json` fuzz target: a metric without data is refused as one record, so
    /// it is received as one (refusals never outnumber what was received).
    #[test]
    fn a_metric_without_data_counts_as_one_record() {
        let gauge = Metric {
            name: "g".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 2],
            })),
            ..Default::default()
        };
        let empty = Metric {
            name: "e".into(),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge, empty],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(request.resource_records(0), 3);
        assert_eq!(ExportRequest::record_count(&request), 3);
    }
}
