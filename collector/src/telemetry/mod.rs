//! The daemon's own observability: its log lines ([`init_tracing`]) and its metrics
//! ([`catalog::Catalog`], rendered on `/metrics`).
//!
//! Tracing is process-global and initialised once by `main`; the metric catalog is per daemon
//! instance (tests run several daemons in one process), built by the composition root and
//! handed to the contexts that count things.

pub mod catalog;
pub mod derived;
pub mod otlp;
pub mod series;

pub use catalog::Catalog;

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init_tracing(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => tracing_subscriber::EnvFilter::builder().parse(env)?,
        _ => tracing_subscriber::EnvFilter::builder().parse(level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber failed: {e}"))
}
