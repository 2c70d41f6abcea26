//! `verify`: recompute every tenant's audit log from its files and say what does not hold.
//!
//! For each tenant it streams `_log.jsonl` (memory `O(log n)` for the tree, a few hundred bytes
//! per file entry), recomputes the Merkle tree and its stored hashes, checks every checkpoint it
//! finds (and every trusted one it is given) against the recomputed root at that size and against
//! the trusted keys (`tenant`), then re-hashes every Parquet file and recomputes its rows
//! digest ([`files`]), and lists the directories for files no entry names. Tenants are verified
//! on a pool of threads, each tenant's files on its share of them.
//!
//! A finding names the file, entry or checkpoint it is about. [`Severity::Tampered`] findings mean
//! the store is not what its log and signatures say; [`Severity::Info`] ones (deleted by
//! retention, quarantined at a restart, a key rotation, entries not yet checkpointed) are facts
//! an auditor should see, not damage.

mod entries;
mod files;
mod tenant;

pub use files::rows_digest;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::{Layout, PARQUET_EXTENSION};
use crate::log::checkpoint::{self, SignedCheckpoint};
use crate::log::{LOG_FILE, QUARANTINE_DIR};
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
    /// How long a Parquet file no entry names is given to be named (a running daemon renames a
    /// file into place a moment before it appends its entry) before it is reported; `None`:
    /// one second. (The `audit_log` fuzz target sets none.)
    pub unlisted_grace: Option<std::time::Duration>,
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

/// The error of an i/o failure on `path`.
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
    let mut external = trusted_by_tenant(options, &trusted_keys, &tenants, &mut report);
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
        tenant::verify_tenant(layout, tenant, &trusted_keys, trusted, per_tenant, options)
    });
    for result in results {
        report.tenants.push(result?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The trusted checkpoints that verify, by the tenant their origin names; the others, and those
/// of a tenant not in the store, are reported.
fn trusted_by_tenant(
    options: &VerifyOptions,
    trusted_keys: &[String],
    tenants: &[TenantId],
    report: &mut Report,
) -> HashMap<String, Vec<(String, SignedCheckpoint)>> {
    let mut external: HashMap<String, Vec<(String, SignedCheckpoint)>> = HashMap::new();
    for (source, note) in &options.trusted_checkpoints {
        match checkpoint::verify_checkpoint(note, trusted_keys) {
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
    external
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

/// `bytes` in standard base64 (as roots are in checkpoints).
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
