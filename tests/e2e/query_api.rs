//! `POST /api/v1/query`: result formats, SQL escape attempts, limits, and a property test that no
//! row ever crosses tenants.

use std::time::Duration;

use http::StatusCode;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use crate::harness::{
    ACME_INGEST, ACME_QUERY, ADMIN_KEY, Daemon, api_query, apply_tenants, bearer, json_lines,
    keyed, post,
};

fn logs(bodies: &[String]) -> serde_json::Value {
    let records: Vec<_> = bodies
        .iter()
        .map(|b| serde_json::json!({"body": {"stringValue": b}, "attributes": [{"key": "request.id", "value": {"stringValue": format!("rid-{b}")}}]}))
        .collect();
    serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})
}

async fn ingest_json(d: &Daemon, key: &str, bodies: &[String]) {
    let auth = bearer(key);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &auth[..]),
    ];
    let (status, _, body) = post(
        d.http,
        "/v1/logs",
        &headers,
        logs(bodies).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
}

async fn flush(d: &Daemon) {
    let admin = bearer(ADMIN_KEY);
    let (status, _, _) = post(
        d.api,
        "/admin/flush",
        &[("authorization", &admin[..])],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn formats_and_time_ranges() {
    let mut d = Daemon::start_with(keyed).await;
    let bodies: Vec<String> = (0..3).map(|i| format!("b{i}")).collect();
    ingest_json(&d, ACME_INGEST, &bodies).await;
    flush(&d).await;
    let sql = serde_json::json!({"sql": "SELECT body, attributes FROM logs ORDER BY body"});

    let (status, headers, body) = api_query(&d, Some(ACME_QUERY), sql.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let rows = json_lines(&body);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["body"], "b1");
    assert_eq!(rows[1]["attributes"]["request.id"], "rid-b1");

    let (status, headers, body) =
        api_query(&d, Some(ACME_QUERY), sql.clone(), &[("accept", "text/csv")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "body,attributes");
    assert_eq!(lines.len(), 4, "{text}");

    let mut arrow_sql = sql.clone();
    arrow_sql["format"] = "arrow".into();
    let (status, headers, body) = api_query(&d, Some(ACME_QUERY), arrow_sql, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);

    let (status, headers, body) = api_query(
        &d,
        Some(ACME_QUERY),
        sql.clone(),
        &[("accept", "application/vnd.apache.parquet")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/vnd.apache.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 3);

    // Time ranges: everything is from just now.
    let count = |range: serde_json::Value| {
        let d = &d;
        async move {
            let mut body = serde_json::json!({"sql": "SELECT count(*) AS n FROM logs"});
            for (k, v) in range.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, _, body) = api_query(d, Some(ACME_QUERY), body, &[]).await;
            (status, body)
        }
    };
    let (status, body) = count(serde_json::json!({"since": "1h"})).await;
    assert_eq!(
        (status, json_lines(&body)[0]["n"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let (status, body) =
        count(serde_json::json!({"from": "2000-01-01T00:00:00Z", "to": "2001-01-01T00:00:00Z"}))
            .await;
    assert_eq!(
        (status, json_lines(&body)[0]["n"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    for bad in [
        serde_json::json!({"from": "yesterday"}),
        serde_json::json!({"since": "1h", "from": "2000-01-01T00:00:00Z"}),
        serde_json::json!({"from": "2001-01-01T00:00:00Z", "to": "2000-01-01T00:00:00Z"}),
        serde_json::json!({"format": "xml"}),
        serde_json::json!({"unknown_field": 1}),
    ] {
        let (status, body) = count(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body:?}");
    }
    let (status, _, _) = post(
        d.api,
        "/api/v1/query",
        &[("authorization", &bearer(ACME_QUERY)[..])],
        b"not json".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    d.stop().await;
}

#[tokio::test]
async fn sql_escape_attempts_are_refused() {
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.query.max_sql_length = 10_000;
    })
    .await;
    ingest_json(&d, ACME_INGEST, &["mine".to_owned()]).await;
    let globex_bodies = vec!["secret of globex".to_owned()];
    ingest_json(&d, crate::harness::GLOBEX_KEY, &globex_bodies).await;
    flush(&d).await;
    let globex_dir = d.dir.path().join("audit/tenant=globex");
    let escape_file = d.dir.path().join("escape.csv");
    let nested = format!("SELECT {}1{} AS x", "(".repeat(3000), ")".repeat(3000));
    let attempts = vec![
        format!(
            "CREATE EXTERNAL TABLE stolen STORED AS PARQUET LOCATION '{}/'",
            globex_dir.display()
        ),
        format!(
            "COPY (SELECT * FROM logs) TO '{}' STORED AS CSV",
            escape_file.display()
        ),
        format!("COPY logs TO '{}'", escape_file.display()),
        "SELECT * FROM '/etc/passwd'".to_owned(),
        format!("SELECT * FROM '{}/signal=logs/'", globex_dir.display()),
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        format!(
            "SELECT * FROM read_parquet('{}/**/*.parquet')",
            globex_dir.display()
        ),
        "SELECT * FROM information_schema.tables".to_owned(),
        "SHOW TABLES".to_owned(),
        "SHOW ALL".to_owned(),
        "SHOW CREATE TABLE logs".to_owned(),
        "SHOW FUNCTIONS".to_owned(),
        "SET datafusion.execution.target_partitions = 1".to_owned(),
        "INSERT INTO logs SELECT * FROM logs".to_owned(),
        "DROP VIEW logs".to_owned(),
        "CREATE VIEW v AS SELECT 1".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
        nested,
    ];
    for sql in &attempts {
        let (status, _, body) =
            api_query(&d, Some(ACME_QUERY), serde_json::json!({"sql": sql}), &[]).await;
        let shown: String = sql.chars().take(80).collect();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{shown}: {:?}",
            String::from_utf8_lossy(&body)
        );
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error_type"], "invalid", "{shown}");
        assert!(!String::from_utf8_lossy(&body).contains("secret of globex"));
    }
    assert!(!escape_file.exists());
    let long = format!("SELECT 1 {}", " ".repeat(10_001));
    let (status, _, _) =
        api_query(&d, Some(ACME_QUERY), serde_json::json!({"sql": long}), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Still serving, and still only the caller's rows.
    let (status, _, body) = api_query(
        &d,
        Some(ACME_QUERY),
        serde_json::json!({"sql": "SELECT body FROM logs"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_lines(&body), vec![serde_json::json!({"body": "mine"})]);
    d.stop().await;
}

#[tokio::test]
async fn memory_limit_and_timeout_fail_cleanly() {
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.query.memory_limit = 1 << 20;
        c.query.timeout = Duration::from_secs(2);
    })
    .await;
    let (status, _, body) = api_query(
        &d,
        Some(ACME_QUERY),
        serde_json::json!({"sql": "SELECT n FROM (SELECT unnest(range(0, 200000)) AS n) ORDER BY n DESC"}),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error_type"], "memory_limit");
    let started = std::time::Instant::now();
    let (status, _, body) = api_query(
        &d,
        Some(ACME_QUERY),
        serde_json::json!({"sql": "SELECT count(*) FROM (SELECT unnest(range(0, 20000)) AS a) CROSS JOIN (SELECT unnest(range(0, 20000)) AS b) WHERE a * b % 7 = 3"}),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error_type"], "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        d.metric("tenantscope_query_requests_total{result=\"timeout\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric("tenantscope_query_requests_total{result=\"memory_limit\"}")
            .await,
        1.0
    );
    // The abandoned query may still hold the query pool until its operator yields, but never
    // the ingest path: a record is acknowledged at once.
    let started = std::time::Instant::now();
    ingest_json(&d, ACME_INGEST, &["during".to_owned()]).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    d.stop().await;
}

/// A small deterministic generator (xorshift64*), so a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn property_every_tenant_reads_exactly_its_rows() {
    const TENANTS: usize = 4;
    let key = |t: usize| format!("property-key-{t:04}-000000");
    let admin = tenantscope::tenancy::directory::hash_key(ADMIN_KEY.as_bytes());
    let mut yaml = format!("auth:\n  admin_keys: [\"{admin}\"]\ntenants:\n");
    for t in 0..TENANTS {
        let hash = tenantscope::tenancy::directory::hash_key(key(t).as_bytes());
        yaml.push_str(&format!(
            "  t{t}:\n    keys: [{{hash: \"{hash}\", roles: [ingest, query]}}]\n"
        ));
    }
    let seed: u64 = std::env::var("TENANTSCOPE_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0004);
    let mut rng = Rng(seed);
    let mut d = Daemon::start_with(|c| apply_tenants(c, &yaml)).await;
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); TENANTS];
    for request in 0..60 {
        let t = rng.below(TENANTS as u64) as usize;
        let n = 1 + rng.below(20) as usize;
        let bodies: Vec<String> = (0..n).map(|i| format!("t{t}-r{request}-{i}")).collect();
        let auth = bearer(&key(t));
        let json = logs(&bodies);
        let (content_type, body) = if rng.below(2) == 0 {
            ("application/json", json.to_string().into_bytes())
        } else {
            let request: ExportLogsServiceRequest = serde_json::from_value(json).unwrap();
            ("application/x-protobuf", request.encode_to_vec())
        };
        let headers = [("content-type", content_type), ("authorization", &auth[..])];
        let (status, _, _) = post(d.http, "/v1/logs", &headers, body).await;
        assert_eq!(status, StatusCode::OK, "seed {seed}");
        sent[t].extend(bodies);
        if rng.below(10) == 0 {
            flush(&d).await;
        }
    }
    flush(&d).await;
    for (t, expected) in sent.iter_mut().enumerate() {
        let (status, _, body) = api_query(
            &d,
            Some(&key(t)),
            serde_json::json!({"sql": "SELECT tenant_id, body FROM logs"}),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let rows = json_lines(&body);
        assert!(
            rows.iter().all(|r| r["tenant_id"] == format!("t{t}")),
            "seed {seed}: a row of another tenant reached t{t}"
        );
        let mut got: Vec<String> = rows
            .iter()
            .map(|r| r["body"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(&got, expected, "seed {seed}: tenant t{t}");
    }
    d.stop().await;
}

#[tokio::test]
async fn without_keys_the_request_names_the_tenant() {
    let mut d = Daemon::start().await;
    for (tenant, n) in [("acme", 2), ("globex", 1)] {
        let bodies: Vec<String> = (0..n).map(|i| format!("{tenant}-{i}")).collect();
        let headers = [
            ("content-type", "application/json"),
            ("x-scope-orgid", tenant),
        ];
        let (status, _, _) = post(
            d.http,
            "/v1/logs",
            &headers,
            logs(&bodies).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = post(d.api, "/admin/flush", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let sql =
        serde_json::json!({"sql": "SELECT DISTINCT tenant_id, count(*) OVER () AS n FROM logs"});
    let (status, _, body) = api_query(&d, None, sql.clone(), &[("x-scope-orgid", "acme")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_lines(&body),
        vec![serde_json::json!({"tenant_id": "acme", "n": 2})]
    );
    let mut named = sql.clone();
    named["tenant"] = "globex".into();
    let (status, _, body) = api_query(&d, None, named, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_lines(&body),
        vec![serde_json::json!({"tenant_id": "globex", "n": 1})]
    );
    let (status, _, body) = api_query(&d, None, sql, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("no tenant"));
    d.stop().await;
}
