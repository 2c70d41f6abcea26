//! The OTLP/HTTP receiver: `POST /v1/logs`, `POST /v1/traces` and `POST /v1/metrics`.
//!
//! Accepts `application/x-protobuf` and `application/json` (media-type parameters such as
//! `charset` are allowed), request bodies compressed with gzip, zstd or deflate, and answers in
//! the request's content type. Bounds: the body as sent is limited to `max_request_body_size`,
//! and after decompression to `max_decompressed_body_size` (both 413). Errors carry a
//! `google.rpc.Status` body, as the OTLP spec requires; retryable ones (429, 503) a
//! `Retry-After`. Records refused one by one are reported in the response's `partialSuccess`.
//! `POST /v1/metrics` takes OTLP metrics the same way.

use std::io::Read;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::memory::Charge;
use super::{Decoded, ExportRequest, Ingest, IngestError, Outcome, RequestMeta};
use crate::config::IngestLimits;
use crate::otlp::logs::LogsRequest;
use crate::otlp::{Signal, Transport};
use crate::tenancy::TENANT_HEADER;

/// The two OTLP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// Parses a `Content-Type` header: the media type, case-insensitively, ignoring parameters.
    pub fn from_content_type(value: Option<&HeaderValue>) -> Result<Self, IngestError> {
        let raw = value.and_then(|v| v.to_str().ok()).unwrap_or("");
        let media_type = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            _ => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported content type {raw:?}; use application/x-protobuf or application/json"
            ))),
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        })
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses (`details` is never set).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone)]
struct HttpState {
    ingest: Ingest,
    limits: IngestLimits,
}

/// The OTLP/HTTP routes.
pub fn router(ingest: Ingest, limits: IngestLimits) -> Router {
    Router::new()
        .route("/v1/logs", post(export::<LogsRequest>))
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .with_state(HttpState { ingest, limits })
}

async fn export<R: ExportRequest>(
    State(state): State<HttpState>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    handle::<R>(state, source, parts.headers, body).await
}

async fn handle<R: ExportRequest>(
    state: HttpState,
    source: Option<IpAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = Encoding::from_content_type(headers.get(CONTENT_TYPE));
    let meta = RequestMeta {
        authorization: headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        tenant_header: headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        source,
        self_export: headers.contains_key(crate::telemetry::SELF_EXPORT_HEADER),
    };
    // From the headers alone: a refused caller's body is never read (hyper closes the
    // connection rather than read what is left of it).
    let tenancy = match state.ingest.authenticate(&meta) {
        Ok(t) => t,
        Err(error) => {
            let answer_in = encoding.as_ref().copied().unwrap_or(Encoding::Json);
            return reject(&state.ingest, R::SIGNAL, error, answer_in);
        }
    };
    let encoding = match encoding {
        Ok(e) => e,
        Err(error) => return reject(&state.ingest, R::SIGNAL, error, Encoding::Json),
    };
    // Waits for room before the body is read; refused, the body is never read (hyper closes
    // the connection rather than read what is left of it).
    if let Err(error) = state.ingest.wait_for_room().await {
        return reject(&state.ingest, R::SIGNAL, error, encoding);
    }
    // `_held`: the request's bytes stay charged to `ingest.max_memory` until it is answered.
    let (request, _held) = match read_request::<R>(&state, &headers, body, encoding).await {
        Ok(r) => r,
        Err(error) => return reject(&state.ingest, R::SIGNAL, error, encoding),
    };
    match state
        .ingest
        .export(Transport::Http, meta, tenancy, request)
        .await
    {
        Ok(outcome) => {
            let body = match encoding {
                Encoding::Protobuf => Bytes::from(R::response(&outcome).encode_to_vec()),
                Encoding::Json => Bytes::from(json_response(R::REJECTED_FIELD, &outcome)),
            };
            ([(CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(error) => error_response(&error, encoding),
    }
}

/// Reads, bounds, decompresses and decodes a request body; its bytes charged to the memory
/// budget, as long as the returned charge lives.
async fn read_request<R: ExportRequest>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<(Decoded<R>, Charge), IngestError> {
    let compression = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let compression = match compression.as_deref() {
        None | Some("") | Some("identity") => None,
        Some(c @ ("gzip" | "x-gzip" | "zstd" | "deflate")) => Some(c.to_owned()),
        Some(other) => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "unsupported content encoding {other:?}; use gzip, zstd, deflate or none"
            )));
        }
    };
    let limits = &state.limits;
    let sent_limit = limits.max_request_body_size;
    let too_large_sent = IngestError::TooLarge {
        what: "the request body's bytes",
        size: None,
        limit: sent_limit,
        key: "ingest.max_request_body_size",
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > sent_limit) {
        return Err(too_large_sent);
    }
    let mut charge = state.ingest.memory().start();
    let bytes = read_body(body, sent_limit, &mut charge)
        .await?
        .ok_or(too_large_sent)?;
    let max_decompressed = limits.max_decompressed_body_size;
    let in_place = R::DECODES_IN_PLACE && compression.is_none() && encoding == Encoding::Protobuf;
    let decode = move || {
        let raw = decompress(compression.as_deref(), bytes, max_decompressed, &mut charge)?;
        let decoded = match encoding {
            Encoding::Protobuf => R::decode_protobuf(raw),
            Encoding::Json => R::decode_json(&raw).map_err(IngestError::Malformed),
        };
        decoded.map(|d| (d, charge))
    };
    // Indexing an uncompressed request in place costs microseconds: no thread hop for it.
    if in_place {
        return decode();
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| IngestError::Malformed(format!("decoding failed: {e}")))?
}

/// Collects a body of at most `limit` bytes (`None`: larger), charging each frame to `charge` as
/// it arrives.
async fn read_body(
    mut body: Body,
    limit: u64,
    charge: &mut Charge,
) -> Result<Option<Bytes>, IngestError> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match crate::net::body_timed_out(&e) {
            Some(message) => IngestError::TimedOut(message),
            None => IngestError::Malformed(format!("reading the request body failed: {e}")),
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len() as u64;
        if len > limit {
            return Ok(None);
        }
        charge.grow(data.len() as u64)?;
        parts.push(data);
    }
    Ok(Some(match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => Bytes::from(parts.concat()),
    }))
}

/// Decompresses `body`, charging what it makes to `charge` as it grows.
fn decompress(
    encoding: Option<&str>,
    body: Bytes,
    limit: u64,
    charge: &mut Charge,
) -> Result<Bytes, IngestError> {
    let mut reader: Box<dyn Read + '_> = match encoding {
        None => return Ok(body),
        Some("gzip" | "x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Some("zstd") => Box::new(
            zstd::stream::read::Decoder::new(&body[..])
                .map_err(|e| IngestError::Malformed(format!("invalid zstd body: {e}")))?,
        ),
        Some(other) => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "unsupported content encoding {other:?}"
            )));
        }
    };
    const STEP: u64 = 256 << 10;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
    loop {
        let read = (&mut reader)
            .take(STEP)
            .read_to_end(&mut out)
            .map_err(|e| {
                IngestError::Malformed(format!(
                    "cannot decompress the {} request body: {e}",
                    encoding.unwrap_or_default()
                ))
            })?;
        if out.len() as u64 > limit {
            return Err(IngestError::TooLarge {
                what: "the request body's bytes after decompression",
                size: None,
                limit,
                key: "ingest.max_decompressed_body_size",
            });
        }
        if read == 0 {
            break;
        }
        charge.grow(read as u64)?;
    }
    Ok(Bytes::from(out))
}

/// The OTLP/JSON answer: `{}` when everything was stored (`partialSuccess` absent, not null),
/// else the partial success with its count as a string (int64 in OTLP/JSON).
fn json_response(rejected_field: &str, outcome: &Outcome) -> Vec<u8> {
    if outcome.rejected == 0 {
        return b"{}".to_vec();
    }
    let mut partial = serde_json::Map::new();
    partial.insert(rejected_field.into(), outcome.rejected.to_string().into());
    partial.insert("errorMessage".into(), outcome.message.clone().into());
    serde_json::to_vec(&serde_json::json!({ "partialSuccess": partial })).unwrap_or_default()
}

fn reject(ingest: &Ingest, signal: Signal, error: IngestError, encoding: Encoding) -> Response {
    ingest.reject_undecoded(Transport::Http, signal, &error);
    error_response(&error, encoding)
}

fn error_response(error: &IngestError, encoding: Encoding) -> Response {
    let mut response = status_response(
        error.http_status(),
        error.grpc_code(),
        error.to_string(),
        encoding,
    );
    if let Some(secs) = error.retry_after_secs() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn status_response(
    status: StatusCode,
    code: tonic::Code,
    message: String,
    encoding: Encoding,
) -> Response {
    let rpc = RpcStatus {
        code: code as i32,
        message,
    };
    let body = match encoding {
        Encoding::Protobuf => rpc.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&rpc).unwrap_or_default(),
    };
    (status, [(CONTENT_TYPE, encoding.content_type())], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let check = |raw: &str| {
            Encoding::from_content_type(Some(&HeaderValue::from_str(raw).unwrap())).ok()
        };
        assert_eq!(check("application/x-protobuf"), Some(Encoding::Protobuf));
        assert_eq!(check("application/json"), Some(Encoding::Json));
        assert_eq!(
            check("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            check("Application/JSON;charset=UTF-8"),
            Some(Encoding::Json)
        );
        assert_eq!(check("text/plain"), None);
        assert_eq!(check("application/jsonx"), None);
        assert_eq!(Encoding::from_content_type(None).ok(), None);
    }

    #[test]
    fn decompression_is_bounded_and_charged() {
        let budget = super::super::memory::MemoryBudget::new(1 << 20);
        let mut charge = budget.start();
        let raw = vec![b'a'; 10_000];
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &raw).unwrap();
            enc.finish().unwrap()
        };
        let ok = decompress(Some("gzip"), Bytes::from(gz.clone()), 10_000, &mut charge).unwrap();
        assert_eq!(ok.len(), 10_000);
        assert_eq!(budget.used(), 10_000);
        let err = decompress(Some("gzip"), Bytes::from(gz), 9_999, &mut charge).unwrap_err();
        assert_eq!(err.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        let zst = zstd::encode_all(&raw[..], 1).unwrap();
        let zstd = decompress(Some("zstd"), Bytes::from(zst), 10_000, &mut charge).unwrap();
        assert_eq!(zstd.len(), 10_000);
        let bad = Bytes::from_static(b"not gzip");
        let err = decompress(Some("gzip"), bad, 100, &mut charge).unwrap_err();
        assert_eq!(err.http_status(), StatusCode::BAD_REQUEST);
        drop(charge);
        assert_eq!(budget.used(), 0);

        // Past the budget: 503, retryable.
        let small = super::super::memory::MemoryBudget::new(5_000);
        let mut charge = small.start();
        let zst = zstd::encode_all(&raw[..], 1).unwrap();
        let err = decompress(Some("zstd"), Bytes::from(zst), 10_000, &mut charge).unwrap_err();
        assert_eq!(err.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.retry_after().is_some());
    }
}
