//! The dashboards and rules in `dashboards/`: they use only metric names from the catalog, the
//! rules pass `promtool check rules` and their unit tests (`promtool test rules`), and every
//! dashboard offers a `tenant` variable. (That every query returns data from a real Prometheus
//! scraping a loaded daemon is checked by the interop suite.)

use std::path::{Path, PathBuf};
use std::process::Command;

use tenantscope::telemetry::catalog::ALL_NAMES;

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn grafana_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir().join("grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Every `expr` of a Grafana dashboard.
fn exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// Identifiers in PromQL text that name our metrics.
fn metric_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("tenantscope_") || *t == "target_info")
        .map(str::to_owned)
        .collect()
}

fn known(name: &str) -> bool {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    ALL_NAMES.contains(&name) || ALL_NAMES.contains(&base)
}

#[test]
fn dashboards_and_rules_use_only_catalog_names() {
    let mut used = 0;
    for file in grafana_files() {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            variables.contains(&"tenant"),
            "{} has no tenant variable",
            file.display()
        );
        assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
        for expr in exprs(&dashboard) {
            for name in metric_names(&expr) {
                assert!(
                    known(&name),
                    "{}: {name} is not in the catalog",
                    file.display()
                );
                used += 1;
            }
        }
    }
    let rules = std::fs::read_to_string(dashboards_dir().join("prometheus/rules.yaml")).unwrap();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for name in metric_names(line) {
            assert!(known(&name), "rules.yaml: {name} is not in the catalog");
            used += 1;
        }
    }
    assert!(used > 40, "only {used} metric references found");
    assert_eq!(grafana_files().len(), 4);
}

#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    let dir = dashboards_dir().join("prometheus");
    for args in [
        &["check", "rules", "rules.yaml"][..],
        &["test", "rules", "rules.test.yaml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package prometheus) must be installed; .ci/run installs it");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
