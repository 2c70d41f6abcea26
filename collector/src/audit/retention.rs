//! The retention job: each listed tenant's `retention` applied to its audit log, and its config
//! `legal_hold` mirrored into the log as hold entries (placed when set, released when unset —
//! only the holds the config placed; one placed through the API stays until released there).
//!
//! Runs once at start and every `audit.retention_interval` in the daemon, and once offline in
//! `tenantscope retention`.

use std::time::Duration;

use audit_store::TenantId;
use audit_store::layout::Layout;
use audit_store::log::retention::RetentionOutcome;
use audit_store::log::{AuditLogs, LogError, TenantLog};

/// Who placed a hold the config asked for.
pub const CONFIG_HOLD_BY: &str = "config";

/// A tenant's retention settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tenant: TenantId,
    pub retention: Option<Duration>,
    pub legal_hold: bool,
}

/// What [`dry_run`] would delete, from the logs read without writing anything.
pub fn dry_run(
    layout: &Layout,
    policies: &[Policy],
    now_ns: i64,
) -> Vec<(TenantId, Result<RetentionOutcome, LogError>)> {
    let mut outcomes = Vec::new();
    for policy in policies {
        let Some(keep) = policy.retention else {
            continue;
        };
        if !layout.tenant_dir(&policy.tenant).is_dir() {
            continue;
        }
        let config_hold = policy
            .legal_hold
            .then(|| format!("tenants.{}.legal_hold is set", policy.tenant));
        let result = TenantLog::read(layout, &policy.tenant)
            .and_then(|mut log| log.apply_retention(keep, now_ns, config_hold.as_deref(), true));
        outcomes.push((policy.tenant.clone(), result));
    }
    outcomes
}

/// Applies every policy; returns each tenant's outcome (tenants without a log or without
/// retention are skipped).
pub fn run(
    logs: &AuditLogs,
    policies: &[Policy],
    now_ns: i64,
) -> Vec<(TenantId, Result<RetentionOutcome, LogError>)> {
    let mut outcomes = Vec::new();
    for policy in policies {
        if !logs.layout().tenant_dir(&policy.tenant).is_dir() {
            continue;
        }
        let result = (|| {
            let log = logs.get(&policy.tenant)?;
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let config_hold = policy
                .legal_hold
                .then(|| format!("tenants.{}.legal_hold is set", policy.tenant));
            let placed_by_config = log.hold().is_some_and(|h| h.by == CONFIG_HOLD_BY);
            if policy.legal_hold && log.hold().is_none() {
                log.set_hold(
                    true,
                    CONFIG_HOLD_BY,
                    &config_hold.clone().unwrap_or_default(),
                )?;
            } else if !policy.legal_hold && placed_by_config {
                log.set_hold(
                    false,
                    CONFIG_HOLD_BY,
                    &format!("tenants.{}.legal_hold is no longer set", policy.tenant),
                )?;
            }
            match policy.retention {
                Some(keep) => log.apply_retention(keep, now_ns, config_hold.as_deref(), false),
                None => Ok(RetentionOutcome::default()),
            }
        })();
        if policy.retention.is_some() {
            outcomes.push((policy.tenant.clone(), result));
        } else if let Err(error) = result {
            outcomes.push((policy.tenant.clone(), Err(error)));
        }
    }
    outcomes
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}
