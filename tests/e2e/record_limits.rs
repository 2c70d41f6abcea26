//! Records over a bound on their values or their request are refused alone, through
//! `partialSuccess`, and the rest of the request is stored; the daemon's memory stays bounded.

use http::StatusCode;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use prost::Message as _;
use serde_json::json;

use crate::harness::{Daemon, post};

const JSON: (&str, &str) = ("content-type", "application/json");
const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const ACME: (&str, &str) = ("x-scope-orgid", "acme");

/// Held by the tests that measure peak memory, so that they do not measure each other.
pub(crate) static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A field of /proc/self/status in bytes (the daemon runs in this process).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Resets the peak resident memory to the current one (Linux's `clear_refs` 5) and returns it.
pub(crate) fn start_measuring() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    status_bytes("VmRSS:")
}

/// The peak resident memory since [`start_measuring`].
pub(crate) fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

fn kv(key: impl Into<String>, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[tokio::test]
async fn long_keys_long_values_and_long_lists_refuse_only_their_record() {
    let _measuring = MEASURING.lock().await;
    let mut d = Daemon::start().await;
    let before = start_measuring();
    let big_key = "k".repeat(1 << 20);
    let long_value = "v".repeat(300 << 10);
    let elements: Vec<_> = (0..20_000).map(|i| json!({"intValue": i})).collect();
    let json = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "fine"}},
        {"body": {"stringValue": "key"}, "attributes": [{"key": big_key, "value": {"intValue": 1}}]},
        {"body": {"stringValue": "value"}, "attributes": [{"key": "v", "value": {"stringValue": long_value}}]},
        {"body": {"stringValue": "list"}, "attributes": [{"key": "l", "value": {"arrayValue": {"values": elements}}}]},
        // A long body is not an attribute: stored.
        {"body": {"stringValue": "b".repeat(300 << 10)}}
    ]}]}]});
    let (status, _, body) = post(d.http, "/v1/logs", &[JSON, ACME], json.to_string().into()).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let partial = &body["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], "3", "{body}");
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(message.contains("logRecords[1]"), "{message}");
    assert!(
        message.contains("ingest.max_attribute_key_length"),
        "{message}"
    );

    // Spans: a 1 MiB key on a span event, a million attributes on a span.
    let span = |name: &str| opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_001,
        ..Default::default()
    };
    let mut keyed = span("keyed");
    keyed
        .events
        .push(opentelemetry_proto::tonic::trace::v1::span::Event {
            name: "e".into(),
            attributes: vec![kv(big_key.clone(), Value::BoolValue(true))],
            ..Default::default()
        });
    let mut crowded = span("crowded");
    crowded.attributes = (0..1_000_000)
        .map(|i| kv("a", Value::IntValue(i)))
        .collect();
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![span("fine"), keyed, crowded],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = spans.encode_to_vec();
    assert!(bytes.len() < 16 << 20, "{} bytes", bytes.len());
    let (status, _, body) = post(d.http, "/v1/traces", &[PROTOBUF, ACME], bytes).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 2, "{}", partial.error_message);

    d.flush().await;
    assert_eq!(d.count("acme", "logs").await, 2);
    assert_eq!(d.count("acme", "spans").await, 1);
    let series = r#"tenantscope_ingest_rejected_total{transport="http",signal="logs",reason="invalid_record"}"#;
    assert_eq!(d.metric(series).await, 3.0);
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak memory grew by {} MiB", grown >> 20);
    assert!(grown < 1 << 30, "peak memory grew by {} MiB", grown >> 20);
    d.stop().await;
}

#[tokio::test]
async fn records_past_max_records_per_request_are_refused_alone() {
    let mut d = Daemon::start_with(|c| c.ingest.max_records_per_request = 5).await;
    let records: Vec<_> = (0..8)
        .map(|i| json!({"body": {"stringValue": format!("r{i}")}}))
        .collect();
    let json = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
    let (status, _, body) = post(d.http, "/v1/logs", &[JSON, ACME], json.to_string().into()).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "3", "{body}");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("logRecords[5]"), "{message}");
    assert!(
        message.contains("ingest.max_records_per_request"),
        "{message}"
    );
    d.flush().await;
    let rows = d.query("acme", "SELECT body FROM logs ORDER BY body").await;
    let bodies: Vec<_> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["r0", "r1", "r2", "r3", "r4"]);
    let series = r#"tenantscope_ingest_rejected_total{transport="http",signal="logs",reason="too_many_records"}"#;
    assert_eq!(d.metric(series).await, 3.0);
    d.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_metric_refuses_only_that_metric() {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        number_data_point,
    };
    let mut d = Daemon::start().await;
    let gauge = |name: &str| Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000,
                value: Some(number_data_point::Value::AsDouble(7.0)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge("queue_depth"), gauge("BAD!_depth")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut bytes = request.encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
    bytes[at] = 0xff;
    let (status, _, body) = post(d.http, "/v1/metrics", &[PROTOBUF, ACME], bytes).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportMetricsServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_data_points, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("metrics[1]"),
        "{}",
        partial.error_message
    );
    let (_, _, text) = crate::harness::get(d.metrics, "/metrics").await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("queue_depth{") && l.ends_with(" 7")),
        "the good metric is not exposed"
    );
    assert!(!text.contains("_depth{") || text.contains("queue_depth{"));
    d.stop().await;
}

/// 200 MiB of zeros compressed with `encoding` (a few hundred KB at most), without ever holding
/// them: the test measures this process's peak memory.
fn bomb(encoding: &str) -> Vec<u8> {
    use std::io::Write as _;
    let zeros = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    match encoding {
        "zstd" => {
            let mut encoder = zstd::stream::Encoder::new(&mut out, 1).unwrap();
            for _ in 0..200 {
                encoder.write_all(&zeros).unwrap();
            }
            encoder.finish().unwrap();
        }
        _ => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, flate2::Compression::best());
            for _ in 0..200 {
                encoder.write_all(&zeros).unwrap();
            }
            encoder.finish().unwrap();
        }
    }
    out
}

/// The `grpc-status` of a gzip-compressed gRPC message sent raw (one frame, flag set).
async fn grpc_gzip_status(d: &Daemon, compressed: Vec<u8>) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(d.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}{}", d.grpc, crate::harness::LOGS_EXPORT))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "gzip")
        .header("te", "trailers")
        .header("x-scope-orgid", "acme")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    let mut frame = vec![1];
    frame.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    frame.extend_from_slice(&compressed);
    stream.send_data(frame.into(), true).unwrap();
    let response = response.await.unwrap();
    let value = |h: &http::HeaderMap| h.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    if let Some(status) = value(response.headers()) {
        return Some(status);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        data.unwrap();
    }
    body.trailers().await.unwrap().as_ref().and_then(value)
}

/// gzip and zstd bodies inflating to 200 MiB of zeros (a few hundred KB on the wire): 413 over
/// HTTP, RESOURCE_EXHAUSTED over gRPC, decompression stopped at
/// `ingest.max_decompressed_body_size`, memory bounded, and the daemon serves on.
#[tokio::test]
async fn gzip_and_zstd_bombs_are_refused_and_memory_stays_bounded() {
    let _measuring = MEASURING.lock().await;
    let mut d = Daemon::start().await;
    let (gzip, zstd) = (bomb("gzip"), bomb("zstd"));
    assert!(
        gzip.len() < 512 << 10 && zstd.len() < 64 << 10,
        "{} / {}",
        gzip.len(),
        zstd.len()
    );
    let before = start_measuring();
    for (encoding, bomb) in [("gzip", &gzip), ("zstd", &zstd)] {
        let headers = [PROTOBUF, ACME, ("content-encoding", encoding)];
        let (status, _, body) = post(d.http, "/v1/logs", &headers, bomb.clone()).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{encoding}: {body:?}"
        );
    }
    assert_eq!(
        grpc_gzip_status(&d, gzip.clone()).await.as_deref(),
        Some("8")
    );
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak memory grew by {} MiB", grown >> 20);
    // Decompression stops at `ingest.max_decompressed_body_size` (64 MiB); its buffer doubles
    // on the way there, so at most twice that is held at once.
    assert!(
        grown < 3 * (64 << 20),
        "peak memory grew by {} MiB",
        grown >> 20
    );
    let rejected = d
        .metric(r#"tenantscope_ingest_rejected_total{transport="http",signal="logs",reason="too_large"}"#)
        .await;
    assert_eq!(rejected, 2.0);
    let json = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "after"}}]}]}]});
    let (status, _, _) = post(d.http, "/v1/logs", &[JSON, ACME], json.to_string().into()).await;
    assert_eq!(status, StatusCode::OK);
    d.stop().await;
}

/// Invalid UTF-8 in OTLP/JSON refuses only its record; ids of 15 and 17 bytes and absurd times
/// are refused alone; empty and all-zero ids and duplicate keys are stored; truncated protobuf
/// is 400. Never a panic.
#[tokio::test]
async fn hostile_records_are_refused_alone_and_odd_ones_stored() {
    let mut d = Daemon::start().await;
    let records = json!([
        {"body": {"stringValue": "good"}},
        {"body": {"stringValue": "BAD"}},
        {"body": {"stringValue": "fine"}}
    ]);
    let text = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).to_string();
    let mut bytes = text.into_bytes();
    let at = bytes.windows(3).position(|w| w == b"BAD").unwrap();
    bytes[at] = 0xff;
    let (status, _, body) = post(d.http, "/v1/logs", &[JSON, ACME], bytes).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1", "{body}");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("logRecords[1]: invalid UTF-8"),
        "{message}"
    );

    let span = |trace: &str, span: &str, start: &str| {
        json!({"traceId": trace, "spanId": span, "name": "s", "startTimeUnixNano": start,
               "endTimeUnixNano": start})
    };
    let ok = "1700000000000000000";
    let spans = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        span(&"ab".repeat(15), &"01".repeat(8), ok),
        span(&"ab".repeat(17), &"01".repeat(8), ok),
        span("", "", ok),
        span(&"00".repeat(16), &"00".repeat(8), ok),
        span(&"ab".repeat(16), &"01".repeat(8), "18446744073709551615")
    ]}]}]});
    let (status, _, body) = post(
        d.http,
        "/v1/traces",
        &[JSON, ACME],
        spans.to_string().into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "3", "{body}");

    // A negative time is not a uint64 at all: the request is not OTLP/JSON (400), as protobuf
    // cannot even carry one.
    let negative = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        span(&"ab".repeat(16), &"01".repeat(8), "-1")
    ]}]}]});
    let (status, _, body) = post(
        d.http,
        "/v1/traces",
        &[JSON, ACME],
        negative.to_string().into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("invalid OTLP/JSON"));

    // Duplicate keys: the last one counts, as in any JSON object reader that does not refuse.
    let duplicated = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"first"},"body":{"stringValue":"last"}}]}]}]}"#;
    let (status, _, _) = post(d.http, "/v1/logs", &[JSON, ACME], duplicated.into()).await;
    assert_eq!(status, StatusCode::OK);

    // Truncated protobuf: the whole request is malformed.
    let whole = ExportTraceServiceRequest {
        resource_spans: vec![Default::default()],
    };
    let mut truncated = whole.encode_to_vec();
    truncated.extend_from_slice(&[0x0a, 0x40, 0x01]);
    let (status, _, _) = post(d.http, "/v1/traces", &[PROTOBUF, ACME], truncated).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    d.flush().await;
    let rows = d.query("acme", "SELECT body FROM logs ORDER BY body").await;
    let bodies: Vec<_> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["fine", "good", "last"]);
    assert_eq!(d.count("acme", "spans").await, 2);
    d.stop().await;
}

/// Request bodies in flight share `ingest.max_memory`: past it, 503 / UNAVAILABLE with a retry
/// hint, and the bytes are released when their request is answered.
#[tokio::test]
async fn request_bodies_in_flight_share_one_memory_ceiling() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut d = Daemon::start_with(|c| c.ingest.max_memory = 1 << 20).await;
    let logs = |body_len: usize| {
        let body = "b".repeat(body_len);
        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": body}}]}]}]})
            .to_string()
            .into_bytes()
    };
    // A client holds 900 KiB of a 1,000 KiB body in flight.
    let mut slow = tokio::net::TcpStream::connect(d.http).await.unwrap();
    let head = "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                X-Scope-OrgID: acme\r\nContent-Length: 1024000\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&vec![b' '; 900 << 10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // 200 KiB more do not fit: retry later.
    let (status, headers, body) = post(d.http, "/v1/logs", &[JSON, ACME], logs(200 << 10)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    assert_eq!(headers["retry-after"], "1");
    assert!(String::from_utf8_lossy(&body).contains("ingest.max_memory"));
    // A small request still fits.
    let (status, _, _) = post(d.http, "/v1/logs", &[JSON, ACME], logs(1000)).await;
    assert_eq!(status, StatusCode::OK);

    // The held body ends (blank, so malformed) and its bytes are released.
    slow.write_all(&vec![b' '; (1024000 - (900 << 10)) as usize])
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    let n = slow.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 400"));
    let (status, _, _) = post(d.http, "/v1/logs", &[JSON, ACME], logs(200 << 10)).await;
    assert_eq!(status, StatusCode::OK);

    // gRPC: a message larger than the whole budget is UNAVAILABLE with a retry hint.
    let big = logs(0);
    let request: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest =
        serde_json::from_slice(&big).unwrap();
    let mut request = request;
    let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
    record.body = Some(AnyValue {
        value: Some(Value::StringValue("g".repeat(2 << 20))),
    });
    let metadata = [("x-scope-orgid", "acme")];
    let refused = crate::harness::grpc_raw(
        &d,
        crate::harness::LOGS_EXPORT,
        &metadata,
        request.encode_to_vec(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let series =
        r#"tenantscope_ingest_rejected_total{transport="http",signal="logs",reason="memory"}"#;
    assert_eq!(d.metric(series).await, 1.0);
    let series =
        r#"tenantscope_ingest_rejected_total{transport="grpc",signal="logs",reason="memory"}"#;
    assert_eq!(d.metric(series).await, 1.0);
    d.stop().await;
}
