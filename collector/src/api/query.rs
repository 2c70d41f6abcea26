//! `POST /api/v1/query`: a tenant's audit query over HTTP.
//!
//! Body: `{"sql": "...", "from": RFC 3339, "to": RFC 3339, "since": "24h", "format": "json",
//! "tenant": "..."}`; only `sql` is required. The caller authenticates with a tenant's `query`
//! key (the query runs for that tenant) or an admin key (the request names the tenant in
//! `tenant` or `X-Scope-OrgID`); without any key configured the tenant is named the same way and
//! the network is trusted. The answer streams as JSON Lines, CSV, Arrow IPC or Parquet, chosen
//! by `format` or else the `Accept` header. It runs through the same [`audit_store::query::run`]
//! as `tenantscope query`, under `query.memory_limit` and `query.timeout`.
//!
//! Queries run on their own small runtime ([`QueryPool`]), apart from the ingest path.
//!
//! Errors before the first row are answered with a status and `{"error": ..., "error_type":
//! ...}`: 400 invalid or refused SQL, 401, 403, 413 SQL too long, 422 memory limit, 429 too many
//! failed authentications, 503 timeout. An error after rows were sent cuts the stream short (the
//! client sees an incomplete body, never a silently truncated success).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use audit_store::TenantId;
use audit_store::layout::Layout;
use audit_store::query::RecordBatchStreamAdapter;
use audit_store::query::format::{OutputFormat, write_stream};
use audit_store::query::{QueryError, SendableRecordBatchStream, TimeRange};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tracing::Instrument as _;

use super::ApiState;
use super::request::{self, Refusal};
use crate::tenancy::TENANT_HEADER;

impl From<QueryError> for Refusal {
    fn from(e: QueryError) -> Self {
        match &e {
            QueryError::Invalid(_) => Refusal::bad(e.to_string()),
            QueryError::TooLong { .. } => {
                Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid", e.to_string())
            }
            QueryError::MemoryLimit(_) => Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "memory_limit",
                e.to_string(),
            ),
            _ => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
        }
    }
}

pub(super) async fn query(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Response {
    let catalog = state.catalog.clone();
    match run(state, request).await {
        Ok(response) => {
            catalog.queries("ok").increment(1);
            response
        }
        Err(refusal) => {
            catalog.queries(refusal.result).increment(1);
            let mut response = (
                refusal.status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({"error": refusal.message, "error_type": refusal.error_type})
                    .to_string(),
            )
                .into_response();
            if let Some(secs) = refusal.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

async fn run(state: ApiState, request: axum::extract::Request) -> Result<Response, Refusal> {
    let started = Instant::now();
    let deadline = started + state.limits.timeout;
    let query = read_query(&state, request).await?;
    let span = tracing::info_span!("query", tenant = %query.tenant, format = ?query.format);
    let (stream, first) = start_query(&state, &query, deadline)
        .instrument(span.clone())
        .await?;
    state
        .catalog
        .query_seconds()
        .record(started.elapsed().as_secs_f64());
    let schema = stream.schema();
    let stream =
        RecordBatchStreamAdapter::new(schema, futures::stream::iter(first.map(Ok)).chain(stream));
    let (tenant, format) = (query.tenant, query.format);
    span.in_scope(|| tracing::info!(tenant = %tenant, format = ?format, "query started"));
    let body = stream_body(&state, Box::pin(stream), format, deadline, tenant);
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// An authenticated query request: its tenant, SQL, time range and output format.
struct Query {
    tenant: TenantId,
    sql: String,
    range: TimeRange,
    format: OutputFormat,
}

/// Authenticates the caller and reads the request's JSON body.
async fn read_query(state: &ApiState, request: axum::extract::Request) -> Result<Query, Refusal> {
    let (parts, body) = request.into_parts();
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = &parts.headers;
    let access = state.auth.authenticate(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        source,
    )?;
    let limit = state.limits.max_sql_length.saturating_mul(2) + 4096;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid",
            format!("cannot read the request body: {e}"),
        )
    })?;
    let req = request::parse(&body, headers)?;
    let header_tenant = headers
        .get(TENANT_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let named = req.tenant.or(header_tenant);
    let tenant = access.for_query(named.as_deref())?;
    Ok(Query {
        tenant,
        sql: req.sql,
        range: req.range,
        format: req.format,
    })
}

/// Plans the query and pulls its first batch on the query pool, so a runaway query never holds
/// an ingest thread and the deadline fires even while an operator is busy; most failures still
/// get a status this way.
async fn start_query(
    state: &ApiState,
    query: &Query,
    deadline: Instant,
) -> Result<(SendableRecordBatchStream, Option<RecordBatch>), Refusal> {
    let layout = Layout::new(&state.data_dir);
    let store_limits = state.limits.store_limits();
    let (tenant, sql, range) = (query.tenant.clone(), query.sql.clone(), query.range);
    let logs = state.logs.clone();
    let mut task = state.pool.handle().spawn(
        async move {
            // The daemon's open logs: no tenant log is re-read per query.
            let source = audit_store::query::LogSource::Open(&logs);
            let mut stream =
                audit_store::query::run(&layout, source, &tenant, range, &sql, store_limits)
                    .await?;
            let first = stream.next().await.transpose()?;
            Ok::<_, QueryError>((stream, first))
        }
        .in_current_span(),
    );
    match tokio::time::timeout_at(deadline.into(), &mut task).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(join_error)) => Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            format!("the query failed: {join_error}"),
        )),
        Err(_) => {
            task.abort();
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the query did not finish within query.timeout ({})",
                    humantime::format_duration(state.limits.timeout)
                ),
            ))
        }
    }
}

/// The response body: the rest of the result, encoded in `format` on a blocking thread (on the
/// query pool's runtime) and sent in chunks as the client reads; an error or the deadline ends
/// the body with an error.
fn stream_body(
    state: &ApiState,
    stream: SendableRecordBatchStream,
    format: OutputFormat,
    deadline: Instant,
    tenant: TenantId,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let handle = state.pool.handle().clone();
    let error_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            buffer: Vec::with_capacity(CHUNK),
            tx,
        };
        let outcome = handle.block_on(tokio::time::timeout_at(
            deadline.into(),
            write_stream(stream, format, writer),
        ));
        let error = match outcome {
            Ok(Ok(_rows)) => return,
            Ok(Err(e)) => std::io::Error::other(e.to_string()),
            Err(_) => std::io::Error::other("query.timeout reached while streaming the result"),
        };
        tracing::warn!(tenant = %tenant, error = %error, "query failed while streaming");
        let _ = futures::executor::block_on(error_tx.send(Err(error)));
    });
    Body::from_stream(tokio_stream_from(rx))
}

const CHUNK: usize = 64 << 10;

/// A `Write` that sends the bytes to the response body in chunks, waiting when the client is
/// slow (so a large result never piles up in memory) and failing when it has gone.
struct ChannelWriter {
    buffer: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        // A plain executor: this runs on a blocking thread that is itself inside the runtime's
        // `block_on`, where tokio's own `blocking_send` refuses to run.
        futures::executor::block_on(self.tx.send(Ok(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The runtime queries execute on: a separate, small thread pool, so that a heavy query delays
/// other queries but never an OTLP acknowledgement.
pub struct QueryPool {
    runtime: Option<tokio::runtime::Runtime>,
}

impl QueryPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tenantscope-query")
            .enable_time()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Queries still running are abandoned, not awaited (this may run inside a runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
