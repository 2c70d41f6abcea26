//! Tenancy: who a request is, and which tenant each of its records belongs to.
//!
//! This context is the only producer of [`TenantId`]s from wire input. Two modes, decided by the
//! config ([`directory::Directory::auth_required`]):
//!
//! - **Keys configured**: every request authenticates (`Authorization: Bearer <key>`, gRPC
//!   metadata `authorization`). A tenant's key binds the request to that tenant: an
//!   `X-Scope-OrgID` header or a `tenant.id` resource attribute naming another tenant is refused
//!   (403 / PERMISSION_DENIED), never re-tagged. A global admin key acts as a trusted gateway:
//!   the tenant comes from the header or attribute, as in the next mode.
//! - **No key configured**: the `X-Scope-OrgID` header (gRPC metadata `x-scope-orgid`) names the
//!   tenant of the whole request; without it, each resource names its own through `tenant.id`.
//!   A contradiction is refused; a resource with no tenant is refused with a message that says
//!   how to set one. There is no default tenant. This mode trusts the network, as Loki's does.
//!
//! It also owns each tenant's policy ([`directory`]), admission limits ([`limits`]) and
//! redaction ([`redact`]).

pub mod directory;
pub mod limits;
pub mod redact;
pub mod reload;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_store::{TenantId, TenantIdError};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

pub use directory::{CaseFold, Directory, Principal, TenantState, Tenants};

/// A resource's tenant and that tenant's policy; `None` for a resource without records.
pub type Resolved = Option<(TenantId, Arc<TenantState>)>;
use limits::AuthThrottle;

/// The HTTP header (lowercase: also the gRPC metadata key) that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The resource attribute that names the tenant.
pub const TENANT_ATTRIBUTE: &str = "tenant.id";

/// Why a request's tenant could not be resolved or its caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    #[error(
        "no tenant: set the X-Scope-OrgID header (gRPC metadata x-scope-orgid) or the resource \
         attribute tenant.id on every resource"
    )]
    Missing,
    #[error("invalid tenant id {value:?} in {origin}: {error}")]
    Invalid {
        origin: &'static str,
        value: String,
        error: TenantIdError,
    },
    #[error(
        "no tenant: query with a tenant's query key, or name the tenant in the body's tenant \
         field or the X-Scope-OrgID header"
    )]
    NoQueryTenant,
    #[error("the resource attribute tenant.id must be a string value")]
    NotAString,
    /// Would share a configured tenant's directory on a case-insensitive filesystem (or, on one,
    /// any stored tenant's).
    #[error("tenant {named:?} differs from the {which} tenant {listed:?} only in case")]
    CaseTwin {
        named: String,
        listed: String,
        which: &'static str,
    },
    #[error(
        "resource attribute tenant.id {attribute:?} contradicts the X-Scope-OrgID header {header:?}"
    )]
    Mismatch { header: String, attribute: String },
    #[error("{origin} names tenant {named:?} but the API key belongs to tenant {bound:?}")]
    NotYourTenant {
        origin: &'static str,
        named: String,
        bound: String,
    },
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    #[error("too many failed authentications from this address; retry later")]
    Throttled { retry_after: Duration },
    #[error("{0}")]
    Forbidden(String),
}

impl TenancyError {
    /// Whether this refusal is about the caller's rights (403 / PERMISSION_DENIED).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            TenancyError::Mismatch { .. }
                | TenancyError::NotYourTenant { .. }
                | TenancyError::Forbidden(_)
        )
    }
}

/// What a request is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Ingest,
    Query,
}

/// Authenticates requests against the current [`Tenants`] directory.
pub struct Authenticator {
    tenants: Tenants,
    throttle: AuthThrottle,
}

impl Authenticator {
    pub fn new(tenants: Tenants, max_failures_per_minute: u32) -> Self {
        Self {
            tenants,
            throttle: AuthThrottle::new(max_failures_per_minute),
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    pub fn set_max_failures_per_minute(&self, n: u32) {
        self.throttle.set_per_minute(n);
    }

    /// Checks the `Authorization` value of a request from `source`.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        source: Option<IpAddr>,
    ) -> Result<Access, TenancyError> {
        let directory = self.tenants.snapshot();
        if !directory.auth_required() {
            return Ok(Access {
                directory,
                principal: None,
            });
        }
        let now = Instant::now();
        if let Some(retry_after) = source.and_then(|ip| self.throttle.check(ip, now)) {
            return Err(TenancyError::Throttled { retry_after });
        }
        let outcome = match authorization.map(bearer) {
            None => Err("send Authorization: Bearer <key> (gRPC metadata authorization)"),
            Some(None) => Err("the Authorization header must be Bearer <key>"),
            Some(Some(key)) => directory.principal(key).cloned().ok_or("unknown API key"),
        };
        match outcome {
            Ok(principal) => Ok(Access {
                directory,
                principal: Some(principal),
            }),
            Err(why) => {
                if let Some(ip) = source
                    && self.throttle.failed(ip, now)
                {
                    // Never the key itself.
                    tracing::warn!(source = %ip, reason = why, "authentication failed");
                }
                Err(TenancyError::Unauthenticated(why))
            }
        }
    }
}

/// The key of `Bearer <key>`, scheme case-insensitive.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !rest.trim_ascii().is_empty())
        .then(|| rest.trim_ascii())
}

/// An authenticated (or, without keys, trusted) caller, with the directory it was checked
/// against.
#[derive(Debug, Clone)]
pub struct Access {
    directory: Arc<Directory>,
    principal: Option<Principal>,
}

impl Access {
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Whether this caller may use the admin endpoints (any caller when no key is configured).
    pub fn is_admin(&self) -> bool {
        !self.directory.auth_required() || self.principal == Some(Principal::Admin)
    }

    /// The tenant a bound key may act for, after checking its role and the tenant's state.
    fn bound(&self, purpose: Purpose) -> Result<Option<TenantId>, TenancyError> {
        let Some(Principal::Tenant { tenant, roles }) = &self.principal else {
            return Ok(None);
        };
        let allowed = match purpose {
            Purpose::Ingest => roles.ingest,
            Purpose::Query => roles.query,
        };
        if !allowed {
            let what = match purpose {
                Purpose::Ingest => "ingest",
                Purpose::Query => "query",
            };
            return Err(TenancyError::Forbidden(format!(
                "this API key of tenant \"{tenant}\" has no {what} role"
            )));
        }
        self.check_enabled(tenant)?;
        Ok(Some(tenant.clone()))
    }

    fn check_enabled(&self, tenant: &TenantId) -> Result<(), TenancyError> {
        if let Some((twin, listed)) = self.directory.case_twin(tenant) {
            return Err(TenancyError::CaseTwin {
                named: tenant.to_string(),
                listed: twin.to_string(),
                which: if listed {
                    "configured"
                } else {
                    "stored (this data directory ignores case)"
                },
            });
        }
        match self.directory.listed(tenant) {
            Some(state) if !state.policy.enabled => Err(TenancyError::Forbidden(format!(
                "tenant \"{tenant}\" is disabled"
            ))),
            _ => Ok(()),
        }
    }

    /// Resolution for an ingest request carrying `header` (the `X-Scope-OrgID` value, if any).
    pub fn for_ingest(&self, header: Option<&[u8]>) -> Result<RequestTenant, TenancyError> {
        let header = parse_header(header)?;
        let bound = self.bound(Purpose::Ingest)?;
        if let (Some(bound), Some(header)) = (&bound, &header)
            && bound != header
        {
            return Err(TenancyError::NotYourTenant {
                origin: "the X-Scope-OrgID header",
                named: header.to_string(),
                bound: bound.to_string(),
            });
        }
        Ok(RequestTenant {
            access: self.clone(),
            bound,
            header,
        })
    }

    /// The tenant a query runs for. `named` is the tenant the request names (body field or
    /// `X-Scope-OrgID`); a tenant key may only name its own, an admin key must name one.
    pub fn for_query(&self, named: Option<&str>) -> Result<TenantId, TenancyError> {
        let named = named
            .map(|n| {
                TenantId::parse(n).map_err(|error| TenancyError::Invalid {
                    origin: "the query's tenant",
                    value: n.to_owned(),
                    error,
                })
            })
            .transpose()?;
        let tenant = match (self.bound(Purpose::Query)?, named) {
            (Some(bound), Some(named)) if bound != named => {
                return Err(TenancyError::NotYourTenant {
                    origin: "the query",
                    named: named.to_string(),
                    bound: bound.to_string(),
                });
            }
            (Some(bound), _) => bound,
            (None, Some(named)) => named,
            (None, None) => return Err(TenancyError::NoQueryTenant),
        };
        self.check_enabled(&tenant)?;
        Ok(tenant)
    }
}

fn parse_header(value: Option<&[u8]>) -> Result<Option<TenantId>, TenancyError> {
    let Some(raw) = value else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(raw);
    TenantId::parse(&text)
        .map(Some)
        .map_err(|error| TenancyError::Invalid {
            origin: "the X-Scope-OrgID header",
            value: text.into_owned(),
            error,
        })
}

/// The tenant resolution of one ingest request.
#[derive(Debug, Clone)]
pub struct RequestTenant {
    access: Access,
    bound: Option<TenantId>,
    header: Option<TenantId>,
}

impl RequestTenant {
    /// The one tenant every resource of the request must belong to, when the headers say it (the
    /// key's tenant, or else `X-Scope-OrgID`), with its policy; `None` when the resources'
    /// attributes decide.
    pub fn named(&self) -> Option<(&TenantId, Arc<TenantState>)> {
        let tenant = self.bound.as_ref().or(self.header.as_ref())?;
        Some((tenant, self.access.directory.state(tenant)))
    }

    /// The tenant of one resource, given its attributes, and that tenant's policy.
    pub fn resolve(
        &self,
        resource_attributes: &[KeyValue],
    ) -> Result<(TenantId, Arc<TenantState>), TenancyError> {
        let attribute = tenant_attribute(resource_attributes)?;
        let tenant = match (&self.bound, &self.header, attribute) {
            (Some(bound), _, Some(attr)) if attr != bound.as_str() => {
                return Err(TenancyError::NotYourTenant {
                    origin: "the resource attribute tenant.id",
                    named: attr.to_owned(),
                    bound: bound.to_string(),
                });
            }
            (Some(bound), _, _) => bound.clone(),
            (None, Some(header), None) => header.clone(),
            (None, Some(header), Some(attr)) if attr == header.as_str() => header.clone(),
            (None, Some(header), Some(attr)) => {
                return Err(TenancyError::Mismatch {
                    header: header.to_string(),
                    attribute: attr.to_owned(),
                });
            }
            (None, None, Some(attr)) => {
                TenantId::parse(attr).map_err(|error| TenancyError::Invalid {
                    origin: "the resource attribute tenant.id",
                    value: attr.to_owned(),
                    error,
                })?
            }
            (None, None, None) => return Err(TenancyError::Missing),
        };
        self.access.check_enabled(&tenant)?;
        let state = self.access.directory.state(&tenant);
        Ok((tenant, state))
    }
}

fn tenant_attribute(attributes: &[KeyValue]) -> Result<Option<&str>, TenancyError> {
    let Some(kv) = attributes.iter().find(|kv| kv.key == TENANT_ATTRIBUTE) else {
        return Ok(None);
    };
    match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Ok(Some(s)),
        _ => Err(TenancyError::NotAString),
    }
}

#[cfg(test)]
mod tests;
