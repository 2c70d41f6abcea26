//! The API listener: admin endpoints now, the tenant-scoped query API later.
//!
//! `GET /healthz` answers 200 while the process serves; `GET /readyz` answers 200 while it
//! accepts data and 503 once shutdown has begun (so a load balancer drains it first);
//! `POST /admin/flush` commits every acknowledged record to Parquet now instead of when it is due
//! (like Loki's `/flush`) and answers once that is done. Any other path is 404: the HTTP query API
//! is not built yet (use `tenantscope query`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::watch;

/// Commits everything acknowledged so far; provided by the composition root.
pub type FlushFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Clone)]
struct ApiState {
    stopping: watch::Receiver<bool>,
    flush: FlushFn,
}

/// The API routes. `stopping` turns true when shutdown begins.
pub fn router(stopping: watch::Receiver<bool>, flush: FlushFn) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/admin/flush", post(flush_now))
        .with_state(ApiState { stopping, flush })
}

async fn flush_now(State(state): State<ApiState>) -> &'static str {
    (state.flush)().await;
    "flushed\n"
}

async fn ready(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    if *state.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
