//! Crash test: the real `tenantscope` binary under load from a client that records every
//! acknowledged record, killed with SIGKILL at random moments, restarted, many times. Then:
//! acknowledged ⊆ stored, nothing stored twice, no request half-stored, every visible Parquet
//! file complete and named by its audit log with the right SHA-256, and `tenantscope verify`
//! clean after every restart.
//!
//! Set `TENANTSCOPE_CRASH_CYCLES` for more cycles (default 20) and `TENANTSCOPE_CRASH_SEED` to
//! replay a run. Also here, because they need the process too: a crash at every commit step, a
//! full disk, and SIGHUP reloading keys.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
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
use sha2::Digest;

mod support;

use support::{binary, copy_dir, start, stop_gracefully};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const RECORDS_PER_REQUEST: usize = 40;
const CLIENTS: usize = 4;

/// Records in a request: the `-n<count>` suffix of its id, else [`RECORDS_PER_REQUEST`].
fn records_in(request_id: &str) -> usize {
    request_id
        .rsplit_once("-n")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(RECORDS_PER_REQUEST)
}

/// An OTLP request with [`records_in`]`(request_id)` records; ids with a count suffix spread their
/// records over three days (so one commit writes several files) and mix logs and events.
fn request(tenant: &str, request_id: &str) -> Vec<u8> {
    const DAY: u64 = 86_400_000_000_000;
    let spread = request_id.contains("-n");
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    };
    let records = (0..records_in(request_id))
        .map(|i| LogRecord {
            time_unix_nano: 1_795_000_000_000_000_000
                + if spread {
                    (i as u64 * 7 + request_id.len() as u64) % 3 * DAY
                } else {
                    0
                }
                + i as u64,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("{request_id}/{i}"))),
            }),
            attributes: vec![kv("request.id", request_id)],
            event_name: if i % 4 == 0 {
                "order.completed".into()
            } else {
                String::new()
            },
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("tenant.id", tenant), kv("service.name", "crash")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// The sorted ids of every record of `requests`.
fn record_ids(requests: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = requests
        .iter()
        .flat_map(|id| (0..records_in(id)).map(move |r| format!("{id}/{r}")))
        .collect();
    ids.sort();
    ids
}

/// What the clients saw: acknowledged request ids per tenant, and ack latencies.
#[derive(Default)]
struct Ledger {
    acked: HashMap<&'static str, Vec<String>>,
    latencies: Vec<Duration>,
    sent: usize,
}

async fn load(http: String, cycle: usize, seed: u64, until: Instant, ledger: Arc<Mutex<Ledger>>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, http, ledger) = (client.clone(), http.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            let mut rng = Lcg(seed ^ ((cycle * 31 + c) as u64));
            while Instant::now() < until {
                let tenant = TENANTS[(c + seq) % TENANTS.len()];
                let n = 1 + rng.next(80);
                let id = format!("{tenant}:c{cycle}-t{c}-r{seq}-n{n}");
                seq += 1;
                let req = http::Request::post(format!("http://{http}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(Bytes::from(request(tenant, &id))))
                    .unwrap();
                let started = Instant::now();
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        status == http::StatusCode::OK
                    }
                    Err(_) => false,
                };
                let mut ledger = ledger.lock().unwrap();
                ledger.sent += 1;
                if ok {
                    ledger.latencies.push(started.elapsed());
                    ledger.acked.entry(tenant).or_default().push(id);
                } else {
                    // The daemon is gone (killed); stop this client for the cycle.
                    break;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A small deterministic generator for kill times.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

async fn stored_ids(data_dir: &Path, tenant: &str) -> Vec<String> {
    let sql = "SELECT body FROM logs UNION ALL SELECT body FROM events";
    let cli = <tenantscope::cli::Cli as clap::Parser>::try_parse_from([
        "tenantscope",
        "query",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--tenant",
        tenant,
        "--format",
        "csv",
        sql,
    ])
    .unwrap();
    let Some(tenantscope::cli::Command::Query(args)) = cli.command else {
        unreachable!()
    };
    let mut out = Vec::new();
    tenantscope::cli::query(&args, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// The committed (and not deleted) files of a tenant's audit log: path → (SHA-256, bytes).
fn log_files(tenant_dir: &Path) -> Vec<(String, String, u64)> {
    let log = std::fs::read_to_string(tenant_dir.join("_log.jsonl")).unwrap_or_default();
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let deleted: HashSet<&str> = entries
        .iter()
        .filter(|e| e["type"] == "deletion")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    entries
        .iter()
        .filter(|e| e["type"] == "file" && !deleted.contains(e["path"].as_str().unwrap()))
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["sha256"].as_str().unwrap().to_owned(),
                e["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every Parquet file under `audit/` is named by its tenant's audit log, with the right hash,
/// and reads completely.
fn check_files(data_dir: &Path) {
    let audit = data_dir.join("audit");
    for tenant_dir in std::fs::read_dir(&audit).unwrap() {
        let tenant_dir = tenant_dir.unwrap().path();
        let named: HashMap<String, String> = log_files(&tenant_dir)
            .into_iter()
            .map(|(path, sha, _)| (path, sha))
            .collect();
        let mut seen = 0;
        for table in std::fs::read_dir(&tenant_dir).unwrap() {
            let table = table.unwrap().path();
            if !table.is_dir() {
                continue;
            }
            for date in std::fs::read_dir(&table).unwrap() {
                for file in std::fs::read_dir(date.unwrap().path()).unwrap() {
                    let path = file.unwrap().path();
                    let relative = path
                        .strip_prefix(&tenant_dir)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned();
                    assert!(relative.ends_with(".parquet"), "stray file {relative}");
                    let bytes = std::fs::read(&path).unwrap();
                    let sha = hex::encode(sha2::Sha256::digest(&bytes));
                    assert_eq!(
                        named.get(&relative),
                        Some(&sha),
                        "{relative}: not in the audit log or altered"
                    );
                    let reader =
                        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                            Bytes::from(bytes),
                        )
                        .unwrap()
                        .build()
                        .unwrap();
                    for batch in reader {
                        batch.unwrap();
                    }
                    seen += 1;
                }
            }
        }
        assert_eq!(
            seen,
            named.len(),
            "{}: the audit log names missing files",
            tenant_dir.display()
        );
    }
}

/// `tenantscope verify` on `data_dir` (beside a running daemon or not) finds nothing wrong;
/// returns its report.
fn verify_clean(data_dir: &Path, when: &str) -> String {
    let output = Command::new(binary())
        .args(["verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "verify {when}: exit {:?}\n{report}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

/// (count, total bytes) of the Parquet files the audit logs name.
fn parquet_files(data_dir: &Path) -> (u64, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for tenant_dir in std::fs::read_dir(data_dir.join("audit")).unwrap() {
        for (_, _, size) in log_files(&tenant_dir.unwrap().path()) {
            count += 1;
            bytes += size;
        }
    }
    (count, bytes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_duplicates_nothing_acknowledged() {
    let cycles: usize = std::env::var("TENANTSCOPE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("TENANTSCOPE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    println!("crash test: {cycles} cycles, seed {seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Half the cycles write Parquet every few milliseconds, so kills also land mid-commit.
    let eager = dir.path().join("eager.yaml");
    std::fs::write(
        &eager,
        "storage:\n  max_file_age: 20ms\n  wal_segment_size: 256KiB\n",
    )
    .unwrap();
    let started = Instant::now();
    for cycle in 0..cycles {
        let config = (cycle % 2 == 1).then_some(eager.as_path());
        let mut daemon = start(dir.path(), config);
        // Recovery is done once the daemon is up: the store verifies clean, even beside it.
        verify_clean(dir.path(), &format!("after restart {cycle}"));
        let run_for = Duration::from_millis(150 + rng.next(450));
        let until = Instant::now() + run_for + Duration::from_secs(5);
        let load = tokio::spawn(load(
            daemon.http.clone(),
            cycle,
            seed,
            until,
            ledger.clone(),
        ));
        tokio::time::sleep(run_for).await;
        // SIGKILL: no chance to flush, commit or even finish a write.
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        load.await.unwrap();
    }
    let load_seconds = started.elapsed().as_secs_f64();

    // A last start replays what is left; a graceful stop commits it.
    stop_gracefully(start(dir.path(), None));
    let wal_left: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .collect();
    assert!(
        wal_left.is_empty(),
        "a graceful stop leaves nothing to replay: {wal_left:?}"
    );

    check_files(dir.path());
    let report = verify_clean(dir.path(), "after the last stop");
    println!("crash test: {}", report.lines().last().unwrap_or_default());
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let mut acked_total = 0;
    let mut lost = 0;
    let mut duplicates = 0;
    let mut half = 0;
    for tenant in TENANTS {
        let stored = stored_ids(dir.path(), tenant).await;
        let mut per_request: HashMap<&str, usize> = HashMap::new();
        let mut unique = HashSet::new();
        for id in &stored {
            assert!(
                id.starts_with(&format!("{tenant}:")),
                "{tenant} holds {id}, sent for another tenant"
            );
            if !unique.insert(id.as_str()) {
                duplicates += 1;
            }
            let request = id.split('/').next().unwrap();
            *per_request.entry(request).or_default() += 1;
        }
        half += per_request
            .iter()
            .filter(|&(request, &n)| n != records_in(request))
            .count();
        for request in ledger.acked.get(tenant).into_iter().flatten() {
            acked_total += records_in(request);
            if per_request.get(request.as_str()) != Some(&records_in(request)) {
                lost += 1;
            }
        }
    }
    let mut latencies = ledger.latencies.clone();
    latencies.sort();
    let (files, bytes) = parquet_files(dir.path());
    println!(
        "crash test: {files} Parquet files, {} bytes on average (files are small here: every kill cuts a buffer short)",
        bytes / files.max(1)
    );
    println!(
        "crash test: {cycles} SIGKILL cycles, {} requests sent, {} acknowledged ({acked_total} records, {:.0} records/s acknowledged while up), ack latency p50 {:?} p99 {:?}; lost {lost}, duplicated {duplicates}, half-stored requests {half}",
        ledger.sent,
        latencies.len(),
        acked_total as f64 / load_seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    assert!(acked_total > 0, "the load never got an acknowledgement");
    assert_eq!(lost, 0, "acknowledged requests missing after crashes");
    assert_eq!(duplicates, 0, "records stored twice");
    assert_eq!(half, 0, "requests stored in part");
}

async fn post(http: &str, body: Vec<u8>) -> http::StatusCode {
    post_with(http, None, body).await
}

/// Posts `body` to `/v1/logs`, with `Authorization: Bearer <key>` when a key is given.
async fn post_with(http: &str, key: Option<&str>, body: Vec<u8>) -> http::StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::post(format!("http://{http}/v1/logs"))
        .header("content-type", "application/x-protobuf");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    client.request(req).await.unwrap().status()
}

/// The Parquet files of `tenant` in `dir`, in commit order, relative to the tenant directory.
fn committed_files(dir: &Path, tenant: &str) -> Vec<String> {
    log_files(&dir.join(format!("audit/tenant={tenant}")))
        .into_iter()
        .map(|(path, _, _)| path)
        .collect()
}

/// The on-disk state a crash leaves at each step of a commit, rebuilt from a real run, then a
/// restart: every acknowledged record is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_commit_step_recovers_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    // 1. Acknowledged records only in the write-ahead log: the state before any commit step.
    let logged = root.path().join("logged");
    let daemon = start(&logged, None);
    let ids: Vec<String> = (0..3).map(|i| format!("req{i}")).collect();
    for id in &ids {
        assert_eq!(
            post(&daemon.http, request("acme", id)).await,
            http::StatusCode::OK
        );
    }
    let mut daemon = daemon;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    // 2. The same state committed for real, to take the Parquet file and log entries from.
    let committed = root.path().join("committed");
    copy_dir(&logged, &committed);
    stop_gracefully(start(&committed, None));
    let tenant_dir = |d: &Path| d.join("audit/tenant=acme");
    // Two commits (logs and events), one file each.
    let files = committed_files(&committed, "acme");
    assert_eq!(files.len(), 2);
    let file = files[0].clone();
    let parquet = std::fs::read(tenant_dir(&committed).join(&file)).unwrap();
    // The log: its `log` entry, then one `file` entry per commit.
    let log = std::fs::read(tenant_dir(&committed).join("_log.jsonl")).unwrap();
    let line_ends: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(line_ends.len(), 3, "{}", String::from_utf8_lossy(&log));
    let first_commit = line_ends[1];

    let place = |d: &Path, name: &str, bytes: &[u8]| {
        let path = tenant_dir(d).join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path.with_file_name(name), bytes).unwrap();
    };
    let file_name = file.rsplit('/').next().unwrap().to_owned();
    let tmp_name = format!(".{file_name}.tmp");
    let faults = [
        "after writing the temporary file, before fsync",
        "after fsync, before rename",
        "after rename, before the audit log append",
        "during the audit log append (a torn line)",
        "after the audit log append, before the write-ahead log is trimmed",
    ];
    let apply = |i: usize, d: &Path| match i {
        0 => place(d, &tmp_name, &parquet[..parquet.len() / 2]),
        1 => place(d, &tmp_name, &parquet),
        2 => place(d, &file_name, &parquet),
        3 => {
            // The first commit completed; the second was cut mid-line.
            place(d, &file_name, &parquet);
            let second = tenant_dir(d).join(&files[1]);
            std::fs::create_dir_all(second.parent().unwrap()).unwrap();
            std::fs::copy(tenant_dir(&committed).join(&files[1]), second).unwrap();
            let torn = &log[..first_commit + (log.len() - first_commit) / 2];
            std::fs::write(tenant_dir(d).join("_log.jsonl"), torn).unwrap();
        }
        _ => {
            for f in &files {
                let path = tenant_dir(d).join(f);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::copy(tenant_dir(&committed).join(f), path).unwrap();
            }
            std::fs::write(tenant_dir(d).join("_log.jsonl"), &log).unwrap();
        }
    };
    for (i, step) in faults.iter().enumerate() {
        let dir = root.path().join(format!("fault{i}"));
        copy_dir(&logged, &dir);
        apply(i, &dir);
        stop_gracefully(start(&dir, None));
        check_files(&dir);
        let report = verify_clean(&dir, step);
        // A file renamed but never named was quarantined, and the move recorded.
        let orphan = match i {
            2 => Some(&files[0]),
            3 => Some(&files[1]),
            _ => None,
        };
        for f in &files {
            let quarantined = dir.join("quarantine/tenant=acme").join(f).exists();
            assert_eq!(
                quarantined,
                orphan == Some(f),
                "crash {step}: {f}\n{report}"
            );
        }
        assert_eq!(
            report.contains("info quarantined"),
            orphan.is_some(),
            "{report}"
        );
        let mut stored = stored_ids(&dir, "acme").await;
        stored.sort();
        let want = record_ids(&ids);
        assert_eq!(stored.len(), want.len(), "crash {step}: wrong row count");
        assert_eq!(stored, want, "crash {step}");
    }
}

/// The shell script that runs the daemon on a tmpfs of its own (in a private mount namespace)
/// and fills and frees it when the test says so, through files in `$CTL`.
const DISK_FULL_SCRIPT: &str = r#"
set -e
mount -t tmpfs -o size=12m tenantscope-disk-full "$DATA"
"$BIN" run --log-format json --data-dir "$DATA" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 \
    --metrics 127.0.0.1:0 --api 127.0.0.1:0 2> "$CTL/daemon.log" &
pid=$!
wait_for() { n=0; while [ ! -e "$CTL/$1" ]; do sleep 0.02; n=$((n+1)); [ $n -lt 3000 ] || exit 3; done; }
wait_for fill
dd if=/dev/zero of="$DATA/filler" bs=4k 2>/dev/null || true
touch "$CTL/filled"
wait_for free
rm "$DATA/filler"
touch "$CTL/freed"
wait_for stop
kill -TERM $pid
wait $pid
cp -a "$DATA/." "$OUT/"
"#;

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let (data, ctl, out) = (
        root.path().join("data"),
        root.path().join("ctl"),
        root.path().join("out"),
    );
    for d in [&data, &ctl, &out] {
        std::fs::create_dir_all(d).unwrap();
    }
    // A user and mount namespace of our own: mounting works as root and, where unprivileged
    // user namespaces are allowed, without it; the mount vanishes with the namespace.
    let mut shell = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            DISK_FULL_SCRIPT,
        ])
        .env("BIN", binary())
        .env("DATA", &data)
        .env("CTL", &ctl)
        .env("OUT", &out)
        .spawn()
        .expect("run unshare (util-linux)");
    let log = ctl.join("daemon.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let started: serde_json::Value = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("tenantscope started")) {
            break serde_json::from_str(line).unwrap();
        }
        if let Some(status) = shell.try_wait().unwrap() {
            panic!(
                "the tmpfs could not be set up ({status}); the disk-full test needs mount rights in a user namespace or root"
            );
        }
        assert!(Instant::now() < deadline, "daemon did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let http = started["otlp_http"].as_str().unwrap().to_owned();
    let metrics = started["metrics"].as_str().unwrap().to_owned();

    let mut acked = Vec::new();
    for i in 0..5 {
        let id = format!("before{i}");
        assert_eq!(
            post(&http, request("acme", &id)).await,
            http::StatusCode::OK
        );
        acked.push(id);
    }
    std::fs::write(ctl.join("fill"), b"").unwrap();
    wait_for_file(&ctl.join("filled"));
    let mut refused = 0;
    for i in 0..10 {
        let id = format!("full{i}");
        match post(&http, request("acme", &id)).await {
            http::StatusCode::OK => acked.push(id),
            http::StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("unexpected {other} while the disk is full"),
        }
    }
    println!(
        "disk full: {refused} of 10 requests refused with 503, {} acknowledged so far",
        acked.len()
    );
    assert!(
        refused >= 8,
        "only {refused} of 10 requests were refused on a full disk"
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exposition = client
        .get(format!("http://{metrics}/metrics").parse().unwrap())
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let exposition = String::from_utf8_lossy(&exposition).into_owned();
    assert!(
        exposition
            .lines()
            .any(|l| l.starts_with("tenantscope_wal_append_failures_total ") && !l.ends_with(" 0")),
        "no write-ahead log failure counted"
    );

    std::fs::write(ctl.join("free"), b"").unwrap();
    wait_for_file(&ctl.join("freed"));
    for i in 0..5 {
        let id = format!("after{i}");
        assert_eq!(
            post(&http, request("acme", &id)).await,
            http::StatusCode::OK,
            "no recovery after space returned"
        );
        acked.push(id);
    }
    std::fs::write(ctl.join("stop"), b"").unwrap();
    assert!(
        shell.wait().unwrap().success(),
        "graceful stop on the tmpfs failed"
    );

    check_files(&out);
    let mut stored = stored_ids(&out, "acme").await;
    stored.sort();
    let want = record_ids(&acked);
    assert_eq!(stored, want, "exactly the acknowledged records, once each");
}

/// Posts `body` with `Authorization: Bearer <key>`.
async fn post_as(http: &str, key: &str, body: Vec<u8>) -> http::StatusCode {
    post_with(http, Some(key), body).await
}

fn key_config(key: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    format!(
        "reload:\n  watch_interval: \"off\"\ntenants:\n  acme:\n    keys: [{{hash: \"sha256:{hash}\", roles: [ingest]}}]\n"
    )
}

#[tokio::test]
async fn sighup_reloads_keys_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenantscope.yaml");
    let (old, new) = ("old-key-0000000000001", "new-key-0000000000001");
    std::fs::write(&config, key_config(old)).unwrap();
    let daemon = start(&dir.path().join("data"), Some(&config));
    let body = || request("acme", "hup-r0");
    assert_eq!(
        post_as(&daemon.http, old, body()).await,
        http::StatusCode::OK
    );
    assert_eq!(
        post_as(&daemon.http, new, body()).await,
        http::StatusCode::UNAUTHORIZED
    );
    std::fs::write(&config, key_config(new)).unwrap();
    // The file watch is off: only the signal reloads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post_as(&daemon.http, new, body()).await,
        http::StatusCode::UNAUTHORIZED
    );
    support::signal(&daemon, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while post_as(&daemon.http, new, body()).await != http::StatusCode::OK {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the keys");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        post_as(&daemon.http, old, body()).await,
        http::StatusCode::UNAUTHORIZED
    );
    // An invalid file on SIGHUP: rejected, the keys in force stay, the daemon keeps running.
    std::fs::write(&config, "tenants: [not, a, mapping]\n").unwrap();
    support::signal(&daemon, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post_as(&daemon.http, new, body()).await,
        http::StatusCode::OK
    );
    stop_gracefully(daemon);
}
