//! `tenantscope query` and `tenantscope config check`, through the same functions the binary
//! calls, over data sent to a real daemon.

use http::StatusCode;

use crate::harness::{Daemon, fixture, post, query_args};

async fn daemon_with_spec_logs() -> Daemon {
    let d = Daemon::start().await;
    for tenant in ["acme", "globex"] {
        let (status, _, _) = post(
            d.http,
            "/v1/logs",
            &[
                ("content-type", "application/json"),
                ("x-scope-orgid", tenant),
            ],
            fixture("logs.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    // One acme record stamped now, so --since finds something.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let recent = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now}","body":{{"stringValue":"recent"}},"eventName":"user.login"}}]}}]}}]}}"#
    );
    let (status, _, _) = post(
        d.http,
        "/v1/logs",
        &[
            ("content-type", "application/json"),
            ("x-scope-orgid", "acme"),
        ],
        recent.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    d
}

async fn run(d: &Daemon, tenant: &str, sql: &str, extra: &[&str]) -> anyhow::Result<String> {
    d.flush().await;
    let args = query_args(d.dir.path(), tenant, sql, extra);
    let mut out = Vec::new();
    tenantscope::cli::query(&args, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn output_formats() {
    let mut d = daemon_with_spec_logs().await;
    let sql = "SELECT tenant_id, body, severity_number, attributes FROM logs";

    let table = run(&d, "acme", sql, &["--format", "table"]).await.unwrap();
    assert!(table.contains("| tenant_id | body"), "{table}");
    assert!(
        table.contains("| acme      | Example log record |"),
        "{table}"
    );
    assert!(!table.contains("globex"));

    let csv = run(&d, "acme", sql, &["--format", "csv"]).await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("tenant_id,body,severity_number,attributes")
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("acme,Example log record,10,"), "{row}");
    assert!(
        row.contains(r#"""string.attribute"":""some string"""#),
        "{row}"
    );
    assert_eq!(lines.next(), None);

    let empty_csv = run(
        &d,
        "acme",
        "SELECT body FROM logs WHERE body = 'none'",
        &["--format", "csv"],
    )
    .await
    .unwrap();
    assert_eq!(empty_csv, "body\n");

    let json = run(&d, "acme", sql, &["--format", "json"]).await.unwrap();
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["attributes"]["int.attribute"], "10");

    let out = d.dir.path().join("result.parquet");
    let out_arg = out.display().to_string();
    run(
        &d,
        "globex",
        "SELECT * FROM logs",
        &["--format", "parquet", "--output", &out_arg],
    )
    .await
    .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
    d.stop().await;
}

#[tokio::test]
async fn time_ranges() {
    let mut d = daemon_with_spec_logs().await;
    let count = |out: String| -> u64 {
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        v["n"].as_u64().unwrap()
    };
    let q = "SELECT count(*) AS n FROM logs";
    let e = "SELECT count(*) AS n FROM events";
    assert_eq!(
        count(run(&d, "acme", q, &["--format", "json"]).await.unwrap()),
        1
    );
    assert_eq!(
        count(
            run(&d, "acme", q, &["--format", "json", "--since", "1h"])
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        count(
            run(&d, "acme", e, &["--format", "json", "--since", "1h"])
                .await
                .unwrap()
        ),
        1
    );
    let spec_day = [
        "--format",
        "json",
        "--from",
        "2018-12-13T00:00:00Z",
        "--to",
        "2018-12-14T00:00:00Z",
    ];
    assert_eq!(count(run(&d, "acme", q, &spec_day).await.unwrap()), 1);
    assert_eq!(count(run(&d, "acme", e, &spec_day).await.unwrap()), 0);
    // [from, to) is half-open at the record's exact nanosecond.
    let before = [
        "--format",
        "json",
        "--from",
        "2018-12-13T00:00:00Z",
        "--to",
        "2018-12-13T14:51:00.3Z",
    ];
    assert_eq!(count(run(&d, "acme", q, &before).await.unwrap()), 0);
    let at = [
        "--format",
        "json",
        "--from",
        "2018-12-13T14:51:00.3Z",
        "--to",
        "2018-12-13T14:51:00.300000001Z",
    ];
    assert_eq!(count(run(&d, "acme", q, &at).await.unwrap()), 1);
    let backwards = [
        "--from",
        "2018-12-14T00:00:00Z",
        "--to",
        "2018-12-13T00:00:00Z",
    ];
    let err = run(&d, "acme", q, &backwards).await.unwrap_err();
    assert!(
        err.to_string().contains("--from must be before --to"),
        "{err}"
    );
    d.stop().await;
}

#[tokio::test]
async fn only_reads_are_allowed_and_only_the_tenants_own() {
    let mut d = daemon_with_spec_logs().await;
    let refused = [
        "CREATE TABLE x AS SELECT 1",
        "CREATE VIEW v AS SELECT * FROM logs",
        "DROP TABLE logs",
        "INSERT INTO logs SELECT * FROM logs",
        "COPY logs TO '/tmp/tenantscope-copy.parquet'",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM tenants",
        "SELECT * FROM information_schema.tables",
        "SELECT 1; SELECT 2",
    ];
    for sql in refused {
        let err = run(&d, "acme", sql, &[]).await.unwrap_err();
        assert!(!err.to_string().is_empty(), "{sql}");
    }
    assert!(!std::path::Path::new("/tmp/tenantscope-copy.parquet").exists());

    // A tenant without data has empty tables, not an error; an invalid tenant is an error.
    let none = run(
        &d,
        "initech",
        "SELECT count(*) AS n FROM logs",
        &["--format", "json"],
    )
    .await
    .unwrap();
    assert_eq!(none.trim(), r#"{"n":0}"#);
    let err = run(&d, "../acme", "SELECT 1", &[]).await.unwrap_err();
    assert!(err.to_string().contains("invalid --tenant"), "{err}");

    // Even a query that asks for another tenant's rows sees none.
    let leak = run(
        &d,
        "acme",
        "SELECT count(*) AS n FROM logs WHERE tenant_id = 'globex'",
        &["--format", "json"],
    )
    .await
    .unwrap();
    assert_eq!(leak.trim(), r#"{"n":0}"#);
    d.stop().await;
}

/// `query --config FILE` reads the data directory and the query limits of the daemon's file.
#[tokio::test]
async fn query_takes_the_daemons_config() {
    let mut d = daemon_with_spec_logs().await;
    d.flush().await;
    let config = d.dir.path().join("offline.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  data_dir: {}\nquery:\n  max_sql_length: 25\n",
            d.dir.path().display()
        ),
    )
    .unwrap();
    let query = |sql: &str| {
        use clap::Parser;
        let argv = ["tenantscope", "query", "--config", config.to_str().unwrap()];
        let argv = argv
            .into_iter()
            .chain(["--tenant", "acme", "--format", "csv", sql]);
        match tenantscope::cli::Cli::try_parse_from(argv).unwrap().command {
            Some(tenantscope::cli::Command::Query(args)) => args,
            other => panic!("not a query: {other:?}"),
        }
    };
    let sql = "SELECT count(*) FROM logs";
    assert_eq!(sql.len(), 25);
    let mut out = Vec::new();
    tenantscope::cli::query(&query(sql), &mut out)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "count(*)\n1\n");
    let err = tenantscope::cli::query(&query(&format!("{sql} ")), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the limit is 25"), "{err}");
    d.stop().await;
}

#[test]
fn config_check_reports_success_and_every_error() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tenantscope.example.yaml");
    let summary = tenantscope::cli::config_check(&example).unwrap();
    assert!(summary.ends_with("ok (otlp_grpc 127.0.0.1:4317, otlp_http 127.0.0.1:4318, metrics 127.0.0.1:9464, api 127.0.0.1:8090, data_dir ./data; 0 tenants, no keys: trusts X-Scope-OrgID)"), "{summary}");

    // A tenant whose HMAC key cannot be read fails the check, as it would fail the start.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-key.yaml");
    std::fs::write(
        &missing,
        "tenants:\n  acme:\n    redaction:\n      pseudonymize: [user.id]\n      hmac_key_file: /nonexistent/acme.hmac\n",
    )
    .unwrap();
    let err = tenantscope::cli::config_check(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tenants.acme.redaction: cannot read hmac_key_file /nonexistent/acme.hmac"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listen:\n  otlp_grpc: nowhere\nstorage:\n  max_file_age: 0ms\n  typo: 1\n",
    )
    .unwrap();
    let err = tenantscope::cli::config_check(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("listen.otlp_grpc: \"nowhere\" is not an address"),
        "{err}"
    );
    assert!(
        err.contains("storage.max_file_age: 0ms is out of range"),
        "{err}"
    );
    assert!(err.contains("storage.typo: unknown key"), "{err}");
}
