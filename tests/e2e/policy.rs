//! Per-tenant policy: records refused one by one (partial success), redaction before disk, rate
//! limits honoured by real exporters, and hot reload under load.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::StatusCode;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider};
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use prost::Message;

use crate::harness::{
    Daemon, LOGS_EXPORT, answer_before_the_body, apply_tenants, bearer, grpc_on, grpc_raw, post,
};

fn key_hash(key: &str) -> String {
    tenantscope::tenancy::directory::hash_key(key.as_bytes())
}

const KEY: &str = "policy-key-00000000001";

fn record(body: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut r = serde_json::json!({"body": {"stringValue": body}});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn attrs(pairs: &[(&str, &str)]) -> serde_json::Value {
    serde_json::Value::Array(
        pairs
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
            .collect(),
    )
}

async fn post_json(
    d: &Daemon,
    path: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let auth = bearer(KEY);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &auth[..]),
    ];
    let (status, _, body) = post(d.http, path, &headers, body.to_string().into_bytes()).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn records_that_cannot_be_stored_are_refused_one_by_one() {
    let yaml = format!(
        "tenants:\n  acme:\n    keys: [{{hash: \"{}\", roles: [ingest]}}]\n    signals: [logs]\n    limits: {{max_attributes_per_record: 2}}\n",
        key_hash(KEY)
    );
    let mut d = Daemon::start_with(|c| apply_tenants(c, &yaml)).await;
    let request = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        record("good", serde_json::json!({})),
        record("bad trace id", serde_json::json!({"traceId": "5b8efff798038103d269b633813fc6"})),
        record("too many attributes", serde_json::json!({"attributes": attrs(&[("a", "1"), ("b", "2"), ("c", "3")])})),
        record("an event, disabled", serde_json::json!({"eventName": "order.completed"})),
        record("also good", serde_json::json!({"attributes": attrs(&[("a", "1"), ("b", "2")])})),
    ]}]}]});
    let (status, body) = post_json(&d, "/v1/logs", request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "3");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("3 records refused; the first: resourceLogs[0].scopeLogs[0].logRecords[1].traceId is 15 bytes long"), "{message}");

    // The same over gRPC: the response's partial_success.
    let proto: ExportLogsServiceRequest = serde_json::from_value(request).unwrap();
    let auth = bearer(KEY);
    let answer = grpc_raw(
        &d,
        LOGS_EXPORT,
        &[("authorization", &auth)],
        proto.encode_to_vec(),
        false,
    )
    .await
    .unwrap();
    let response = ExportLogsServiceResponse::decode(&answer[..]).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 3);
    assert!(partial.error_message.contains("3 records refused"));

    // Spans are not enabled for this tenant: every span is refused, the request is answered.
    let spans = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "a", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "b", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    ]}]}]});
    let (status, body) = post_json(&d, "/v1/traces", spans).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "2");
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("may not send traces")
    );

    // Invalid UTF-8 in one record's string field: that record alone is refused.
    let utf8 = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        record("fine", serde_json::json!({})),
        record("BAD!", serde_json::json!({})),
    ]}]}]});
    let proto: ExportLogsServiceRequest = serde_json::from_value(utf8).unwrap();
    let mut bytes = proto.encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
    bytes[at] = 0xc3; // a lead byte without its continuation
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("authorization", &auth[..]),
    ];
    let (status, _, body) = post(d.http, "/v1/logs", &headers, bytes.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let response = ExportLogsServiceResponse::decode(body).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("logRecords[1]: undecodable"),
        "{}",
        partial.error_message
    );
    let answer = grpc_raw(&d, LOGS_EXPORT, &[("authorization", &auth)], bytes, false)
        .await
        .unwrap();
    let partial = ExportLogsServiceResponse::decode(&answer[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);

    assert_eq!(d.count("acme", "logs").await, 6);
    assert_eq!(d.count("acme", "events").await, 0);
    assert_eq!(d.count("acme", "spans").await, 0);
    let series = |transport: &str, signal: &str, reason: &str| {
        format!(
            "tenantscope_ingest_records_rejected_total{{transport=\"{transport}\",signal=\"{signal}\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(
        d.metric(&series("http", "logs", "invalid_record")).await,
        3.0
    );
    assert_eq!(
        d.metric(&series("http", "logs", "signal_disabled")).await,
        1.0
    );
    assert_eq!(
        d.metric(&series("http", "traces", "signal_disabled")).await,
        2.0
    );
    assert_eq!(
        d.metric(&series("grpc", "logs", "invalid_record")).await,
        3.0
    );
    d.stop().await;
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn redaction_happens_before_anything_reaches_disk() {
    let key_dir = tempfile::tempdir().unwrap();
    let hmac_file = key_dir.path().join("acme.hmac");
    std::fs::write(&hmac_file, "a-tenant-secret-of-32-bytes-long\n").unwrap();
    let yaml = format!(
        r#"tenants:
  acme:
    keys: [{{hash: "{}", roles: [ingest]}}]
    redaction:
      drop_attributes: [password]
      replace: [{{pattern: '\b\d{{4}}-\d{{4}}-\d{{4}}-\d{{4}}\b', with: "[card]"}}]
      pseudonymize: [user.id]
      hmac_key_file: {}
"#,
        key_hash(KEY),
        hmac_file.display()
    );
    // max_file_age long: the records stay in the write-ahead log until the flush below.
    let mut d = Daemon::start_with(|c| {
        apply_tenants(c, &yaml);
        c.storage.max_file_age = Duration::from_secs(3600);
    })
    .await;
    let request = serde_json::json!({"resourceLogs": [{
    "resource": {"attributes": attrs(&[("service.name", "shop"), ("password", "resource-hunter2")])},
    "scopeLogs": [{"logRecords": [
        record("paid with 4111-1111-1111-1111", serde_json::json!({"attributes": attrs(&[("user.id", "u-4242"), ("password", "hunter2")])})),
        record("second order", serde_json::json!({"attributes": attrs(&[("user.id", "u-4242")])})),
        record("another user", serde_json::json!({"attributes": attrs(&[("user.id", "u-7")])})),
    ]}]}]});
    let (status, _) = post_json(&d, "/v1/logs", request).await;
    assert_eq!(status, StatusCode::OK);
    // Acknowledged = in the write-ahead log: no secret is there.
    let secrets: [&[u8]; 4] = [b"hunter2", b"4111-1111", b"u-4242", b"u-7"];
    let check_disk = || {
        for (path, bytes) in all_bytes(d.dir.path()) {
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "{} holds {:?}",
                    path.display(),
                    String::from_utf8_lossy(secret)
                );
            }
        }
    };
    check_disk();
    let rows = d
        .query("acme", "SELECT body, attributes, resource_attributes, redaction_policy FROM logs ORDER BY body")
        .await;
    check_disk();
    assert_eq!(rows.len(), 3);
    let by_body: HashMap<&str, &serde_json::Value> = rows
        .iter()
        .map(|r| (r["body"].as_str().unwrap(), r))
        .collect();
    let paid = by_body["paid with [card]"];
    assert!(paid["attributes"].get("password").is_none());
    assert!(paid["resource_attributes"].get("password").is_none());
    assert_eq!(paid["resource_attributes"]["service.name"], "shop");
    let pseudonym = paid["attributes"]["user.id"].as_str().unwrap();
    assert!(pseudonym.starts_with("hmac-sha256:"), "{pseudonym}");
    // Joinable: the same user has the same pseudonym; another user another one.
    assert_eq!(by_body["second order"]["attributes"]["user.id"], pseudonym);
    assert_ne!(by_body["another user"]["attributes"]["user.id"], pseudonym);
    let version = paid["redaction_policy"].as_str().unwrap();
    assert!(version.starts_with("r1-"), "{version}");
    assert!(rows.iter().all(|r| r["redaction_policy"] == version));
    d.stop().await;
}

fn rate_limited_yaml(grpc_key: &str, http_key: &str) -> String {
    format!(
        "tenants:\n  acme:\n    keys: [{{hash: \"{}\", roles: [ingest]}}]\n    limits: {{records_per_second: 20, records_burst: 20}}\n  globex:\n    keys: [{{hash: \"{}\", roles: [ingest]}}]\n    limits: {{records_per_second: 20, records_burst: 20}}\n",
        key_hash(grpc_key),
        key_hash(http_key)
    )
}

/// Emits `n` log records one export each through the SDK's simple processor.
async fn emit(exporter: LogExporter, n: usize) {
    tokio::task::spawn_blocking(move || {
        let provider = SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let logger = provider.logger("rate");
        for i in 0..n {
            let mut record = logger.create_log_record();
            record.set_body(AnyValue::from(format!("record {i}")));
            logger.emit(record);
        }
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn real_exporters_retry_rate_limited_requests_and_everything_arrives() {
    const GRPC_KEY: &str = "rate-grpc-key-00000001";
    const HTTP_KEY: &str = "rate-http-key-00000001";
    let yaml = rate_limited_yaml(GRPC_KEY, HTTP_KEY);
    let mut d = Daemon::start_with(|c| apply_tenants(c, &yaml)).await;
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", bearer(GRPC_KEY).parse().unwrap());
    let grpc = LogExporter::builder()
        .with_tonic()
        .with_endpoint(d.grpc_url())
        .with_metadata(metadata)
        .build()
        .unwrap();
    let http = LogExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("http://{}/v1/logs", d.http))
        .with_headers(HashMap::from([(
            "Authorization".to_owned(),
            bearer(HTTP_KEY),
        )]))
        .build()
        .unwrap();
    let started = Instant::now();
    tokio::join!(emit(grpc, 45), emit(http, 45));
    // 45 records at 20/s after a burst of 20 take at least a second: the limit held...
    assert!(started.elapsed() >= Duration::from_secs(1));
    // ...and every record arrived, because the exporters honoured Retry-After / RetryInfo.
    assert_eq!(d.count("acme", "logs").await, 45);
    assert_eq!(d.count("globex", "logs").await, 45);
    let limited = |transport: &str| {
        format!(
            "tenantscope_ingest_requests_rejected_total{{transport=\"{transport}\",signal=\"logs\",reason=\"rate_limited\"}}"
        )
    };
    let grpc_limited = d.metric(&limited("grpc")).await;
    let http_limited = d.metric(&limited("http")).await;
    assert!(grpc_limited >= 1.0 && http_limited >= 1.0);
    // The same refusals, by tenant and limit.
    let by_tenant = |tenant: &str| {
        format!(
            "tenantscope_tenancy_rate_limited_total{{tenant=\"{tenant}\",limit=\"records_per_second\"}}"
        )
    };
    assert_eq!(d.metric(&by_tenant("acme")).await, grpc_limited);
    assert_eq!(d.metric(&by_tenant("globex")).await, http_limited);
    d.stop().await;
}

/// A tenant with not a record's worth of its rate left is refused from the headers alone: the
/// 429 (with `Retry-After`) comes before the body is read, and it is counted.
#[tokio::test]
async fn a_tenant_out_of_its_rate_is_refused_before_the_body_is_read() {
    let yaml = rate_limited_yaml(KEY, "unused-key-00000000001");
    let mut d = Daemon::start_with(|c| {
        apply_tenants(c, &yaml);
        c.ingest.max_request_body_size = 64 << 20;
    })
    .await;
    let all: Vec<_> = (0..20)
        .map(|i| record(&format!("r{i}"), serde_json::json!({})))
        .collect();
    let request = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": all}]}]});
    let (status, _) = post_json(&d, "/v1/logs", request).await;
    assert_eq!(status, StatusCode::OK);
    let auth = bearer(KEY);
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Authorization", &auth[..]),
    ];
    let answer = answer_before_the_body(d.http, &headers, 60 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let (_, _, metrics) = crate::harness::get(d.metrics, "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(
            "tenantscope_tenancy_rate_limited_total{tenant=\"acme\",limit=\"records_per_second\"} 1"
        ),
        "{metrics}"
    );
    d.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_carry_retry_hints() {
    let yaml = rate_limited_yaml(KEY, "unused-key-00000000001");
    let mut d = Daemon::start_with(|c| apply_tenants(c, &yaml)).await;
    let many: Vec<_> = (0..15)
        .map(|i| record(&format!("r{i}"), serde_json::json!({})))
        .collect();
    let request = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": many}]}]});
    let (status, _) = post_json(&d, "/v1/logs", request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let auth = bearer(KEY);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &auth[..]),
    ];
    let (status, headers, body) = post(
        d.http,
        "/v1/logs",
        &headers,
        request.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:?}");
    assert_eq!(headers["retry-after"], "1");
    let proto: ExportLogsServiceRequest = serde_json::from_value(request).unwrap();
    let status = grpc_raw(
        &d,
        LOGS_EXPORT,
        &[("authorization", &auth)],
        proto.encode_to_vec(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    use tonic_types::StatusExt;
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap();
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    // Nothing over the limit was written.
    assert_eq!(d.count("acme", "logs").await, 15);
    d.stop().await;
}

/// Sends one record for `key`; returns the HTTP status.
async fn send_one(d: &Daemon, key: &str, records: usize) -> StatusCode {
    let auth = bearer(key);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &auth[..]),
    ];
    let many: Vec<_> = (0..records)
        .map(|i| record(&format!("r{i}"), serde_json::json!({})))
        .collect();
    let request = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": many}]}]});
    post(
        d.http,
        "/v1/logs",
        &headers,
        request.to_string().into_bytes(),
    )
    .await
    .0
}

/// Polls `f` until it returns `want` or 10 s pass.
async fn eventually<F, Fut>(what: &str, want: StatusCode, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = f().await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hot_reload_under_load() {
    const STEADY: &str = "steady-key-00000000001";
    const ACME: &str = "acme-reload-key-000001";
    const GLOBEX: &str = "globex-reload-key-0001";
    let tenants = |acme_key: bool, globex: Option<&str>| {
        let mut y = format!(
            "reload:\n  watch_interval: 100ms\nauth:\n  admin_keys: [\"{}\"]\ntenants:\n  steady:\n    keys: [{{hash: \"{}\", roles: [ingest]}}]\n  acme:\n",
            key_hash(crate::harness::ADMIN_KEY),
            key_hash(STEADY)
        );
        if acme_key {
            y.push_str(&format!(
                "    keys: [{{hash: \"{}\", roles: [ingest]}}]\n",
                key_hash(ACME)
            ));
        }
        if let Some(limits) = globex {
            y.push_str(&format!(
                "  globex:\n    keys: [{{hash: \"{}\", roles: [ingest]}}]\n{limits}",
                key_hash(GLOBEX)
            ));
        }
        y
    };
    let mut d = Daemon::start_from_file(&tenants(true, None)).await;
    let path = d.config_path();
    let head = std::fs::read_to_string(&path).unwrap();
    let head = head[..head.find("reload:").unwrap()].to_owned();
    let write = |body: String| std::fs::write(&path, format!("{head}{body}")).unwrap();

    // Steady load from a tenant whose key never changes, over one gRPC connection that must
    // survive every reload.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let channel = tonic::transport::Channel::from_shared(d.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let load = tokio::spawn(async move {
        let mut codes: HashMap<String, usize> = HashMap::new();
        let auth = bearer(STEADY);
        let body = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [record("steady", serde_json::json!({}))]}]}]});
        let proto: ExportLogsServiceRequest = serde_json::from_value(body).unwrap();
        let bytes = proto.encode_to_vec();
        while !*stop_rx.borrow() {
            let result = grpc_on(
                channel.clone(),
                LOGS_EXPORT,
                &[("authorization", &auth)],
                bytes.clone(),
                false,
            )
            .await;
            let code = result.map_or_else(|s| format!("{:?}", s.code()), |_| "Ok".into());
            *codes.entry(code).or_default() += 1;
        }
        codes
    });

    assert_eq!(send_one(&d, ACME, 1).await, StatusCode::OK);
    assert_eq!(send_one(&d, GLOBEX, 1).await, StatusCode::UNAUTHORIZED);
    // Add a tenant.
    write(tenants(true, Some("")));
    eventually("globex added", StatusCode::OK, || send_one(&d, GLOBEX, 1)).await;
    // Revoke a key.
    write(tenants(false, Some("")));
    eventually("acme's key revoked", StatusCode::UNAUTHORIZED, || {
        send_one(&d, ACME, 1)
    })
    .await;
    // Change a limit: globex may now send 5 records a second.
    write(tenants(
        false,
        Some("    limits: {records_per_second: 5, records_burst: 5}\n"),
    ));
    eventually("globex limited", StatusCode::TOO_MANY_REQUESTS, || {
        send_one(&d, GLOBEX, 5)
    })
    .await;
    // An invalid file is rejected; the configuration in force stays.
    let failures = "tenantscope_config_reloads_total{result=\"failure\"}";
    let successes = d
        .metric("tenantscope_config_reloads_total{result=\"success\"}")
        .await;
    assert!(successes >= 3.0, "{successes}");
    write("tenants:\n  acme:\n    keys: [{hash: \"not a hash\", roles: [ingest]}]\n".to_owned());
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric(failures).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the invalid file was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(send_one(&d, STEADY, 1).await, StatusCode::OK);
    assert_eq!(send_one(&d, ACME, 1).await, StatusCode::UNAUTHORIZED);
    assert_ne!(send_one(&d, GLOBEX, 1).await, StatusCode::UNAUTHORIZED);
    // POST /admin/reload (authorised by the configuration in force) reports the errors.
    let admin = bearer(crate::harness::ADMIN_KEY);
    let (status, _, body) = post(
        d.api,
        "/admin/reload",
        &[("authorization", &admin[..])],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("expected sha256:"),
        "{body:?}"
    );

    let _ = stop_tx.send(true);
    let codes = load.await.unwrap();
    assert_eq!(codes.keys().collect::<Vec<_>>(), vec!["Ok"], "{codes:?}");
    let steady_sent: usize = codes.values().sum();
    d.flush().await;
    assert_eq!(d.count("steady", "logs").await as usize, steady_sent + 1);
    d.stop().await;
}
