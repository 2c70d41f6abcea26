//! The daemon's own spans, exported over OTLP to the daemon itself: request, commit and query
//! spans arrive with their tenant, and ingesting them makes no spans (no feedback loop).

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn post(url: String, headers: &[(&str, &str)], body: String) -> (http::StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// (span name, its tenant attribute) of every span stored for the self tenant.
async fn self_spans(api: &str) -> Vec<(String, String)> {
    let (status, body) = post(
        format!("http://{api}/api/v1/query"),
        &[("x-scope-orgid", "tenantscope")],
        r#"{"sql": "SELECT name, attributes['tenant'] AS tenant FROM spans ORDER BY name"}"#.into(),
    )
    .await;
    assert_eq!(status, http::StatusCode::OK, "{body}");
    body.lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                row["name"].as_str().unwrap().to_owned(),
                row["tenant"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn count(spans: &[(String, String)], name: &str, tenant: &str) -> usize {
    spans
        .iter()
        .filter(|(n, t)| n == name && t == tenant)
        .count()
}

#[tokio::test]
async fn own_spans_reach_the_daemon_itself_without_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("tenantscope.yaml");
    std::fs::write(
        &config,
        format!(
            "tracing:\n  otlp_endpoint: http://127.0.0.1:{port}\nstorage:\n  max_file_age: 1h\n"
        ),
    )
    .unwrap();
    let daemon = support::start_on(
        &dir.path().join("data"),
        Some(&config),
        &format!("127.0.0.1:{port}"),
    );
    let logs =
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#;
    for _ in 0..3 {
        let (status, _) = post(
            format!("http://{}/v1/logs", daemon.http),
            &[
                ("content-type", "application/json"),
                ("x-scope-orgid", "acme"),
            ],
            logs.into(),
        )
        .await;
        assert_eq!(status, http::StatusCode::OK);
    }
    let flush = || {
        post(
            format!("http://{}/admin/flush", daemon.api),
            &[],
            String::new(),
        )
    };
    // Commit acme's records (one store.commit span); the spans are exported to the daemon
    // within the batch delay; commit those too (no span for the self tenant).
    assert_eq!(flush().await.0, http::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(flush().await.0, http::StatusCode::OK);
    let spans = self_spans(&daemon.api).await;
    assert_eq!(count(&spans, "otlp.export", "acme"), 3, "{spans:?}");
    assert_eq!(count(&spans, "store.commit", "acme"), 1, "{spans:?}");
    // Several export and commit rounds later: still nothing about the daemon's own spans.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(flush().await.0, http::StatusCode::OK);
    }
    let later = self_spans(&daemon.api).await;
    assert_eq!(count(&later, "otlp.export", "acme"), 3, "{later:?}");
    assert_eq!(count(&later, "store.commit", "acme"), 1, "{later:?}");
    assert_eq!(count(&later, "otlp.export", "tenantscope"), 0, "{later:?}");
    assert_eq!(count(&later, "store.commit", "tenantscope"), 0, "{later:?}");
    // The first query's own span arrived, with its tenant.
    assert!(count(&later, "query", "tenantscope") >= 1, "{later:?}");
    // Log lines inside a span carry its tenant.
    let log = daemon.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l.contains("query started") && l.contains(r#""tenant":"tenantscope""#)),
        "{log:?}"
    );
    support::stop_gracefully(daemon);
}
