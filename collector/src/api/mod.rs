//! The API listener: the tenant-scoped query API ([`query`]) and the admin endpoints.
//!
//! `GET /healthz` answers 200 while the process serves; `GET /readyz` answers 200 while it
//! accepts data and 503 once shutdown has begun (so a load balancer drains it first);
//! `POST /admin/flush` commits every acknowledged record to Parquet now instead of when it is due
//! (like Loki's `/flush`) and answers once that is done — with keys configured, only for an
//! admin key; `POST /admin/reload` reloads tenants and policies like SIGHUP (admin too).
//! `POST /api/v1/query` runs a tenant's SQL; `GET /api/v1/checkpoint` and
//! `GET /api/v1/proof/{inclusion,consistency}` serve a tenant's audit log and
//! `POST|DELETE /api/v1/admin/hold` place and release legal holds, `POST /api/v1/export` streams an
//! auditor bundle ([`audit`]). Any other path is
//! 404.

pub mod audit;
#[cfg(feature = "query")]
pub mod query;
pub mod request;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::config::QueryLimits;
use crate::telemetry::Catalog;
use crate::tenancy::Authenticator;
use crate::tenancy::reload::{ReloadOutcome, Reloader};

/// Commits everything acknowledged so far; provided by the composition root.
pub type FlushFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What the API handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub stopping: watch::Receiver<bool>,
    pub flush: FlushFn,
    pub auth: Arc<Authenticator>,
    pub reloader: Option<Arc<Reloader>>,
    pub data_dir: PathBuf,
    pub limits: QueryLimits,
    pub catalog: Catalog,
    #[cfg(feature = "query")]
    pub pool: Arc<query::QueryPool>,
    pub logs: Arc<audit_store::log::AuditLogs>,
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    let router = Router::new();
    // Without the `query` feature (fuzz builds) the path is not routed: 404, as any unknown path.
    #[cfg(feature = "query")]
    let router = router.route("/api/v1/query", post(query::query));
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/admin/flush", post(flush_now))
        .route("/admin/reload", post(reload_now))
        .route("/api/v1/checkpoint", get(audit::checkpoint))
        .route("/api/v1/proof/inclusion", get(audit::inclusion))
        .route("/api/v1/proof/consistency", get(audit::consistency))
        .route("/api/v1/export", post(audit::export))
        .route("/api/v1/admin/hold", post(audit::hold).delete(audit::hold))
        .with_state(state)
}

/// Refuses callers without admin rights (any caller when no key is configured).
fn check_admin(state: &ApiState, request: &axum::extract::Request) -> Result<(), Box<Response>> {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.auth.authenticate(authorization, source) {
        Ok(access) if access.is_admin() => Ok(()),
        Ok(_) => Err(Box::new(
            (StatusCode::FORBIDDEN, "an admin key is required\n").into_response(),
        )),
        Err(e) => {
            let status = match e {
                crate::tenancy::TenancyError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            Err(Box::new((status, format!("{e}\n")).into_response()))
        }
    }
}

async fn flush_now(State(state): State<ApiState>, request: axum::extract::Request) -> Response {
    if let Err(refused) = check_admin(&state, &request) {
        return *refused;
    }
    (state.flush)().await;
    "flushed\n".into_response()
}

async fn reload_now(State(state): State<ApiState>, request: axum::extract::Request) -> Response {
    if let Err(refused) = check_admin(&state, &request) {
        return *refused;
    }
    let Some(reloader) = state.reloader.clone() else {
        return (
            StatusCode::CONFLICT,
            "started without --config: there is no file to reload\n",
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(ReloadOutcome::Applied) => "reloaded\n".into_response(),
        Ok(ReloadOutcome::Rejected(errors)) => {
            (StatusCode::BAD_REQUEST, format!("{errors}\n")).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    if *state.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
