//! Tenant-scoped SQL over the audit store, with DataFusion.
//!
//! A [`TenantScope`] is a DataFusion session built for one tenant and one time range. It
//! registers exactly the tables `logs`, `spans` and `events`, each a view over the files that
//! tenant's manifest names (and whose time range meets the range), filtered to the range. Nothing else is registered and the
//! session refuses DDL, DML and statements, so a query cannot reach another tenant's files:
//! there is nothing else to read.
//!
//! DataFusion itself is not an authorisation boundary; this module is. It must never register a
//! path that did not come from [`Layout`](crate::layout::Layout) for the scope's own tenant.
//!
//! What a query asks for ([`TimeRange`], [`QueryLimits`], [`OutputFormat`]) is in [`request`],
//! always built; the engine ([`engine`], [`format`]) only with the `query` feature (on by
//! default; the fuzz targets build without it, and so without DataFusion).

#[cfg(feature = "query")]
mod damage;
#[cfg(feature = "query")]
mod engine;
#[cfg(feature = "query")]
pub mod format;
mod request;

#[cfg(feature = "query")]
pub use engine::*;
pub use request::{OutputFormat, QueryLimits, TimeRange};

#[cfg(all(test, feature = "query"))]
mod tests;
