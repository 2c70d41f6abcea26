//! `/metrics` for tenants: span RED, log and event metrics with exact values; OTLP metrics from
//! the real `opentelemetry-otlp` exporter (cumulative and delta); cardinality budgets; and the
//! exposition checked by `promtool`.

use std::time::Duration;

use http::StatusCode;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use prost::Message;

use crate::harness::{Daemon, get, post};

/// The exposition, checked by `promtool check metrics` (Debian's `prometheus` package; `.ci/run`
/// installs it).
async fn scrape(d: &Daemon) -> String {
    let (status, _, body) = get(d.metrics, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed; .ci/run installs it");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The lines of `text` starting with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The value of the one series `series` (a full name with labels).
fn value(text: &str, series: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{series} in:\n{text}");
    found[0]
}

fn span(name: &str, kind: i32, status: i32, start_ns: u64, duration_ns: u64) -> serde_json::Value {
    serde_json::json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": (start_ns + duration_ns).to_string(),
        "status": {"code": status}
    })
}

async fn send(d: &Daemon, path: &str, tenant: &str, body: serde_json::Value) {
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", tenant),
    ];
    let (status, _, answer) = post(d.http, path, &headers, body.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    assert_eq!(&answer[..], b"{}", "nothing refused");
}

fn resource(service: &str) -> serde_json::Value {
    serde_json::json!({"attributes": [{"key": "service.name", "value": {"stringValue": service}}]})
}

#[tokio::test]
async fn span_log_and_event_metrics_have_exact_values() {
    let mut d = Daemon::start().await;
    let t0 = 1_795_000_000_000_000_000_u64;
    let ms = 1_000_000_u64;
    // acme: 3 OK server spans (5 ms, 50 ms, 500 ms) and 2 ERROR ones (3 s, 20 s).
    let acme_spans = vec![
        span("GET /a", 2, 1, t0, 5 * ms),
        span("GET /a", 2, 1, t0, 50 * ms),
        span("GET /a", 2, 1, t0, 500 * ms),
        span("GET /a", 2, 2, t0, 3_000 * ms),
        span("GET /a", 2, 2, t0, 20_000 * ms),
    ];
    send(&d, "/v1/traces", "acme", serde_json::json!({"resourceSpans": [{"resource": resource("shop"), "scopeSpans": [{"spans": acme_spans}]}]})).await;
    // globex: one client span with an unset status.
    send(&d, "/v1/traces", "globex", serde_json::json!({"resourceSpans": [{"resource": resource("db"), "scopeSpans": [{"spans": [span("query", 3, 0, t0, ms)]}]}]})).await;
    // acme logs: 4 INFO, 1 ERROR, 2 events.
    let mut records: Vec<serde_json::Value> = (0..4)
        .map(|_| serde_json::json!({"severityNumber": 9, "body": {"stringValue": "ok"}}))
        .collect();
    records.push(serde_json::json!({"severityNumber": 17, "body": {"stringValue": "bad"}}));
    records.push(serde_json::json!({"eventName": "order.completed"}));
    records.push(serde_json::json!({"eventName": "order.completed", "severityNumber": 9}));
    send(&d, "/v1/logs", "acme", serde_json::json!({"resourceLogs": [{"resource": resource("shop"), "scopeLogs": [{"logRecords": records}]}]})).await;

    let text = scrape(&d).await;
    let ok = r#"tenant="acme",service_name="shop",span_kind="SPAN_KIND_SERVER",span_name="GET /a",status_code="STATUS_CODE_OK""#;
    let err = r#"tenant="acme",service_name="shop",span_kind="SPAN_KIND_SERVER",span_name="GET /a",status_code="STATUS_CODE_ERROR""#;
    assert_eq!(
        value(&text, &format!("tenantscope_span_calls_total{{{ok}}}")),
        3.0
    );
    assert_eq!(
        value(&text, &format!("tenantscope_span_calls_total{{{err}}}")),
        2.0
    );
    let bucket = |labels: &str, le: &str| {
        value(
            &text,
            &format!("tenantscope_span_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
        )
    };
    let expected_ok = [
        ("0.002", 0.0),
        ("0.004", 0.0),
        ("0.006", 1.0),
        ("0.01", 1.0),
        ("0.05", 2.0),
        ("0.1", 2.0),
        ("0.4", 2.0),
        ("0.8", 3.0),
        ("15", 3.0),
        ("+Inf", 3.0),
    ];
    for (le, n) in expected_ok {
        assert_eq!(bucket(ok, le), n, "le={le}");
    }
    for (le, n) in [("2", 0.0), ("5", 1.0), ("15", 1.0), ("+Inf", 2.0)] {
        assert_eq!(bucket(err, le), n, "error le={le}");
    }
    let sum = value(
        &text,
        &format!("tenantscope_span_duration_seconds_sum{{{ok}}}"),
    );
    assert!((sum - 0.555).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(
            &text,
            &format!("tenantscope_span_duration_seconds_count{{{err}}}")
        ),
        2.0
    );
    let globex = r#"tenant="globex",service_name="db",span_kind="SPAN_KIND_CLIENT",span_name="query",status_code="STATUS_CODE_UNSET""#;
    assert_eq!(
        value(&text, &format!("tenantscope_span_calls_total{{{globex}}}")),
        1.0
    );
    assert_eq!(lines(&text, "tenantscope_span_calls_total{").len(), 3);

    assert_eq!(
        value(
            &text,
            r#"tenantscope_log_records_total{tenant="acme",service_name="shop",severity="INFO"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_log_records_total{tenant="acme",service_name="shop",severity="ERROR"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_events_total{tenant="acme",event_name="order.completed"}"#
        ),
        2.0
    );
    assert_eq!(lines(&text, "tenantscope_log_records_total{").len(), 2);

    // Self-metrics: accepted records by tenant, requests and their latency, the queue, the log.
    let accepted = |signal: &str, tenant: &str| {
        value(
            &text,
            &format!(
                r#"tenantscope_ingest_records_accepted_total{{transport="http",signal="{signal}",tenant="{tenant}"}}"#
            ),
        )
    };
    assert_eq!(accepted("traces", "acme"), 5.0);
    assert_eq!(accepted("traces", "globex"), 1.0);
    assert_eq!(accepted("logs", "acme"), 7.0);
    assert_eq!(
        value(
            &text,
            r#"tenantscope_ingest_requests_total{transport="http",signal="traces"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_ingest_request_duration_seconds_count{transport="http",signal="traces"}"#
        ),
        2.0
    );
    assert_eq!(value(&text, "tenantscope_pipeline_queue_in_total"), 3.0);
    assert_eq!(value(&text, "tenantscope_pipeline_queue_out_total"), 3.0);
    assert_eq!(
        value(&text, "tenantscope_pipeline_ack_duration_seconds_count"),
        3.0
    );
    assert!(value(&text, "tenantscope_wal_bytes_appended_total") > 0.0);
    assert_eq!(value(&text, "tenantscope_wal_segments_opened_total"), 1.0);
    assert!(value(&text, "tenantscope_store_disk_size_bytes") > 0.0);
    // Every family on /metrics is spelled in the catalog.
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            tenantscope::telemetry::catalog::ALL_NAMES.contains(&name),
            "{name} is not in catalog::ALL_NAMES"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn tenant_labels_are_bounded() {
    let mut d = Daemon::start_with(|c| c.metrics.max_tenant_labels = 2).await;
    for tenant in ["t1", "t2", "t3", "t4"] {
        let body = serde_json::json!({"resourceLogs": [{"resource": resource("svc"), "scopeLogs": [{"logRecords": [{"severityNumber": 9}]}]}]});
        send(&d, "/v1/logs", tenant, body).await;
    }
    let text = scrape(&d).await;
    let accepted = |tenant: &str| {
        value(
            &text,
            &format!(
                r#"tenantscope_ingest_records_accepted_total{{transport="http",signal="logs",tenant="{tenant}"}}"#
            ),
        )
    };
    assert_eq!(
        (accepted("t1"), accepted("t2"), accepted("__other__")),
        (1.0, 1.0, 2.0)
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_log_records_total{tenant="__other__",service_name="svc",severity="INFO"}"#
        ),
        2.0
    );
    d.stop().await;
}

async fn export_with_sdk(d: &Daemon, tenant: &str, temporality: Temporality) {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("x-scope-orgid", tenant.parse().unwrap());
    let exporter = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(d.grpc_url())
        .with_metadata(metadata)
        .with_temporality(temporality)
        .build()
        .unwrap();
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(
            Resource::builder_empty()
                .with_attribute(KeyValue::new("service.name", "shop"))
                .with_attribute(KeyValue::new("service.instance.id", "i-1"))
                .with_attribute(KeyValue::new("deployment.environment", "test"))
                .build(),
        )
        .build();
    let meter = provider.meter("e2e");
    let requests = meter
        .u64_counter("http.server.requests")
        .with_unit("{request}")
        .build();
    let duration = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .with_boundaries(vec![0.1, 1.0])
        .build();
    let depth = meter.i64_gauge("queue.depth").build();
    let connections = meter.i64_up_down_counter("connections").build();
    let route = [KeyValue::new("http.route", "/a")];
    requests.add(5, &route);
    for v in [0.05, 0.5, 2.0] {
        duration.record(v, &route);
    }
    depth.record(7, &[]);
    connections.add(3, &[]);
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush().unwrap())
        .await
        .unwrap();
    requests.add(3, &route);
    duration.record(0.5, &route);
    depth.record(4, &[]);
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_from_the_real_exporter_cumulative_and_delta() {
    let mut d = Daemon::start().await;
    export_with_sdk(&d, "acme", Temporality::Cumulative).await;
    export_with_sdk(&d, "globex", Temporality::Delta).await;
    let text = scrape(&d).await;
    for tenant in ["acme", "globex"] {
        let labels = format!(r#"tenant="{tenant}",http_route="/a",instance="i-1",job="shop""#);
        assert_eq!(
            value(&text, &format!("http_server_requests_total{{{labels}}}")),
            8.0,
            "{tenant}"
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!("http_server_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
            )
        };
        assert_eq!(
            (bucket("0.1"), bucket("1"), bucket("+Inf")),
            (1.0, 3.0, 4.0),
            "{tenant}"
        );
        assert_eq!(
            value(
                &text,
                &format!("http_server_request_duration_seconds_count{{{labels}}}")
            ),
            4.0
        );
        let sum = value(
            &text,
            &format!("http_server_request_duration_seconds_sum{{{labels}}}"),
        );
        assert!((sum - 3.05).abs() < 1e-9, "{tenant}: {sum}");
        let plain = format!(r#"tenant="{tenant}",instance="i-1",job="shop""#);
        assert_eq!(
            value(&text, &format!("queue_depth{{{plain}}}")),
            4.0,
            "{tenant}"
        );
        assert_eq!(
            value(&text, &format!("connections{{{plain}}}")),
            3.0,
            "{tenant}"
        );
        let info = lines(&text, &format!("target_info{{tenant=\"{tenant}\","));
        assert_eq!(info.len(), 1, "{text}");
        assert!(
            info[0].contains(r#"deployment_environment="test""#),
            "{}",
            info[0]
        );
        assert!(info[0].contains(r#"instance="i-1""#) && info[0].contains(r#"job="shop""#));
    }
    assert!(text.contains("# TYPE http_server_requests_total counter\n"));
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE queue_depth gauge\n"));
    d.stop().await;
}

/// A monotonic delta sum `explode` with one data point per series id.
fn explode(ids: std::ops::Range<usize>) -> Vec<u8> {
    let points: Vec<serde_json::Value> = ids
        .map(|i| {
            serde_json::json!({
                "attributes": [{"key": "id", "value": {"stringValue": format!("s{i}")}}],
                "timeUnixNano": "1795000000000000000",
                "asInt": "1"
            })
        })
        .collect();
    let json = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "explode",
        "sum": {"dataPoints": points, "aggregationTemporality": 1, "isMonotonic": true}
    }]}]}]});
    let request: ExportMetricsServiceRequest = serde_json::from_value(json).unwrap();
    request.encode_to_vec()
}

#[tokio::test]
async fn one_tenants_cardinality_explosion_is_bounded_and_hides_no_other_tenant() {
    let mut d = Daemon::start_with(|c| {
        c.metrics.max_series_per_metric = 1_000;
        c.metrics.max_series_per_tenant = 2_000;
    })
    .await;
    let proto = [("content-type", "application/x-protobuf")];
    let quiet = [proto[0], ("x-scope-orgid", "quiet")];
    let (status, _, _) = post(d.http, "/v1/metrics", &quiet, explode(0..3)).await;
    assert_eq!(status, StatusCode::OK);
    let noisy = [proto[0], ("x-scope-orgid", "noisy")];
    for chunk in 0..10 {
        let (status, _, _) = post(
            d.http,
            "/v1/metrics",
            &noisy,
            explode(chunk * 10_000..(chunk + 1) * 10_000),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let text = scrape(&d).await;
    assert_eq!(
        lines(&text, "explode_total{tenant=\"noisy\",id=").len(),
        1_000
    );
    assert_eq!(
        value(
            &text,
            r#"explode_total{tenant="noisy",otel_metric_overflow="true"}"#
        ),
        99_000.0
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_metrics_series_overflow_total{tenant="noisy"}"#
        ),
        99_000.0
    );
    // The quiet tenant's series are all there, with their values.
    for i in 0..3 {
        assert_eq!(
            value(
                &text,
                &format!("explode_total{{tenant=\"quiet\",id=\"s{i}\"}}")
            ),
            1.0
        );
    }
    // Memory is bounded by the budget: the whole exposition stays small.
    assert!(text.len() < 200_000, "{} bytes", text.len());
    d.stop().await;
}

/// One gauge point under each of the metric names `names`.
fn named(names: std::ops::Range<usize>) -> Vec<u8> {
    let metrics: Vec<_> = names
        .map(|i| serde_json::json!({"name": format!("invented.{i}"), "gauge": {"dataPoints": [{"asInt": "1"}]}}))
        .collect();
    let json = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]});
    let request: ExportMetricsServiceRequest = serde_json::from_value(json).unwrap();
    request.encode_to_vec()
}

/// A tenant inventing 100,000 metric names gets its first `max_families_per_tenant` (1,000);
/// every further point is refused alone (partial success, reason `metric_families`), `/metrics`
/// stays small, and another tenant can still add its own names.
#[tokio::test]
async fn one_tenant_inventing_metric_names_is_bounded_and_hides_no_other_tenant() {
    let mut d = Daemon::start().await;
    let proto = [("content-type", "application/x-protobuf")];
    let noisy = [proto[0], ("x-scope-orgid", "noisy")];
    let mut rejected = 0;
    for chunk in 0..10 {
        let body = named(chunk * 10_000..(chunk + 1) * 10_000);
        let (status, _, response) = post(d.http, "/v1/metrics", &noisy, body).await;
        assert_eq!(status, StatusCode::OK);
        let response = ExportMetricsServiceResponse::decode(response).unwrap();
        rejected += response
            .partial_success
            .map_or(0, |p| p.rejected_data_points);
    }
    assert_eq!(rejected, 99_000);
    let quiet = [proto[0], ("x-scope-orgid", "quiet")];
    let (status, _, response) = post(d.http, "/v1/metrics", &quiet, named(200_000..200_003)).await;
    assert_eq!(status, StatusCode::OK);
    let response = ExportMetricsServiceResponse::decode(response).unwrap();
    assert_eq!(response.partial_success, None);
    let text = scrape(&d).await;
    assert_eq!(lines(&text, "invented_").len(), 1_003);
    assert_eq!(lines(&text, "invented_2000").len(), 3);
    assert_eq!(
        value(
            &text,
            r#"tenantscope_ingest_records_rejected_total{transport="http",signal="metrics",reason="metric_families"}"#
        ),
        99_000.0
    );
    assert_eq!(
        value(
            &text,
            r#"tenantscope_ingest_records_accepted_total{transport="http",signal="metrics",tenant="noisy"}"#
        ),
        1_000.0,
        "only the points the series store took count as stored"
    );
    assert!(text.len() < 400_000, "{} bytes", text.len());
    d.stop().await;
}

#[tokio::test]
async fn bad_metric_points_are_refused_one_by_one() {
    let mut d = Daemon::start().await;
    let json = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "good", "gauge": {"dataPoints": [{"asDouble": 1.5}]}},
        {"name": "no.value", "gauge": {"dataPoints": [{"timeUnixNano": "1"}]}},
        {"name": "tenantscope.fake", "gauge": {"dataPoints": [{"asInt": "1"}]}},
        {"name": "quantiles", "summary": {"dataPoints": [{"count": "1", "sum": 1.0}]}},
        {"name": "bad.hist", "histogram": {"aggregationTemporality": 2, "dataPoints": [{"count": "3", "bucketCounts": ["1", "1"], "explicitBounds": [1.0, 2.0]}]}},
        {"name": "good", "sum": {"aggregationTemporality": 2, "isMonotonic": false, "dataPoints": [{"asInt": "2"}]}},
        {"name": "deltas", "sum": {"aggregation_temporality": "AGGREGATION_TEMPORALITY_DELTA", "isMonotonic": true, "dataPoints": [{"asInt": "2"}, {"asInt": "3"}]}}
    ]}]}]});
    let headers = [
        ("content-type", "application/json"),
        ("x-scope-orgid", "acme"),
    ];
    let (status, _, body) = post(
        d.http,
        "/v1/metrics",
        &headers,
        json.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], "4",
        "{answer}"
    );
    let text = scrape(&d).await;
    // "good" as a gauge is kept; "good" as a (non-monotonic sum) gauge too: same kind.
    assert_eq!(value(&text, r#"good{tenant="acme"}"#), 2.0);
    assert!(!text.contains("tenantscope_fake"));
    // Enum names and proto field names are accepted (and delta points accumulate).
    assert_eq!(value(&text, r#"deltas_total{tenant="acme"}"#), 5.0);
    d.stop().await;
}
