//! The audit commands: `keygen` (a checkpoint signing key pair), `verify` (check a store's audit
//! logs, files and signatures; exit 0 intact, 1 tampered, 2 could not run) and `retention` (the
//! retention job once, offline).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use audit_store::TenantId;
use audit_store::layout::Layout;
use audit_store::log::retention::RetentionOutcome;
use audit_store::log::{LogError, checkpoint};
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
    /// Check an auditor bundle (`tenantscope export`) instead of a data directory.
    #[arg(long, value_name = "FILE.tar", conflicts_with_all = ["data_dir", "config", "tenant", "trusted_checkpoints"])]
    pub bundle: Option<PathBuf>,
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
    let report = match &args.bundle {
        Some(bundle) => audit_store::bundle::verify_bundle(bundle, &trusted_keys)?,
        None => verify::verify(
            &Layout::new(&data_dir),
            &VerifyOptions {
                tenant,
                trusted_keys,
                trusted_checkpoints,
                threads: args.threads,
                skip_rows_digest: args.no_rows_digest,
                unlisted_grace: None,
            },
        )?,
    };
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

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// The config whose tenants' `retention` and `legal_hold` apply.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Data directory [default: the config's storage.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Only print what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `tenantscope retention`: the retention job once, offline (refused while a daemon holds
/// the data directory). Prints each file deleted (or that would be); returns how many.
pub fn retention(args: &RetentionArgs, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut config = crate::config::Config::load(&args.config)?;
    if let Some(dir) = &args.data_dir {
        config.storage.data_dir = dir.clone();
    }
    let layout = Layout::new(&config.storage.data_dir);
    if !layout.audit_dir().is_dir() {
        anyhow::bail!(
            "{} holds no audit store (no audit/ directory)",
            layout.data_dir().display()
        );
    }
    // A running daemon applies the policies itself (audit.retention_interval).
    let _lock = crate::app::lock_data_dir(&layout)?;
    let policies: Vec<crate::audit::retention::Policy> = config
        .tenants
        .iter()
        .map(|(tenant, p)| crate::audit::retention::Policy {
            tenant: tenant.clone(),
            retention: p.retention,
            legal_hold: p.legal_hold,
        })
        .collect();
    // A dry run reads the logs without writing; a real one appends as the daemon, and signs.
    let now = crate::audit::retention::now_ns();
    let logs = if args.dry_run {
        None
    } else {
        let identity = crate::audit::identity(&config, &layout)?;
        Some(audit_store::log::AuditLogs::new(layout.clone(), identity))
    };
    let outcomes = match &logs {
        None => crate::audit::retention::dry_run(&layout, &policies, now),
        Some(logs) => {
            // Settle what a crash left first, as the daemon does at start.
            logs.recover()?;
            crate::audit::retention::run(logs, &policies, now)
        }
    };
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let (total, mut failed) = report_retention(&outcomes, verb, out)?;
    if let Some(logs) = &logs {
        let (_, errors) = logs.checkpoint_all();
        failed += errors.len();
    }
    writeln!(out, "retention: {verb} {total} files")?;
    if failed > 0 {
        anyhow::bail!("{failed} tenants failed");
    }
    Ok(total)
}

/// Writes what retention did (or would do) to each tenant; the files deleted and the tenants
/// that failed.
fn report_retention(
    outcomes: &[(TenantId, Result<RetentionOutcome, LogError>)],
    verb: &str,
    out: &mut dyn Write,
) -> std::io::Result<(usize, usize)> {
    let (mut total, mut failed) = (0, 0);
    for (tenant, outcome) in outcomes {
        match outcome {
            Ok(o) => {
                if let Some(held) = &o.held {
                    writeln!(out, "tenant {tenant}: held, nothing deleted ({held})")?;
                }
                for e in &o.expired {
                    let newest = chrono::DateTime::from_timestamp_nanos(e.max_timestamp);
                    writeln!(
                        out,
                        "tenant {tenant}: {verb} {} ({} rows, newest row {}) under {}",
                        e.path,
                        e.rows,
                        newest.to_rfc3339(),
                        o.policy
                    )?;
                }
                total += o.expired.len();
            }
            Err(error) => {
                failed += 1;
                writeln!(out, "tenant {tenant}: retention failed: {error}")?;
            }
        }
    }
    Ok((total, failed))
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Data directory of the daemon (or set by --config).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read the data directory and `audit.signing_key_file` from this config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The tenant whose files and log go into the bundle.
    #[arg(long, value_name = "ID")]
    pub tenant: String,
    /// Only files with rows at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only files with rows before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// The tar to write.
    #[arg(long, value_name = "FILE.tar")]
    pub output: PathBuf,
}

/// Runs `tenantscope export`: writes the tenant's auditor bundle, signed with the checkpoint key
/// (`audit.signing_key_file` of `--config`, else `DIR/keys/signing.key`).
pub fn export(args: &ExportArgs) -> anyhow::Result<audit_store::bundle::ExportSummary> {
    let config = match &args.config {
        Some(path) => crate::config::Config::load(path)?,
        None => crate::config::Config::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.storage.data_dir.clone());
    let layout = Layout::new(&data_dir);
    let tenant = TenantId::parse(&args.tenant).context("invalid --tenant")?;
    let key_path = config
        .audit
        .signing_key_file
        .clone()
        .unwrap_or_else(|| crate::audit::keys_dir(&layout).join(crate::audit::GENERATED_KEY));
    let key = checkpoint::SigningKey::read(&key_path)
        .context("a bundle is signed with the checkpoint key; name it with --config (audit.signing_key_file)")?;
    let nanos = |t: Option<chrono::DateTime<chrono::Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
    let mut log = audit_store::log::TenantLog::read(&layout, &tenant)?;
    let public_keys = verify::default_keys(&layout)?;
    let snapshot = audit_store::bundle::snapshot(
        &mut log,
        &key,
        &public_keys,
        nanos(args.from),
        nanos(args.to),
    )?;
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let summary = audit_store::bundle::write(&layout, &snapshot, &key, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(summary)
}
