//! Health endpoints and graceful shutdown: requests in flight when shutdown begins are answered,
//! and every acknowledged record is committed before the daemon exits.

use std::time::Duration;

use http::StatusCode;

use crate::harness::{Daemon, get, post, query_dir};

#[tokio::test]
async fn health_and_readiness() {
    let mut d = Daemon::start().await;
    let (status, _, body) = get(d.api, "/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (status, _, _) = get(d.api, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(d.api, "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(d.api, "/api/v1/query").await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "the query API takes POST"
    );
    d.stop().await;
}

#[tokio::test]
async fn admin_flush_makes_acknowledged_records_queryable_now() {
    let mut d = Daemon::start().await;
    let body =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"now"}}]}]}]}"#;
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", "acme"),
    ];
    let (status, _, _) = post(d.http, "/v1/logs", &headers, body.to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    // Acknowledged, in the log, not yet a Parquet file (max_file_age is 30 s).
    let before = query_dir(d.dir.path(), "acme", "SELECT count(*) AS n FROM logs").await;
    assert_eq!(before[0]["n"], 0);
    let (status, _, body) = post(d.api, "/admin/flush", &[], vec![]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"flushed\n"[..]));
    let after = query_dir(d.dir.path(), "acme", "SELECT body FROM logs").await;
    assert_eq!(after, vec![serde_json::json!({"body": "now"})]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_requests_and_commits_them() {
    // Nothing becomes a Parquet file before shutdown: shutdown must commit it all.
    let mut d = Daemon::start_with(|c| c.storage.max_file_age = Duration::from_secs(3600)).await;
    let addr = d.http;
    let mut requests = Vec::new();
    for i in 0..20 {
        requests.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"r{i}"}}}}]}}]}}]}}"#
            );
            post(addr, "/v1/logs", &[("content-type", "application/json"), ("x-scope-orgid", "acme")], body.into_bytes())
                .await
                .0
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = d.dir.path().to_path_buf();
    d.stop().await;
    for r in requests {
        let status = r.await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "a request in flight at shutdown was not acknowledged"
        );
    }
    let rows = query_dir(&dir, "acme", "SELECT count(*) AS n FROM logs").await;
    assert_eq!(rows[0]["n"], 20);
    // Requests were committed together, not one file per request.
    let files = std::fs::read_dir(dir.join("audit/tenant=acme/signal=logs"))
        .unwrap()
        .map(|date| std::fs::read_dir(date.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert!(files <= 3, "{files} files for 20 concurrent requests");
    // Nothing is left to replay.
    let wal: Vec<_> = std::fs::read_dir(dir.join("wal")).unwrap().collect();
    assert!(
        wal.is_empty(),
        "write-ahead log segments left after a graceful stop: {wal:?}"
    );
    // The listeners are closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_full_memtable_refuses_with_retry_after_and_recovers() {
    // Room for about one request's records, and nothing becomes Parquet on its own.
    let mut d = Daemon::start_with(|c| {
        c.storage.max_buffered_bytes = 1;
        c.storage.max_file_age = Duration::from_secs(3600);
    })
    .await;
    let body = || {
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#
            .to_vec()
    };
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", "acme"),
    ];
    // The flusher drains the memtable under pressure about once a second, so between two of its
    // ticks the second request already finds it full.
    let mut acknowledged = 0;
    let mut refused = None;
    for _ in 0..20 {
        let (status, response_headers, _) = post(d.http, "/v1/logs", &headers, body()).await;
        match status {
            StatusCode::OK => acknowledged += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = Some(response_headers);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refused = refused.expect("a full memtable never refused a request");
    assert_eq!(refused["retry-after"], "1");
    let overloaded = "tenantscope_ingest_requests_rejected_total{transport=\"http\",signal=\"logs\",reason=\"overloaded\"}";
    assert_eq!(d.metric(overloaded).await, 1.0);
    // Once the buffer is committed, requests are accepted again; nothing refused was stored.
    d.flush().await;
    let (status, _, _) = post(d.http, "/v1/logs", &headers, body()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d.count("acme", "logs").await, acknowledged + 1);
    d.stop().await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_directory_is_refused() {
    let mut d = Daemon::start().await;
    let mut config = tenantscope::config::Config::default();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listen.otlp_grpc = any;
    config.listen.otlp_http = any;
    config.listen.metrics = any;
    config.listen.api = any;
    config.storage.data_dir = d.dir.path().to_path_buf();
    let error = match tenantscope::app::start(config.clone()).await {
        Ok(_) => panic!("two daemons share one data directory"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("another tenantscope is using the data directory"),
        "{error}"
    );
    // Once the first has stopped, the directory is free again.
    d.stop().await;
    let second = tenantscope::app::start(config).await.unwrap();
    second.shutdown().await.unwrap();
}
