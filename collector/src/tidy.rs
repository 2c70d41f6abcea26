//! Tests over the source tree itself (like rust-analyzer's tidy tests): the floors of the
//! collector's modules, so that every arrow between them keeps pointing down.
//!
//! Each top-level module sits on a floor; a module may use (`crate::…`) only modules on lower
//! floors, and modules on the same floor not at all. ARCHITECTURE.md ("The floors") draws them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. Modules on one line share a floor and do not use each other (`test_support`,
/// the tests' shared helpers, is compiled for tests only).
const FLOORS: &[&[&str]] = &[
    &["config", "test_support"],
    &["otlp", "net"],
    &["telemetry"],
    &["tenancy"],
    &["pipeline"],
    &["ingest"],
    &["audit", "api"],
    &["app"],
    &["cli"],
];

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (line comments; block comments are not used).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names after `crate::`, in paths and in `use crate::{…}` groups.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            used.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn every_arrow_between_the_collectors_modules_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut unknown = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // `app.rs` is module `app`, `ingest/logs.rs` belongs to `ingest`.
        let module = match relative.split_once('/') {
            Some((dir, _)) => dir,
            None => relative.trim_end_matches(".rs"),
        };
        if ["lib", "main", "tidy"].contains(&module) {
            continue; // above every floor
        }
        let Some(from) = floor(module) else {
            unknown.push(relative.clone());
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for used in used_modules(&code(&text)) {
            if floor(&used).is_some_and(|to| to >= from) && used != module {
                upward.push((relative.clone(), module.to_owned(), used));
            }
        }
    }
    assert!(unknown.is_empty(), "modules on no floor: {unknown:?}");
    assert!(
        upward.is_empty(),
        "these files use a module on their own floor or above (file, from, to): {upward:?}"
    );
}

#[test]
fn the_use_scanner_sees_groups_paths_and_skips_comments() {
    let code = code(
        "use crate::{config::Config, telemetry::{a, b}, pipeline};\n\
         let x = crate::tenancy::f(); // crate::cli::g()\n",
    );
    let used: Vec<_> = used_modules(&code).into_iter().collect();
    assert_eq!(used, ["config", "pipeline", "telemetry", "tenancy"]);
}

/// Ingest only receives: of the store it may name the tenant id type and nothing else (no
/// writers, logs, layouts or write-ahead log); everything it receives goes through the pipeline's
/// front door.
#[test]
fn ingest_names_nothing_of_the_store_but_tenant_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ingest");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(!files.is_empty());
    let mut named = Vec::new();
    for path in &files {
        let text = code(&std::fs::read_to_string(path).unwrap());
        for (i, _) in text.match_indices("audit_store::") {
            let rest = &text[i + "audit_store::".len()..];
            let item: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                .collect();
            if item != "TenantId" {
                named.push(format!("{}: audit_store::{item}", path.display()));
            }
        }
    }
    assert!(named.is_empty(), "ingest names the store: {named:?}");
}

/// The production sources of both crates (not tests, not this file).
fn production_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("../audit-store/src"), &mut files);
    rust_files(&root.join("../fuzz/src"), &mut files);
    files.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name != "tests.rs" && name != "tidy.rs" && name != "test_support.rs"
    });
    files.sort();
    files
}

/// Tests take shared helpers from a test-support module, never from another module's tests.
#[test]
fn no_test_uses_another_modules_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("../audit-store/src"), &mut files);
    files.retain(|p| !p.ends_with("tidy.rs"));
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| code(&std::fs::read_to_string(p).unwrap()).contains("::tests::"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "use test_support instead: {offenders:?}"
    );
}

/// A file over 500 lines says why at its top (a `//!` line with "Longer than 500 lines"); a
/// function over 80 lines is split into named steps.
#[test]
fn files_and_functions_stay_small_enough_to_hold_in_ones_head() {
    let mut long_files = Vec::new();
    let mut long_fns = Vec::new();
    for path in production_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let explained = lines
            .iter()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.contains("Longer than 500 lines"));
        if lines.len() > 500 && !explained {
            long_files.push(format!("{} ({} lines)", path.display(), lines.len()));
        }
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "async fn ",
            ]
            .iter()
            .chain(&[
                "pub async fn ",
                "pub(crate) async fn ",
                "pub(super) async fn ",
            ])
            .any(|p| trimmed.starts_with(p));
            if !is_fn || line.trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{}}}", &line[..line.len() - trimmed.len()]);
            let end = lines[start..].iter().position(|l| *l == close);
            if let Some(end) = end.filter(|end| end + 1 > 80) {
                long_fns.push(format!(
                    "{}:{} ({} lines)",
                    path.display(),
                    start + 1,
                    end + 1
                ));
            }
        }
    }
    assert!(
        long_files.is_empty(),
        "files over 500 lines: {long_files:?}"
    );
    assert!(long_fns.is_empty(), "functions over 80 lines: {long_fns:?}");
}

/// The packages of a `Cargo.lock`, as (name, version).
fn locked(path: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    let mut name = None;
    for line in text.lines() {
        let value = |l: &str| l.split('"').nth(1).map(str::to_string);
        if line.starts_with("name = ") {
            name = value(line);
        } else if line.starts_with("version = ")
            && let (Some(n), Some(v)) = (name.take(), value(line))
        {
            out.insert((n, v));
        }
    }
    out
}

/// The fuzz targets (a workspace of their own, as cargo-fuzz wants) build the versions the
/// daemon ships: every package of `fuzz/Cargo.lock` is in `Cargo.lock` at the same version,
/// apart from the fuzzing crates themselves.
#[test]
fn the_fuzz_lock_file_holds_the_versions_of_the_main_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let main = locked(&root.join("Cargo.lock"));
    let fuzz = locked(&root.join("fuzz/Cargo.lock"));
    assert!(fuzz.len() > 100, "{} packages read", fuzz.len());
    let own = ["arbitrary", "libfuzzer-sys", "tenantscope-fuzz"];
    let drifted: Vec<_> = fuzz
        .iter()
        .filter(|(name, _)| !own.contains(&name.as_str()))
        .filter(|p| !main.contains(*p))
        .collect();
    assert!(
        drifted.is_empty(),
        "fuzz/Cargo.lock differs from Cargo.lock (copy Cargo.lock over it and rebuild): {drifted:?}"
    );
}
