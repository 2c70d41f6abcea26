//! Targets over files the daemon and `tenantscope verify` read: write-ahead log segments, a
//! tenant's audit log and checkpoints, Parquet files under the store.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use audit_store::layout::Layout;
use audit_store::log::checkpoint::SigningKey;
use audit_store::log::{CHECKPOINT_FILE, CHECKPOINTS_FILE, Identity, LOG_FILE, TenantLog};
use audit_store::verify::{VerifyOptions, verify};
use audit_store::wal::payload::{OTLP_LOGS, decode_batches};
use audit_store::{Table, TenantId};
use tenantscope::pipeline::log_payload::{Logged, to_sorted_batches};

use crate::scratch;

/// The signing key of the fuzzing store (a key for fuzzing only), so that the checkpoints of the
/// seed corpus verify in every run.
pub const SIGNING_KEY: &str =
    "PRIVATE+KEY+fuzz/tenantscope+1a8349eb+AYc7zrjZAPuM9MOWwv7QfhuDfkCtKud6dyVqXps3Zp7m";
/// Its verifier key.
pub const VERIFIER_KEY: &str =
    "fuzz/tenantscope+1a8349eb+ASjh7h/BhvR2GcrMQw/uE7oBDSG2Vzpesstl85szs8zV";

/// Separates the parts of an `audit_log` input: the log, the checkpoints, a trusted checkpoint.
pub const PART: &[u8] = b"\n#--\n";

/// A write-ahead log segment: replayed as at start-up, each record's payload read back as a
/// commit reads it. Unless the first byte is odd, each complete frame's CRC is set right first,
/// so that what follows the CRC check is reached. Replaying again must find the log clean
/// (recovery truncates what it cannot read, once).
pub fn wal_replay(data: &[u8]) {
    let Some((&flags, segment)) = data.split_first() else {
        return;
    };
    let dir = fresh_dir("wal");
    let mut segment = segment.to_vec();
    if flags & 1 == 0 {
        fix_crcs(&mut segment);
    }
    std::fs::write(audit_store::wal::segment_path(&dir, 1), &segment).expect("a segment");
    let mut records = Vec::new();
    let report = audit_store::wal::replay(&dir, |r| records.push(r)).expect("replay");
    assert_eq!(report.records, records.len() as u64);
    for record in records {
        payload_rows(&record.tenant, record.table, record.payload);
    }
    let mut again = 0u64;
    let second = audit_store::wal::replay(&dir, |_| again += 1).expect("a second replay");
    assert_eq!(again, report.records, "the same records replay again");
    assert_eq!(second.torn_tails, 0, "{second:?}");
    assert!(second.corrupt_segments.is_empty(), "{second:?}");
}

/// Sets the CRC of every complete frame to its body's.
fn fix_crcs(segment: &mut [u8]) {
    let header = audit_store::wal::FRAME_HEADER;
    let mut offset = 0usize;
    while offset + header <= segment.len() {
        let mut len = [0u8; 4];
        len.copy_from_slice(&segment[offset..offset + 4]);
        let len = u32::from_le_bytes(len) as usize;
        let Some(end) = (offset + header).checked_add(len) else {
            return;
        };
        let Some(body) = segment.get(offset + header..end) else {
            return;
        };
        let crc = crc32c::crc32c(body).to_le_bytes();
        segment[offset + 4..offset + 8].copy_from_slice(&crc);
        offset = end;
    }
}

/// A replayed payload read back as a commit reads it; it may be anything, so errors are
/// expected, panics are not.
fn payload_rows(tenant: &TenantId, table: Table, payload: Vec<u8>) {
    if payload.starts_with(&OTLP_LOGS) {
        if let Ok(logged) = Logged::parse(payload) {
            let _ = to_sorted_batches(tenant, table, std::slice::from_ref(&logged));
        }
    } else {
        let _ = decode_batches(table, payload);
    }
}

/// The fuzzing store: `acme`'s directory, with two committed files (see [`build_store`]).
struct Store {
    layout: Layout,
    tenant: TenantId,
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let root = scratch().join("store");
        let tenant = TenantId::parse("acme").expect("a tenant id");
        build_store(&root, &tenant);
        Store {
            layout: Layout::new(root),
            tenant,
        }
    })
}

/// Commits two files of `tenant` (logs and events of the fixture requests, through the
/// daemon's own conversion) under `root` and writes a checkpoint.
pub fn build_store(root: &Path, tenant: &TenantId) {
    let layout = Layout::new(root);
    let identity = Identity {
        instance: "fuzz".into(),
        key: std::sync::Arc::new(SigningKey::from_text(SIGNING_KEY).expect("the fuzzing key")),
    };
    let mut log = TenantLog::open(&layout, tenant, identity).expect("a tenant log");
    let mut lsn = 1;
    for (table, batches) in crate::seeds::fixture_rows() {
        audit_store::writer::commit(
            &layout,
            &mut log,
            table,
            &batches,
            lsn..=lsn,
            &Default::default(),
        )
        .expect("a commit");
        lsn += 1;
    }
    log.checkpoint().expect("a checkpoint");
}

/// A tenant's audit log, its checkpoints and a checkpoint an auditor kept (the input's three
/// parts, separated by [`PART`]): read as the daemon reads it at start, and verified as
/// `tenantscope verify --trusted-checkpoint` does, against files that exist.
pub fn audit_log(data: &[u8]) {
    let store = store();
    let dir = store.layout.tenant_dir(&store.tenant);
    let mut parts = split(data, PART);
    let log = parts.next().unwrap_or_default();
    std::fs::write(dir.join(LOG_FILE), log).expect("the log file");
    match parts.next() {
        Some(checkpoints) => std::fs::write(dir.join(CHECKPOINTS_FILE), checkpoints),
        None => std::fs::remove_file(dir.join(CHECKPOINTS_FILE)).or(Ok(())),
    }
    .expect("the checkpoints file");
    let _ = std::fs::remove_file(dir.join(CHECKPOINT_FILE));
    let trusted = parts.next().map(|note| ("fuzz".to_string(), note.to_vec()));
    let _ = TenantLog::read(&store.layout, &store.tenant);
    let options = VerifyOptions {
        tenant: Some(store.tenant.clone()),
        trusted_keys: vec![VERIFIER_KEY.to_string()],
        trusted_checkpoints: trusted.into_iter().collect(),
        threads: Some(1),
        skip_rows_digest: false,
        unlisted_grace: Some(std::time::Duration::ZERO),
    };
    let _ = verify(&store.layout, &options);
}

fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let now = rest?;
        match now.windows(separator.len()).position(|w| w == separator) {
            Some(at) => {
                rest = Some(&now[at + separator.len()..]);
                Some(&now[..at])
            }
            None => {
                rest = None;
                Some(now)
            }
        }
    })
}

/// The rows the entry of a [`parquet_file`] input names (the seeds hold one or two).
const AT_MOST_ROWS: u64 = 10_000;

/// A Parquet file under the store (the first byte picks its table), read as `verify` reads it
/// for its rows digest, its entry naming [`AT_MOST_ROWS`] rows: an error, never a panic that
/// escapes, an unbounded allocation or minutes of work.
pub fn parquet_file(data: &[u8]) {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let table = Table::ALL[selector as usize % Table::ALL.len()];
    let path = scratch().join("file.parquet");
    std::fs::write(&path, file).expect("the file");
    let _ = audit_store::verify::rows_digest(&path, table.name(), Some(AT_MOST_ROWS));
}

/// An emptied directory under the scratch directory.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}
