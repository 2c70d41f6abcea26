//! OTLP `AnyValue` → the text stored in attribute maps and the `body` column.
//!
//! A string is stored as itself; every other type as its JSON text: `true`, `42`, `1.5`,
//! `"NaN"` / `"Infinity"` for non-finite doubles (JSON has no literal for them), bytes as a
//! base64 JSON string (`"aGk="`, as OTLP/JSON writes them), arrays and key-value lists as JSON
//! arrays and objects whose nested strings are JSON strings. An empty `AnyValue` is `null`.

use std::borrow::Cow;

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use serde_json::Value as Json;

/// How deeply `value` nests (a scalar is 1, an array of scalars 2), counted no further than
/// `limit + 1`: enough to tell whether it is over `limit` without walking all of a deep value.
pub fn depth(value: Option<&AnyValue>, limit: usize) -> usize {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return 0;
    };
    if limit == 0 {
        return 1;
    }
    let below = match value {
        Value::ArrayValue(a) => a.values.iter().map(|v| depth(Some(v), limit - 1)).max(),
        Value::KvlistValue(l) => l
            .values
            .iter()
            .map(|kv| depth(kv.value.as_ref(), limit - 1))
            .max(),
        _ => None,
    };
    1 + below.unwrap_or(0)
}

/// The deepest of `attributes`' values (see [`depth`]).
pub fn attributes_depth(attributes: &[KeyValue], limit: usize) -> usize {
    attributes
        .iter()
        .map(|kv| depth(kv.value.as_ref(), limit))
        .max()
        .unwrap_or(0)
}

/// Bounds on a record's values (`ingest.max_value_depth`, `max_attribute_key_length`,
/// `max_attribute_value_length`, `max_value_elements`).
#[derive(Debug, Clone, Copy)]
pub struct ValueLimits {
    pub max_depth: usize,
    /// Bytes of a key, in an attribute or a key-value list at any depth.
    pub max_key_length: usize,
    /// Bytes of a string or bytes value of an attribute, at any depth (a log body is bounded by
    /// the request's size only).
    pub max_value_length: usize,
    /// Elements of one array or key-value list.
    pub max_elements: usize,
}

/// The first bound a value breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    TooDeep,
    KeyTooLong(usize),
    ValueTooLong(usize),
    TooManyElements(usize),
}

impl ValueLimits {
    /// The same bounds without one on string length: a log body's.
    pub fn for_body(self) -> Self {
        Self {
            max_value_length: usize::MAX,
            ..self
        }
    }

    pub fn key(&self, key: &str) -> Result<(), ValueProblem> {
        if key.len() > self.max_key_length {
            return Err(ValueProblem::KeyTooLong(key.len()));
        }
        Ok(())
    }

    pub fn length(&self, len: usize) -> Result<(), ValueProblem> {
        if len > self.max_value_length {
            return Err(ValueProblem::ValueTooLong(len));
        }
        Ok(())
    }

    /// Checks `value` (at nesting level 1) against every bound, stopping at the first broken.
    pub fn check(&self, value: Option<&AnyValue>) -> Result<(), ValueProblem> {
        match value.and_then(|v| v.value.as_ref()) {
            Some(value) => self.check_at(value, 1),
            None => Ok(()),
        }
    }

    /// Checks every attribute's key and value.
    pub fn check_attributes(&self, attributes: &[KeyValue]) -> Result<(), ValueProblem> {
        attributes.iter().try_for_each(|kv| {
            self.key(&kv.key)?;
            self.check(kv.value.as_ref())
        })
    }

    fn check_at(&self, value: &Value, level: usize) -> Result<(), ValueProblem> {
        if level > self.max_depth {
            return Err(ValueProblem::TooDeep);
        }
        let elements = |n: usize| {
            if n > self.max_elements {
                return Err(ValueProblem::TooManyElements(n));
            }
            Ok(())
        };
        let nested = |v: &AnyValue| match v.value.as_ref() {
            Some(v) => self.check_at(v, level + 1),
            None => Ok(()),
        };
        match value {
            Value::StringValue(s) => self.length(s.len()),
            Value::BytesValue(b) => self.length(b.len()),
            Value::ArrayValue(a) => {
                elements(a.values.len())?;
                a.values.iter().try_for_each(nested)
            }
            Value::KvlistValue(l) => {
                elements(l.values.len())?;
                l.values.iter().try_for_each(|kv| {
                    self.key(&kv.key)?;
                    kv.value.as_ref().map_or(Ok(()), nested)
                })
            }
            _ => Ok(()),
        }
    }
}

/// The stored text of a value; `None` for an absent or empty value. A string is borrowed, not
/// copied: this runs for every attribute of every record.
pub fn to_text(value: Option<&AnyValue>) -> Option<Cow<'_, str>> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(to_json(Some(other)).to_string())),
    }
}

/// The JSON form of a value.
pub fn to_json(value: Option<&Value>) -> Json {
    match value {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => Json::Number(n),
            None if d.is_nan() => Json::String("NaN".into()),
            None if *d > 0.0 => Json::String("Infinity".into()),
            None => Json::String("-Infinity".into()),
        },
        Some(Value::BytesValue(b)) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(|v| to_json(v.value.as_ref())).collect())
        }
        Some(Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), to_json(v))
                })
                .collect(),
        ),
        // An index into a profile's string table: meaningless outside profiles, kept as given.
        Some(Value::StringValueStrindex(i)) => serde_json::json!({ "stringValueStrindex": i }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    fn check(value: Option<AnyValue>, expected: Option<&str>) {
        assert_eq!(to_text(value.as_ref()).as_deref(), expected);
    }

    #[test]
    fn every_any_value_type_is_kept() {
        check(None, None);
        check(Some(AnyValue { value: None }), None);
        check(Some(any(Value::StringValue("plain".into()))), Some("plain"));
        check(Some(any(Value::BoolValue(true))), Some("true"));
        check(
            Some(any(Value::IntValue(-9_007_199_254_740_993))),
            Some("-9007199254740993"),
        );
        check(Some(any(Value::DoubleValue(1.5))), Some("1.5"));
        check(Some(any(Value::DoubleValue(f64::NAN))), Some(r#""NaN""#));
        check(
            Some(any(Value::DoubleValue(f64::NEG_INFINITY))),
            Some(r#""-Infinity""#),
        );
        check(
            Some(any(Value::BytesValue(b"hi".to_vec()))),
            Some(r#""aGk=""#),
        );
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                any(Value::StringValue("a".into())),
                any(Value::IntValue(1)),
                AnyValue { value: None },
            ],
        });
        check(Some(any(array)), Some(r#"["a",1,null]"#));
        let kvlist = Value::KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "k".into(),
                    key_strindex: 0,
                    value: Some(any(Value::BoolValue(false))),
                },
                KeyValue {
                    key: "nested".into(),
                    key_strindex: 0,
                    value: Some(any(Value::KvlistValue(KeyValueList { values: vec![] }))),
                },
            ],
        });
        check(Some(any(kvlist)), Some(r#"{"k":false,"nested":{}}"#));
    }

    #[test]
    fn depth_counts_levels_and_stops_past_the_limit() {
        let scalar = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        let wrap = |v: AnyValue| AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
        let list = |v: AnyValue| AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(v),
                    ..KeyValue::default()
                }],
            })),
        };
        assert_eq!(depth(None, 32), 0);
        assert_eq!(depth(Some(&scalar), 32), 1);
        let mut deep = scalar.clone();
        for i in 2..=40 {
            deep = if i % 2 == 0 { wrap(deep) } else { list(deep) };
            assert_eq!(depth(Some(&deep), 64), i);
        }
        assert_eq!(
            depth(Some(&deep), 32),
            33,
            "counted no further than the limit + 1"
        );
        let attributes = [KeyValue {
            key: "a".into(),
            value: Some(wrap(scalar)),
            ..KeyValue::default()
        }];
        assert_eq!(attributes_depth(&attributes, 32), 2);
        assert_eq!(attributes_depth(&[], 32), 0);
    }
}
