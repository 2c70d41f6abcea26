//! The real `opentelemetry-otlp` exporters (gRPC and HTTP/protobuf), driven through the real
//! OpenTelemetry SDK, for two tenants: each tenant's query returns exactly its records.

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::trace::{Span, SpanKind, Status, Tracer, TracerProvider};
use opentelemetry_otlp::{
    LogExporter, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::harness::Daemon;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Grpc,
    Http,
}

/// How the tenant is named: the header, or the resource attribute.
#[derive(Clone, Copy, Debug)]
enum TenantBy {
    Header,
    Attribute,
}

fn resource(service: &str, tenant: &str, by: TenantBy) -> Resource {
    let mut builder =
        Resource::builder_empty().with_attribute(KeyValue::new("service.name", service.to_owned()));
    if let TenantBy::Attribute = by {
        builder = builder.with_attribute(KeyValue::new("tenant.id", tenant.to_owned()));
    }
    builder.build()
}

/// gRPC metadata naming the tenant, when the tenant goes by header.
fn tenant_metadata(tenant: &str, by: TenantBy) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let TenantBy::Header = by {
        metadata.insert("x-scope-orgid", tenant.parse().unwrap());
    }
    metadata
}

/// HTTP headers naming the tenant, when the tenant goes by header.
fn tenant_headers(tenant: &str, by: TenantBy) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    if let TenantBy::Header = by {
        headers.insert("X-Scope-OrgID".to_owned(), tenant.to_owned());
    }
    headers
}

fn log_exporter(d: &Daemon, transport: Transport, tenant: &str, by: TenantBy) -> LogExporter {
    match transport {
        Transport::Grpc => LogExporter::builder()
            .with_tonic()
            .with_endpoint(d.grpc_url())
            .with_metadata(tenant_metadata(tenant, by))
            .build()
            .unwrap(),
        Transport::Http => LogExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("http://{}/v1/logs", d.http))
            .with_headers(tenant_headers(tenant, by))
            .build()
            .unwrap(),
    }
}

fn span_exporter(d: &Daemon, transport: Transport, tenant: &str, by: TenantBy) -> SpanExporter {
    match transport {
        Transport::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(d.grpc_url())
            .with_metadata(tenant_metadata(tenant, by))
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .unwrap(),
        Transport::Http => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("http://{}/v1/traces", d.http))
            .with_headers(tenant_headers(tenant, by))
            .build()
            .unwrap(),
    }
}

/// Emits `logs` plain records and two events (one by `event_name`, one by attribute) for one
/// tenant, through the SDK's simple processor (each emit is one export, answered before the next).
async fn send_logs(
    d: &Daemon,
    transport: Transport,
    tenant: &'static str,
    by: TenantBy,
    logs: usize,
) {
    let exporter = log_exporter(d, transport, tenant, by);
    let res = resource(&format!("{tenant}-svc"), tenant, by);
    tokio::task::spawn_blocking(move || {
        let provider = SdkLoggerProvider::builder()
            .with_resource(res)
            .with_simple_exporter(exporter)
            .build();
        let logger = provider.logger("e2e");
        for i in 0..logs {
            let mut record = logger.create_log_record();
            record.set_body(AnyValue::from(format!("{tenant} log {i}")));
            record.set_severity_number(Severity::Warn);
            record.set_severity_text("WARN");
            record.add_attribute("seq", i as i64);
            record.add_attribute("ok", true);
            logger.emit(record);
        }
        let mut event = logger.create_log_record();
        event.set_event_name("order.completed");
        event.set_body(AnyValue::from(format!("{tenant} order")));
        event.add_attribute("order.id", "o-1");
        logger.emit(event);
        let mut event = logger.create_log_record();
        event.add_attribute("event.name", "subscription.upgraded");
        event.add_attribute("plan", "pro");
        logger.emit(event);
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
}

async fn send_spans(
    d: &Daemon,
    transport: Transport,
    tenant: &'static str,
    by: TenantBy,
    spans: usize,
) {
    let exporter = span_exporter(d, transport, tenant, by);
    let res = resource(&format!("{tenant}-svc"), tenant, by);
    tokio::task::spawn_blocking(move || {
        let provider = SdkTracerProvider::builder()
            .with_resource(res)
            .with_simple_exporter(exporter)
            .build();
        let tracer = provider.tracer("e2e");
        for i in 0..spans {
            let mut span = tracer
                .span_builder(format!("GET /items/{i}"))
                .with_kind(SpanKind::Server)
                .start(&tracer);
            span.set_attribute(KeyValue::new("http.response.status_code", 500_i64));
            span.add_event("retry", vec![KeyValue::new("attempt", 2_i64)]);
            span.set_status(Status::error("boom"));
            span.end();
        }
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
}

async fn two_tenants(transport: Transport) {
    let mut d = Daemon::start().await;
    send_logs(&d, transport, "acme", TenantBy::Header, 5).await;
    send_logs(&d, transport, "globex", TenantBy::Attribute, 3).await;
    send_spans(&d, transport, "acme", TenantBy::Header, 4).await;
    send_spans(&d, transport, "globex", TenantBy::Attribute, 2).await;

    // Every export was acknowledged, so every record is already queryable.
    assert_eq!(d.count("acme", "logs").await, 5);
    assert_eq!(d.count("acme", "events").await, 2);
    assert_eq!(d.count("acme", "spans").await, 4);
    assert_eq!(d.count("globex", "logs").await, 3);
    assert_eq!(d.count("globex", "events").await, 2);
    assert_eq!(d.count("globex", "spans").await, 2);

    for tenant in ["acme", "globex"] {
        for table in ["logs", "events", "spans"] {
            let other = d
                .query(tenant, &format!("SELECT count(*) AS n FROM {table} WHERE tenant_id <> '{tenant}' OR service_name <> '{tenant}-svc'"))
                .await;
            assert_eq!(
                other[0]["n"], 0,
                "{tenant}.{table} holds another tenant's rows"
            );
        }
    }

    let logs = d
        .query("acme", "SELECT body, severity_number, severity_text, attributes, event_name FROM logs ORDER BY body")
        .await;
    assert_eq!(logs[0]["body"], "acme log 0");
    assert_eq!(logs[0]["severity_number"], 13);
    assert_eq!(logs[0]["severity_text"], "WARN");
    assert_eq!(logs[0]["attributes"]["seq"], "0");
    assert_eq!(logs[0]["attributes"]["ok"], "true");
    assert_eq!(logs[0]["event_name"], "");

    let events = d
        .query(
            "globex",
            "SELECT event_name, body, attributes FROM events ORDER BY event_name",
        )
        .await;
    assert_eq!(events[0]["event_name"], "order.completed");
    assert_eq!(events[0]["body"], "globex order");
    assert_eq!(events[0]["attributes"]["order.id"], "o-1");
    assert_eq!(events[1]["event_name"], "subscription.upgraded");
    assert_eq!(events[1]["attributes"]["plan"], "pro");
    assert_eq!(
        events[1]["attributes"]["event.name"],
        "subscription.upgraded"
    );

    let spans = d
        .query("acme", "SELECT name, kind, status_code, status_message, duration_ns, trace_id, span_id, events, attributes FROM spans ORDER BY name")
        .await;
    assert_eq!(spans.len(), 4);
    assert_eq!(spans[0]["name"], "GET /items/0");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_SERVER");
    assert_eq!(spans[0]["status_code"], "STATUS_CODE_ERROR");
    assert_eq!(spans[0]["status_message"], "boom");
    assert!(spans[0]["duration_ns"].as_i64().unwrap() >= 0);
    assert_eq!(spans[0]["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(spans[0]["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(spans[0]["attributes"]["http.response.status_code"], "500");
    let span_events: serde_json::Value =
        serde_json::from_str(spans[0]["events"].as_str().unwrap()).unwrap();
    assert_eq!(span_events[0]["name"], "retry");
    assert_eq!(span_events[0]["attributes"]["attempt"], 2);

    let transport_label = match transport {
        Transport::Grpc => "grpc",
        Transport::Http => "http",
    };
    let received = d
        .metric(&format!(
            "tenantscope_ingest_records_received_total{{transport=\"{transport_label}\",signal=\"logs\"}}"
        ))
        .await;
    assert_eq!(received, 12.0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exporter_two_tenants() {
    two_tenants(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_exporter_two_tenants() {
    two_tenants(Transport::Http).await;
}
