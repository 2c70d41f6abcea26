//! The log half of `verify` for one tenant: its stored checkpoints read and their signatures
//! checked, its entries streamed through a [`Frontier`] (the stored hashes compared on the way,
//! each checkpoint's root compared when the stream reaches its size), and what the entries say
//! indexed ([`super::entries`]) for the file half ([`super::files`]).
//!
//! It only reads: nothing here repairs, truncates or rebuilds what it finds damaged.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use super::entries::EntryIndex;
use super::{TenantReport, VerifyError, VerifyOptions, files, io};
use crate::TenantId;
use crate::layout::Layout;
use crate::log::checkpoint::{self, CheckpointError, SignedCheckpoint};
use crate::log::entry::Entry;
use crate::log::hashes::Frontier;
use crate::log::{CHECKPOINT_FILE, CHECKPOINTS_FILE, HASHES_FILE, LOG_FILE};

/// Recomputes one tenant's log, checks its checkpoints, then its files.
pub(super) fn verify_tenant(
    layout: &Layout,
    tenant: &TenantId,
    trusted_keys: &[String],
    trusted: &[(String, SignedCheckpoint)],
    threads: usize,
    options: &VerifyOptions,
) -> Result<TenantReport, VerifyError> {
    let mut check = TenantCheck::new(layout, tenant, trusted_keys);
    check.read_history()?;
    check.read_latest()?;
    check.add_trusted(trusted);
    let mut index = EntryIndex::default();
    check.stream_entries(&mut index)?;
    check.check_origins();
    check.check_signers(&index.keys_named);
    check.note_uncheckpointed();
    let TenantCheck {
        dir, mut report, ..
    } = check;
    if report.entries == 0 && dir.join(crate::log::migrate::MANIFEST_FILE).exists() {
        report.info(
            "not_migrated",
            crate::log::migrate::MANIFEST_FILE,
            "the store was written before the audit log: start the daemon once to migrate it, then verify",
        );
        return Ok(report);
    }
    files::check_files(layout, tenant, &dir, &index, threads, options, &mut report)?;
    Ok(report)
}

/// A checkpoint to compare with the recomputed tree.
struct Check {
    size: u64,
    root: [u8; 32],
    label: String,
    external: bool,
}

/// The state of one tenant's log check: its report and the checkpoints still to compare.
struct TenantCheck<'a> {
    tenant: &'a TenantId,
    dir: PathBuf,
    trusted_keys: &'a [String],
    report: TenantReport,
    /// Every checkpoint stored or trusted for the tenant, checked for signature and origin when
    /// read; for their roots once the stream of entries reaches their size.
    checks: Vec<Check>,
    /// (name, key id) of every valid stored checkpoint's signatures.
    signers: Vec<(String, String)>,
    /// (label, origin) of every checkpoint read.
    origins: Vec<(String, String)>,
}

impl<'a> TenantCheck<'a> {
    /// An empty check of `tenant`'s directory.
    fn new(layout: &Layout, tenant: &'a TenantId, trusted_keys: &'a [String]) -> Self {
        Self {
            tenant,
            dir: layout.tenant_dir(tenant),
            trusted_keys,
            report: TenantReport {
                tenant: tenant.to_string(),
                ..TenantReport::default()
            },
            checks: Vec::new(),
            signers: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Checks a stored checkpoint's signature; a valid one is kept for its root check.
    fn add_stored(&mut self, label: String, note: &[u8]) -> Option<SignedCheckpoint> {
        match checkpoint::verify_checkpoint(note, self.trusted_keys) {
            Ok(c) => {
                self.signers.extend(c.signers.iter().cloned());
                self.checks.push(Check {
                    size: c.size,
                    root: c.root,
                    label,
                    external: false,
                });
                Some(c)
            }
            Err(e) => {
                let kind = match e {
                    CheckpointError::BadSignature(_) => "bad_signature",
                    CheckpointError::Untrusted(_) => "untrusted_signature",
                    _ => "checkpoint_malformed",
                };
                self.report.tamper(kind, label, e.to_string());
                None
            }
        }
    }

    /// Reads every checkpoint of `_checkpoints.jsonl` (an absent history has none).
    fn read_history(&mut self) -> Result<(), VerifyError> {
        let history_path = self.dir.join(CHECKPOINTS_FILE);
        let Ok(file) = File::open(&history_path) else {
            return Ok(());
        };
        let mut reader = BufReader::new(file);
        let mut raw = Vec::new();
        for i in 0.. {
            raw.clear();
            if reader
                .read_until(b'\n', &mut raw)
                .map_err(io(&history_path))?
                == 0
            {
                break;
            }
            let label = format!("{CHECKPOINTS_FILE} line {}", i + 1);
            if !raw.ends_with(b"\n") {
                // Being appended beside a running daemon, or cut by a crash during the append.
                self.report
                    .info("torn_checkpoint", label, "the last line is not complete");
                break;
            }
            self.read_history_line(label, &raw);
        }
        Ok(())
    }

    /// Checks one complete line of `_checkpoints.jsonl`.
    fn read_history_line(&mut self, label: String, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw);
        let note = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_owned));
        match note {
            Some(note) => {
                if let Some(c) = self.add_stored(label.clone(), note.as_bytes()) {
                    self.origins.push((label, c.origin));
                }
            }
            None => self.report.tamper(
                "checkpoint_malformed",
                label,
                "not a {\"size\", \"note\"} line",
            ),
        }
    }

    /// Reads `_checkpoint` and checks it is not older than the history's newest.
    fn read_latest(&mut self) -> Result<(), VerifyError> {
        let latest = match std::fs::read(self.dir.join(CHECKPOINT_FILE)) {
            Ok(note) => self.add_stored(CHECKPOINT_FILE.into(), &note).inspect(|c| {
                self.origins
                    .push((CHECKPOINT_FILE.into(), c.origin.clone()));
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&self.dir.join(CHECKPOINT_FILE))(e)),
        };
        let newest_in_history = self
            .checks
            .iter()
            .filter(|c| c.label != CHECKPOINT_FILE)
            .map(|c| c.size)
            .max();
        if let (Some(latest), Some(newest)) = (&latest, newest_in_history)
            && latest.size < newest
        {
            self.report.tamper(
                "checkpoint_rolled_back",
                CHECKPOINT_FILE,
                format!(
                    "the newest checkpoint is of size {}, but {CHECKPOINTS_FILE} holds one of size {newest}",
                    latest.size
                ),
            );
        }
        Ok(())
    }

    /// Adds the trusted checkpoints and orders every check by size.
    fn add_trusted(&mut self, trusted: &[(String, SignedCheckpoint)]) {
        for (label, c) in trusted {
            self.checks.push(Check {
                size: c.size,
                root: c.root,
                label: label.clone(),
                external: true,
            });
            self.origins.push((label.clone(), c.origin.clone()));
        }
        self.checks.sort_by_key(|c| c.size);
        self.report.newest_checkpoint = self
            .checks
            .iter()
            .filter(|c| !c.external)
            .map(|c| c.size)
            .max();
    }

    /// Streams `_log.jsonl` into `index`, recomputing the tree and comparing the stored hashes
    /// and every checkpoint's root on the way.
    fn stream_entries(&mut self, index: &mut EntryIndex) -> Result<(), VerifyError> {
        let log_path = self.dir.join(LOG_FILE);
        let mut frontier = Frontier::default();
        let mut stored = StoredHashes::open(&self.dir);
        let mut next_check = 0;
        self.check_roots(&frontier, &mut next_check);
        match File::open(&log_path) {
            Ok(file) => {
                let mut reader = BufReader::new(file);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line).map_err(io(&log_path))?;
                    if n == 0 {
                        break;
                    }
                    let at = frontier.leaves();
                    if !line.ends_with(b"\n") {
                        self.report.info(
                            "torn_entry",
                            format!("entry {at}"),
                            "the last line is cut short (a crash during an append; it was never a commit and the daemon removes it at its next start)",
                        );
                        break;
                    }
                    let leaf = &line[..line.len() - 1];
                    let added = frontier.append(leaf);
                    stored.compare(&added, at, &mut self.report);
                    self.read_entry(leaf, at, index);
                    self.check_roots(&frontier, &mut next_check);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&log_path)(e)),
        }
        self.report.entries = frontier.leaves();
        self.report.root = super::base64_of(&frontier.root().0);
        stored.check_end(&mut self.report);
        self.report_unreached(next_check, frontier.leaves());
        Ok(())
    }

    /// Compares the root of every checkpoint of the tree's current size; moves `next` past the
    /// checkpoints the tree has reached.
    fn check_roots(&mut self, frontier: &Frontier, next: &mut usize) {
        while *next < self.checks.len() && self.checks[*next].size <= frontier.leaves() {
            let c = &self.checks[*next];
            if c.size == frontier.leaves() {
                self.report.checkpoints_checked += 1;
                if frontier.root().0 != c.root {
                    let (kind, what) = if c.external {
                        ("forked", "the trusted checkpoint")
                    } else {
                        ("checkpoint_mismatch", "the signed checkpoint")
                    };
                    self.report.tamper(
                        kind,
                        c.label.clone(),
                        format!(
                            "the first {} entries do not hash to the root {what} signed: entries were edited, reordered, inserted or removed",
                            c.size
                        ),
                    );
                }
            }
            *next += 1;
        }
    }

    /// Parses entry `at` and indexes it.
    fn read_entry(&mut self, leaf: &[u8], at: u64, index: &mut EntryIndex) {
        match serde_json::from_slice::<Entry>(leaf) {
            Err(e) => self.report.tamper(
                "entry_damaged",
                format!("entry {at}"),
                format!("not an entry: {e}"),
            ),
            Ok(entry) => {
                if entry.seq != at {
                    self.report.tamper(
                        "entry_out_of_order",
                        format!("entry {at}"),
                        format!(
                            "it says it is entry {}: entries were reordered, inserted or removed",
                            entry.seq
                        ),
                    );
                }
                index.add(&mut self.report, at, entry);
            }
        }
    }

    /// Reports the checkpoints of more entries than the log holds.
    fn report_unreached(&mut self, next_check: usize, leaves: u64) {
        for c in &self.checks[next_check.min(self.checks.len())..] {
            let (kind, detail) = if c.external {
                (
                    "rolled_back",
                    format!(
                        "the trusted checkpoint is of a log of {} entries, the log has {}: entries were removed",
                        c.size, leaves
                    ),
                )
            } else {
                (
                    "entries_missing",
                    format!(
                        "signed for {} entries, the log has {}: entries were removed",
                        c.size, leaves
                    ),
                )
            };
            self.report.tamper(kind, c.label.clone(), detail);
        }
    }

    /// Checks every checkpoint's origin against the tenant and the log's `log` entry.
    fn check_origins(&mut self) {
        let origin = self.report.origin.clone();
        for (label, o) in std::mem::take(&mut self.origins) {
            let expected = origin.clone().unwrap_or_default();
            if !o.ends_with(&format!("/{}", self.tenant)) || (origin.is_some() && o != expected) {
                self.report.tamper(
                    "origin_mismatch",
                    label,
                    format!("the checkpoint is of {o:?}, this log's origin is {expected:?}"),
                );
            }
        }
    }

    /// Checks every checkpoint signer is a key some entry names.
    fn check_signers(&mut self, keys_named: &HashSet<String>) {
        for (name, id) in &self.signers {
            if !keys_named
                .iter()
                .any(|k| checkpoint::key_id(k) == id && k.starts_with(&format!("{name}+")))
            {
                self.report.tamper(
                    "key_not_in_log",
                    format!("{name}+{id}"),
                    "a checkpoint is signed by a key no log or key entry names",
                );
            }
        }
    }

    /// Notes the entries no stored checkpoint covers yet.
    fn note_uncheckpointed(&mut self) {
        let report = &mut self.report;
        match report.newest_checkpoint {
            None if report.entries > 0 => report.info(
                "not_checkpointed",
                format!("entries 0..{}", report.entries),
                "no checkpoint covers these entries yet (the daemon signs one every audit.checkpoint_interval and at shutdown)",
            ),
            Some(size) if size < report.entries => report.info(
                "not_checkpointed",
                format!("entries {size}..{}", report.entries),
                "no checkpoint covers these entries yet (the daemon signs one every audit.checkpoint_interval and at shutdown)",
            ),
            _ => {}
        }
    }
}

/// `_log.hashes`, read alongside the entries and compared with the recomputed hashes until the
/// first difference.
struct StoredHashes {
    reader: Option<BufReader<File>>,
    /// No difference found yet.
    ok: bool,
}

impl StoredHashes {
    /// Opens the tenant's stored hashes; absent ones are not compared.
    fn open(dir: &std::path::Path) -> Self {
        Self {
            reader: File::open(dir.join(HASHES_FILE)).ok().map(BufReader::new),
            ok: true,
        }
    }

    /// Compares the hashes entry `at` added to the tree with the next stored ones.
    fn compare(&mut self, added: &[tlog_tiles::Hash], at: u64, report: &mut TenantReport) {
        if !self.ok {
            return;
        }
        let Some(stored) = self.reader.as_mut() else {
            return;
        };
        let mut buf = [0u8; 32];
        for h in added {
            match stored.read_exact(&mut buf) {
                Ok(()) if buf == h.0 => continue,
                Ok(()) => report.tamper(
                    "hashes_mismatch",
                    HASHES_FILE,
                    format!("the stored hashes differ from the entries' from entry {at} on: proofs served from them would not check"),
                ),
                // Written after the entries (or being written now, beside a running
                // daemon); rebuilt from the entries when short.
                Err(_) => report.info(
                    "hashes_incomplete",
                    HASHES_FILE,
                    format!("the stored hashes end at entry {at}; the daemon rebuilds them from the entries at its next start"),
                ),
            }
            self.ok = false;
            break;
        }
    }

    /// Reports stored hashes left over once every entry was read.
    fn check_end(&mut self, report: &mut TenantReport) {
        if self.ok
            && let Some(stored) = self.reader.as_mut()
            && stored.fill_buf().is_ok_and(|b| !b.is_empty())
        {
            report.tamper(
                "hashes_mismatch",
                HASHES_FILE,
                "the stored hashes run past the entries",
            );
        }
    }
}
