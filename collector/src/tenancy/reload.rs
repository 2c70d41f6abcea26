//! Hot reload of tenants, keys and policies, on SIGHUP and when the config files change.
//!
//! A reload reads the config file (and its tenants file) again, validates it and builds a new
//! [`Directory`]; only when both succeed is the directory swapped in. An invalid config is logged
//! with every error and counted, and the directory in force stays. Connections are never touched:
//! a request in flight keeps the directory it started with. Only the `auth` and `tenants`
//! settings are applied at run time; other changes are logged as needing a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Authenticator, Directory};
use crate::config::Config;
use crate::telemetry::Catalog;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Rejected(String),
}

/// Reloads tenant configuration from the file the daemon was started with.
pub struct Reloader {
    path: PathBuf,
    running: std::sync::Mutex<Config>,
    auth: Arc<Authenticator>,
    catalog: Catalog,
}

impl Reloader {
    pub fn new(path: PathBuf, config: Config, auth: Arc<Authenticator>, catalog: Catalog) -> Self {
        Self {
            path,
            running: std::sync::Mutex::new(config),
            auth,
            catalog,
        }
    }

    /// Loads, validates and applies the config file now.
    pub fn reload(&self) -> ReloadOutcome {
        let outcome = match Config::load(&self.path) {
            Err(e) => ReloadOutcome::Rejected(e.to_string()),
            Ok(new) => match Directory::build(&new) {
                Err(e) => ReloadOutcome::Rejected(format!(
                    "invalid config file {}: {e}",
                    self.path.display()
                )),
                Ok(directory) => {
                    let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                    if needs_restart(&running, &new) {
                        tracing::warn!(
                            "config changes outside auth and tenants need a restart; \
                             applying the auth and tenants settings only"
                        );
                    }
                    self.auth
                        .set_max_failures_per_minute(new.auth.max_failures_per_minute);
                    self.auth.tenants().replace(directory);
                    *running = new;
                    ReloadOutcome::Applied
                }
            },
        };
        match &outcome {
            ReloadOutcome::Applied => {
                self.catalog.config_reloads("success").increment(1);
                tracing::info!(path = %self.path.display(), "configuration reloaded");
            }
            ReloadOutcome::Rejected(errors) => {
                self.catalog.config_reloads("failure").increment(1);
                tracing::error!(
                    path = %self.path.display(),
                    errors = %errors,
                    "configuration reload rejected; the previous configuration stays in force"
                );
            }
        }
        outcome
    }

    /// A fingerprint of the files a reload reads: modification time and length of each.
    pub fn fingerprint(&self) -> Vec<Option<(SystemTime, u64)>> {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut files = vec![stat(&self.path)];
        if let Some(t) = &running.tenants_file {
            files.push(stat(t));
        }
        files
    }

    /// Polls the files every `interval` and reloads when they change, until `stop` fires.
    pub async fn watch(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last = self.fingerprint();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = self.fingerprint();
            if now != last {
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
                // The files a reload reads may have changed (a new tenants_file).
                last = self.fingerprint();
            }
        }
    }
}

/// Whether settings that only a restart applies changed. (Listen addresses and the data
/// directory are left out: command-line flags may override them.)
fn needs_restart(old: &Config, new: &Config) -> bool {
    old.ingest != new.ingest
        || old.log != new.log
        || old.query != new.query
        || old.reload != new.reload
        || old.metrics != new.metrics
        || old.tracing != new.tracing
        || old.storage.max_file_age != new.storage.max_file_age
        || old.storage.target_file_rows != new.storage.target_file_rows
        || old.storage.max_buffered_bytes != new.storage.max_buffered_bytes
}
