//! The entries of a tenant's audit log: one JSON object per line of `_log.jsonl`, the leaves of its
//! Merkle tree (the leaf is the line's bytes without its newline).
//!
//! Every entry carries its position (`seq`, the leaf index) and when it was written (`time_ns`),
//! then its `type` and the fields of that type. Entries are written once and never edited.

use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's index in the log (0 for the first).
    pub seq: u64,
    /// When it was appended, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What happened to the tenant's stored data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryKind {
    /// The first entry: the origin line of the log's checkpoints and the verifier key (C2SP
    /// `<name>+<id>+<key>`) they are signed with.
    Log { origin: String, key: String },
    /// A Parquet file committed (see [`FileEntry`]).
    File(FileEntry),
    /// A Parquet file that no entry named, found at start-up and moved to `DIR/quarantine/`
    /// (a commit interrupted between the file's rename and its entry; its rows are committed
    /// again from the write-ahead log). `path` is where it was, relative to the tenant directory.
    Quarantine {
        path: String,
        sha256: String,
        bytes: u64,
        reason: String,
    },
    /// A committed file deleted by the retention policy (the entry is written before the file
    /// is removed).
    Deletion {
        path: String,
        sha256: String,
        rows: u64,
        max_timestamp: i64,
        policy: String,
    },
    /// A legal hold placed (`placed: true`) or released: while one is in force nothing of the
    /// tenant is deleted.
    Hold {
        placed: bool,
        by: String,
        reason: String,
    },
    /// The checkpoints that follow are signed with another key.
    Key { key: String, previous: String },
}

/// One committed Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub table: String,
    /// Relative to the tenant directory: `signal=<table>/date=<day>/<name>.parquet`.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// The digest of the file's rows, independent of encoding and order
    /// ([`crate::rows_digest`]).
    pub rows_digest: String,
    /// The write-ahead log positions the commit covers: every record of this tenant and table
    /// with an LSN ≤ `lsn_last` not committed before is in this commit's files.
    pub lsn_first: u64,
    pub lsn_last: u64,
    /// A commit of several files (one per UTC day) is `commit_files` consecutive entries, written
    /// at once; a group cut short by a crash was never a commit and is removed at start-up.
    pub commit_files: u32,
    pub commit_index: u32,
}

impl EntryKind {
    /// The `type` field, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Log { .. } => "log",
            EntryKind::File(_) => "file",
            EntryKind::Quarantine { .. } => "quarantine",
            EntryKind::Deletion { .. } => "deletion",
            EntryKind::Hold { .. } => "hold",
            EntryKind::Key { .. } => "key",
        }
    }

    /// Why this entry's path cannot be a file of its tenant's store, if it cannot. A committed or
    /// deleted file must be a path the layout builds (`signal=<table>/date=<day>/<name>.parquet`,
    /// of the entry's own table); a quarantined one any relative path that stays in the tenant's
    /// directory. Nothing that reads entries opens, hashes or deletes a path that fails.
    pub fn path_problem(&self) -> Option<String> {
        let (path, table) = match self {
            EntryKind::File(f) => (&f.path, Some(f.table.as_str())),
            EntryKind::Deletion { path, .. } => (path, None),
            EntryKind::Quarantine { path, .. } => {
                let stays = !path.is_empty()
                    && !path.starts_with('/')
                    && path
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != "..");
                return (!stays).then(|| format!("{path:?} leaves the tenant's directory"));
            }
            _ => return None,
        };
        match crate::layout::parse_file_path(path) {
            Some((t, _)) if table.is_none_or(|table| t.name() == table) => None,
            Some((t, _)) => Some(format!("{path:?} is a {} file, not {table:?}", t.name())),
            None => Some(format!(
                "{path:?} is not a data file of the tenant's directory"
            )),
        }
    }

    /// The file path this entry is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            EntryKind::File(f) => Some(&f.path),
            EntryKind::Quarantine { path, .. } | EntryKind::Deletion { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl Entry {
    /// The line as written (the Merkle leaf), without its newline.
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries serialise")
    }
}
