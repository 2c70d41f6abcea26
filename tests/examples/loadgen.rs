//! A load generator for tenantscope: OTLP/HTTP protobuf requests of audit-like log records from
//! many concurrent connections, for a fixed time. Prints requests/s, records/s, acknowledgement
//! latency percentiles and, given the daemon's pid, records per daemon CPU-second.
//!
//! ```sh
//! cargo run -p tenantscope-tests --example loadgen -- --http 127.0.0.1:4318 --seconds 10 \
//!     --concurrency 16 --records 512 --tenants 10 [--pid PID]
//! ```
//! Loopback only: it refuses any other address.

use std::net::SocketAddr;
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

struct Args {
    http: SocketAddr,
    seconds: u64,
    concurrency: usize,
    records: usize,
    tenants: usize,
    pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        http: "127.0.0.1:4318".parse().unwrap(),
        seconds: 10,
        concurrency: 16,
        records: 512,
        tenants: 10,
        pid: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--http" => args.http = value.parse().expect("--http ADDR"),
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency N"),
            "--records" => args.records = value.parse().expect("--records N"),
            "--tenants" => args.tenants = value.parse().expect("--tenants N"),
            "--pid" => args.pid = Some(value.parse().expect("--pid PID")),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(args.http.ip().is_loopback(), "loopback addresses only");
    args
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        key_strindex: 0,
    }
}

/// Distinct request bodies per tenant (records differ by id, user, address and time).
const BODIES_PER_TENANT: usize = 16;

/// One request of `n` audit-like records (~450 bytes each) for `tenant`; `variant` makes the
/// ids, users and addresses of each body distinct.
fn request(tenant: usize, variant: usize, n: usize) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = (0..n)
        .map(|j| (j, variant * n + j))
        .map(|(j, i)| LogRecord {
            time_unix_nano: now + j as u64 * 1_000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "user u-{i} updated billing address for account a-{tenant}-{i} via web console"
                ))),
            }),
            attributes: vec![
                kv("request.id", format!("req-{tenant}-{i:08}")),
                kv("user.id", format!("u-{i}")),
                kv("http.route", "/api/v1/accounts/{id}/billing".into()),
                kv(
                    "client.address",
                    format!("10.0.{}.{}", i % 256, tenant % 256),
                ),
                kv("outcome", "success".into()),
            ],
            trace_id: (i as u128 * 0x9E37_79B9_7F4A_7C15).to_be_bytes().to_vec(),
            span_id: (i as u64 * 0x9E37_79B9).to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    let body = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "billing".into()),
                    kv("tenant.id", format!("tenant-{tenant}")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(body.encode_to_vec())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum()
    });
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let bodies: Vec<Bytes> = (0..args.tenants)
        .flat_map(|t| (0..BODIES_PER_TENANT).map(move |v| (t, v)))
        .map(|(t, v)| request(t, v, args.records))
        .collect();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0u64));
    let cpu_before = args.pid.map(cpu_seconds);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let (client, bodies, latencies, failures) = (
            client.clone(),
            bodies.clone(),
            latencies.clone(),
            failures.clone(),
        );
        let uri = format!("http://{}/v1/logs", args.http);
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < until {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let req = http::Request::post(&uri)
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(body))
                    .unwrap();
                let t = Instant::now();
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        ok
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.lock().unwrap().push(t.elapsed());
                } else {
                    *failures.lock().unwrap() += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let records = lat.len() as f64 * args.records as f64;
    println!(
        "{} requests acknowledged, {} failed in {elapsed:.1}s: {:.0} requests/s, {:.0} records/s; ack latency p50 {:?} p99 {:?} p99.9 {:?}",
        lat.len(),
        failures.lock().unwrap(),
        lat.len() as f64 / elapsed,
        records / elapsed,
        pct(0.5),
        pct(0.99),
        pct(0.999),
    );
    if let (Some(pid), Some(before)) = (args.pid, cpu_before) {
        let cpu = cpu_seconds(pid) - before;
        println!(
            "daemon CPU {cpu:.1}s ({:.0}% of one core): {:.0} records per daemon CPU-second",
            cpu / elapsed * 100.0,
            records / cpu.max(1e-9)
        );
    }
}
