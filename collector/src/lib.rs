//! tenantscope, the daemon: OTLP in, tenant-scoped Parquet out.
//!
//! Bounded contexts, each in its own module, dependencies pointing down only:
//!
//! - [`app`]: the composition root; builds and wires everything, owns shutdown order;
//! - [`cli`]: the command line (`run`, `query`, `config check`);
//! - [`api`]: the API listener (health and readiness for now);
//! - [`ingest`]: OTLP/gRPC and OTLP/HTTP receivers, decoding, limits, the error→status table;
//! - [`tenancy`]: wire input → [`audit_store::TenantId`];
//! - [`pipeline`]: OTLP → Arrow conversion and the batching writer that acknowledges commits;
//! - [`telemetry`]: the daemon's own logs and metrics;
//! - [`config`]: typed, validated configuration.
//!
//! The store itself (layout, Parquet writer, tenant-scoped query) is the `audit-store` crate.

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod pipeline;
pub mod telemetry;
pub mod tenancy;
