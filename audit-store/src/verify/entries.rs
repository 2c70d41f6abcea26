//! What each entry of a tenant's log says, indexed as `verify` streams the log: the files
//! committed, deleted and quarantined, and the keys named, with the findings one entry carries on
//! its own (a misplaced `log` entry, a path of the wrong table, a deletion under a legal hold, a
//! key rotation, a quarantine, a hold placed or released).
//!
//! It judges each entry alone; whether files and entries agree is [`super::files`]'.

use std::collections::{HashMap, HashSet};

use super::TenantReport;
use crate::layout::parse_file_path;
use crate::log::entry::{Entry, EntryKind, FileEntry};

/// What the entries say, gathered for the file half of the check.
#[derive(Default)]
pub(super) struct EntryIndex {
    /// Every `file` entry, with its index.
    pub(super) files: Vec<(u64, FileEntry)>,
    /// Path → the `deletion` entry that removed it, with its index.
    pub(super) deleted: HashMap<String, (u64, Entry)>,
    /// Path → the index of the `quarantine` entry that moved it.
    pub(super) quarantined: HashMap<String, u64>,
    /// Every verifier key a `log` or `key` entry names.
    pub(super) keys_named: HashSet<String>,
}

impl EntryIndex {
    /// Indexes entry `index`, reporting what is wrong or worth knowing about it on its own.
    pub(super) fn add(&mut self, report: &mut TenantReport, index: u64, entry: Entry) {
        match &entry.kind {
            EntryKind::Log { origin, key } => {
                if index != 0 {
                    report.tamper(
                        "entry_out_of_order",
                        format!("entry {index}"),
                        "a log entry is only ever the first",
                    );
                }
                report.origin = Some(origin.clone());
                self.keys_named.insert(key.clone());
            }
            EntryKind::Key { key, previous } => {
                self.keys_named.insert(key.clone());
                report.info(
                    "key_rotation",
                    format!("entry {index}"),
                    format!("checkpoints are signed with {key} from here (before: {previous})"),
                );
            }
            EntryKind::File(f) => {
                if parse_file_path(&f.path).is_none_or(|(t, _)| t.name() != f.table) {
                    report.tamper(
                        "entry_damaged",
                        format!("entry {index}"),
                        format!("{:?} is not a path of a {} file", f.path, f.table),
                    );
                }
                self.files.push((index, f.clone()));
            }
            EntryKind::Deletion { path, .. } => {
                if let Some(placed) = report.hold_in_force {
                    report.tamper(
                        "deleted_under_hold",
                        path.clone(),
                        format!("entry {index} deletes it while the legal hold of entry {placed} is in force"),
                    );
                }
                self.deleted.insert(path.clone(), (index, entry.clone()));
            }
            EntryKind::Quarantine { path, reason, .. } => {
                self.quarantined.insert(path.clone(), index);
                report.info(
                    "quarantined",
                    path.clone(),
                    format!("entry {index}: {reason}"),
                );
            }
            EntryKind::Hold { placed, by, reason } => {
                report.hold_in_force = placed.then_some(index);
                let what = if *placed { "placed" } else { "released" };
                report.info(
                    "legal_hold",
                    format!("entry {index}"),
                    format!("{what} by {by}: {reason}"),
                );
            }
        }
    }
}
