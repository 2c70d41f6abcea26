//! The soak test (`bench/soak.sh`; ignored in the default run): the release daemon at ~70 % of
//! the capacity it shows for this load, a mix of tenants, `SIGHUP` every minute, `SIGKILL` and a
//! restart every five minutes (`TENANTSCOPE_SOAK_KILL_EVERY`), for `TENANTSCOPE_SOAK_SECONDS`
//! (default 1,800). It reports the
//! daemon's RSS over time, answers by status, and at the end checks every acknowledged request is
//! stored exactly once (by request id and record count, through the query path).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use support::{Daemon, signal, start, stop_gracefully};

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const RECORDS: usize = 200;
const CLIENTS: usize = 8;

fn seconds(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var).ok().and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(default))
}

fn request(tenant: &str, id: &str) -> Bytes {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = (0..RECORDS)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "{id}/{i} user signed in from the usual place"
                ))),
            }),
            attributes: vec![kv("request.id", id), kv("http.route", "/api/v1/orders")],
            ..Default::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("tenant.id", tenant), kv("service.name", "soak")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(request.encode_to_vec())
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, &'static str>,
    answers: BTreeMap<String, u64>,
}

/// Sends until `until`: closed loop without `interval`, else one request per client every
/// `interval`. Returns when the daemon stops answering or the time is up.
async fn load(
    http: String,
    run: usize,
    until: Instant,
    interval: Option<Duration>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, http, ledger) = (client.clone(), http.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            for seq in 0.. {
                if Instant::now() >= until {
                    break;
                }
                if let Some(step) = interval {
                    next += step;
                    tokio::time::sleep_until(next).await;
                }
                let tenant = TENANTS[(c + seq) % TENANTS.len()];
                let id = format!("{tenant}-r{run}-c{c}-s{seq}");
                let req = http::Request::post(format!("http://{http}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(request(tenant, &id)))
                    .unwrap();
                let answer = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        format!("http {}", status.as_u16())
                    }
                    Err(_) => "connection error".to_owned(),
                };
                let mut ledger = ledger.lock().unwrap();
                *ledger.answers.entry(answer.clone()).or_default() += 1;
                match answer.as_str() {
                    "http 200" => {
                        ledger.acked.insert(id, tenant);
                    }
                    "connection error" => break, // killed: this client waits for the restart
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn rss_mib(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id()));
    let line = status.unwrap_or_default();
    let kib = line
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    kib.unwrap_or(0) / 1024
}

/// Records stored per request id, for one tenant.
async fn stored_counts(data_dir: &std::path::Path, tenant: &str) -> HashMap<String, u64> {
    let sql = "SELECT attributes['request.id'] AS id, count(*) AS n FROM logs GROUP BY 1";
    let dir = data_dir.to_str().unwrap();
    let args = [
        "tenantscope",
        "query",
        "--data-dir",
        dir,
        "--tenant",
        tenant,
    ];
    let cli = <tenantscope::cli::Cli as clap::Parser>::try_parse_from(
        args.into_iter().chain(["--format", "csv", sql]),
    )
    .unwrap();
    let Some(tenantscope::cli::Command::Query(args)) = cli.command else {
        unreachable!()
    };
    let mut out = Vec::new();
    tenantscope::cli::query(&args, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows = text.lines().skip(1).filter_map(|l| l.rsplit_once(','));
    rows.map(|(id, n)| (id.to_owned(), n.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "30 minutes; run by bench/soak.sh"]
async fn soak() {
    let total = seconds("TENANTSCOPE_SOAK_SECONDS", 1800);
    let kill_every = seconds("TENANTSCOPE_SOAK_KILL_EVERY", 300);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenantscope.yaml");
    std::fs::write(&config, "storage:\n  max_file_age: 30s\n").unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Capacity for this load: closed loop, 20 s, on a throwaway data directory.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = start(probe_dir.path(), Some(&config));
    let probe_ledger = Arc::new(Mutex::new(Ledger::default()));
    let until = Instant::now() + Duration::from_secs(20);
    load(probe.http.clone(), 0, until, None, probe_ledger.clone()).await;
    let capacity = probe_ledger.lock().unwrap().acked.len() as f64 * RECORDS as f64 / 20.0;
    stop_gracefully(probe);
    let rate = capacity * 0.7;
    let interval = Duration::from_secs_f64(CLIENTS as f64 * RECORDS as f64 / rate);
    println!("soak: capacity {capacity:.0} records/s; sending {rate:.0} records/s for {total:?}");

    let started = Instant::now();
    let mut run = 1;
    let mut daemon = start(dir.path(), Some(&config));
    while started.elapsed() < total {
        let kill_at = (Instant::now() + kill_every).min(started + total);
        // The clients keep sending past the kill, so it lands in the middle of the load.
        let sending_until = if kill_at < started + total {
            kill_at + Duration::from_secs(5)
        } else {
            kill_at
        };
        let sender = tokio::spawn(load(
            daemon.http.clone(),
            run,
            sending_until,
            Some(interval),
            ledger.clone(),
        ));
        while Instant::now() < kill_at {
            tokio::time::sleep(Duration::from_secs(30).min(kill_at - Instant::now())).await;
            let at = started.elapsed().as_secs();
            println!("soak: {at:>5} s  RSS {:>5} MiB", rss_mib(&daemon));
            if at % 60 < 30 {
                signal(&daemon, "HUP");
            }
        }
        if started.elapsed() < total {
            daemon.child.kill().unwrap();
            daemon.child.wait().unwrap();
            sender.await.unwrap();
            println!(
                "soak: SIGKILL at {} s, restarting",
                started.elapsed().as_secs()
            );
            daemon = start(dir.path(), Some(&config));
            run += 1;
        } else {
            sender.await.unwrap();
        }
    }
    stop_gracefully(daemon);

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let (mut lost, mut duplicates, mut acked_records) = (0u64, 0u64, 0u64);
    for tenant in TENANTS {
        let stored = stored_counts(dir.path(), tenant).await;
        for (id, _) in ledger.acked.iter().filter(|(_, t)| **t == tenant) {
            acked_records += RECORDS as u64;
            if stored.get(id).copied().unwrap_or(0) < RECORDS as u64 {
                lost += 1;
            }
        }
        // A request cut by a kill may be stored without its acknowledgement; twice, never.
        let over = stored
            .values()
            .filter_map(|&n| n.checked_sub(RECORDS as u64));
        duplicates += over.sum::<u64>();
    }
    println!(
        "soak: {} s, {run} daemon runs, {} requests acknowledged ({acked_records} records, {:.0}/s); answers {:?}; lost {lost} requests, {duplicates} duplicate records",
        started.elapsed().as_secs(),
        ledger.acked.len(),
        acked_records as f64 / started.elapsed().as_secs_f64(),
        ledger.answers
    );
    assert!(acked_records > 0);
    assert_eq!(lost, 0, "acknowledged requests lost");
    assert_eq!(duplicates, 0, "records stored twice");
}
