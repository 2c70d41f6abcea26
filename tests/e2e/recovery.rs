//! Start-up recovery of the daemon from a write-ahead log it did not write itself: valid records
//! are replayed and committed; a torn tail and a corrupt record are reported, counted and
//! preserved, and the daemon starts anyway.

use audit_store::TenantId;
use audit_store::wal::payload::encode_batch;
use audit_store::wal::{Durability, Entry, WalWriter, list_segments};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tenantscope::pipeline::convert::{Converter, Origin};

use crate::harness::Daemon;

fn payload(tenant: &TenantId, body: &str) -> Vec<u8> {
    let mut converter = Converter::new(1_795_000_000_000_000_000);
    let origin = Origin {
        resource: None,
        resource_schema_url: "",
        scope: None,
        scope_schema_url: "",
        redaction_policy: "",
    };
    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    converter.push_log(tenant, &origin, &record);
    let batches = converter.finish().unwrap();
    let mut out = Vec::new();
    encode_batch(&batches[0].batch, &mut out).unwrap();
    out
}

#[tokio::test]
async fn replays_valid_records_and_survives_damage() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let acme = TenantId::parse("acme").unwrap();
    // Segment 1: three records, the second of which will be damaged. Segment 2: two records,
    // the last of which will be cut short.
    let mut wal = WalWriter::new(&wal_dir, 0, 1 << 20).unwrap();
    let append = |wal: &mut WalWriter, bodies: &[&str]| {
        let payloads: Vec<Vec<u8>> = bodies.iter().map(|b| payload(&acme, b)).collect();
        let entries: Vec<Entry<'_>> = payloads
            .iter()
            .map(|p| Entry {
                tenant: &acme,
                table: audit_store::Table::Logs,
                durability: Durability::Sync,
                ends_request: true,
                payload: p,
            })
            .collect();
        wal.append(&entries).unwrap();
    };
    append(&mut wal, &["a1", "a2-damaged", "a3-lost-behind-damage"]);
    wal.close();
    append(&mut wal, &["b1", "b2-torn"]);
    drop(wal);
    let segments = list_segments(&wal_dir).unwrap();
    assert_eq!(segments.len(), 2);
    let mut first = std::fs::read(&segments[0].1).unwrap();
    let at = first.windows(10).position(|w| w == b"a2-damaged").unwrap();
    first[at] ^= 0x20;
    std::fs::write(&segments[0].1, &first).unwrap();
    let second = std::fs::read(&segments[1].1).unwrap();
    std::fs::write(&segments[1].1, &second[..second.len() - 7]).unwrap();

    let mut d = Daemon::start_in(dir, |_| {}).await;
    let mut bodies: Vec<String> = d
        .query("acme", "SELECT body FROM logs")
        .await
        .into_iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["a1", "b1"]);
    assert_eq!(
        d.metric("tenantscope_wal_replayed_records_total").await,
        2.0
    );
    assert_eq!(d.metric("tenantscope_wal_torn_tails_total").await, 1.0);
    assert_eq!(d.metric("tenantscope_wal_corrupt_records_total").await, 1.0);
    let evidence = wal_dir
        .join("corrupt")
        .join(segments[0].1.file_name().unwrap());
    assert_eq!(
        std::fs::read(evidence).unwrap(),
        first,
        "the damaged segment is kept as it was"
    );
    d.stop().await;
}
