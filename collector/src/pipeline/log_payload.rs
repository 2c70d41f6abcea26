//! Log records as the write-ahead log keeps them: OTLP protobuf, converted to Arrow only when
//! their Parquet file is written.
//!
//! At ingest, [`LogPayloads`] gathers the records a request has accepted (validated, and redacted
//! for tenants with rules) into one payload per tenant and table: an `ExportLogsServiceRequest`
//! holding the request's resources and scopes with only those records, framed by
//! [`OtlpLogs`]. A record read in place is copied as the bytes it came in; one prost had to
//! decode (and perhaps redact) is encoded again. At commit, [`for_each_sorted_batch`] reads a
//! buffer's payloads back through the same in-place reader and [`Converter`], so a record is stored
//! exactly as it would have been converted at ingest — with the receive time and redaction policy
//! of its request — and converts them in time order: the Parquet writer then finds one sorted
//! batch and writes it as it is (gathering rows from many small batches cost 11–19 % of the
//! daemon's CPU).
//!
//! Why not Arrow at ingest: an audit-v1 record is ~460 bytes of protobuf and ~785 of Arrow IPC,
//! and the log's write into the page cache was the largest single cost of an acknowledgement.

use std::ops::Range;

use arrow::array::RecordBatch;
use audit_store::wal::payload::OtlpLogs;
use audit_store::{Table, TenantId};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::Record;
use super::convert::{Converter, Origin};
use crate::otlp::logs::{self, LogsRequest, ViewRecord};

/// Protobuf keys of the length-delimited fields used here: field 1, 2 and 3.
const FIELD_1: u8 = 0x0a;
const FIELD_2: u8 = 0x12;
const FIELD_3: u8 = 0x1a;

/// The accepted log records of one request, by tenant and table.
pub struct LogPayloads {
    received_at: i64,
    request: Bytes,
    /// Records that are not in the request as they are stored (decoded by prost, redacted).
    owned: Vec<u8>,
    resources: Vec<PendingResource>,
}

struct PendingResource {
    tenant: TenantId,
    redaction_policy: String,
    resource: Option<Vec<u8>>,
    schema_url: String,
    scopes: Vec<PendingScope>,
}

struct PendingScope {
    scope: Option<Vec<u8>>,
    schema_url: String,
    records: Vec<(Table, Piece)>,
}

#[derive(Clone)]
enum Piece {
    Request(Range<usize>),
    Owned(Range<usize>),
}

impl LogPayloads {
    /// `request`: the bytes the records' ranges are in.
    pub fn new(received_at: i64, request: Bytes) -> Self {
        Self {
            received_at,
            request,
            owned: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// Starts a resource (as stored: after redaction) of `tenant`.
    pub fn resource(
        &mut self,
        tenant: &TenantId,
        redaction_policy: &str,
        resource: Option<&Resource>,
        schema_url: &str,
    ) {
        self.resources.push(PendingResource {
            tenant: tenant.clone(),
            redaction_policy: redaction_policy.to_owned(),
            resource: resource.map(Message::encode_to_vec),
            schema_url: schema_url.to_owned(),
            scopes: Vec::new(),
        });
    }

    /// Starts a scope of the current resource.
    pub fn scope(&mut self, scope: Option<&InstrumentationScope>, schema_url: &str) {
        if let Some(resource) = self.resources.last_mut() {
            resource.scopes.push(PendingScope {
                scope: scope.map(Message::encode_to_vec),
                schema_url: schema_url.to_owned(),
                records: Vec::new(),
            });
        }
    }

    /// Adds a record of the current scope that is stored as it is in the request.
    pub fn record(&mut self, table: Table, range: Range<usize>) {
        self.push(table, Piece::Request(range));
    }

    /// Adds a record of the current scope as `record` says (decoded, perhaps redacted).
    pub fn owned_record(&mut self, table: Table, record: &LogRecord) {
        let start = self.owned.len();
        record.encode_raw(&mut self.owned);
        let end = self.owned.len();
        self.push(table, Piece::Owned(start..end));
    }

    fn push(&mut self, table: Table, piece: Piece) {
        if let Some(scope) = self.resources.last_mut().and_then(|r| r.scopes.last_mut()) {
            scope.records.push((table, piece));
        }
    }

    fn bytes(&self, piece: &Piece) -> &[u8] {
        match piece {
            Piece::Request(r) => &self.request[r.clone()],
            Piece::Owned(r) => &self.owned[r.clone()],
        }
    }

    /// One log record per tenant and table that has records, in the order they first appear.
    pub fn finish(self) -> Vec<Record> {
        let mut keys: Vec<(&TenantId, Table, &str)> = Vec::new();
        for resource in &self.resources {
            for (table, _) in resource.scopes.iter().flat_map(|s| &s.records) {
                if !keys
                    .iter()
                    .any(|(t, tb, _)| *t == &resource.tenant && tb == table)
                {
                    keys.push((&resource.tenant, *table, &resource.redaction_policy));
                }
            }
        }
        keys.into_iter()
            .map(|(tenant, table, policy)| {
                let mut payload = Vec::new();
                OtlpLogs::begin(&mut payload, self.received_at, policy);
                let mut rows = 0;
                for resource in self.resources.iter().filter(|r| &r.tenant == tenant) {
                    rows += self.write_resource(resource, table, &mut payload);
                }
                OtlpLogs::set_rows(&mut payload, u32::try_from(rows).unwrap_or(u32::MAX));
                Record {
                    tenant: tenant.clone(),
                    table,
                    rows,
                    payload,
                }
            })
            .collect()
    }

    /// Writes `resource` with its records of `table` (nothing when it has none); their count.
    fn write_resource(&self, resource: &PendingResource, table: Table, out: &mut Vec<u8>) -> usize {
        let scope_lens: Vec<(usize, usize)> = resource
            .scopes
            .iter()
            .map(|scope| {
                let (mut rows, mut len) = (0, 0);
                for (_, piece) in scope.records.iter().filter(|(t, _)| *t == table) {
                    rows += 1;
                    len += field_len(self.bytes(piece).len());
                }
                if rows > 0 {
                    len += optional_len(scope.scope.as_deref()) + string_len(&scope.schema_url);
                }
                (rows, len)
            })
            .collect();
        let rows: usize = scope_lens.iter().map(|(rows, _)| rows).sum();
        if rows == 0 {
            return 0;
        }
        let len = optional_len(resource.resource.as_deref())
            + scope_lens
                .iter()
                .filter(|(rows, _)| *rows > 0)
                .map(|(_, len)| field_len(*len))
                .sum::<usize>()
            + string_len(&resource.schema_url);
        out.reserve(field_len(len));
        put_header(FIELD_1, len, out);
        if let Some(r) = &resource.resource {
            put_field(FIELD_1, r, out);
        }
        for (scope, (scope_rows, scope_len)) in resource.scopes.iter().zip(&scope_lens) {
            if *scope_rows == 0 {
                continue;
            }
            put_header(FIELD_2, *scope_len, out);
            if let Some(s) = &scope.scope {
                put_field(FIELD_1, s, out);
            }
            for (_, piece) in scope.records.iter().filter(|(t, _)| *t == table) {
                put_field(FIELD_2, self.bytes(piece), out);
            }
            if !scope.schema_url.is_empty() {
                put_field(FIELD_3, scope.schema_url.as_bytes(), out);
            }
        }
        if !resource.schema_url.is_empty() {
            put_field(FIELD_3, resource.schema_url.as_bytes(), out);
        }
        rows
    }
}

fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn optional_len(message: Option<&[u8]>) -> usize {
    message.map_or(0, |m| field_len(m.len()))
}

fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

fn put_header(key: u8, len: usize, out: &mut Vec<u8>) {
    out.push(key);
    encode_varint(len as u64, out);
}

fn put_field(key: u8, bytes: &[u8], out: &mut Vec<u8>) {
    put_header(key, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// What reading logged payloads back gave.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    pub rows: usize,
    /// Records the payloads name but that could not be read (damage since they were logged).
    pub unreadable: usize,
}

/// A payload [`LogPayloads`] wrote, read back: its request indexed, its framing.
pub struct Logged {
    request: LogsRequest,
    rows: usize,
    received_at: i64,
    redaction_policy: String,
}

impl Logged {
    /// Reads a payload's framing and indexes its request; an error when it cannot be read at all.
    pub fn parse(payload: Vec<u8>) -> Result<Self, String> {
        let (rows, received_at, redaction_policy, offset) = match OtlpLogs::parse(&payload) {
            Some(Ok(h)) => (
                h.rows as usize,
                h.received_at,
                h.redaction_policy.to_owned(),
                h.request_offset(&payload),
            ),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("not an OTLP logs payload".into()),
        };
        let request = LogsRequest::parse(Bytes::from(payload).slice(offset..))
            .ok_or("the logged request cannot be read as OTLP")?;
        Ok(Self {
            request,
            rows,
            received_at,
            redaction_policy,
        })
    }

    /// The rows its framing announces.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Rows converted into one batch at commit. A commit holds one such batch at a time (it goes
/// straight into the Parquet writer): 4,096 audit-v1 rows are ~4 MiB of builders, where 16,384
/// were 16 MiB; the writer encodes pages across batches, so the files are the same.
pub const COMMIT_BATCH_ROWS: usize = 4096;

/// A batch at commit also ends once its rows hold this many bytes (records and the attributes of
/// their resources and scopes, which every row repeats): a request with a large resource
/// attribute then cannot make a batch of thousands of copies of it, nor overflow Arrow's 32-bit
/// string offsets (2 GiB).
pub const COMMIT_BATCH_BYTES: usize = 64 << 20;

/// Converts the records of `logged` (payloads of `tenant` and `table`), all of them ordered by
/// time, into batches of at most [`COMMIT_BATCH_ROWS`] rows (and about [`COMMIT_BATCH_BYTES`]),
/// each following the last in time: the Parquet writer finds them sorted and writes them as
/// they are instead of gathering rows from many small batches.
pub fn to_sorted_batches(
    tenant: &TenantId,
    table: Table,
    logged: &[Logged],
) -> (Vec<RecordBatch>, Converted) {
    let mut batches = Vec::new();
    let converted = for_each_sorted_batch(tenant, table, logged, |batch| {
        batches.push(batch);
        Ok::<_, std::convert::Infallible>(())
    });
    let Ok(converted) = converted;
    (batches, converted)
}

/// Like [`to_sorted_batches`], but hands each batch to `sink` as soon as it is built, so that
/// only one batch is in memory at a time; stops at `sink`'s first error.
pub fn for_each_sorted_batch<E>(
    tenant: &TenantId,
    table: Table,
    logged: &[Logged],
    mut sink: impl FnMut(RecordBatch) -> Result<(), E>,
) -> Result<Converted, E> {
    let mut sorted = Sorted::new(tenant, table, logged);
    let limit = Limit {
        rows: COMMIT_BATCH_ROWS,
        bytes: COMMIT_BATCH_BYTES,
    };
    let mut total = Converted::default();
    while !sorted.is_done() {
        let mut converter = Converter::new(0);
        let converted = sorted.convert(limit, &mut converter);
        total.unreadable += converted.unreadable;
        match converter.finish() {
            Ok(out) => {
                total.rows += converted.rows;
                for batch in out {
                    sink(batch.batch)?;
                }
            }
            Err(error) => {
                tracing::error!(tenant = %tenant, error = %error, "cannot build a batch of logged records");
                total.unreadable += converted.rows;
            }
        }
    }
    total.unreadable += unannounced(logged, total);
    Ok(total)
}

/// Converts the records of `logged` (payloads of `tenant` and `table`) into `converter`, all of
/// them ordered by time.
pub fn convert_sorted(
    tenant: &TenantId,
    table: Table,
    logged: &[Logged],
    converter: &mut Converter,
) -> Converted {
    let limit = Limit {
        rows: usize::MAX,
        bytes: usize::MAX,
    };
    let mut converted = Sorted::new(tenant, table, logged).convert(limit, converter);
    converted.unreadable += unannounced(logged, converted);
    converted
}

/// Rows the payloads' framing announces that their requests do not hold (cut short).
fn unannounced(logged: &[Logged], seen: Converted) -> usize {
    let announced: usize = logged.iter().map(|l| l.rows).sum();
    announced.saturating_sub(seen.rows + seen.unreadable)
}

/// When [`Sorted::convert`] ends a batch.
#[derive(Clone, Copy)]
struct Limit {
    rows: usize,
    bytes: usize,
}

/// The records of some payloads of one tenant and table, converted in time order (stable:
/// records of one time keep log order), batch after batch.
struct Sorted<'a> {
    tenant: &'a TenantId,
    table: Table,
    logged: &'a [Logged],
    /// The scopes that have records, as (payload, resource, scope).
    scopes: Vec<(u32, u32, u32)>,
    /// Every record, ordered by time.
    records: Vec<Row<'a>>,
    /// How many of `records` are converted.
    done: usize,
    /// Per scope, its resource and scope converted (at its first record) and the bytes every
    /// row of it repeats. Kept across batches: records in time order alternate between
    /// requests, and converting them again per batch was 10 % of a commit.
    origins: Vec<Option<(Origin<'a>, usize)>>,
}

/// A record to convert: its time (the ordering hint), its scope (index in `Sorted::scopes`) and
/// its bytes — found directly, not through the request's index: records are visited in time
/// order, jumping between requests, where every indirection is a cache miss.
struct Row<'a> {
    time: i64,
    scope: u32,
    raw: &'a [u8],
}

impl<'a> Sorted<'a> {
    fn new(tenant: &'a TenantId, table: Table, logged: &'a [Logged]) -> Self {
        let mut scopes = Vec::new();
        let mut records = Vec::with_capacity(logged.iter().map(|l| l.rows).sum());
        for (p, payload) in logged.iter().enumerate() {
            for (r, resource) in payload.request.resources.iter().enumerate() {
                for (s, scope) in resource.scopes.iter().enumerate() {
                    let id = scopes.len() as u32;
                    scopes.push((p as u32, r as u32, s as u32));
                    for range in &scope.records {
                        let raw = payload.request.raw(range);
                        records.push(Row {
                            // Only a hint: the writer checks the converted timestamps' order.
                            time: logs::record_time(raw, payload.received_at),
                            scope: id,
                            raw,
                        });
                    }
                }
            }
        }
        records.sort_by_key(|row| row.time);
        Self {
            tenant,
            table,
            logged,
            origins: std::iter::repeat_with(|| None).take(scopes.len()).collect(),
            scopes,
            records,
            done: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.done == self.records.len()
    }

    /// Converts the next records in time order into `converter`, until `limit`.
    fn convert(&mut self, limit: Limit, converter: &mut Converter) -> Converted {
        let mut converted = Converted::default();
        let mut attributes = Vec::new();
        let mut bytes = 0;
        for row in &self.records[self.done..] {
            if converted.rows >= limit.rows || bytes >= limit.bytes {
                break;
            }
            self.done += 1;
            let (id, raw) = (row.scope, row.raw);
            let (p, r, s) = self.scopes[id as usize];
            let payload: &'a Logged = &self.logged[p as usize];
            let (origin, repeated) = self.origins[id as usize].get_or_insert_with(|| {
                let resource = &payload.request.resources[r as usize];
                let scope = &resource.scopes[s as usize];
                let origin = Origin::new(
                    resource.resource.as_ref(),
                    &resource.schema_url,
                    scope.scope.as_ref(),
                    &scope.schema_url,
                    &payload.redaction_policy,
                );
                let repeated = origin.repeated_bytes();
                (origin, repeated)
            });
            converter.set_received_at(payload.received_at);
            if let Some(view) = logs::read_record(raw, &mut attributes) {
                let record = ViewRecord {
                    view: &view,
                    attributes: &attributes,
                };
                converter.push_log_into(self.tenant, self.table, origin, &record);
            } else if let Ok(record) = LogRecord::decode(raw) {
                converter.push_log_into(self.tenant, self.table, origin, &record);
            } else {
                converted.unreadable += 1;
                continue;
            }
            converted.rows += 1;
            bytes += raw.len() + *repeated;
        }
        converted
    }
}

/// Converts one payload [`LogPayloads`] wrote for `tenant` and `table` into `converter`. An
/// error: the payload cannot be read at all.
pub fn convert(
    tenant: &TenantId,
    table: Table,
    payload: Vec<u8>,
    converter: &mut Converter,
) -> Result<Converted, String> {
    let logged = Logged::parse(payload)?;
    Ok(convert_sorted(tenant, table, &[logged], converter))
}

#[cfg(test)]
pub(crate) mod tests;
