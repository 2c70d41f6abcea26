use arrow::array::{Array, AsArray, MapArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt32Type};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{Status, span};

use super::*;
use crate::test_support;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("tenant.id", s("acme")),
        ],
        dropped_attributes_count: 2,
        entity_refs: vec![],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "lib".into(),
        version: "1.2".into(),
        attributes: vec![kv("scope.attr", Value::IntValue(1))],
        dropped_attributes_count: 3,
    }
}

fn string(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .value(row)
        .to_owned()
}

fn ts(batch: &RecordBatch, column: &str, row: usize) -> i64 {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<TimestampNanosecondType>()
        .value(row)
}

fn u32_at(batch: &RecordBatch, column: &str, row: usize) -> u32 {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<UInt32Type>()
        .value(row)
}

fn map(batch: &RecordBatch, column: &str, row: usize) -> Vec<(String, Option<String>)> {
    let m: &MapArray = batch.column_by_name(column).unwrap().as_map();
    let entries = m.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| {
            (
                keys.value(i).to_owned(),
                (!values.is_null(i)).then(|| values.value(i).to_owned()),
            )
        })
        .collect()
}

/// The origin of test records, with schema URLs `https://r` and `https://s` or none.
fn origin<'a>(r: &'a Resource, sc: &'a InstrumentationScope, urls: bool) -> Origin<'a> {
    let url = |u| if urls { u } else { "" };
    Origin::new(Some(r), url("https://r"), Some(sc), url("https://s"), "")
}

fn convert_logs(records: Vec<LogRecord>) -> Vec<TenantBatch> {
    let (r, sc) = (resource(), scope());
    let origin = origin(&r, &sc, true);
    let mut c = Converter::new(999);
    for rec in &records {
        c.push_log(&tenant(), &origin, rec);
    }
    c.finish().unwrap()
}

#[test]
fn events_are_split_from_logs_by_field_or_attribute() {
    let batches = convert_logs(vec![
        LogRecord {
            event_name: "order.completed".into(),
            ..Default::default()
        },
        LogRecord {
            attributes: vec![kv("event.name", s("user.login"))],
            ..Default::default()
        },
        LogRecord {
            attributes: vec![kv("event.name", s(""))],
            ..Default::default()
        },
        LogRecord {
            attributes: vec![kv("event.name", Value::IntValue(3))],
            ..Default::default()
        },
        LogRecord::default(),
    ]);
    let tables: Vec<_> = batches
        .iter()
        .map(|b| (b.table, b.batch.num_rows()))
        .collect();
    assert_eq!(tables, [(Table::Logs, 3), (Table::Events, 2)]);
    let events = &batches[1].batch;
    assert_eq!(string(events, "event_name", 0), "order.completed");
    assert_eq!(string(events, "event_name", 1), "user.login");
    // The attribute stays where it was: nothing is dropped.
    assert_eq!(
        map(events, "attributes", 1),
        [("event.name".to_owned(), Some("user.login".to_owned()))]
    );
    assert_eq!(string(&batches[0].batch, "event_name", 0), "");
}

#[test]
fn every_log_field_is_kept() {
    let record = LogRecord {
        time_unix_nano: 10,
        observed_time_unix_nano: 20,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(Value::BoolValue(false)),
        }),
        attributes: vec![
            kv("a", s("x")),
            KeyValue {
                key: "empty".into(),
                value: None,
                key_strindex: 0,
            },
        ],
        dropped_attributes_count: 4,
        flags: 1,
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        event_name: String::new(),
    };
    let batches = convert_logs(vec![record]);
    let b = &batches[0].batch;
    assert_eq!(string(b, "tenant_id", 0), "acme");
    assert_eq!(ts(b, "timestamp", 0), 10);
    assert_eq!(ts(b, "observed_timestamp", 0), 20);
    assert_eq!(string(b, "service_name", 0), "checkout");
    assert_eq!(
        b.column_by_name("severity_number")
            .unwrap()
            .as_primitive::<Int32Type>()
            .value(0),
        17
    );
    assert_eq!(string(b, "severity_text", 0), "ERROR");
    assert_eq!(string(b, "body", 0), "false");
    assert_eq!(
        map(b, "attributes", 0),
        [
            ("a".to_owned(), Some("x".to_owned())),
            ("empty".to_owned(), None)
        ]
    );
    assert_eq!(u32_at(b, "dropped_attributes_count", 0), 4);
    assert_eq!(u32_at(b, "flags", 0), 1);
    assert_eq!(string(b, "trace_id", 0), "ab".repeat(16));
    assert_eq!(string(b, "span_id", 0), "cd".repeat(8));
    assert_eq!(map(b, "resource_attributes", 0).len(), 2);
    assert_eq!(string(b, "resource_schema_url", 0), "https://r");
    assert_eq!(u32_at(b, "resource_dropped_attributes_count", 0), 2);
    assert_eq!(string(b, "scope_name", 0), "lib");
    assert_eq!(string(b, "scope_version", 0), "1.2");
    assert_eq!(
        map(b, "scope_attributes", 0),
        [("scope.attr".to_owned(), Some("1".to_owned()))]
    );
    assert_eq!(string(b, "scope_schema_url", 0), "https://s");
    assert_eq!(u32_at(b, "scope_dropped_attributes_count", 0), 3);
}

#[test]
fn missing_times_fall_back_to_observed_then_received() {
    let batches = convert_logs(vec![
        LogRecord {
            observed_time_unix_nano: 50,
            ..Default::default()
        },
        LogRecord::default(),
    ]);
    let b = &batches[0].batch;
    assert_eq!(
        (ts(b, "timestamp", 0), ts(b, "observed_timestamp", 0)),
        (50, 50)
    );
    assert_eq!(
        (ts(b, "timestamp", 1), ts(b, "observed_timestamp", 1)),
        (999, 999)
    );
    assert!(
        b.column_by_name("body").unwrap().is_null(0),
        "no body is null, not empty"
    );
}

#[test]
fn every_span_field_is_kept() {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        trace_state: "k=v".into(),
        parent_span_id: vec![3; 8],
        flags: 257,
        name: "GET /".into(),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 3_500,
        attributes: vec![kv("http.status", Value::IntValue(200))],
        dropped_attributes_count: 1,
        events: vec![span::Event {
            time_unix_nano: 2_000,
            name: "cache.miss".into(),
            attributes: vec![kv("k", s("v"))],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 5,
        links: vec![span::Link {
            trace_id: vec![4; 16],
            span_id: vec![5; 8],
            trace_state: String::new(),
            attributes: vec![],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        dropped_links_count: 6,
        status: Some(Status {
            message: "bad".into(),
            code: 2,
        }),
    };
    let (r, sc) = (resource(), scope());
    let origin = origin(&r, &sc, false);
    let mut c = Converter::new(7);
    c.push_span(&tenant(), &origin, &span);
    let batches = c.finish().unwrap();
    let b = &batches[0].batch;
    assert_eq!(batches[0].table, Table::Spans);
    assert_eq!(string(b, "trace_id", 0), "01".repeat(16));
    assert_eq!(string(b, "parent_span_id", 0), "03".repeat(8));
    assert_eq!(string(b, "trace_state", 0), "k=v");
    assert_eq!(u32_at(b, "flags", 0), 257);
    assert_eq!(string(b, "kind", 0), "SPAN_KIND_SERVER");
    assert_eq!(ts(b, "timestamp", 0), 1_000);
    assert_eq!(ts(b, "observed_timestamp", 0), 7);
    assert_eq!(ts(b, "start_time", 0), 1_000);
    assert_eq!(ts(b, "end_time", 0), 3_500);
    assert_eq!(
        b.column_by_name("duration_ns")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        2_500
    );
    assert_eq!(string(b, "status_code", 0), "STATUS_CODE_ERROR");
    assert_eq!(string(b, "status_message", 0), "bad");
    assert_eq!(
        map(b, "attributes", 0),
        [("http.status".to_owned(), Some("200".to_owned()))]
    );
    assert_eq!(
        string(b, "events", 0),
        r#"[{"time_unix_nano":"2000","name":"cache.miss","attributes":{"k":"v"},"dropped_attributes_count":0}]"#
    );
    assert_eq!(u32_at(b, "dropped_events_count", 0), 5);
    assert_eq!(
        string(b, "links", 0),
        format!(
            r#"[{{"trace_id":"{}","span_id":"{}","trace_state":"","flags":1,"attributes":{{}},"dropped_attributes_count":0}}]"#,
            "04".repeat(16),
            "05".repeat(8)
        )
    );
    assert_eq!(u32_at(b, "dropped_links_count", 0), 6);
}

#[test]
fn tenants_get_separate_batches() {
    let (r, sc) = (resource(), scope());
    let origin = origin(&r, &sc, false);
    let mut c = Converter::new(1);
    let globex = TenantId::parse("globex").unwrap();
    c.push_log(&tenant(), &origin, &LogRecord::default());
    c.push_log(&globex, &origin, &LogRecord::default());
    c.push_log(&tenant(), &origin, &LogRecord::default());
    let batches = c.finish().unwrap();
    let shape: Vec<_> = batches
        .iter()
        .map(|b| (b.tenant.as_str().to_owned(), b.batch.num_rows()))
        .collect();
    assert_eq!(shape, [("acme".to_owned(), 2), ("globex".to_owned(), 1)]);
}

#[test]
fn spans_with_a_large_resource_end_batches_early() {
    // 200 spans under a 1 MiB resource attribute repeat 200 MiB: batches end at about
    // SPAN_BATCH_REPEATED_BYTES, far below Arrow's 2 GiB of string offsets.
    let big = "x".repeat(1 << 20);
    let mut r = resource();
    r.attributes.push(kv("k8s.pod.annotations", s(&big)));
    let sc = scope();
    let origin = origin(&r, &sc, false);
    let mut c = Converter::new(1);
    let globex = TenantId::parse("globex").unwrap();
    for i in 0..200u64 {
        let span = Span {
            name: format!("op-{i}"),
            start_time_unix_nano: 1_000 + i,
            ..Span::default()
        };
        c.push_span(&tenant(), &origin, &span);
    }
    c.push_span(&globex, &origin, &Span::default());
    let batches = c.finish().unwrap();
    let per_batch = SPAN_BATCH_REPEATED_BYTES.div_ceil(origin.repeated_bytes());
    let shape: Vec<_> = batches
        .iter()
        .map(|b| (b.tenant.as_str().to_owned(), b.batch.num_rows()))
        .collect();
    let acme = |n| ("acme".to_owned(), n);
    assert_eq!(
        shape,
        [
            acme(per_batch),
            acme(per_batch),
            acme(per_batch),
            acme(200 - 3 * per_batch),
            ("globex".to_owned(), 1)
        ]
    );
    // Every span is there once, in order, with its resource's attributes.
    let names: Vec<String> = batches[..4]
        .iter()
        .flat_map(|b| (0..b.batch.num_rows()).map(|row| string(&b.batch, "name", row)))
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("op-{i}")).collect();
    assert_eq!(names, expected);
    let last = &batches[3].batch;
    let attributes = map(last, "resource_attributes", last.num_rows() - 1);
    assert!(attributes.contains(&("k8s.pod.annotations".to_owned(), Some(big))));
}

fn convert_with(push: impl FnOnce(&mut Converter, &TenantId, &Origin<'_>)) -> Vec<TenantBatch> {
    let tenant = TenantId::parse("acme").unwrap();
    let resource = test_support::logs_request(vec![]).resource_logs[0]
        .resource
        .clone()
        .unwrap();
    let origin = Origin::new(Some(&resource), "https://r", None, "https://s", "");
    let mut converter = Converter::new(999);
    push(&mut converter, &tenant, &origin);
    converter.finish().unwrap()
}

#[test]
fn records_read_in_place_convert_exactly_as_prost_decoded_ones() {
    use crate::otlp::logs::{LogsRequest, ViewRecord, read_record};
    use prost::Message as _;
    let records = test_support::log_records();
    let bytes = bytes::Bytes::from(test_support::logs_request(records.clone()).encode_to_vec());
    let request = LogsRequest::decode(bytes).unwrap().request;
    let resource = &request.resources[0];
    let expected = convert_with(|c, t, o| {
        for r in &records {
            c.push_log(t, o, r);
        }
    });
    let got = convert_with(|c, t, o| {
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
