//! Auditor bundles: one tenant's evidence in one tar that can be checked offline, without the
//! store or the daemon.
//!
//! ```text
//! tenantscope-bundle/
//!   README.md                  how to check it and read the files with DuckDB
//!   bundle.note                signed index: origin, tree size, root, SHA-256 and size of every member
//!   checkpoint                 the signed checkpoint the proofs are relative to
//!   public.key                 the verifier key(s) the daemon published (trust your own copy)
//!   log.jsonl                  the tenant's log entries up to the checkpoint's size
//!   proofs/<entry>.json        the inclusion proof of each file's entry
//!   data/signal=<t>/date=<d>/<name>.parquet   the files whose rows meet the range
//! ```
//!
//! `bundle.note` is a C2SP signed note by the checkpoint key: every member is listed with its
//! SHA-256, so a changed, added or removed byte anywhere is detected ([`verify_bundle`]).

mod check;

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use signed_note::Note;

use crate::TenantId;
use crate::layout::Layout;
use crate::log::checkpoint::SigningKey;
use crate::log::{LogError, TenantLog};
pub use check::verify_bundle;

/// The directory every member is under.
pub const ROOT: &str = "tenantscope-bundle";
/// The first line of `bundle.note`.
pub const NOTE_HEADER: &str = "tenantscope-bundle/v1";

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("i/o error writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("tenant {0} has no audit log")]
    NoLog(TenantId),
}

/// What went into a bundle.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub tree_size: u64,
    pub files: usize,
    pub bytes: u64,
}

/// What a bundle holds, taken from the log at one moment (so the log is locked only for this).
#[derive(Debug, Clone)]
pub struct Snapshot {
    tenant: TenantId,
    origin: String,
    size: u64,
    root: [u8; 32],
    checkpoint: String,
    public_keys: Vec<String>,
    log: Vec<u8>,
    /// (entry index, file entry, inclusion proof)
    files: Vec<(u64, crate::log::entry::FileEntry, Vec<tlog_tiles::Hash>)>,
}

/// Takes what the bundle of `log`'s tenant needs: its entries, the files whose rows meet
/// `[from, to)` (nanoseconds; `None`: open) with their inclusion proofs, and a checkpoint of the
/// whole log — the newest stored one if it covers the log, else `checkpoint` (e.g. signed and
/// stored by the daemon's log) or one `key` signs now.
pub fn snapshot(
    log: &mut TenantLog,
    key: &SigningKey,
    public_keys: &[String],
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Snapshot, BundleError> {
    let tenant = log.tenant().clone();
    if log.size() == 0 {
        return Err(BundleError::NoLog(tenant));
    }
    let size = log.size();
    let root = log.root(size)?;
    let origin = log
        .origin()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("tenantscope/{tenant}"));
    let checkpoint = match log.latest_checkpoint() {
        Some((s, note)) if s == size => note.to_owned(),
        _ => key.sign_checkpoint(&origin, size, root),
    };
    let lines = log.lines(size)?;
    let selected: Vec<(u64, crate::log::entry::FileEntry)> = log
        .file_records()
        .iter()
        .filter(|f| f.deleted.is_none())
        .filter(|f| from.is_none_or(|from| f.entry.max_timestamp >= from))
        .filter(|f| to.is_none_or(|to| f.entry.min_timestamp < to))
        .map(|f| (f.seq, f.entry.clone()))
        .collect();
    let mut files = Vec::with_capacity(selected.len());
    for (seq, entry) in selected {
        let proof = log.inclusion_proof(seq, size)?;
        files.push((seq, entry, proof));
    }
    Ok(Snapshot {
        tenant,
        origin,
        size,
        root: root.0,
        checkpoint,
        public_keys: public_keys.to_vec(),
        log: lines,
        files,
    })
}

/// Writes the bundle of `snapshot` to `out`, the index signed with `key`.
pub fn write(
    layout: &Layout,
    snapshot: &Snapshot,
    key: &SigningKey,
    out: impl Write,
) -> Result<ExportSummary, BundleError> {
    let Snapshot {
        tenant,
        origin,
        size,
        root,
        checkpoint,
        public_keys,
        log,
        files,
    } = snapshot;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut members: Vec<(String, Vec<u8>)> = vec![
        ("checkpoint".into(), checkpoint.clone().into_bytes()),
        ("public.key".into(), public_keys.join("\n").into_bytes()),
        ("log.jsonl".into(), log.clone()),
    ];
    for (seq, entry, proof) in files {
        let json = serde_json::json!({
            "file": format!("data/{}", entry.path),
            "leaf_index": seq,
            "tree_size": size,
            "proof": proof.iter().map(|h| b64.encode(h.0)).collect::<Vec<_>>(),
        });
        members.push((
            format!("proofs/{seq}.json"),
            serde_json::to_vec_pretty(&json).expect("json"),
        ));
    }
    members.push((
        "README.md".into(),
        readme(tenant, origin, *size, files.len()).into_bytes(),
    ));
    let mut index = Vec::new();
    let mut tar = tar::Builder::new(out);
    for (name, bytes) in &members {
        index.push((
            hex::encode(Sha256::digest(bytes)),
            bytes.len() as u64,
            name.clone(),
        ));
        append(&mut tar, name, bytes.len() as u64, &bytes[..])?;
    }
    let mut summary = ExportSummary {
        tree_size: *size,
        ..ExportSummary::default()
    };
    for (_, entry, _) in files {
        let path = layout.tenant_dir(tenant).join(&entry.path);
        let name = format!("data/{}", entry.path);
        let (sha256, bytes) = append_file(&mut tar, &name, &path)?;
        index.push((sha256, bytes, name));
        summary.files += 1;
        summary.bytes += bytes;
    }
    // The signed index last: it names every member above.
    let mut text = format!("{NOTE_HEADER}\n{origin}\n{size}\n{}\n", b64.encode(root));
    for (sha, len, name) in &index {
        text.push_str(&format!("{sha} {len} {name}\n"));
    }
    let mut signed = Note::new(text.as_bytes(), &[]).expect("the index is a note");
    signed
        .add_sigs(&[key.signer()])
        .expect("key names are validated");
    let bytes = signed.to_bytes();
    append(&mut tar, "bundle.note", bytes.len() as u64, &bytes[..])?;
    tar.into_inner()?.flush()?;
    Ok(summary)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: impl std::io::Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(len);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, format!("{ROOT}/{name}"), data)
}

/// Appends a file from disk, hashing what is written; returns (SHA-256, size).
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = HashingReader {
        inner: file,
        hasher: Sha256::new(),
    };
    append(tar, name, len, &mut reader)?;
    Ok((hex::encode(reader.hasher.finalize()), len))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn readme(tenant: &TenantId, origin: &str, size: u64, files: usize) -> String {
    format!(
        r#"# Audit bundle of tenant `{tenant}`

This archive holds {files} Parquet files of tenant `{tenant}`, its audit log (`log.jsonl`, the
{size} entries of the log `{origin}`), the signed checkpoint of that log (`checkpoint`, a C2SP
signed note), the inclusion proof of each file's entry (`proofs/`), the public key the daemon
published (`public.key`) and `bundle.note`, a signed list of every member with its SHA-256.

## Check it

    tenantscope verify --bundle bundle.tar --public-key YOUR-COPY-OF-THE-KEY.pub

exits 0 when every member is as signed, 1 naming what differs (a changed, added or removed
member, a file whose bytes or rows differ from its log entry, a proof that does not lead to the
signed root, a bad signature). Use your own copy of the public key, obtained from the operator
out of band: `public.key` inside the bundle proves only that the bundle is consistent.

By hand, without tenantscope: each `proofs/<n>.json` is an RFC 6962 inclusion proof of line `n`
of `log.jsonl` (leaf hash SHA-256(0x00 || line)) in the tree of `tree_size` entries whose root is
the third line of `checkpoint`; check it as RFC 9162 §2.1.3.2 says, check that the line's
`sha256` is the SHA-256 of the file, and check the checkpoint's Ed25519 signature (C2SP
signed-note) with the public key. To be sure the log was not rewritten, compare `checkpoint`
with checkpoints you fetched earlier (`GET /api/v1/checkpoint`) using
`GET /api/v1/proof/consistency`.

## Read the files

    duckdb -c "SELECT signal, count(*) FROM read_parquet('data/**/*.parquet', hive_partitioning=true, union_by_name=true) GROUP BY ALL"

Columns are described in the tenantscope README ("Tables"); timestamps are UTC nanoseconds.
"#
    )
}
