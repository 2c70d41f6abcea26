//! tenantscope, the daemon: OTLP in, tenant-scoped Parquet out.
//!
//! Bounded contexts, each in its own module, from the top floor down (a module uses only those
//! below it; the `tidy` test checks, and ARCHITECTURE.md draws the floors):
//!
//! - [`cli`]: the command line (`run`, `query`, `verify`, `keygen`, `export`, `retention`,
//!   `config check`, `hash-key`);
//! - [`app`]: the composition root; builds and wires everything, owns shutdown order;
//! - [`api`]: the API listener (health, readiness, queries, checkpoints and proofs, exports,
//!   legal holds); [`audit`]: the daemon's side of the audit logs (key, checkpoint and retention
//!   jobs);
//! - [`ingest`]: OTLP/gRPC and OTLP/HTTP receivers: decoding, size limits, authentication and
//!   admission, the error→status table; it only receives;
//! - [`pipeline`]: accepting a request (per-record validation, redaction, conversion; OTLP →
//!   Arrow), the write-ahead log that acknowledges it, and the flusher that commits Parquet;
//! - [`tenancy`]: wire input → [`audit_store::TenantId`], per-tenant policy and redaction;
//! - [`telemetry`]: the daemon's own logs and metrics (a catalog of metric families), and the
//!   series derived from what tenants send;
//! - [`otlp`]: the OTLP codec layer (requests read in place, salvage, OTLP/JSON, values, enums),
//!   knowing no tenants, store or metrics;
//! - [`config`]: typed, validated configuration.
//!
//! The store itself (layout, Parquet writer, tenant-scoped query) is the `audit-store` crate.

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod net;
pub mod otlp;
pub mod pipeline;
pub mod telemetry;
pub mod tenancy;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tidy;
