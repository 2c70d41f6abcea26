//! Payload shapes: deterministic OTLP requests built from a seed (documented in `BENCHMARKS.md`).
//!
//! | shape | records per request | per record |
//! |---|---|---|
//! | `audit-v1` | 512 log records | ~455 B on the wire: a ~150-byte templated body, severity INFO/WARN/ERROR 90/8/2 %, 8 attributes (`http.request.method`, `http.route` of 20, `http.response.status_code` (int), `user.id` of 100k, `request.id` (32 hex), `duration_ms` (double), `client.address`, `audit.action` of 10), trace and span ids, increasing timestamps |
//! | `tiny-v1` | 100 log records | ~100 B: a short body, 2 attributes |
//! | `spans-v1` | 512 spans | 10 string attributes and one span event |
//! | `events-v1` | 512 log records | `audit-v1` with `event_name` set and, in 10 % of records, a 1–4 KB JSON body |
//!
//! Every request carries one resource of one tenant (`tenant.id`, of `tenants`) with
//! `service.name` (20 values), `service.version`, `host.name` (200), `k8s.namespace.name` and
//! `k8s.pod.name`.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

/// A payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    #[value(name = "audit-v1")]
    AuditV1,
    #[value(name = "tiny-v1")]
    TinyV1,
    #[value(name = "spans-v1")]
    SpansV1,
    #[value(name = "events-v1")]
    EventsV1,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::AuditV1,
        Shape::TinyV1,
        Shape::SpansV1,
        Shape::EventsV1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::AuditV1 => "audit-v1",
            Shape::TinyV1 => "tiny-v1",
            Shape::SpansV1 => "spans-v1",
            Shape::EventsV1 => "events-v1",
        }
    }

    /// Records per request.
    pub fn records_per_request(self) -> usize {
        match self {
            Shape::TinyV1 => 100,
            _ => 512,
        }
    }

    /// The OTLP signal: `logs` or `traces`.
    pub fn signal(self) -> &'static str {
        match self {
            Shape::SpansV1 => "traces",
            _ => "logs",
        }
    }
}

/// splitmix64: small, fast and good enough to make deterministic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn bytes<const N: usize>(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(N);
        while out.len() < N {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(N);
        out
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

const ROUTES: [&str; 20] = [
    "/api/v1/accounts/{id}",
    "/api/v1/accounts/{id}/billing",
    "/api/v1/accounts/{id}/members",
    "/api/v1/invoices",
    "/api/v1/invoices/{id}",
    "/api/v1/invoices/{id}/pay",
    "/api/v1/subscriptions",
    "/api/v1/subscriptions/{id}",
    "/api/v1/subscriptions/{id}/upgrade",
    "/api/v1/users/{id}",
    "/api/v1/users/{id}/sessions",
    "/api/v1/users/{id}/tokens",
    "/api/v1/projects",
    "/api/v1/projects/{id}",
    "/api/v1/projects/{id}/settings",
    "/api/v1/exports",
    "/api/v1/exports/{id}",
    "/api/v1/audit",
    "/healthz",
    "/login",
];
const ACTIONS: [&str; 10] = [
    "account.update",
    "invoice.pay",
    "invoice.view",
    "member.invite",
    "member.remove",
    "project.create",
    "project.delete",
    "session.create",
    "subscription.upgrade",
    "token.revoke",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// The id of tenant number `n`.
pub fn tenant_name(n: usize) -> String {
    format!("tenant-{n:03}")
}

fn resource(rng: &mut Rng, tenant: usize) -> Resource {
    let service = rng.below(20);
    let host = rng.below(200);
    Resource {
        attributes: vec![
            kv("service.name", s(format!("service-{service:02}"))),
            kv(
                "service.version",
                s(format!("1.{}.{}", service % 7, service % 3)),
            ),
            kv(
                "host.name",
                s(format!("ip-10-0-{}-{}.internal", host / 50, host)),
            ),
            kv("k8s.namespace.name", s(format!("team-{}", service % 5))),
            kv(
                "k8s.pod.name",
                s(format!("service-{service:02}-7d9f8b6c4-{host:05x}")),
            ),
            kv("tenant.id", s(tenant_name(tenant))),
        ],
        ..Default::default()
    }
}

fn audit_record(rng: &mut Rng, time: u64, event: bool) -> LogRecord {
    let roll = rng.below(100);
    let (severity_number, severity_text) = match roll {
        0..90 => (9, "INFO"),
        90..98 => (13, "WARN"),
        _ => (17, "ERROR"),
    };
    let route = ROUTES[rng.below(20) as usize];
    let action = ACTIONS[rng.below(10) as usize];
    let method = METHODS[rng.below(4) as usize];
    let user = rng.below(100_000);
    let status: i64 = match severity_number {
        9 => 200,
        13 => 404,
        _ => 500,
    };
    let duration = (rng.below(250_000) as f64) / 1000.0;
    let request_id = hex::encode(rng.bytes::<16>());
    let client = format!(
        "10.{}.{}.{}",
        rng.below(256),
        rng.below(256),
        rng.below(256)
    );
    let mut body = format!(
        "{method} {route} by user u-{user:06} from {client}: {action} completed with status \
         {status} in {duration:.3} ms (session {:08x})",
        rng.next_u64() as u32
    );
    if event && rng.below(10) == 0 {
        // A 1–4 KB JSON document describing the change.
        let fields = 16 + rng.below(48) as usize;
        let mut doc = serde_json::Map::new();
        for f in 0..fields {
            doc.insert(
                format!("field_{f:02}"),
                serde_json::Value::String(format!(
                    "value-{:016x}-{}",
                    rng.next_u64(),
                    "x".repeat(24)
                )),
            );
        }
        body = serde_json::Value::Object(doc).to_string();
    }
    LogRecord {
        time_unix_nano: time,
        severity_number,
        severity_text: severity_text.into(),
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        attributes: vec![
            kv("http.request.method", s(method)),
            kv("http.route", s(route)),
            kv("http.response.status_code", Value::IntValue(status)),
            kv("user.id", s(format!("u-{user:06}"))),
            kv("request.id", s(request_id)),
            kv("duration_ms", Value::DoubleValue(duration)),
            kv("client.address", s(client)),
            kv("audit.action", s(action)),
        ],
        trace_id: rng.bytes::<16>(),
        span_id: rng.bytes::<8>(),
        event_name: if event { action.into() } else { String::new() },
        ..Default::default()
    }
}

fn tiny_record(rng: &mut Rng, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(s(format!("handled {:08x}", rng.next_u64() as u32))),
        }),
        attributes: vec![
            kv("http.route", s(ROUTES[rng.below(20) as usize])),
            kv("user.id", s(format!("u-{:05}", rng.below(100_000)))),
        ],
        ..Default::default()
    }
}

fn span(rng: &mut Rng, time: u64) -> Span {
    let duration = 1_000_000 + rng.below(200_000_000);
    let attributes = (0..10)
        .map(|i| {
            kv(
                &format!("app.attribute_{i}"),
                s(format!("value-{:x}", rng.below(1 << 20))),
            )
        })
        .collect();
    Span {
        trace_id: rng.bytes::<16>(),
        span_id: rng.bytes::<8>(),
        parent_span_id: rng.bytes::<8>(),
        name: format!(
            "{} {}",
            METHODS[rng.below(4) as usize],
            ROUTES[rng.below(20) as usize]
        ),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: time,
        end_time_unix_nano: time + duration,
        attributes,
        events: vec![span::Event {
            time_unix_nano: time + duration / 2,
            name: "cache.miss".into(),
            attributes: vec![kv("cache.key", s(format!("k-{:x}", rng.next_u64())))],
            dropped_attributes_count: 0,
        }],
        status: Some(opentelemetry_proto::tonic::trace::v1::Status {
            message: String::new(),
            code: if rng.below(50) == 0 { 2 } else { 1 },
        }),
        ..Default::default()
    }
}

/// One encoded (uncompressed) request of `shape` for `tenant`; `start` is the first record's
/// time (ns), records 1 µs apart.
pub fn request(shape: Shape, rng: &mut Rng, tenant: usize, records: usize, start: u64) -> Vec<u8> {
    let resource = Some(resource(rng, tenant));
    let time = |i: usize| start + i as u64 * 1_000;
    match shape {
        Shape::SpansV1 => ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans: (0..records).map(|i| span(rng, time(i))).collect(),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec(),
        _ => {
            let log_records = (0..records)
                .map(|i| match shape {
                    Shape::TinyV1 => tiny_record(rng, time(i)),
                    Shape::EventsV1 => audit_record(rng, time(i), true),
                    _ => audit_record(rng, time(i), false),
                })
                .collect();
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource,
                    scope_logs: vec![ScopeLogs {
                        log_records,
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
            }
            .encode_to_vec()
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The HTTP `Content-Encoding`, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    pub fn apply(self, raw: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => raw.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut enc, raw).expect("writing to memory");
                enc.finish().expect("writing to memory")
            }
            Compression::Zstd => zstd::encode_all(raw, 1).expect("writing to memory"),
        }
    }
}

/// Pre-built request bodies.
#[derive(Debug, Clone)]
pub struct Payloads {
    pub shape: Shape,
    pub records_per_request: usize,
    /// Encoded protobuf (uncompressed: gRPC compresses itself).
    pub raw: Vec<Bytes>,
    /// The same, compressed for HTTP.
    pub http: Vec<Bytes>,
}

impl Payloads {
    /// `count` requests spread over `tenants` tenants, from `seed`.
    pub fn build(
        shape: Shape,
        count: usize,
        tenants: usize,
        records_per_request: usize,
        compression: Compression,
        seed: u64,
    ) -> Self {
        Self::build_from(
            shape,
            count,
            0..tenants,
            records_per_request,
            compression,
            seed,
        )
    }

    /// [`Payloads::build`] over the tenants numbered `tenants` (`tenant-003` is 3).
    pub fn build_from(
        shape: Shape,
        count: usize,
        tenants: std::ops::Range<usize>,
        records_per_request: usize,
        compression: Compression,
        seed: u64,
    ) -> Self {
        let (first, tenants) = (tenants.start, tenants.len());
        let mut rng = Rng::new(seed);
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let raw: Vec<Bytes> = (0..count)
            .map(|i| {
                let t = start + (i * records_per_request) as u64 * 1_000;
                Bytes::from(request(
                    shape,
                    &mut rng,
                    first + i % tenants.max(1),
                    records_per_request,
                    t,
                ))
            })
            .collect();
        Self::compressed(shape, records_per_request, raw, compression)
    }

    /// One request per (tenant, day) over the `days` UTC days before today: request `i` is tenant
    /// `i % tenants` on day `i / tenants`, so cycling through them gives every tenant the same
    /// number of rows on every day (what the query benchmark needs).
    pub fn build_spread(
        shape: Shape,
        tenants: usize,
        days: u64,
        records_per_request: usize,
        compression: Compression,
        seed: u64,
    ) -> Self {
        const DAY: u64 = 86_400_000_000_000;
        let mut rng = Rng::new(seed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let today = now - now % DAY;
        let tenants = tenants.max(1);
        let raw: Vec<Bytes> = (0..tenants * days as usize)
            .map(|i| {
                let day = (i / tenants) as u64;
                // Somewhere in that day, leaving room for the records 1 µs apart.
                let offset = rng.below(DAY - records_per_request as u64 * 1_000);
                let start = today - (days - day) * DAY + offset;
                Bytes::from(request(
                    shape,
                    &mut rng,
                    i % tenants,
                    records_per_request,
                    start,
                ))
            })
            .collect();
        Self::compressed(shape, records_per_request, raw, compression)
    }

    fn compressed(
        shape: Shape,
        records_per_request: usize,
        raw: Vec<Bytes>,
        compression: Compression,
    ) -> Self {
        let http = raw
            .iter()
            .map(|r| Bytes::from(compression.apply(r)))
            .collect();
        Self {
            shape,
            records_per_request,
            raw,
            http,
        }
    }

    /// Mean uncompressed protobuf bytes per record.
    pub fn bytes_per_record(&self) -> f64 {
        let total: usize = self.raw.iter().map(Bytes::len).sum();
        total as f64 / (self.raw.len() * self.records_per_request).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_deterministic_and_sized_as_documented() {
        for shape in Shape::ALL {
            let a = Payloads::build(
                shape,
                4,
                100,
                shape.records_per_request(),
                Compression::None,
                7,
            );
            let b = Payloads::build(
                shape,
                4,
                100,
                shape.records_per_request(),
                Compression::None,
                7,
            );
            // Same seed, same records (timestamps aside: they start at the build time).
            assert_eq!(a.raw.len(), 4);
            assert_eq!(
                a.raw.iter().map(Bytes::len).collect::<Vec<_>>(),
                b.raw.iter().map(Bytes::len).collect::<Vec<_>>(),
                "{}",
                shape.name()
            );
            let per_record = a.bytes_per_record();
            let (low, high) = match shape {
                Shape::AuditV1 => (400.0, 520.0),
                Shape::TinyV1 => (70.0, 130.0),
                Shape::SpansV1 => (350.0, 700.0),
                Shape::EventsV1 => (550.0, 900.0),
            };
            assert!(
                (low..high).contains(&per_record),
                "{}: {per_record:.0} B/record",
                shape.name()
            );
        }
    }

    #[test]
    fn severities_follow_the_documented_mix() {
        let mut rng = Rng::new(1);
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            match audit_record(&mut rng, i, false).severity_number {
                9 => counts[0] += 1,
                13 => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        assert!((8_800..9_200).contains(&counts[0]), "{counts:?}");
        assert!((650..950).contains(&counts[1]), "{counts:?}");
        assert!((120..280).contains(&counts[2]), "{counts:?}");
    }
}
