use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets as ExpBuckets;

#[test]
fn names_follow_the_compatibility_spec() {
    let check = |name: &str, unit: &str, kind: Kind, monotonic: bool, want: &str| {
        assert_eq!(
            metric_name(name, unit, kind, monotonic).unwrap(),
            want,
            "{name} [{unit}]"
        );
    };
    check(
        "http.server.request.duration",
        "s",
        Kind::Histogram,
        false,
        "http_server_request_duration_seconds",
    );
    check(
        "http.server.requests",
        "{request}",
        Kind::Counter,
        true,
        "http_server_requests_total",
    );
    check(
        "process.memory.usage",
        "By",
        Kind::Gauge,
        false,
        "process_memory_usage_bytes",
    );
    check(
        "system.cpu.utilization",
        "1",
        Kind::Gauge,
        false,
        "system_cpu_utilization_ratio",
    );
    check("hits", "1", Kind::Counter, true, "hits_total");
    check(
        "speed",
        "m/s",
        Kind::Gauge,
        false,
        "speed_meters_per_second",
    );
    check(
        "bytes_sent_total",
        "By",
        Kind::Counter,
        true,
        "bytes_sent_bytes_total",
    );
    check(
        "latency_seconds",
        "s",
        Kind::Gauge,
        false,
        "latency_seconds",
    );
    check("9lives..count", "", Kind::Gauge, false, "_9lives_count");
    check("queue-depth", "{items}", Kind::Gauge, false, "queue_depth");
    assert!(metric_name("tenantscope.ingest", "", Kind::Gauge, false).is_err());
    assert!(metric_name("...", "", Kind::Gauge, false).is_err());
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

#[test]
fn labels_are_sanitised_and_reserved_names_renamed() {
    let labels = attributes(
        [
            kv("http.method", "GET"),
            kv("http_method", "POST"),
            kv("2xx", "yes"),
            kv("__secret", "s"),
            kv("tenant", "spoof"),
            kv("le", "1"),
        ]
        .iter(),
    );
    assert_eq!(
        labels,
        vec![
            ("exported_le".to_owned(), "1".to_owned()),
            ("exported_tenant".to_owned(), "spoof".to_owned()),
            ("http_method".to_owned(), "GET;POST".to_owned()),
            ("key_2xx".to_owned(), "yes".to_owned()),
            ("key__secret".to_owned(), "s".to_owned()),
        ]
    );
}

#[test]
fn exponential_histograms_convert_to_buckets() {
    // scale 0: base 2. Positive offset 1: buckets (2,4] and (4,8]; a zero bucket; negative
    // offset 0: [-2,-1).
    let p = ExponentialHistogramDataPoint {
        count: 10,
        sum: Some(20.0),
        scale: 0,
        zero_count: 1,
        zero_threshold: 0.0,
        positive: Some(ExpBuckets {
            offset: 1,
            bucket_counts: vec![3, 4],
        }),
        negative: Some(ExpBuckets {
            offset: 0,
            bucket_counts: vec![2],
        }),
        ..Default::default()
    };
    let b = exponential(&p).unwrap().unwrap();
    assert_eq!(&b.bounds[..], &[-1.0, 0.0, 4.0, 8.0]);
    assert_eq!(b.counts, vec![2, 1, 3, 4, 0]);
    assert_eq!((b.sum, b.count), (20.0, 10));
    let bad = ExponentialHistogramDataPoint { count: 99, ..p };
    assert!(exponential(&bad).is_err());
}

#[test]
fn explicit_histograms_are_checked() {
    let p = HistogramDataPoint {
        count: 3,
        sum: Some(1.5),
        bucket_counts: vec![1, 1, 1],
        explicit_bounds: vec![0.5, 1.0],
        ..Default::default()
    };
    assert_eq!(explicit(&p).unwrap().unwrap().counts, vec![1, 1, 1]);
    let wrong_len = HistogramDataPoint {
        bucket_counts: vec![1, 2],
        ..p.clone()
    };
    assert!(explicit(&wrong_len).unwrap_err().contains("bucket counts"));
    let decreasing = HistogramDataPoint {
        explicit_bounds: vec![1.0, 0.5],
        ..p.clone()
    };
    assert!(explicit(&decreasing).is_err());
    let no_value = HistogramDataPoint {
        flags: FLAG_NO_RECORDED_VALUE,
        ..p
    };
    assert!(explicit(&no_value).unwrap().is_none());
}

/// Found by the `otlp_protobuf` fuzz target: bucket counts whose sum passes u64::MAX wrapped
/// round (and panicked with overflow checks on) instead of being refused.
#[test]
fn bucket_counts_that_overflow_do_not_add_up() {
    let explicit_point = HistogramDataPoint {
        count: 1,
        bucket_counts: vec![u64::MAX, 2],
        explicit_bounds: vec![1.0],
        ..Default::default()
    };
    assert!(explicit(&explicit_point).unwrap_err().contains("add up"));
    let exponential_point = ExponentialHistogramDataPoint {
        count: 0,
        zero_count: u64::MAX,
        positive: Some(ExpBuckets {
            offset: 0,
            bucket_counts: vec![1],
        }),
        ..Default::default()
    };
    assert!(
        exponential(&exponential_point)
            .unwrap_err()
            .contains("add up")
    );
}
