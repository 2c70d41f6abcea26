//! Appending to a tenant's log: entries written in one write and one fsync (a log's first append
//! starts with its `log` entry), the `file` entries of a commit, and signed checkpoints.
//!
//! Only a log opened with an [`Identity`](super::Identity) appends; a read-only one refuses with
//! [`LogError::ReadOnly`]. Nothing here edits or removes an entry already written, except cutting
//! back a failed append's partial write.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::entry::{Entry, EntryKind, FileEntry};
use super::{CHECKPOINT_FILE, CHECKPOINTS_FILE, Hashes, LogError, TenantLog};
use crate::Table;

impl TenantLog {
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

/// Now, in nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}
