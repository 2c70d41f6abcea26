//! The per-tenant manifest: the commit point of the audit store.
//!
//! `DIR/audit/tenant=<id>/_manifest.jsonl` holds one JSON line per commit: the files written
//! (path relative to the tenant directory, rows, bytes, time range, SHA-256) and the range of
//! write-ahead log positions the commit covers for its table. A commit exists once its line is
//! appended and fsync'd; a Parquet file that no line names is an orphan (a crash between rename
//! and append) and is removed by [`recover`]. Queries read files through the manifest only.
//!
//! Coverage rule: a commit of (tenant, table) with `lsn_last = n` holds *every* record of that
//! tenant and table with an LSN ≤ n that was not in an earlier commit. Replay skips exactly those.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::{Layout, PARQUET_EXTENSION};
use crate::{Table, TenantId};

/// File name of a tenant's manifest, beside its `signal=` directories.
pub const MANIFEST_FILE: &str = "_manifest.jsonl";

/// One committed Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the tenant directory: `signal=<table>/date=<day>/<name>.parquet`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub sha256: String,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub table: String,
    pub lsn_first: u64,
    pub lsn_last: u64,
    pub committed_at_ns: i64,
    pub files: Vec<FileEntry>,
}

/// Why a manifest could not be read or appended.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path} line {line} is damaged: {reason}")]
    Damaged {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// A tenant's manifest, loaded.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    commits: Vec<Commit>,
}

impl Manifest {
    /// Loads the manifest of `tenant` (empty when there is none). A line cut short at the end (a
    /// crash during the append, so never a commit) is truncated away; damage anywhere else is an
    /// error, never silently skipped.
    pub fn load(layout: &Layout, tenant: &TenantId) -> Result<Self, ManifestError> {
        Self::open(layout, tenant, true)
    }

    /// Like [`Manifest::load`] but never writes: a torn last line is ignored, not truncated.
    /// For readers (queries) that run beside the daemon.
    pub fn read(layout: &Layout, tenant: &TenantId) -> Result<Self, ManifestError> {
        Self::open(layout, tenant, false)
    }

    fn open(layout: &Layout, tenant: &TenantId, repair: bool) -> Result<Self, ManifestError> {
        let path = layout.tenant_dir(tenant).join(MANIFEST_FILE);
        let io = |source| ManifestError::Io {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path,
                    commits: Vec::new(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let mut commits = Vec::new();
        let mut good_len = 0usize;
        let mut offset = 0usize;
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            offset += line.len();
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<Commit>(line) {
                Ok(commit) if complete => {
                    commits.push(commit);
                    good_len = offset;
                }
                _ if i + 1 == lines.len() && !repair => {}
                result if i + 1 == lines.len() => {
                    tracing::warn!(path = %path.display(), bytes = line.len(), complete, ok = result.is_ok(), "truncating a torn manifest line");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(good_len as u64).and_then(|()| f.sync_all()))
                        .map_err(io)?;
                }
                Ok(_) => unreachable!("only the last line can lack its newline"),
                Err(e) => {
                    return Err(ManifestError::Damaged {
                        path,
                        line: i + 1,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(Self { path, commits })
    }

    pub fn commits(&self) -> &[Commit] {
        &self.commits
    }

    /// Files of one table, in commit order.
    pub fn files(&self, table: Table) -> impl Iterator<Item = &FileEntry> {
        self.commits
            .iter()
            .filter(move |c| c.table == table.name())
            .flat_map(|c| &c.files)
    }

    /// The highest LSN committed for `table`, if any.
    pub fn committed_lsn(&self, table: Table) -> Option<u64> {
        self.commits
            .iter()
            .filter(|c| c.table == table.name())
            .map(|c| c.lsn_last)
            .max()
    }

    /// Appends and fsyncs one commit line: after this returns, the commit exists.
    pub fn append(&mut self, commit: Commit) -> Result<(), ManifestError> {
        let io = |source| ManifestError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(&commit).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        if created && let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.commits.push(commit);
        Ok(())
    }
}

/// What [`recover`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub tenants: usize,
    pub orphans_removed: usize,
    pub temporaries_removed: usize,
}

/// Removes files no manifest names (orphans of a crash between rename and manifest append) and
/// temporary files of interrupted writes. Run at start-up, before anything is written.
pub fn recover(layout: &Layout) -> Result<RecoveryReport, ManifestError> {
    let mut report = RecoveryReport::default();
    for tenant in layout.list_tenants().map_err(|source| ManifestError::Io {
        path: layout.audit_dir(),
        source,
    })? {
        report.tenants += 1;
        let manifest = Manifest::load(layout, &tenant)?;
        let known: HashSet<&str> = manifest
            .commits
            .iter()
            .flat_map(|c| &c.files)
            .map(|f| f.path.as_str())
            .collect();
        let tenant_dir = layout.tenant_dir(&tenant);
        for table in Table::ALL {
            for date in layout
                .list_dates(&tenant, table)
                .map_err(|source| ManifestError::Io {
                    path: layout.table_dir(&tenant, table),
                    source,
                })?
            {
                let dir = layout.partition_dir(&tenant, table, date);
                clean_dir(&dir, &tenant_dir, &known, &mut report)?;
            }
        }
    }
    Ok(report)
}

fn clean_dir(
    dir: &Path,
    tenant_dir: &Path,
    known: &HashSet<&str>,
    report: &mut RecoveryReport,
) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(io)?;
            report.temporaries_removed += 1;
        } else if name.ends_with(PARQUET_EXTENSION) {
            let relative = path
                .strip_prefix(tenant_dir)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !known.contains(relative.as_str()) {
                tracing::warn!(path = %path.display(), "removing a Parquet file no manifest names (an interrupted commit)");
                std::fs::remove_file(&path).map_err(io)?;
                report.orphans_removed += 1;
            }
        }
    }
    Ok(())
}
