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

/// The stored text of a value; `None` for an absent or empty value. A string is borrowed, not
/// copied: this runs for every attribute of every record.
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
