//! What tenantscope's fuzz targets share: the daemon's own code, from bytes as they arrive to
//! what would be stored, with nothing but the network and the clock taken out.
//!
//! [`accept`] is what both receivers do with a decoded request (tenants resolved, records
//! checked, redacted and converted, write-ahead log records made, derived metrics and OTLP
//! metric points handed to a series store under its budgets) and then what a commit does with
//! each write-ahead log record (read it back into rows). It asserts what must hold for any
//! input: every record read back, refusals counted once. [`scratch`] is a directory for the
//! targets whose code reads files (write-ahead log replay, audit logs, Parquet).

use std::path::Path;
use std::sync::OnceLock;

use audit_store::wal::payload::{OTLP_LOGS, decode_batches};
use tenantscope::config::Config;
use tenantscope::ingest::ExportRequest;
use tenantscope::otlp::Decoded;
use tenantscope::pipeline::Record;
use tenantscope::pipeline::accept::Bounds;
use tenantscope::pipeline::log_payload::{Logged, to_sorted_batches};
use tenantscope::telemetry::series::SeriesStore;
use tenantscope::tenancy::Authenticator;
use tenantscope::tenancy::directory::{Directory, Tenants};

/// Every target's start: the default panic hook in place of libFuzzer's, which aborts on any
/// panic, even one the daemon catches on purpose (the Parquet and Arrow IPC readers can panic on
/// damaged files; `verify` and the write-ahead log's reader turn that into an error naming what
/// is damaged). A panic that escapes to libFuzzer is still a crash.
pub fn init() {
    let _ = std::panic::take_hook();
}

/// The time requests are received at (fixed, so that a crash replays exactly).
pub const RECEIVED_AT: i64 = 1_765_000_000_000_000_000;

/// The daemon's configuration under fuzzing: two tenants, one with every redaction rule, small
/// metric budgets (so that inputs reach them), default record limits.
pub const CONFIG: &str = r#"
metrics:
  max_series_per_tenant: 50
  max_series_per_metric: 20
  max_families_per_tenant: 20
  max_families: 40
tenants:
  acme:
    limits:
      max_attributes_per_record: 64
    redaction:
      drop_attributes: [password]
      replace:
        - pattern: '\b\d{4}[- ]?\d{4}\b'
          with: "[card]"
      pseudonymize: [user.id]
      hmac_key_file: HMAC_KEY_FILE
  globex:
    signals: [logs, traces]
"#;

/// What every run shares: the tenancy (built from [`CONFIG`]), the bounds and a scratch
/// directory.
pub struct Daemon {
    pub config: Config,
    pub auth: Authenticator,
    pub bounds: Bounds,
    scratch: tempfile::TempDir,
}

/// The shared [`Daemon`], built once per process.
pub fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        // In memory where there is a tmpfs: the write-ahead log's recovery fsyncs what it
        // truncates, and a disk's fsync would make those targets a hundred times slower.
        let shm = Path::new("/dev/shm");
        let scratch = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a scratch directory");
        let key = scratch.path().join("acme.hmac");
        std::fs::write(&key, "a fuzzing key of 32 bytes, fixed").expect("the key file");
        let text = CONFIG.replace("HMAC_KEY_FILE", key.to_str().expect("a UTF-8 path"));
        let config = tenantscope::config::parse(&text).expect("the fuzzing config is valid");
        let directory = Directory::build(&config).expect("the fuzzing tenants are valid");
        let auth = Authenticator::new(Tenants::new(directory), 0);
        let bounds = Bounds::new(&config.ingest, &config.metrics);
        Daemon {
            config,
            auth,
            bounds,
            scratch,
        }
    })
}

/// A directory of this process for targets that need files (emptied by the caller as needed).
pub fn scratch() -> &'static Path {
    daemon().scratch.path()
}

/// Accepts one decoded request as a receiver would, sent with `header` as `X-Scope-OrgID`, and
/// reads every write-ahead log record it makes back into rows as a commit would.
pub fn accept<R: ExportRequest>(decoded: Decoded<R>, header: Option<&[u8]>) {
    let daemon = daemon();
    let access = daemon
        .auth
        .authenticate(None, None)
        .expect("no keys are configured");
    let Ok(tenancy) = access.for_ingest(header) else {
        return;
    };
    // What admission computes (`Ingest::admit`): sizes, then each resource's tenant.
    let request = &decoded.request;
    let _repeated = (0..request.resource_count())
        .map(|i| request.repeated_bytes(i))
        .fold(0u64, u64::saturating_add);
    let mut resolved = Vec::with_capacity(request.resource_count());
    for i in 0..request.resource_count() {
        if request.resource_records(i) == 0 {
            resolved.push(None);
            continue;
        }
        let _bytes = request.resource_bytes(i);
        match tenancy.resolve(request.resource_attributes(i)) {
            Ok(tenant) => resolved.push(Some(tenant)),
            // The whole request is refused (400 / 403).
            Err(_) => return,
        }
    }
    let received = request.record_count() as u64 + decoded.refused;
    let Ok(prepared) = daemon.bounds.prepare(decoded, &resolved, RECEIVED_AT) else {
        return;
    };
    let mut rows = 0u64;
    for record in &prepared.records {
        rows += read_back(record) as u64;
    }
    let series = SeriesStore::new(daemon.config.metrics.clone());
    let accepted = prepared.stored(&series);
    let refused: u64 = accepted.refused.iter().map(|(_, n)| n).sum();
    assert_eq!(accepted.outcome.rejected, refused, "{accepted:?}");
    assert!(
        refused <= received,
        "refused {refused} of {received} records"
    );
    if R::SIGNAL != tenantscope::otlp::Signal::Metrics {
        let stored: u64 = accepted.stored.iter().map(|(_, n)| n).sum();
        assert_eq!(stored, rows, "rows stored are the rows read back");
    }
}

/// Reads a write-ahead log record back into rows as a commit does; every record the pipeline
/// made must read back whole. Returns its rows.
pub fn read_back(record: &Record) -> usize {
    let rows = batches_of(record)
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    assert_eq!(rows, record.rows, "a record's rows read back");
    rows
}

/// A write-ahead log record the pipeline made, as the rows a commit writes.
pub fn batches_of(record: &Record) -> Vec<arrow::record_batch::RecordBatch> {
    if record.payload.starts_with(&OTLP_LOGS) {
        let logged = Logged::parse(record.payload.clone()).expect("a log payload reads back");
        let (batches, converted) =
            to_sorted_batches(&record.tenant, record.table, std::slice::from_ref(&logged));
        assert_eq!(converted.unreadable, 0, "every log record converts");
        batches
    } else {
        decode_batches(record.table, record.payload.clone()).expect("a batch reads back")
    }
}

pub mod seeds;
pub mod store;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tenantscope::otlp::logs::LogsRequest;

/// How a target's input is read as a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// The first byte of an OTLP target's input: which signal the rest is (`% 3`: logs, traces,
/// metrics) and which `X-Scope-OrgID` it is sent with (`/ 3 % 3`: none, `acme`, `globex`).
pub fn selector(signal: u8, header: u8) -> u8 {
    signal + 3 * header
}

/// One OTLP request body (after the selector byte) decoded as the receivers decode it, then
/// [`accept`]ed.
pub fn otlp(data: &[u8], encoding: Encoding) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let header: Option<&[u8]> = match selector / 3 % 3 {
        0 => None,
        1 => Some(b"acme"),
        _ => Some(b"globex"),
    };
    match selector % 3 {
        0 => decode_and_accept::<LogsRequest>(body, encoding, header),
        1 => decode_and_accept::<ExportTraceServiceRequest>(body, encoding, header),
        _ => decode_and_accept::<ExportMetricsServiceRequest>(body, encoding, header),
    }
}

fn decode_and_accept<R: ExportRequest>(body: &[u8], encoding: Encoding, header: Option<&[u8]>) {
    let decoded = match encoding {
        Encoding::Protobuf => R::decode_protobuf(Bytes::copy_from_slice(body)).ok(),
        Encoding::Json => R::decode_json(body).ok(),
    };
    if let Some(decoded) = decoded {
        accept(decoded, header);
    }
}

/// A configuration file: parsed and checked as `tenantscope config check` and start-up do, and
/// its tenants built (redaction rules compiled) as start-up and every reload do.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = tenantscope::config::parse(text) {
        let _ = Directory::build(&config);
    }
}

/// `Accept` headers a query request may come with (the input's first byte picks one).
const ACCEPTS: [&str; 5] = [
    "",
    "text/csv",
    "application/vnd.apache.parquet;q=0.9, application/json",
    "*/*",
    "application/vnd.apache.arrow.stream",
];

/// A `POST /api/v1/query` body, read as the API reads it (`api::request::parse`).
pub fn query_request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    let accept = ACCEPTS[selector as usize % ACCEPTS.len()];
    if !accept.is_empty() {
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static(accept));
    }
    if let Ok(request) = tenantscope::api::request::parse(body, &headers)
        && let (Some(from), Some(to)) = (request.range.from, request.range.to)
    {
        assert!(from < to, "an accepted range is not empty");
    }
}
