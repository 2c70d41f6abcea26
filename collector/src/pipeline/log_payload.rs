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

mod commit;

use std::ops::Range;

use audit_store::wal::payload::OtlpLogs;
use audit_store::{Table, TenantId};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::Record;

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

pub use commit::{
    COMMIT_BATCH_BYTES, COMMIT_BATCH_ROWS, Converted, Logged, convert, convert_sorted,
    for_each_sorted_batch, to_sorted_batches,
};

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
