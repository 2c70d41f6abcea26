//! Tenancy: who a record belongs to.
//!
//! This context is the only producer of [`TenantId`]s from wire input. First version (no
//! credentials yet): the `X-Scope-OrgID` header (gRPC metadata `x-scope-orgid`) names the tenant
//! of the whole request; without it, each resource names its own through the `tenant.id`
//! attribute. A resource whose `tenant.id` contradicts the header is refused, never re-tagged;
//! a resource with no tenant at all is refused with a message that says how to set one. There is
//! no default tenant. This mode trusts the network, as Loki's `X-Scope-OrgID` does.

use audit_store::{TenantId, TenantIdError};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// The HTTP header (lowercase: also the gRPC metadata key) that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The resource attribute that names the tenant.
pub const TENANT_ATTRIBUTE: &str = "tenant.id";

/// Why a tenant could not be resolved.
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
    #[error("the resource attribute tenant.id must be a string value")]
    NotAString,
    #[error(
        "resource attribute tenant.id {attribute:?} contradicts the X-Scope-OrgID header {header:?}"
    )]
    Mismatch { header: String, attribute: String },
}

/// The tenant named by the request's header, parsed once per request.
#[derive(Debug, Clone)]
pub struct RequestTenant {
    header: Option<TenantId>,
}

impl RequestTenant {
    /// Parses the header value, if any. An empty or invalid header is an error, not "absent".
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, TenancyError> {
        let Some(raw) = value else {
            return Ok(Self { header: None });
        };
        let text = String::from_utf8_lossy(raw);
        let header = TenantId::parse(&text).map_err(|error| TenancyError::Invalid {
            origin: "the X-Scope-OrgID header",
            value: text.into_owned(),
            error,
        })?;
        Ok(Self {
            header: Some(header),
        })
    }

    /// The tenant of one resource, given its attributes.
    pub fn resolve(&self, resource_attributes: &[KeyValue]) -> Result<TenantId, TenancyError> {
        let attribute = tenant_attribute(resource_attributes)?;
        match (&self.header, attribute) {
            (Some(header), None) => Ok(header.clone()),
            (Some(header), Some(attr)) if attr == header.as_str() => Ok(header.clone()),
            (Some(header), Some(attr)) => Err(TenancyError::Mismatch {
                header: header.to_string(),
                attribute: attr.to_owned(),
            }),
            (None, Some(attr)) => TenantId::parse(attr).map_err(|error| TenancyError::Invalid {
                origin: "the resource attribute tenant.id",
                value: attr.to_owned(),
                error,
            }),
            (None, None) => Err(TenancyError::Missing),
        }
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
