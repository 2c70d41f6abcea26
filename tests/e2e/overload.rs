//! Overload, bounded: eight clients that resend at once drive a daemon whose write-ahead log
//! queue holds one request. Every answer is 200, or 503 with `Retry-After`; memory stays
//! bounded; every acknowledged record is stored exactly once; the daemon takes a request at once
//! when the load stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::harness::{Daemon, post};
use crate::record_limits::{MEASURING, peak_rss, start_measuring};

const CLIENTS: usize = 8;
const RECORDS: usize = 50;

fn request(id: &str) -> Vec<u8> {
    let records: Vec<_> = (0..RECORDS)
        .map(|i| json!({"body": {"stringValue": format!("{id}/{i}")}}))
        .collect();
    json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})
        .to_string()
        .into_bytes()
}

#[derive(Default)]
struct Seen {
    acked: Vec<String>,
    answers: BTreeMap<u16, u64>,
    without_retry_after: u64,
}

#[tokio::test]
async fn overload_is_answered_retryably_and_loses_or_doubles_nothing() {
    let _measuring = MEASURING.lock().await;
    let mut d = Daemon::start_with(|c| c.storage.queue_capacity = 1).await;
    let before = start_measuring();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let until = Instant::now() + Duration::from_secs(3);
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", "acme"),
    ];
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (seen, http) = (seen.clone(), d.http);
        clients.push(tokio::spawn(async move {
            let mut seq = 0;
            while Instant::now() < until {
                let id = format!("c{c}-r{seq}");
                seq += 1;
                let (status, answer, _) = post(http, "/v1/logs", &headers, request(&id)).await;
                let mut seen = seen.lock().unwrap();
                *seen.answers.entry(status.as_u16()).or_default() += 1;
                if status == StatusCode::OK {
                    seen.acked.push(id);
                } else if !answer.contains_key("retry-after") {
                    seen.without_retry_after += 1;
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("overload: answers {:?}", seen.answers);
    let statuses: Vec<u16> = seen.answers.keys().copied().collect();
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        seen.answers.contains_key(&503),
        "never overloaded: {:?}",
        seen.answers
    );
    assert_eq!(seen.without_retry_after, 0, "503 without Retry-After");
    assert!(!seen.acked.is_empty());

    // Load gone: taken at once.
    let started = Instant::now();
    let (status, _, _) = post(d.http, "/v1/logs", &headers, request("after")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Exactly once: every record of every acknowledged request, none twice.
    let rows = d.query("acme", "SELECT body FROM logs").await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *stored
            .entry(row["body"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(stored.values().all(|&n| n == 1), "a record stored twice");
    for id in seen
        .acked
        .iter()
        .chain(std::iter::once(&"after".to_owned()))
    {
        for i in 0..RECORDS {
            assert!(
                stored.contains_key(&format!("{id}/{i}")),
                "{id}/{i} acknowledged, not stored"
            );
        }
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "peak memory grew by {} MiB", grown >> 20);
    d.stop().await;
}
