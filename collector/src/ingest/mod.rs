//! Ingest: the OTLP receivers (gRPC in [`grpc`], HTTP in [`http`]) and what they share.
//!
//! A receiver decodes and bounds its input, then hands the decoded request to [`Ingest`], which
//! validates it, resolves each resource's tenant (tenancy context), converts it to record
//! batches and submits them to the pipeline. Receivers know nothing about the store; the only
//! way out of this context is [`crate::pipeline::Pipeline::submit`].
//!
//! Every failure is an [`IngestError`], and [`IngestError`]'s methods are the one table that maps
//! it to an HTTP status, a gRPC code and a metric label, following the OTLP specification's rules
//! on which errors are retryable.

pub mod grpc;
pub mod http;
pub mod json;
pub mod validate;

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::pipeline::convert::{Converter, Origin};
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::Catalog;
use crate::telemetry::catalog::{Signal, Transport};
use crate::tenancy::{RequestTenant, TenancyError};

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{what} exceeds the limit of {limit} bytes ({key})")]
    TooLarge {
        what: &'static str,
        limit: u64,
        key: &'static str,
    },
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl IngestError {
    /// The HTTP status. 503 is retryable (with `Retry-After`); the 4xx are not.
    pub fn http_status(&self) -> ::http::StatusCode {
        use ::http::StatusCode as S;
        match self {
            IngestError::Malformed(_) => S::BAD_REQUEST,
            IngestError::UnsupportedMediaType(_) => S::UNSUPPORTED_MEDIA_TYPE,
            IngestError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            IngestError::Tenancy(TenancyError::Mismatch { .. }) => S::FORBIDDEN,
            IngestError::Tenancy(_) => S::BAD_REQUEST,
            IngestError::Pipeline(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code. UNAVAILABLE is retryable; the others are not.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            IngestError::Malformed(_) | IngestError::UnsupportedMediaType(_) => C::InvalidArgument,
            // Without RetryInfo, RESOURCE_EXHAUSTED is not retryable: right for a request that
            // will never fit.
            IngestError::TooLarge { .. } => C::ResourceExhausted,
            IngestError::Tenancy(TenancyError::Mismatch { .. }) => C::PermissionDenied,
            IngestError::Tenancy(_) => C::InvalidArgument,
            IngestError::Pipeline(_) => C::Unavailable,
        }
    }

    /// Seconds a client should wait before retrying, for retryable errors.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            IngestError::Pipeline(_) => Some(1),
            _ => None,
        }
    }

    /// The `reason` label of the rejection metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::Tenancy(TenancyError::Missing) => "missing_tenant",
            IngestError::Tenancy(TenancyError::Mismatch { .. }) => "tenant_mismatch",
            IngestError::Tenancy(_) => "invalid_tenant",
            IngestError::Pipeline(PipelineError::Store) => "store_failed",
            IngestError::Pipeline(_) => "overloaded",
        }
    }
}

/// What both receivers share: validation, tenancy, conversion, submission and counting.
#[derive(Clone)]
pub struct Ingest {
    pipeline: Pipeline,
    catalog: Catalog,
}

impl Ingest {
    pub fn new(pipeline: Pipeline, catalog: Catalog) -> Self {
        Self { pipeline, catalog }
    }

    /// Counts a request refused before it could be decoded.
    pub fn reject_undecoded(&self, transport: Transport, signal: Signal, error: &IngestError) {
        self.log_rejection(transport, signal, error, None);
        self.catalog
            .ingest(transport, signal)
            .rejected(error.reason(), 0);
    }

    fn log_rejection(
        &self,
        transport: Transport,
        signal: Signal,
        error: &IngestError,
        tenant: Option<&str>,
    ) {
        tracing::debug!(
            transport = transport.label(),
            signal = signal.label(),
            reason = error.reason(),
            tenant = tenant.unwrap_or(""),
            error = %error,
            "request refused"
        );
    }

    pub async fn logs(
        &self,
        transport: Transport,
        tenant_header: Option<&[u8]>,
        request: ExportLogsServiceRequest,
    ) -> Result<(), IngestError> {
        let records: usize = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let counters = self.catalog.ingest(transport, Signal::Logs);
        counters.records_received.increment(records as u64);
        let result = self.logs_inner(tenant_header, &request).await;
        if let Err(error) = &result {
            self.log_rejection(transport, Signal::Logs, error, header_text(tenant_header));
            counters.rejected(error.reason(), records as u64);
        }
        result
    }

    async fn logs_inner(
        &self,
        tenant_header: Option<&[u8]>,
        request: &ExportLogsServiceRequest,
    ) -> Result<(), IngestError> {
        validate::logs(request)?;
        let tenancy = RequestTenant::from_header(tenant_header)?;
        let mut converter = Converter::new(now_nanos());
        for rl in &request.resource_logs {
            let attributes = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes);
            if rl.scope_logs.iter().all(|s| s.log_records.is_empty()) {
                continue;
            }
            let tenant = tenancy.resolve(attributes)?;
            for sl in &rl.scope_logs {
                let origin = Origin {
                    resource: rl.resource.as_ref(),
                    resource_schema_url: &rl.schema_url,
                    scope: sl.scope.as_ref(),
                    scope_schema_url: &sl.schema_url,
                };
                for record in &sl.log_records {
                    converter.push_log(&tenant, &origin, record);
                }
            }
        }
        let batches = converter
            .finish()
            .map_err(|e| IngestError::Malformed(format!("cannot convert records: {e}")))?;
        self.pipeline.submit(batches).await?;
        Ok(())
    }

    pub async fn traces(
        &self,
        transport: Transport,
        tenant_header: Option<&[u8]>,
        request: ExportTraceServiceRequest,
    ) -> Result<(), IngestError> {
        let records: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let counters = self.catalog.ingest(transport, Signal::Traces);
        counters.records_received.increment(records as u64);
        let result = self.traces_inner(tenant_header, &request).await;
        if let Err(error) = &result {
            self.log_rejection(transport, Signal::Traces, error, header_text(tenant_header));
            counters.rejected(error.reason(), records as u64);
        }
        result
    }

    async fn traces_inner(
        &self,
        tenant_header: Option<&[u8]>,
        request: &ExportTraceServiceRequest,
    ) -> Result<(), IngestError> {
        validate::traces(request)?;
        let tenancy = RequestTenant::from_header(tenant_header)?;
        let mut converter = Converter::new(now_nanos());
        for rs in &request.resource_spans {
            let attributes = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
            if rs.scope_spans.iter().all(|s| s.spans.is_empty()) {
                continue;
            }
            let tenant = tenancy.resolve(attributes)?;
            for ss in &rs.scope_spans {
                let origin = Origin {
                    resource: rs.resource.as_ref(),
                    resource_schema_url: &rs.schema_url,
                    scope: ss.scope.as_ref(),
                    scope_schema_url: &ss.schema_url,
                };
                for span in &ss.spans {
                    converter.push_span(&tenant, &origin, span);
                }
            }
        }
        let batches = converter
            .finish()
            .map_err(|e| IngestError::Malformed(format!("cannot convert spans: {e}")))?;
        self.pipeline.submit(batches).await?;
        Ok(())
    }
}

fn header_text(header: Option<&[u8]>) -> Option<&str> {
    header.and_then(|h| std::str::from_utf8(h).ok())
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
