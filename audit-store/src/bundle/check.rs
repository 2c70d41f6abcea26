//! `verify --bundle`: check an auditor bundle offline, with no data directory.
//!
//! Every tar member is hashed as it is read (and unpacked into a private temporary directory):
//! it must be listed in the signed `bundle.note` with that SHA-256 and size, and every listed
//! member must be present. Then the checkpoint's signature, the log's root against it, each
//! inclusion proof against that root, and each Parquet file against its entry (SHA-256, rows
//! digest).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Component, Path};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{NOTE_HEADER, ROOT};
use crate::log::checkpoint::{self, CheckpointError, SignedCheckpoint};
use crate::log::entry::{Entry, EntryKind, FileEntry};
use crate::log::hashes::Frontier;
use crate::verify::{Report, TenantReport, VerifyError};

/// Checks the bundle at `path`; `trusted_keys` empty means trusting the key inside it (reported).
pub fn verify_bundle(path: &Path, trusted_keys: &[String]) -> Result<Report, VerifyError> {
    let started = std::time::Instant::now();
    let mut report = TenantReport::default();
    let bundle = Unpacked::unpack(path, &mut report)?;

    // The signed index.
    let keys = bundle.keys(trusted_keys, &mut report);
    let Some((signed_root, signed_size)) = bundle.check_index(&keys, &mut report) else {
        return Ok(finish(report, started));
    };

    // The checkpoint, the log and the proofs.
    let Some(checkpoint) = bundle.check_checkpoint(&keys, signed_root, signed_size, &mut report)
    else {
        return Ok(finish(report, started));
    };
    let log = bundle.read("log.jsonl").unwrap_or_default();
    let lines: Vec<&[u8]> = log
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    check_log(&lines, &checkpoint, &mut report);
    let proven = bundle.check_proofs(&lines, &checkpoint, &mut report);
    bundle.report_unproven(&proven, &mut report);
    Ok(finish(report, started))
}

/// The error of an i/o failure while reading the bundle at `path` (or unpacking it).
fn io_at(path: &Path) -> impl Fn(std::io::Error) -> VerifyError + Copy + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The bundle's members, unpacked into a private temporary directory.
struct Unpacked {
    scratch: tempfile::TempDir,
    /// name → (SHA-256, size)
    members: BTreeMap<String, (String, u64)>,
}

impl Unpacked {
    /// Unpacks every regular member, hashing it as it is read; reports unsafe and duplicate ones.
    fn unpack(path: &Path, report: &mut TenantReport) -> Result<Self, VerifyError> {
        let io = io_at(path);
        let file = std::fs::File::open(path).map_err(io)?;
        let scratch = tempfile::tempdir().map_err(io)?;
        let mut members = BTreeMap::new();
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let raw = entry.path().map_err(io)?.to_string_lossy().into_owned();
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let Some(name) = safe_name(&raw) else {
                report.tamper(
                    "member_unsafe",
                    raw,
                    "not a plain path under tenantscope-bundle/",
                );
                continue;
            };
            if entry.header().entry_type() != tar::EntryType::Regular {
                report.tamper("member_unsafe", name, "not a regular file");
                continue;
            }
            let target = scratch.path().join(&name);
            let hashed = copy_hashing(&mut entry, &target).map_err(io)?;
            if members.insert(name.clone(), hashed).is_some() {
                report.tamper(
                    "member_duplicate",
                    name,
                    "the archive holds this member twice",
                );
            }
        }
        Ok(Self { scratch, members })
    }

    /// The unpacked member `name`, if it is there.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.scratch.path().join(name)).ok()
    }

    /// The keys to trust: `trusted_keys`, or (reported) the bundle's own `public.key`.
    fn keys(&self, trusted_keys: &[String], report: &mut TenantReport) -> Vec<String> {
        let public_keys: Vec<String> = self
            .read("public.key")
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if trusted_keys.is_empty() {
            report.info(
                "trusted_bundled_key",
                "public.key",
                "no --public-key given: the key inside the bundle was trusted, which proves the bundle consistent, not who signed it",
            );
            public_keys.clone()
        } else {
            trusted_keys.to_vec()
        }
    }

    /// Checks `bundle.note` and that it lists exactly the members; returns the root and size it
    /// signs, or `None` when it cannot be read.
    fn check_index(&self, keys: &[String], report: &mut TenantReport) -> Option<([u8; 32], u64)> {
        let Some(note) = self.read("bundle.note") else {
            report.tamper(
                "member_missing",
                "bundle.note",
                "the signed index is missing",
            );
            return None;
        };
        let (index, signed_root, signed_size) = match parse_index(&note, keys) {
            Ok(parsed) => parsed,
            Err((kind, detail, parsed)) => {
                report.tamper(kind, "bundle.note", detail);
                parsed?
            }
        };
        for (name, (sha, len)) in &index {
            match self.members.get(name) {
                None => report.tamper(
                    "member_missing",
                    name.clone(),
                    "listed in bundle.note, not in the archive",
                ),
                Some((got, got_len)) if got != sha || got_len != len => report.tamper(
                    "member_altered",
                    name.clone(),
                    format!(
                        "SHA-256 {got} ({got_len} bytes), bundle.note says {sha} ({len} bytes)"
                    ),
                ),
                _ => {}
            }
        }
        for name in self.members.keys() {
            if name != "bundle.note" && !index.contains_key(name) {
                report.tamper(
                    "member_unlisted",
                    name.clone(),
                    "in the archive, not in bundle.note",
                );
            }
        }
        Some((signed_root, signed_size))
    }

    /// Checks the checkpoint's signature and that it is the tree `bundle.note` signs; returns it
    /// (even with a bad signature) when it can be parsed.
    fn check_checkpoint(
        &self,
        keys: &[String],
        signed_root: [u8; 32],
        signed_size: u64,
        report: &mut TenantReport,
    ) -> Option<SignedCheckpoint> {
        let note = self.read("checkpoint")?;
        let checkpoint = match checkpoint::verify_checkpoint(&note, keys) {
            Ok(c) => Some(c),
            Err(e) => {
                let kind = match e {
                    CheckpointError::BadSignature(_) => "bad_signature",
                    CheckpointError::Untrusted(_) => "untrusted_signature",
                    _ => "checkpoint_malformed",
                };
                report.tamper(kind, "checkpoint", e.to_string());
                checkpoint::parse_checkpoint(&note).ok()
            }
        };
        let checkpoint = checkpoint?;
        report.tenant = checkpoint
            .origin
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        report.origin = Some(checkpoint.origin.clone());
        report.newest_checkpoint = Some(checkpoint.size);
        report.checkpoints_checked = 1;
        if (checkpoint.root, checkpoint.size) != (signed_root, signed_size) {
            report.tamper(
                "checkpoint_mismatch",
                "checkpoint",
                "not the tree bundle.note names",
            );
        }
        Some(checkpoint)
    }

    /// Checks every inclusion proof and the file it proves; returns the files proven.
    fn check_proofs(
        &self,
        lines: &[&[u8]],
        checkpoint: &SignedCheckpoint,
        report: &mut TenantReport,
    ) -> HashSet<String> {
        let mut proven = HashSet::new();
        for name in self.members.keys().filter(|n| n.starts_with("proofs/")) {
            let Some((index, file, entry)) = self.check_proof(name, lines, checkpoint, report)
            else {
                continue;
            };
            proven.insert(file.clone());
            self.check_file(index, file, &entry, report);
        }
        proven
    }

    /// Checks the proof `name` leads from a file entry of the log to the checkpoint's root;
    /// returns the entry's index, the member it proves and the entry.
    fn check_proof(
        &self,
        name: &str,
        lines: &[&[u8]],
        checkpoint: &SignedCheckpoint,
        report: &mut TenantReport,
    ) -> Option<(u64, String, FileEntry)> {
        let Some(p) = self
            .read(name)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            report.tamper("proof_invalid", name, "not a proof");
            return None;
        };
        let index = p["leaf_index"].as_u64().unwrap_or(u64::MAX);
        let file = p["file"].as_str().unwrap_or_default().to_owned();
        let hashes = proof_hashes(&p);
        let Some(leaf) = lines.get(index as usize) else {
            report.tamper(
                "proof_invalid",
                name,
                format!("entry {index} is not in log.jsonl"),
            );
            return None;
        };
        let ok = hashes.is_some_and(|h| {
            tlog_tiles::check_record(
                &h,
                checkpoint.size,
                tlog_tiles::Hash(checkpoint.root),
                index,
                tlog_tiles::record_hash(leaf),
            )
            .is_ok()
        });
        if !ok {
            report.tamper(
                "proof_invalid",
                name,
                "does not lead to the checkpoint's root",
            );
            return None;
        }
        let Ok(Entry {
            kind: EntryKind::File(entry),
            ..
        }) = serde_json::from_slice::<Entry>(leaf)
        else {
            report.tamper(
                "proof_invalid",
                name,
                format!("entry {index} is not a file entry"),
            );
            return None;
        };
        if file != format!("data/{}", entry.path) {
            report.tamper(
                "proof_invalid",
                name,
                format!("proves {}, not {file}", entry.path),
            );
            return None;
        }
        Some((index, file, entry))
    }

    /// Checks the member `file` against its proven entry `index` (SHA-256, rows digest).
    fn check_file(&self, index: u64, file: String, entry: &FileEntry, report: &mut TenantReport) {
        let Some((sha, len)) = self.members.get(&file) else {
            report.tamper("file_missing", file, format!("entry {index} commits it"));
            return;
        };
        report.files_checked += 1;
        report.bytes_hashed += len;
        if *sha != entry.sha256 {
            report.tamper(
                "file_altered",
                file.clone(),
                format!("SHA-256 {sha}, entry {index} says {}", entry.sha256),
            );
        }
        match crate::verify::rows_digest(
            &self.scratch.path().join(&file),
            &entry.table,
            Some(entry.rows),
        ) {
            Ok((digest, rows)) if digest == entry.rows_digest && rows == entry.rows => {}
            Ok((digest, rows)) => report.tamper(
                "rows_altered",
                file,
                format!(
                    "{rows} rows with {digest}, entry {index} says {} rows with {}",
                    entry.rows, entry.rows_digest
                ),
            ),
            Err(e) if *sha == entry.sha256 => report.tamper("file_unreadable", file, e),
            Err(_) => {}
        }
    }

    /// Reports the data files no inclusion proof covers.
    fn report_unproven(&self, proven: &HashSet<String>, report: &mut TenantReport) {
        for name in self.members.keys().filter(|n| n.starts_with("data/")) {
            if !proven.contains(name) {
                report.tamper(
                    "file_unproven",
                    name.clone(),
                    "a data file no inclusion proof covers",
                );
            }
        }
    }
}

/// Copies a tar member to `target` (creating its directory), returning its SHA-256 and size.
fn copy_hashing(member: &mut impl Read, target: &Path) -> std::io::Result<(String, u64)> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::fs::File::create(target)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = member.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n])?;
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), len))
}

/// Checks `log.jsonl` hashes to the checkpoint's root at its size.
fn check_log(lines: &[&[u8]], checkpoint: &SignedCheckpoint, report: &mut TenantReport) {
    let mut frontier = Frontier::default();
    for line in lines {
        frontier.append(line);
    }
    report.entries = frontier.leaves();
    report.root = base64::engine::general_purpose::STANDARD.encode(frontier.root().0);
    if frontier.leaves() != checkpoint.size || frontier.root().0 != checkpoint.root {
        report.tamper(
            "checkpoint_mismatch",
            "log.jsonl",
            format!(
                "{} entries that do not hash to the checkpoint's root of {} entries",
                frontier.leaves(),
                checkpoint.size
            ),
        );
    }
}

/// The audit path of a proof, if it has one (hashes that are not base64 of 32 bytes are
/// dropped, so the proof fails).
fn proof_hashes(proof: &serde_json::Value) -> Option<Vec<tlog_tiles::Hash>> {
    proof["proof"].as_array().map(|a| {
        a.iter()
            .filter_map(|h| {
                base64::engine::general_purpose::STANDARD
                    .decode(h.as_str()?)
                    .ok()
            })
            .filter_map(|b| <[u8; 32]>::try_from(b).ok().map(tlog_tiles::Hash))
            .collect()
    })
}

type Index = BTreeMap<String, (String, u64)>;
type Parsed = (Index, [u8; 32], u64);

/// Parses `bundle.note`; on a bad or untrusted signature, the error still carries the index.
fn parse_index(
    note: &[u8],
    keys: &[String],
) -> Result<Parsed, (&'static str, String, Option<Parsed>)> {
    let parsed = signed_note::Note::from_bytes(note)
        .map_err(|e| ("bundle_malformed", e.to_string(), None))?;
    let text = String::from_utf8_lossy(parsed.text()).into_owned();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let _origin = lines.next();
    let size = lines.next().and_then(|s| s.parse::<u64>().ok());
    let root = lines
        .next()
        .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    let (Some(size), Some(root)) = (size, root) else {
        return Err(("bundle_malformed", "not a bundle index".into(), None));
    };
    if header != NOTE_HEADER {
        return Err((
            "bundle_malformed",
            format!("unknown header {header:?}"),
            None,
        ));
    }
    let mut index = Index::new();
    for line in lines {
        let mut fields = line.splitn(3, ' ');
        let (Some(sha), Some(len), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(("bundle_malformed", format!("bad line {line:?}"), None));
        };
        index.insert(
            name.to_owned(),
            (sha.to_owned(), len.parse().unwrap_or(u64::MAX)),
        );
    }
    let verifiers: Vec<Box<dyn signed_note::Verifier>> = keys
        .iter()
        .filter_map(|k| signed_note::StandardVerifier::new(k).ok())
        .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
        .collect();
    match parsed.verify(&signed_note::VerifierList::new(verifiers)) {
        Ok(_) => Ok((index, root, size)),
        Err(signed_note::NoteError::InvalidSignature { .. }) => Err((
            "bad_signature",
            "the signature does not verify: the index was altered".into(),
            Some((index, root, size)),
        )),
        Err(_) => Err((
            "untrusted_signature",
            "not signed by a trusted key".into(),
            Some((index, root, size)),
        )),
    }
}

/// The member name under `tenantscope-bundle/`, if the path is a plain relative one there.
fn safe_name(raw: &str) -> Option<String> {
    let rest = Path::new(raw).strip_prefix(ROOT).ok()?;
    if rest.as_os_str().is_empty() {
        return None;
    }
    rest.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| rest.to_string_lossy().into_owned())
}

/// The report of the bundle, as one tenant's.
fn finish(mut tenant: TenantReport, started: std::time::Instant) -> Report {
    if tenant.tenant.is_empty() {
        tenant.tenant = "?".into();
    }
    Report {
        tenants: vec![tenant],
        seconds: started.elapsed().as_secs_f64(),
        ..Report::default()
    }
}
