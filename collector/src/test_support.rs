//! Test helpers shared by the modules' tests (compiled for tests only): OTLP records and
//! requests with every kind of field and value set. A module's tests import these, never
//! another module's tests.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn any(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

pub fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(v),
        ..Default::default()
    }
}

/// Records with every field and every kind of value set, and some with nothing set.
pub fn log_records() -> Vec<LogRecord> {
    let every_value = vec![
        kv("s", Value::StringValue("text".into())),
        kv("b", Value::BoolValue(true)),
        kv("i", Value::IntValue(-42)),
        kv("d", Value::DoubleValue(1.5)),
        kv("nan", Value::DoubleValue(f64::NAN)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2])),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::IntValue(1)),
                }],
            }),
        ),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("k", Value::StringValue("v".into()))],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: None,
            ..Default::default()
        },
        KeyValue {
            key: "empty-any".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ];
    let full = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: 1_700_000_001_000_000_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: any(Value::StringValue("a body — ünïcode".into())),
        attributes: every_value,
        dropped_attributes_count: 3,
        flags: 1,
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        event_name: String::new(),
    };
    let bodies = [
        any(Value::IntValue(7)),
        any(Value::KvlistValue(KeyValueList {
            values: vec![kv("nested", Value::BoolValue(false))],
        })),
        Some(AnyValue { value: None }),
        None,
    ];
    let mut out = vec![full, LogRecord::default()];
    out.extend(bodies.into_iter().map(|body| LogRecord {
        body,
        ..Default::default()
    }));
    out.push(LogRecord {
        event_name: "user.login".into(),
        ..Default::default()
    });
    out.push(LogRecord {
        attributes: vec![kv(
            "event.name",
            Value::StringValue("from.attribute".into()),
        )],
        ..Default::default()
    });
    out
}

/// One resource (`service.name` = `checkout`, schema `https://r`) with one scope (`scope`,
/// schema `https://s`) holding `records`.
pub fn logs_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
                dropped_attributes_count: 1,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "scope".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: "https://s".into(),
            }],
            schema_url: "https://r".into(),
        }],
    }
}
