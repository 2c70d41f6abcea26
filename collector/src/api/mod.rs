//! The API listener: admin endpoints now, the tenant-scoped query API later.
//!
//! `GET /healthz` answers 200 while the process serves; `GET /readyz` answers 200 while it
//! accepts data and 503 once shutdown has begun (so a load balancer drains it first). Any other
//! path is 404: the HTTP query API is not built yet (use `tenantscope query`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

/// The API routes. `stopping` turns true when shutdown begins.
pub fn router(stopping: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(stopping)
}

async fn ready(State(stopping): State<watch::Receiver<bool>>) -> (StatusCode, &'static str) {
    if *stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
