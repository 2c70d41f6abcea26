//! The OTLP codec layer: what reading OTLP means, below everything that reads it.
//!
//! Nothing here knows tenants, the store or metrics; ingest, the pipeline, tenancy (redaction)
//! and telemetry import it, never the other way round (`tidy.rs` checks).
//!
//! - [`wire`]: the protobuf wire reader that [`logs`] reads requests with in place;
//! - [`logs`]: a logs request read in place (`LogsRequest`), borrowed record views, the fields
//!   both views and decoded records expose (`LogFields`), record times;
//! - [`salvage`]: protobuf decoding that keeps the good records of a partly bad request;
//! - [`json`]: the OTLP/JSON rules (hex ids, enum names, camelCase) → the protobuf messages;
//! - [`any_value`]: an `AnyValue` → the text stored in attribute maps and `body`;
//! - [`trace`]: span kinds and status codes → their stored names;
//! - [`Signal`] and [`Transport`]: what a request carries and how it came.

pub mod any_value;
pub mod json;
pub mod logs;
pub mod salvage;
mod signal;
pub mod trace;
mod wire;

pub use salvage::Decoded;
pub use signal::{Signal, Transport};

/// A request that is not OTLP: the message says what is wrong (ingest answers it with
/// 400 / `InvalidArgument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);
