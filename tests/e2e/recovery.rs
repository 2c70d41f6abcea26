//! Start-up recovery of the daemon from a write-ahead log it did not write itself: valid records
//! are replayed and committed; a torn tail and a corrupt record are reported, counted and
//! preserved, and the daemon starts anyway.

use audit_store::TenantId;
use audit_store::wal::payload::encode_batch;
use audit_store::wal::{Durability, Entry, WalWriter, list_segments};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tenantscope::pipeline::convert::{Converter, Origin};

use crate::harness::Daemon;

fn payload(tenant: &TenantId, body: &str) -> Vec<u8> {
    let mut converter = Converter::new(1_795_000_000_000_000_000);
    let origin = Origin::new(None, "", None, "", "");
    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    converter.push_log(tenant, &origin, &record);
    let batches = converter.finish().unwrap();
    let mut out = Vec::new();
    encode_batch(&batches[0].batch, &mut out).unwrap();
    out
}

#[tokio::test]
async fn replays_valid_records_and_survives_damage() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let acme = TenantId::parse("acme").unwrap();
    // Segment 1: three records, the second of which will be damaged. Segment 2: two records,
    // the last of which will be cut short.
    let mut wal = WalWriter::new(&wal_dir, 0, 1 << 20).unwrap();
    let append = |wal: &mut WalWriter, bodies: &[&str]| {
        let payloads: Vec<Vec<u8>> = bodies.iter().map(|b| payload(&acme, b)).collect();
        let entries: Vec<Entry<'_>> = payloads
            .iter()
            .map(|p| Entry {
                tenant: &acme,
                table: audit_store::Table::Logs,
                durability: Durability::Sync,
                ends_request: true,
                payload: p,
            })
            .collect();
        wal.append(&entries).unwrap();
    };
    append(&mut wal, &["a1", "a2-damaged", "a3-lost-behind-damage"]);
    wal.close();
    append(&mut wal, &["b1", "b2-torn"]);
    drop(wal);
    let segments = list_segments(&wal_dir).unwrap();
    assert_eq!(segments.len(), 2);
    let mut first = std::fs::read(&segments[0].1).unwrap();
    let at = first.windows(10).position(|w| w == b"a2-damaged").unwrap();
    first[at] ^= 0x20;
    std::fs::write(&segments[0].1, &first).unwrap();
    let second = std::fs::read(&segments[1].1).unwrap();
    std::fs::write(&segments[1].1, &second[..second.len() - 7]).unwrap();

    let mut d = Daemon::start_in(dir, |_| {}).await;
    let mut bodies: Vec<String> = d
        .query("acme", "SELECT body FROM logs")
        .await
        .into_iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["a1", "b1"]);
    assert_eq!(
        d.metric("tenantscope_wal_replayed_records_total").await,
        2.0
    );
    assert_eq!(d.metric("tenantscope_wal_torn_tails_total").await, 1.0);
    assert_eq!(d.metric("tenantscope_wal_corrupt_records_total").await, 1.0);
    let evidence = wal_dir
        .join("corrupt")
        .join(segments[0].1.file_name().unwrap());
    assert_eq!(
        std::fs::read(evidence).unwrap(),
        first,
        "the damaged segment is kept as it was"
    );
    d.stop().await;
}

/// One HTTP JSON request of `acme` logs with these (time in seconds since the epoch, body).
async fn send(d: &Daemon, records: &[(u64, &str)]) {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(secs, body)| {
            serde_json::json!({
                "timeUnixNano": (secs * 1_000_000_000).to_string(),
                "body": {"stringValue": body},
            })
        })
        .collect();
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "tenant.id", "value": {"stringValue": "acme"}}]},
        "scopeLogs": [{"logRecords": records}],
    }]});
    let (status, _, _) = crate::harness::post(
        d.http,
        "/v1/logs",
        &[("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(status, http::StatusCode::OK);
}

#[tokio::test]
async fn commits_read_records_back_from_the_log_in_bounded_pieces_sorted_by_time() {
    // A tiny commit bound: the buffer is read back and written as several files.
    let mut d = Daemon::start_with(|c| c.storage.target_file_buffer_bytes = 1 << 10).await;
    const DAY: u64 = 86_400;
    let base = 1_795_000_000 / DAY * DAY; // midnight UTC
    // Requests out of time order, one of them across midnight.
    for request in [3u64, 1, 4, 0, 2] {
        let records: Vec<(u64, String)> = (0..10)
            .map(|i| {
                let t = base + DAY - 25 + request * 10 + i;
                (t, format!("r{request}-{i}"))
            })
            .collect();
        let records: Vec<(u64, &str)> = records.iter().map(|(t, b)| (*t, b.as_str())).collect();
        send(&d, &records).await;
    }
    let rows = d
        .query("acme", "SELECT body FROM logs ORDER BY timestamp, body")
        .await;
    assert_eq!(rows.len(), 50, "every record once");
    let bodies: Vec<&str> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    let mut want: Vec<(u64, String)> = (0..5u64)
        .flat_map(|r| (0..10u64).map(move |i| (r * 10 + i, format!("r{r}-{i}"))))
        .collect();
    want.sort();
    assert_eq!(
        bodies,
        want.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>()
    );
    // The audit log names several files; each is sorted by time and within one day.
    let log = std::fs::read_to_string(d.dir.path().join("audit/tenant=acme/_log.jsonl")).unwrap();
    let files: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "file")
        .collect();
    assert!(files.len() >= 4, "{} files: {log}", files.len());
    assert_eq!(
        files
            .iter()
            .map(|f| f["rows"].as_u64().unwrap())
            .sum::<u64>(),
        50
    );
    for f in &files {
        let (min, max) = (
            f["min_timestamp"].as_i64().unwrap(),
            f["max_timestamp"].as_i64().unwrap(),
        );
        assert_eq!(
            min.div_euclid(86_400_000_000_000),
            max.div_euclid(86_400_000_000_000)
        );
    }
    // Each file is sorted by time (the query layer declares it so).
    let tenant_dir = d.dir.path().join("audit/tenant=acme");
    for f in &files {
        let file = std::fs::File::open(tenant_dir.join(f["path"].as_str().unwrap())).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut times = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let ts = batch
                .column_by_name("timestamp")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .unwrap();
            times.extend(ts.values().iter().copied());
        }
        assert_eq!(times.len() as u64, f["rows"].as_u64().unwrap());
        assert!(times.is_sorted(), "{f}");
    }
    d.stop().await;
}

#[tokio::test]
async fn an_acknowledged_record_damaged_before_its_commit_is_reported_and_the_rest_committed() {
    let mut d = Daemon::start().await;
    send(&d, &[(1_795_000_000, "kept-1")]).await;
    send(&d, &[(1_795_000_001, "damaged-on-disk")]).await;
    send(&d, &[(1_795_000_002, "kept-2")]).await;
    // Flip a byte of the second record in the log, where the commit will read it back.
    let segments = list_segments(&d.dir.path().join("wal")).unwrap();
    assert_eq!(segments.len(), 1);
    let mut bytes = std::fs::read(&segments[0].1).unwrap();
    let at = bytes
        .windows(15)
        .position(|w| w == b"damaged-on-disk")
        .unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&segments[0].1, &bytes).unwrap();
    let rows = d
        .query("acme", "SELECT body FROM logs ORDER BY timestamp")
        .await;
    let bodies: Vec<&str> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["kept-1", "kept-2"]);
    assert_eq!(d.metric("tenantscope_wal_corrupt_records_total").await, 1.0);
    d.stop().await;
}

/// One OTLP/JSON log record for `tenant` (named in `X-Scope-OrgID`): the answer.
async fn send_as(d: &Daemon, tenant: &str) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    let (status, headers, body) = crate::harness::post(
        d.http,
        "/v1/logs",
        &[
            ("content-type", "application/json"),
            ("x-scope-orgid", tenant),
        ],
        crate::harness::fixture("logs.json"),
    )
    .await;
    (status, headers, body.to_vec())
}

/// A log entry edited at rest to point outside its tenant: the daemon starts, sets that
/// tenant's log aside, answers its ingest 503 + `Retry-After` and its queries with an error
/// naming the damage, and serves every other tenant as before.
#[tokio::test]
async fn a_log_entry_pointing_outside_its_tenant_sets_that_tenant_aside_and_no_other() {
    let mut d = Daemon::start().await;
    for tenant in ["acme", "globex"] {
        assert_eq!(send_as(&d, tenant).await.0, http::StatusCode::OK);
    }
    d.flush().await;
    d.stop().await;
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let log = dir.path().join("audit/tenant=acme/_log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let forged = text.replace("signal=logs/date=", "../tenant=globex/signal=logs/date=");
    assert_ne!(text, forged);
    std::fs::write(&log, forged).unwrap();

    let mut d = Daemon::start_in(dir, |_| {}).await;
    // Another tenant: served, its earlier record still there.
    assert_eq!(send_as(&d, "globex").await.0, http::StatusCode::OK);
    assert_eq!(d.count("globex", "logs").await, 2);
    // The tenant whose log is set aside: refused, retryable, named; nothing stored for it.
    let (status, headers, body) = send_as(&d, "acme").await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        body.contains("audit log of tenant acme") && body.contains("set aside"),
        "{body}"
    );
    let reason = r#"tenantscope_ingest_requests_rejected_total{transport="http",signal="logs",reason="log_set_aside"}"#;
    assert_eq!(d.metric(reason).await, 1.0);
    // Its queries fail naming the damaged line, through the API and the CLI.
    let sql = serde_json::json!({"sql": "SELECT count(*) FROM logs"});
    let (status, _, body) =
        crate::harness::api_query(&d, None, sql, &[("x-scope-orgid", "acme")]).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_ne!(status, http::StatusCode::OK);
    assert!(body.contains("is damaged"), "{body}");
    let args = crate::harness::query_args(d.dir.path(), "acme", "SELECT 1", &[]);
    let error = tenantscope::cli::query(&args, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("is damaged"), "{error:#}");
    d.stop().await;
}
