//! The OTLP/gRPC receiver: `LogsService/Export` and `TraceService/Export`.
//!
//! Hand-written tonic services rather than the generated ones, for two reasons. Tonic reports a
//! request it cannot decode as INTERNAL and an oversized one as OUT_OF_RANGE, but the OTLP spec
//! wants INVALID_ARGUMENT for malformed payloads, and OUT_OF_RANGE is *retryable* there, so a
//! client would resend a message that can never fit: [`fix_status`] rewrites those two codes.
//! And a request with a few undecodable records (invalid UTF-8) keeps its other records: the
//! codec decodes through [`ExportRequest::decode_protobuf`] ([`super::logs`] for logs,
//! [`super::salvage`] for the others). Everything else (gzip/zstd request compression, size limits,
//! framing) is tonic's.
//! The same service type serves `LogsService`, `TraceService` and `MetricsService`.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codec::CompressionEncoding;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

use tonic_types::{ErrorDetails, StatusExt};

use bytes::Buf;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::memory::Charge;
use super::{Decoded, ExportRequest, Ingest, IngestError, RequestMeta};
use crate::otlp::Transport;
use crate::tenancy::{RequestTenant, TENANT_HEADER};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A tonic service for one OTLP export request type.
pub struct ExportService<E> {
    ingest: Ingest,
    max_message_size: usize,
    _export: PhantomData<fn() -> E>,
}

impl<E> Clone for ExportService<E> {
    fn clone(&self) -> Self {
        Self {
            ingest: self.ingest.clone(),
            max_message_size: self.max_message_size,
            _export: PhantomData,
        }
    }
}

impl<E: ExportRequest> ExportService<E> {
    /// `max_message_size`: the largest decoded (decompressed) message accepted.
    pub fn new(ingest: Ingest, max_message_size: usize) -> Self {
        Self {
            ingest,
            max_message_size,
            _export: PhantomData,
        }
    }
}

impl<E: ExportRequest> NamedService for ExportService<E> {
    const NAME: &'static str = E::GRPC_SERVICE;
}

struct Unary<E> {
    ingest: Ingest,
    /// The caller, authenticated before the message was decoded; taken by the one call.
    tenancy: Option<RequestTenant>,
    _export: PhantomData<fn() -> E>,
}

/// Decodes requests with [`ExportRequest::decode_protobuf`] (records with invalid UTF-8 are
/// refused alone), their (decompressed) message charged to the memory budget, and encodes
/// responses with prost.
struct ExportCodec<E>(Ingest, PhantomData<fn() -> E>);

impl<E: ExportRequest> Codec for ExportCodec<E> {
    type Encode = E::Response;
    type Decode = (Decoded<E>, Charge);
    type Encoder = ProstEncoder<E::Response>;
    type Decoder = ExportDecoder<E>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportDecoder(self.0.clone(), PhantomData)
    }
}

struct ExportDecoder<E>(Ingest, PhantomData<fn() -> E>);

impl<E: ExportRequest> Decoder for ExportDecoder<E> {
    type Item = (Decoded<E>, Charge);
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // tonic holds the whole message by now (at most `max_decoding_message_size`); past the
        // budget it is dropped unread and the client told to retry.
        let mut charge = self.0.memory().start();
        if let Err(error) = charge.grow(buf.remaining() as u64) {
            self.0.reject_undecoded(Transport::Grpc, E::SIGNAL, &error);
            return Err(to_status(&error));
        }
        let bytes = buf.copy_to_bytes(buf.remaining());
        E::decode_protobuf(bytes)
            .map(|decoded| Some((decoded, charge)))
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

impl<E: ExportRequest> UnaryService<(Decoded<E>, Charge)> for Unary<E> {
    type Response = E::Response;
    type Future = BoxFuture<Result<Response<E::Response>, Status>>;

    fn call(&mut self, request: Request<(Decoded<E>, Charge)>) -> Self::Future {
        let ingest = self.ingest.clone();
        let tenancy = self.tenancy.take();
        let header = request
            .metadata()
            .get(TENANT_HEADER)
            .map(|v| v.as_bytes().to_vec());
        let self_export = request
            .metadata()
            .contains_key(crate::telemetry::SELF_EXPORT_HEADER);
        Box::pin(async move {
            let Some(tenancy) = tenancy else {
                return Err(Status::internal("a gRPC unary call was made twice"));
            };
            let meta = RequestMeta {
                tenant_header: header.as_deref(),
                self_export,
                ..RequestMeta::default()
            };
            // `_held`: the message stays charged until it is answered.
            let (decoded, _held) = request.into_inner();
            match ingest.export(Transport::Grpc, meta, tenancy, decoded).await {
                Ok(outcome) => Ok(Response::new(E::response(&outcome))),
                Err(error) => Err(to_status(&error)),
            }
        })
    }
}

/// The gRPC status of an ingest error (the table is [`IngestError::grpc_code`]). A retryable
/// error carries a `google.rpc.RetryInfo` detail: for RESOURCE_EXHAUSTED the OTLP spec makes
/// that the difference between "retry later" and "never retry".
///
/// The same `RetryInfo` also goes in a `google.rpc.retryinfo-bin` trailer, which is where the
/// Python SDK's exporter looks for it.
pub fn to_status(error: &IngestError) -> Status {
    let Some(delay) = error.retry_after() else {
        return Status::new(error.grpc_code(), error.to_string());
    };
    let mut status = Status::with_error_details(
        error.grpc_code(),
        error.to_string(),
        ErrorDetails::with_retry_info(Some(delay)),
    );
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or_default(),
        }),
    };
    status.metadata_mut().insert_bin(
        "google.rpc.retryinfo-bin",
        tonic::metadata::MetadataValue::from_bytes(&prost::Message::encode_to_vec(&info)),
    );
    status
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

impl<E, B> tower_service::Service<http::Request<B>> for ExportService<E>
where
    E: ExportRequest,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::GRPC_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let ingest = self.ingest.clone();
        let max = self.max_message_size;
        // From the headers alone: a refused caller's message is never decoded.
        let tenancy = match ingest.authenticate(&request_meta(&request)) {
            Ok(tenancy) => tenancy,
            Err(error) => {
                ingest.reject_undecoded(Transport::Grpc, E::SIGNAL, &error);
                let response = to_status(&error).into_http();
                return Box::pin(async move { Ok(response) });
            }
        };
        Box::pin(async move {
            // Waits for room before the message is read (see `Ingest::wait_for_room`).
            if let Err(error) = ingest.wait_for_room().await {
                ingest.reject_undecoded(Transport::Grpc, E::SIGNAL, &error);
                return Ok(to_status(&error).into_http());
            }
            let codec = ExportCodec::<E>(ingest.clone(), PhantomData);
            let mut grpc = Grpc::new(codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max);
            let unary = Unary::<E> {
                ingest: ingest.clone(),
                tenancy: Some(tenancy),
                _export: PhantomData,
            };
            let mut response = grpc.unary(unary, request).await;
            if fix_status(&mut response) == Some(Code::DeadlineExceeded) {
                // The body did not arrive in time (`listen.body_read_timeout`, `crate::net`).
                let error = IngestError::TimedOut("the request body arrived too late".into());
                ingest.reject_undecoded(Transport::Grpc, E::SIGNAL, &error);
            }
            Ok(response)
        })
    }
}

/// What authentication reads of a gRPC request: its `authorization` and `x-scope-orgid` metadata
/// (HTTP/2 headers) and the peer's address.
fn request_meta<B>(request: &http::Request<B>) -> RequestMeta<'_> {
    let headers = request.headers();
    RequestMeta {
        authorization: headers.get("authorization").map(|v| v.as_bytes()),
        tenant_header: headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        source: request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip()),
        self_export: headers.contains_key(crate::telemetry::SELF_EXPORT_HEADER),
    }
}

/// Rewrites the codes tonic gives undecodable (INTERNAL) and oversized (OUT_OF_RANGE) requests
/// to the ones the OTLP spec prescribes. Our own handlers never answer with either code. The
/// code answered.
fn fix_status<B>(response: &mut http::Response<B>) -> Option<Code> {
    let headers = response.headers_mut();
    let code = headers
        .get(Status::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32);
    let replacement = match code {
        Some(Code::Internal) => Code::InvalidArgument,
        Some(Code::OutOfRange) => Code::ResourceExhausted,
        code => return code,
    };
    headers.insert(Status::GRPC_STATUS, (replacement as i32).into());
    Some(replacement)
}
