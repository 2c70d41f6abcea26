//! The audit log of each tenant: the append-only record of every change to its stored data, the
//! commit point of the store, and a Merkle tree whose signed checkpoints let anyone check it.
//!
//! Files under `DIR/audit/tenant=<id>/` (the `_` prefix hides them from Parquet engines):
//!
//! - `_log.jsonl`: the entries ([`entry::Entry`]), one JSON line each, never edited. A commit of
//!   Parquet files exists once its `file` entries are appended and fsync'd; a file no entry names
//!   is never read (and is quarantined at start, [`recover`]). The lines are the leaves of an
//!   RFC 6962 Merkle tree (leaf hash `SHA-256(0x00 || line)`).
//! - `_log.hashes`: the tree's stored hashes ([`hashes`]), derived from the entries.
//! - `_checkpoint`: the newest signed checkpoint ([`checkpoint`]), exactly as the API serves it.
//! - `_checkpoints.jsonl`: every checkpoint written, in order (`{"size":…,"note":…}`).
//!
//! Coverage rule (what replay relies on): a commit of (tenant, table) with `lsn_last = n` holds
//! every record of that tenant and table with an LSN ≤ n that was not in an earlier commit.
//!
//! [`TenantLog`] is loaded (and repaired) in `load`, appended to in `append` and read back,
//! with its roots and proofs, in `proofs`.
//!
//! This module never deletes or rewrites a Parquet file: [`recover`] moves unnamed files to
//! `DIR/quarantine/` after recording the move, and only removes a file that a `deletion` entry
//! already records (a retention run interrupted between its entry and the removal).

mod append;
pub mod checkpoint;
pub mod entry;
pub mod hashes;
mod load;
pub mod migrate;
mod proofs;
mod recover;
pub mod retention;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::layout::Layout;
use crate::{Table, TenantId};
use checkpoint::SigningKey;
use entry::{EntryKind, FileEntry};
use hashes::{HashFile, MemoryHashes};
pub use proofs::HashReaderDyn;
pub(crate) use recover::sha256_file;
pub use recover::{QUARANTINE_DIR, RecoveryReport};

pub const LOG_FILE: &str = "_log.jsonl";
pub const HASHES_FILE: &str = "_log.hashes";
pub const CHECKPOINT_FILE: &str = "_checkpoint";
pub const CHECKPOINTS_FILE: &str = "_checkpoints.jsonl";

/// Why a log could not be read, appended or proven.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("audit log i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path} line {line} is damaged: {reason}")]
    Damaged {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the audit log of {0} is open read-only")]
    ReadOnly(TenantId),
    #[error("{0}")]
    Range(String),
    #[error("the log's stored hashes are unreadable: {0}")]
    Hashes(String),
    /// Found damaged at start: set aside until an operator repairs it (see
    /// [`AuditLogs::recover`]); nothing is committed for its tenant meanwhile.
    #[error("the audit log of {tenant} is damaged and set aside until repaired: {reason}")]
    SetAside { tenant: TenantId, reason: String },
}

/// Who appends to logs: the instance named in new logs' origins, and the checkpoint key.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Names this daemon in the origin line `<instance>/tenantscope/<tenant>`.
    pub instance: String,
    pub key: Arc<SigningKey>,
}

impl Identity {
    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/tenantscope/{tenant}", self.instance)
    }
}

/// A committed file and what became of it.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// The index of its `file` entry.
    pub seq: u64,
    pub entry: FileEntry,
    /// The index of its `deletion` entry, once retention removed it.
    pub deleted: Option<u64>,
}

/// A legal hold in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub seq: u64,
    pub by: String,
    pub reason: String,
}

/// One tenant's log, loaded: where each entry is, and an index of what they say.
#[derive(Debug)]
pub struct TenantLog {
    tenant: TenantId,
    dir: PathBuf,
    path: PathBuf,
    /// `offsets[i]` is where entry `i` starts; the last element is the end of the last line.
    offsets: Vec<u64>,
    identity: Option<Identity>,
    hashes: Hashes,
    origin: Option<String>,
    key: Option<String>,
    files: Vec<FileRecord>,
    by_path: HashMap<String, usize>,
    committed: HashMap<Table, u64>,
    quarantined: HashSet<String>,
    hold: Option<Hold>,
    /// The newest checkpoint: (tree size, note).
    checkpoint: Option<(u64, String)>,
}

#[derive(Debug)]
enum Hashes {
    File(HashFile),
    /// Read-only logs compute them in memory when first needed.
    Memory(Option<MemoryHashes>),
    /// Writing them failed; rebuilt from the entries at the next use.
    Broken,
}

impl TenantLog {
    /// Opens a tenant's log to append to it, repairing what a crash can leave: a torn last line
    /// or a commit group cut short is truncated (neither was ever acknowledged as a commit), and
    /// the stored hashes are rebuilt when their length is wrong.
    pub fn open(layout: &Layout, tenant: &TenantId, identity: Identity) -> Result<Self, LogError> {
        Self::load(layout, tenant, Some(identity))
    }

    /// Opens a tenant's log read-only (queries, offline tools beside a running daemon): a torn
    /// tail is ignored, nothing is written. An absent log is an empty one.
    pub fn read(layout: &Layout, tenant: &TenantId) -> Result<Self, LogError> {
        Self::load(layout, tenant, None)
    }

    /// Entry `i` (without its newline) in `text`, the log's bytes.
    fn line_in<'t>(&self, text: &'t [u8], i: usize) -> &'t [u8] {
        &text[self.offsets[i] as usize..self.offsets[i + 1] as usize - 1]
    }

    /// Adds what entry `seq` says to the index.
    fn index(&mut self, seq: u64, kind: EntryKind) {
        match kind {
            EntryKind::Log { origin, key } => {
                self.origin = Some(origin);
                self.key = Some(key);
            }
            EntryKind::Key { key, .. } => self.key = Some(key),
            EntryKind::File(entry) => {
                if let Some(table) = Table::from_name(&entry.table) {
                    let lsn = self.committed.entry(table).or_insert(entry.lsn_last);
                    *lsn = (*lsn).max(entry.lsn_last);
                }
                self.by_path.insert(entry.path.clone(), self.files.len());
                self.files.push(FileRecord {
                    seq,
                    entry,
                    deleted: None,
                });
            }
            EntryKind::Deletion { path, .. } => {
                if let Some(&i) = self.by_path.get(&path) {
                    self.files[i].deleted = Some(seq);
                }
            }
            EntryKind::Quarantine { path, .. } => {
                self.quarantined.insert(path);
            }
            EntryKind::Hold { placed, by, reason } => {
                self.hold = placed.then_some(Hold { seq, by, reason });
            }
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Entries in the log (the tree size).
    pub fn size(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    /// The origin line of the log's checkpoints (none before the first entry).
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// Committed files of `table` not deleted by retention, in commit order.
    pub fn files(&self, table: Table) -> impl Iterator<Item = &FileEntry> {
        self.files
            .iter()
            .filter(move |f| f.deleted.is_none() && f.entry.table == table.name())
            .map(|f| &f.entry)
    }

    /// Every committed file, deleted or not.
    pub fn file_records(&self) -> &[FileRecord] {
        &self.files
    }

    /// The record of the file at `path` (relative to the tenant directory).
    pub fn file(&self, path: &str) -> Option<&FileRecord> {
        self.by_path.get(path).map(|&i| &self.files[i])
    }

    /// Whether an entry names `path` (committed, deleted or quarantined).
    pub fn names(&self, path: &str) -> bool {
        self.by_path.contains_key(path) || self.quarantined.contains(path)
    }

    /// The highest LSN committed for `table`, if any.
    pub fn committed_lsn(&self, table: Table) -> Option<u64> {
        self.committed.get(&table).copied()
    }

    /// The legal hold in force, if any (from the log; the config can add one).
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// The newest checkpoint: (tree size, note as served).
    pub fn latest_checkpoint(&self) -> Option<(u64, &str)> {
        self.checkpoint.as_ref().map(|(s, n)| (*s, n.as_str()))
    }

    /// `path` relative to the tenant directory.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// The tenant directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Every tenant's log, opened once and shared by the writer, the checkpointer and the API.
#[derive(Debug)]
pub struct AuditLogs {
    layout: Layout,
    identity: Identity,
    logs: Mutex<HashMap<TenantId, Arc<Mutex<TenantLog>>>>,
    /// Logs found damaged at start, with why: never opened again by this process.
    set_aside: RwLock<HashMap<TenantId, String>>,
    /// Whether `set_aside` holds any (the check on every request reads only this).
    any_set_aside: AtomicBool,
}

impl AuditLogs {
    pub fn new(layout: Layout, identity: Identity) -> Self {
        Self {
            layout,
            identity,
            logs: Mutex::new(HashMap::new()),
            set_aside: RwLock::new(HashMap::new()),
            any_set_aside: AtomicBool::new(false),
        }
    }

    /// Why the log of `tenant` was set aside at start, if it was.
    pub fn set_aside(&self, tenant: &TenantId) -> Option<String> {
        if !self.any_set_aside.load(Ordering::Relaxed) {
            return None;
        }
        let set_aside = self.set_aside.read().unwrap_or_else(|e| e.into_inner());
        set_aside.get(tenant).cloned()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The log of `tenant`, opened (and repaired) on first use.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<Mutex<TenantLog>>, LogError> {
        if let Some(reason) = self.set_aside(tenant) {
            return Err(LogError::SetAside {
                tenant: tenant.clone(),
                reason,
            });
        }
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = logs.get(tenant) {
            return Ok(log.clone());
        }
        let log = Arc::new(Mutex::new(TenantLog::open(
            &self.layout,
            tenant,
            self.identity.clone(),
        )?));
        logs.insert(tenant.clone(), log.clone());
        Ok(log)
    }

    /// The log of `tenant` if it is open (never opens or creates one).
    pub fn get_opened(&self, tenant: &TenantId) -> Option<Arc<Mutex<TenantLog>>> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.get(tenant).cloned()
    }

    /// Every log opened so far.
    pub fn opened(&self) -> Vec<(TenantId, Arc<Mutex<TenantLog>>)> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = logs.iter().map(|(t, l)| (t.clone(), l.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Opens every tenant's log, repairs it and settles the files no entry names (see
    /// [`recover`]). Run at start-up before anything is written. A log whose entries are
    /// damaged (an edited line, a path outside its tenant) is set aside, named in the report,
    /// instead of stopping the start: its tenant gets errors, every other tenant is served.
    pub fn recover(&self) -> Result<RecoveryReport, LogError> {
        let tenants = self.layout.list_tenants().map_err(|source| LogError::Io {
            path: self.layout.audit_dir(),
            source,
        })?;
        let mut report = RecoveryReport::default();
        for tenant in tenants {
            let recovered = self.get(&tenant).and_then(|log| {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                report.migrated += migrate::migrate(&mut log)?;
                recover::recover_tenant(&self.layout, &mut log, &mut report)
            });
            match recovered {
                Ok(()) => {}
                Err(damaged @ LogError::Damaged { .. }) => {
                    let reason = damaged.to_string();
                    self.logs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&tenant);
                    let mut set_aside = self.set_aside.write().unwrap_or_else(|e| e.into_inner());
                    set_aside.insert(tenant.clone(), reason.clone());
                    self.any_set_aside.store(true, Ordering::Relaxed);
                    report.set_aside.push((tenant, reason));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(report)
    }

    /// Checkpoints every opened log that grew since its newest checkpoint; returns how many were
    /// written, and logs (and returns) the failures.
    pub fn checkpoint_all(&self) -> (usize, Vec<(TenantId, LogError)>) {
        let mut written = 0;
        let mut failed = Vec::new();
        for (tenant, log) in self.opened() {
            let result = log.lock().unwrap_or_else(|e| e.into_inner()).checkpoint();
            match result {
                Ok(Some(_)) => written += 1,
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(tenant = %tenant, error = %error, "cannot write a checkpoint");
                    failed.push((tenant, error));
                }
            }
        }
        (written, failed)
    }
}

#[cfg(test)]
mod tests;
