//! The file half of `verify`: every committed file re-hashed (SHA-256 of its bytes, streamed) and
//! its rows digest recomputed (Parquet decoded a batch at a time), on a pool of threads; then the
//! directories listed for files no entry names.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::entries::EntryIndex;
use super::{TenantReport, VerifyError, VerifyOptions, parquet_files, quarantine_files};
use crate::log::entry::{Entry, EntryKind, FileEntry};
use crate::rows_digest::RowsHasher;
use crate::{Table, TenantId, layout::Layout};

/// What one file turned out to be.
struct Checked {
    bytes: u64,
    sha256: String,
    /// `Some(Ok(digest, rows))`, or why the rows could not be read; `None` when skipped.
    rows: Option<Result<(String, u64), String>>,
}

/// Checks every file `entries` names against its entry, then the directories for files no entry
/// names.
pub(super) fn check_files(
    layout: &Layout,
    tenant: &TenantId,
    dir: &Path,
    entries: &EntryIndex,
    threads: usize,
    options: &VerifyOptions,
    report: &mut TenantReport,
) -> Result<(), VerifyError> {
    let (seen, live) = live_files(&entries.files, &entries.deleted, report);
    report_deletions(dir, &entries.deleted, &seen, report);
    // Hash the live files, a file per thread at a time.
    let results = super::parallel_map(&live, threads, |(_, entry)| {
        check_one(dir, entry, options.skip_rows_digest)
    });
    for ((index, entry), result) in live.iter().zip(results) {
        compare_file(*index, entry, result, report);
    }
    let grace = options.unlisted_grace.unwrap_or(Duration::from_secs(1));
    report_unnamed(layout, tenant, entries, grace, report)?;
    report_unrecorded_quarantine(layout, tenant, &entries.quarantined, report);
    Ok(())
}

/// The paths committed (reporting those committed twice), and the files committed and not
/// deleted, with their entries' indexes.
fn live_files<'f>(
    files: &'f [(u64, FileEntry)],
    deleted: &HashMap<String, (u64, Entry)>,
    report: &mut TenantReport,
) -> (HashSet<&'f str>, Vec<(u64, &'f FileEntry)>) {
    let mut seen = HashSet::new();
    let mut live = Vec::new();
    for (index, f) in files {
        if !seen.insert(f.path.as_str()) {
            report.tamper(
                "entry_duplicate",
                format!("entry {index}"),
                format!("{} is committed twice", f.path),
            );
            continue;
        }
        if deleted.contains_key(&f.path) {
            continue;
        }
        live.push((*index, f));
    }
    (seen, live)
}

/// Reports every deletion: of a file never committed (damage), or by retention (a fact).
fn report_deletions(
    dir: &Path,
    deleted: &HashMap<String, (u64, Entry)>,
    seen: &HashSet<&str>,
    report: &mut TenantReport,
) {
    for (path, (index, entry)) in deleted {
        if !seen.contains(path.as_str()) {
            report.tamper(
                "entry_damaged",
                format!("entry {index}"),
                format!("a deletion of {path}, which no entry committed"),
            );
            continue;
        }
        if let EntryKind::Deletion { policy, .. } = &entry.kind {
            let when = chrono::DateTime::from_timestamp_nanos(entry.time_ns).to_rfc3339();
            let present = dir.join(path).exists();
            report.info(
                if present {
                    "deletion_pending"
                } else {
                    "deleted_by_retention"
                },
                path.clone(),
                format!(
                    "entry {index}: deleted at {when} under {policy}{}",
                    if present {
                        " (still present: the daemon removes it at its next start)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
}

/// Compares what a live file turned out to be with its entry `index`.
fn compare_file(
    index: u64,
    entry: &FileEntry,
    result: Result<Checked, std::io::Error>,
    report: &mut TenantReport,
) {
    let subject = entry.path.clone();
    let checked = match result {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.tamper(
                "file_missing",
                subject,
                format!("committed by entry {index}, not deleted by retention, and not on disk"),
            );
            return;
        }
        Err(e) => {
            report.tamper("file_unreadable", subject, e.to_string());
            return;
        }
    };
    report.files_checked += 1;
    report.bytes_hashed += checked.bytes;
    let same_rows = match &checked.rows {
        Some(Ok((digest, rows))) => Some(*digest == entry.rows_digest && *rows == entry.rows),
        _ => None,
    };
    if checked.bytes < entry.bytes {
        report.tamper(
            "file_truncated",
            subject.clone(),
            format!("{} bytes, the log says {}", checked.bytes, entry.bytes),
        );
    } else if checked.sha256 != entry.sha256 {
        let rows = match same_rows {
            Some(true) => "; its rows are the committed ones (the file was re-encoded)",
            Some(false) => "; its rows differ from the committed ones",
            None => "",
        };
        report.tamper(
            "file_altered",
            subject.clone(),
            format!(
                "SHA-256 {} ({} bytes), the log says {} ({} bytes){rows}",
                checked.sha256, checked.bytes, entry.sha256, entry.bytes
            ),
        );
        return;
    }
    match checked.rows {
        Some(Ok((digest, rows))) if digest != entry.rows_digest || rows != entry.rows => {
            report.tamper(
                "rows_altered",
                subject,
                format!(
                    "{rows} rows with digest {digest}, the log says {} rows with {}",
                    entry.rows, entry.rows_digest
                ),
            );
        }
        Some(Err(e)) if checked.bytes >= entry.bytes => {
            report.tamper(
                "file_unreadable",
                subject,
                format!("its rows cannot be read: {e}"),
            );
        }
        _ => {}
    }
}

/// Reports the Parquet files no entry names (unless a quarantine entry is about to move them).
fn report_unnamed(
    layout: &Layout,
    tenant: &TenantId,
    entries: &EntryIndex,
    grace: Duration,
    report: &mut TenantReport,
) -> Result<(), VerifyError> {
    // Beside a running daemon a file is renamed into place a moment before its entry is
    // appended: such a file is named once the log is read again, so the log is re-read for
    // `grace` (a second by default) before what is still unnamed is reported.
    let named: HashSet<&str> = entries.files.iter().map(|(_, f)| f.path.as_str()).collect();
    let mut unnamed: Vec<String> = parquet_files(layout, tenant)?
        .into_keys()
        .filter(|relative| !named.contains(relative.as_str()))
        .collect();
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while !unnamed.is_empty() && waited < grace {
        std::thread::sleep(step.min(grace - waited));
        waited += step;
        if let Ok(log) = crate::log::TenantLog::read(layout, tenant) {
            unnamed.retain(|relative| log.file(relative).is_none());
        }
    }
    for relative in unnamed {
        if let Some(index) = entries.quarantined.get(&relative) {
            report.info(
                "quarantine_pending",
                relative,
                format!("entry {index} quarantined it; the daemon moves it at its next start"),
            );
        } else {
            report.tamper(
                "file_unlisted",
                relative,
                "a Parquet file no entry of the log names (added by hand, or its entry was removed)",
            );
        }
    }
    Ok(())
}

/// Reports the files in the tenant's quarantine directory no quarantine entry records.
fn report_unrecorded_quarantine(
    layout: &Layout,
    tenant: &TenantId,
    quarantined: &HashMap<String, u64>,
    report: &mut TenantReport,
) {
    for relative in quarantine_files(layout, tenant) {
        if !quarantined.contains_key(&relative) {
            report.tamper(
                "quarantine_unrecorded",
                relative,
                "a file in the quarantine directory that no quarantine entry records",
            );
        }
    }
}

/// Hashes one file's bytes and, unless skipped, its rows; a file reached through a symbolic
/// link is not read (`layout::no_links`).
fn check_one(dir: &Path, entry: &FileEntry, skip_rows: bool) -> Result<Checked, std::io::Error> {
    crate::layout::no_links(dir, &entry.path).map_err(std::io::Error::other)?;
    let path = &dir.join(&entry.path);
    let (sha256, bytes) = crate::log::sha256_file(path)?;
    let rows = (!skip_rows).then(|| rows_digest(path, &entry.table, Some(entry.rows)));
    Ok(Checked {
        bytes,
        sha256,
        rows,
    })
}

/// The rows digest and row count of a Parquet file of `table`; an error for a file that cannot be
/// read, including one damaged so that the Parquet reader panics (some damaged footers do): the
/// file is reported, the rest of the store is still checked.
///
/// With `at_most` (the rows its entry names), a file whose footer announces more rows is an error
/// before any is decoded, and decoding stops one row past it: a few KB of run-length-encoded
/// pages can announce billions of rows.
pub fn rows_digest(
    path: &Path,
    table: &str,
    at_most: Option<u64>,
) -> Result<(String, u64), String> {
    std::panic::catch_unwind(|| read_rows_digest(path, table, at_most)).unwrap_or_else(|panic| {
        let what = crate::panic_message(panic.as_ref());
        Err(format!("the Parquet reader failed on the file: {what}"))
    })
}

fn read_rows_digest(
    path: &Path,
    table: &str,
    at_most: Option<u64>,
) -> Result<(String, u64), String> {
    let table = Table::from_name(table).ok_or_else(|| format!("unknown table {table:?}"))?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .with_batch_size(8192);
    // A column chunk the footer places past the end of the file is damage, refused before the
    // page reader goes looking for pages there.
    for group in builder.metadata().row_groups() {
        for column in group.columns() {
            let (start, len) = column.byte_range();
            if start.checked_add(len).is_none_or(|end| end > length) {
                return Err(format!(
                    "its footer places column {} at bytes {start}..+{len}, past the file's {length}",
                    column.column_path()
                ));
            }
        }
    }
    if let Some(most) = at_most {
        let announced = builder.metadata().file_metadata().num_rows();
        if u64::try_from(announced).map_or(true, |n| n > most) {
            return Err(format!(
                "its footer announces {announced} rows, its entry {most}; not read"
            ));
        }
        builder = builder.with_limit(
            usize::try_from(most)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let mut hasher = RowsHasher::new(table);
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        hasher.update(&batch).map_err(|e| e.to_string())?;
    }
    Ok((hasher.finish().map_err(|e| e.to_string())?, rows))
}
