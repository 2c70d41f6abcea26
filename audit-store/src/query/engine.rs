//! The DataFusion side of queries (the `query` feature): sessions that hold one tenant's tables.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, ShowKind};
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};

use crate::layout::{Layout, PARQUET_EXTENSION};
use crate::log::entry::FileEntry;
use crate::log::{AuditLogs, LogError, TenantLog};
use crate::{Table, TenantId};

use super::damage::{ScopeFiles, start_guarded};
use super::{QueryLimits, TimeRange};

pub use datafusion::error::DataFusionError;
pub use datafusion::execution::SendableRecordBatchStream;
pub use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is not valid or not allowed (DDL, DML, unknown table or column...).
    #[error("invalid query: {0}")]
    Invalid(String),
    #[error("reading the audit store failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the SQL text is {len} bytes long; the limit is {max} (query.max_sql_length)")]
    TooLong { len: usize, max: usize },
    #[error("the query needs more memory than query.memory_limit allows: {0}")]
    MemoryLimit(String),
    #[error("query execution failed: {0}")]
    Execution(DataFusionError),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(what) => QueryError::MemoryLimit(what.clone()),
            _ => QueryError::Execution(e),
        }
    }
}

/// The one way to run a tenant's query, shared by the CLI and the HTTP API: opens the tenant's
/// scope over `range` and starts `sql` under `limits`.
pub async fn run(
    layout: &Layout,
    source: LogSource<'_>,
    tenant: &TenantId,
    range: TimeRange,
    sql: &str,
    limits: QueryLimits,
) -> Result<SendableRecordBatchStream, QueryError> {
    if let Some(max) = limits.max_sql_length
        && sql.len() > max
    {
        return Err(QueryError::TooLong {
            len: sql.len(),
            max,
        });
    }
    let scope = TenantScope::open_with(layout, source, tenant, range, limits).await?;
    scope.execute(sql).await
}

/// Where a query finds the files a tenant's audit log names.
#[derive(Debug, Clone, Copy)]
pub enum LogSource<'a> {
    /// The tenant's log read from disk for this query (the offline commands).
    Disk,
    /// The daemon's open logs, which its commits and retention keep current: no log file is
    /// parsed per query; the files are picked by a scan of the in-memory index. A tenant whose
    /// log is not open is read from disk.
    Open(&'a AuditLogs),
}

impl LogSource<'_> {
    /// The files of each table whose time range meets `range`, and whose path is one the
    /// layout builds for that table (an edited entry cannot point elsewhere).
    fn files(
        self,
        layout: &Layout,
        tenant: &TenantId,
        range: &TimeRange,
    ) -> Result<Vec<(Table, FileEntry)>, QueryError> {
        let opened = match self {
            LogSource::Open(logs) => logs.get_opened(tenant),
            LogSource::Disk => None,
        };
        let pick = |log: &TenantLog| {
            Table::ALL
                .into_iter()
                .flat_map(|table| {
                    log.files(table)
                        .filter(move |f| {
                            crate::layout::parse_file_path(&f.path).is_some_and(|(t, _)| t == table)
                        })
                        .filter(|f| range.overlaps(f.min_timestamp, f.max_timestamp))
                        .map(move |f| (table, f.clone()))
                })
                .collect()
        };
        Ok(match opened {
            Some(log) => pick(&log.lock().unwrap_or_else(|e| e.into_inner())),
            None => pick(&TenantLog::read(layout, tenant)?),
        })
    }
}

/// A query session that holds one tenant's tables and nothing else.
pub struct TenantScope {
    tenant: TenantId,
    ctx: SessionContext,
    /// The files the tables read, to name a damaged one when reading fails.
    files: ScopeFiles,
}

impl TenantScope {
    /// Builds the session for `tenant` over `range`. A tenant without data gets empty tables.
    pub async fn open(
        layout: &Layout,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Self, QueryError> {
        Self::open_with(
            layout,
            LogSource::Disk,
            tenant,
            range,
            QueryLimits::default(),
        )
        .await
    }

    /// [`TenantScope::open`] with a memory limit.
    pub async fn open_with(
        layout: &Layout,
        source: LogSource<'_>,
        tenant: &TenantId,
        range: TimeRange,
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(2);
        // No spilling: a query over its memory limit fails instead of filling the disk with
        // temporary copies of a tenant's data.
        let mut runtime = RuntimeEnvBuilder::new().with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
        if let Some(limit) = limits.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        let named = source.files(layout, tenant, &range)?;
        let mut files = Vec::new();
        for table in Table::ALL {
            let entries = named.iter().filter(|(t, _)| *t == table).map(|(_, f)| f);
            let provider = table_provider(layout, tenant, table, entries, &mut files)?;
            let mut frame = ctx.read_table(provider)?;
            if let Some(filter) = time_filter(&range) {
                frame = frame.filter(filter)?;
            }
            ctx.register_table(table.name(), frame.into_view())?;
        }
        Ok(Self {
            tenant: tenant.clone(),
            ctx,
            files: Arc::new(files),
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Plans and starts `sql`. Only queries are allowed: DDL, DML and statements (`SET`,
    /// `COPY`, `CREATE EXTERNAL TABLE`...) are refused.
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        let options = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = async {
            let plan = self.ctx.state().create_logical_plan(sql).await?;
            options.verify_plan(&plan)?;
            refuse_show(&plan)?;
            self.ctx.execute_logical_plan(plan).await
        }
        .await
        // Everything that fails before execution is the query's fault.
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        Ok(start_guarded(frame.execute_stream(), self.files.clone()).await?)
    }
}

/// `SHOW TABLES`, `SHOW CREATE TABLE`, `SHOW ALL` and `SHOW FUNCTIONS` are refused: they tell
/// about the session, not the tenant's rows (DataFusion 56 plans them without the information
/// schema, which 55 required and which is off here). `DESCRIBE` and `SHOW COLUMNS` name a
/// table's columns and stay.
fn refuse_show(plan: &LogicalPlan) -> datafusion::error::Result<()> {
    let refused = plan.exists(|node| {
        Ok(matches!(
            node,
            LogicalPlan::Show(show)
                if !matches!(show.kind, ShowKind::Describe { .. } | ShowKind::Columns { .. })
        ))
    })?;
    if refused {
        return datafusion::common::plan_err!(
            "only queries over logs, spans and events are allowed, and DESCRIBE"
        );
    }
    Ok(())
}

/// A table over `entries`, files of `table` the tenant's log names.
fn table_provider<'e>(
    layout: &Layout,
    tenant: &TenantId,
    table: Table,
    entries: impl Iterator<Item = &'e FileEntry>,
    files: &mut Vec<(std::path::PathBuf, FileEntry)>,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let schema: SchemaRef = table.schema();
    let tenant_dir = std::path::absolute(layout.tenant_dir(tenant))?;
    let urls = entries
        .map(|f| {
            crate::layout::no_links(&tenant_dir, &f.path).map_err(QueryError::Invalid)?;
            let path = tenant_dir.join(&f.path);
            files.push((path.clone(), f.clone()));
            ListingTableUrl::parse(path.to_string_lossy()).map_err(QueryError::Execution)
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    if urls.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(PARQUET_EXTENSION)
        // Every file is written sorted by time (see `writer`).
        .with_file_sort_order(vec![vec![col("timestamp").sort(true, false)]]);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The `timestamp` filter of `range`, `None` for all of time.
fn time_filter(range: &TimeRange) -> Option<Expr> {
    let bound = |t: DateTime<Utc>| {
        lit(ScalarValue::TimestampNanosecond(
            t.timestamp_nanos_opt(),
            Some("UTC".into()),
        ))
    };
    let from = range.from.map(|f| col("timestamp").gt_eq(bound(f)));
    let to = range.to.map(|t| col("timestamp").lt(bound(t)));
    match (from, to) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    }
}
