//! End-to-end tests: the real daemon (started in-process on port 0 with a temp dir), real OTLP
//! clients, and the query path the CLI uses.

mod audit;
mod auth;
mod bad_input;
mod cli;
mod connections;
mod dashboards;
mod harness;
mod http_json;
mod lifecycle;
mod metrics;
mod otlp_clients;
mod overload;
mod policy;
mod query_api;
mod record_limits;
mod recovery;
