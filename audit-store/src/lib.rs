//! The audit store: where tenant telemetry becomes append-only Parquet, and the only way to read it back.
//!
//! It owns the on-disk contract ([`layout`]), the Arrow schemas of the tables ([`schema`]), the
//! Parquet writer ([`writer`]), each tenant's tamper-evident audit log — the commit point, a
//! Merkle tree with signed checkpoints ([`log`]) — with its checker ([`verify`]), the rows digest
//! ([`rows_digest`]) and the tenant-scoped query ([`query`]).
//! It knows nothing about OTLP, HTTP or gRPC: callers hand it Arrow record batches already tagged
//! with a validated [`TenantId`].
//!
//! Invariants kept here:
//! - a file visible under a `.parquet` name is complete (written to a hidden temporary name,
//!   fsync'd, renamed, directory fsync'd);
//! - every file holds rows of exactly one tenant, one table and one UTC day;
//! - a [`query::TenantScope`] can reach only its own tenant's directory.

pub mod bundle;
pub mod layout;
pub mod log;
pub mod query;
pub mod rows_digest;
pub mod schema;
pub mod tenant;
pub mod verify;
pub mod wal;
pub mod writer;

#[cfg(test)]
mod test_support;

pub use schema::Table;

/// The message of a caught panic (what the readers of damaged files panic with, turned into
/// errors by `verify`, the write-ahead log reader and queries).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
pub use tenant::{TenantId, TenantIdError};
