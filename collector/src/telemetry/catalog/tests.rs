use std::collections::{BTreeMap, BTreeSet};

use super::*;

#[test]
fn every_family_is_named_once_and_exposed() {
    let mut seen = BTreeSet::new();
    for family in FAMILIES {
        assert!(seen.insert(family.name), "{} twice", family.name);
        assert!(
            ALL_NAMES.contains(&family.name),
            "{} not in ALL_NAMES",
            family.name
        );
    }
    // The rest of ALL_NAMES: what the series store renders and what Prometheus adds.
    let rest: BTreeSet<&str> = ALL_NAMES
        .into_iter()
        .filter(|n| !seen.contains(n))
        .collect();
    let expected = BTreeSet::from([
        names::SPAN_CALLS,
        names::SPAN_DURATION,
        names::LOG_RECORDS,
        names::EVENTS,
        names::SERIES_OVERFLOW,
        "target_info",
        "up",
        "scrape_duration_seconds",
    ]);
    assert_eq!(rest, expected);
}

/// The families of a rendered exposition: name → (TYPE, HELP, label names of every sample).
fn exposition(text: &str) -> BTreeMap<String, (String, String, BTreeSet<Vec<String>>)> {
    let mut families: BTreeMap<String, (String, String, BTreeSet<Vec<String>>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            families.entry(name.into()).or_default().1 = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.into()).or_default().0 = kind.into();
        } else if !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| families.contains_key(*b)))
                .unwrap_or(name);
            let labels: Vec<String> = match line[name_end..].strip_prefix('{') {
                Some(rest) => rest[..rest.find('}').unwrap()]
                    .split(',')
                    .map(|kv| kv.split_once('=').unwrap().0.to_owned())
                    .filter(|k| k != "le")
                    .collect(),
                None => vec![],
            };
            families.entry(base.into()).or_default().2.insert(labels);
        }
    }
    families
}

#[test]
fn the_exposition_is_the_table() {
    let catalog = Catalog::new();
    // The tenant-labelled families have series only once something is counted.
    catalog.records_accepted(Transport::Http, Signal::Logs, "acme", 1);
    catalog.rate_limited("acme", "records_per_second");
    let exposed = exposition(&catalog.render());
    assert_eq!(exposed.len(), FAMILIES.len());
    for family in FAMILIES {
        let (kind, help, label_sets) = &exposed[family.name];
        let expected_kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        assert_eq!(kind, expected_kind, "{}", family.name);
        assert_eq!(help, family.help, "{}", family.name);
        let labels: Vec<String> = family.labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            label_sets,
            &BTreeSet::from([labels]),
            "{}: every series has the family's labels",
            family.name
        );
    }
}
