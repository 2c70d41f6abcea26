use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

use super::*;
use crate::otlp::logs::{self, LogsRequest, ViewRecord};
use crate::pipeline::convert::{Converter, Origin, TenantBatch, log_table};
use crate::test_support::{kv, log_records as records};
use testing::logged_request;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// Two resources of two tenants; the first with two scopes (one without a scope message).
fn request() -> ExportLogsServiceRequest {
    let resource = |tenant: &str| {
        Some(Resource {
            attributes: vec![
                kv("service.name", Value::StringValue("checkout".into())),
                kv("tenant.id", Value::StringValue(tenant.into())),
            ],
            ..Default::default()
        })
    };
    let scope = |name: &str| {
        Some(InstrumentationScope {
            name: name.into(),
            version: "1.0".into(),
            ..Default::default()
        })
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: resource("acme"),
                scope_logs: vec![
                    ScopeLogs {
                        scope: scope("first"),
                        log_records: records(),
                        schema_url: "https://s1".into(),
                    },
                    ScopeLogs {
                        scope: None,
                        log_records: records()[..2].to_vec(),
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://r1".into(),
            },
            ResourceLogs {
                resource: resource("globex"),
                scope_logs: vec![ScopeLogs {
                    scope: scope("second"),
                    log_records: records(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    }
}

const POLICIES: [&str; 2] = ["", "pii-v1"];

/// Logs `request` as the ingest path does — record 1 of every scope refused, every third
/// record given as a decoded record rather than by its range — and converts the same records
/// directly, as ingest did before records were logged as OTLP.
fn log_and_convert(received_at: i64) -> (Vec<Record>, Vec<TenantBatch>) {
    let bytes = Bytes::from(request().encode_to_vec());
    let request = LogsRequest::parse(bytes).unwrap();
    let mut payloads = LogPayloads::new(received_at, request.bytes().clone());
    let mut expected = Converter::new(received_at);
    // What ingest would have converted, in the order a commit converts it: by time (stable).
    let mut accepted: Vec<(i64, usize, usize, usize, LogRecord)> = Vec::new();
    let mut attributes = Vec::new();
    for (r, resource) in request.resources.iter().enumerate() {
        let tenant = tenant(["acme", "globex"][r]);
        let policy = POLICIES[r];
        payloads.resource(
            &tenant,
            policy,
            resource.resource.as_ref(),
            &resource.schema_url,
        );
        for (s, scope) in resource.scopes.iter().enumerate() {
            payloads.scope(scope.scope.as_ref(), &scope.schema_url);
            for (i, range) in scope.records.iter().enumerate() {
                if i == 1 {
                    continue;
                }
                let decoded = LogRecord::decode(request.raw(range)).unwrap();
                let table = log_table(&decoded);
                if i % 3 == 0 {
                    payloads.owned_record(table, &decoded);
                } else {
                    let view = logs::read_record(request.raw(range), &mut attributes).unwrap();
                    let view = ViewRecord {
                        view: &view,
                        attributes: &attributes,
                    };
                    assert_eq!(log_table(&view), table);
                    payloads.record(table, range.clone());
                }
                let time = logs::record_time(request.raw(range), received_at);
                accepted.push((time, r, s, i, decoded));
            }
        }
    }
    accepted.sort_by_key(|a| a.0);
    for (_, r, s, _, decoded) in &accepted {
        let resource = &request.resources[*r];
        let scope = &resource.scopes[*s];
        let origin = Origin::new(
            resource.resource.as_ref(),
            &resource.schema_url,
            scope.scope.as_ref(),
            &scope.schema_url,
            POLICIES[*r],
        );
        expected.push_log(&tenant(["acme", "globex"][*r]), &origin, decoded);
    }
    (payloads.finish(), expected.finish().unwrap())
}

#[test]
fn logged_records_convert_exactly_as_they_would_have_at_ingest() {
    let (logged, expected) = log_and_convert(1_234_567);
    let keys: Vec<(&str, Table, usize)> = logged
        .iter()
        .map(|r| (r.tenant.as_str(), r.table, r.rows))
        .collect();
    // records(): 6 logs and 2 events per scope; record 1 (a log) refused in each scope.
    assert_eq!(
        keys,
        vec![
            ("acme", Table::Logs, 5 + 1),
            ("acme", Table::Events, 2),
            ("globex", Table::Logs, 5),
            ("globex", Table::Events, 2),
        ]
    );
    assert_eq!(expected.len(), 4);
    for record in logged {
        let header = OtlpLogs::parse(&record.payload).unwrap().unwrap();
        assert_eq!(header.rows as usize, record.rows);
        assert_eq!(header.received_at, 1_234_567);
        let mut converter = Converter::new(0);
        let converted =
            convert(&record.tenant, record.table, record.payload, &mut converter).unwrap();
        assert_eq!(
            converted,
            Converted {
                rows: record.rows,
                unreadable: 0
            }
        );
        let batches = converter.finish().unwrap();
        assert_eq!(batches.len(), 1);
        let want = expected
            .iter()
            .find(|b| b.tenant == record.tenant && b.table == record.table)
            .unwrap();
        assert_eq!(
            batches[0].batch, want.batch,
            "{}/{:?}",
            record.tenant, record.table
        );
    }
}

#[test]
fn a_payload_is_an_otlp_request_any_protobuf_reader_can_read() {
    let (logged, _) = log_and_convert(0);
    let acme_logs = &logged[0];
    let header = OtlpLogs::parse(&acme_logs.payload).unwrap().unwrap();
    let request = ExportLogsServiceRequest::decode(header.request).unwrap();
    assert_eq!(request.resource_logs.len(), 1, "only acme's resource");
    let resource = &request.resource_logs[0];
    assert_eq!(resource.schema_url, "https://r1");
    assert_eq!(resource.scope_logs.len(), 2);
    assert_eq!(resource.scope_logs[0].scope.as_ref().unwrap().name, "first");
    assert_eq!(resource.scope_logs[0].schema_url, "https://s1");
    assert_eq!(resource.scope_logs[0].log_records.len(), 5);
    assert!(resource.scope_logs[1].scope.is_none());
    // (Compared as bytes: the record holds a NaN.)
    let second: Vec<Vec<u8>> = resource.scope_logs[1]
        .log_records
        .iter()
        .map(Message::encode_to_vec)
        .collect();
    assert_eq!(second, vec![records()[0].encode_to_vec()]);
    // The events payload has only the first scope: the second had no events.
    let acme_events = OtlpLogs::parse(&logged[1].payload).unwrap().unwrap();
    let request = ExportLogsServiceRequest::decode(acme_events.request).unwrap();
    assert_eq!(request.resource_logs[0].scope_logs.len(), 1);
    assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 2);
}

#[test]
fn a_damaged_payload_is_an_error_or_counts_what_it_lost_never_a_panic() {
    let (logged, _) = log_and_convert(0);
    let record = &logged[0];
    let header_len = OtlpLogs::parse(&record.payload)
        .unwrap()
        .unwrap()
        .request_offset(&record.payload);
    for cut in 0..record.payload.len() {
        let mut converter = Converter::new(0);
        let payload = record.payload[..cut].to_vec();
        // An error is fine (the envelope is cut); a conversion accounts for every row.
        if let Ok(c) = convert(&record.tenant, record.table, payload, &mut converter) {
            assert!(cut >= header_len, "cut at {cut}");
            assert_eq!(c.rows + c.unreadable, record.rows, "cut at {cut}");
            assert!(c.unreadable > 0, "cut at {cut}");
            let batches = converter.finish().unwrap();
            let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
            assert_eq!(rows, c.rows);
        }
    }
    // A flipped byte inside a record: that record (or the envelope) is lost, no more.
    let mut damaged = record.payload.clone();
    let at = damaged.len() - 40;
    damaged[at] ^= 0xff;
    let mut converter = Converter::new(0);
    if let Ok(c) = convert(&record.tenant, record.table, damaged, &mut converter) {
        assert_eq!(c.rows + c.unreadable, record.rows);
    }
    let mut converter = Converter::new(0);
    assert!(
        convert(
            &record.tenant,
            record.table,
            b"tsbatch\x02".to_vec(),
            &mut converter
        )
        .is_err()
    );
}

/// One scope of `records` for acme's `logs`, logged whole and read back as a commit reads it.
fn logged(records: Vec<LogRecord>, received_at: i64) -> Logged {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    logged_request(request.encode_to_vec(), received_at)
}

#[test]
fn a_buffer_of_several_payloads_converts_to_one_batch_in_time_order() {
    let times = |base: u64| -> Vec<LogRecord> {
        [5, 1, 9, 3]
            .iter()
            .map(|t| LogRecord {
                time_unix_nano: base + t,
                body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(Value::StringValue(format!("{}", base + t))),
                }),
                ..Default::default()
            })
            .collect()
    };
    let acme = tenant("acme");
    let mut logged: Vec<Logged> = [1_000u64, 0, 2_000]
        .into_iter()
        .map(|base| self::logged(times(base), 7))
        .collect();
    // A record without a time sorts by its request's receive time (7 ns here).
    logged.push(self::logged(vec![LogRecord::default()], 7));
    let mut converter = Converter::new(0);
    let converted = convert_sorted(&acme, Table::Logs, &logged, &mut converter);
    assert_eq!(
        converted,
        Converted {
            rows: 13,
            unreadable: 0
        }
    );
    let batches = converter.finish().unwrap();
    assert_eq!(batches.len(), 1);
    let timestamps = batches[0]
        .batch
        .column_by_name("timestamp")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::TimestampNanosecondArray>()
        .unwrap()
        .values()
        .to_vec();
    assert_eq!(
        timestamps,
        vec![
            1, 3, 5, 7, 9, 1_001, 1_003, 1_005, 1_009, 2_001, 2_003, 2_005, 2_009
        ]
    );
}

#[test]
fn the_ordering_time_is_the_stored_timestamp() {
    let time = |record: LogRecord| logs::record_time(&record.encode_to_vec(), 42);
    assert_eq!(time(LogRecord::default()), 42);
    assert_eq!(
        time(LogRecord {
            observed_time_unix_nano: 9,
            ..Default::default()
        }),
        9
    );
    let full = &records()[0];
    assert_eq!(time(full.clone()), full.time_unix_nano as i64);
    // Unreadable bytes: the receive time (the writer sorts by the converted column anyway).
    assert_eq!(logs::record_time(&[0x0b], 42), 42);
}

#[test]
fn a_large_buffer_becomes_batches_that_follow_each_other_in_time() {
    let acme = tenant("acme");
    // Three requests whose times interleave: request k holds times k, k + 3, k + 6, ...
    let logged: Vec<Logged> = (0..3u64)
        .map(|k| {
            let records = (0..7_000u64)
                .map(|n| LogRecord {
                    time_unix_nano: 1 + k + 3 * n,
                    ..Default::default()
                })
                .collect();
            self::logged(records, 0)
        })
        .collect();
    let (batches, converted) = to_sorted_batches(&acme, Table::Logs, &logged);
    assert_eq!(
        converted,
        Converted {
            rows: 21_000,
            unreadable: 0
        }
    );
    let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
    let expected: Vec<usize> = (0..21_000)
        .step_by(COMMIT_BATCH_ROWS)
        .map(|start| COMMIT_BATCH_ROWS.min(21_000 - start))
        .collect();
    assert!(expected.len() > 1);
    assert_eq!(sizes, expected);
    let times: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("timestamp")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(times, (1..=21_000).collect::<Vec<i64>>());
}

#[test]
fn a_large_resource_attribute_ends_batches_early() {
    // Every row repeats its resource's attributes: 200 rows of a 1 MiB attribute are 200 MiB of
    // Arrow, so batches end at about COMMIT_BATCH_BYTES instead of at COMMIT_BATCH_ROWS.
    let big = "x".repeat(1 << 20);
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.description", Value::StringValue(big.clone()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..200)
                    .map(|n| LogRecord {
                        time_unix_nano: 1 + n,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let logged = [logged_request(request.encode_to_vec(), 0)];
    let mut sizes = Vec::new();
    let converted = for_each_sorted_batch(&tenant("acme"), Table::Logs, &logged, |batch| {
        let attributes = batch
            .column_by_name("resource_attributes")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::MapArray>()
            .unwrap()
            .values()
            .len();
        sizes.push((batch.num_rows(), attributes));
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(
        converted,
        Converted {
            rows: 200,
            unreadable: 0
        }
    );
    let per_batch = COMMIT_BATCH_BYTES.div_ceil(big.len() + 1);
    assert_eq!(
        sizes,
        [per_batch, per_batch, per_batch, 200 - 3 * per_batch].map(|rows| (rows, rows)),
        "batches of about {COMMIT_BATCH_BYTES} bytes, each row with its attribute"
    );
}

/// Found by the `wal_replay` fuzz target: a framing announcing far more rows than its request
/// holds (damage that a CRC does not catch, or a hostile log) sized a 28 GB buffer.
#[test]
fn a_framing_announcing_more_rows_than_it_holds_allocates_by_what_it_holds() {
    let (records, _) = log_and_convert(0);
    let record = &records[0];
    let mut payload = record.payload.clone();
    OtlpLogs::set_rows(&mut payload, u32::MAX);
    let logged = Logged::parse(payload).unwrap();
    assert_eq!(logged.rows(), u32::MAX as usize);
    let (batches, converted) = to_sorted_batches(&record.tenant, record.table, &[logged]);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!((rows, converted.rows), (record.rows, record.rows));
}
