//! Loading a tenant's log: `_log.jsonl` parsed into entry offsets and the index of what the
//! entries say, the newest checkpoint read, and, when opened to append, the repairs a crash can
//! call for (a torn last line or a commit group cut short truncated, the stored hashes rebuilt).
//!
//! A read-only load never writes: it ignores what a repair would remove.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::Path;

use super::entry::{Entry, EntryKind};
use super::hashes::HashFile;
use super::{
    CHECKPOINT_FILE, HASHES_FILE, Hashes, Identity, LOG_FILE, LogError, TenantLog, checkpoint,
};
use crate::TenantId;
use crate::layout::Layout;

impl TenantLog {
    /// Loads `tenant`'s log; with an identity (to append), repairs it first.
    pub(super) fn load(
        layout: &Layout,
        tenant: &TenantId,
        identity: Option<Identity>,
    ) -> Result<Self, LogError> {
        let dir = layout.tenant_dir(tenant);
        let path = dir.join(LOG_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let repair = identity.is_some();
        let (mut entries, offset) = parse_entries(&path, &text)?;
        let offset = drop_cut_commit(&mut entries, offset);
        if repair && offset < text.len() as u64 {
            truncate_tail(&path, text.len() as u64 - offset, offset)?;
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
            log.open_hash_file(&text)?;
        }
        log.read_latest_checkpoint()?;
        Ok(log)
    }

    /// Opens `_log.hashes` for appending, rebuilding it from the entries in `text` when its
    /// length is wrong.
    fn open_hash_file(&mut self, text: &[u8]) -> Result<(), LogError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let size = self.size();
        let lines: Vec<&[u8]> = (0..size as usize).map(|i| self.line_in(text, i)).collect();
        let hashes_path = self.dir.join(HASHES_FILE);
        let file = HashFile::open(&hashes_path, size, || Box::new(lines.iter().copied()))
            .map_err(io(&hashes_path))?;
        self.hashes = Hashes::File(file);
        Ok(())
    }

    /// Reads `_checkpoint`, the newest checkpoint (an unparsable one is ignored).
    fn read_latest_checkpoint(&mut self) -> Result<(), LogError> {
        match std::fs::read_to_string(self.dir.join(CHECKPOINT_FILE)) {
            Ok(note) => {
                if let Ok(c) = checkpoint::parse_checkpoint(note.as_bytes()) {
                    self.checkpoint = Some((c.size, note));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.dir.join(CHECKPOINT_FILE))(e)),
        }
        Ok(())
    }
}

/// The error of an i/o failure on `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { path, source }
}

/// Every complete entry of `text` with where it starts, and where the last one ends; stops at a
/// torn last line.
fn parse_entries(path: &Path, text: &[u8]) -> Result<(Vec<(u64, Entry)>, u64), LogError> {
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    let mut offset = 0u64;
    for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = line.ends_with(b"\n");
        let parsed = serde_json::from_slice::<Entry>(&line[..line.len() - complete as usize]);
        match parsed {
            Ok(entry) if complete => {
                // An edited entry must not make the daemon open or delete another path.
                if let Some(problem) = entry.kind.path_problem() {
                    return Err(LogError::Damaged {
                        path: path.to_path_buf(),
                        line: i + 1,
                        reason: problem,
                    });
                }
                entries.push((offset, entry));
            }
            // A complete line that is not an entry is damage, wherever it is: a crash leaves
            // a last line without its newline (or zeros), never a finished wrong one.
            Err(e) if complete => {
                return Err(LogError::Damaged {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
            // The last line, torn by a crash during its append: never a commit.
            _ => break,
        }
        offset += line.len() as u64;
    }
    Ok((entries, offset))
}

/// Drops a commit group cut short at the end of `entries` (its files were never committed);
/// returns where the entries kept end.
fn drop_cut_commit(entries: &mut Vec<(u64, Entry)>, mut offset: u64) -> u64 {
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
    offset
}

/// Truncates the log at `path` to `len` bytes, dropping the `cut` bytes a crash left.
fn truncate_tail(path: &Path, cut: u64, len: u64) -> Result<(), LogError> {
    tracing::warn!(path = %path.display(), bytes = cut, "truncating an audit log entry or commit cut short by a crash");
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(io(path))
}
