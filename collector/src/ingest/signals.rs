//! What each OTLP signal's export request provides to [`super::Ingest`]: per-resource records,
//! attributes and size; per-record signal check, validation, redaction and conversion; the
//! partial-success response; record-by-record salvage decoding.

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
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::{Decoded, ExportRequest, IngestError, Outcome, Refusals, Resolved, validate};
use crate::otlp::logs::{self, LogFields, LogsRequest, ViewRecord};
use crate::otlp::{Signal, any_value, json, salvage};
use crate::pipeline::Record;
use crate::pipeline::convert::{Converter, Origin, event_name, log_table};
use crate::pipeline::log_payload::LogPayloads;
use crate::telemetry::derived::{DerivedBatch, SeverityCounts, severity_index};
use crate::telemetry::otlp::{Target, data_points, translate};
use crate::tenancy::TenantState;
use crate::tenancy::redact::Redactor;
use audit_store::{Table, TenantId};
use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

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

impl ExportRequest for LogsRequest {
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const REJECTED_FIELD: &'static str = "rejectedLogRecords";
    const DECODES_IN_PLACE: bool = true;

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(LogsRequest::decode(bytes)?)
    }

    fn decode_json(body: &[u8]) -> Result<Self, String> {
        LogsRequest::from_message(&json::decode::<ExportLogsServiceRequest>(body)?)
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

    fn convert(
        &mut self,
        resolved: &[Resolved],
        converter: &mut Converter,
        records: &mut Vec<Record>,
        refusals: &mut Refusals,
        derived: &mut DerivedBatch,
    ) {
        // Accepted records are logged as OTLP (see `pipeline::log_payload`), not converted here.
        let mut payloads = LogPayloads::new(converter.received_at(), self.bytes().clone());
        let mut resources = std::mem::take(&mut self.resources);
        let mut attributes = Vec::new();
        for (r, (rl, res)) in resources.iter_mut().zip(resolved).enumerate() {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            let scopes = redact_origin(
                redactor,
                &mut rl.resource,
                rl.scopes.iter_mut().map(|s| s.scope.take()),
            );
            let policy = redactor.map_or("", |r| r.version());
            payloads.resource(tenant, policy, rl.resource.as_ref(), &rl.schema_url);
            let service = service_name(rl.resource.as_ref());
            let mut severities: SeverityCounts = Default::default();
            for (s, (sl, scope)) in rl.scopes.iter().zip(scopes).enumerate() {
                payloads.scope(scope.as_ref(), &sl.schema_url);
                let mut log = LogContext {
                    tenant,
                    state,
                    refusals: &mut *refusals,
                    derived: &mut *derived,
                    severities: &mut severities,
                };
                for (i, range) in sl.records.iter().enumerate() {
                    let at = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                    let raw = self.raw(range);
                    // Redaction rewrites records: those of a tenant with rules are decoded owned.
                    let view = match redactor {
                        None => logs::read_record(raw, &mut attributes),
                        Some(_) => None,
                    };
                    if let Some(view) = view {
                        let record = ViewRecord {
                            view: &view,
                            attributes: &attributes,
                        };
                        if let Some(table) = log.admit(&record, &at) {
                            payloads.record(table, range.clone());
                        }
                        continue;
                    }
                    match LogRecord::decode(raw) {
                        Ok(mut record) => {
                            if log.admit(&record, &at).is_some() {
                                if let Some(r) = redactor {
                                    r.log(&mut record);
                                }
                                // Stored where the record as redacted says (a rule may remove
                                // its `event.name`), as conversion at commit will read it.
                                payloads.owned_record(log_table(&record), &record);
                            }
                        }
                        Err(e) => log
                            .refusals
                            .refuse("invalid_record", || format!("{}: undecodable: {e}", at())),
                    }
                }
            }
            derived.logs(tenant, &service, &severities);
        }
        self.resources = resources;
        records.extend(payloads.finish());
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

/// What accepting the log records of one scope needs.
struct LogContext<'c> {
    tenant: &'c TenantId,
    state: &'c TenantState,
    refusals: &'c mut Refusals,
    derived: &'c mut DerivedBatch,
    severities: &'c mut SeverityCounts,
}

impl LogContext<'_> {
    /// Checks the tenant may send this kind of record and that it can be stored, and counts it;
    /// the table it goes to, or `None` when it is refused.
    fn admit<R: LogFields>(&mut self, record: &R, at: &dyn Fn() -> String) -> Option<Table> {
        let policy = &self.state.policy;
        let name = event_name(record);
        let (enabled, signal) = if name.is_some() {
            (policy.signals.events, "events")
        } else {
            (policy.signals.logs, "logs")
        };
        if !enabled {
            let tenant = self.tenant;
            self.refusals.refuse("signal_disabled", || {
                format!("{}: tenant \"{tenant}\" may not send {signal}", at())
            });
            return None;
        }
        if let Err(problem) = validate::log(record, policy.limits.max_attributes_per_record, at) {
            self.refusals.refuse("invalid_record", || problem);
            return None;
        }
        match name {
            Some(name) => {
                self.derived.event(self.tenant, name);
                Some(Table::Events)
            }
            None => {
                self.severities[severity_index(record.severity_number())] += 1;
                Some(Table::Logs)
            }
        }
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
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

    fn convert(
        &mut self,
        resolved: &[Resolved],
        converter: &mut Converter,
        _records: &mut Vec<Record>,
        refusals: &mut Refusals,
        derived: &mut DerivedBatch,
    ) {
        for (r, (rs, res)) in self.resource_spans.iter_mut().zip(resolved).enumerate() {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            let policy = &state.policy;
            let scopes = redact_origin(
                redactor,
                &mut rs.resource,
                rs.scope_spans.iter_mut().map(|s| s.scope.take()),
            );
            let service = service_name(rs.resource.as_ref());
            for (s, (ss, scope)) in rs.scope_spans.iter_mut().zip(scopes).enumerate() {
                let origin = Origin::new(
                    rs.resource.as_ref(),
                    &rs.schema_url,
                    scope.as_ref(),
                    &ss.schema_url,
                    redactor.map_or("", |r| r.version()),
                );
                for (i, span) in ss.spans.iter_mut().enumerate() {
                    let at = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                    if !policy.signals.traces {
                        refusals.refuse("signal_disabled", || {
                            format!("{}: tenant \"{tenant}\" may not send traces", at())
                        });
                        continue;
                    }
                    if let Err(problem) =
                        validate::span(span, policy.limits.max_attributes_per_record, &at)
                    {
                        refusals.refuse("invalid_record", || problem);
                        continue;
                    }
                    derived.span(tenant, &service, span);
                    if let Some(r) = redactor {
                        r.span(span);
                    }
                    converter.push_span(tenant, &origin, span);
                }
            }
        }
    }

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(salvage::decode(bytes, salvage::traces)?)
    }

    fn decode_json(body: &[u8]) -> Result<Self, String> {
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
    const SIGNAL: Signal = Signal::Metrics;
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

    fn resource_records(&self, i: usize) -> u64 {
        self.resource_metrics[i]
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .filter_map(|m| m.data.as_ref())
            .map(|d| data_points(d) as u64)
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

    /// OTLP metrics are not archived: their points go to the series store through `derived`.
    fn convert(
        &mut self,
        resolved: &[Resolved],
        _converter: &mut Converter,
        _records: &mut Vec<Record>,
        refusals: &mut Refusals,
        derived: &mut DerivedBatch,
    ) {
        for (rm, res) in self.resource_metrics.iter_mut().zip(resolved) {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            if !state.policy.signals.metrics {
                for _ in rm
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .filter_map(|m| m.data.as_ref())
                    .flat_map(|d| 0..data_points(d))
                {
                    refusals.refuse("signal_disabled", || {
                        format!("tenant \"{tenant}\" may not send metrics")
                    });
                }
                continue;
            }
            if let (Some(r), Some(resource)) = (redactor, rm.resource.as_mut()) {
                r.attributes(&mut resource.attributes);
            }
            let target = Target::new(rm.resource.as_ref());
            derived
                .points
                .extend(target.info(tenant, rm.resource.as_ref()));
            for sm in &mut rm.scope_metrics {
                for metric in &mut sm.metrics {
                    if let Some(r) = redactor {
                        redact_points(r, metric);
                    }
                    for problem in translate(tenant, &target, metric, &mut derived.points) {
                        refusals.refuse("invalid_record", || problem);
                    }
                }
            }
        }
    }

    fn decode_protobuf(bytes: Bytes) -> Result<Decoded<Self>, IngestError> {
        Ok(salvage::decode(bytes, |_| None)?)
    }

    fn decode_json(body: &[u8]) -> Result<Self, String> {
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

/// Redacts the attributes of every data point of `metric`.
fn redact_points(r: &Redactor, metric: &mut Metric) {
    match &mut metric.data {
        Some(Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        None => {}
    }
}
