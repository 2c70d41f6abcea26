//! The audit commands: `keygen` (a checkpoint signing key pair) and `verify` (check a store's
//! audit logs, files and signatures; exit 0 intact, 1 tampered, 2 could not run).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use audit_store::TenantId;
use audit_store::layout::Layout;
use audit_store::log::checkpoint;
use audit_store::verify::{self, Report, Severity, VerifyOptions};
use clap::Args;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (created with mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub private: PathBuf,
    /// Where to write the public (verifier) key, for auditors and `verify --public-key`.
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// The key's name, shown in every signature line (no spaces or '+').
    #[arg(long, default_value = "tenantscope")]
    pub name: String,
}

/// Runs `tenantscope keygen`; returns the verifier key.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<String> {
    let key = checkpoint::write_key_pair(&args.name, &args.private, &args.public)?;
    Ok(key.verifier_key().to_owned())
}

/// Output format of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory of the daemon (or set by --config).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read the data directory from this config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only this tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// A public key to trust (as `keygen` or the daemon write it; repeatable). Default: the
    /// `*.pub` files in DIR/keys/, which prove consistency but not who signed.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// A checkpoint kept earlier (the body of GET /api/v1/checkpoint): the log must extend it
    /// (repeatable).
    #[arg(long = "trusted-checkpoint", value_name = "FILE")]
    pub trusted_checkpoints: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Threads hashing files [default: the cores available].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Hash file bytes only; skip decoding files to recompute their rows digests.
    #[arg(long)]
    pub no_rows_digest: bool,
}

/// Runs `tenantscope verify`: writes the report, returns whether everything is intact. An error
/// means verify could not run.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => crate::config::Config::load(config)?.storage.data_dir,
        (None, None) => PathBuf::from("./data"),
    };
    let tenant = args
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .context("invalid --tenant")?;
    let mut trusted_keys = Vec::new();
    for path in &args.public_keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --public-key {}", path.display()))?;
        trusted_keys.push(
            checkpoint::parse_verifier_key(&text)
                .with_context(|| format!("--public-key {}", path.display()))?,
        );
    }
    let mut trusted_checkpoints = Vec::new();
    for path in &args.trusted_checkpoints {
        let note = std::fs::read(path)
            .with_context(|| format!("cannot read --trusted-checkpoint {}", path.display()))?;
        trusted_checkpoints.push((path.display().to_string(), note));
    }
    let options = VerifyOptions {
        tenant,
        trusted_keys,
        trusted_checkpoints,
        threads: args.threads,
        skip_rows_digest: args.no_rows_digest,
    };
    let report = verify::verify(&Layout::new(&data_dir), &options)?;
    match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        ReportFormat::Text => write_text(&report, out)?,
    }
    Ok(!report.tampered())
}

fn write_text(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let mut files = 0;
    let mut bytes = 0;
    for t in &report.tenants {
        files += t.files_checked;
        bytes += t.bytes_hashed;
        let tampered = t
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Tampered)
            .count();
        let state = if tampered == 0 {
            "intact".to_owned()
        } else {
            format!("TAMPERED ({tampered} findings)")
        };
        writeln!(
            out,
            "tenant {}: {state}: {} entries (root {}), {} files ({}) re-hashed, {} checkpoints checked{}",
            t.tenant,
            t.entries,
            t.root,
            t.files_checked,
            human_bytes(t.bytes_hashed),
            t.checkpoints_checked,
            t.newest_checkpoint
                .map(|n| format!(" (newest of {n} entries)"))
                .unwrap_or_default()
        )?;
        for f in &t.findings {
            let severity = match f.severity {
                Severity::Tampered => "TAMPERED",
                Severity::Info => "info",
            };
            writeln!(out, "  {severity} {} {}: {}", f.kind, f.subject, f.detail)?;
        }
    }
    for f in &report.findings {
        writeln!(out, "TAMPERED {} {}: {}", f.kind, f.subject, f.detail)?;
    }
    let tampered = report.tenants.iter().filter(|t| t.tampered()).count();
    writeln!(
        out,
        "verify: {} tenants, {files} files, {} in {:.2} s ({}/s): {}",
        report.tenants.len(),
        human_bytes(bytes),
        report.seconds,
        human_bytes((bytes as f64 / report.seconds.max(1e-9)) as u64),
        if report.tampered() {
            format!("{tampered} tenants TAMPERED")
        } else {
            "intact".into()
        }
    )
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
