use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::*;
use crate::test_support::{self, any, log_records as records, logs_request as request};

#[test]
fn a_request_read_in_place_has_the_records_and_envelope_prost_sees() {
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
        test_support::logs_request(records.clone()).resource_logs[0].encoded_len() + 2,
        "the ResourceLogs message with its key and length"
    );
    let mut attributes = Vec::new();
    for (range, record) in resource.scopes[0].records.iter().zip(&records) {
        let view = read_record(request.raw(range), &mut attributes).expect("read in place");
        assert_eq!(view.time_unix_nano, record.time_unix_nano);
        assert_eq!(attributes.len(), record.attributes.len());
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
    assert!(matches!(garbage, Err(DecodeError(_))));
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
