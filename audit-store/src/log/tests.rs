use std::sync::Arc;

use super::checkpoint::{SigningKey, verify_checkpoint};
use super::*;
use crate::test_support::{KEY, identity};

fn hold(placed: bool) -> EntryKind {
    EntryKind::Hold {
        placed,
        by: "admin".into(),
        reason: "case 42".into(),
    }
}

fn file(path: &str, index: u32, of: u32, lsn: u64) -> EntryKind {
    EntryKind::File(FileEntry {
        table: "logs".into(),
        path: path.into(),
        sha256: "00".repeat(32),
        bytes: 10,
        rows: 1,
        min_timestamp: 1,
        max_timestamp: 2,
        rows_digest: "blake3:00".into(),
        lsn_first: lsn,
        lsn_last: lsn,
        commit_files: of,
        commit_index: index,
    })
}

/// `verify` of the store with the tests' key.
fn verify(layout: &Layout) -> crate::verify::Report {
    crate::verify::verify(
        layout,
        &crate::verify::VerifyOptions {
            trusted_keys: vec![KEY.verifier_key().to_owned()],
            ..Default::default()
        },
    )
    .unwrap()
}

fn setup() -> (tempfile::TempDir, Layout, TenantId) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    (dir, layout, TenantId::parse("acme").unwrap())
}

#[test]
fn the_first_append_starts_with_the_log_entry_and_reopening_restores_the_index() {
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    assert_eq!(log.size(), 0);
    let range = log
        .append(vec![
            file("signal=logs/date=2026-01-01/a.parquet", 0, 1, 7),
            hold(true),
        ])
        .unwrap();
    assert_eq!(range, 1..3);
    let first = String::from_utf8(log.line(0).unwrap()).unwrap();
    assert!(first.starts_with(r#"{"seq":0,"time_ns":"#), "{first}");
    assert!(
        first.contains(r#""type":"log","origin":"test/tenantscope/acme","key":"test/tenantscope+"#)
    );
    drop(log);
    let log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    assert_eq!(log.size(), 3);
    assert_eq!(log.committed_lsn(Table::Logs), Some(7));
    assert_eq!(log.files(Table::Logs).count(), 1);
    assert_eq!(log.hold().unwrap().reason, "case 42");
    assert_eq!(log.origin(), Some("test/tenantscope/acme"));
}

#[test]
fn a_torn_line_and_a_commit_cut_short_are_truncated_at_open() {
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    log.append(vec![file("signal=logs/date=2026-01-01/a.parquet", 0, 1, 1)])
        .unwrap();
    let good = std::fs::read(layout.tenant_dir(&tenant).join(LOG_FILE)).unwrap();
    // Two files of a three-file commit reached the disk, then half a line.
    log.append(vec![
        file("signal=logs/date=2026-01-01/b.parquet", 0, 3, 2),
        file("signal=logs/date=2026-01-02/c.parquet", 1, 3, 2),
    ])
    .unwrap();
    drop(log);
    let path = layout.tenant_dir(&tenant).join(LOG_FILE);
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(br#"{"seq":4,"time_ns":1,"type":"fi"#);
    std::fs::write(&path, &torn).unwrap();
    // A reader ignores it without writing.
    let reader = TenantLog::read(&layout, &tenant).unwrap();
    assert_eq!(reader.size(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), torn);
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    assert_eq!(log.size(), 2);
    assert_eq!(log.committed_lsn(Table::Logs), Some(1));
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // The stored hashes were rebuilt for the shorter log: proofs work.
    let root = log.root(2).unwrap();
    let proof = log.inclusion_proof(1, 2).unwrap();
    let leaf = tlog_tiles::record_hash(&log.line(1).unwrap());
    tlog_tiles::check_record(&proof, 2, root, 1, leaf).unwrap();
}

#[test]
fn a_damaged_line_is_an_error_and_never_truncated_even_the_last() {
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    log.append(vec![hold(true)]).unwrap();
    log.append(vec![hold(false)]).unwrap();
    drop(log);
    let path = layout.tenant_dir(&tenant).join(LOG_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("\"seq\":1", "\"seq\":x", 1);
    std::fs::write(&path, text).unwrap();
    let err = TenantLog::open(&layout, &tenant, identity()).unwrap_err();
    assert!(matches!(err, LogError::Damaged { line: 2, .. }), "{err}");
    // The last line complete but edited: evidence, not a torn append; it stays.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("\"seq\":x", "\"seq\":1", 1);
    let edited = text.replacen("\"seq\":2", "\"sq\":2", 1);
    std::fs::write(&path, &edited).unwrap();
    let err = TenantLog::open(&layout, &tenant, identity()).unwrap_err();
    assert!(matches!(err, LogError::Damaged { line: 3, .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
}

#[test]
fn proofs_check_against_every_earlier_tree() {
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    for i in 0..40 {
        log.append(vec![hold(i % 2 == 0)]).unwrap();
    }
    let n = log.size();
    let roots: Vec<_> = (1..=n).map(|s| log.root(s).unwrap()).collect();
    for size in [1, 2, 3, 7, 8, 9, 16, 33, n] {
        for index in [0, size / 2, size - 1] {
            let proof = log.inclusion_proof(index, size).unwrap();
            let leaf = tlog_tiles::record_hash(&log.line(index).unwrap());
            tlog_tiles::check_record(&proof, size, roots[size as usize - 1], index, leaf).unwrap();
        }
        let proof = log.consistency_proof(size, n).unwrap();
        tlog_tiles::check_tree(
            &proof,
            n,
            roots[n as usize - 1],
            size,
            roots[size as usize - 1],
        )
        .unwrap();
    }
    assert!(log.inclusion_proof(n, n).is_err());
    assert!(log.consistency_proof(0, n).is_err());
    assert!(log.root(n + 1).is_err());
    // A read-only open computes the same proofs in memory.
    let mut reader = TenantLog::read(&layout, &tenant).unwrap();
    assert_eq!(reader.root(n).unwrap(), roots[n as usize - 1]);
    assert_eq!(
        reader.inclusion_proof(3, 20).unwrap(),
        log.inclusion_proof(3, 20).unwrap()
    );
}

#[test]
fn checkpoints_are_written_when_the_tree_grew_and_a_new_key_is_recorded_first() {
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "an empty log has no checkpoint"
    );
    log.append(vec![hold(true)]).unwrap();
    let note = log.checkpoint().unwrap().unwrap();
    let trusted = [KEY.verifier_key().to_owned()];
    let parsed = verify_checkpoint(note.as_bytes(), &trusted).unwrap();
    assert_eq!(
        (parsed.origin.as_str(), parsed.size),
        ("test/tenantscope/acme", 2)
    );
    assert_eq!(parsed.root, log.root(2).unwrap().0);
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "unchanged tree, no new checkpoint"
    );
    let dir = layout.tenant_dir(&tenant);
    assert_eq!(
        std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap(),
        note
    );
    drop(log);
    // Another key: a `key` entry, then a checkpoint signed by it.
    let other = Identity {
        instance: "elsewhere".into(),
        key: Arc::new(SigningKey::generate("other").unwrap().0),
    };
    let mut log = TenantLog::open(&layout, &tenant, other.clone()).unwrap();
    assert_eq!(log.latest_checkpoint().unwrap().0, 2);
    let note = log.checkpoint().unwrap().unwrap();
    let parsed =
        verify_checkpoint(note.as_bytes(), &[other.key.verifier_key().to_owned()]).unwrap();
    assert_eq!(parsed.size, 3);
    assert_eq!(
        parsed.origin, "test/tenantscope/acme",
        "the origin stays the log's"
    );
    let key_entry = String::from_utf8(log.line(2).unwrap()).unwrap();
    assert!(key_entry.contains(r#""type":"key""#), "{key_entry}");
    let history = std::fs::read_to_string(dir.join(CHECKPOINTS_FILE)).unwrap();
    assert_eq!(history.lines().count(), 2);
}

#[test]
fn a_manifest_of_an_older_store_becomes_file_entries_and_nothing_is_quarantined() {
    use crate::test_support::{BASE, DAY, batch};
    let (dir, layout, tenant) = setup();
    // Write files as the old store did: Parquet, then a manifest line per commit.
    let rows: Vec<(i64, String)> = (0..10)
        .map(|i| (BASE + (i % 2) * DAY + i, format!("r{i}")))
        .collect();
    let files = crate::writer::write_batches(
        &layout,
        &tenant,
        Table::Logs,
        &[batch(Table::Logs, "acme", &rows)],
        &crate::writer::WriterOptions::default(),
    )
    .unwrap();
    let tenant_dir = layout.tenant_dir(&tenant);
    let line = serde_json::json!({
        "table": "logs", "lsn_first": 3, "lsn_last": 9, "committed_at_ns": 1,
        "files": files.iter().map(|f| serde_json::json!({
            "path": f.path.strip_prefix(&tenant_dir).unwrap().to_str().unwrap(),
            "rows": f.rows, "bytes": f.bytes, "min_timestamp": f.min_timestamp,
            "max_timestamp": f.max_timestamp, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(tenant_dir.join(migrate::MANIFEST_FILE), format!("{line}\n")).unwrap();
    let logs = AuditLogs::new(layout.clone(), identity());
    let report = logs.recover().unwrap();
    assert_eq!((report.migrated, report.quarantined), (2, 0));
    let log = logs.get(&tenant).unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.committed_lsn(Table::Logs), Some(9));
    let migrated: Vec<_> = log.files(Table::Logs).collect();
    assert_eq!(migrated.len(), 2);
    assert_eq!(
        migrated[0].rows_digest, files[0].rows_digest,
        "computed from the file"
    );
    assert!(tenant_dir.join("_manifest.jsonl.migrated").exists());
    drop(log);
    let report = verify(&layout);
    assert!(!report.tampered(), "{report:#?}");
    drop(dir);
}

#[test]
fn retention_deletes_whole_expired_files_after_recording_them_and_never_under_hold() {
    use crate::test_support::{BASE, DAY, batch};
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    // Three files: days 0, 1 and 40 after BASE.
    for day in [0, 1, 40] {
        let rows = vec![(BASE + day * DAY, format!("day {day}"))];
        crate::writer::commit(
            &layout,
            &mut log,
            Table::Events,
            &[batch(Table::Events, "acme", &rows)],
            day as u64..=day as u64,
            &crate::writer::WriterOptions::default(),
        )
        .unwrap();
    }
    let now = BASE + 41 * DAY;
    let keep = std::time::Duration::from_secs(30 * 86_400);
    // A dry run says what it would do and does nothing.
    let size = log.size();
    let dry = log.apply_retention(keep, now, None, true).unwrap();
    assert_eq!(dry.expired.len(), 2);
    assert_eq!((log.size(), log.files(Table::Events).count()), (size, 3));
    // A hold in the config, then one in the log: nothing goes.
    let held = log
        .apply_retention(keep, now, Some("tenants.acme.legal_hold"), false)
        .unwrap();
    assert_eq!(
        (held.expired.len(), held.held.as_deref()),
        (0, Some("tenants.acme.legal_hold"))
    );
    assert!(log.set_hold(true, "compliance", "case 7").unwrap());
    assert!(
        !log.set_hold(true, "compliance", "again").unwrap(),
        "already held"
    );
    let held = log.apply_retention(keep, now, None, false).unwrap();
    assert!(held.held.unwrap().contains("case 7"));
    assert_eq!(log.files(Table::Events).count(), 3);
    assert!(log.set_hold(false, "compliance", "case closed").unwrap());
    // Released: the two old files go, their deletions recorded first.
    let done = log.apply_retention(keep, now, None, false).unwrap();
    assert_eq!(done.policy, "retention 30d");
    assert_eq!(done.expired.len(), 2);
    let live: Vec<_> = log.files(Table::Events).map(|f| f.path.clone()).collect();
    assert_eq!(live.len(), 1);
    for e in &done.expired {
        assert!(!log.dir().join(&e.path).exists());
        assert!(log.file(&e.path).unwrap().deleted.is_some());
    }
    let last = String::from_utf8(log.line(log.size() - 1).unwrap()).unwrap();
    assert!(last.contains(r#""type":"deletion""#) && last.contains(r#""policy":"retention 30d""#));
    // Verify: intact, the deletions and the hold listed.
    drop(log);
    let report = verify(&layout);
    assert!(!report.tampered(), "{report:#?}");
    let kinds: Vec<_> = report.tenants[0].findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "deleted_by_retention")
            .count(),
        2
    );
    assert_eq!(kinds.iter().filter(|k| **k == "legal_hold").count(), 2);
}

/// A log entry edited to point outside its tenant (or at another table's directory) is refused
/// when the log is opened, naming the line: nothing reads, hashes or deletes that path.
#[test]
fn an_entry_naming_a_path_outside_its_tenant_is_refused_and_named() {
    use crate::test_support::{BASE, batch};
    let (_dir, layout, tenant) = setup();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    let rows = [(BASE, "r".to_owned())];
    crate::writer::commit(
        &layout,
        &mut log,
        Table::Logs,
        &[batch(Table::Logs, "acme", &rows)],
        1..=1,
        &crate::writer::WriterOptions::default(),
    )
    .unwrap();
    drop(log);
    let log_path = layout.tenant_dir(&tenant).join(LOG_FILE);
    let good = std::fs::read_to_string(&log_path).unwrap();
    for forged in [
        "../globex/signal=logs/date=",
        "/etc/signal=logs/date=",
        "signal=spans/date=",
    ] {
        std::fs::write(&log_path, good.replace("signal=logs/date=", forged)).unwrap();
        match TenantLog::open(&layout, &tenant, identity()) {
            Err(LogError::Damaged { line, reason, .. }) => {
                assert_eq!(line, 2, "{reason}");
                assert!(reason.contains(forged), "{reason}");
            }
            other => panic!("{forged}: {:?}", other.map(|l| l.size())),
        }
    }
    std::fs::write(&log_path, good).unwrap();
    assert!(TenantLog::open(&layout, &tenant, identity()).is_ok());
}

/// At start, a damaged log is set aside, named in the report, and refused by `get` without
/// being read again; the other tenants' logs open as usual.
#[test]
fn recovery_sets_a_damaged_log_aside_and_opens_the_others() {
    use crate::test_support::{BASE, batch};
    let (_dir, layout, _) = setup();
    for name in ["acme", "globex"] {
        let tenant = TenantId::parse(name).unwrap();
        let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
        let rows = [(BASE, "r".to_owned())];
        let batches = [batch(Table::Logs, name, &rows)];
        let options = crate::writer::WriterOptions::default();
        crate::writer::commit(&layout, &mut log, Table::Logs, &batches, 1..=1, &options).unwrap();
    }
    let acme = TenantId::parse("acme").unwrap();
    let log_path = layout.tenant_dir(&acme).join(LOG_FILE);
    let text = std::fs::read_to_string(&log_path).unwrap();
    std::fs::write(
        &log_path,
        text.replace("signal=logs/date=", "/etc/signal=logs/date="),
    )
    .unwrap();
    let logs = AuditLogs::new(layout.clone(), identity());
    let report = logs.recover().unwrap();
    assert_eq!(report.set_aside.len(), 1);
    assert_eq!(report.set_aside[0].0, acme);
    assert!(report.set_aside[0].1.contains("is damaged"), "{report:?}");
    assert!(logs.set_aside(&acme).is_some());
    assert!(matches!(logs.get(&acme), Err(LogError::SetAside { .. })));
    assert!(logs.get_opened(&acme).is_none());
    let globex = TenantId::parse("globex").unwrap();
    assert!(logs.set_aside(&globex).is_none());
    assert_eq!(logs.get(&globex).unwrap().lock().unwrap().size(), 2);
}
