//! Each point of the OTLP/JSON rules, against documents written by hand from the spec.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

/// The request of a body whose every record decoded.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let decoded: Decoded<T> = super::decode(body)?;
    assert_eq!(decoded.refused, 0);
    Ok(decoded.request)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/otlp")
        .join(name);
    std::fs::read(path).unwrap()
}

fn logs(json: &str) -> Result<ExportLogsServiceRequest, String> {
    decode(json.as_bytes())
}

fn one_log(json: &str) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    let request = logs(json).unwrap();
    request.resource_logs[0].scope_logs[0].log_records[0].clone()
}

fn wrap_log(record: &str) -> String {
    format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{record}]}}]}}]}}"#)
}

#[test]
fn spec_logs_example_decodes_completely() {
    let request: ExportLogsServiceRequest = decode(&fixture("logs.json")).unwrap();
    let rl = &request.resource_logs[0];
    let record = &rl.scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(record.severity_number, 10);
    assert_eq!(
        hex::encode(&record.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&record.span_id), "eee19b7ec3c1b174");
    assert_eq!(record.attributes.len(), 6);
    let int = record.attributes[2].value.as_ref().unwrap().value.as_ref();
    assert_eq!(int, Some(&V::IntValue(10)));
    assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "my.library");
}

#[test]
fn spec_trace_example_decodes_completely() {
    let request: ExportTraceServiceRequest = decode(&fixture("trace.json")).unwrap();
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.kind, 2);
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(
        span.end_time_unix_nano - span.start_time_unix_nano,
        1_000_000_000
    );
}

#[test]
fn int64_as_string_or_number() {
    let a = one_log(&wrap_log(r#"{"timeUnixNano":"1700000000000000001"}"#));
    let b = one_log(&wrap_log(r#"{"timeUnixNano":1700000000000000001}"#));
    assert_eq!(a.time_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(b.time_unix_nano, 1_700_000_000_000_000_001);
    let c = one_log(&wrap_log(
        r#"{"attributes":[{"key":"n","value":{"intValue":"-9007199254740993"}}]}"#,
    ));
    let v = c.attributes[0].value.as_ref().unwrap().value.as_ref();
    assert_eq!(v, Some(&V::IntValue(-9_007_199_254_740_993)));
}

#[test]
fn ids_are_hex_not_base64() {
    let r = one_log(&wrap_log(
        r#"{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}"#,
    ));
    assert_eq!(r.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(r.span_id, (1..=8).collect::<Vec<u8>>());
    // Base64 of 16 bytes is not valid hex: refused, not mis-decoded.
    assert!(logs(&wrap_log(r#"{"traceId":"AQIDBAUGBwgJCgsMDQ4PEA=="}"#)).is_err());
}

#[test]
fn enums_as_integers_or_names() {
    let r = one_log(&wrap_log(r#"{"severityNumber":17}"#));
    assert_eq!(r.severity_number, 17);
    let r = one_log(&wrap_log(r#"{"severityNumber":"SEVERITY_NUMBER_ERROR"}"#));
    assert_eq!(r.severity_number, 17);
    let spans: ExportTraceServiceRequest = decode(
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#,
    )
    .unwrap();
    let span = &spans.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.kind, 3);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert!(logs(&wrap_log(r#"{"severityNumber":"LOUD"}"#)).is_err());
}

#[test]
fn proto_field_names_are_accepted_not_dropped() {
    let r = one_log(&wrap_log(
        r#"{"time_unix_nano":"5","severity_text":"WARN","event_name":"order.completed","trace_id":"5b8efff798038103d269b633813fc60c"}"#,
    ));
    assert_eq!(r.time_unix_nano, 5);
    assert_eq!(r.severity_text, "WARN");
    assert_eq!(r.event_name, "order.completed");
    assert_eq!(r.trace_id.len(), 16);
    let whole: ExportLogsServiceRequest = decode(
        br#"{"resource_logs":[{"scope_logs":[{"log_records":[{"body":{"string_value":"x"}}]}]}]}"#,
    )
    .unwrap();
    assert_eq!(whole.resource_logs[0].scope_logs[0].log_records.len(), 1);
}

#[test]
fn attribute_keys_are_never_rewritten() {
    let r = one_log(&wrap_log(
        r#"{"attributes":[{"key":"user_id","value":{"stringValue":"u_1"}}]}"#,
    ));
    assert_eq!(r.attributes[0].key, "user_id");
}

#[test]
fn malformed_documents_are_errors() {
    for bad in [
        "",
        "{",
        "[]",
        r#"{"resourceLogs":{}}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"abc"}]}]}]}"#,
        r#"{"resourceLogs":null}"#,
    ] {
        assert!(logs(bad).is_err(), "accepted {bad:?}");
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(logs(&deep).is_err());
}

#[test]
fn camel_case_conversion() {
    assert_eq!(camel_case("time_unix_nano"), "timeUnixNano");
    assert_eq!(camel_case("key"), "key");
    assert_eq!(camel_case("_x"), "x");
}

#[test]
fn invalid_utf8_refuses_only_its_record() {
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ok"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"good"}},{"body":{"stringValue":"BAD"}},{"attributes":[{"key":"kBAD","value":{"intValue":"1"}}]},{"body":{"stringValue":"fine"}}]}]}]}"#;
    let mut bytes = body.to_vec();
    let bad: Vec<usize> = bytes
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == b"BAD")
        .map(|(i, _)| i)
        .collect();
    for at in bad {
        bytes[at] = 0xff; // a byte no UTF-8 text holds
    }
    let decoded: Decoded<ExportLogsServiceRequest> = super::decode(&bytes).unwrap();
    assert_eq!(decoded.refused, 2);
    let first = decoded.first_refusal.unwrap();
    assert_eq!(
        first,
        "resourceLogs[0].scopeLogs[0].logRecords[1]: invalid UTF-8"
    );
    let kept = &decoded.request.resource_logs[0].scope_logs[0].log_records;
    let bodies: Vec<_> = kept.iter().map(|r| format!("{:?}", r.body)).collect();
    assert_eq!(kept.len(), 2, "{bodies:?}");

    // In the resource: the whole request.
    let mut bytes = body.to_vec();
    let at = bytes.windows(2).position(|w| w == b"ok").unwrap();
    bytes[at] = 0xc3;
    let whole: Result<Decoded<ExportLogsServiceRequest>, _> = super::decode(&bytes);
    assert!(whole.unwrap_err().contains("outside the records"));

    // A body already holding the mark (escaped) cannot use it: serde's error, whole.
    let mut bytes = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\uFDD0 BAD"}}]}]}]}"#.to_vec();
    let at = bytes.windows(3).position(|w| w == b"BAD").unwrap();
    bytes[at] = 0xff;
    let whole: Result<Decoded<ExportLogsServiceRequest>, _> = super::decode(&bytes);
    assert!(whole.unwrap_err().starts_with("invalid JSON"));
}
