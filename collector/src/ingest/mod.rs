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

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::de::DeserializeOwned;

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

    /// Validates, resolves tenants, converts and commits one decoded request.
    pub async fn export<R: ExportRequest>(
        &self,
        transport: Transport,
        tenant_header: Option<&[u8]>,
        request: R,
    ) -> Result<(), IngestError> {
        let records = request.record_count() as u64;
        let counters = self.catalog.ingest(transport, R::SIGNAL);
        counters.records_received.increment(records);
        let result = self.export_inner(tenant_header, &request).await;
        if let Err(error) = &result {
            self.log_rejection(transport, R::SIGNAL, error, header_text(tenant_header));
            counters.rejected(error.reason(), records);
        }
        result
    }

    async fn export_inner<R: ExportRequest>(
        &self,
        tenant_header: Option<&[u8]>,
        request: &R,
    ) -> Result<(), IngestError> {
        request.validate()?;
        let tenancy = RequestTenant::from_header(tenant_header)?;
        let mut converter = Converter::new(now_nanos());
        request.convert(&tenancy, &mut converter)?;
        let batches = converter
            .finish()
            .map_err(|e| IngestError::Malformed(format!("cannot convert records: {e}")))?;
        self.pipeline.submit(batches).await?;
        Ok(())
    }
}

/// An OTLP export request: what the receivers need to know about each signal.
pub trait ExportRequest: prost::Message + DeserializeOwned + Default + Send + 'static {
    type Response: prost::Message + Default + Send + 'static;
    const SIGNAL: Signal;
    /// The gRPC service name and method path.
    const GRPC_SERVICE: &'static str;
    const GRPC_PATH: &'static str;

    fn record_count(&self) -> usize;
    /// Checks what decoding does not (see [`validate`]).
    fn validate(&self) -> Result<(), IngestError>;
    /// Resolves each resource's tenant and appends its records to `converter`.
    fn convert(
        &self,
        tenancy: &RequestTenant,
        converter: &mut Converter,
    ) -> Result<(), TenancyError>;
}

impl ExportRequest for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn record_count(&self) -> usize {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }

    fn validate(&self) -> Result<(), IngestError> {
        validate::logs(self)
    }

    fn convert(
        &self,
        tenancy: &RequestTenant,
        converter: &mut Converter,
    ) -> Result<(), TenancyError> {
        for rl in &self.resource_logs {
            if rl.scope_logs.iter().all(|s| s.log_records.is_empty()) {
                continue;
            }
            let tenant =
                tenancy.resolve(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes))?;
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
        Ok(())
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn record_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    fn validate(&self) -> Result<(), IngestError> {
        validate::traces(self)
    }

    fn convert(
        &self,
        tenancy: &RequestTenant,
        converter: &mut Converter,
    ) -> Result<(), TenancyError> {
        for rs in &self.resource_spans {
            if rs.scope_spans.iter().all(|s| s.spans.is_empty()) {
                continue;
            }
            let tenant =
                tenancy.resolve(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes))?;
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
