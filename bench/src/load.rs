//! Sending pre-built payloads over OTLP/HTTP or OTLP/gRPC and measuring the answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::shapes::{Compression, Payloads};

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Http,
    Grpc,
}

/// How to load the target.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub compression: Compression,
    pub connections: usize,
    pub duration: Duration,
    /// Open loop: requests per second over all connections. `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many requests (all connections together), even before `duration`.
    pub max_requests: Option<u64>,
    /// Closed loop: resend at once after a refusal, as a misconfigured client does, instead of
    /// pausing [`REFUSED_BACKOFF`].
    pub retry_at_once: bool,
    /// Sent as `X-Scope-OrgID` (gRPC metadata `x-scope-orgid`): the tenant every request names
    /// in its headers, so a tenant over its rate is refused before its body is read.
    pub tenant_header: Option<String>,
}

/// How long a closed-loop connection pauses after a refused request.
pub const REFUSED_BACKOFF: Duration = Duration::from_millis(100);

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Answers by status (`http 200`, `grpc Unavailable`, `error`).
    pub by_status: BTreeMap<String, u64>,
    pub records_ok: u64,
    /// Request bytes sent (as on the wire for HTTP; before gRPC's own compression).
    pub wire_bytes: u64,
    /// Latency of every successful request, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }

    pub fn records_per_second(&self) -> f64 {
        self.records_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn wire_mb_per_second(&self) -> f64 {
        self.wire_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    by_status: BTreeMap<String, u64>,
    bytes: u64,
    latencies: Vec<Duration>,
}

/// Runs the load; every connection cycles through `payloads` from its own offset.
pub async fn run(payloads: &Payloads, options: &LoadOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(!payloads.raw.is_empty(), "no payloads");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + options.duration;
    let interval = options
        .rate
        .map(|r| Duration::from_secs_f64(options.connections as f64 / r.max(1e-9)));
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let path = match payloads.shape.signal() {
        "traces" => "/v1/traces",
        _ => "/v1/logs",
    };
    let grpc_path = match payloads.shape.signal() {
        "traces" => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        _ => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    };
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..options.connections {
        let issued = issued.clone();
        let payloads = payloads.clone();
        let options = options.clone();
        let tally = tally.clone();
        let http = http.clone();
        let channel = match options.protocol {
            Protocol::Grpc => Some(
                tonic::transport::Channel::from_shared(format!("http://{}", options.target))?
                    .initial_stream_window_size(Some(4 << 20))
                    .initial_connection_window_size(Some(16 << 20))
                    .connect()
                    .await?,
            ),
            Protocol::Http => None,
        };
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            // Connections take their slots in turn (connection c is c/connections of a step
            // late), so the offered load is evenly spaced rather than bursts of one request per
            // connection at once.
            let mut intended = started
                + interval.map_or(Duration::ZERO, |step| {
                    step.mul_f64(c as f64 / options.connections as f64)
                });
            loop {
                if let Some(step) = interval {
                    // Open loop: wait for this request's slot; latency counts from the slot.
                    intended += step;
                    if intended >= until {
                        break;
                    }
                    tokio::time::sleep_until(intended.into()).await;
                } else {
                    intended = Instant::now();
                    if intended >= until {
                        break;
                    }
                }
                let number = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if options.max_requests.is_some_and(|max| number >= max) {
                    break;
                }
                let n = i % payloads.raw.len();
                i += options.connections;
                let (status, ok, bytes) = match &channel {
                    Some(channel) => {
                        let body = payloads.raw[n].clone();
                        let bytes = body.len() as u64;
                        let tenant = options.tenant_header.as_deref();
                        let (status, ok) = send_grpc(
                            channel.clone(),
                            grpc_path,
                            options.compression,
                            body,
                            tenant,
                        )
                        .await;
                        (status, ok, bytes)
                    }
                    None => {
                        let body = payloads.http[n].clone();
                        let bytes = body.len() as u64;
                        let uri = format!("http://{}{path}", options.target);
                        let tenant = options.tenant_header.as_deref();
                        let (status, ok) =
                            send_http(&http, uri, options.compression, body, tenant).await;
                        (status, ok, bytes)
                    }
                };
                let latency = intended.elapsed();
                {
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    *t.by_status.entry(status).or_default() += 1;
                    t.bytes += bytes;
                    if ok {
                        t.ok += 1;
                        t.latencies.push(latency);
                    } else {
                        t.failed += 1;
                    }
                }
                if !ok && interval.is_none() && !options.retry_at_once {
                    // Closed loop: a refused request's connection waits before its next one, as
                    // an exporter waits out Retry-After, rather than spinning on refusals.
                    tokio::time::sleep(REFUSED_BACKOFF).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    t.latencies.sort();
    Ok(Report {
        elapsed,
        requests_ok: t.ok,
        requests_failed: t.failed,
        by_status: t.by_status,
        records_ok: t.ok * payloads.records_per_request as u64,
        wire_bytes: t.bytes,
        latencies: t.latencies,
    })
}

async fn send_http(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    uri: String,
    compression: Compression,
    body: Bytes,
    tenant: Option<&str>,
) -> (String, bool) {
    let mut request = http::Request::post(uri).header("content-type", "application/x-protobuf");
    if let Some(tenant) = tenant {
        request = request.header("x-scope-orgid", tenant);
    }
    if let Some(encoding) = compression.content_encoding() {
        request = request.header("content-encoding", encoding);
    }
    let request = match request.body(Full::new(body)) {
        Ok(r) => r,
        Err(_) => return ("error".into(), false),
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status();
            let _ = response.into_body().collect().await;
            (format!("http {}", status.as_u16()), status.is_success())
        }
        Err(_) => ("error".into(), false),
    }
}

async fn send_grpc(
    channel: tonic::transport::Channel,
    path: &'static str,
    compression: Compression,
    body: Bytes,
    tenant: Option<&str>,
) -> (String, bool) {
    let mut client = tonic::client::Grpc::new(channel);
    client = match compression {
        Compression::None => client,
        Compression::Gzip => client.send_compressed(tonic::codec::CompressionEncoding::Gzip),
        Compression::Zstd => client.send_compressed(tonic::codec::CompressionEncoding::Zstd),
    };
    if client.ready().await.is_err() {
        return ("error".into(), false);
    }
    let mut request = tonic::Request::new(body);
    if let Some(value) = tenant.and_then(|t| t.parse().ok()) {
        request.metadata_mut().insert("x-scope-orgid", value);
    }
    let result = client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await;
    match result {
        Ok(_) => ("grpc Ok".into(), true),
        Err(status) => (format!("grpc {:?}", status.code()), false),
    }
}

/// Sends pre-encoded protobuf as is and ignores the answer's body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}
