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

use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes an OTLP/JSON request body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        // serde would read a struct from an array, positionally.
        return Err("invalid OTLP/JSON: the request must be a JSON object".into());
    }
    normalize(&mut value, None);
    serde_json::from_value(value).map_err(|e| format!("invalid OTLP/JSON: {e}"))
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
