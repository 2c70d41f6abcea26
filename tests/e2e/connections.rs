//! What a client can hold of a listener: connections past `listen.max_connections`, slow heads
//! (slowloris), slow bodies, idle and aged connections, oversized heads, HTTP/2 rapid reset.
//! Each test checks the documented answer and that the daemon serves a normal request after.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{Daemon, LOGS_EXPORT, fixture, get, post};

/// A normal OTLP/HTTP export is acknowledged.
async fn serves_normally(d: &Daemon) {
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", "acme"),
    ];
    let (status, _, body) = post(d.http, "/v1/logs", &headers, fixture("logs.json")).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
}

/// Reads until the peer closes (or `within` passes): what it sent, and when it closed.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, tcp.read(&mut chunk)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(start.elapsed()),
                );
            }
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

fn short_timeouts(c: &mut tenantscope::config::Config) {
    let conns = &mut c.listen.connections;
    conns.header_read_timeout = Duration::from_secs(1);
    conns.body_read_timeout = Duration::from_secs(1);
    conns.idle_timeout = Duration::from_secs(2);
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_at_the_header_timeout_on_every_listener() {
    let d = Daemon::start_with(short_timeouts).await;
    for addr in [d.http, d.api, d.metrics] {
        // A head dripped one header line every 300 ms never completes.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let drip = async {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let line = format!("X-Drip-{i}: y\r\n");
                if tcp.write_all(line.as_bytes()).await.is_err() {
                    return i;
                }
            }
            20
        };
        let lines = tokio::time::timeout(Duration::from_secs(8), drip)
            .await
            .unwrap();
        assert!(lines < 20, "{addr}: the dripping client was never cut off");
        // A connection that sends nothing at all is closed at the same timeout.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
        let closed = closed.unwrap_or_else(|| panic!("{addr}: a silent connection stayed open"));
        assert!(
            closed >= Duration::from_millis(900),
            "{addr}: closed after {closed:?}"
        );
    }
    serves_normally(&d).await;
}

#[tokio::test]
async fn a_slow_body_is_answered_408_at_the_body_timeout() {
    let d = Daemon::start_with(short_timeouts).await;
    let mut tcp = TcpStream::connect(d.http).await.unwrap();
    let head = "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                X-Scope-OrgID: acme\r\nContent-Length: 1000\r\n\r\n{\"resourceLogs\"";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("listen.body_read_timeout"), "{answer}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    let rejected = d
        .metric(
            r#"tenantscope_ingest_rejected_total{transport="http",signal="logs",reason="timeout"}"#,
        )
        .await;
    assert_eq!(rejected, 1.0);

    // Over gRPC (HTTP/2): a message announced and never finished is DEADLINE_EXCEEDED.
    let tcp = TcpStream::connect(d.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}{LOGS_EXPORT}", d.grpc))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-scope-orgid", "acme")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    // A gRPC frame header announcing 100 bytes, then 3 of them.
    stream
        .send_data(
            bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]),
            false,
        )
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("no answer to a slow gRPC body")
        .unwrap();
    let status = grpc_status(response).await;
    assert_eq!(status.as_deref(), Some("4"), "DEADLINE_EXCEEDED expected");
    serves_normally(&d).await;
}

/// The `grpc-status` of a response, from its headers (trailers-only) or its trailers.
async fn grpc_status(response: http::Response<h2::RecvStream>) -> Option<String> {
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

#[tokio::test]
async fn idle_connections_are_closed_at_the_idle_timeout() {
    let d = Daemon::start_with(short_timeouts).await;
    // HTTP/1 keep-alive after a request: closed once idle for 2 s, not at the 1 s head timeout.
    let mut tcp = TcpStream::connect(d.metrics).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(6)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let closed = closed.expect("an idle keep-alive connection stayed open");
    assert!(
        (Duration::from_millis(1800)..Duration::from_secs(5)).contains(&closed),
        "closed after {closed:?}"
    );
    // HTTP/2: GOAWAY after 2 s without a stream, although PINGs may flow.
    let tcp = TcpStream::connect(d.grpc).await.unwrap();
    let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let start = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(6), connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
    assert!(start.elapsed() >= Duration::from_millis(1800));
    serves_normally(&d).await;
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_lock_out_a_new_client() {
    let d = Daemon::start_with(|c| {
        c.listen.connections.header_read_timeout = Duration::from_secs(3);
    })
    .await;
    // Two ends of each connection live in this process; the daemon raised its soft limit to the
    // hard one when it started.
    let limit = rustix_limit();
    let wanted = 5_000.min((limit.saturating_sub(500) / 2) as usize);
    if wanted < 5_000 {
        eprintln!("open-files limit {limit}: opening {wanted} idle connections, not 5,000");
    }
    let mut idle = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        idle.push(TcpStream::connect(d.http).await.unwrap());
    }
    let start = Instant::now();
    serves_normally(&d).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let (status, _, _) = get(d.api, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    // They are closed at the head timeout: every one reads end-of-file.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut open = 0;
    for tcp in &mut idle {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            _ => open += 1,
        }
    }
    assert_eq!(open, 0, "idle connections left open");
    serves_normally(&d).await;
}

fn rustix_limit() -> u64 {
    let mut limit = libc_rlimit();
    limit.0 = limit.0.min(limit.1);
    limit.0
}

/// (soft, hard) open-files limits, from /proc (no libc call needed in tests).
fn libc_rlimit() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line.split_whitespace().filter_map(|w| {
        w.parse::<u64>()
            .ok()
            .or((w == "unlimited").then_some(u64::MAX))
    });
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test]
async fn past_max_connections_new_connections_wait_while_open_ones_are_served() {
    let d = Daemon::start_with(|c| c.listen.connections.max_connections = 2).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(d.api).await.unwrap();
    let mut second = TcpStream::connect(d.api).await.unwrap();
    for tcp in [&mut first, &mut second] {
        tcp.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    // The third is queued by the kernel, not served...
    let mut third = TcpStream::connect(d.api).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 1024];
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "a connection past max_connections was served"
    );
    // ... while the open ones still are...
    first.write_all(request).await.unwrap();
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // ... and served once one of them closes.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the waiting connection was never served")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn an_oversized_head_is_answered_431() {
    let d = Daemon::start_with(|c| c.listen.connections.max_header_size = 16 << 10).await;
    let mut tcp = TcpStream::connect(d.http).await.unwrap();
    let big = "a".repeat(32 << 10);
    let head = format!("POST /v1/logs HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = tcp.write_all(head.as_bytes()).await;
    let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    serves_normally(&d).await;
}

#[tokio::test]
async fn aged_connections_are_asked_to_go_away() {
    let d = Daemon::start_with(|c| {
        c.listen.connections.max_connection_age = Some(Duration::from_secs(1));
        c.listen.connections.max_connection_age_grace = Duration::from_secs(1);
    })
    .await;
    let tcp = TcpStream::connect(d.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    // A request in flight past the age: the connection is closed after the grace period.
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}{LOGS_EXPORT}", d.grpc))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (_response, _stream) = client.send_request(request, false).unwrap();
    let start = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(6), connection).await;
    assert!(ended.is_ok(), "an aged HTTP/2 connection stayed open");
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    serves_normally(&d).await;
}

#[tokio::test]
async fn an_http2_rapid_reset_burst_is_cut_off_and_the_daemon_keeps_serving() {
    let d = Daemon::start().await;
    let tcp = TcpStream::connect(d.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client;
    let mut sent = 0;
    // Open a stream and reset it at once, as fast as the connection takes them (CVE-2023-44487).
    while sent < 100_000 && !connection.is_finished() {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::post(format!("http://{}{LOGS_EXPORT}", d.grpc))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let Ok((_, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
        if sent % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The daemon closed the connection: a client does not get to reset streams without end.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .unwrap_or_else(|_| panic!("the connection outlived a burst of {sent} resets"))
        .unwrap();
    let error = ended.expect_err("the burst ended without an error");
    let calm = error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    assert!(calm || error.is_io(), "{error} after {sent} streams");
    assert!(
        sent < 100_000,
        "{sent} streams reset and the connection still open"
    );
    eprintln!("rapid reset: cut off after {sent} streams: {error}");
    serves_normally(&d).await;
}
