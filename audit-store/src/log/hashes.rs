//! The stored hashes of a tenant's Merkle tree (`_log.hashes`): every complete subtree's hash, in
//! the order of `tlog_tiles::stored_hash_index` (about two per entry, 32 bytes each). With them a
//! root, an inclusion proof or a consistency proof costs `O(log n)` reads instead of rehashing the
//! log. The file is derived data: it is rebuilt from the entries when it is missing or of the
//! wrong length, and `verify` recomputes it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tlog_tiles::{HASH_SIZE, Hash, HashReader, stored_hash_count, stored_hashes};

/// The hash file of one log, open for reading and appending.
#[derive(Debug)]
pub struct HashFile {
    path: PathBuf,
    file: File,
    /// Hashes in the file.
    count: u64,
}

impl HashFile {
    /// Opens (or creates) the file for a log of `leaves` entries; when its length is not the one
    /// such a log has, it is rebuilt from `lines` (the entries' leaf bytes, in order).
    pub fn open<'a>(
        path: &Path,
        leaves: u64,
        lines: impl FnMut() -> Box<dyn Iterator<Item = &'a [u8]> + 'a>,
    ) -> std::io::Result<Self> {
        let mut lines = lines;
        let expected = stored_hash_count(leaves);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len == expected * HASH_SIZE as u64 {
            return Ok(Self {
                path: path.to_path_buf(),
                file,
                count: expected,
            });
        }
        tracing::warn!(path = %path.display(), bytes = len, expected = expected * HASH_SIZE as u64, "rebuilding the log's stored hashes from its entries");
        let mut memory = MemoryHashes::default();
        for (n, line) in lines().enumerate() {
            memory
                .append(n as u64, line)
                .map_err(std::io::Error::other)?;
        }
        let tmp = path.with_extension("hashes.tmp");
        let mut out = File::create(&tmp)?;
        for h in &memory.0 {
            out.write_all(&h.0)?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            count: memory.0.len() as u64,
        })
    }

    /// Appends the stored hashes of entries `first..first + lines.len()` and syncs them.
    pub fn append(&mut self, first: u64, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let mut pending = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let reader = FileReader {
                file: &self.file,
                count: self.count,
                pending: &pending,
            };
            let new =
                stored_hashes(first + i as u64, line, &reader).map_err(std::io::Error::other)?;
            pending.extend(new);
        }
        let mut bytes = Vec::with_capacity(pending.len() * HASH_SIZE);
        for h in &pending {
            bytes.extend_from_slice(&h.0);
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.count += pending.len() as u64;
        Ok(())
    }

    /// A reader of the hashes stored so far.
    pub fn reader(&self) -> FileReader<'_> {
        FileReader {
            file: &self.file,
            count: self.count,
            pending: &[],
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads stored hashes from the file, and from hashes computed but not yet written.
pub struct FileReader<'a> {
    file: &'a File,
    count: u64,
    pending: &'a [Hash],
}

impl HashReader for FileReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                if i >= self.count {
                    return self
                        .pending
                        .get((i - self.count) as usize)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree);
                }
                let mut h = [0u8; HASH_SIZE];
                self.file
                    .read_exact_at(&mut h, i * HASH_SIZE as u64)
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
                Ok(Hash(h))
            })
            .collect()
    }
}

/// Every stored hash in memory (for a rebuild and for small trees in tests).
#[derive(Debug, Default, Clone)]
pub struct MemoryHashes(pub Vec<Hash>);

impl MemoryHashes {
    /// Appends entry `n` (which must be the next one).
    pub fn append(&mut self, n: u64, line: &[u8]) -> Result<(), tlog_tiles::Error> {
        let new = stored_hashes(n, line, self)?;
        self.0.extend(new);
        Ok(())
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The hashes a streaming verifier needs: only the newest stored hash of each level (the roots of
/// the complete subtrees left of the next entry), so memory is `O(log n)` however long the log.
#[derive(Debug, Default)]
pub struct Frontier {
    /// Per level: (stored hash index, hash).
    latest: Vec<(u64, Hash)>,
    leaves: u64,
}

impl Frontier {
    /// Appends the next entry; returns the stored hashes it adds (to compare with a hash file).
    pub fn append(&mut self, line: &[u8]) -> Vec<Hash> {
        let n = self.leaves;
        let new = stored_hashes(n, line, &*self).expect("the frontier holds every hash needed");
        let first = tlog_tiles::stored_hash_index(0, n);
        for (level, h) in new.iter().enumerate() {
            let index = first + level as u64;
            if self.latest.len() <= level {
                self.latest.push((index, *h));
            } else {
                self.latest[level] = (index, *h);
            }
        }
        self.leaves += 1;
        new
    }

    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The root of the tree of every entry appended so far.
    pub fn root(&self) -> Hash {
        tlog_tiles::tree_hash(self.leaves, self).expect("the frontier holds every hash needed")
    }
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let (level, _) = tlog_tiles::split_stored_hash_index(i);
                match self.latest.get(level as usize) {
                    Some(&(index, h)) if index == i => Ok(h),
                    _ => Err(tlog_tiles::Error::IndexesNotInTree),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_computes_the_same_roots_as_every_stored_hash() {
        let mut memory = MemoryHashes::default();
        let mut frontier = Frontier::default();
        for n in 0..300u64 {
            let line = format!("entry {n}").into_bytes();
            memory.append(n, &line).unwrap();
            let added = frontier.append(&line);
            let first = tlog_tiles::stored_hash_index(0, n) as usize;
            assert_eq!(&memory.0[first..], &added[..]);
            assert_eq!(
                frontier.root(),
                tlog_tiles::tree_hash(n + 1, &memory).unwrap(),
                "root of {}",
                n + 1
            );
        }
    }

    #[test]
    fn the_file_is_rebuilt_when_its_length_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("_log.hashes");
        let lines: Vec<Vec<u8>> = (0..20).map(|n| format!("e{n}").into_bytes()).collect();
        let mut file = HashFile::open(&path, 0, || Box::new(std::iter::empty())).unwrap();
        file.append(0, &lines[..7]).unwrap();
        file.append(7, &lines[7..]).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut memory = MemoryHashes::default();
        for (n, l) in lines.iter().enumerate() {
            memory.append(n as u64, l).unwrap();
        }
        assert_eq!(good.len(), memory.0.len() * HASH_SIZE);
        assert_eq!(good[good.len() - 32..], memory.0.last().unwrap().0);
        // Cut short (a crash between the entries and their hashes): rebuilt.
        std::fs::write(&path, &good[..good.len() - 40]).unwrap();
        let file =
            HashFile::open(&path, 20, || Box::new(lines.iter().map(|l| l.as_slice()))).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert_eq!(
            tlog_tiles::tree_hash(20, &file.reader()).unwrap(),
            tlog_tiles::tree_hash(20, &memory).unwrap()
        );
    }
}
