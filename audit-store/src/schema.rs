//! The tables of the audit store and their Arrow schemas.
//!
//! One schema per [`Table`]; `logs` and `events` share theirs (an event is a log record with an
//! event name). Column names are snake_case and follow `DESIGN.md`; timestamps are nanoseconds
//! since the Unix epoch in UTC; attribute maps are `MAP<string, string>` with non-string values as
//! their JSON text. A golden test prints these schemas so every change to them is deliberate:
//! records waiting in the write-ahead log are stored without their schema, so a change must also
//! bump [`crate::wal::payload::FORMAT`] and keep a reader for the old one.

use std::sync::{Arc, LazyLock};

use arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// A table of the audit store. Closed set: each variant is a `signal=` partition on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Logs,
    Spans,
    Events,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Logs, Table::Spans, Table::Events];

    /// The SQL table name, which is also the `signal=` partition value.
    pub fn name(self) -> &'static str {
        match self {
            Table::Logs => "logs",
            Table::Spans => "spans",
            Table::Events => "events",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow schema of this table.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Logs | Table::Events => LOG_SCHEMA.clone(),
            Table::Spans => SPAN_SCHEMA.clone(),
        }
    }
}

/// `TIMESTAMP(ns, UTC)`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `MAP<string, string>`, with the field names of [`string_map_field_names`].
pub fn string_map_type() -> DataType {
    let names = string_map_field_names();
    let entries = Fields::from(vec![
        Field::new(names.key, DataType::Utf8, false),
        Field::new(names.value, DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new(names.entry, DataType::Struct(entries), false)),
        false,
    )
}

/// The field names of every map column: `entries` / `keys` / `values`, what arrow's `MapBuilder`
/// produced by default until arrow 60 (which moved to `key` / `value`). Stores written since
/// the first release hold these names, and files of one table must keep one schema for a query
/// over old and new files alike, so they are named here rather than taken from the default.
pub fn string_map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    }
}

/// A builder for a `MAP<string, string>` column of [`string_map_type`].
pub fn string_map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(string_map_field_names()),
        StringBuilder::new(),
        StringBuilder::new(),
    )
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn ts(name: &str) -> Field {
    Field::new(name, timestamp_type(), false)
}

fn u32(name: &str) -> Field {
    Field::new(name, DataType::UInt32, false)
}

fn map(name: &str) -> Field {
    Field::new(name, string_map_type(), false)
}

/// Columns every table starts with.
fn head() -> Vec<Field> {
    vec![
        utf8("tenant_id"),
        ts("timestamp"),
        ts("observed_timestamp"),
        utf8("service_name"),
    ]
}

/// Resource and instrumentation-scope columns every table ends with.
fn tail() -> Vec<Field> {
    vec![
        map("resource_attributes"),
        utf8("resource_schema_url"),
        u32("resource_dropped_attributes_count"),
        utf8("scope_name"),
        utf8("scope_version"),
        map("scope_attributes"),
        utf8("scope_schema_url"),
        u32("scope_dropped_attributes_count"),
        // The version of the tenant's redaction rules applied before storage; empty: none.
        utf8("redaction_policy"),
    ]
}

static LOG_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = head();
    fields.extend([
        Field::new("severity_number", DataType::Int32, false),
        utf8("severity_text"),
        // Null when the record has no body; non-string bodies are their JSON text.
        Field::new("body", DataType::Utf8, true),
        utf8("event_name"),
        map("attributes"),
        u32("dropped_attributes_count"),
        utf8("trace_id"),
        utf8("span_id"),
        u32("flags"),
    ]);
    fields.extend(tail());
    Arc::new(Schema::new(fields))
});

static SPAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = head();
    fields.extend([
        utf8("trace_id"),
        utf8("span_id"),
        utf8("parent_span_id"),
        utf8("trace_state"),
        u32("flags"),
        utf8("name"),
        utf8("kind"),
        ts("start_time"),
        ts("end_time"),
        Field::new("duration_ns", DataType::Int64, false),
        utf8("status_code"),
        utf8("status_message"),
        map("attributes"),
        u32("dropped_attributes_count"),
        // JSON arrays: [{"time_unix_nano", "name", "attributes", "dropped_attributes_count"}].
        utf8("events"),
        u32("dropped_events_count"),
        // JSON arrays: [{"trace_id", "span_id", "trace_state", "flags", "attributes", ...}].
        utf8("links"),
        u32("dropped_links_count"),
    ]);
    fields.extend(tail());
    Arc::new(Schema::new(fields))
});

#[cfg(test)]
mod tests;
