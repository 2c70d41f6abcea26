//! The tamper matrix: a store written by the real `tenantscope` binary, altered one way at a time
//! as an attacker with the disk (and, in one case, their own signing key) would, and
//! `tenantscope verify` — the binary again — must name each alteration and exit 1. The untouched
//! store verifies clean (exit 0). Prints the detection rate.

use std::path::{Path, PathBuf};
use std::process::Command;

use audit_store::layout::Layout;
use audit_store::log::TenantLog;
use audit_store::log::checkpoint::SigningKey;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Digest;

mod support;

use support::{binary, copy_dir, start, stop_gracefully};

async fn send(http: &str, tenant: &str, day: u64, bodies: &[&str]) {
    const DAY_NS: u64 = 86_400_000_000_000;
    let records: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let t = 1_795_000_000_000_000_000 + day * DAY_NS + i as u64;
            let event = if i % 2 == 0 {
                r#","eventName":"order.completed""#
            } else {
                ""
            };
            format!(r#"{{"timeUnixNano":"{t}","body":{{"stringValue":"{b}"}}{event}}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{http}/v1/logs"))
        .header("content-type", "application/json")
        .header("x-scope-orgid", tenant)
        .body(Full::new(Bytes::from(json)))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
}

async fn api(addr: &str, method: &str, path: &str, tenant: &str) -> String {
    use http_body_util::BodyExt;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("x-scope-orgid", tenant)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Runs `tenantscope verify --format json` with the given extra arguments: (exit code, the
/// tampered findings as (kind, subject)).
fn verify(dir: &Path, extra: &[&str]) -> (i32, Vec<(String, String)>, String) {
    let output = Command::new(binary())
        .args(["verify", "--format", "json", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let report: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&output.stderr)));
    let findings = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["findings"].as_array().unwrap().clone())
        .chain(report["findings"].as_array().unwrap().clone())
        .filter(|f| f["severity"] == "tampered")
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (output.status.code().unwrap(), findings, text)
}

fn entries(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit/tenant=acme/_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    entries(dir)
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

fn acme(dir: &Path) -> PathBuf {
    dir.join("audit/tenant=acme")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_detected_and_named() {
    let root = tempfile::tempdir().unwrap();
    let (private, public) = (
        root.path().join("signing.key"),
        root.path().join("signing.pub"),
    );
    let keygen = Command::new(binary())
        .args(["keygen", "--name", "tamper.test/tenantscope", "--private"])
        .arg(&private)
        .arg("--public")
        .arg(&public)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let config = root.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("audit:\n  signing_key_file: {}\n", private.display()),
    )
    .unwrap();
    // The store: two tenants, three commits of logs and events over two days each.
    let pristine = root.path().join("pristine");
    let daemon = start(&pristine, Some(&config));
    for round in 0..3u64 {
        for tenant in ["acme", "globex"] {
            send(&daemon.http, tenant, round % 2, &["a", "b", "c", "d"]).await;
        }
        api(&daemon.api, "POST", "/admin/flush", "acme").await;
        if round == 1 {
            // An auditor keeps this one.
            let note = api(&daemon.api, "GET", "/api/v1/checkpoint", "acme").await;
            std::fs::write(root.path().join("early.checkpoint"), note).unwrap();
        }
    }
    let note = api(&daemon.api, "GET", "/api/v1/checkpoint", "acme").await;
    std::fs::write(root.path().join("final.checkpoint"), note).unwrap();
    stop_gracefully(daemon);
    let public_key = ["--public-key", public.to_str().unwrap()];
    let early = root.path().join("early.checkpoint");
    let final_cp = root.path().join("final.checkpoint");

    // Untouched: clean, with and without the trusted checkpoints.
    let (code, found, text) = verify(&pristine, &public_key);
    assert_eq!((code, found.len()), (0, 0), "{text}");
    let trusted = [
        &public_key[..],
        &["--trusted-checkpoint", early.to_str().unwrap()],
        &["--trusted-checkpoint", final_cp.to_str().unwrap()],
    ]
    .concat();
    let (code, _, text) = verify(&pristine, &trusted);
    assert_eq!(code, 0, "{text}");
    let committed = files(&pristine);
    assert_eq!(committed.len(), 6, "three commits of logs and events");

    type Tamper<'a> = Box<dyn Fn(&Path) -> Vec<(&'static str, String)> + 'a>;
    let first = committed[0].clone();
    let cases: Vec<(&str, Tamper, Vec<&str>)> = vec![
        (
            "flip a byte of a Parquet file",
            Box::new(|d: &Path| {
                let path = acme(d).join(&committed[1]);
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
                vec![("file_altered", committed[1].clone())]
            }),
            vec![],
        ),
        (
            "truncate a Parquet file",
            Box::new(|d: &Path| {
                let path = acme(d).join(&committed[2]);
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
                vec![("file_truncated", committed[2].clone())]
            }),
            vec![],
        ),
        (
            "delete a Parquet file",
            Box::new(|d: &Path| {
                std::fs::remove_file(acme(d).join(&first)).unwrap();
                vec![("file_missing", first.clone())]
            }),
            vec![],
        ),
        (
            "add a Parquet file no entry names",
            Box::new(|d: &Path| {
                let extra = first.replace(".parquet", "9.parquet");
                std::fs::copy(acme(d).join(&first), acme(d).join(&extra)).unwrap();
                vec![("file_unlisted", extra)]
            }),
            vec![],
        ),
        (
            "swap two entries",
            Box::new(|d: &Path| {
                let path = acme(d).join("_log.jsonl");
                let mut all = lines(&path);
                all.swap(2, 3);
                write_lines(&path, &all);
                vec![
                    ("entry_out_of_order", "entry 2".into()),
                    ("checkpoint_mismatch", "_checkpoint".into()),
                ]
            }),
            vec![],
        ),
        (
            "edit an entry to match an altered file, and re-hash the log",
            Box::new(|d: &Path| {
                let path = acme(d).join(&committed[3]);
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&path, &bytes).unwrap();
                let log = acme(d).join("_log.jsonl");
                let mut all = lines(&log);
                let index = all.iter().position(|l| l.contains(&committed[3])).unwrap();
                let mut entry: serde_json::Value = serde_json::from_str(&all[index]).unwrap();
                entry["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
                all[index] = entry.to_string();
                write_lines(&log, &all);
                // The stored hashes recomputed for the edited log, as the daemon would.
                std::fs::remove_file(acme(d).join("_log.hashes")).unwrap();
                let layout = Layout::new(d);
                let key = SigningKey::read(&private).unwrap();
                let identity = audit_store::log::Identity {
                    instance: "x".into(),
                    key: std::sync::Arc::new(key),
                };
                drop(
                    TenantLog::open(
                        &layout,
                        &audit_store::TenantId::parse("acme").unwrap(),
                        identity,
                    )
                    .unwrap(),
                );
                // (The file itself then reads as altered rows or as unreadable: no entry hides it.)
                vec![("checkpoint_mismatch", "_checkpoint".into())]
            }),
            vec![],
        ),
        (
            "delete the last entries and the newest checkpoint",
            Box::new(|d: &Path| {
                let log = acme(d).join("_log.jsonl");
                let all = lines(&log);
                let kept = all.len() - 2;
                for line in &all[kept..] {
                    let e: serde_json::Value = serde_json::from_str(line).unwrap();
                    std::fs::remove_file(acme(d).join(e["path"].as_str().unwrap())).unwrap();
                }
                write_lines(&log, &all[..kept]);
                std::fs::remove_file(acme(d).join("_log.hashes")).unwrap();
                // Every checkpoint of the longer log goes too.
                let history = acme(d).join("_checkpoints.jsonl");
                let older: Vec<String> = lines(&history)
                    .into_iter()
                    .filter(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        v["size"].as_u64().unwrap() <= kept as u64
                    })
                    .collect();
                write_lines(&history, &older);
                let newest: serde_json::Value =
                    serde_json::from_str(older.last().unwrap()).unwrap();
                std::fs::write(
                    acme(d).join("_checkpoint"),
                    newest["note"].as_str().unwrap(),
                )
                .unwrap();
                vec![("rolled_back", final_cp.display().to_string())]
            }),
            vec!["--trusted-checkpoint", final_cp.to_str().unwrap()],
        ),
        (
            "re-sign a forged log with another key",
            Box::new(|d: &Path| {
                // Remove a commit's entries and files, then sign the shorter log with a key of
                // one's own, replacing every checkpoint and the published public key.
                let log = acme(d).join("_log.jsonl");
                let all = lines(&log);
                let forged: Vec<String> = all
                    .iter()
                    .filter(|l| !l.contains(&committed[0]))
                    .enumerate()
                    .map(|(i, l)| {
                        let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
                        e["seq"] = i.into();
                        e.to_string()
                    })
                    .collect();
                std::fs::remove_file(acme(d).join(&committed[0])).unwrap();
                write_lines(&log, &forged);
                std::fs::remove_file(acme(d).join("_log.hashes")).unwrap();
                let (key, _) = SigningKey::generate("tamper.test/tenantscope").unwrap();
                let layout = Layout::new(d);
                let mut reader =
                    TenantLog::read(&layout, &audit_store::TenantId::parse("acme").unwrap())
                        .unwrap();
                let size = reader.size();
                let root = reader.root(size).unwrap();
                let origin = reader.origin().unwrap().to_owned();
                let note = key.sign_checkpoint(&origin, size, root);
                std::fs::write(acme(d).join("_checkpoint"), &note).unwrap();
                write_lines(
                    &acme(d).join("_checkpoints.jsonl"),
                    &[serde_json::json!({"size": size, "note": note}).to_string()],
                );
                for entry in std::fs::read_dir(d.join("keys")).unwrap() {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
                std::fs::write(d.join("keys/forged.pub"), key.verifier_key()).unwrap();
                vec![("untrusted_signature", "_checkpoint".into())]
            }),
            vec![],
        ),
        (
            "edit a checkpoint",
            Box::new(|d: &Path| {
                let path = acme(d).join("_checkpoint");
                let note = std::fs::read_to_string(&path).unwrap();
                let mut lines: Vec<&str> = note.lines().collect();
                let size: u64 = lines[1].parse().unwrap();
                let bigger = (size + 1).to_string();
                lines[1] = &bigger;
                std::fs::write(&path, lines.join("\n") + "\n").unwrap();
                vec![("bad_signature", "_checkpoint".into())]
            }),
            vec![],
        ),
        (
            "put a file in the quarantine that no entry records",
            Box::new(|d: &Path| {
                let target = d.join("quarantine/tenant=acme").join(&first);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(acme(d).join(&first), &target).unwrap();
                vec![("quarantine_unrecorded", first.clone())]
            }),
            vec![],
        ),
    ];
    let mut detected = 0;
    for (i, (name, tamper, extra)) in cases.iter().enumerate() {
        let dir = root.path().join(format!("case{i}"));
        copy_dir(&pristine, &dir);
        let want = tamper(&dir);
        let args = [&public_key[..], &extra[..]].concat();
        let (code, found, text) = verify(&dir, &args);
        let named = want
            .iter()
            .all(|(kind, subject)| found.iter().any(|(k, s)| k == kind && s == subject));
        assert_eq!(code, 1, "{name}: exit {code}\n{text}");
        assert!(named, "{name}: want {want:?}, found {found:?}");
        assert!(
            found.iter().all(|(_, s)| !s.contains("globex")),
            "{name}: globex was not touched: {found:?}"
        );
        detected += 1;
        println!("tamper matrix: {name}: detected as {found:?}");
    }
    println!(
        "tamper matrix: {detected}/{} alterations detected and named (100 %), the untouched store clean",
        cases.len()
    );
}
