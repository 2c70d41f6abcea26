//! OTLP → Arrow: one [`RecordBatch`] per tenant and table, in the audit store's schemas.
//!
//! The converter is pure: it takes decoded OTLP and the tenant of each resource (resolved by the
//! tenancy context before it gets here) and appends rows to per-(tenant, table) builders. A log
//! record with a non-empty `event_name`, or else an `event.name` string attribute, goes to the
//! `events` table with `event_name` filled in; every other log record goes to `logs`.
//!
//! Timestamps: a log record without `time_unix_nano` takes its observed time, and without that
//! the time it was received; `observed_timestamp` is the record's, or the receive time. Spans
//! are timed by their start; their `observed_timestamp` is the receive time.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use audit_store::{Table, TenantId};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use serde_json::json;

use crate::otlp::any_value;
use crate::otlp::logs::LogFields;
use crate::otlp::trace::{span_kind, status_code};

/// The attribute that marks a log record as a domain event when `event_name` is empty.
pub const EVENT_NAME_ATTRIBUTE: &str = "event.name";

/// Rows for one tenant and one table.
#[derive(Debug, Clone)]
pub struct TenantBatch {
    pub tenant: TenantId,
    pub table: Table,
    pub batch: RecordBatch,
}

/// Accumulates rows of several tenants and tables.
#[derive(Default)]
pub struct Converter {
    received_at: i64,
    logs: ByKey<(TenantId, Table), LogColumns>,
    spans: ByKey<TenantId, SpanColumns>,
    /// Span columns that reached [`SPAN_BATCH_REPEATED_BYTES`], to finish as batches of their own.
    full_spans: Vec<(TenantId, SpanColumns)>,
}

/// A tenant's spans end a batch once their rows repeat this many bytes of resource and scope
/// attributes: however large a request's resource (`ingest.max_expanded_request_size` bounds the
/// request, but redaction can lengthen values after that check), no string column comes near
/// Arrow's 2 GiB of 32-bit offsets, where its builders panic. Log records are converted at commit,
/// in batches bounded by `log_payload::COMMIT_BATCH_BYTES`.
pub const SPAN_BATCH_REPEATED_BYTES: usize = 64 << 20;

/// Columns by key (tenant and table): rows of one key mostly follow each other, so the key used
/// last is checked first, without cloning the tenant id for a lookup.
struct ByKey<K, C> {
    entries: Vec<(K, C)>,
    last: usize,
}

impl<K, C> Default for ByKey<K, C> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            last: 0,
        }
    }
}

impl<K: Ord, C: Default> ByKey<K, C> {
    fn get_or_insert(&mut self, matches: impl Fn(&K) -> bool, key: impl FnOnce() -> K) -> &mut C {
        if !self.entries.get(self.last).is_some_and(|(k, _)| matches(k)) {
            self.last = match self.entries.iter().position(|(k, _)| matches(k)) {
                Some(at) => at,
                None => {
                    self.entries.push((key(), C::default()));
                    self.entries.len() - 1
                }
            };
        }
        &mut self.entries[self.last].1
    }

    /// The entries ordered by key.
    fn into_sorted(mut self) -> Vec<(K, C)> {
        self.entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        self.entries
    }
}

/// Resource and scope of a group of records, converted once into what every row of the group
/// repeats (service name, attribute map entries): each row then copies them with one `memcpy` per
/// column instead of appending attribute after attribute (for `tiny-v1` records, the resource's
/// six attributes per row were 5 % of the daemon's CPU).
pub struct Origin<'a> {
    service_name: Cow<'a, str>,
    resource_attributes: Entries,
    resource_schema_url: &'a str,
    resource_dropped_attributes_count: u32,
    scope: Option<&'a InstrumentationScope>,
    scope_attributes: Entries,
    scope_schema_url: &'a str,
    /// The redaction policy version applied to these records (empty: none).
    redaction_policy: &'a str,
}

/// The keys and values of an attribute map's entries.
struct Entries {
    keys: StringArray,
    values: StringArray,
}

impl Entries {
    /// Allocated to size: a commit makes one per scope per batch, and a builder's default
    /// capacity (1,024 entries) made their allocations and page faults 10 % of a commit.
    fn new(attributes: &[KeyValue]) -> Self {
        Self {
            keys: StringArray::from_iter_values(attributes.iter().map(|kv| &kv.key)),
            values: attributes
                .iter()
                .map(|kv| any_value::to_text(kv.value.as_ref()))
                .collect(),
        }
    }
}

impl<'a> Origin<'a> {
    /// `redaction_policy`: the redaction policy version applied to these records (empty: none).
    pub fn new(
        resource: Option<&'a Resource>,
        resource_schema_url: &'a str,
        scope: Option<&'a InstrumentationScope>,
        scope_schema_url: &'a str,
        redaction_policy: &'a str,
    ) -> Self {
        let resource_attributes = resource.map_or(&[][..], |r| &r.attributes);
        let service_name = resource_attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| any_value::to_text(kv.value.as_ref()))
            .unwrap_or_default();
        Self {
            service_name,
            resource_attributes: Entries::new(resource_attributes),
            resource_schema_url,
            resource_dropped_attributes_count: resource.map_or(0, |r| r.dropped_attributes_count),
            scope,
            scope_attributes: Entries::new(scope.map_or(&[][..], |s| &s.attributes)),
            scope_schema_url,
            redaction_policy,
        }
    }

    /// Bytes of text every row of this origin repeats: names, URLs, attribute entries.
    pub fn repeated_bytes(&self) -> usize {
        let entries = |e: &Entries| e.keys.value_data().len() + e.values.value_data().len();
        self.service_name.len()
            + entries(&self.resource_attributes)
            + self.resource_schema_url.len()
            + self.scope.map_or(0, |s| s.name.len() + s.version.len())
            + entries(&self.scope_attributes)
            + self.scope_schema_url.len()
            + self.redaction_policy.len()
    }
}

impl Converter {
    /// `received_at`: nanoseconds since the epoch, the fallback for missing timestamps.
    pub fn new(received_at: i64) -> Self {
        Self {
            received_at,
            ..Self::default()
        }
    }

    /// The time records without timestamps take.
    pub fn received_at(&self) -> i64 {
        self.received_at
    }

    /// Sets the time records without timestamps take from here on.
    pub fn set_received_at(&mut self, received_at: i64) {
        self.received_at = received_at;
    }

    /// Adds a log record to the table its event name says ([`log_table`]).
    pub fn push_log<R: LogFields>(&mut self, tenant: &TenantId, origin: &Origin<'_>, record: &R) {
        self.push_log_into(tenant, log_table(record), origin, record);
    }

    /// Adds a log record to `table` (the one it was logged for).
    pub fn push_log_into<R: LogFields>(
        &mut self,
        tenant: &TenantId,
        table: Table,
        origin: &Origin<'_>,
        record: &R,
    ) {
        let event_name = event_name(record);
        let columns = self.logs.get_or_insert(
            |(t, tb)| t == tenant && *tb == table,
            || (tenant.clone(), table),
        );
        let observed = nonzero(record.observed_time_unix_nano()).unwrap_or(self.received_at);
        let timestamp = nonzero(record.time_unix_nano()).unwrap_or(observed);
        columns
            .common
            .push_head(tenant, timestamp, observed, origin);
        columns
            .severity_number
            .append_value(record.severity_number());
        columns.severity_text.append_value(record.severity_text());
        match record.body_text() {
            Some(body) => columns.body.append_value(body),
            None => columns.body.append_null(),
        }
        columns.event_name.append_value(event_name.unwrap_or(""));
        let map = &mut columns.attributes;
        record.for_each_attribute(|key, value| {
            map.keys().append_value(key);
            match value {
                Some(text) => map.values().append_value(text),
                None => map.values().append_null(),
            }
        });
        // Cannot fail: every key above got exactly one value.
        map.append(true).expect("map keys and values match");
        columns
            .dropped_attributes_count
            .append_value(record.dropped_attributes_count());
        append_hex(&mut columns.trace_id, record.trace_id());
        append_hex(&mut columns.span_id, record.span_id());
        columns.flags.append_value(record.flags());
        columns.common.push_tail(origin);
    }

    pub fn push_span(&mut self, tenant: &TenantId, origin: &Origin<'_>, span: &Span) {
        let received_at = self.received_at;
        let c = self.spans.get_or_insert(|t| t == tenant, || tenant.clone());
        let start = nonzero(span.start_time_unix_nano).unwrap_or(received_at);
        let end = nonzero(span.end_time_unix_nano).unwrap_or(start);
        c.common.push_head(tenant, start, received_at, origin);
        append_hex(&mut c.trace_id, &span.trace_id);
        append_hex(&mut c.span_id, &span.span_id);
        append_hex(&mut c.parent_span_id, &span.parent_span_id);
        c.trace_state.append_value(&span.trace_state);
        c.flags.append_value(span.flags);
        c.name.append_value(&span.name);
        c.kind.append_value(span_kind(span.kind));
        c.start_time.append_value(start);
        c.end_time.append_value(end);
        c.duration_ns.append_value(end.saturating_sub(start));
        let (code, message) = match &span.status {
            Some(s) => (status_code(s.code), s.message.as_str()),
            None => (status_code(0), ""),
        };
        c.status_code.append_value(code);
        c.status_message.append_value(message);
        append_map(&mut c.attributes, &span.attributes);
        c.dropped_attributes_count
            .append_value(span.dropped_attributes_count);
        c.events.append_value(span_events_json(&span.events));
        c.dropped_events_count
            .append_value(span.dropped_events_count);
        c.links.append_value(span_links_json(&span.links));
        c.dropped_links_count.append_value(span.dropped_links_count);
        c.common.push_tail(origin);
        c.repeated_bytes += origin.repeated_bytes();
        if c.repeated_bytes >= SPAN_BATCH_REPEATED_BYTES {
            let full = std::mem::take(c);
            self.full_spans.push((tenant.clone(), full));
        }
    }

    /// The record batches, one per tenant and table.
    pub fn finish(self) -> Result<Vec<TenantBatch>, arrow::error::ArrowError> {
        let spans = self.full_spans.len() + self.spans.entries.len();
        let mut out = Vec::with_capacity(self.logs.entries.len() + spans);
        for ((tenant, table), columns) in self.logs.into_sorted() {
            let batch = columns.finish(table)?;
            out.push(TenantBatch {
                tenant,
                table,
                batch,
            });
        }
        let mut spans = self.full_spans;
        spans.extend(self.spans.into_sorted());
        for (tenant, columns) in spans {
            let batch = columns.finish()?;
            out.push(TenantBatch {
                tenant,
                table: Table::Spans,
                batch,
            });
        }
        Ok(out)
    }
}

/// The table of a log record: `events` when it has an event name, else `logs`.
pub fn log_table<R: LogFields>(record: &R) -> Table {
    if event_name(record).is_some() {
        Table::Events
    } else {
        Table::Logs
    }
}

/// The event name of a log record: the `event_name` field, else an `event.name` string attribute.
pub fn event_name<R: LogFields>(record: &R) -> Option<&str> {
    let field = record.event_name_field();
    if !field.is_empty() {
        return Some(field);
    }
    record
        .string_attribute(EVENT_NAME_ATTRIBUTE)
        .filter(|s| !s.is_empty())
}

fn nonzero(nanos: u64) -> Option<i64> {
    // Validation refuses times past i64::MAX (year 2262) before conversion.
    (nanos != 0).then(|| i64::try_from(nanos).unwrap_or(i64::MAX))
}

fn attributes_json(attributes: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(
        attributes
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                (kv.key.clone(), any_value::to_json(value))
            })
            .collect(),
    )
}

fn span_events_json(events: &[span::Event]) -> String {
    let events: Vec<_> = events
        .iter()
        .map(|e| {
            json!({
                "time_unix_nano": e.time_unix_nano.to_string(),
                "name": e.name,
                "attributes": attributes_json(&e.attributes),
                "dropped_attributes_count": e.dropped_attributes_count,
            })
        })
        .collect();
    serde_json::Value::Array(events).to_string()
}

fn span_links_json(links: &[span::Link]) -> String {
    let links: Vec<_> = links
        .iter()
        .map(|l| {
            json!({
                "trace_id": hex::encode(&l.trace_id),
                "span_id": hex::encode(&l.span_id),
                "trace_state": l.trace_state,
                "flags": l.flags,
                "attributes": attributes_json(&l.attributes),
                "dropped_attributes_count": l.dropped_attributes_count,
            })
        })
        .collect();
    serde_json::Value::Array(links).to_string()
}

type StringMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

/// Appends lower-case hex of a trace or span id without allocating (ids are 8 or 16 bytes;
/// anything longer, which validation refuses anyway, takes the allocating path).
fn append_hex(builder: &mut StringBuilder, bytes: &[u8]) {
    let mut buffer = [0u8; 64];
    match buffer.get_mut(..bytes.len() * 2) {
        Some(out) => {
            // Cannot fail: `out` is exactly twice as long as `bytes`, and hex is ASCII.
            hex::encode_to_slice(bytes, out).expect("buffer sized for the id");
            builder.append_value(std::str::from_utf8(out).expect("hex is ASCII"));
        }
        None => builder.append_value(hex::encode(bytes)),
    }
}

fn append_map(builder: &mut StringMapBuilder, attributes: &[KeyValue]) {
    for kv in attributes {
        builder.keys().append_value(&kv.key);
        match any_value::to_text(kv.value.as_ref()) {
            Some(text) => builder.values().append_value(text),
            None => builder.values().append_null(),
        }
    }
    // Cannot fail: every key above got exactly one value.
    builder.append(true).expect("map keys and values match");
}

/// Appends one map of `entries` (prepared by [`Entries::new`]).
fn append_entries(builder: &mut StringMapBuilder, entries: &Entries) {
    let (keys, values) = builder.entries();
    // Offsets overflow past 2 GiB of text in one batch, where the string builders' own appends
    // panic too. Commits end their batches at `log_payload::COMMIT_BATCH_BYTES`, the converter
    // its span batches at `SPAN_BATCH_REPEATED_BYTES`.
    keys.append_array(&entries.keys)
        .and_then(|()| values.append_array(&entries.values))
        .expect("a batch holds less than 2 GiB of attribute text");
    // Cannot fail: keys and values got the same number of entries.
    builder.append(true).expect("map keys and values match");
}

fn new_map() -> StringMapBuilder {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn new_ts() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// The head and tail columns every table shares.
struct CommonColumns {
    tenant_id: StringBuilder,
    timestamp: TimestampNanosecondBuilder,
    observed_timestamp: TimestampNanosecondBuilder,
    service_name: StringBuilder,
    resource_attributes: StringMapBuilder,
    resource_schema_url: StringBuilder,
    resource_dropped_attributes_count: UInt32Builder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: StringMapBuilder,
    scope_schema_url: StringBuilder,
    scope_dropped_attributes_count: UInt32Builder,
    redaction_policy: StringBuilder,
}

impl Default for CommonColumns {
    fn default() -> Self {
        Self {
            tenant_id: StringBuilder::new(),
            timestamp: new_ts(),
            observed_timestamp: new_ts(),
            service_name: StringBuilder::new(),
            resource_attributes: new_map(),
            resource_schema_url: StringBuilder::new(),
            resource_dropped_attributes_count: UInt32Builder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            scope_attributes: new_map(),
            scope_schema_url: StringBuilder::new(),
            scope_dropped_attributes_count: UInt32Builder::new(),
            redaction_policy: StringBuilder::new(),
        }
    }
}

impl CommonColumns {
    fn push_head(&mut self, tenant: &TenantId, timestamp: i64, observed: i64, o: &Origin<'_>) {
        self.tenant_id.append_value(tenant.as_str());
        self.timestamp.append_value(timestamp);
        self.observed_timestamp.append_value(observed);
        self.service_name.append_value(&o.service_name);
    }

    fn push_tail(&mut self, o: &Origin<'_>) {
        append_entries(&mut self.resource_attributes, &o.resource_attributes);
        self.resource_schema_url.append_value(o.resource_schema_url);
        self.resource_dropped_attributes_count
            .append_value(o.resource_dropped_attributes_count);
        let scope = o.scope;
        self.scope_name
            .append_value(scope.map_or("", |s| s.name.as_str()));
        self.scope_version
            .append_value(scope.map_or("", |s| s.version.as_str()));
        append_entries(&mut self.scope_attributes, &o.scope_attributes);
        self.scope_schema_url.append_value(o.scope_schema_url);
        self.scope_dropped_attributes_count
            .append_value(scope.map_or(0, |s| s.dropped_attributes_count));
        self.redaction_policy.append_value(o.redaction_policy);
    }

    fn head(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.observed_timestamp.finish()),
            Arc::new(self.service_name.finish()),
        ]
    }

    fn tail(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.resource_attributes.finish()),
            Arc::new(self.resource_schema_url.finish()),
            Arc::new(self.resource_dropped_attributes_count.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.scope_attributes.finish()),
            Arc::new(self.scope_schema_url.finish()),
            Arc::new(self.scope_dropped_attributes_count.finish()),
            Arc::new(self.redaction_policy.finish()),
        ]
    }
}

struct LogColumns {
    common: CommonColumns,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    event_name: StringBuilder,
    attributes: StringMapBuilder,
    dropped_attributes_count: UInt32Builder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    flags: UInt32Builder,
}

impl Default for LogColumns {
    fn default() -> Self {
        Self {
            common: CommonColumns::default(),
            severity_number: Int32Builder::new(),
            severity_text: StringBuilder::new(),
            body: StringBuilder::new(),
            event_name: StringBuilder::new(),
            attributes: new_map(),
            dropped_attributes_count: UInt32Builder::new(),
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            flags: UInt32Builder::new(),
        }
    }
}

impl LogColumns {
    fn finish(mut self, table: Table) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns = self.common.head();
        columns.extend([
            Arc::new(self.severity_number.finish()) as ArrayRef,
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.dropped_attributes_count.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.flags.finish()),
        ]);
        columns.extend(self.common.tail());
        RecordBatch::try_new(table.schema(), columns)
    }
}

struct SpanColumns {
    common: CommonColumns,
    /// What the rows so far repeat from their origins ([`Origin::repeated_bytes`]).
    repeated_bytes: usize,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: StringBuilder,
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration_ns: Int64Builder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    attributes: StringMapBuilder,
    dropped_attributes_count: UInt32Builder,
    events: StringBuilder,
    dropped_events_count: UInt32Builder,
    links: StringBuilder,
    dropped_links_count: UInt32Builder,
}

impl Default for SpanColumns {
    fn default() -> Self {
        Self {
            common: CommonColumns::default(),
            repeated_bytes: 0,
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            parent_span_id: StringBuilder::new(),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            start_time: new_ts(),
            end_time: new_ts(),
            duration_ns: Int64Builder::new(),
            status_code: StringBuilder::new(),
            status_message: StringBuilder::new(),
            attributes: new_map(),
            dropped_attributes_count: UInt32Builder::new(),
            events: StringBuilder::new(),
            dropped_events_count: UInt32Builder::new(),
            links: StringBuilder::new(),
            dropped_links_count: UInt32Builder::new(),
        }
    }
}

impl SpanColumns {
    fn finish(mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns = self.common.head();
        columns.extend([
            Arc::new(self.trace_id.finish()) as ArrayRef,
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.dropped_attributes_count.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.dropped_events_count.finish()),
            Arc::new(self.links.finish()),
            Arc::new(self.dropped_links_count.finish()),
        ]);
        columns.extend(self.common.tail());
        RecordBatch::try_new(Table::Spans.schema(), columns)
    }
}

#[cfg(test)]
mod tests;
