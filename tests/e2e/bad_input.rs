//! Bad input on both transports: each gets its documented status, nothing of it is stored, it
//! is counted, and the daemon keeps serving.

use http::StatusCode;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use tonic::Code;

use crate::harness::{Daemon, LOGS_EXPORT, grpc_raw, gzip, post};

/// `google.rpc.Status`, as a client decodes it.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

pub(crate) fn logs_json(tenant_attr: Option<&str>, extra_record_fields: &str) -> Vec<u8> {
    let resource = match tenant_attr {
        Some(t) => format!(
            r#""resource":{{"attributes":[{{"key":"tenant.id","value":{{"stringValue":{}}}}}]}},"#,
            serde_json::Value::String(t.into())
        ),
        None => String::new(),
    };
    format!(
        r#"{{"resourceLogs":[{{{resource}"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"x"}}{extra_record_fields}}}]}}]}}]}}"#
    )
    .into_bytes()
}

pub(crate) fn logs_protobuf(tenant_attr: Option<&str>) -> Vec<u8> {
    let request: ExportLogsServiceRequest =
        serde_json::from_slice(&logs_json(tenant_attr, "")).unwrap();
    request.encode_to_vec()
}

const JSON: (&str, &str) = ("content-type", "application/json");
const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");

struct HttpCase {
    name: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: StatusCode,
    message: &'static str,
}

#[tokio::test]
async fn http_bad_input_gets_its_documented_status() {
    let mut d = Daemon::start_with(|c| {
        c.ingest.max_request_body_size = 4096;
        c.ingest.max_decompressed_body_size = 8192;
    })
    .await;
    let acme = ("x-scope-orgid", "acme");
    let cases = vec![
        HttpCase {
            name: "malformed protobuf",
            headers: vec![PROTOBUF, acme],
            body: vec![0xff, 0xff, 0xff, 0xff],
            status: StatusCode::BAD_REQUEST,
            message: "invalid OTLP protobuf",
        },
        HttpCase {
            name: "malformed JSON",
            headers: vec![JSON, acme],
            body: b"{\"resourceLogs\": [".to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid JSON",
        },
        HttpCase {
            name: "JSON of the wrong shape",
            headers: vec![JSON, acme],
            body: br#"{"resourceLogs": {"a": 1}}"#.to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid OTLP/JSON",
        },
        HttpCase {
            name: "wrong content type",
            headers: vec![("content-type", "text/plain"), acme],
            body: logs_json(None, ""),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported content type",
        },
        HttpCase {
            name: "no content type",
            headers: vec![acme],
            body: logs_json(None, ""),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported content type",
        },
        HttpCase {
            name: "unsupported content encoding",
            headers: vec![JSON, acme, ("content-encoding", "br")],
            body: logs_json(None, ""),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported content encoding",
        },
        HttpCase {
            name: "corrupt gzip",
            headers: vec![JSON, acme, ("content-encoding", "gzip")],
            body: b"definitely not gzip".to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "cannot decompress",
        },
        HttpCase {
            name: "missing tenant",
            headers: vec![JSON],
            body: logs_json(None, ""),
            status: StatusCode::BAD_REQUEST,
            message: "set the X-Scope-OrgID header",
        },
        HttpCase {
            name: "header and attribute disagree",
            headers: vec![JSON, acme],
            body: logs_json(Some("globex"), ""),
            status: StatusCode::FORBIDDEN,
            message: "contradicts the X-Scope-OrgID header",
        },
        HttpCase {
            name: "path traversal in the header",
            headers: vec![JSON, ("x-scope-orgid", "../x")],
            body: logs_json(None, ""),
            status: StatusCode::BAD_REQUEST,
            message: "invalid tenant id",
        },
        HttpCase {
            name: "empty header",
            headers: vec![JSON, ("x-scope-orgid", "")],
            body: logs_json(None, ""),
            status: StatusCode::BAD_REQUEST,
            message: "tenant id is empty",
        },
        HttpCase {
            name: "over-long tenant",
            headers: vec![
                JSON,
                (
                    "x-scope-orgid",
                    "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt",
                ),
            ],
            body: logs_json(None, ""),
            status: StatusCode::BAD_REQUEST,
            message: "at most 64 are allowed",
        },
        HttpCase {
            name: "non-ASCII tenant attribute",
            headers: vec![JSON],
            body: logs_json(Some("acmé"), ""),
            status: StatusCode::BAD_REQUEST,
            message: "invalid tenant id",
        },
        HttpCase {
            name: "slash in tenant attribute",
            headers: vec![JSON],
            body: logs_json(Some("a/b"), ""),
            status: StatusCode::BAD_REQUEST,
            message: "contains '/'",
        },
        HttpCase {
            name: "NUL in tenant attribute",
            headers: vec![JSON],
            body: logs_json(Some("a\u{0}b"), ""),
            status: StatusCode::BAD_REQUEST,
            message: "invalid tenant id",
        },
        HttpCase {
            name: "body over max_request_body_size",
            headers: vec![JSON, acme],
            body: vec![b' '; 5000],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "ingest.max_request_body_size",
        },
        HttpCase {
            name: "decompression bomb",
            headers: vec![JSON, acme, ("content-encoding", "gzip")],
            body: gzip(&vec![b' '; 100_000]),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "ingest.max_decompressed_body_size",
        },
    ];
    for case in cases {
        let json = !case.headers.contains(&PROTOBUF);
        let (status, headers, body) = post(d.http, "/v1/logs", &case.headers, case.body).await;
        assert_eq!(status, case.status, "{}: {body:?}", case.name);
        let rpc = if json {
            assert_eq!(headers["content-type"], "application/json", "{}", case.name);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            RpcStatus {
                code: v["code"].as_i64().unwrap() as i32,
                message: v["message"].as_str().unwrap().to_owned(),
            }
        } else {
            assert_eq!(
                headers["content-type"], "application/x-protobuf",
                "{}",
                case.name
            );
            RpcStatus::decode(body).unwrap()
        };
        assert!(
            rpc.message.contains(case.message),
            "{}: message {:?} lacks {:?}",
            case.name,
            rpc.message,
            case.message
        );
        assert_ne!(rpc.code, 0, "{}", case.name);
    }

    // Still serving, and nothing of the refused requests was stored.
    let (status, _, _) = post(d.http, "/v1/logs", &[JSON, acme], logs_json(None, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d.count("acme", "logs").await, 1);
    assert_eq!(d.count("globex", "logs").await, 0);

    let (status, _, _) = post(d.http, "/v1/profiles", &[PROTOBUF, acme], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = crate::harness::get(d.http, "/v1/logs").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let rejected = |reason: &str| {
        format!(
            "tenantscope_ingest_requests_rejected_total{{transport=\"http\",signal=\"logs\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(d.metric(&rejected("malformed")).await, 4.0);
    assert_eq!(d.metric(&rejected("unsupported_media_type")).await, 3.0);
    assert_eq!(d.metric(&rejected("missing_tenant")).await, 1.0);
    assert_eq!(d.metric(&rejected("tenant_mismatch")).await, 1.0);
    assert_eq!(d.metric(&rejected("invalid_tenant")).await, 6.0);
    assert_eq!(d.metric(&rejected("too_large")).await, 2.0);
    let records_rejected = "tenantscope_ingest_records_rejected_total{transport=\"http\",signal=\"logs\",reason=\"tenant_mismatch\"}";
    assert_eq!(d.metric(records_rejected).await, 1.0);
    d.stop().await;
}

async fn grpc_call(
    d: &Daemon,
    path: &'static str,
    tenant: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let metadata: Vec<(&str, &str)> = tenant.map(|t| ("x-scope-orgid", t)).into_iter().collect();
    grpc_raw(d, path, &metadata, body, gzip).await
}

#[tokio::test]
async fn grpc_bad_input_gets_its_documented_code() {
    let mut d = Daemon::start_with(|c| {
        c.ingest.max_request_body_size = 4096;
        c.ingest.max_decompressed_body_size = 8192;
    })
    .await;
    // (name, x-scope-orgid, body, expected code, expected message part)
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        Code,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed protobuf",
            Some("acme"),
            vec![0xff, 0xff, 0xff],
            Code::InvalidArgument,
            "",
        ),
        (
            "missing tenant",
            None,
            logs_protobuf(None),
            Code::InvalidArgument,
            "x-scope-orgid",
        ),
        (
            "mismatch",
            Some("acme"),
            logs_protobuf(Some("globex")),
            Code::PermissionDenied,
            "contradicts",
        ),
        (
            "invalid header tenant",
            Some(".."),
            logs_protobuf(None),
            Code::InvalidArgument,
            "invalid tenant id",
        ),
        (
            "invalid attribute tenant",
            None,
            logs_protobuf(Some("../etc")),
            Code::InvalidArgument,
            "invalid tenant id",
        ),
        (
            "oversized message",
            Some("acme"),
            vec![0; 10_000],
            Code::ResourceExhausted,
            "",
        ),
    ];
    for (name, tenant, body, code, message) in cases {
        let status = grpc_call(&d, LOGS_EXPORT, tenant, body, false)
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(status.message().contains(message), "{name}: {status:?}");
    }
    let status = grpc_call(
        &d,
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        Some("acme"),
        vec![],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // Still serving; gzip-compressed requests work; nothing refused was stored.
    grpc_call(&d, LOGS_EXPORT, Some("acme"), logs_protobuf(None), true)
        .await
        .unwrap();
    grpc_call(&d, LOGS_EXPORT, None, logs_protobuf(Some("globex")), false)
        .await
        .unwrap();
    assert_eq!(d.count("acme", "logs").await, 1);
    assert_eq!(d.count("globex", "logs").await, 1);
    let mismatch = "tenantscope_ingest_requests_rejected_total{transport=\"grpc\",signal=\"logs\",reason=\"tenant_mismatch\"}";
    assert_eq!(d.metric(mismatch).await, 1.0);
    d.stop().await;
}

/// Resource attributes repeated in every row: a request whose rows would repeat more than
/// `ingest.max_expanded_request_size` is refused whole, not retryable, on both transports.
#[tokio::test]
async fn a_request_whose_rows_repeat_too_much_is_refused_whole() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use tonic_types::StatusExt;

    let mut d = Daemon::start_with(|c| c.ingest.max_expanded_request_size = 1 << 20).await;
    let annotation = "a".repeat(10_000);
    let string = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    };
    // 10 kB of resource per span: 200 spans repeat 2 MB, 50 spans 0.5 MB.
    let spans = |n: usize| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("tenant.id", "acme"), string("note", &annotation)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("op-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        ..Span::default()
                    })
                    .collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let status = grpc_call(&d, TRACES, None, spans(200).encode_to_vec(), false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("ingest.max_expanded_request_size"),
        "{}",
        status.message()
    );
    assert!(status.get_details_retry_info().is_none(), "not retryable");
    grpc_call(&d, TRACES, None, spans(50).encode_to_vec(), false)
        .await
        .unwrap();

    // The same over HTTP, as log records under one scope.
    let logs = |n: usize| {
        let records = vec![r#"{"body":{"stringValue":"x"}}"#; n].join(",");
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"tenant.id","value":{{"stringValue":"acme"}}}},{{"key":"note","value":{{"stringValue":"{annotation}"}}}}]}},"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#
        )
        .into_bytes()
    };
    let (status, _, body) = post(d.http, "/v1/logs", &[JSON], logs(200)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body:?}");
    let message = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("ingest.max_expanded_request_size") && message.contains("bytes"),
        "{message}"
    );
    let (status, _, body) = post(d.http, "/v1/logs", &[JSON], logs(50)).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");

    // Only the requests under the limit were stored, and the refusals were counted.
    assert_eq!(d.count("acme", "spans").await, 50);
    assert_eq!(d.count("acme", "logs").await, 50);
    let rejected = |transport: &str, signal: &str| {
        format!(
            "tenantscope_ingest_requests_rejected_total{{transport=\"{transport}\",signal=\"{signal}\",reason=\"too_large\"}}"
        )
    };
    assert_eq!(d.metric(&rejected("grpc", "traces")).await, 1.0);
    assert_eq!(d.metric(&rejected("http", "logs")).await, 1.0);
    d.stop().await;
}

/// A protobuf field: `key`, the length as a varint, `bytes`.
fn field(key: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// An `AnyValue` `depth` levels deep: arrays of arrays around one string, encoded by hand (prost
/// would recurse once per level to encode it).
fn nested_value(depth: usize) -> Vec<u8> {
    let mut value = field(0x0a, b"bottom"); // AnyValue.string_value
    for _ in 1..depth {
        value = field(0x2a, &field(0x0a, &value)); // AnyValue.array_value(ArrayValue.values)
    }
    value
}

/// Values nested deeper than `ingest.max_value_depth` (32) are refused record by record: 40
/// levels in a log body (protobuf and JSON) or a span attribute, and 10,000 levels (past what
/// prost reads at all); the records beside them are stored.
#[tokio::test]
async fn values_nested_too_deep_are_refused_alone() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    let mut d = Daemon::start().await;
    let acme = ("x-scope-orgid", "acme");
    let record = |body: Vec<u8>| field(0x12, &field(0x2a, &body)); // ScopeLogs.log_records(body)
    let scope: Vec<u8> = [nested_value(1), nested_value(40), nested_value(10_000)]
        .into_iter()
        .flat_map(record)
        .collect();
    let request = field(0x0a, &field(0x12, &scope)); // resource_logs(scope_logs(...))
    let (status, _, body) = post(d.http, "/v1/logs", &[PROTOBUF, acme], request).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportLogsServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 2, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("max_value_depth"),
        "{}",
        partial.error_message
    );

    let mut deep = serde_json::json!({"stringValue": "bottom"});
    for _ in 1..40 {
        deep = serde_json::json!({"arrayValue": {"values": [deep]}});
    }
    let json = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "fine"}}, {"body": deep.clone()}
    ]}]}]});
    let (status, _, body) = post(
        d.http,
        "/v1/logs",
        &[JSON, acme],
        json.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1", "{body}");

    let spans = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"name": "fine", "startTimeUnixNano": "1700000000000000000"},
        {"name": "deep", "startTimeUnixNano": "1700000000000000000",
         "attributes": [{"key": "k", "value": deep}]}
    ]}]}]});
    let spans: ExportTraceServiceRequest = serde_json::from_value(spans).unwrap();
    let (status, _, body) = post(
        d.http,
        "/v1/traces",
        &[PROTOBUF, acme],
        spans.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("spans[1]"),
        "{}",
        partial.error_message
    );
    d.stop().await;
}
