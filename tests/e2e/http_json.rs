//! OTLP/HTTP with JSON bodies written from the spec's examples, compressed and not.

use http::StatusCode;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use crate::harness::{Daemon, fixture, gzip, post};

#[tokio::test]
async fn spec_json_examples_in_every_encoding() {
    let mut d = Daemon::start().await;
    let logs = fixture("logs.json");
    let trace = fixture("trace.json");
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("application/json", None, logs.clone()),
        ("application/json; charset=utf-8", Some("gzip"), gzip(&logs)),
        (
            "application/json",
            Some("zstd"),
            zstd::encode_all(&logs[..], 3).unwrap(),
        ),
    ];
    for (content_type, encoding, body) in cases {
        let mut headers = vec![("content-type", content_type), ("x-scope-orgid", "acme")];
        if let Some(e) = encoding {
            headers.push(("content-encoding", e));
        }
        let (status, response_headers, response) = post(d.http, "/v1/logs", &headers, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{content_type} {encoding:?}: {response:?}"
        );
        assert_eq!(response_headers["content-type"], "application/json");
        assert_eq!(&response[..], b"{}");
    }
    let (status, _, _) = post(
        d.http,
        "/v1/traces",
        &[
            ("content-type", "application/json"),
            ("x-scope-orgid", "acme"),
        ],
        trace,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(d.count("acme", "logs").await, 3);
    let rows = d.query("acme", "SELECT * FROM logs LIMIT 1").await;
    let row = &rows[0];
    assert_eq!(row["timestamp"], "2018-12-13T14:51:00.300Z");
    assert_eq!(row["service_name"], "my.service");
    assert_eq!(row["severity_number"], 10);
    assert_eq!(row["severity_text"], "Information");
    assert_eq!(row["body"], "Example log record");
    assert_eq!(row["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(row["span_id"], "eee19b7ec3c1b174");
    assert_eq!(row["scope_name"], "my.library");
    assert_eq!(row["scope_version"], "1.0.0");
    assert_eq!(
        row["scope_attributes"]["my.scope.attribute"],
        "some scope attribute"
    );
    let attrs = &row["attributes"];
    assert_eq!(attrs["string.attribute"], "some string");
    assert_eq!(attrs["boolean.attribute"], "true");
    assert_eq!(attrs["int.attribute"], "10");
    assert_eq!(attrs["double.attribute"], "637.704");
    assert_eq!(attrs["array.attribute"], r#"["many","values"]"#);
    assert_eq!(attrs["map.attribute"], r#"{"some.map.key":"some value"}"#);

    let spans = d.query("acme", "SELECT * FROM spans").await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "I'm a server span");
    assert_eq!(spans[0]["parent_span_id"], "eee19b7ec3c1b173");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_SERVER");
    assert_eq!(spans[0]["duration_ns"], 1_000_000_000);
    assert_eq!(spans[0]["start_time"], "2018-12-13T14:51:00Z");
    d.stop().await;
}

#[tokio::test]
async fn protobuf_is_answered_in_protobuf_and_events_keep_their_name() {
    let mut d = Daemon::start().await;
    // The spec example, re-encoded as protobuf, with an event added by the event_name field.
    let mut request: ExportLogsServiceRequest =
        serde_json::from_slice(&fixture("logs.json")).unwrap();
    let mut event = request.resource_logs[0].scope_logs[0].log_records[0].clone();
    event.event_name = "order.completed".into();
    request.resource_logs[0].scope_logs[0]
        .log_records
        .push(event);
    let body = request.encode_to_vec();
    let (status, headers, response) = post(
        d.http,
        "/v1/logs",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
            ("x-scope-orgid", "acme"),
        ],
        gzip(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(response.is_empty(), "an empty ExportLogsServiceResponse");
    assert_eq!(d.count("acme", "logs").await, 1);
    let events = d.query("acme", "SELECT event_name, body FROM events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_name"], "order.completed");
    d.stop().await;
}

#[tokio::test]
async fn one_request_may_carry_several_tenants_by_attribute() {
    let mut d = Daemon::start().await;
    let resource = |tenant: &str, body: &str| {
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"tenant.id","value":{{"stringValue":"{tenant}"}}}}]}},
                "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1700000000000000000","body":{{"stringValue":"{body}"}}}}]}}]}}"#
        )
    };
    let body = format!(
        r#"{{"resourceLogs":[{},{},{}]}}"#,
        resource("acme", "a1"),
        resource("globex", "g1"),
        resource("acme", "a2")
    );
    let (status, _, _) = post(
        d.http,
        "/v1/logs",
        &[("content-type", "application/json")],
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let acme = d.query("acme", "SELECT body FROM logs ORDER BY body").await;
    let globex = d.query("globex", "SELECT body FROM logs").await;
    assert_eq!(
        acme,
        vec![
            serde_json::json!({"body": "a1"}),
            serde_json::json!({"body": "a2"})
        ]
    );
    assert_eq!(globex, vec![serde_json::json!({"body": "g1"})]);
    d.stop().await;
}
