//! The listeners and what serves on each: OTLP/gRPC and OTLP/HTTP (ingest), `/metrics`
//! (telemetry), the query and admin API; and [`Serving`], which stops them in the order the
//! composition root's documentation gives.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use audit_store::layout::Layout;
use audit_store::log::AuditLogs;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Core;
use crate::api;
use crate::audit;
use crate::config::{Config, Connections, IngestLimits};
use crate::ingest::grpc::ExportService;
use crate::ingest::{self, Ingest};
use crate::net;
use crate::otlp::logs::LogsRequest;
use crate::pipeline::PipelineTask;
use crate::telemetry::{self, Catalog};

/// Resolves when `rx` says stop.
pub(super) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Serves `/metrics` until the admin listeners stop.
pub(super) fn serve_metrics(
    core: &Core,
    layout: &Layout,
    (listener, connections): (TcpListener, &Connections),
    stop: &watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let data_dir = layout.data_dir().to_path_buf();
    let app = telemetry::endpoint::router(core.catalog.clone(), core.series.clone(), data_dir);
    let server = net::serve(listener, app, connections.clone(), stopped(stop.clone()));
    tokio::spawn(server)
}

/// Serves the query and admin API until the admin listeners stop.
pub(super) fn serve_api(
    state: api::ApiState,
    (listener, connections): (TcpListener, &Connections),
    stop: &watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let app = api::router(state);
    let server = net::serve(listener, app, connections.clone(), stopped(stop.clone()));
    tokio::spawn(server)
}

/// What runs until shutdown; [`Serving::until_stopped`] stops it in the order the module's
/// documentation gives.
pub(super) struct Serving {
    /// The data directory's lock, held until every file is committed and closed.
    pub(super) lock: std::fs::File,
    pub(super) grpc: JoinHandle<std::io::Result<()>>,
    pub(super) http: JoinHandle<std::io::Result<()>>,
    pub(super) metrics: JoinHandle<std::io::Result<()>>,
    pub(super) api: JoinHandle<std::io::Result<()>>,
    pub(super) pipeline: Arc<tokio::sync::Mutex<Option<PipelineTask>>>,
    pub(super) logs: Arc<AuditLogs>,
    pub(super) catalog: Catalog,
    pub(super) admin_stop: watch::Sender<bool>,
}

impl Serving {
    pub(super) async fn until_stopped(self) -> anyhow::Result<()> {
        let _lock = self.lock;
        // The receivers stop on the stop signal, letting in-flight requests finish.
        let (grpc_result, http_result) = tokio::join!(self.grpc, self.http);
        // Every receiver is gone, and with it every pipeline handle: the log thread answers what
        // it has, the flusher commits everything.
        if let Some(task) = self.pipeline.lock().await.take() {
            task.join().await.context("the pipeline failed")?;
        }
        // Everything is committed: the last checkpoint covers it.
        audit::checkpoint_now(&self.logs, &self.catalog).await;
        let _ = self.admin_stop.send(true);
        let (metrics_result, api_result) = tokio::join!(self.metrics, self.api);
        grpc_result?.context("OTLP/gRPC server failed")?;
        http_result?.context("OTLP/HTTP server failed")?;
        metrics_result?.context("metrics server failed")?;
        api_result?.context("API server failed")?;
        tracing::info!("tenantscope stopped");
        Ok(())
    }
}

/// The four listeners, bound before anything is served (port 0 works).
pub(super) struct Listeners {
    pub(super) grpc: TcpListener,
    pub(super) http: TcpListener,
    pub(super) metrics: TcpListener,
    pub(super) api: TcpListener,
}

impl Listeners {
    pub(super) async fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({what})"))
        };
        Ok(Self {
            grpc: bind(config.listen.otlp_grpc, "listen.otlp_grpc").await?,
            http: bind(config.listen.otlp_http, "listen.otlp_http").await?,
            metrics: bind(config.listen.metrics, "listen.metrics").await?,
            api: bind(config.listen.api, "listen.api").await?,
        })
    }

    /// The bound addresses: OTLP/gRPC, OTLP/HTTP, metrics, API.
    pub(super) fn addresses(
        &self,
    ) -> std::io::Result<(SocketAddr, SocketAddr, SocketAddr, SocketAddr)> {
        Ok((
            self.grpc.local_addr()?,
            self.http.local_addr()?,
            self.metrics.local_addr()?,
            self.api.local_addr()?,
        ))
    }
}

/// Serves OTLP/gRPC (logs, traces, metrics) until `stop`.
pub(super) async fn serve_grpc(
    ingest: Ingest,
    max_message: usize,
    (listener, connections): (TcpListener, Connections),
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = tonic::service::Routes::new(ExportService::<LogsRequest>::new(
        ingest.clone(),
        max_message,
    ))
    .add_service(ExportService::<ExportTraceServiceRequest>::new(
        ingest.clone(),
        max_message,
    ))
    .add_service(ExportService::<ExportMetricsServiceRequest>::new(
        ingest,
        max_message,
    ));
    net::serve(
        listener,
        routes.prepare().into_axum_router(),
        connections,
        stop,
    )
    .await
}

/// Serves OTLP/HTTP until `stop`.
pub(super) async fn serve_http(
    ingest: Ingest,
    limits: IngestLimits,
    (listener, connections): (TcpListener, Connections),
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = ingest::http::router(ingest, limits);
    net::serve(listener, app, connections, stop).await
}
