//! The commit side of log payloads: a payload parsed back ([`Logged`]) and its records
//! converted to Arrow in time order, a bounded batch at a time, through the same in-place reader
//! and [`Converter`] as at ingest.

use arrow::array::RecordBatch;
use audit_store::wal::payload::OtlpLogs;
use audit_store::{Table, TenantId};
use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

use crate::otlp::logs::{self, LogsRequest, ViewRecord};
use crate::pipeline::convert::{Converter, Origin};

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
        // Sized by the records the requests hold, never by the count a (possibly damaged)
        // framing announces alone (found by the `wal_replay` fuzz target: 28 GB).
        let capacity = logged.iter().map(|l| l.rows.min(l.request.record_count()));
        let mut records = Vec::with_capacity(capacity.sum());
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
