use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{
    ResourceLogs as PbResourceLogs, ScopeLogs as PbScopeLogs,
};

use super::*;
use crate::pipeline::convert::{Converter, Origin, TenantBatch};
use audit_store::TenantId;

fn any(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

pub(crate) fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(v),
        ..Default::default()
    }
}

/// Records with every field and every kind of value set, and some with nothing set.
pub(crate) fn records() -> Vec<LogRecord> {
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

fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![PbResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
                dropped_attributes_count: 1,
                ..Default::default()
            }),
            scope_logs: vec![PbScopeLogs {
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

fn convert(push: impl FnOnce(&mut Converter, &TenantId, &Origin<'_>)) -> Vec<TenantBatch> {
    let tenant = TenantId::parse("acme").unwrap();
    let resource = request(vec![]).resource_logs[0].resource.clone().unwrap();
    let origin = Origin::new(Some(&resource), "https://r", None, "https://s", "");
    let mut converter = Converter::new(999);
    push(&mut converter, &tenant, &origin);
    converter.finish().unwrap()
}

#[test]
fn records_read_in_place_convert_exactly_as_prost_decoded_ones() {
    let records = records();
    let bytes = Bytes::from(request(records.clone()).encode_to_vec());
    let decoded = LogsRequest::decode(bytes).unwrap();
    assert_eq!(decoded.refused, 0);
    let request = decoded.request;
    assert_eq!(request.record_count(), records.len());
    let resource = &request.resources[0];
    assert_eq!(resource.schema_url, "https://r");
    assert_eq!(resource.scopes[0].schema_url, "https://s");
    assert_eq!(resource.scopes[0].scope.as_ref().unwrap().name, "scope");
    assert_eq!(
        resource.encoded_len as usize,
        self::request(records.clone()).resource_logs[0].encoded_len() + 2,
        "the ResourceLogs message with its key and length"
    );

    let expected = convert(|c, t, o| {
        for r in &records {
            c.push_log(t, o, r);
        }
    });
    let got = convert(|c, t, o| {
        let mut attributes = Vec::new();
        for range in &resource.scopes[0].records {
            let view = read_record(request.raw(range), &mut attributes).expect("read in place");
            c.push_log(
                t,
                o,
                &ViewRecord {
                    view: &view,
                    attributes: &attributes,
                },
            );
        }
    });
    assert_eq!(got.len(), 2, "logs and events");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((g.table, g.batch.num_rows()), (e.table, e.batch.num_rows()));
        assert_eq!(g.batch, e.batch, "{:?}", g.table);
    }
}

fn encoded(record: &LogRecord) -> Vec<u8> {
    record.encode_to_vec()
}

#[test]
fn what_protobuf_would_merge_or_refuse_is_left_to_prost() {
    let mut attributes = Vec::new();
    let body = LogRecord {
        body: any(Value::StringValue("one".into())),
        ..Default::default()
    };
    // The body twice: protobuf merges the two messages.
    let twice = [encoded(&body), encoded(&body)].concat();
    assert!(read_record(&twice, &mut attributes).is_none());
    assert!(LogRecord::decode(&twice[..]).is_ok());
    // A known field with the wrong wire type: prost refuses it with its own message.
    let wrong = [(1u8 << 3), 5];
    assert!(read_record(&wrong, &mut attributes).is_none());
    assert!(LogRecord::decode(&wrong[..]).is_err());
    // Invalid UTF-8 in a string.
    let mut bad = encoded(&body);
    let at = bad.windows(3).position(|w| w == b"one").unwrap();
    bad[at] = 0xff;
    assert!(read_record(&bad, &mut attributes).is_none());
    assert!(LogRecord::decode(&bad[..]).is_err());
}

#[test]
fn unknown_fields_are_skipped_and_scalars_repeated_keep_the_last() {
    let mut raw = encoded(&LogRecord {
        severity_number: 9,
        ..Default::default()
    });
    // Field 4 (reserved) as a varint, field 15 as bytes, then severity again.
    raw.extend_from_slice(&[4 << 3, 1, (15 << 3) | 2, 2, 1, 1, 2 << 3, 13]);
    let mut attributes = Vec::new();
    let view = read_record(&raw, &mut attributes).unwrap();
    assert_eq!(view.severity_number, 13);
    assert_eq!(LogRecord::decode(&raw[..]).unwrap().severity_number, 13);
}

#[test]
fn an_undecodable_record_leaves_the_envelope_readable_and_garbage_is_refused_whole() {
    let records = vec![
        LogRecord {
            severity_text: "good".into(),
            ..Default::default()
        },
        LogRecord {
            severity_text: "BAD!".into(),
            ..Default::default()
        },
    ];
    let mut bytes = request(records).encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
    bytes[at] = 0xff;
    let decoded = LogsRequest::decode(Bytes::from(bytes)).unwrap();
    let request = decoded.request;
    let ranges = &request.resources[0].scopes[0].records;
    assert_eq!(ranges.len(), 2);
    let mut attributes = Vec::new();
    assert!(read_record(request.raw(&ranges[0]), &mut attributes).is_some());
    assert!(read_record(request.raw(&ranges[1]), &mut attributes).is_none());
    assert!(LogRecord::decode(request.raw(&ranges[1])).is_err());

    let garbage = LogsRequest::decode(Bytes::from_static(&[0xff, 0xff, 0xff]));
    assert!(matches!(garbage, Err(IngestError::Malformed(_))));
}

#[test]
fn an_envelope_only_prost_can_read_is_read_through_prost() {
    // An unknown group field (wire type 3/4), which prost skips and this reader does not read.
    let mut bytes = request(records()).encode_to_vec();
    bytes.extend_from_slice(&[(9 << 3) | 3, (9 << 3) | 4]);
    let decoded = LogsRequest::decode(Bytes::from(bytes)).unwrap();
    assert_eq!(decoded.request.record_count(), records().len());
    assert_eq!(decoded.refused, 0);
}
