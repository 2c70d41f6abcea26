//! Ingest: the OTLP receivers (gRPC in [`grpc`], HTTP in [`http`]) and what they share.
//!
//! Ingest only receives. [`Ingest::authenticate`] decides from the headers alone, before a
//! receiver reads the body, who the caller is (and whether a tenant the headers name is out of
//! its rate); the receiver then reads its transport: content types, decompression and size
//! bounds, decoding ([`ExportRequest`]); [`Ingest::export`] resolves each resource's tenant
//! (tenancy context), admits the request under each tenant's rate limits and hands the decoded,
//! authenticated request to the pipeline's front door
//! ([`crate::pipeline::accept::Intake`]), which validates, redacts, converts and stores it. Ingest
//! counts what happened and answers.
//!
//! Every failure is an [`IngestError`], and [`IngestError`]'s methods are the one table that maps
//! it to an HTTP status, a gRPC code and a metric label, following the OTLP specification's rules
//! on which errors are retryable.

pub mod grpc;
pub mod http;
pub mod memory;
mod signals;

use std::net::IpAddr;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument as _;

use audit_store::TenantId;
use opentelemetry_proto::tonic::common::v1::KeyValue;

pub use crate::otlp::Decoded;
use crate::otlp::{Signal, Transport};
use crate::pipeline::PipelineError;
pub use crate::pipeline::accept::Outcome;
use crate::pipeline::accept::{Accept, AcceptError, Accepted, Intake};
use crate::telemetry::Catalog;
use crate::tenancy::limits::{Demand, Quotas, RateLimited};
use crate::tenancy::{Authenticator, RequestTenant, Resolved, TenancyError, TenantState};
use memory::MemoryBudget;

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body did not arrive within `listen.body_read_timeout`.
    #[error("{0}")]
    TimedOut(String),
    /// Requests in flight hold `ingest.max_memory` already.
    #[error(
        "requests in flight hold the daemon's request memory ({limit} bytes, ingest.max_memory); \
         retry shortly"
    )]
    OutOfMemory { limit: u64 },
    #[error(
        "{what}{} exceed the limit of {limit} bytes ({key})",
        size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
    )]
    TooLarge {
        what: &'static str,
        /// The size found, when it is known.
        size: Option<u64>,
        limit: u64,
        key: &'static str,
    },
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(
        "tenant {:?} is over its rate limit ({}); retry in {:.1} s",
        .0.tenant.as_str(), .0.limit, .0.retry_after.as_secs_f64()
    )]
    RateLimited(RateLimited),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl From<crate::otlp::DecodeError> for IngestError {
    fn from(e: crate::otlp::DecodeError) -> Self {
        IngestError::Malformed(e.0)
    }
}

impl From<AcceptError> for IngestError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Convert(_) => IngestError::Malformed(e.to_string()),
            AcceptError::Pipeline(e) => IngestError::Pipeline(e),
        }
    }
}

/// The longest a request waits for room in an overloaded pipeline before it is refused: the
/// `Retry-After` it would get.
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(1);

impl IngestError {
    /// The HTTP status. 429 and 503 are retryable (with `Retry-After`); the others are not.
    pub fn http_status(&self) -> ::http::StatusCode {
        use ::http::StatusCode as S;
        match self {
            IngestError::Malformed(_) => S::BAD_REQUEST,
            IngestError::UnsupportedMediaType(_) => S::UNSUPPORTED_MEDIA_TYPE,
            IngestError::TimedOut(_) => S::REQUEST_TIMEOUT,
            IngestError::OutOfMemory { .. } => S::SERVICE_UNAVAILABLE,
            IngestError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            IngestError::Tenancy(TenancyError::Unauthenticated(_)) => S::UNAUTHORIZED,
            IngestError::Tenancy(TenancyError::Throttled { .. }) => S::TOO_MANY_REQUESTS,
            IngestError::Tenancy(e) if e.is_forbidden() => S::FORBIDDEN,
            IngestError::Tenancy(_) => S::BAD_REQUEST,
            IngestError::RateLimited(_) => S::TOO_MANY_REQUESTS,
            IngestError::Pipeline(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code. UNAVAILABLE is retryable, and RESOURCE_EXHAUSTED when it carries
    /// `RetryInfo` (see [`IngestError::retry_after`]); the others are not.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            IngestError::Malformed(_) | IngestError::UnsupportedMediaType(_) => C::InvalidArgument,
            IngestError::TimedOut(_) => C::DeadlineExceeded,
            IngestError::OutOfMemory { .. } => C::Unavailable,
            // Without RetryInfo: a request that will never fit.
            IngestError::TooLarge { .. } => C::ResourceExhausted,
            IngestError::Tenancy(TenancyError::Unauthenticated(_)) => C::Unauthenticated,
            IngestError::Tenancy(TenancyError::Throttled { .. }) => C::ResourceExhausted,
            IngestError::Tenancy(e) if e.is_forbidden() => C::PermissionDenied,
            IngestError::Tenancy(_) => C::InvalidArgument,
            IngestError::RateLimited(_) => C::ResourceExhausted,
            IngestError::Pipeline(_) => C::Unavailable,
        }
    }

    /// How long a client should wait before retrying, for retryable errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Pipeline(_) | IngestError::OutOfMemory { .. } => {
                Some(Duration::from_secs(1))
            }
            IngestError::RateLimited(r) => Some(r.retry_after),
            IngestError::Tenancy(TenancyError::Throttled { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }

    /// [`IngestError::retry_after`] in whole seconds (at least 1), for `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after()
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }

    /// The `reason` label of the rejection metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::TimedOut(_) => "timeout",
            IngestError::OutOfMemory { .. } => "memory",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::Tenancy(TenancyError::Missing) => "missing_tenant",
            IngestError::Tenancy(
                TenancyError::Mismatch { .. } | TenancyError::NotYourTenant { .. },
            ) => "tenant_mismatch",
            IngestError::Tenancy(TenancyError::Unauthenticated(_)) => "unauthenticated",
            IngestError::Tenancy(TenancyError::Throttled { .. }) => "auth_throttled",
            IngestError::Tenancy(TenancyError::Forbidden(_)) => "forbidden",
            IngestError::Tenancy(_) => "invalid_tenant",
            IngestError::RateLimited(_) => "rate_limited",
            IngestError::Pipeline(PipelineError::Store) => "store_failed",
            IngestError::Pipeline(PipelineError::LogSetAside(_)) => "log_set_aside",
            IngestError::Pipeline(_) => "overloaded",
        }
    }
}

/// What a receiver knows about a request besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMeta<'a> {
    /// The `Authorization` header (gRPC metadata `authorization`).
    pub authorization: Option<&'a [u8]>,
    /// The `X-Scope-OrgID` header (gRPC metadata `x-scope-orgid`).
    pub tenant_header: Option<&'a [u8]>,
    /// The peer's address, for the failed-authentication throttle.
    pub source: Option<IpAddr>,
    /// The daemon's own span exporter sent this ([`crate::telemetry::SELF_EXPORT_HEADER`]):
    /// handling it makes no span.
    pub self_export: bool,
}

/// What both receivers share: authentication, tenancy, admission, the hand-over to the pipeline,
/// and counting.
#[derive(Clone)]
pub struct Ingest {
    intake: Intake,
    catalog: Catalog,
    auth: Arc<Authenticator>,
    quotas: Arc<Quotas>,
    /// `ingest.max_expanded_request_size`.
    max_expanded_request_size: u64,
    /// `ingest.max_memory`: what requests in flight may hold.
    memory: Arc<MemoryBudget>,
}

impl Ingest {
    pub fn new(
        intake: Intake,
        catalog: Catalog,
        auth: Arc<Authenticator>,
        quotas: Arc<Quotas>,
        limits: &crate::config::IngestLimits,
    ) -> Self {
        Self {
            intake,
            catalog,
            auth,
            quotas,
            max_expanded_request_size: limits.max_expanded_request_size,
            memory: MemoryBudget::new(limits.max_memory),
        }
    }

    /// The budget request bodies are charged to.
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// Refuses work early while the pipeline is over its backlog bound (see
    /// [`crate::pipeline::Pipeline::overloaded`]).
    pub fn admit_load(&self) -> Result<(), IngestError> {
        if self.intake.overloaded() {
            return Err(IngestError::Pipeline(PipelineError::Overloaded));
        }
        Ok(())
    }

    /// Before a body is read: while the pipeline is over its backlog bound, the request waits
    /// (its body unread, in the kernel's buffers) up to [`OVERLOAD_WAIT`] for room, then is
    /// refused. A client that resends at once after a 503 then costs a connection and a timer,
    /// not a body read and refused: acknowledged throughput holds under retry storms.
    pub async fn wait_for_room(&self) -> Result<(), IngestError> {
        let deadline = tokio::time::Instant::now() + OVERLOAD_WAIT;
        let mut pause = Duration::from_millis(1);
        while self.intake.overloaded() {
            if tokio::time::Instant::now() + pause > deadline {
                return Err(IngestError::Pipeline(PipelineError::Overloaded));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Counts a request refused before it could be decoded.
    pub fn reject_undecoded(&self, transport: Transport, signal: Signal, error: &IngestError) {
        if let IngestError::RateLimited(r) = error {
            self.catalog.rate_limited(r.tenant.as_str(), r.limit);
        }
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

    /// Authenticates a request from its headers alone, before its body is read: an unknown or
    /// throttled key, or a tenant header the key may not use, is refused without reading,
    /// decompressing or decoding what was sent (receivers count it with
    /// [`Ingest::reject_undecoded`]).
    ///
    /// A request whose headers name its tenant is also refused here when that tenant has not a
    /// record's worth of its rate left (429 / RESOURCE_EXHAUSTED with the wait), so a client that
    /// retries at once costs the daemon the headers only.
    pub fn authenticate(&self, meta: &RequestMeta<'_>) -> Result<RequestTenant, IngestError> {
        let access = self.auth.authenticate(meta.authorization, meta.source)?;
        let tenancy = access.for_ingest(meta.tenant_header)?;
        if let Some((tenant, state)) = tenancy.named()
            && let Some(limited) =
                self.quotas
                    .exhausted(tenant, &state.policy.limits, Instant::now())
        {
            return Err(IngestError::RateLimited(limited));
        }
        Ok(tenancy)
    }

    /// Resolves the tenants of one authenticated, decoded request and admits it, hands it to the
    /// pipeline, and counts the outcome.
    pub async fn export<R: ExportRequest>(
        &self,
        transport: Transport,
        meta: RequestMeta<'_>,
        tenancy: RequestTenant,
        decoded: Decoded<R>,
    ) -> Result<Outcome, IngestError> {
        let started = Instant::now();
        let records = decoded.request.record_count() as u64 + decoded.refused;
        let counters = self.catalog.ingest(transport, R::SIGNAL);
        counters.requests.increment(1);
        counters.records_received.increment(records);
        let span = if meta.self_export {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "otlp.export",
                transport = transport.label(),
                signal = R::SIGNAL.label(),
                records,
                tenant = tracing::field::Empty,
                outcome = tracing::field::Empty,
            )
        };
        let result = self
            .export_inner(tenancy, decoded, &span)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &result {
                Ok(_) => "stored",
                Err(e) => e.reason(),
            },
        );
        counters
            .request_seconds
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(accepted) => {
                for (reason, n) in &accepted.refused {
                    counters.refused(reason, *n);
                }
                for (tenant, n) in &accepted.stored {
                    self.catalog
                        .records_accepted(transport, R::SIGNAL, tenant.as_str(), *n);
                }
            }
            Err(error) => {
                if let IngestError::RateLimited(r) = error {
                    self.catalog.rate_limited(r.tenant.as_str(), r.limit);
                }
                self.log_rejection(transport, R::SIGNAL, error, header_text(meta.tenant_header));
                counters.rejected(error.reason(), records);
            }
        }
        result.map(|accepted| accepted.outcome)
    }

    async fn export_inner<R: ExportRequest>(
        &self,
        tenancy: RequestTenant,
        decoded: Decoded<R>,
        span: &tracing::Span,
    ) -> Result<Accepted, IngestError> {
        self.admit_load()?;
        let resolved = self.admit(&tenancy, &decoded.request)?;
        let mut tenants: Vec<&str> = resolved.iter().flatten().map(|(t, _)| t.as_str()).collect();
        tenants.dedup();
        span.record("tenant", tenants.join(",").as_str());
        Ok(self.intake.accept(decoded, &resolved, now_nanos()).await?)
    }

    /// Refuses a request whose rows would repeat more resource and scope bytes than
    /// `ingest.max_expanded_request_size` (see [`ExportRequest::repeated_bytes`]).
    fn check_expansion<R: ExportRequest>(&self, request: &R) -> Result<(), IngestError> {
        let repeated = (0..request.resource_count())
            .map(|i| request.repeated_bytes(i))
            .fold(0u64, u64::saturating_add);
        if repeated <= self.max_expanded_request_size {
            return Ok(());
        }
        Err(IngestError::TooLarge {
            what: "the resource and scope attributes repeated in every stored row of the request",
            size: Some(repeated),
            limit: self.max_expanded_request_size,
            key: "ingest.max_expanded_request_size",
        })
    }

    /// Resolves each resource's tenant and takes the request's share of each tenant's rate.
    fn admit<R: ExportRequest>(
        &self,
        tenancy: &RequestTenant,
        request: &R,
    ) -> Result<Vec<Resolved>, IngestError> {
        self.check_expansion(request)?;
        let mut resolved = Vec::with_capacity(request.resource_count());
        let mut demand: Vec<(TenantId, Arc<TenantState>, u64, u64)> = Vec::new();
        for i in 0..request.resource_count() {
            let records = request.resource_records(i);
            if records == 0 {
                resolved.push(None);
                continue;
            }
            let (tenant, state) = tenancy.resolve(request.resource_attributes(i))?;
            let limits = &state.policy.limits;
            if limits.records_per_second.is_some() || limits.bytes_per_second.is_some() {
                let bytes = if limits.bytes_per_second.is_some() {
                    request.resource_bytes(i)
                } else {
                    0
                };
                match demand.iter_mut().find(|d| d.0 == tenant) {
                    Some(d) => {
                        d.2 += records;
                        d.3 += bytes;
                    }
                    None => demand.push((tenant.clone(), state.clone(), records, bytes)),
                }
            }
            resolved.push(Some((tenant, state)));
        }
        if !demand.is_empty() {
            let demands: Vec<Demand<'_>> = demand
                .iter()
                .map(|(tenant, state, records, bytes)| Demand {
                    tenant,
                    limits: &state.policy.limits,
                    records: *records,
                    bytes: *bytes,
                })
                .collect();
            self.quotas
                .admit(&demands, Instant::now())
                .map_err(IngestError::RateLimited)?;
        }
        Ok(resolved)
    }
}

/// An OTLP export request: what the receivers need to know about each signal (what the pipeline
/// does with it is [`Accept`]).
pub trait ExportRequest: Accept + Sized {
    type Response: prost::Message + Default + Send + 'static;
    /// The gRPC service name and method path.
    const GRPC_SERVICE: &'static str;
    const GRPC_PATH: &'static str;
    /// The OTLP/JSON name of the partial-success count.
    const REJECTED_FIELD: &'static str;

    /// Whether [`ExportRequest::decode_protobuf`] only indexes the request (cheap enough to run on
    /// the async runtime, without a hop to a blocking thread).
    const DECODES_IN_PLACE: bool = false;
    /// Decodes OTLP protobuf; records that cannot be decoded are refused alone where the rest
    /// of the request can be read (see [`salvage`]).
    fn decode_protobuf(bytes: bytes::Bytes) -> Result<Decoded<Self>, IngestError>;
    /// Decodes OTLP/JSON (see [`json`]).
    /// Records with invalid UTF-8 are refused alone (see [`crate::otlp::json`]).
    fn decode_json(body: &[u8]) -> Result<Decoded<Self>, String>;
    fn record_count(&self) -> usize;
    fn resource_count(&self) -> usize;
    fn resource_records(&self, i: usize) -> u64;
    fn resource_attributes(&self, i: usize) -> &[KeyValue];
    /// Protobuf size of resource `i` with its records (what a bytes/s limit counts).
    fn resource_bytes(&self, i: usize) -> u64;
    /// Bytes the stored rows of resource `i` repeat: for each of its scopes, the records times
    /// the protobuf size of the resource and scope with their schema URLs (every row carries its
    /// resource's and scope's attributes). Zero for a signal that stores no rows.
    fn repeated_bytes(&self, i: usize) -> u64;
    /// The answer to an accepted request.
    fn response(outcome: &Outcome) -> Self::Response;
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
