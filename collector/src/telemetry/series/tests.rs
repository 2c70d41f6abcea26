use std::time::Duration;

use super::*;

fn config() -> MetricsConfig {
    MetricsConfig {
        max_series_per_tenant: 4,
        max_series_per_metric: 3,
        max_series: 100,
        max_tenant_labels: 2,
        stale_after: Duration::from_secs(60),
        ..MetricsConfig::default()
    }
}

fn point(family: &str, kind: Kind, tenant: &str, labels: &[(&str, &str)], update: Update) -> Point {
    Point {
        family: family.into(),
        help: format!("{family} help"),
        kind,
        tenant: tenant.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        update,
    }
}

fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn counters_gauges_and_histograms_render_exactly() {
    let store = SeriesStore::new(config());
    let now = Instant::now();
    let bounds: Arc<[f64]> = Arc::from(vec![0.1, 1.0]);
    let mut b = Buckets::new(bounds.clone());
    for v in [0.05, 0.5, 0.7, 3.0] {
        b.observe(v);
    }
    let refused = store.apply(
        vec![
            point(
                "a_total",
                Kind::Counter,
                "acme",
                &[("x", "1")],
                Update::Add(2.0),
            ),
            point(
                "a_total",
                Kind::Counter,
                "acme",
                &[("x", "1")],
                Update::Add(3.0),
            ),
            point("g", Kind::Gauge, "acme", &[], Update::Set(7.5)),
            point("g", Kind::Gauge, "acme", &[], Update::Set(-1.0)),
            point(
                "h_seconds",
                Kind::Histogram,
                "acme",
                &[("q", "a\"b")],
                Update::AddHistogram(b.clone()),
            ),
            point(
                "h_seconds",
                Kind::Histogram,
                "acme",
                &[("q", "a\"b")],
                Update::AddHistogram(b),
            ),
            point("g", Kind::Counter, "acme", &[], Update::Add(1.0)),
        ],
        now,
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 6);
    let text = store.render(now);
    assert_eq!(
        lines(&text, "a_total"),
        ["a_total{tenant=\"acme\",x=\"1\"} 5"]
    );
    assert_eq!(lines(&text, "g{"), ["g{tenant=\"acme\"} -1"]);
    assert_eq!(
        lines(&text, "h_seconds"),
        [
            r#"h_seconds_bucket{tenant="acme",q="a\"b",le="0.1"} 2"#,
            r#"h_seconds_bucket{tenant="acme",q="a\"b",le="1"} 6"#,
            r#"h_seconds_bucket{tenant="acme",q="a\"b",le="+Inf"} 8"#,
            r#"h_seconds_sum{tenant="acme",q="a\"b"} 8.5"#,
            r#"h_seconds_count{tenant="acme",q="a\"b"} 8"#,
        ]
    );
    assert!(text.contains("# TYPE h_seconds histogram\n"));
    assert!(text.contains("# HELP a_total a_total help\n"));
}

#[test]
fn budgets_fold_new_series_into_one_overflow_series_per_tenant_and_metric() {
    let store = SeriesStore::new(config());
    let now = Instant::now();
    let mut points = Vec::new();
    for i in 0..10 {
        let v = i.to_string();
        points.push(point(
            "m_total",
            Kind::Counter,
            "noisy",
            &[("id", &v)],
            Update::Add(1.0),
        ));
    }
    points.push(point(
        "m_total",
        Kind::Counter,
        "quiet",
        &[("id", "1")],
        Update::Add(1.0),
    ));
    store.apply(points, now);
    let text = store.render(now);
    // Three real series (max_series_per_metric), then the overflow series with the other 7.
    assert_eq!(lines(&text, "m_total{tenant=\"noisy\",id=").len(), 3);
    assert_eq!(
        lines(&text, "m_total{tenant=\"noisy\",otel_metric_overflow"),
        ["m_total{tenant=\"noisy\",otel_metric_overflow=\"true\"} 7"]
    );
    // The other tenant is untouched.
    assert_eq!(
        lines(&text, "m_total{tenant=\"quiet\""),
        ["m_total{tenant=\"quiet\",id=\"1\"} 1"]
    );
    assert_eq!(
        lines(&text, OVERFLOW_COUNTER),
        [format!("{OVERFLOW_COUNTER}{{tenant=\"noisy\"}} 7")]
    );
    // max_series_per_tenant (4) across metrics: one more real series, then overflow.
    store.apply(
        vec![
            point(
                "n_total",
                Kind::Counter,
                "noisy",
                &[("id", "a")],
                Update::Add(1.0),
            ),
            point(
                "n_total",
                Kind::Counter,
                "noisy",
                &[("id", "b")],
                Update::Add(1.0),
            ),
        ],
        now,
    );
    let text = store.render(now);
    assert_eq!(
        lines(&text, "n_total{tenant=\"noisy\",id=").len(),
        0,
        "{text}"
    );
    // A third tenant is labelled __other__ (max_tenant_labels 2).
    store.apply(
        vec![point(
            "m_total",
            Kind::Counter,
            "third",
            &[],
            Update::Add(1.0),
        )],
        now,
    );
    assert_eq!(
        lines(&store.render(now), "m_total{tenant=\"__other__\""),
        ["m_total{tenant=\"__other__\"} 1"]
    );
}

#[test]
fn stale_series_disappear_and_free_their_budget() {
    let store = SeriesStore::new(config());
    let t0 = Instant::now();
    store.apply(
        vec![point(
            "m_total",
            Kind::Counter,
            "acme",
            &[("id", "old")],
            Update::Add(1.0),
        )],
        t0,
    );
    let t1 = t0 + Duration::from_secs(30);
    store.apply(
        vec![point(
            "m_total",
            Kind::Counter,
            "acme",
            &[("id", "new")],
            Update::Add(1.0),
        )],
        t1,
    );
    let text = store.render(t0 + Duration::from_secs(70));
    assert_eq!(
        lines(&text, "m_total"),
        ["m_total{tenant=\"acme\",id=\"new\"} 1"]
    );
    assert_eq!(store.len(), 1);
    assert!(store.render(t0 + Duration::from_secs(200)).is_empty());
    assert!(store.is_empty());
}

#[test]
fn overflow_adds_increments_but_not_absolute_values() {
    let store = SeriesStore::new(MetricsConfig {
        max_series_per_metric: 1,
        ..config()
    });
    let now = Instant::now();
    store.apply(
        vec![
            point(
                "c_total",
                Kind::Counter,
                "acme",
                &[("id", "1")],
                Update::Set(100.0),
            ),
            point(
                "c_total",
                Kind::Counter,
                "acme",
                &[("id", "2")],
                Update::Set(50.0),
            ),
            point(
                "c_total",
                Kind::Counter,
                "acme",
                &[("id", "3")],
                Update::Add(2.0),
            ),
        ],
        now,
    );
    assert_eq!(
        lines(&store.render(now), "c_total{tenant=\"acme\",otel"),
        ["c_total{tenant=\"acme\",otel_metric_overflow=\"true\"} 2"]
    );
}

#[test]
fn metric_names_are_budgeted_per_tenant_and_in_all_and_freed_when_stale() {
    let store = SeriesStore::new(MetricsConfig {
        max_families_per_tenant: 3,
        max_families: 5,
        max_tenant_labels: 10,
        stale_after: Duration::from_secs(60),
        ..MetricsConfig::default()
    });
    let t0 = Instant::now();
    let gauge =
        |family: &str, tenant: &str| point(family, Kind::Gauge, tenant, &[], Update::Set(1.0));
    let names = |n: usize, tenant: &str| (0..n).map(|i| gauge(&format!("m{i}"), tenant)).collect();
    // acme: three names fit, the next two are refused, and a known name still takes new series.
    let refused = store.apply(names(5, "acme"), t0);
    let reasons: Vec<_> = refused.iter().map(|(i, e)| (*i, e.reason())).collect();
    assert_eq!(reasons, [(3, "metric_families"), (4, "metric_families")]);
    let labelled = point("m0", Kind::Gauge, "acme", &[("k", "v")], Update::Set(2.0));
    assert!(store.apply(vec![labelled], t0).is_empty());
    // globex shares acme's three names without spending the table's budget, and is then at its
    // own budget; initech's new names fill the table (5 names), and the table refuses a sixth.
    assert!(store.apply(names(3, "globex"), t0).is_empty());
    let refused = store.apply(vec![gauge("g1", "globex")], t0);
    assert_eq!(refused.len(), 1);
    let initech = (0..3).map(|i| gauge(&format!("i{i}"), "initech")).collect();
    let refused = store.apply(initech, t0);
    assert_eq!(refused.len(), 1, "{refused:?}");
    match &refused[0] {
        (2, PointError::TooManyFamilies { key, limit, .. }) => {
            assert_eq!((*key, *limit), ("metrics.max_families", 5));
        }
        other => panic!("{other:?}"),
    }
    // Once acme's series are stale, its names are free again.
    store.expire(t0 + Duration::from_secs(61));
    assert!(
        store
            .apply(names(3, "acme"), t0 + Duration::from_secs(61))
            .is_empty()
    );
}

/// Found by the `otlp_protobuf` fuzz target: histogram deltas near u64::MAX overflowed a
/// series' counts. They saturate instead, and so does the rendered cumulative count.
#[test]
fn histogram_counts_saturate_instead_of_overflowing() {
    let store = SeriesStore::new(config());
    let now = Instant::now();
    let huge = Buckets {
        bounds: Arc::from(vec![1.0]),
        counts: vec![u64::MAX - 1, u64::MAX - 1],
        sum: 1.0,
        count: u64::MAX,
    };
    let update = || Update::AddHistogram(huge.clone());
    let points = vec![
        point("h", Kind::Histogram, "acme", &[], update()),
        point("h", Kind::Histogram, "acme", &[], update()),
    ];
    assert!(store.apply(points, now).is_empty());
    let max = u64::MAX;
    assert_eq!(
        lines(&store.render(now), "h_"),
        [
            format!(r#"h_bucket{{tenant="acme",le="1"}} {max}"#),
            format!(r#"h_bucket{{tenant="acme",le="+Inf"}} {max}"#),
            r#"h_sum{tenant="acme"} 2"#.to_string(),
            format!(r#"h_count{{tenant="acme"}} {max}"#),
        ]
    );
}
