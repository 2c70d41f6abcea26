//! tenantscope-bench: a load generator for tenantscope and any other OTLP receiver.
//!
//! - [`shapes`]: the documented, deterministic payload shapes (`audit-v1`, `tiny-v1`,
//!   `spans-v1`, `events-v1`), generated from a seed and encoded (and compressed) before the run,
//!   so the generator spends its CPU on sending, not on building requests;
//! - [`load`]: OTLP/HTTP or OTLP/gRPC, closed loop (as fast as answers come) or open loop (a
//!   fixed rate, latency measured from each request's intended start, so a stalled server cannot
//!   hide its stall: coordinated omission corrected), every request's answer counted by status;
//! - [`proc_stats`]: the target daemon's CPU seconds and RSS from `/proc/<pid>`.

pub mod load;
pub mod proc_stats;
pub mod shapes;
