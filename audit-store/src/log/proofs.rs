//! Reading back a tenant's log: entries as written, and the tree's roots and proofs computed
//! from the stored hashes (rebuilt first when writing them failed; computed in memory for a
//! read-only log).
//!
//! Nothing here appends an entry; the only write is rebuilding `_log.hashes` from the entries.

use std::fs::File;
use std::os::unix::fs::FileExt;

use tlog_tiles::{Hash, HashReader};

use super::hashes::{HashFile, MemoryHashes};
use super::{HASHES_FILE, Hashes, LogError, TenantLog};

impl TenantLog {
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

    /// Refuses a tree `size` larger than the log.
    fn check_size(&self, size: u64) -> Result<(), LogError> {
        if size > self.size() {
            return Err(LogError::Range(format!(
                "the log has {} entries, not {size}",
                self.size()
            )));
        }
        Ok(())
    }

    /// Runs `f` on the stored hashes, making them available first.
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
