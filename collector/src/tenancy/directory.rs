//! The tenant directory: API keys → principals, tenant ids → policies, built from a [`Config`].
//!
//! A [`Directory`] is immutable; a reload builds a new one and swaps it into [`Tenants`], so a
//! request sees one consistent directory from start to end. Keys are kept only as SHA-256 hashes;
//! a presented key is hashed and compared against *every* configured hash in constant time, so
//! neither the answer's timing nor its content tells which hash came close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

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
    /// On a store that ignores case: every tenant id seen, so that no two ids that differ only
    /// in case ever share a directory. Kept across reloads ([`Tenants::replace`]).
    case_fold: Option<Arc<CaseFold>>,
}

/// The tenant ids a case-insensitive store holds, by their lowercase form.
#[derive(Debug, Default)]
pub struct CaseFold {
    seen: Mutex<HashMap<String, TenantId>>,
}

impl CaseFold {
    /// Starts from the tenants already stored.
    pub fn new(stored: impl IntoIterator<Item = TenantId>) -> Self {
        let seen = stored
            .into_iter()
            .map(|t| (t.as_str().to_ascii_lowercase(), t))
            .collect();
        Self {
            seen: Mutex::new(seen),
        }
    }

    /// The id seen before that differs from `tenant` only in case; otherwise `tenant` is
    /// recorded as the one holding its name.
    fn twin_or_claim(&self, tenant: &TenantId) -> Option<TenantId> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let held = seen
            .entry(tenant.as_str().to_ascii_lowercase())
            .or_insert_with(|| tenant.clone());
        (held != tenant).then(|| held.clone())
    }
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
            case_fold: None,
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

    /// The tenant whose id differs from `tenant`'s only in case, if any: a listed one (on any
    /// filesystem; a tenant listed as itself has none), and on a store that ignores case
    /// ([`Directory::fold_case`]) also any tenant stored or seen before, listed or not.
    pub fn case_twin(&self, tenant: &TenantId) -> Option<(TenantId, bool)> {
        if !self.tenants.contains_key(tenant) {
            let id = tenant.as_str();
            let listed = self
                .tenants
                .keys()
                .find(|t| t.as_str().eq_ignore_ascii_case(id));
            if let Some(listed) = listed {
                return Some((listed.clone(), true));
            }
        }
        let fold = self.case_fold.as_ref()?;
        fold.twin_or_claim(tenant).map(|seen| (seen, false))
    }

    /// Refuses, from now on, any tenant id that differs only in case from one in `fold` (the
    /// store ignores case: both would be one directory).
    pub fn fold_case(&mut self, fold: Arc<CaseFold>) {
        for listed in self.tenants.keys() {
            fold.twin_or_claim(listed);
        }
        self.case_fold = Some(fold);
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

    /// Puts a new directory in force (keeping the tenant ids a case-insensitive store has seen).
    pub fn replace(&self, mut directory: Directory) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(fold) = current.case_fold.clone() {
            directory.fold_case(fold);
        }
        *current = Arc::new(directory);
    }
}

/// The `sha256:<hex>` form of a key, as the config stores it (`tenantscope hash-key`).
pub fn hash_key(key: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key)))
}
