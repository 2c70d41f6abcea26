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
//! This module never deletes or rewrites a Parquet file: [`recover`] moves unnamed files to
//! `DIR/quarantine/` after recording the move, and only removes a file that a `deletion` entry
//! already records (a retention run interrupted between its entry and the removal).

pub mod checkpoint;
pub mod entry;
pub mod hashes;
pub mod migrate;
mod recover;
pub mod retention;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tlog_tiles::{Hash, HashReader};

use crate::layout::Layout;
use crate::{Table, TenantId};
use checkpoint::SigningKey;
use entry::{Entry, EntryKind, FileEntry};
use hashes::{HashFile, MemoryHashes};
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

    fn load(
        layout: &Layout,
        tenant: &TenantId,
        identity: Option<Identity>,
    ) -> Result<Self, LogError> {
        let dir = layout.tenant_dir(tenant);
        let path = dir.join(LOG_FILE);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| LogError::Io { path: p, source }
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let repair = identity.is_some();
        let mut entries: Vec<(u64, Entry)> = Vec::new();
        let mut offset = 0u64;
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with(b"\n");
            let parsed = serde_json::from_slice::<Entry>(&line[..line.len() - complete as usize]);
            match parsed {
                Ok(entry) if complete => entries.push((offset, entry)),
                // A complete line that is not an entry is damage, wherever it is: a crash leaves
                // a last line without its newline (or zeros), never a finished wrong one.
                Err(e) if complete => {
                    return Err(LogError::Damaged {
                        path,
                        line: i + 1,
                        reason: e.to_string(),
                    });
                }
                // The last line, torn by a crash during its append: never a commit.
                _ => break,
            }
            offset += line.len() as u64;
        }
        // A commit group cut short: its files were never committed.
        while let Some((
            _,
            Entry {
                kind: EntryKind::File(f),
                ..
            },
        )) = entries.last()
        {
            let Some(group_start) = (entries.len() - 1).checked_sub(f.commit_index as usize) else {
                break;
            };
            if f.commit_index + 1 >= f.commit_files {
                break;
            }
            offset = entries[group_start].0;
            entries.truncate(group_start);
        }
        if repair && offset < text.len() as u64 {
            tracing::warn!(path = %path.display(), bytes = text.len() as u64 - offset, "truncating an audit log entry or commit cut short by a crash");
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(offset).and_then(|()| f.sync_all()))
                .map_err(io(&path))?;
        }
        let mut log = Self {
            tenant: tenant.clone(),
            dir: dir.clone(),
            path: path.clone(),
            offsets: entries.iter().map(|(o, _)| *o).chain([offset]).collect(),
            identity,
            hashes: Hashes::Memory(None),
            origin: None,
            key: None,
            files: Vec::new(),
            by_path: HashMap::new(),
            committed: HashMap::new(),
            quarantined: HashSet::new(),
            hold: None,
            checkpoint: None,
        };
        for (i, (_, entry)) in entries.into_iter().enumerate() {
            if entry.seq != i as u64 {
                tracing::warn!(tenant = %tenant, line = i + 1, seq = entry.seq, "audit log entry out of sequence (run tenantscope verify)");
            }
            log.index(i as u64, entry.kind);
        }
        if repair {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let size = log.size();
            let lines: Vec<&[u8]> = (0..size as usize).map(|i| log.line_in(&text, i)).collect();
            let file = HashFile::open(&dir.join(HASHES_FILE), size, || {
                Box::new(lines.iter().copied())
            })
            .map_err(io(&dir.join(HASHES_FILE)))?;
            log.hashes = Hashes::File(file);
        }
        match std::fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
            Ok(note) => {
                if let Ok(c) = checkpoint::parse_checkpoint(note.as_bytes()) {
                    log.checkpoint = Some((c.size, note));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir.join(CHECKPOINT_FILE))(e)),
        }
        Ok(log)
    }

    fn line_in<'t>(&self, text: &'t [u8], i: usize) -> &'t [u8] {
        &text[self.offsets[i] as usize..self.offsets[i + 1] as usize - 1]
    }

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

    /// Appends `kinds` as entries in one write and one fsync: after this returns they are part of
    /// the log (a log's first append starts with its `log` entry). Returns their indexes (not the
    /// `log` entry's).
    pub fn append(&mut self, kinds: Vec<EntryKind>) -> Result<std::ops::Range<u64>, LogError> {
        let identity = self
            .identity
            .clone()
            .ok_or_else(|| LogError::ReadOnly(self.tenant.clone()))?;
        let mut kinds = kinds;
        let mut genesis = 0;
        if self.size() == 0 && !matches!(kinds.first(), Some(EntryKind::Log { .. })) {
            genesis = 1;
            kinds.insert(
                0,
                EntryKind::Log {
                    origin: identity.origin(&self.tenant),
                    key: identity.key.verifier_key().to_owned(),
                },
            );
        }
        let first = self.size();
        let time_ns = now_ns();
        let entries: Vec<Entry> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Entry {
                seq: first + i as u64,
                time_ns,
                kind,
            })
            .collect();
        let lines: Vec<Vec<u8>> = entries.iter().map(Entry::to_line).collect();
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in &lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let end = *self.offsets.last().expect("never empty");
        if first == 0 {
            std::fs::create_dir_all(&self.dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            // Cut back what may have reached the file, so the next append starts clean.
            let _ = file.set_len(end).and_then(|()| file.sync_data());
            return Err(io(e));
        }
        if first == 0 {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        let mut offset = end;
        for line in &lines {
            offset += line.len() as u64 + 1;
            self.offsets.push(offset);
        }
        match &mut self.hashes {
            Hashes::File(hashes) => {
                if let Err(error) = hashes.append(first, &lines) {
                    tracing::error!(path = %hashes.path().display(), error = %error, "cannot write the audit log's stored hashes; rebuilding them later");
                    self.hashes = Hashes::Broken;
                }
            }
            Hashes::Memory(memory) => *memory = None,
            Hashes::Broken => {}
        }
        for entry in entries {
            self.index(entry.seq, entry.kind);
        }
        Ok(first + genesis..self.size())
    }

    /// Appends the `file` entries of one commit of `table` covering LSNs `lsns`: after this
    /// returns, the files are part of the store.
    pub fn commit_files(
        &mut self,
        table: Table,
        files: &[crate::writer::CommittedFile],
        lsns: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<FileEntry>, LogError> {
        let count = files.len() as u32;
        let entries: Vec<FileEntry> = files
            .iter()
            .enumerate()
            .map(|(i, f)| FileEntry {
                table: table.name().to_owned(),
                path: self.relative(&f.path),
                sha256: f.sha256.clone(),
                bytes: f.bytes,
                rows: f.rows as u64,
                min_timestamp: f.min_timestamp,
                max_timestamp: f.max_timestamp,
                rows_digest: f.rows_digest.clone(),
                lsn_first: *lsns.start(),
                lsn_last: *lsns.end(),
                commit_files: count,
                commit_index: i as u32,
            })
            .collect();
        if entries.is_empty() {
            return Ok(entries);
        }
        self.append(entries.iter().cloned().map(EntryKind::File).collect())?;
        Ok(entries)
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

    /// Entry `index` as written (the leaf), without its newline.
    pub fn line(&self, index: u64) -> Result<Vec<u8>, LogError> {
        if index >= self.size() {
            return Err(LogError::Range(format!(
                "entry {index} is not in a log of {} entries",
                self.size()
            )));
        }
        let (start, end) = (
            self.offsets[index as usize],
            self.offsets[index as usize + 1],
        );
        let mut buf = vec![0u8; (end - start - 1) as usize];
        File::open(&self.path)
            .and_then(|f| f.read_exact_at(&mut buf, start))
            .map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// The first `size` entries as written, each with its newline (one read).
    pub fn lines(&self, size: u64) -> Result<Vec<u8>, LogError> {
        self.check_size(size)?;
        let mut buf = vec![0u8; self.offsets[size as usize] as usize];
        File::open(&self.path)
            .and_then(|f| f.read_exact_at(&mut buf, 0))
            .map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// The root hash of the tree of the first `size` entries.
    pub fn root(&mut self, size: u64) -> Result<Hash, LogError> {
        self.check_size(size)?;
        self.with_hashes(|r| tlog_tiles::tree_hash(size, &r))
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries (RFC 6962
    /// §2.1.1 audit path, leaf to root).
    pub fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(size)?;
        if index >= size {
            return Err(LogError::Range(format!(
                "entry {index} is not in a tree of {size} entries"
            )));
        }
        self.with_hashes(|r| tlog_tiles::prove_record(size, index, &r))
    }

    /// The consistency proof from the tree of `from` entries to the tree of `to` (RFC 6962
    /// §2.1.2).
    pub fn consistency_proof(&mut self, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(to)?;
        if from == 0 || from > to {
            return Err(LogError::Range(format!(
                "a consistency proof needs 1 <= from <= to ({from}, {to})"
            )));
        }
        self.with_hashes(|r| tlog_tiles::prove_tree(to, from, &r))
    }

    fn check_size(&self, size: u64) -> Result<(), LogError> {
        if size > self.size() {
            return Err(LogError::Range(format!(
                "the log has {} entries, not {size}",
                self.size()
            )));
        }
        Ok(())
    }

    fn with_hashes<T>(
        &mut self,
        f: impl FnOnce(&dyn HashReaderDyn) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, LogError> {
        if matches!(self.hashes, Hashes::Broken) {
            let text = std::fs::read(&self.path).map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
            let lines: Vec<&[u8]> = (0..self.size() as usize)
                .map(|i| self.line_in(&text, i))
                .collect();
            let path = self.dir.join(HASHES_FILE);
            // The length is wrong, so this rebuilds it.
            let file = HashFile::open(&path, self.size(), || Box::new(lines.iter().copied()))
                .map_err(|source| LogError::Io { path, source })?;
            self.hashes = Hashes::File(file);
        }
        if let Hashes::Memory(None) = self.hashes {
            let text = std::fs::read(&self.path).unwrap_or_default();
            let mut memory = MemoryHashes::default();
            for i in 0..self.size() as usize {
                memory
                    .append(i as u64, self.line_in(&text, i))
                    .map_err(|e| LogError::Hashes(e.to_string()))?;
            }
            self.hashes = Hashes::Memory(Some(memory));
        }
        let result = match &self.hashes {
            Hashes::File(file) => f(&file.reader()),
            Hashes::Memory(Some(memory)) => f(memory),
            _ => unreachable!("made available above"),
        };
        result.map_err(|e| LogError::Hashes(e.to_string()))
    }

    /// Signs and stores a checkpoint of the whole log unless the newest one already covers it.
    /// A new signing key is first recorded with a `key` entry. Returns the new checkpoint.
    pub fn checkpoint(&mut self) -> Result<Option<String>, LogError> {
        let identity = self
            .identity
            .clone()
            .ok_or_else(|| LogError::ReadOnly(self.tenant.clone()))?;
        if self.size() == 0 {
            return Ok(None);
        }
        if let Some(previous) = self.key.clone()
            && previous != identity.key.verifier_key()
        {
            self.append(vec![EntryKind::Key {
                key: identity.key.verifier_key().to_owned(),
                previous,
            }])?;
        }
        let size = self.size();
        if self.checkpoint.as_ref().is_some_and(|(s, _)| *s == size) {
            return Ok(None);
        }
        let root = self.root(size)?;
        let origin = self
            .origin
            .clone()
            .unwrap_or_else(|| identity.origin(&self.tenant));
        let note = identity.key.sign_checkpoint(&origin, size, root);
        let io = |path: PathBuf| move |source| LogError::Io { path, source };
        let history = self.dir.join(CHECKPOINTS_FILE);
        let mut line =
            serde_json::to_vec(&serde_json::json!({"size": size, "note": note})).expect("json");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history)
            .map_err(io(history.clone()))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io(history.clone()))?;
        let latest = self.dir.join(CHECKPOINT_FILE);
        let tmp = self.dir.join(format!(".{CHECKPOINT_FILE}.tmp"));
        std::fs::write(&tmp, &note)
            .and_then(|()| File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &latest))
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .map_err(io(latest))?;
        self.checkpoint = Some((size, note.clone()));
        Ok(Some(note))
    }
}

/// `tlog_tiles::HashReader` as a trait object.
pub trait HashReaderDyn {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error>;
}

impl<T: HashReader> HashReaderDyn for T {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.read_hashes(indexes)
    }
}

impl HashReader for &dyn HashReaderDyn {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let hashes = (**self).read(indexes)?;
        if hashes.len() != indexes.len() {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        Ok(hashes)
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Every tenant's log, opened once and shared by the writer, the checkpointer and the API.
#[derive(Debug)]
pub struct AuditLogs {
    layout: Layout,
    identity: Identity,
    logs: Mutex<HashMap<TenantId, Arc<Mutex<TenantLog>>>>,
}

impl AuditLogs {
    pub fn new(layout: Layout, identity: Identity) -> Self {
        Self {
            layout,
            identity,
            logs: Mutex::new(HashMap::new()),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The log of `tenant`, opened (and repaired) on first use.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<Mutex<TenantLog>>, LogError> {
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

    /// Every log opened so far.
    pub fn opened(&self) -> Vec<(TenantId, Arc<Mutex<TenantLog>>)> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = logs.iter().map(|(t, l)| (t.clone(), l.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Opens every tenant's log, repairs it and settles the files no entry names (see
    /// [`recover`]). Run at start-up before anything is written.
    pub fn recover(&self) -> Result<RecoveryReport, LogError> {
        let tenants = self.layout.list_tenants().map_err(|source| LogError::Io {
            path: self.layout.audit_dir(),
            source,
        })?;
        let mut report = RecoveryReport::default();
        for tenant in tenants {
            let log = self.get(&tenant)?;
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            report.migrated += migrate::migrate(&mut log)?;
            recover::recover_tenant(&self.layout, &mut log, &mut report)?;
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
pub(crate) mod tests;
