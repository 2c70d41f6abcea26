//! Upgrading a store written before the audit log: its per-tenant `_manifest.jsonl` (one line per
//! commit: files with rows, bytes, time range and SHA-256, and the LSN range covered) becomes
//! `file` entries, in commit order, with each file's rows digest computed from the file. The
//! manifest's SHA-256 is kept as it was recorded (a file altered since then is reported by
//! `verify`, not blessed). The manifest is then renamed `_manifest.jsonl.migrated` and left there.

use std::path::PathBuf;

use serde::Deserialize;

use super::entry::{EntryKind, FileEntry};
use super::{LogError, TenantLog};

/// The old manifest's file name.
pub const MANIFEST_FILE: &str = "_manifest.jsonl";

#[derive(Deserialize)]
struct Commit {
    table: String,
    lsn_first: u64,
    lsn_last: u64,
    files: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    path: String,
    rows: u64,
    bytes: u64,
    min_timestamp: i64,
    max_timestamp: i64,
    sha256: String,
}

/// Migrates the tenant's manifest into its (empty) log; returns the files migrated.
pub(super) fn migrate(log: &mut TenantLog) -> Result<usize, LogError> {
    let path = log.dir().join(MANIFEST_FILE);
    if log.size() > 0 || !path.exists() {
        return Ok(0);
    }
    let io = |path: PathBuf| move |source| LogError::Io { path, source };
    let text = std::fs::read(&path).map_err(io(path.clone()))?;
    let mut kinds = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        // A torn last line was never a commit (the old reader ignored it too).
        let Ok(commit) = serde_json::from_slice::<Commit>(line) else {
            if text[..].ends_with(line) {
                break;
            }
            return Err(LogError::Damaged {
                path,
                line: i + 1,
                reason: "not a manifest line".into(),
            });
        };
        let count = commit.files.len() as u32;
        for (index, f) in commit.files.into_iter().enumerate() {
            if crate::layout::parse_file_path(&f.path).is_none_or(|(t, _)| t.name() != commit.table)
            {
                return Err(LogError::Damaged {
                    path,
                    line: i + 1,
                    reason: format!("{:?} is not a data file of the tenant's directory", f.path),
                });
            }
            let digest = crate::verify::rows_digest(&log.dir().join(&f.path), &commit.table, None)
                .map(|(d, _)| d)
                .unwrap_or_else(|e| {
                    tracing::warn!(path = %f.path, error = %e, "cannot read a file while migrating its manifest line");
                    "unknown (the file could not be read when the manifest was migrated)".into()
                });
            kinds.push(EntryKind::File(FileEntry {
                table: commit.table.clone(),
                path: f.path,
                sha256: f.sha256,
                bytes: f.bytes,
                rows: f.rows,
                min_timestamp: f.min_timestamp,
                max_timestamp: f.max_timestamp,
                rows_digest: digest,
                lsn_first: commit.lsn_first,
                lsn_last: commit.lsn_last,
                commit_files: count,
                commit_index: index as u32,
            }));
        }
    }
    let files = kinds.len();
    if files > 0 {
        log.append(kinds)?;
    }
    let done = log.dir().join(format!("{MANIFEST_FILE}.migrated"));
    std::fs::rename(&path, &done).map_err(io(done))?;
    tracing::info!(tenant = %log.tenant(), files, "migrated the manifest into the audit log");
    Ok(files)
}
