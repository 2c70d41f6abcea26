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
//!
//! The column builders of each table are in [`columns`].

mod columns;

use std::borrow::Cow;

use arrow::array::{RecordBatch, StringArray};
use audit_store::{Table, TenantId};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::otlp::any_value;
use crate::otlp::logs::LogFields;
use crate::otlp::trace::{span_kind, status_code};
use columns::{
    LogColumns, SpanColumns, append_hex, append_map, nonzero, span_events_json, span_links_json,
};

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

#[cfg(test)]
mod tests;
