//! OTLP/JSON decoding on top of `opentelemetry-proto`'s serde support, fixing what it gets wrong.
//!
//! The OTLP spec's JSON is the proto3 JSON mapping with hex ids and integer enums. Measured
//! gaps of the crate (see `shared/FINDINGS.md`) handled here, before serde sees the document:
//! - proto field names (`time_unix_nano`) must be accepted like the lowerCamelCase names
//!   (proto3 JSON parsers accept both); the crate silently ignores them, losing the data, so
//!   object keys are rewritten to lowerCamelCase first;
//! - enum values given by name (`"SPAN_KIND_SERVER"`) are accepted by proto3 JSON parsers; the
//!   crate rejects the whole request, so known enum names are rewritten to their numbers.
//!
//! Object keys are always field names in OTLP/JSON (attribute keys are values of `key` fields),
//! so rewriting keys cannot touch user data. Id lengths are checked later by `validate`.
//!
//! A body that is not UTF-8 refuses only the records whose strings hold the invalid bytes
//! (OTLP's `partial_success`, as protobuf's salvage does): each invalid sequence is read as a
//! noncharacter the document does not otherwise contain, and the records holding it are
//! removed before serde reads the request. Invalid bytes outside a record (in a resource or
//! scope) still refuse the whole request.

use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Decoded;

/// Decodes an OTLP/JSON request body; records with invalid UTF-8 are refused alone.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<Decoded<T>, String> {
    let (mut value, marked) = parse(body)?;
    if !value.is_object() {
        // serde would read a struct from an array, positionally.
        return Err("invalid OTLP/JSON: the request must be a JSON object".into());
    }
    normalize(&mut value, None);
    let (mut refused, mut first_refusal) = (0, None);
    if marked {
        for (resources, scopes, records) in RECORD_LISTS {
            let at = [resources, scopes, records];
            strip_marked(&mut value, at, &mut refused, &mut first_refusal);
        }
        if holds_mark(&value) {
            return Err("invalid JSON: invalid UTF-8 outside the records".into());
        }
    }
    let request = serde_json::from_value(value).map_err(|e| format!("invalid OTLP/JSON: {e}"))?;
    Ok(Decoded {
        request,
        refused,
        first_refusal,
    })
}

/// Stands for an invalid UTF-8 sequence: a noncharacter, valid in JSON strings, never sent by
/// OTLP exporters (a body holding it, raw or escaped, is refused whole if it is not UTF-8).
const MARK: char = '\u{FDD0}';

/// Where the records of each signal are.
const RECORD_LISTS: [(&str, &str, &str); 3] = [
    ("resourceLogs", "scopeLogs", "logRecords"),
    ("resourceSpans", "scopeSpans", "spans"),
    ("resourceMetrics", "scopeMetrics", "metrics"),
];

/// The JSON document, and whether invalid UTF-8 in it was replaced by [`MARK`].
fn parse(body: &[u8]) -> Result<(Value, bool), String> {
    let invalid = |e: serde_json::Error| format!("invalid JSON: {e}");
    if std::str::from_utf8(body).is_ok() {
        return serde_json::from_slice(body)
            .map(|v| (v, false))
            .map_err(invalid);
    }
    let mut text = String::with_capacity(body.len());
    for chunk in body.utf8_chunks() {
        let valid = chunk.valid();
        if valid.contains(MARK) || valid.to_ascii_lowercase().contains("\\ufdd0") {
            // The mark would be ambiguous: serde's own error for the whole request.
            return serde_json::from_slice(body)
                .map(|v| (v, false))
                .map_err(invalid);
        }
        text.push_str(valid);
        if !chunk.invalid().is_empty() {
            text.push(MARK);
        }
    }
    serde_json::from_str(&text)
        .map(|v| (v, true))
        .map_err(invalid)
}

/// Removes the records under `at` (resources, scopes, records) that hold [`MARK`].
fn strip_marked(value: &mut Value, at: [&str; 3], refused: &mut u64, first: &mut Option<String>) {
    let [resources, scopes, records] = at;
    let Some(Value::Array(rs)) = value.get_mut(resources) else {
        return;
    };
    for (r, resource) in rs.iter_mut().enumerate() {
        let Some(Value::Array(ss)) = resource.get_mut(scopes) else {
            continue;
        };
        for (s, scope) in ss.iter_mut().enumerate() {
            let Some(Value::Array(list)) = scope.get_mut(records) else {
                continue;
            };
            let mut i = 0;
            list.retain(|record| {
                i += 1;
                if !holds_mark(record) {
                    return true;
                }
                *refused += 1;
                let i = i - 1;
                first.get_or_insert_with(|| {
                    format!("{resources}[{r}].{scopes}[{s}].{records}[{i}]: invalid UTF-8")
                });
                false
            });
        }
    }
}

/// Whether a string or key anywhere in `value` holds [`MARK`].
fn holds_mark(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains(MARK),
        Value::Array(items) => items.iter().any(holds_mark),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains(MARK) || holds_mark(v)),
        _ => false,
    }
}

/// Rewrites snake_case keys to lowerCamelCase and enum names to numbers, recursively.
fn normalize(value: &mut Value, key: Option<&str>) {
    match value {
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('_')) {
                let entries = std::mem::take(map);
                for (k, v) in entries {
                    let k = if k.contains('_') { camel_case(&k) } else { k };
                    // A document with both spellings of one field keeps the first.
                    map.entry(k).or_insert(v);
                }
            }
            for (k, v) in map.iter_mut() {
                normalize(v, Some(k));
            }
        }
        Value::Array(items) => {
            for item in items {
                normalize(item, None);
            }
        }
        Value::String(s) => {
            if let Some(n) = key.and_then(|k| enum_number(k, s)) {
                *value = Value::from(n);
            }
        }
        _ => {}
    }
}

fn enum_number(key: &str, name: &str) -> Option<i32> {
    match key {
        "severityNumber" => SeverityNumber::from_str_name(name).map(|v| v as i32),
        "kind" => SpanKind::from_str_name(name).map(|v| v as i32),
        "code" => StatusCode::from_str_name(name).map(|v| v as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(name).map(|v| v as i32),
        _ => None,
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
