//! The audit log over HTTP: a tenant's newest signed checkpoint and the proofs that let it check,
//! without our files, that a file is in its log and that its log only grew.
//!
//! - `GET /api/v1/checkpoint` — a checkpoint of the whole log, exactly as stored (a C2SP signed
//!   note, `text/plain`; signed now if the log grew since the newest one): keep it, and hand it
//!   later to `tenantscope verify --trusted-checkpoint`.
//! - `GET /api/v1/proof/inclusion?file=PATH[&size=N]` — the RFC 6962 audit path of the entry that
//!   committed `PATH` (relative to the tenant directory, as the log names it) in the tree of `N`
//!   entries (default: the whole log, with its checkpoint in the answer).
//! - `GET /api/v1/proof/consistency?from=N[&to=M]` — the RFC 6962 consistency proof from the tree
//!   of `N` entries to the tree of `M` (default: the whole log, with its checkpoint).
//!
//! - `POST /api/v1/export` with `{"tenant", "from", "to"}` (all optional) — the tenant's auditor
//!   bundle as a tar stream, the same as `tenantscope export` writes (`application/x-tar`).
//! - `POST /api/v1/admin/hold` / `DELETE /api/v1/admin/hold` with `{"tenant", "reason"[, "by"]}`
//!   and an admin key — places or releases a legal hold, recorded as an entry in the tenant's log
//!   (while one is in force, retention deletes nothing of the tenant).
//!
//! Proof answers are JSON; hashes are base64, as in checkpoints. The tenant is resolved as for
//! queries: the key's, or for an admin key (or without keys) `?tenant=` or `X-Scope-OrgID`.
//! Nothing here writes anything but a checkpoint or a hold entry.

use std::net::SocketAddr;

use audit_store::TenantId;
use audit_store::log::{LogError, TenantLog};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::ApiState;
use crate::tenancy::{TENANT_HEADER, TenancyError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointParams {
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    file: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: u64,
    #[serde(default)]
    to: Option<u64>,
    #[serde(default)]
    tenant: Option<String>,
}

/// An answer that is not a success: status and message, as `{"error", "error_type"}`.
pub(super) struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"error": self.2, "error_type": self.1}).to_string(),
        )
            .into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(60));
        }
        response
    }
}

impl From<TenancyError> for Failure {
    fn from(e: TenancyError) -> Self {
        match &e {
            TenancyError::Unauthenticated(_) => {
                Failure(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            TenancyError::Throttled { .. } => {
                Failure(StatusCode::TOO_MANY_REQUESTS, "throttled", e.to_string())
            }
            _ if e.is_forbidden() => Failure(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            _ => Failure(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        }
    }
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Range(m) => Failure(StatusCode::BAD_REQUEST, "invalid", m),
            other => {
                tracing::error!(error = %other, "audit log unavailable");
                Failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "failed",
                    "the audit log cannot be read; see the daemon's log".into(),
                )
            }
        }
    }
}

/// The tenant the caller may read, resolved as for queries.
pub(super) fn tenant_of(
    state: &ApiState,
    headers: &HeaderMap,
    source: Option<SocketAddr>,
    named: Option<&str>,
) -> Result<TenantId, Failure> {
    let access = state.auth.authenticate(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        source.map(|s| s.ip()),
    )?;
    let header_tenant = headers
        .get(TENANT_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Ok(access.for_query(named.or(header_tenant.as_deref()))?)
}

/// Runs `f` on the tenant's log on a blocking thread; a tenant without a log is 404.
async fn with_log<T: Send + 'static>(
    state: &ApiState,
    tenant: TenantId,
    f: impl FnOnce(&mut TenantLog) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    if !state.logs.layout().tenant_dir(&tenant).is_dir() {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("tenant {tenant} has no audit log yet"),
        ));
    }
    let logs = state.logs.clone();
    tokio::task::spawn_blocking(move || {
        let log = logs.get(&tenant)?;
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.size() == 0 {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("tenant {tenant} has no audit log yet"),
            ));
        }
        f(&mut log)
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()))?
}

/// A checkpoint of the whole log: the newest one, signed now when the log grew past it (so an
/// answer never waits for `audit.checkpoint_interval`).
fn current_checkpoint(log: &mut TenantLog) -> Result<(u64, String), Failure> {
    log.checkpoint()?;
    let (size, note) = log.latest_checkpoint().ok_or_else(|| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "no checkpoint could be written".into(),
        )
    })?;
    Ok((size, note.to_owned()))
}

pub(super) async fn checkpoint(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<CheckpointParams>,
) -> Response {
    let result = async {
        let tenant = tenant_of(&state, &headers, Some(source), params.tenant.as_deref())?;
        with_log(&state, tenant, current_checkpoint).await
    }
    .await;
    match result {
        Ok((_, note)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    tenant: String,
    reason: String,
    /// Who asks (a name or ticket), recorded with the entry.
    #[serde(default)]
    by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// `POST /api/v1/export`: the bundle, streamed as it is written.
pub(super) async fn export(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let req: ExportRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ExportRequest::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                Failure(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("the body must be JSON like {{\"from\": \"2026-01-01T00:00:00Z\", \"to\": \"2026-02-01T00:00:00Z\"}}: {e}"),
                )
            })?
        };
        let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, Failure> {
            value
                .as_deref()
                .map(|v| {
                    chrono::DateTime::parse_from_rfc3339(v)
                        .ok()
                        .and_then(|t| t.timestamp_nanos_opt())
                        .ok_or_else(|| {
                            Failure(
                                StatusCode::BAD_REQUEST,
                                "invalid",
                                format!("{name} must be an RFC 3339 time, not {v:?}"),
                            )
                        })
                })
                .transpose()
        };
        let (from, to) = (time("from", &req.from)?, time("to", &req.to)?);
        let tenant = tenant_of(&state, &headers, Some(source), req.tenant.as_deref())?;
        let logs = state.logs.clone();
        let snapshot = with_log(&state, tenant.clone(), move |log| {
            // A stored checkpoint of the whole log, which the bundle's proofs are relative to.
            log.checkpoint()?;
            let public_keys = audit_store::verify::default_keys(logs.layout()).unwrap_or_default();
            audit_store::bundle::snapshot(log, &logs.identity().key, &public_keys, from, to)
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()))
        })
        .await?;
        Ok::<_, Failure>((tenant, snapshot))
    }
    .await;
    let (tenant, snapshot) = match result {
        Ok(r) => r,
        Err(failure) => return failure.into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(8);
    let logs = state.logs.clone();
    tokio::task::spawn_blocking(move || {
        let writer = std::io::BufWriter::with_capacity(256 << 10, ChannelWriter(tx.clone()));
        if let Err(error) =
            audit_store::bundle::write(logs.layout(), &snapshot, &logs.identity().key, writer)
        {
            tracing::error!(error = %error, "export failed while streaming");
            let _ = tx.blocking_send(Err(std::io::Error::other(error.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tenantscope-audit-{tenant}.tar\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// A `Write` that hands its bytes to a response body.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(axum::body::Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `POST` (place) and `DELETE` (release) `/api/v1/admin/hold`.
pub(super) async fn hold(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Response {
    let placed = request.method() == axum::http::Method::POST;
    if let Err(refused) = super::check_admin(&state, &request) {
        return *refused;
    }
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let result = async {
        let body = axum::body::to_bytes(request.into_body(), 64 << 10)
            .await
            .map_err(|e| Failure(StatusCode::PAYLOAD_TOO_LARGE, "invalid", e.to_string()))?;
        let req: HoldRequest = serde_json::from_slice(&body).map_err(|e| {
            Failure(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the body must be JSON like {{\"tenant\": \"acme\", \"reason\": \"case 42\"}}: {e}"),
            )
        })?;
        let tenant = TenantId::parse(&req.tenant)
            .map_err(|e| Failure(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
        if req.reason.trim().is_empty() || req.reason.len() > 4096 {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                "invalid",
                "reason must be 1 to 4096 bytes".into(),
            ));
        }
        let by = match req.by.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            Some(by) => format!("{} (admin, from {source})", by.chars().take(256).collect::<String>()),
            None => format!("admin, from {source}"),
        };
        let logs = state.logs.clone();
        tokio::task::spawn_blocking(move || {
            let log = logs.get(&tenant)?;
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let changed = log.set_hold(placed, &by, &req.reason)?;
            tracing::info!(tenant = %tenant, placed, changed, by = %by, reason = %req.reason, "legal hold");
            Ok::<_, Failure>(serde_json::json!({
                "tenant": tenant.as_str(),
                "hold": log.hold().is_some(),
                "changed": changed,
                "entry": log.hold().map(|h| h.seq).or(changed.then(|| log.size() - 1)),
            }))
        })
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()))?
    }
    .await;
    json_or_failure(result)
}

pub(super) async fn inclusion(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<InclusionParams>,
) -> Response {
    let result = async {
        let tenant = tenant_of(&state, &headers, Some(source), params.tenant.as_deref())?;
        let file = params.file.clone();
        with_log(&state, tenant, move |log| {
            let index = log.file(&file).map(|r| r.seq).ok_or_else(|| {
                Failure(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no entry of the log names {file:?} (paths are relative to the tenant directory, e.g. signal=logs/date=2026-12-01/<name>.parquet)"),
                )
            })?;
            let (size, note) = match params.size {
                Some(size) => (size, None),
                None => {
                    let (size, note) = current_checkpoint(log)?;
                    (size, Some(note))
                }
            };
            let proof = log.inclusion_proof(index, size)?;
            let root = log.root(size)?;
            let leaf = log.line(index)?;
            Ok(serde_json::json!({
                "file": file,
                "leaf_index": index,
                "tree_size": size,
                "leaf": String::from_utf8_lossy(&leaf),
                "leaf_hash": B64.encode(tlog_hash(&leaf)),
                "proof": proof.iter().map(|h| B64.encode(h.0)).collect::<Vec<_>>(),
                "root": B64.encode(root.0),
                "checkpoint": note,
            }))
        })
        .await
    }
    .await;
    json_or_failure(result)
}

pub(super) async fn consistency(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<ConsistencyParams>,
) -> Response {
    let result = async {
        let tenant = tenant_of(&state, &headers, Some(source), params.tenant.as_deref())?;
        with_log(&state, tenant, move |log| {
            let (to, note) = match params.to {
                Some(to) => (to, None),
                None => {
                    let (size, note) = current_checkpoint(log)?;
                    (size, Some(note))
                }
            };
            let proof = log.consistency_proof(params.from, to)?;
            let old_root = log.root(params.from)?;
            let root = log.root(to)?;
            Ok(serde_json::json!({
                "from": params.from,
                "to": to,
                "from_root": B64.encode(old_root.0),
                "root": B64.encode(root.0),
                "proof": proof.iter().map(|h| B64.encode(h.0)).collect::<Vec<_>>(),
                "checkpoint": note,
            }))
        })
        .await
    }
    .await;
    json_or_failure(result)
}

fn json_or_failure(result: Result<serde_json::Value, Failure>) -> Response {
    match result {
        Ok(value) => (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// RFC 6962 leaf hash: SHA-256(0x00 || leaf).
fn tlog_hash(leaf: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}
