//! The on-disk layout: the only place that builds or parses paths of the audit store.
//!
//! ```text
//! DIR/audit/tenant=<id>/signal=<logs|spans|events>/date=<YYYY-MM-DD>/<file>.parquet
//! ```
//!
//! Hive-style `key=value` directories, so any Parquet engine with Hive partitioning (DuckDB,
//! Spark, Trino, DataFusion, pyarrow) sees `tenant`, `signal` and `date` as columns. Files being
//! written carry a hidden temporary name (`.<name>.tmp`) that no `*.parquet` glob matches.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::{Table, TenantId};

/// Extension of committed data files.
pub const PARQUET_EXTENSION: &str = ".parquet";

/// Paths of one data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `DIR/audit`.
    pub fn audit_dir(&self) -> PathBuf {
        self.data_dir.join("audit")
    }

    /// `DIR/audit/tenant=<id>`.
    pub fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.audit_dir().join(format!("tenant={tenant}"))
    }

    /// `DIR/audit/tenant=<id>/signal=<table>`.
    pub fn table_dir(&self, tenant: &TenantId, table: Table) -> PathBuf {
        self.tenant_dir(tenant)
            .join(format!("signal={}", table.name()))
    }

    /// `DIR/audit/tenant=<id>/signal=<table>/date=<YYYY-MM-DD>`.
    pub fn partition_dir(&self, tenant: &TenantId, table: Table, date: NaiveDate) -> PathBuf {
        self.table_dir(tenant, table)
            .join(format!("date={}", date.format("%Y-%m-%d")))
    }

    /// Whether the data directory's filesystem ignores case in names (macOS's default APFS,
    /// Windows, ext4 directories with casefold): then `tenant=acme` and `tenant=ACME` would be one
    /// directory. Found by creating a probe file and looking for it under another case.
    pub fn ignores_case(&self) -> std::io::Result<bool> {
        let name = format!(".tenantscope-Case-Probe-{}", std::process::id());
        let probe = self.data_dir.join(&name);
        std::fs::write(&probe, b"")?;
        let other = self.data_dir.join(name.to_ascii_lowercase());
        let ignores = std::fs::symlink_metadata(&other).is_ok();
        std::fs::remove_file(&probe)?;
        Ok(ignores)
    }

    /// The date partitions present for one tenant's table, oldest first.
    pub fn list_dates(&self, tenant: &TenantId, table: Table) -> std::io::Result<Vec<NaiveDate>> {
        let mut dates = Vec::new();
        let dir = self.table_dir(tenant, table);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dates),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(date) = entry.file_name().to_str().and_then(parse_date_dir) {
                dates.push(date);
            }
        }
        dates.sort_unstable();
        Ok(dates)
    }

    /// Tenants that have a directory, sorted. Directories whose name is not a valid tenant are
    /// skipped (they cannot have been written by the store).
    pub fn list_tenants(&self) -> std::io::Result<Vec<TenantId>> {
        let mut tenants = Vec::new();
        let entries = match std::fs::read_dir(self.audit_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tenants),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let tenant = name
                .to_str()
                .and_then(|n| n.strip_prefix("tenant="))
                .and_then(|id| TenantId::parse(id).ok());
            if let Some(tenant) = tenant {
                tenants.push(tenant);
            }
        }
        tenants.sort();
        Ok(tenants)
    }
}

/// Parses `date=YYYY-MM-DD`.
pub fn parse_date_dir(name: &str) -> Option<NaiveDate> {
    let value = name.strip_prefix("date=")?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

/// Parses a data file's path relative to its tenant directory,
/// `signal=<table>/date=<YYYY-MM-DD>/<name>.parquet`, as [`Layout`] builds them: nothing else
/// (no `..`, no absolute path, no other directory) is accepted.
/// Why the store file `relative` (under `base`, a tenant's directory) must not be read: `base` or
/// a component of `relative` is a symbolic link. The store never follows one, so a link placed in
/// the store cannot lead a tenant's query, export or verify to a file outside its directory.
/// `Ok` when nothing is a link (a missing file is the caller's to report).
pub fn no_links(base: &Path, relative: &str) -> Result<(), String> {
    let check = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symbolic link; the store does not follow links",
            p.display()
        )),
        _ => Ok(()),
    };
    let mut path = base.to_path_buf();
    check(&path)?;
    for part in relative.split('/') {
        path.push(part);
        check(&path)?;
    }
    Ok(())
}

pub fn parse_file_path(relative: &str) -> Option<(Table, NaiveDate)> {
    let mut parts = relative.split('/');
    let table = Table::from_name(parts.next()?.strip_prefix("signal=")?)?;
    let date = parse_date_dir(parts.next()?)?;
    let name = parts.next()?;
    let valid_name = name.ends_with(PARQUET_EXTENSION)
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (valid_name && parts.next().is_none()).then_some((table, date))
}

/// The temporary name a file is written under before it is renamed to `final_name`.
pub fn temporary_name(final_name: &str) -> String {
    format!(".{final_name}.tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_hive_paths() {
        let layout = Layout::new("/data");
        let tenant = TenantId::parse("acme").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(
            layout.partition_dir(&tenant, Table::Events, date),
            PathBuf::from("/data/audit/tenant=acme/signal=events/date=2026-11-27")
        );
    }

    #[test]
    fn parses_date_dirs() {
        assert_eq!(
            parse_date_dir("date=2026-01-02"),
            NaiveDate::from_ymd_opt(2026, 1, 2)
        );
        assert_eq!(parse_date_dir("date=2026-13-02"), None);
        assert_eq!(parse_date_dir("2026-01-02"), None);
    }

    #[test]
    fn only_paths_the_layout_builds_are_data_files() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 2);
        assert_eq!(
            parse_file_path("signal=logs/date=2026-01-02/1-2-3.parquet"),
            Some((Table::Logs, date.unwrap()))
        );
        for bad in [
            "signal=logs/date=2026-01-02/../../../tenant=b/x.parquet",
            "signal=logs/date=2026-01-02/x.csv",
            "signal=nope/date=2026-01-02/x.parquet",
            "/etc/x.parquet",
            "signal=logs/date=2026-01-02/sub/x.parquet",
            "signal=logs/date=2026-01-02/.x.parquet",
        ] {
            assert_eq!(parse_file_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn temporary_names_never_match_parquet_globs() {
        let tmp = temporary_name("x.parquet");
        assert!(tmp.starts_with('.'));
        assert!(!tmp.ends_with(PARQUET_EXTENSION));
    }

    /// Linux's filesystems keep case; the probe says so and leaves nothing behind. (A
    /// case-insensitive one cannot be mounted by an unprivileged test; what the daemon does on
    /// one is `tenancy`'s `on_a_store_ignoring_case_…` test.)
    #[test]
    fn a_case_keeping_data_directory_is_told_apart_and_the_probe_removed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(!layout.ignores_case().unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(
            Layout::new(dir.path().join("missing"))
                .ignores_case()
                .is_err()
        );
    }
}
