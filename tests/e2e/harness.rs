//! Starting the real daemon on port 0 in a temp dir, and talking to it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tenantscope::app::{self, Running};
use tenantscope::cli::QueryArgs;
use tenantscope::config::Config;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

pub struct Daemon {
    running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    pub api: SocketAddr,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), adjust).await
    }

    /// Starts on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        config.listen.otlp_grpc = any;
        config.listen.otlp_http = any;
        config.listen.metrics = any;
        config.listen.api = any;
        config.storage.data_dir = dir.path().to_path_buf();
        adjust(&mut config);
        Self::wrap(app::start(config).await.unwrap(), dir)
    }

    /// Starts from a config file written into the data directory: `yaml` is appended to the
    /// listen and storage sections, so reloads (file watch, `Running::reload`) have a file.
    pub async fn start_from_file(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenantscope.yaml");
        let text = format!(
            "listen:\n  otlp_grpc: 127.0.0.1:0\n  otlp_http: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  api: 127.0.0.1:0\nstorage:\n  data_dir: {}\n{yaml}",
            dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        Self::wrap(app::start_from(config, Some(path)).await.unwrap(), dir)
    }

    fn wrap(running: Running, dir: tempfile::TempDir) -> Self {
        Self {
            grpc: running.otlp_grpc,
            http: running.otlp_http,
            metrics: running.metrics,
            api: running.api,
            running: Some(running),
            dir,
        }
    }

    /// The config file of [`Daemon::start_from_file`].
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("tenantscope.yaml")
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Commits everything acknowledged so far to Parquet (instead of waiting `max_file_age`).
    pub async fn flush(&self) {
        if let Some(running) = &self.running {
            running.flush().await;
        }
    }

    /// Flushes, then runs `tenantscope query --format json` for `tenant` and parses the JSON
    /// Lines.
    pub async fn query(&self, tenant: &str, sql: &str) -> Vec<serde_json::Value> {
        self.flush().await;
        query_dir(self.dir.path(), tenant, sql).await
    }

    pub async fn count(&self, tenant: &str, table: &str) -> u64 {
        let rows = self
            .query(tenant, &format!("SELECT count(*) AS n FROM {table}"))
            .await;
        rows[0]["n"].as_u64().unwrap()
    }

    /// The value of one metric series on /metrics (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, _, body) = get(self.metrics, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }
}

pub fn query_args(
    data_dir: &std::path::Path,
    tenant: &str,
    sql: &str,
    extra: &[&str],
) -> QueryArgs {
    use clap::Parser;
    let mut argv = vec![
        "tenantscope".to_owned(),
        "query".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--tenant".into(),
        tenant.into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push(sql.into());
    match tenantscope::cli::Cli::try_parse_from(argv).unwrap().command {
        Some(tenantscope::cli::Command::Query(args)) => args,
        other => panic!("not a query: {other:?}"),
    }
}

pub async fn query_dir(
    data_dir: &std::path::Path,
    tenant: &str,
    sql: &str,
) -> Vec<serde_json::Value> {
    let args = query_args(data_dir, tenant, sql, &["--format", "json"]);
    let mut out = Vec::new();
    tenantscope::cli::query(&args, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = http::Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(request.body(Full::new(Bytes::from(body))).unwrap()).await
}

pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    get_with(addr, path, &[]).await
}

pub async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(request.body(Full::new(Bytes::new())).unwrap()).await
}

async fn send(request: http::Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/otlp")
        .join(name);
    std::fs::read(path).unwrap()
}
/// Sends pre-encoded protobuf bytes, so a test can send what a real client never would.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
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
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

/// Calls a gRPC method with pre-encoded protobuf `body` and the given metadata.
pub async fn grpc_raw(
    d: &Daemon,
    path: &'static str,
    metadata: &[(&str, &str)],
    body: Vec<u8>,
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(d.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    grpc_on(channel, path, metadata, body, gzip).await
}

/// [`grpc_raw`] on an existing channel (one HTTP/2 connection, reused).
pub async fn grpc_on(
    channel: tonic::transport::Channel,
    path: &'static str,
    metadata: &[(&str, &str)],
    body: Vec<u8>,
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    if gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    for (k, v) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).unwrap();
        request.metadata_mut().insert(key, v.parse().unwrap());
    }
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
        .map(|r| r.into_inner())
}

pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// API keys of [`keyed`].
pub const ACME_INGEST: &str = "acme-ingest-key-000001";
pub const ACME_QUERY: &str = "acme-query-key-0000001";
pub const GLOBEX_KEY: &str = "globex-key-00000000001";
pub const INITECH_KEY: &str = "initech-key-0000000001";
pub const ADMIN_KEY: &str = "admin-key-000000000001";

/// The `tenants` and `auth` YAML of [`keyed`]: acme (an ingest key and a query key), globex (one
/// key with both roles), initech (disabled), and an admin key.
pub fn keyed_yaml() -> String {
    let h = tenantscope::tenancy::directory::hash_key;
    format!(
        r#"
auth:
  admin_keys: ["{admin}"]
  max_failures_per_minute: 1000
tenants:
  acme:
    keys:
      - {{hash: "{ai}", roles: [ingest]}}
      - {{hash: "{aq}", roles: [query]}}
  globex:
    keys: [{{hash: "{g}", roles: [ingest, query]}}]
  initech:
    enabled: false
    keys: [{{hash: "{i}", roles: [ingest, query]}}]
"#,
        admin = h(ADMIN_KEY.as_bytes()),
        ai = h(ACME_INGEST.as_bytes()),
        aq = h(ACME_QUERY.as_bytes()),
        g = h(GLOBEX_KEY.as_bytes()),
        i = h(INITECH_KEY.as_bytes()),
    )
}

/// Applies the `auth` and `tenants` sections of `yaml` to `config`.
pub fn apply_tenants(config: &mut Config, yaml: &str) {
    let parsed = tenantscope::config::parse(yaml).unwrap();
    config.auth = parsed.auth;
    config.tenants = parsed.tenants;
}

/// A config with keys: see [`keyed_yaml`].
pub fn keyed(config: &mut Config) {
    apply_tenants(config, &keyed_yaml());
}

/// `Authorization: Bearer <key>`.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Calls `POST /api/v1/query` with a JSON body; returns status, headers and body.
pub async fn api_query(
    d: &Daemon,
    key: Option<&str>,
    body: serde_json::Value,
    extra_headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let auth = key.map(bearer);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra_headers);
    post(
        d.api,
        "/api/v1/query",
        &headers,
        body.to_string().into_bytes(),
    )
    .await
}

/// The JSON Lines of a successful query API answer.
pub fn json_lines(body: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends the head of an OTLP/HTTP logs request announcing a `declared`-byte body plus its first
/// 64 KiB, never the rest, and returns the response head the daemon gives within 10 s (a daemon
/// waiting for the body fails the test).
pub async fn answer_before_the_body(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    declared: usize,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = String::from("POST /v1/logs HTTP/1.1\r\nHost: tenantscope\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {declared}\r\n\r\n"));
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![0u8; 64 << 10]).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_head = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_head)
        .await
        .expect("the daemon waited for the body instead of answering");
    String::from_utf8_lossy(&answer).into_owned()
}
