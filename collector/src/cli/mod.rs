//! The command line: `run` (the default), `query`, `verify`, `keygen`, `export`, `retention`,
//! `config check` and `hash-key`.
//!
//! Parsing is clap's; each command is a function that takes its arguments and an output
//! writer, so tests drive the very code the binary runs.

pub mod audit;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use audit_store::query::{OutputFormat, TimeRange};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// tenantscope: multi-tenant OTLP receiver and tamper-evident Parquet audit log.
#[derive(Debug, Parser)]
#[command(name = "tenantscope", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: run the daemon.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Run SQL over one tenant's audit tables (logs, spans, events).
    Query(QueryArgs),
    /// Check the audit logs: every tenant's tree, checkpoint signatures, file hashes and rows
    /// digests. Exit 0 intact, 1 tampered, 2 could not run.
    Verify(audit::VerifyArgs),
    /// Make a checkpoint signing key pair (for `audit.signing_key_file`).
    Keygen(audit::KeygenArgs),
    /// Write one tenant's auditor bundle: its files in a time range, its log, the checkpoint,
    /// inclusion proofs and a README, checked offline by `verify --bundle`.
    Export(audit::ExportArgs),
    /// Apply the tenants' retention once, offline (refused while a daemon runs on the data
    /// directory); `--dry-run` only prints what it would delete.
    Retention(audit::RetentionArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the sha256:<hex> hash of an API key read from standard input, for the config's
    /// `keys` and `auth.admin_keys` (the key itself is never stored).
    HashKey,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file; every error is reported with its key path.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
}

#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// YAML config file; without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, value_name = "ADDR")]
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    pub otlp_http: Option<SocketAddr>,
    /// Prometheus /metrics listen address [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// API listen address [default: 127.0.0.1:8090].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Data directory [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Format of the daemon's log lines [default: text].
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
}

impl RunArgs {
    /// The config file (or defaults) with the flags applied on top.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let l = &mut config.listen;
        l.otlp_grpc = self.otlp_grpc.unwrap_or(l.otlp_grpc);
        l.otlp_http = self.otlp_http.unwrap_or(l.otlp_http);
        l.metrics = self.metrics.unwrap_or(l.metrics);
        l.api = self.api.unwrap_or(l.api);
        if let Some(dir) = &self.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        Ok(config)
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Data directory of the daemon [default: the config's storage.data_dir, else ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The daemon's config file: its data directory and query limits (memory, SQL
    /// length) apply [default: the built-in defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The tenant whose tables the query sees; no other tenant's data is reachable.
    #[arg(long, value_name = "ID")]
    pub tenant: String,
    /// Only rows from this long ago until now, e.g. 15m, 24h, 7d.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "to"], value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only rows at or after this time (RFC 3339, e.g. 2026-11-27T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<DateTime<Utc>>,
    /// Only rows before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<DateTime<Utc>>,
    /// Output format: table, json (JSON Lines), csv, parquet or arrow (IPC stream).
    #[arg(long, default_value = "table", value_parser = clap::value_parser!(OutputFormat))]
    pub format: OutputFormat,
    /// Write the result to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The SQL: a single SELECT over logs, spans and events.
    pub sql: String,
}

impl QueryArgs {
    pub fn time_range(&self, now: DateTime<Utc>) -> anyhow::Result<TimeRange> {
        let range = match self.since {
            Some(since) => TimeRange {
                from: Some(
                    chrono::Duration::from_std(since)
                        .ok()
                        .and_then(|d| now.checked_sub_signed(d))
                        .context("--since is too long")?,
                ),
                to: None,
            },
            None => TimeRange {
                from: self.from,
                to: self.to,
            },
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from >= to
        {
            bail!("--from must be before --to");
        }
        Ok(range)
    }
}

/// Runs `tenantscope query`, writing the result to `--output` or `stdout`. Returns the row count.
#[cfg(feature = "query")]
pub async fn query(args: &QueryArgs, stdout: &mut (dyn Write + Send)) -> anyhow::Result<usize> {
    let tenant = TenantId::parse(&args.tenant)
        .with_context(|| format!("invalid --tenant {:?}", args.tenant))?;
    let config = match &args.config {
        Some(file) => Config::load(file)?,
        None => Config::default(),
    };
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(_)) => config.storage.data_dir.clone(),
        (None, None) => PathBuf::from("./data"),
    };
    let layout = Layout::new(&data_dir);
    if !layout.audit_dir().is_dir() {
        bail!(
            "{} holds no audit store (no audit/ directory); check --data-dir or --config",
            data_dir.display()
        );
    }
    let range = args.time_range(Utc::now())?;
    let limits = config.query;
    use audit_store::TenantId;
    use audit_store::layout::Layout;
    use audit_store::query::format::write_stream;
    let stream = audit_store::query::run(
        &layout,
        audit_store::query::LogSource::Disk,
        &tenant,
        range,
        &args.sql,
        limits.store_limits(),
    )
    .await?;
    let rows = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            write_stream(stream, args.format, std::io::BufWriter::new(file)).await?
        }
        None => write_stream(stream, args.format, stdout).await?,
    };
    Ok(rows)
}

/// `tenantscope query` in a build without the `query` feature (the fuzz targets' build).
#[cfg(not(feature = "query"))]
pub async fn query(_: &QueryArgs, _: &mut (dyn Write + Send)) -> anyhow::Result<usize> {
    bail!("this build of tenantscope has no query engine (built without the `query` feature)")
}

/// Runs `tenantscope config check`: `Ok` with a summary, or the errors.
pub fn config_check(file: &std::path::Path) -> anyhow::Result<String> {
    let config = Config::load(file)?;
    // What the daemon would read at start: the tenants' HMAC keys.
    crate::tenancy::Directory::build(&config)?;
    let auth = if config.auth_required() {
        "keys required"
    } else {
        "no keys: trusts X-Scope-OrgID"
    };
    Ok(format!(
        "{}: ok (otlp_grpc {}, otlp_http {}, metrics {}, api {}, data_dir {}; {} tenants, {auth})",
        file.display(),
        config.listen.otlp_grpc,
        config.listen.otlp_http,
        config.listen.metrics,
        config.listen.api,
        config.storage.data_dir.display(),
        config.tenants.len(),
    ))
}

/// Runs `tenantscope hash-key`: reads one key (the first line; surrounding whitespace is not part
/// of it) and prints its `sha256:<hex>` form.
pub fn hash_key(input: &mut dyn std::io::BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut line = String::new();
    input.read_line(&mut line).context("cannot read the key")?;
    let key = line.trim();
    if key.is_empty() {
        bail!("no key on standard input (try: printf %s \"$KEY\" | tenantscope hash-key)");
    }
    if key.len() < 16 {
        bail!(
            "the key is {} bytes long; use at least 16 random bytes",
            key.len()
        );
    }
    writeln!(
        out,
        "{}",
        crate::tenancy::directory::hash_key(key.as_bytes())
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// Like the API's (found there by the `query_request` fuzz target): `--since` longer than
    /// chrono's time is an error, not a panic.
    #[test]
    fn a_since_longer_than_time_is_an_error() {
        let cli = Cli::parse_from(
            ["tenantscope", "query", "--tenant", "acme"]
                .into_iter()
                .chain(["--since", "100000000000y", "SELECT 1"]),
        );
        let Some(Command::Query(args)) = cli.command else {
            panic!("a query command")
        };
        let error = args.time_range(Utc::now()).unwrap_err();
        assert!(error.to_string().contains("too long"), "{error}");
        assert!(args.time_range(Utc::now()).is_err());
    }
}
