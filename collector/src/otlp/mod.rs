//! The OTLP codec layer: what reading OTLP means, below everything that reads it.
//!
//! Nothing here knows tenants, the store or metrics; ingest, the pipeline, tenancy (redaction)
//! and telemetry import it, never the other way round (`tidy.rs` checks).
//!
//! - [`any_value`]: an `AnyValue` → the text stored in attribute maps and `body`;
//! - [`trace`]: span kinds and status codes → their stored names;
//! - [`Signal`] and [`Transport`]: what a request carries and how it came.

pub mod any_value;
mod signal;
pub mod trace;

pub use signal::{Signal, Transport};
