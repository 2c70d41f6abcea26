//! Signed checkpoints: C2SP `tlog-checkpoint` bodies (origin, tree size, base64 root hash) signed
//! as C2SP `signed-note`s with Ed25519, in the key formats of Go's `golang.org/x/mod/sumdb/note`
//! (`PRIVATE+KEY+<name>+<id>+<base64>` and the verifier key `<name>+<id>+<base64>`), so witnesses
//! and any note tooling can read them.

use std::path::Path;

use base64::Engine as _;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// Why a key or a checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a signing key (expected PRIVATE+KEY+<name>+<id>+<base64>, as `tenantscope keygen` writes)"
    )]
    NotASigningKey { path: String },
    #[error(
        "{what} is not a verifier key (expected <name>+<id>+<base64>, as `tenantscope keygen` writes)"
    )]
    NotAVerifierKey { what: String },
    #[error("key name {0:?} is invalid (it must be non-empty, without spaces or '+')")]
    Name(String),
    #[error("cannot get random bytes for a key: {0}")]
    Random(std::io::Error),
}

/// A checkpoint signing key and its verifier key.
pub struct SigningKey {
    signer: StandardSigner,
    verifier_key: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("verifier_key", &self.verifier_key)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key named `name`; returns it with its private key text.
    pub fn generate(name: &str) -> Result<(Self, String), KeyError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(KeyError::Name(name.into()));
        }
        let mut seed = [0u8; 32];
        let mut filled = 0;
        while filled < seed.len() {
            filled +=
                rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty())
                    .map_err(|e| KeyError::Random(e.into()))?;
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let verifier_key = signed_note::new_ed25519_verifier_key(name, &key.verifying_key());
        let (_, id, _) = split_verifier_key(&verifier_key).expect("well formed");
        let mut private = vec![ALG_ED25519];
        private.extend_from_slice(&seed);
        let text = format!(
            "PRIVATE+KEY+{name}+{id}+{}",
            base64::engine::general_purpose::STANDARD.encode(private)
        );
        let key = Self::from_text(&text).expect("a key just made parses");
        Ok((key, text))
    }

    /// Parses the private key text (`PRIVATE+KEY+...`).
    pub fn from_text(text: &str) -> Option<Self> {
        let text = text.trim();
        let signer = StandardSigner::new(text).ok()?;
        let (_, rest) = text.split_once("PRIVATE+KEY+")?;
        let (name, rest) = rest.split_once('+')?;
        let (_, encoded) = rest.split_once('+')?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let seed: [u8; 32] = bytes.get(1..)?.try_into().ok()?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        Some(Self {
            signer,
            verifier_key: signed_note::new_ed25519_verifier_key(name, &public),
        })
    }

    /// Reads a private key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text).ok_or_else(|| KeyError::NotASigningKey {
            path: path.display().to_string(),
        })
    }

    /// The note signer, to sign other notes with this key.
    pub fn signer(&self) -> &dyn signed_note::Signer {
        &self.signer
    }

    /// The verifier key (`<name>+<id>+<base64>`), the public half.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The key's name (the first field of its signature lines).
    pub fn name(&self) -> &str {
        split_verifier_key(&self.verifier_key)
            .map(|(name, _, _)| name)
            .unwrap_or_default()
    }

    /// Signs the checkpoint of a tree of `size` entries with root `root`; returns the note.
    pub fn sign_checkpoint(&self, origin: &str, size: u64, root: Hash) -> String {
        let checkpoint = Checkpoint::new(origin, size, root, "").expect("origins are validated");
        let mut note = Note::new(&checkpoint.to_bytes(), &[]).expect("a checkpoint is a note");
        note.add_sigs(&[&self.signer])
            .expect("key names are validated");
        String::from_utf8(note.to_bytes()).expect("notes are UTF-8")
    }
}

const ALG_ED25519: u8 = 1;

/// Writes a new key pair: the private key file (created, never overwritten) with mode 0600,
/// then the verifier key.
pub fn write_key_pair(name: &str, private: &Path, public: &Path) -> Result<SigningKey, KeyError> {
    let (key, text) = SigningKey::generate(name)?;
    write_private_key(private, &text)?;
    write_public_key(public, key.verifier_key())?;
    Ok(key)
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.display().to_string();
    move |source| KeyError::Write { path, source }
}

/// Creates `path` (mode 0600; an existing file is an error) holding a private key.
pub fn write_private_key(path: &Path, text: &str) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err(path))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err(path))
}

/// Writes a verifier key file.
pub fn write_public_key(path: &Path, verifier_key: &str) -> Result<(), KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    }
    std::fs::write(path, format!("{verifier_key}\n")).map_err(write_err(path))
}

/// Splits a verifier key into (name, hex id, base64 key).
pub fn split_verifier_key(vkey: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = vkey.split_once('+')?;
    let (id, key) = rest.split_once('+')?;
    Some((name, id, key))
}

/// A verifier key checked for form.
pub fn parse_verifier_key(text: &str) -> Result<String, KeyError> {
    let text = text.trim();
    StandardVerifier::new(text).map_err(|_| KeyError::NotAVerifierKey {
        what: format!("{text:?}"),
    })?;
    Ok(text.to_owned())
}

/// A parsed signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// The names and ids (hex) of its signatures.
    pub signers: Vec<(String, String)>,
}

/// What is wrong with a checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("the body is not a checkpoint (origin, size, root)")]
    NotACheckpoint,
    #[error("no signature by a trusted key (signed by {0})")]
    Untrusted(String),
    #[error("the signature by {0} does not verify: the checkpoint was altered or forged")]
    BadSignature(String),
}

/// Parses `note` and checks that a key in `trusted` (verifier keys) signed it.
pub fn verify_checkpoint(
    note: &[u8],
    trusted: &[String],
) -> Result<SignedCheckpoint, CheckpointError> {
    let parsed = Note::from_bytes(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let checkpoint =
        Checkpoint::from_bytes(parsed.text()).map_err(|_| CheckpointError::NotACheckpoint)?;
    let mut signers = Vec::new();
    for line in note
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with("\u{2014} ".as_bytes()))
    {
        let text = String::from_utf8_lossy(line);
        let mut fields = text.trim_start_matches("\u{2014} ").split(' ');
        let name = fields.next().unwrap_or_default().to_owned();
        let id = fields
            .next()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .filter(|b| b.len() >= 4)
            .map(|b| hex::encode(&b[..4]))
            .unwrap_or_default();
        signers.push((name, id));
    }
    let verifiers: Vec<Box<dyn signed_note::Verifier>> = trusted
        .iter()
        .filter_map(|k| StandardVerifier::new(k).ok())
        .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
        .collect();
    let names = || {
        signers
            .iter()
            .map(|(n, id)| format!("{n}+{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match parsed.verify(&VerifierList::new(verifiers)) {
        Ok(_) => {}
        Err(signed_note::NoteError::InvalidSignature { name, id }) => {
            return Err(CheckpointError::BadSignature(format!("{name}+{id:08x}")));
        }
        Err(_) => return Err(CheckpointError::Untrusted(names())),
    }
    Ok(SignedCheckpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: checkpoint.hash().0,
        signers,
    })
}

/// Parses a checkpoint note without checking its signatures.
pub fn parse_checkpoint(note: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
    let parsed = Note::from_bytes(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let checkpoint =
        Checkpoint::from_bytes(parsed.text()).map_err(|_| CheckpointError::NotACheckpoint)?;
    Ok(SignedCheckpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: checkpoint.hash().0,
        signers: Vec::new(),
    })
}

/// The id (8 hex digits) of a verifier key.
pub fn key_id(verifier_key: &str) -> &str {
    split_verifier_key(verifier_key)
        .map(|(_, id, _)| id)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_with_its_key_only() {
        let (key, text) = SigningKey::generate("host/tenantscope").unwrap();
        assert!(text.starts_with("PRIVATE+KEY+host/tenantscope+"));
        assert_eq!(
            SigningKey::from_text(&text).unwrap().verifier_key(),
            key.verifier_key()
        );
        let note = key.sign_checkpoint("host/tenantscope/acme", 7, Hash([9; 32]));
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "host/tenantscope/acme");
        assert_eq!(lines[1], "7");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} host/tenantscope "));
        let ok = verify_checkpoint(note.as_bytes(), &[key.verifier_key().to_owned()]).unwrap();
        assert_eq!((ok.size, ok.root), (7, [9; 32]));
        assert_eq!(ok.signers[0].1, key_id(key.verifier_key()));
        let (other, _) = SigningKey::generate("host/tenantscope").unwrap();
        assert!(matches!(
            verify_checkpoint(note.as_bytes(), &[other.verifier_key().to_owned()]),
            Err(CheckpointError::Untrusted(_))
        ));
        let edited = note.replacen("\n7\n", "\n8\n", 1);
        assert!(matches!(
            verify_checkpoint(edited.as_bytes(), &[key.verifier_key().to_owned()]),
            Err(CheckpointError::BadSignature(_))
        ));
    }
}
