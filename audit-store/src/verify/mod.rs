//! `verify`: recompute every tenant's audit log from its files and say what does not hold.
//!
//! For each tenant it streams `_log.jsonl` (memory `O(log n)` for the tree, a few hundred bytes
//! per file entry), recomputes the Merkle tree and its stored hashes, checks every checkpoint it
//! finds (and every trusted one it is given) against the recomputed root at that size and against
//! the trusted keys, then re-hashes every Parquet file and recomputes its rows digest ([`files`]),
//! and lists the directories for files no entry names. Tenants are verified on a pool of threads,
//! each tenant's files on its share of them.
//!
//! A finding names the file, entry or checkpoint it is about. [`Severity::Tampered`] findings mean
//! the store is not what its log and signatures say; [`Severity::Info`] ones (deleted by
//! retention, quarantined at a restart, a key rotation, entries not yet checkpointed) are facts
//! an auditor should see, not damage.

mod files;

pub use files::rows_digest;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::{Layout, PARQUET_EXTENSION, parse_file_path};
use crate::log::checkpoint::{self, CheckpointError};
use crate::log::entry::{Entry, EntryKind, FileEntry};
use crate::log::hashes::Frontier;
use crate::log::{CHECKPOINT_FILE, CHECKPOINTS_FILE, HASHES_FILE, LOG_FILE, QUARANTINE_DIR};
use crate::{Table, TenantId};

/// What to check and whom to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this tenant (default: every tenant directory).
    pub tenant: Option<TenantId>,
    /// Verifier keys (`<name>+<id>+<base64>`) whose signatures are trusted; empty: the `*.pub`
    /// files in `DIR/keys/`.
    pub trusted_keys: Vec<String>,
    /// Checkpoints obtained earlier (as `GET /api/v1/checkpoint` served them), with where they
    /// came from: the log must extend each one of its tenant.
    pub trusted_checkpoints: Vec<(String, Vec<u8>)>,
    /// Threads hashing files (default: the available cores).
    pub threads: Option<usize>,
    /// Skip recomputing rows digests (bytes are still hashed).
    pub skip_rows_digest: bool,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Tampered,
    Info,
}

/// One thing verify found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable code: `file_missing`, `file_altered`, `checkpoint_mismatch`, ...
    pub kind: &'static str,
    /// The file (relative to the tenant directory), entry or checkpoint concerned.
    pub subject: String,
    pub detail: String,
}

/// The outcome for one tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub entries: u64,
    /// Base64 root of the recomputed tree (as in checkpoints).
    pub root: String,
    pub origin: Option<String>,
    pub checkpoints_checked: u64,
    pub newest_checkpoint: Option<u64>,
    pub files_checked: u64,
    pub bytes_hashed: u64,
    /// The entry of the legal hold in force at the end of the log, if any.
    pub hold_in_force: Option<u64>,
    pub findings: Vec<Finding>,
}

impl TenantReport {
    pub fn tampered(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Tampered)
    }

    pub(crate) fn tamper(
        &mut self,
        kind: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity: Severity::Tampered,
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    pub(crate) fn info(
        &mut self,
        kind: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity: Severity::Info,
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }
}

/// The outcome over every tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub tenants: Vec<TenantReport>,
    /// Findings not about one tenant's log (e.g. a trusted checkpoint of no tenant present).
    pub findings: Vec<Finding>,
    pub trusted_keys: Vec<String>,
    pub seconds: f64,
}

impl Report {
    pub fn tampered(&self) -> bool {
        self.tenants.iter().any(TenantReport::tampered)
            || self
                .findings
                .iter()
                .any(|f| f.severity == Severity::Tampered)
    }
}

/// Why verify could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} holds no audit store (no audit/ directory)")]
    NoStore(PathBuf),
    #[error("no trusted public key: pass --public-key FILE (none in {0})")]
    NoKeys(PathBuf),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The verifier keys in `DIR/keys/*.pub`.
pub fn default_keys(layout: &Layout) -> Result<Vec<String>, VerifyError> {
    let dir = layout.data_dir().join("keys");
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let key = checkpoint::parse_verifier_key(&text)
            .map_err(|e| VerifyError::Invalid(format!("{}: {e}", path.display())))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Verifies the store in `layout`.
pub fn verify(layout: &Layout, options: &VerifyOptions) -> Result<Report, VerifyError> {
    let started = std::time::Instant::now();
    if !layout.audit_dir().is_dir() {
        return Err(VerifyError::NoStore(layout.data_dir().to_path_buf()));
    }
    let trusted_keys = if options.trusted_keys.is_empty() {
        default_keys(layout)?
    } else {
        options.trusted_keys.clone()
    };
    let tenants = match &options.tenant {
        Some(t) => vec![t.clone()],
        None => layout.list_tenants().map_err(io(&layout.audit_dir()))?,
    };
    let mut report = Report {
        trusted_keys: trusted_keys.clone(),
        ..Report::default()
    };
    if trusted_keys.is_empty()
        && tenants
            .iter()
            .any(|t| layout.tenant_dir(t).join(LOG_FILE).exists())
    {
        return Err(VerifyError::NoKeys(layout.data_dir().join("keys")));
    }
    // Trusted checkpoints, by the tenant their origin names.
    let mut external: HashMap<String, Vec<(String, checkpoint::SignedCheckpoint)>> = HashMap::new();
    for (source, note) in &options.trusted_checkpoints {
        match checkpoint::verify_checkpoint(note, &trusted_keys) {
            Ok(c) => {
                let tenant = c.origin.rsplit('/').next().unwrap_or_default().to_owned();
                if !tenants.iter().any(|t| t.as_str() == tenant) {
                    report.findings.push(Finding {
                        severity: Severity::Tampered,
                        kind: "tenant_missing",
                        subject: source.clone(),
                        detail: format!(
                            "the trusted checkpoint of {:?} (size {}) names a tenant whose log is not in the store",
                            c.origin, c.size
                        ),
                    });
                }
                external
                    .entry(tenant)
                    .or_default()
                    .push((source.clone(), c));
            }
            Err(e) => report.findings.push(Finding {
                severity: Severity::Tampered,
                kind: "trusted_checkpoint_invalid",
                subject: source.clone(),
                detail: e.to_string(),
            }),
        }
    }
    let threads = options
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    // Tenants on `threads` workers (most stores hold many small tenants), each tenant's files on
    // its share of the threads (one big tenant gets them all).
    let work: Vec<_> = tenants
        .into_iter()
        .map(|t| {
            let trusted = external.remove(t.as_str()).unwrap_or_default();
            (t, trusted)
        })
        .collect();
    let per_tenant = threads.div_ceil(threads.min(work.len()).max(1));
    let results = parallel_map(&work, threads, |(tenant, trusted)| {
        verify_tenant(layout, tenant, &trusted_keys, trusted, per_tenant, options)
    });
    for result in results {
        report.tenants.push(result?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `f` of every item, in order, computed on up to `threads` threads that each take the next
/// item left.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| {
            let result = s.into_inner().unwrap_or_else(|e| e.into_inner());
            result.expect("every item was mapped")
        })
        .collect()
}

/// A checkpoint to compare with the recomputed tree.
struct Check {
    size: u64,
    root: [u8; 32],
    label: String,
    external: bool,
}

fn verify_tenant(
    layout: &Layout,
    tenant: &TenantId,
    trusted_keys: &[String],
    trusted: &[(String, checkpoint::SignedCheckpoint)],
    threads: usize,
    options: &VerifyOptions,
) -> Result<TenantReport, VerifyError> {
    let dir = layout.tenant_dir(tenant);
    let mut report = TenantReport {
        tenant: tenant.to_string(),
        ..TenantReport::default()
    };
    // Every checkpoint stored for the tenant, checked for signature and origin here; for their
    // roots once the stream of entries reaches their size.
    let mut checks: Vec<Check> = Vec::new();
    let mut signers: Vec<(String, String)> = Vec::new();
    let mut add_stored = |report: &mut TenantReport, label: String, note: &[u8]| {
        match checkpoint::verify_checkpoint(note, trusted_keys) {
            Ok(c) => {
                signers.extend(c.signers.iter().cloned());
                checks.push(Check {
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
                report.tamper(kind, label, e.to_string());
                None
            }
        }
    };
    let history_path = dir.join(CHECKPOINTS_FILE);
    let mut origins: Vec<(String, String)> = Vec::new();
    if let Ok(file) = std::fs::File::open(&history_path) {
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
                report.info("torn_checkpoint", label, "the last line is not complete");
                break;
            }
            let line = String::from_utf8_lossy(&raw);
            let note = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_owned));
            match note {
                Some(note) => {
                    if let Some(c) = add_stored(&mut report, label.clone(), note.as_bytes()) {
                        origins.push((label, c.origin));
                    }
                }
                None => report.tamper(
                    "checkpoint_malformed",
                    label,
                    "not a {\"size\", \"note\"} line",
                ),
            }
        }
    }
    let latest = match std::fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(note) => add_stored(&mut report, CHECKPOINT_FILE.into(), &note).inspect(|c| {
            origins.push((CHECKPOINT_FILE.into(), c.origin.clone()));
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&dir.join(CHECKPOINT_FILE))(e)),
    };
    let newest_in_history = checks
        .iter()
        .filter(|c| c.label != CHECKPOINT_FILE)
        .map(|c| c.size)
        .max();
    if let (Some(latest), Some(newest)) = (&latest, newest_in_history)
        && latest.size < newest
    {
        report.tamper(
            "checkpoint_rolled_back",
            CHECKPOINT_FILE,
            format!(
                "the newest checkpoint is of size {}, but {CHECKPOINTS_FILE} holds one of size {newest}",
                latest.size
            ),
        );
    }
    for (label, c) in trusted {
        checks.push(Check {
            size: c.size,
            root: c.root,
            label: label.clone(),
            external: true,
        });
        origins.push((label.clone(), c.origin.clone()));
    }
    checks.sort_by_key(|c| c.size);
    report.newest_checkpoint = checks.iter().filter(|c| !c.external).map(|c| c.size).max();

    // Stream the entries.
    let log_path = dir.join(LOG_FILE);
    let mut frontier = Frontier::default();
    let mut stored_hashes = std::fs::File::open(dir.join(HASHES_FILE))
        .ok()
        .map(BufReader::new);
    let mut hashes_ok = true;
    let mut files: Vec<(u64, FileEntry)> = Vec::new();
    let mut deleted: HashMap<String, (u64, Entry)> = HashMap::new();
    let mut quarantined: HashMap<String, u64> = HashMap::new();
    let mut keys_named: HashSet<String> = HashSet::new();
    let mut next_check = 0;
    let check_root = |frontier: &Frontier, report: &mut TenantReport, next: &mut usize| {
        while *next < checks.len() && checks[*next].size <= frontier.leaves() {
            let c = &checks[*next];
            if c.size == frontier.leaves() {
                report.checkpoints_checked += 1;
                if frontier.root().0 != c.root {
                    let (kind, what) = if c.external {
                        ("forked", "the trusted checkpoint")
                    } else {
                        ("checkpoint_mismatch", "the signed checkpoint")
                    };
                    report.tamper(
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
    };
    check_root(&frontier, &mut report, &mut next_check);
    match std::fs::File::open(&log_path) {
        Ok(file) => {
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io(&log_path))?;
                if n == 0 {
                    break;
                }
                let index = frontier.leaves();
                if !line.ends_with(b"\n") {
                    report.info(
                        "torn_entry",
                        format!("entry {index}"),
                        "the last line is cut short (a crash during an append; it was never a commit and the daemon removes it at its next start)",
                    );
                    break;
                }
                let leaf = &line[..line.len() - 1];
                let added = frontier.append(leaf);
                if hashes_ok && let Some(stored) = stored_hashes.as_mut() {
                    let mut buf = [0u8; 32];
                    for h in &added {
                        match stored.read_exact(&mut buf) {
                            Ok(()) if buf == h.0 => continue,
                            Ok(()) => report.tamper(
                                "hashes_mismatch",
                                HASHES_FILE,
                                format!("the stored hashes differ from the entries' from entry {index} on: proofs served from them would not check"),
                            ),
                            // Written after the entries (or being written now, beside a running
                            // daemon); rebuilt from the entries when short.
                            Err(_) => report.info(
                                "hashes_incomplete",
                                HASHES_FILE,
                                format!("the stored hashes end at entry {index}; the daemon rebuilds them from the entries at its next start"),
                            ),
                        }
                        hashes_ok = false;
                        break;
                    }
                }
                match serde_json::from_slice::<Entry>(leaf) {
                    Err(e) => report.tamper(
                        "entry_damaged",
                        format!("entry {index}"),
                        format!("not an entry: {e}"),
                    ),
                    Ok(entry) => {
                        if entry.seq != index {
                            report.tamper(
                                "entry_out_of_order",
                                format!("entry {index}"),
                                format!("it says it is entry {}: entries were reordered, inserted or removed", entry.seq),
                            );
                        }
                        index_entry(
                            &mut report,
                            index,
                            entry,
                            &mut files,
                            &mut deleted,
                            &mut quarantined,
                            &mut keys_named,
                        );
                    }
                }
                check_root(&frontier, &mut report, &mut next_check);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&log_path)(e)),
    }
    report.entries = frontier.leaves();
    report.root = base64_of(&frontier.root().0);
    if hashes_ok
        && let Some(stored) = stored_hashes.as_mut()
        && stored.fill_buf().is_ok_and(|b| !b.is_empty())
    {
        report.tamper(
            "hashes_mismatch",
            HASHES_FILE,
            "the stored hashes run past the entries",
        );
    }
    for c in &checks[next_check.min(checks.len())..] {
        let (kind, detail) = if c.external {
            (
                "rolled_back",
                format!(
                    "the trusted checkpoint is of a log of {} entries, the log has {}: entries were removed",
                    c.size,
                    frontier.leaves()
                ),
            )
        } else {
            (
                "entries_missing",
                format!(
                    "signed for {} entries, the log has {}: entries were removed",
                    c.size,
                    frontier.leaves()
                ),
            )
        };
        report.tamper(kind, c.label.clone(), detail);
    }
    let origin = report.origin.clone();
    for (label, o) in origins {
        let expected = origin.clone().unwrap_or_default();
        if !o.ends_with(&format!("/{tenant}")) || (origin.is_some() && o != expected) {
            report.tamper(
                "origin_mismatch",
                label,
                format!("the checkpoint is of {o:?}, this log's origin is {expected:?}"),
            );
        }
    }
    for (name, id) in &signers {
        if !keys_named
            .iter()
            .any(|k| checkpoint::key_id(k) == id && k.starts_with(&format!("{name}+")))
        {
            report.tamper(
                "key_not_in_log",
                format!("{name}+{id}"),
                "a checkpoint is signed by a key no log or key entry names",
            );
        }
    }
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
    if report.entries == 0 && dir.join(crate::log::migrate::MANIFEST_FILE).exists() {
        report.info(
            "not_migrated",
            crate::log::migrate::MANIFEST_FILE,
            "the store was written before the audit log: start the daemon once to migrate it, then verify",
        );
        return Ok(report);
    }
    files::check_files(
        layout,
        tenant,
        &dir,
        &files,
        &deleted,
        &quarantined,
        threads,
        options,
        &mut report,
    )?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn index_entry(
    report: &mut TenantReport,
    index: u64,
    entry: Entry,
    files: &mut Vec<(u64, FileEntry)>,
    deleted: &mut HashMap<String, (u64, Entry)>,
    quarantined: &mut HashMap<String, u64>,
    keys_named: &mut HashSet<String>,
) {
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
            keys_named.insert(key.clone());
        }
        EntryKind::Key { key, previous } => {
            keys_named.insert(key.clone());
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
            files.push((index, f.clone()));
        }
        EntryKind::Deletion { path, .. } => {
            if let Some(placed) = report.hold_in_force {
                report.tamper(
                    "deleted_under_hold",
                    path.clone(),
                    format!("entry {index} deletes it while the legal hold of entry {placed} is in force"),
                );
            }
            deleted.insert(path.clone(), (index, entry.clone()));
        }
        EntryKind::Quarantine { path, reason, .. } => {
            quarantined.insert(path.clone(), index);
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

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every Parquet file under a tenant's partitions, relative to its directory.
fn parquet_files(
    layout: &Layout,
    tenant: &TenantId,
) -> Result<BTreeMap<String, PathBuf>, VerifyError> {
    let mut out = BTreeMap::new();
    let dir = layout.tenant_dir(tenant);
    for table in Table::ALL {
        let table_dir = layout.table_dir(tenant, table);
        for date in layout.list_dates(tenant, table).map_err(io(&table_dir))? {
            let partition = layout.partition_dir(tenant, table, date);
            for entry in std::fs::read_dir(&partition).map_err(io(&partition))? {
                let path = entry.map_err(io(&partition))?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if name.ends_with(PARQUET_EXTENSION) {
                    let relative = path
                        .strip_prefix(&dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    out.insert(relative, path);
                }
            }
        }
    }
    Ok(out)
}

/// Every file under `DIR/quarantine/tenant=<id>/`, relative to it.
fn quarantine_files(layout: &Layout, tenant: &TenantId) -> Vec<String> {
    let root = layout
        .data_dir()
        .join(QUARANTINE_DIR)
        .join(format!("tenant={tenant}"));
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(&root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests;
