//! The audit log over the API: checkpoints and proofs per tenant, as keys allow, checked with
//! the transparency-log library's own verifier (the interop suite checks them again with an
//! independent Python implementation).

use audit_store::log::checkpoint::{SignedCheckpoint, verify_checkpoint};
use base64::Engine as _;
use http::StatusCode;

use crate::harness::{
    ACME_INGEST, ACME_QUERY, ADMIN_KEY, Daemon, GLOBEX_KEY, bearer, get_with, keyed, post,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn send(d: &Daemon, key: &str, body: &str) {
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}},{{"eventName":"order.completed","body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
    );
    let auth = bearer(key);
    let (status, _, _) = post(
        d.http,
        "/v1/logs",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        json.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The verifier keys the daemon published in DATA/keys/.
fn trusted(d: &Daemon) -> Vec<String> {
    audit_store::verify::default_keys(&audit_store::layout::Layout::new(d.dir.path())).unwrap()
}

fn hash(b64: &serde_json::Value) -> tlog_tiles::Hash {
    tlog_tiles::Hash(
        B64.decode(b64.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
}

/// Fetches the consistency proof from `old` to the whole log, checks it and the new checkpoint's
/// signature; returns the new checkpoint.
async fn consistent(d: &Daemon, old: &SignedCheckpoint, keys: &[String]) -> SignedCheckpoint {
    let path = format!("/api/v1/proof/consistency?from={}", old.size);
    let (_, body) = api(d, ACME_QUERY, &path).await;
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    let new = verify_checkpoint(p["checkpoint"].as_str().unwrap().as_bytes(), keys).unwrap();
    let proof: Vec<_> = p["proof"].as_array().unwrap().iter().map(hash).collect();
    let (old_root, new_root) = (tlog_tiles::Hash(old.root), tlog_tiles::Hash(new.root));
    tlog_tiles::check_tree(&proof, new.size, new_root, old.size, old_root).unwrap();
    new
}

async fn api(d: &Daemon, key: &str, path: &str) -> (StatusCode, String) {
    let (status, _, body) = get_with(d.api, path, &[("authorization", &bearer(key))]).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn each_tenant_gets_its_signed_checkpoint_and_proofs_and_no_other() {
    let mut d = Daemon::start_with(keyed).await;
    send(&d, ACME_INGEST, "a1").await;
    send(&d, GLOBEX_KEY, "g1").await;
    d.flush().await;
    let (status, note) = api(&d, ACME_QUERY, "/api/v1/checkpoint").await;
    assert_eq!(status, StatusCode::OK, "{note}");
    let acme = verify_checkpoint(note.as_bytes(), &trusted(&d)).unwrap();
    assert!(
        acme.origin.ends_with("/tenantscope/acme"),
        "{}",
        acme.origin
    );
    assert_eq!(acme.size, 3, "the log entry and two files (logs, events)");
    // The admin names the tenant; a tenant key cannot read another tenant's log.
    let (status, note) = api(&d, ADMIN_KEY, "/api/v1/checkpoint?tenant=globex").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        verify_checkpoint(note.as_bytes(), &trusted(&d))
            .unwrap()
            .origin
            .ends_with("/globex")
    );
    let (status, _, _) = get_with(
        d.api,
        "/api/v1/checkpoint",
        &[
            ("authorization", &bearer(ACME_QUERY)),
            ("x-scope-orgid", "globex"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(&d, "not-a-key-at-all-000000", "/api/v1/checkpoint").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api(&d, ADMIN_KEY, "/api/v1/checkpoint?tenant=umbrella").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Inclusion: every acme file, against the checkpoint.
    let log = std::fs::read_to_string(d.dir.path().join("audit/tenant=acme/_log.jsonl")).unwrap();
    let files: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "file")
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 2);
    for file in &files {
        let (status, body) = api(
            &d,
            ACME_QUERY,
            &format!("/api/v1/proof/inclusion?file={file}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        let proof: Vec<_> = p["proof"].as_array().unwrap().iter().map(hash).collect();
        let leaf = tlog_tiles::record_hash(p["leaf"].as_str().unwrap().as_bytes());
        assert_eq!(p["tree_size"], acme.size);
        tlog_tiles::check_record(
            &proof,
            acme.size,
            tlog_tiles::Hash(acme.root),
            p["leaf_index"].as_u64().unwrap(),
            leaf,
        )
        .unwrap();
        assert!(p["leaf"].as_str().unwrap().contains(file.as_str()));
    }
    // A globex file is not in acme's log.
    let globex_log =
        std::fs::read_to_string(d.dir.path().join("audit/tenant=globex/_log.jsonl")).unwrap();
    let globex_file = globex_log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["type"] == "file")
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!log.contains(&globex_file));
    let (status, _) = api(
        &d,
        ACME_QUERY,
        &format!("/api/v1/proof/inclusion?file={globex_file}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The log grows; a consistency proof links the first checkpoint to the new one.
    send(&d, ACME_INGEST, "a2").await;
    d.flush().await;
    let newer = consistent(&d, &acme, &trusted(&d)).await;
    assert_eq!(newer.size, 5);
    let (status, _) = api(&d, ACME_QUERY, "/api/v1/proof/consistency?from=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(&d, ACME_QUERY, "/api/v1/proof/consistency?from=99").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    d.stop().await;
}

#[tokio::test]
async fn checkpoints_are_written_by_the_job_and_at_shutdown_and_survive_a_restart() {
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.audit.checkpoint_interval = std::time::Duration::from_secs(1);
    })
    .await;
    let ok = r#"tenantscope_audit_checkpoints_total{result="ok"}"#;
    send(&d, ACME_INGEST, "x").await;
    d.flush().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.metric(ok).await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first =
        std::fs::read_to_string(d.dir.path().join("audit/tenant=acme/_checkpoint")).unwrap();
    send(&d, ACME_INGEST, "y").await;
    d.stop().await;
    // The shutdown committed "y" and checkpointed it.
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let last = std::fs::read_to_string(dir.path().join("audit/tenant=acme/_checkpoint")).unwrap();
    let keys =
        audit_store::verify::default_keys(&audit_store::layout::Layout::new(dir.path())).unwrap();
    let (a, b) = (
        verify_checkpoint(first.as_bytes(), &keys).unwrap(),
        verify_checkpoint(last.as_bytes(), &keys).unwrap(),
    );
    assert_eq!((a.size, b.size), (3, 5));
    // Restarted with the same key: the log continues, the proof links them.
    let mut d = Daemon::start_in(dir, keyed).await;
    send(&d, ACME_INGEST, "z").await;
    d.flush().await;
    let c = consistent(&d, &a, &keys).await;
    assert_eq!(c.size, 7);
    d.stop().await;
    let report = audit_store::verify::verify(
        &audit_store::layout::Layout::new(d.dir.path()),
        &audit_store::verify::VerifyOptions::default(),
    )
    .unwrap();
    assert!(!report.tampered(), "{report:#?}");
}

/// Sends one log record `days_ago` days old, with the tenant named by `header`.
async fn send_dated(d: &Daemon, header: (&str, &str), body: &str, days_ago: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let t = now - days_ago * 86_400_000_000_000;
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{t}","body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
    );
    let (status, _, _) = post(
        d.http,
        "/v1/logs",
        &[("content-type", "application/json"), header],
        json.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// [`send_dated`] with a tenant's key.
async fn send_keyed(d: &Daemon, key: &str, body: &str, days_ago: u64) {
    send_dated(d, ("authorization", &bearer(key)), body, days_ago).await;
}

async fn bodies(d: &Daemon, tenant: &str) -> Vec<String> {
    d.query(tenant, "SELECT body FROM logs ORDER BY body")
        .await
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls until `f` holds (10 s at most).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn retention_deletes_old_files_unless_a_legal_hold_is_in_force() {
    let tenant = |t: &str| audit_store::TenantId::parse(t).unwrap();
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.audit.retention_interval = std::time::Duration::from_secs(1);
        let thirty_days = Some(std::time::Duration::from_secs(30 * 86_400));
        c.tenants.get_mut(&tenant("acme")).unwrap().retention = thirty_days;
        let globex = c.tenants.get_mut(&tenant("globex")).unwrap();
        globex.retention = thirty_days;
        globex.legal_hold = true;
    })
    .await;
    for (key, who) in [(ACME_INGEST, "acme"), (GLOBEX_KEY, "globex")] {
        send_keyed(&d, key, &format!("{who} 90 days old"), 90).await;
        send_keyed(&d, key, &format!("{who} 40 days old"), 40).await;
        send_keyed(&d, key, &format!("{who} today"), 0).await;
    }
    d.flush().await;
    let deleted = r#"tenantscope_audit_retention_deleted_files_total"#;
    eventually("acme's two old files deleted", || async {
        d.metric(deleted).await >= 2.0
    })
    .await;
    assert_eq!(bodies(&d, "acme").await, ["acme today"]);
    // globex is under a legal hold from its config: everything stays, and the log says why.
    assert_eq!(bodies(&d, "globex").await.len(), 3);
    let globex_log =
        std::fs::read_to_string(d.dir.path().join("audit/tenant=globex/_log.jsonl")).unwrap();
    assert!(
        globex_log.contains(r#""type":"hold","placed":true,"by":"config""#),
        "{globex_log}"
    );
    // A hold placed through the API stops acme's deletions too, until it is released.
    let hold = |method: &'static str| {
        let d = &d;
        async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let req = http::Request::builder()
                .method(method)
                .uri(format!("http://{}/api/v1/admin/hold", d.api))
                .header("authorization", bearer(ADMIN_KEY))
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    r#"{"tenant":"acme","reason":"litigation 2026-17","by":"j.doe"}"#,
                )))
                .unwrap();
            let response = client.request(req).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (status, placed) = hold("POST").await;
    assert_eq!(
        (
            status,
            placed["hold"].as_bool(),
            placed["changed"].as_bool()
        ),
        (StatusCode::OK, Some(true), Some(true))
    );
    send_keyed(&d, ACME_INGEST, "acme 50 days old", 50).await;
    d.flush().await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(bodies(&d, "acme").await, ["acme 50 days old", "acme today"]);
    let (status, released) = hold("DELETE").await;
    assert_eq!(
        (status, released["hold"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    eventually("the held file deleted once released", || async {
        d.metric(deleted).await >= 3.0
    })
    .await;
    assert_eq!(bodies(&d, "acme").await, ["acme today"]);
    // A tenant key may not place holds.
    let (status, _, _) = post(
        d.api,
        "/api/v1/admin/hold",
        &[("authorization", &bearer(ACME_QUERY))],
        br#"{"tenant":"acme","reason":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    d.stop().await;
    // verify: intact, with the deletions, when and why, and the holds.
    let report = audit_store::verify::verify(
        &audit_store::layout::Layout::new(d.dir.path()),
        &audit_store::verify::VerifyOptions::default(),
    )
    .unwrap();
    assert!(!report.tampered(), "{report:#?}");
    let acme = report.tenants.iter().find(|t| t.tenant == "acme").unwrap();
    let deletions: Vec<_> = acme
        .findings
        .iter()
        .filter(|f| f.kind == "deleted_by_retention")
        .collect();
    assert_eq!(deletions.len(), 3, "{:#?}", acme.findings);
    assert!(
        deletions
            .iter()
            .all(|f| f.detail.contains("under retention 30d"))
    );
    let holds: Vec<_> = acme
        .findings
        .iter()
        .filter(|f| f.kind == "legal_hold")
        .collect();
    assert_eq!(holds.len(), 2);
    assert!(
        holds[0].detail.contains("placed by j.doe")
            && holds[0].detail.contains("litigation 2026-17")
    );
}

#[tokio::test]
async fn the_retention_command_runs_the_job_offline_and_is_refused_beside_a_daemon() {
    use clap::Parser as _;
    let mut d = Daemon::start().await;
    for (days, body) in [(100, "old"), (0, "new")] {
        send_dated(&d, ("x-scope-orgid", "acme"), body, days).await;
    }
    d.flush().await;
    let config = d.dir.path().join("retention.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  data_dir: {}\ntenants:\n  acme:\n    retention: 30d\n",
            d.dir.path().display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut argv = vec![
            "tenantscope",
            "retention",
            "--config",
            config.to_str().unwrap(),
        ];
        argv.extend_from_slice(extra);
        let cli = tenantscope::cli::Cli::try_parse_from(argv).unwrap();
        let Some(tenantscope::cli::Command::Retention(args)) = cli.command else {
            unreachable!()
        };
        let mut out = Vec::new();
        let result = tenantscope::cli::audit::retention(&args, &mut out);
        (result, String::from_utf8(out).unwrap())
    };
    // Beside the running daemon: refused.
    let (result, _) = run(&[]);
    let error = format!("{:#}", result.unwrap_err());
    assert!(error.contains("another tenantscope is using"), "{error}");
    d.stop().await;
    let (result, out) = run(&["--dry-run"]);
    assert_eq!(result.unwrap(), 1, "{out}");
    assert!(
        out.contains("tenant acme: would delete signal=logs/"),
        "{out}"
    );
    assert_eq!(
        crate::harness::query_dir(d.dir.path(), "acme", "SELECT body FROM logs")
            .await
            .len(),
        2
    );
    let (result, out) = run(&[]);
    assert_eq!(result.unwrap(), 1, "{out}");
    assert!(out.contains("under retention 30d"), "{out}");
    let rows = crate::harness::query_dir(d.dir.path(), "acme", "SELECT body FROM logs").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["body"], "new");
    let report = audit_store::verify::verify(
        &audit_store::layout::Layout::new(d.dir.path()),
        &audit_store::verify::VerifyOptions::default(),
    )
    .unwrap();
    assert!(!report.tampered(), "{report:#?}");
    // The deletion entry is covered by a checkpoint the command signed.
    let acme = &report.tenants[0];
    assert_eq!(acme.newest_checkpoint, Some(acme.entries));
}

/// Rewrites a tar, applying `f` to each member's (path, bytes); `None` drops the member.
fn rewrite_tar(tar: &[u8], mut f: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if let Some(bytes) = f(&path, bytes) {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            out.append_data(&mut header, &path, &bytes[..]).unwrap();
        }
    }
    out.into_inner().unwrap()
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline_and_any_changed_byte_is_named() {
    let mut d = Daemon::start_with(keyed).await;
    send(&d, ACME_INGEST, "b1").await;
    d.flush().await;
    send(&d, ACME_INGEST, "b2").await;
    send(&d, GLOBEX_KEY, "g").await;
    d.flush().await;
    // Over the API, streamed, for the tenant's query key.
    let (status, headers, tar) = post(
        d.api,
        "/api/v1/export",
        &[("authorization", &bearer(ACME_QUERY))],
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-tar");
    let keys = trusted(&d);
    d.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        audit_store::bundle::verify_bundle(&path, &keys).unwrap()
    };
    let report = check("clean.tar", &tar);
    assert!(!report.tampered(), "{report:#?}");
    let acme = &report.tenants[0];
    assert_eq!((acme.tenant.as_str(), acme.files_checked), ("acme", 4));
    // Every member: one byte flipped in its middle is named.
    let mut members = Vec::new();
    rewrite_tar(&tar, |path, bytes| {
        members.push(path.trim_start_matches("tenantscope-bundle/").to_owned());
        Some(bytes)
    });
    assert!(members.len() >= 10, "{members:?}");
    for member in &members {
        let flipped = rewrite_tar(&tar, |path, mut bytes| {
            if path.ends_with(member.as_str()) {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
            }
            Some(bytes)
        });
        let report = check("flipped.tar", &flipped);
        let named: Vec<_> = report.tenants[0]
            .findings
            .iter()
            .filter(|f| f.severity == audit_store::verify::Severity::Tampered)
            .map(|f| (f.kind, f.subject.clone()))
            .collect();
        assert!(
            named.iter().any(|(_, s)| s == member),
            "flipping a byte of {member}: {named:?}"
        );
    }
    // A member removed, or one added: named.
    let without = rewrite_tar(&tar, |path, bytes| {
        (!path.ends_with("README.md")).then_some(bytes)
    });
    let report = check("without.tar", &without);
    assert!(
        report.tenants[0]
            .findings
            .iter()
            .any(|f| f.kind == "member_missing" && f.subject == "README.md")
    );
    let mut added = rewrite_tar(&tar, |_, bytes| Some(bytes));
    let mut extended = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(3);
    header.set_mode(0o644);
    extended
        .append_data(
            &mut header,
            "tenantscope-bundle/data/extra.parquet",
            &b"PAR"[..],
        )
        .unwrap();
    let extra = extended.into_inner().unwrap();
    added.truncate(added.len() - 1024);
    added.extend_from_slice(&extra);
    let report = check("added.tar", &added);
    assert!(
        report.tenants[0]
            .findings
            .iter()
            .any(|f| f.kind == "member_unlisted" && f.subject == "data/extra.parquet"),
        "{report:#?}"
    );
    // Another key: untrusted.
    let (other, _) = audit_store::log::checkpoint::SigningKey::generate("other").unwrap();
    let report = audit_store::bundle::verify_bundle(
        &dir.path().join("clean.tar"),
        &[other.verifier_key().to_owned()],
    )
    .unwrap();
    assert!(
        report.tenants[0]
            .findings
            .iter()
            .any(|f| f.kind == "untrusted_signature")
    );
}

#[tokio::test]
async fn the_export_command_writes_a_bundle_of_a_time_range() {
    use clap::Parser as _;
    let mut d = Daemon::start().await;
    for (days, body) in [(10, "older"), (0, "newer")] {
        send_dated(&d, ("x-scope-orgid", "acme"), body, days).await;
        d.flush().await;
    }
    d.stop().await;
    let output = d.dir.path().join("acme.tar");
    let from = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let cli = tenantscope::cli::Cli::try_parse_from([
        "tenantscope",
        "export",
        "--data-dir",
        d.dir.path().to_str().unwrap(),
        "--tenant",
        "acme",
        "--from",
        &from,
        "--output",
        output.to_str().unwrap(),
    ])
    .unwrap();
    let Some(tenantscope::cli::Command::Export(args)) = cli.command else {
        unreachable!()
    };
    let summary = tenantscope::cli::audit::export(&args).unwrap();
    assert_eq!(summary.files, 1, "only the newer file meets the range");
    let cli = tenantscope::cli::Cli::try_parse_from([
        "tenantscope",
        "verify",
        "--bundle",
        output.to_str().unwrap(),
    ])
    .unwrap();
    let Some(tenantscope::cli::Command::Verify(args)) = cli.command else {
        unreachable!()
    };
    let mut out = Vec::new();
    let intact = tenantscope::cli::audit::verify(&args, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(intact, "{text}");
    assert!(text.contains("info trusted_bundled_key"), "{text}");
}
