//! Retention and legal holds on a tenant's log: the only way a committed file ever leaves the
//! store.
//!
//! A file is past retention when its *newest* row is older than the policy allows, so a file is
//! deleted whole, never rewritten. The `deletion` entries of one run are appended (and fsync'd)
//! before any file is removed: a crash in between leaves files whose deletion is recorded, which
//! recovery removes at the next start. While a hold is in force — placed in the log, or set in
//! the config — nothing is deleted.

use std::time::Duration;

use super::entry::EntryKind;
use super::{LogError, TenantLog};

/// A file a retention run deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub path: String,
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub max_timestamp: i64,
}

/// What a retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Files deleted (or, in a dry run, that would be).
    pub expired: Vec<Expired>,
    /// Why nothing was deleted, when a hold is in force.
    pub held: Option<String>,
    /// The policy as written in the entries, e.g. `retention 400d`.
    pub policy: String,
}

/// `retention <humantime>` for a duration of whole days or hours.
pub fn policy_label(keep: Duration) -> String {
    let secs = keep.as_secs();
    if secs.is_multiple_of(86_400) {
        format!("retention {}d", secs / 86_400)
    } else if secs.is_multiple_of(3_600) {
        format!("retention {}h", secs / 3_600)
    } else {
        format!("retention {secs}s")
    }
}

impl TenantLog {
    /// Deletes every live file whose newest row is older than `now_ns - keep`, unless a hold is in
    /// force (in the log, or `config_hold` with its description). With `dry_run`, only says what
    /// it would delete.
    pub fn apply_retention(
        &mut self,
        keep: Duration,
        now_ns: i64,
        config_hold: Option<&str>,
        dry_run: bool,
    ) -> Result<RetentionOutcome, LogError> {
        let policy = policy_label(keep);
        let cutoff = now_ns.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX));
        let expired: Vec<Expired> = self
            .file_records()
            .iter()
            .filter(|f| f.deleted.is_none() && f.entry.max_timestamp < cutoff)
            .map(|f| Expired {
                path: f.entry.path.clone(),
                table: f.entry.table.clone(),
                rows: f.entry.rows,
                bytes: f.entry.bytes,
                max_timestamp: f.entry.max_timestamp,
            })
            .collect();
        let held = match (self.hold(), config_hold) {
            (Some(hold), _) => Some(format!(
                "legal hold placed by {} (entry {}): {}",
                hold.by, hold.seq, hold.reason
            )),
            (None, Some(why)) => Some(why.to_owned()),
            (None, None) => None,
        };
        if held.is_some() || dry_run || expired.is_empty() {
            return Ok(RetentionOutcome {
                expired: if held.is_some() { Vec::new() } else { expired },
                held,
                policy,
            });
        }
        let entries = expired
            .iter()
            .map(|e| EntryKind::Deletion {
                path: e.path.clone(),
                sha256: self
                    .file(&e.path)
                    .map(|r| r.entry.sha256.clone())
                    .unwrap_or_default(),
                rows: e.rows,
                max_timestamp: e.max_timestamp,
                policy: policy.clone(),
            })
            .collect();
        // Recorded first; a crash after this leaves files recovery removes.
        self.append(entries)?;
        let mut dirs = std::collections::BTreeSet::new();
        for e in &expired {
            let path = self.dir().join(&e.path);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(LogError::Io { path, source }),
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        for dir in dirs {
            let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
            // An emptied day partition goes too (a directory, not data).
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(RetentionOutcome {
            expired,
            held: None,
            policy,
        })
    }

    /// Places a legal hold (`placed`) or releases it; returns false when that is already the
    /// state (nothing is written).
    pub fn set_hold(&mut self, placed: bool, by: &str, reason: &str) -> Result<bool, LogError> {
        if self.hold().is_some() == placed {
            return Ok(false);
        }
        self.append(vec![EntryKind::Hold {
            placed,
            by: by.to_owned(),
            reason: reason.to_owned(),
        }])?;
        Ok(true)
    }
}
