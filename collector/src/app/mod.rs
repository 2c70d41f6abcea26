//! The composition root: the only module that knows every context. It builds them, wires them
//! and owns the shutdown order:
//!
//! 1. stop the OTLP receivers (no new requests; in-flight ones run to their answer),
//! 2. drop the last pipeline handle: the write-ahead log thread answers its queue, the flusher
//!    commits every buffer to Parquet and the log is emptied,
//! 3. checkpoint every tenant's audit log that grew,
//! 4. stop the metrics and API listeners (they stay up while the writer drains).

mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use audit_store::layout::Layout;
use audit_store::log::AuditLogs;
use audit_store::writer::WriterOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::audit;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::pipeline::accept::Intake;
use crate::pipeline::memtable::FlushPolicy;
use crate::pipeline::{Pipeline, PipelineOptions, PipelineTask};
use crate::telemetry::Catalog;
use crate::telemetry::series::SeriesStore;
use crate::tenancy::limits::Quotas;
use crate::tenancy::reload::{ReloadOutcome, Reloader};
use crate::tenancy::{Authenticator, CaseFold, Directory, Tenants};
use serve::{Listeners, Serving, serve_api, serve_grpc, serve_http, serve_metrics, stopped};

/// A started daemon.
pub struct Running {
    /// The bound addresses (useful when the config asked for port 0).
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub metrics: SocketAddr,
    pub api: SocketAddr,
    stop: watch::Sender<bool>,
    pipeline: Arc<tokio::sync::Mutex<Option<PipelineTask>>>,
    reloader: Option<Arc<Reloader>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Commits everything acknowledged so far to Parquet now, instead of when it is due.
    pub async fn flush(&self) {
        if let Some(task) = self.pipeline.lock().await.as_ref() {
            task.flush().await;
        }
    }

    /// Reloads tenants and policies from the config file, as SIGHUP does.
    pub async fn reload(&self) -> Option<ReloadOutcome> {
        let reloader = self.reloader.clone()?;
        tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .ok()
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("daemon task failed")?
    }

    /// Waits until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Binds every listener and starts every context. Without a config file there is nothing to
/// reload; see [`start_from`].
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_from(config, None).await
}

/// [`start`] for a config read from `path`: SIGHUP (in [`run`]), `POST /admin/reload` and a
/// watch on the file reload its tenants and policies.
pub async fn start_from(config: Config, path: Option<PathBuf>) -> anyhow::Result<Running> {
    let (layout, lock) = open_data_dir(&config)?;
    let open_files = raise_open_files_limit();
    warn_if_too_few_files(open_files, config.listen.connections.max_connections);
    let catalog = Catalog::with_tenant_labels(config.metrics.max_tenant_labels);
    let (auth, reloader) = tenancy(&config, &layout, path, &catalog)?;
    let listeners = Listeners::bind(&config).await?;
    let (grpc_addr, http_addr, metrics_addr, api_addr) = listeners.addresses()?;
    let core = Core::start(&config, &layout, &catalog, &auth)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let connections = &config.listen.connections;
    let grpc = tokio::spawn(serve_grpc(
        core.ingest.clone(),
        usize::try_from(config.ingest.max_decompressed_body_size).unwrap_or(usize::MAX),
        (listeners.grpc, connections.clone()),
        stopped(stop_rx.clone()),
    ));
    let http = tokio::spawn(serve_http(
        core.ingest.clone(),
        config.ingest.clone(),
        (listeners.http, connections.clone()),
        stopped(stop_rx.clone()),
    ));
    let metrics = serve_metrics(
        &core,
        &layout,
        (listeners.metrics, connections),
        &admin_stop_rx,
    );
    let api_state = core.api_state(&config, &auth, &reloader, stop_rx)?;
    let api = serve_api(api_state, (listeners.api, connections), &admin_stop_rx);
    spawn_audit_jobs(&config, &core.logs, &auth, &catalog, &admin_stop_rx);
    if let (Some(reloader), Some(interval)) = (&reloader, config.reload.watch_interval) {
        tokio::spawn(reloader.clone().watch(interval, admin_stop_rx.clone()));
    }
    tracing::info!(
        otlp_grpc = %grpc_addr,
        otlp_http = %http_addr,
        metrics = %metrics_addr,
        api = %api_addr,
        data_dir = %config.storage.data_dir.display(),
        open_files_limit = open_files.map_or("unlimited".to_owned(), |n| n.to_string()),
        "tenantscope started"
    );
    let pipeline = core.pipeline_task.clone();
    let serving = Serving {
        lock,
        grpc,
        http,
        metrics,
        api,
        pipeline: core.pipeline_task,
        logs: core.logs,
        catalog,
        admin_stop: admin_stop_tx,
    };
    Ok(Running {
        otlp_grpc: grpc_addr,
        otlp_http: http_addr,
        metrics: metrics_addr,
        api: api_addr,
        stop: stop_tx,
        pipeline,
        reloader,
        task: tokio::spawn(serving.until_stopped()),
    })
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does at start: each
/// client connection is a file descriptor, and the common soft default (1,024) would refuse
/// clients long before anything else runs out. Returns the limit in force (`None`: unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %error, "cannot raise the open-files limit");
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Each open connection is a file: a limit below `listen.max_connections` refuses connections
/// (EMFILE) before the daemon's own bound does.
fn warn_if_too_few_files(open_files: Option<u64>, max_connections: usize) {
    if let Some(limit) = open_files.filter(|&n| n < max_connections as u64) {
        tracing::warn!(
            open_files_limit = limit,
            max_connections,
            "the open-files limit is below listen.max_connections: connections past it are \
             refused by the kernel (raise the hard limit, e.g. LimitNOFILE= in systemd)"
        );
    }
}

/// Creates the data directory and takes its lock.
fn open_data_dir(config: &Config) -> anyhow::Result<(Layout, std::fs::File)> {
    let layout = Layout::new(&config.storage.data_dir);
    std::fs::create_dir_all(layout.audit_dir()).with_context(|| {
        format!(
            "cannot create the data directory {}",
            layout.audit_dir().display()
        )
    })?;
    let lock = lock_data_dir(&layout)?;
    Ok((layout, lock))
}

/// The tenancy context: who may send and query as which tenant, and (with a config file) what
/// reloads it.
fn tenancy(
    config: &Config,
    layout: &Layout,
    path: Option<PathBuf>,
    catalog: &Catalog,
) -> anyhow::Result<(Arc<Authenticator>, Option<Arc<Reloader>>)> {
    let mut directory = Directory::build(config).context("invalid tenant configuration")?;
    let cannot = |what: &str| format!("cannot {what} in {}", layout.data_dir().display());
    if layout
        .ignores_case()
        .with_context(|| cannot("probe case"))?
    {
        let stored = layout
            .list_tenants()
            .with_context(|| cannot("list tenants"))?;
        tracing::info!(
            tenants = stored.len(),
            "the data directory ignores case: tenant ids differing only in case are refused"
        );
        directory.fold_case(Arc::new(CaseFold::new(stored)));
    }
    let auth = Arc::new(Authenticator::new(
        Tenants::new(directory),
        config.auth.max_failures_per_minute,
    ));
    let reloader = path.map(|path| {
        Arc::new(Reloader::new(
            path,
            config.clone(),
            auth.clone(),
            catalog.clone(),
        ))
    });
    Ok((auth, reloader))
}

/// The contexts behind the listeners: the audit logs, the pipeline (recovered and running), the
/// tenants' series, and ingest in front of them.
struct Core {
    logs: Arc<AuditLogs>,
    pipeline_task: Arc<tokio::sync::Mutex<Option<PipelineTask>>>,
    series: Arc<SeriesStore>,
    catalog: Catalog,
    ingest: Ingest,
}

impl Core {
    fn start(
        config: &Config,
        layout: &Layout,
        catalog: &Catalog,
        auth: &Arc<Authenticator>,
    ) -> anyhow::Result<Self> {
        let identity =
            audit::identity(config, layout).context("cannot set up checkpoint signing")?;
        let logs = Arc::new(AuditLogs::new(layout.clone(), identity));
        let (pipeline, pipeline_task) = Pipeline::spawn(
            logs.clone(),
            pipeline_options(config, layout),
            catalog.clone(),
        )?;
        let series = Arc::new(SeriesStore::new(config.metrics.clone()));
        let ingest = Ingest::new(
            Intake::new(pipeline, series.clone(), &config.ingest),
            catalog.clone(),
            auth.clone(),
            Arc::new(Quotas::default()),
            &config.ingest,
        );
        Ok(Self {
            logs,
            pipeline_task: Arc::new(tokio::sync::Mutex::new(Some(pipeline_task))),
            series,
            catalog: catalog.clone(),
            ingest,
        })
    }

    /// What the API serves from.
    fn api_state(
        &self,
        config: &Config,
        auth: &Arc<Authenticator>,
        reloader: &Option<Arc<Reloader>>,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<api::ApiState> {
        #[cfg(feature = "query")]
        let pool = api::query::QueryPool::new(config.query.threads)
            .context("cannot start the query runtime")?;
        Ok(api::ApiState {
            stopping,
            flush: flush_fn(self.pipeline_task.clone()),
            auth: auth.clone(),
            reloader: reloader.clone(),
            data_dir: config.storage.data_dir.clone(),
            limits: config.query.clone(),
            catalog: self.catalog.clone(),
            #[cfg(feature = "query")]
            pool: Arc::new(pool),
            logs: self.logs.clone(),
        })
    }
}

/// `POST /admin/flush`: commits what the pipeline holds, while it runs.
fn flush_fn(pipeline: Arc<tokio::sync::Mutex<Option<PipelineTask>>>) -> api::FlushFn {
    Arc::new(move || {
        let handle = pipeline.clone();
        Box::pin(async move {
            if let Some(task) = handle.lock().await.as_ref() {
                task.flush().await;
            }
        })
    })
}

/// The pipeline's settings, from `storage` (and `tracing`: the daemon's own spans are not traced
/// again).
fn pipeline_options(config: &Config, layout: &Layout) -> PipelineOptions {
    let storage = &config.storage;
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    PipelineOptions {
        wal_dir: layout.data_dir().join("wal"),
        wal_segment_bytes: storage.wal_segment_size,
        queue_capacity: storage.queue_capacity,
        max_buffered_bytes: as_usize(storage.max_buffered_bytes),
        flush: FlushPolicy {
            target_rows: storage.target_file_rows,
            target_bytes: as_usize(storage.target_file_buffer_bytes),
            max_age: storage.max_file_age,
            high_water_bytes: as_usize(storage.max_buffered_bytes) / 2,
        },
        writer: WriterOptions {
            zstd_level: storage.zstd_level,
            ..WriterOptions::default()
        },
        untraced_tenant: config
            .tracing
            .otlp_endpoint
            .as_ref()
            .map(|_| config.tracing.tenant.clone()),
    }
}

/// The audit log's background jobs: retention (and once at start) and checkpoints.
fn spawn_audit_jobs(
    config: &Config,
    logs: &Arc<AuditLogs>,
    auth: &Arc<Authenticator>,
    catalog: &Catalog,
    stop: &watch::Receiver<bool>,
) {
    tokio::spawn(audit::retention_job(
        logs.clone(),
        auth.clone(),
        catalog.clone(),
        config.audit.retention_interval,
        stop.clone(),
    ));
    tokio::spawn(audit::checkpoint_job(
        logs.clone(),
        catalog.clone(),
        config.audit.checkpoint_interval,
        stop.clone(),
    ));
}

/// Takes the exclusive lock on `DIR/tenantscope.lock`, held while the returned file is open: one
/// writer per data directory (a second one would interleave log segments and audit logs). The
/// daemon holds it until its last commit; `tenantscope retention` while it runs.
pub fn lock_data_dir(layout: &Layout) -> anyhow::Result<std::fs::File> {
    let lock_path = layout.data_dir().join("tenantscope.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another tenantscope is using the data directory {} (it holds {})",
            layout.data_dir().display(),
            lock_path.display()
        )
    })?;
    Ok(lock)
}

/// Starts the daemon and runs it until SIGINT or SIGTERM; SIGHUP reloads tenants and policies
/// from `path`.
///
/// `before_stop` runs once the stop signal arrives, while every listener still serves (the
/// daemon's own spans are flushed there, possibly to this very daemon).
pub async fn run(
    config: Config,
    path: Option<PathBuf>,
    before_stop: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives once "started" is logged must stop us gracefully.
    let signal = shutdown_signal()?;
    let hangup = hangup_signal()?;
    let running = start_from(config, path).await?;
    if let Some(reloader) = running.reloader.clone() {
        tokio::spawn(async move {
            let mut hangup = hangup;
            while hangup.recv().await.is_some() {
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
        });
    }
    running
        .run_until(async move {
            signal.await;
            let _ = tokio::task::spawn_blocking(before_stop).await;
        })
        .await
}

#[cfg(unix)]
fn hangup_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).context("cannot handle SIGHUP")
}

#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // Lower the soft limit first (to the common default), so that raising it is seen.
        let hard = getrlimit(Resource::Nofile).maximum;
        let lowered = Rlimit {
            current: Some(hard.map_or(1_024, |h| h.min(1_024))),
            maximum: hard,
        };
        setrlimit(Resource::Nofile, lowered).unwrap();
        let in_force = super::raise_open_files_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(in_force, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
