//! The audit context: the daemon's side of the tenants' audit logs (`audit_store::log`) — the
//! checkpoint signing key, the identity new logs are created with, recovery at start and the
//! checkpoint job (every `audit.checkpoint_interval`, and once more at shutdown).
//!
//! It signs and records; the only files it deletes are those past a tenant's retention, after
//! recording each deletion ([`retention`]).

pub mod retention;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use audit_store::layout::Layout;
use audit_store::log::checkpoint::{self, SigningKey};
use audit_store::log::{AuditLogs, Identity};
use tokio::sync::watch;

use crate::config::Config;
use crate::telemetry::Catalog;

/// Where the daemon keeps keys: `DATA/keys/`.
pub fn keys_dir(layout: &Layout) -> PathBuf {
    layout.data_dir().join("keys")
}

/// The key made at first start when `audit.signing_key_file` is not set.
pub const GENERATED_KEY: &str = "signing.key";

/// The identity of this daemon's logs: its instance id and the checkpoint signing key, read from
/// `audit.signing_key_file` or `DATA/keys/signing.key` (made at first start, mode 0600). The
/// public key of the key in force is written to `DATA/keys/<key id>.pub`, which `verify` trusts
/// by default.
pub fn identity(config: &Config, layout: &Layout) -> anyhow::Result<Identity> {
    let instance = instance_id(config);
    let keys = keys_dir(layout);
    let key = match &config.audit.signing_key_file {
        Some(path) => {
            warn_if_readable_by_others(path);
            SigningKey::read(path).context("audit.signing_key_file")?
        }
        None => {
            let path = keys.join(GENERATED_KEY);
            if path.exists() {
                warn_if_readable_by_others(&path);
                SigningKey::read(&path)?
            } else {
                let (key, text) = SigningKey::generate(&format!("{instance}/tenantscope"))?;
                checkpoint::write_private_key(&path, &text)?;
                tracing::info!(private_key = %path.display(), "made a checkpoint signing key");
                key
            }
        }
    };
    let public = keys.join(format!("{}.pub", checkpoint::key_id(key.verifier_key())));
    if !public.exists() {
        checkpoint::write_public_key(&public, key.verifier_key())?;
    }
    tracing::info!(public_key = %public.display(), verifier_key = key.verifier_key(), "checkpoints are signed with this key; give the public key to auditors");
    Ok(Identity {
        instance,
        key: Arc::new(key),
    })
}

/// `storage.instance_id`, or the host name made safe for an origin line.
pub fn instance_id(config: &Config) -> String {
    if let Some(id) = &config.storage.instance_id {
        return id.clone();
    }
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if safe.is_empty() {
        "localhost".into()
    } else {
        safe
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the checkpoint signing key is readable by other users; chmod 600 it");
    }
}

/// Checkpoints every log that grew, on a blocking thread; counts the outcome.
pub async fn checkpoint_now(logs: &Arc<AuditLogs>, catalog: &Catalog) {
    let logs = logs.clone();
    let Ok((written, failed)) = tokio::task::spawn_blocking(move || logs.checkpoint_all()).await
    else {
        return;
    };
    let counters = catalog.audit();
    counters.checkpoints.increment(written as u64);
    counters.checkpoint_failures.increment(failed.len() as u64);
}

/// The retention policies of the tenants listed in the directory in force.
pub fn policies(auth: &crate::tenancy::Authenticator) -> Vec<retention::Policy> {
    let directory = auth.tenants().snapshot();
    directory
        .listed_tenants()
        .map(|(tenant, state)| retention::Policy {
            tenant: tenant.clone(),
            retention: state.policy.retention,
            legal_hold: state.policy.legal_hold,
        })
        .collect()
}

/// Applies retention now (on a blocking thread), logging and counting what it deleted.
pub async fn retention_now(
    logs: &Arc<AuditLogs>,
    auth: &Arc<crate::tenancy::Authenticator>,
    catalog: &Catalog,
) {
    let (logs, policies) = (logs.clone(), policies(auth));
    let Ok(outcomes) =
        tokio::task::spawn_blocking(move || retention::run(&logs, &policies, retention::now_ns()))
            .await
    else {
        return;
    };
    for (tenant, outcome) in outcomes {
        match outcome {
            Ok(o) if !o.expired.is_empty() => {
                let rows: u64 = o.expired.iter().map(|e| e.rows).sum();
                catalog
                    .audit()
                    .retention_deleted
                    .increment(o.expired.len() as u64);
                tracing::info!(tenant = %tenant, files = o.expired.len(), rows, policy = %o.policy, "retention deleted files past their tenant's retention");
            }
            Ok(o) => {
                if let Some(held) = o.held {
                    tracing::debug!(tenant = %tenant, held = %held, "retention held");
                }
            }
            Err(error) => {
                tracing::error!(tenant = %tenant, error = %error, "retention failed");
            }
        }
    }
}

/// Applies retention at once, then every `interval`, until `stop` turns true.
pub async fn retention_job(
    logs: Arc<AuditLogs>,
    auth: Arc<crate::tenancy::Authenticator>,
    catalog: Catalog,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => retention_now(&logs, &auth, &catalog).await,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Checkpoints every `interval` until `stop` turns true.
pub async fn checkpoint_job(
    logs: Arc<AuditLogs>,
    catalog: Catalog,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => checkpoint_now(&logs, &catalog).await,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
