//! The tenant directory: API keys → principals, tenant ids → policies, built from a [`Config`].
//!
//! A [`Directory`] is immutable; a reload builds a new one and swaps it into [`Tenants`], so a
//! request sees one consistent directory from start to end. Keys are kept only as SHA-256 hashes;
//! a presented key is hashed and compared against *every* configured hash in constant time, so
//! neither the answer's timing nor its content tells which hash came close.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use audit_store::TenantId;
use sha2::{Digest, Sha256};

use super::redact::Redactor;
use crate::config::{Config, KeyHash, Roles, TenantPolicy};

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A tenant's key, with what it may do.
    Tenant { tenant: TenantId, roles: Roles },
    /// A global admin key: any tenant, named by the request.
    Admin,
}

/// One tenant's policy, with its redaction compiled.
#[derive(Debug)]
pub struct TenantState {
    pub policy: TenantPolicy,
    pub redactor: Option<Redactor>,
}

/// Why a directory could not be built from a config.
#[derive(Debug, thiserror::Error)]
#[error("tenants.{tenant}.redaction: {message}")]
pub struct DirectoryError {
    pub tenant: String,
    pub message: String,
}

/// Keys and tenant policies at one moment.
#[derive(Debug)]
pub struct Directory {
    auth_required: bool,
    keys: Vec<(KeyHash, Principal)>,
    tenants: HashMap<TenantId, Arc<TenantState>>,
    default: Arc<TenantState>,
}

impl Directory {
    /// Builds the directory, reading each tenant's pseudonymisation key from its source.
    pub fn build(config: &Config) -> Result<Self, DirectoryError> {
        let mut keys = Vec::new();
        for hash in &config.auth.admin_keys {
            keys.push((*hash, Principal::Admin));
        }
        let mut tenants = HashMap::new();
        for (id, policy) in &config.tenants {
            for key in &policy.keys {
                keys.push((
                    key.hash,
                    Principal::Tenant {
                        tenant: id.clone(),
                        roles: key.roles,
                    },
                ));
            }
            let redactor =
                Redactor::build(&policy.redaction).map_err(|message| DirectoryError {
                    tenant: id.to_string(),
                    message,
                })?;
            tenants.insert(
                id.clone(),
                Arc::new(TenantState {
                    policy: policy.clone(),
                    redactor,
                }),
            );
        }
        Ok(Self {
            auth_required: config.auth_required(),
            keys,
            tenants,
            default: Arc::new(TenantState {
                policy: TenantPolicy::default(),
                redactor: None,
            }),
        })
    }

    /// Whether requests must present a key.
    pub fn auth_required(&self) -> bool {
        self.auth_required
    }

    /// The principal of a presented key, if it is one of ours.
    pub fn principal(&self, key: &[u8]) -> Option<&Principal> {
        let presented: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        // Every hash is compared, in constant time each; no early exit.
        for (hash, principal) in &self.keys {
            if constant_time_eq(&hash.0, &presented) {
                found = Some(principal);
            }
        }
        found
    }

    /// Every tenant listed in the config, with its state.
    pub fn listed_tenants(&self) -> impl Iterator<Item = (&TenantId, &Arc<TenantState>)> {
        self.tenants.iter()
    }

    /// The state of a listed tenant.
    pub fn listed(&self, tenant: &TenantId) -> Option<&Arc<TenantState>> {
        self.tenants.get(tenant)
    }

    /// The listed tenant whose id differs from `tenant`'s only in case, if any (a tenant listed
    /// as itself has none).
    pub fn case_twin(&self, tenant: &TenantId) -> Option<&TenantId> {
        if self.tenants.contains_key(tenant) {
            return None;
        }
        let id = tenant.as_str();
        self.tenants
            .keys()
            .find(|t| t.as_str().eq_ignore_ascii_case(id))
    }

    /// The state of any tenant: a listed one's, or the default policy.
    pub fn state(&self, tenant: &TenantId) -> Arc<TenantState> {
        self.tenants
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The current directory, swapped atomically on reload.
#[derive(Clone)]
pub struct Tenants {
    current: Arc<RwLock<Arc<Directory>>>,
}

impl Tenants {
    pub fn new(directory: Directory) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(directory))),
        }
    }

    /// The directory in force now; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Directory> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts a new directory in force.
    pub fn replace(&self, directory: Directory) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(directory);
    }
}

/// The `sha256:<hex>` form of a key, as the config stores it (`tenantscope hash-key`).
pub fn hash_key(key: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key)))
}
