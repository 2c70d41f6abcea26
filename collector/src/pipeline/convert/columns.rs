//! The column builders of each table: the columns every table shares ([`CommonColumns`]), those
//! of log records and events ([`LogColumns`]) and of spans ([`SpanColumns`]), and the appends
//! that fill them without allocating where they can (hex ids, attribute maps).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span;
use serde_json::json;

use audit_store::{Table, TenantId};

use super::{Entries, Origin};
use crate::otlp::any_value;

pub(super) fn nonzero(nanos: u64) -> Option<i64> {
    // Validation refuses times past i64::MAX (year 2262) before conversion.
    (nanos != 0).then(|| i64::try_from(nanos).unwrap_or(i64::MAX))
}

pub(super) fn attributes_json(attributes: &[KeyValue]) -> serde_json::Value {
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

pub(super) fn span_events_json(events: &[span::Event]) -> String {
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

pub(super) fn span_links_json(links: &[span::Link]) -> String {
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

pub(super) type StringMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

/// Appends lower-case hex of a trace or span id without allocating (ids are 8 or 16 bytes;
/// anything longer, which validation refuses anyway, takes the allocating path).
pub(super) fn append_hex(builder: &mut StringBuilder, bytes: &[u8]) {
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

pub(super) fn append_map(builder: &mut StringMapBuilder, attributes: &[KeyValue]) {
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
pub(super) fn append_entries(builder: &mut StringMapBuilder, entries: &Entries) {
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

pub(super) fn new_map() -> StringMapBuilder {
    audit_store::schema::string_map_builder()
}

pub(super) fn new_ts() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// The head and tail columns every table shares.
pub(super) struct CommonColumns {
    pub(super) tenant_id: StringBuilder,
    pub(super) timestamp: TimestampNanosecondBuilder,
    pub(super) observed_timestamp: TimestampNanosecondBuilder,
    pub(super) service_name: StringBuilder,
    pub(super) resource_attributes: StringMapBuilder,
    pub(super) resource_schema_url: StringBuilder,
    pub(super) resource_dropped_attributes_count: UInt32Builder,
    pub(super) scope_name: StringBuilder,
    pub(super) scope_version: StringBuilder,
    pub(super) scope_attributes: StringMapBuilder,
    pub(super) scope_schema_url: StringBuilder,
    pub(super) scope_dropped_attributes_count: UInt32Builder,
    pub(super) redaction_policy: StringBuilder,
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
    pub(super) fn push_head(
        &mut self,
        tenant: &TenantId,
        timestamp: i64,
        observed: i64,
        o: &Origin<'_>,
    ) {
        self.tenant_id.append_value(tenant.as_str());
        self.timestamp.append_value(timestamp);
        self.observed_timestamp.append_value(observed);
        self.service_name.append_value(&o.service_name);
    }

    pub(super) fn push_tail(&mut self, o: &Origin<'_>) {
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

    pub(super) fn head(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.observed_timestamp.finish()),
            Arc::new(self.service_name.finish()),
        ]
    }

    pub(super) fn tail(&mut self) -> Vec<ArrayRef> {
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

pub(super) struct LogColumns {
    pub(super) common: CommonColumns,
    pub(super) severity_number: Int32Builder,
    pub(super) severity_text: StringBuilder,
    pub(super) body: StringBuilder,
    pub(super) event_name: StringBuilder,
    pub(super) attributes: StringMapBuilder,
    pub(super) dropped_attributes_count: UInt32Builder,
    pub(super) trace_id: StringBuilder,
    pub(super) span_id: StringBuilder,
    pub(super) flags: UInt32Builder,
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
    pub(super) fn finish(mut self, table: Table) -> Result<RecordBatch, arrow::error::ArrowError> {
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

pub(super) struct SpanColumns {
    pub(super) common: CommonColumns,
    /// What the rows so far repeat from their origins ([`Origin::repeated_bytes`]).
    pub(super) repeated_bytes: usize,
    pub(super) trace_id: StringBuilder,
    pub(super) span_id: StringBuilder,
    pub(super) parent_span_id: StringBuilder,
    pub(super) trace_state: StringBuilder,
    pub(super) flags: UInt32Builder,
    pub(super) name: StringBuilder,
    pub(super) kind: StringBuilder,
    pub(super) start_time: TimestampNanosecondBuilder,
    pub(super) end_time: TimestampNanosecondBuilder,
    pub(super) duration_ns: Int64Builder,
    pub(super) status_code: StringBuilder,
    pub(super) status_message: StringBuilder,
    pub(super) attributes: StringMapBuilder,
    pub(super) dropped_attributes_count: UInt32Builder,
    pub(super) events: StringBuilder,
    pub(super) dropped_events_count: UInt32Builder,
    pub(super) links: StringBuilder,
    pub(super) dropped_links_count: UInt32Builder,
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
    pub(super) fn finish(mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
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
