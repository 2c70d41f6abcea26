//! OTLP logs decoded in place: the request's bytes are kept and records are read from them one at
//! a time, borrowing every string, so accepting a log record allocates nothing per attribute.
//!
//! Decoding a request reads its envelope: each resource and scope is decoded with prost (they are
//! few, and the tenancy context and redaction want them owned), each record is only located. At
//! conversion a record is read into a [`LogView`] (strings are `&str` into the request, checked
//! as UTF-8 as prost would). Anything the view does not read exactly as prost would (a repeated
//! singular message field, which protobuf merges; an array or key-value-list value; a record of a
//! tenant with redaction rules, which rewrite records) is decoded by prost instead, so what is
//! stored never depends on which path read it. A record neither can read is refused alone
//! (OTLP `partial_success`), like [`super::salvage`] does for the other signals.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::any_value::{ValueLimits, ValueProblem};
use super::wire::{Reader, WireType};
use super::{DecodeError, Decoded, salvage};
use crate::otlp::any_value;

/// An OTLP logs export request, its records still in the request's bytes.
#[derive(Debug, Default)]
pub struct LogsRequest {
    bytes: Bytes,
    pub resources: Vec<ResourceLogs>,
}

/// One `ResourceLogs`.
#[derive(Debug, Default)]
pub struct ResourceLogs {
    pub resource: Option<Resource>,
    pub schema_url: String,
    pub scopes: Vec<ScopeLogs>,
    /// Size of the `ResourceLogs` message on the wire.
    pub encoded_len: u64,
}

/// One `ScopeLogs`: its scope and where its records are.
#[derive(Debug, Default)]
pub struct ScopeLogs {
    pub scope: Option<InstrumentationScope>,
    pub schema_url: String,
    pub records: Vec<Range<usize>>,
}

impl LogsRequest {
    /// Decodes OTLP protobuf. A request whose envelope cannot be read is refused whole.
    pub fn decode(bytes: Bytes) -> Result<Decoded<Self>, DecodeError> {
        if let Some(request) = Self::envelope(bytes.clone()) {
            return Ok(Decoded::whole(request));
        }
        // Let prost say what is wrong (or read what this reader does not, such as groups).
        let decoded = salvage::decode(bytes, salvage::logs)?;
        let canonical = Bytes::from(decoded.request.encode_to_vec());
        let request = Self::envelope(canonical).ok_or_else(|| {
            DecodeError("invalid OTLP protobuf: cannot read the request again".into())
        })?;
        Ok(Decoded {
            request,
            refused: decoded.refused,
            first_refusal: decoded.first_refusal,
        })
    }

    /// A request decoded from OTLP/JSON (by prost's serde types), re-encoded as protobuf.
    pub fn from_message(request: &ExportLogsServiceRequest) -> Result<Self, String> {
        Self::envelope(Bytes::from(request.encode_to_vec()))
            .ok_or_else(|| "cannot read the request as protobuf".to_owned())
    }

    /// Reads a request this reader can read alone (no prost fallback for the envelope): what the
    /// write-ahead log's payloads are.
    pub fn parse(bytes: Bytes) -> Option<Self> {
        Self::envelope(bytes)
    }

    /// The request's bytes (what record ranges index).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    fn envelope(bytes: Bytes) -> Option<Self> {
        let mut resources = Vec::new();
        let mut r = Reader::new(&bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, WireType::Len) => {
                    let start = r.offset_in(&bytes);
                    let body = r.len_delimited()?;
                    let offset = r.offset_in(&bytes) - body.len();
                    let mut resource = resource_logs(body, offset)?;
                    resource.encoded_len = (r.offset_in(&bytes) - start) as u64;
                    resources.push(resource);
                }
                (1, _) => return None,
                (_, wire) => r.skip(wire)?,
            }
        }
        Some(Self { bytes, resources })
    }

    /// The raw bytes of one record.
    pub fn raw(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    pub fn record_count(&self) -> usize {
        self.resources
            .iter()
            .flat_map(|r| &r.scopes)
            .map(|s| s.records.len())
            .sum()
    }
}

/// `ResourceLogs` and `ScopeLogs` share a shape: field 1 an owned message (a repeated one merges,
/// as prost does), field 2 the repeated children, field 3 the schema URL. `child` gets each
/// child's bytes and where they start in the request (`offset`: where `body` starts).
fn envelope_level<M: Message + Default>(
    body: &[u8],
    offset: usize,
    mut child: impl FnMut(&[u8], usize) -> Option<()>,
) -> Option<(Option<M>, String)> {
    let (mut message, mut schema_url) = (None, String::new());
    let mut r = Reader::new(body);
    while !r.is_empty() {
        match r.key()? {
            (1, WireType::Len) => {
                let m = message.get_or_insert_with(M::default);
                m.merge(r.len_delimited()?).ok()?;
            }
            (2, WireType::Len) => {
                let bytes = r.len_delimited()?;
                child(bytes, offset + r.offset_in(body) - bytes.len())?;
            }
            (3, WireType::Len) => schema_url = r.str()?.to_owned(),
            (1..=3, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((message, schema_url))
}

fn resource_logs(body: &[u8], offset: usize) -> Option<ResourceLogs> {
    let mut scopes = Vec::new();
    let (resource, schema_url) = envelope_level(body, offset, |scope, at| {
        scopes.push(scope_logs(scope, at)?);
        Some(())
    })?;
    Some(ResourceLogs {
        resource,
        schema_url,
        scopes,
        encoded_len: 0,
    })
}

fn scope_logs(body: &[u8], offset: usize) -> Option<ScopeLogs> {
    let mut records = Vec::new();
    let (scope, schema_url) = envelope_level(body, offset, |record, at| {
        records.push(at..at + record.len());
        Some(())
    })?;
    Some(ScopeLogs {
        scope,
        schema_url,
        records,
    })
}

/// An attribute or body value, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An array, key-value list or string-table index: the `AnyValue` message, for prost.
    Other(&'a [u8]),
}

impl<'a> ValueRef<'a> {
    /// The stored text, as [`any_value::to_text`] makes it.
    pub fn to_text(self) -> Option<Cow<'a, str>> {
        let value = match self {
            ValueRef::Empty => return None,
            ValueRef::Str(s) => return Some(Cow::Borrowed(s)),
            ValueRef::Bool(b) => Value::BoolValue(b),
            ValueRef::Int(i) => Value::IntValue(i),
            ValueRef::Double(d) => Value::DoubleValue(d),
            ValueRef::Bytes(b) => Value::BytesValue(b.to_vec()),
            ValueRef::Other(raw) => {
                // Read by the view already, so prost reads it too.
                let value = AnyValue::decode(raw).ok()?;
                return any_value::to_text(Some(&value)).map(|t| Cow::Owned(t.into_owned()));
            }
        };
        Some(Cow::Owned(any_value::to_json(Some(&value)).to_string()))
    }

    /// Checks the value against `limits` (see [`ValueLimits::check`]); an array or key-value
    /// list is decoded to tell.
    pub fn check(self, limits: &ValueLimits) -> Result<(), ValueProblem> {
        match self {
            ValueRef::Str(s) => limits.length(s.len()),
            ValueRef::Bytes(b) => limits.length(b.len()),
            // What prost cannot read (nested past its recursion limit) is over any depth limit.
            ValueRef::Other(raw) => match AnyValue::decode(raw) {
                Ok(value) => limits.check(Some(&value)),
                Err(_) => Err(ValueProblem::TooDeep),
            },
            _ => Ok(()),
        }
    }

    pub fn as_str(self) -> Option<&'a str> {
        match self {
            ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A log record read in place. Its attributes live in a vector the caller reuses.
#[derive(Debug, Default)]
pub struct LogView<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<ValueRef<'a>>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

/// Reads one record into `view` and its attributes into `attributes` (cleared first). `None`:
/// prost must read it (see the module docs).
pub fn read_record<'a>(
    raw: &'a [u8],
    attributes: &mut Vec<(&'a str, ValueRef<'a>)>,
) -> Option<LogView<'a>> {
    attributes.clear();
    let mut view = LogView::default();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, WireType::Fixed64) => view.time_unix_nano = r.fixed64()?,
            (11, WireType::Fixed64) => view.observed_time_unix_nano = r.fixed64()?,
            // An enum: prost keeps the low 32 bits of the varint.
            (2, WireType::Varint) => view.severity_number = r.varint()? as i32,
            (3, WireType::Len) => view.severity_text = r.str()?,
            (5, WireType::Len) => {
                if view.body.is_some() {
                    return None;
                }
                view.body = Some(any_value(r.len_delimited()?)?);
            }
            (6, WireType::Len) => attributes.push(key_value(r.len_delimited()?)?),
            (7, WireType::Varint) => view.dropped_attributes_count = r.varint()? as u32,
            (8, WireType::Fixed32) => view.flags = r.fixed32()?,
            (9, WireType::Len) => view.trace_id = r.len_delimited()?,
            (10, WireType::Len) => view.span_id = r.len_delimited()?,
            (12, WireType::Len) => view.event_name = r.str()?,
            (1..=3 | 5..=12, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(view)
}

/// The time a record is stored under (its time, else its observed time, else `received_at`),
/// read without decoding the rest; `received_at` when the record cannot be read.
pub fn record_time(raw: &[u8], received_at: i64) -> i64 {
    let (mut time, mut observed) = (0u64, 0u64);
    let mut r = Reader::new(raw);
    // Encoders write fields in number order, so a record's time is usually its first field: take
    // it without reading the rest. (Only a hint for ordering: a record that repeats the field
    // later gets stored under the last one, and the commit then finds its batch out of order and
    // sorts it in memory.)
    if let Some((1, WireType::Fixed64)) = r.key()
        && let Some(first) = r.fixed64()
        && first != 0
    {
        return i64::try_from(first).unwrap_or(i64::MAX);
    }
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        let field = match r.key() {
            Some((1, WireType::Fixed64)) => r.fixed64().map(|t| time = t),
            Some((11, WireType::Fixed64)) => r.fixed64().map(|t| observed = t),
            Some((_, wire)) => r.skip(wire),
            None => None,
        };
        if field.is_none() {
            return received_at;
        }
    }
    let known = |t: u64| (t != 0).then(|| i64::try_from(t).unwrap_or(i64::MAX));
    known(time).or(known(observed)).unwrap_or(received_at)
}

fn key_value(raw: &[u8]) -> Option<(&str, ValueRef<'_>)> {
    let (mut key, mut value) = ("", None);
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, WireType::Len) => key = r.str()?,
            (2, WireType::Len) => {
                if value.is_some() {
                    return None;
                }
                value = Some(any_value(r.len_delimited()?)?);
            }
            (1 | 2, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((key, value.unwrap_or(ValueRef::Empty)))
}

// Inlined: returned through memory, the enum's payload was copied as unaligned pieces and read
// back before the stores completed (store-forwarding stalls: half of `read_record`'s samples;
// conversion at commit 0.46 → 0.39 µs per `tiny-v1` row).
#[inline(always)]
fn any_value(raw: &[u8]) -> Option<ValueRef<'_>> {
    let mut value = ValueRef::Empty;
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        // A oneof: the last field present wins, as in prost.
        value = match r.key()? {
            (1, WireType::Len) => ValueRef::Str(r.str()?),
            (2, WireType::Varint) => ValueRef::Bool(r.varint()? != 0),
            (3, WireType::Varint) => ValueRef::Int(r.varint()? as i64),
            (4, WireType::Fixed64) => ValueRef::Double(f64::from_bits(r.fixed64()?)),
            (7, WireType::Len) => ValueRef::Bytes(r.len_delimited()?),
            (5 | 6 | 8, _) => return Some(ValueRef::Other(raw)),
            (1..=4 | 7, _) => return None,
            (_, wire) => {
                r.skip(wire)?;
                value
            }
        };
    }
    Some(value)
}

/// What the converter, validation and derived metrics read of a log record, whichever way it was
/// decoded.
pub trait LogFields {
    fn time_unix_nano(&self) -> u64;
    fn observed_time_unix_nano(&self) -> u64;
    fn severity_number(&self) -> i32;
    fn severity_text(&self) -> &str;
    fn body_text(&self) -> Option<Cow<'_, str>>;
    fn attribute_count(&self) -> usize;
    /// Each attribute's key and stored text.
    fn for_each_attribute<F: FnMut(&str, Option<Cow<'_, str>>)>(&self, f: F);
    /// The value of a string attribute.
    fn string_attribute(&self, key: &str) -> Option<&str>;
    fn dropped_attributes_count(&self) -> u32;
    fn flags(&self) -> u32;
    fn trace_id(&self) -> &[u8];
    fn span_id(&self) -> &[u8];
    fn event_name_field(&self) -> &str;
    /// Checks the body and the attributes' keys and values against `limits` (the body's length
    /// is not bounded).
    fn check_values(&self, limits: &ValueLimits) -> Result<(), ValueProblem>;
}

impl LogFields for LogRecord {
    fn time_unix_nano(&self) -> u64 {
        self.time_unix_nano
    }
    fn observed_time_unix_nano(&self) -> u64 {
        self.observed_time_unix_nano
    }
    fn severity_number(&self) -> i32 {
        self.severity_number
    }
    fn severity_text(&self) -> &str {
        &self.severity_text
    }
    fn body_text(&self) -> Option<Cow<'_, str>> {
        any_value::to_text(self.body.as_ref())
    }
    fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
    fn for_each_attribute<F: FnMut(&str, Option<Cow<'_, str>>)>(&self, mut f: F) {
        for kv in &self.attributes {
            f(&kv.key, any_value::to_text(kv.value.as_ref()));
        }
    }
    fn string_attribute(&self, key: &str) -> Option<&str> {
        string_attribute(&self.attributes, key)
    }
    fn dropped_attributes_count(&self) -> u32 {
        self.dropped_attributes_count
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn trace_id(&self) -> &[u8] {
        &self.trace_id
    }
    fn span_id(&self) -> &[u8] {
        &self.span_id
    }
    fn event_name_field(&self) -> &str {
        &self.event_name
    }
    fn check_values(&self, limits: &ValueLimits) -> Result<(), ValueProblem> {
        limits.for_body().check(self.body.as_ref())?;
        limits.check_attributes(&self.attributes)
    }
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// A [`LogView`] with its attributes.
pub struct ViewRecord<'v, 'a> {
    pub view: &'v LogView<'a>,
    pub attributes: &'v [(&'a str, ValueRef<'a>)],
}

impl LogFields for ViewRecord<'_, '_> {
    fn time_unix_nano(&self) -> u64 {
        self.view.time_unix_nano
    }
    fn observed_time_unix_nano(&self) -> u64 {
        self.view.observed_time_unix_nano
    }
    fn severity_number(&self) -> i32 {
        self.view.severity_number
    }
    fn severity_text(&self) -> &str {
        self.view.severity_text
    }
    fn body_text(&self) -> Option<Cow<'_, str>> {
        self.view.body.and_then(ValueRef::to_text)
    }
    fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
    fn for_each_attribute<F: FnMut(&str, Option<Cow<'_, str>>)>(&self, mut f: F) {
        for (key, value) in self.attributes {
            f(key, value.to_text());
        }
    }
    fn string_attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
    }
    fn dropped_attributes_count(&self) -> u32 {
        self.view.dropped_attributes_count
    }
    fn flags(&self) -> u32 {
        self.view.flags
    }
    fn trace_id(&self) -> &[u8] {
        self.view.trace_id
    }
    fn span_id(&self) -> &[u8] {
        self.view.span_id
    }
    fn event_name_field(&self) -> &str {
        self.view.event_name
    }
    fn check_values(&self, limits: &ValueLimits) -> Result<(), ValueProblem> {
        let body = self.view.body.map(|b| b.check(&limits.for_body()));
        body.unwrap_or(Ok(()))?;
        let mut attributes = self.attributes.iter();
        attributes.try_for_each(|(key, value)| limits.key(key).and_then(|()| value.check(limits)))
    }
}

#[cfg(test)]
mod tests;
