//! Start-up recovery of a tenant's files: what a crash can leave beside its log.
//!
//! - A temporary file (`.<name>.tmp`) of an interrupted write is removed: it was never visible.
//! - A Parquet file no entry names (a crash between its rename and its commit's entries) is
//!   **quarantined**: a `quarantine` entry records its path, SHA-256 and the reason, then it moves
//!   to `DIR/quarantine/tenant=<id>/<path>`. Its rows are still in the write-ahead log, so they
//!   are committed again. The daemon never deletes such a file: if it was put there by hand,
//!   `verify` and the quarantine keep it for whoever looks.
//! - A file named by a `quarantine` entry but still in place (a crash between the entry and the
//!   move) is moved; a file named by a `deletion` entry (a retention run interrupted between its
//!   entry and the removal) is removed, as its entry already says.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::entry::EntryKind;
use super::{LogError, TenantLog};
use crate::layout::{Layout, PARQUET_EXTENSION};
use crate::{Table, TenantId};

/// Where quarantined files go, under the data directory.
pub const QUARANTINE_DIR: &str = "quarantine";

/// What recovery did, over every tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub tenants: usize,
    pub quarantined: usize,
    pub temporaries_removed: usize,
    /// Files whose `deletion` entry was written but which were still there.
    pub deletions_finished: usize,
    /// Files of a pre-audit-log `_manifest.jsonl` turned into entries ([`super::migrate`]).
    pub migrated: usize,
    /// Tenants whose log is damaged, with why: set aside, not opened ([`super::AuditLogs`]).
    pub set_aside: Vec<(TenantId, String)>,
}

pub(super) fn recover_tenant(
    layout: &Layout,
    log: &mut TenantLog,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    report.tenants += 1;
    let tenant = log.tenant().clone();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LogError::Io { path, source }
    };
    for table in Table::ALL {
        let dates = layout
            .list_dates(&tenant, table)
            .map_err(io(&layout.table_dir(&tenant, table)))?;
        for date in dates {
            let dir = layout.partition_dir(&tenant, table, date);
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io(&dir))?;
            names.sort();
            for path in names {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    report.temporaries_removed += 1;
                    continue;
                }
                if !name.ends_with(PARQUET_EXTENSION) {
                    continue;
                }
                let relative = log.relative(&path);
                if let Some(record) = log.file(&relative) {
                    if record.deleted.is_some() {
                        tracing::warn!(path = %path.display(), "removing a file its deletion entry already records (an interrupted retention run)");
                        std::fs::remove_file(&path).map_err(io(&path))?;
                        report.deletions_finished += 1;
                    }
                    continue;
                }
                if !log.names(&relative) {
                    let (sha256, bytes) = sha256_file(&path).map_err(io(&path))?;
                    log.append(vec![EntryKind::Quarantine {
                        path: relative.clone(),
                        sha256,
                        bytes,
                        reason: "no entry names this file: a commit interrupted before its \
                                 entry was written (its rows are committed again from the \
                                 write-ahead log)"
                            .into(),
                    }])?;
                }
                let target = layout
                    .data_dir()
                    .join(QUARANTINE_DIR)
                    .join(format!("tenant={tenant}"))
                    .join(&relative);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::rename(&path, &target).map_err(io(&target))?;
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&dir))?;
                tracing::warn!(tenant = %tenant, path = %relative, to = %target.display(), "quarantined a Parquet file no audit log entry names");
                report.quarantined += 1;
            }
        }
    }
    Ok(())
}

/// SHA-256 (hex) and size of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
