//! The store end to end without the daemon: write random rows for several tenants and days,
//! read each tenant back, and compare with the input filtered by hand.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use chrono::TimeZone;
use futures::TryStreamExt;

use super::*;
use crate::layout::Layout;
use crate::log::TenantLog;
use crate::test_support::{BASE, DAY, batch, identity};
use crate::writer::{WriterOptions, commit};
use crate::{Table, TenantId};
use chrono::NaiveDate;

/// A tiny deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

async fn read(layout: &Layout, tenant: &TenantId, range: TimeRange, sql: &str) -> Vec<RecordBatch> {
    let scope = TenantScope::open(layout, tenant, range).await.unwrap();
    scope
        .execute(sql)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(column)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..a.len())
                .map(|i| a.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn every_tenant_reads_back_exactly_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenants = ["acme", "globex", "initech", "umbrella"].map(|t| TenantId::parse(t).unwrap());
    let mut rng = Lcg(42);
    let mut expected: BTreeMap<(usize, Table), Vec<(i64, String)>> = BTreeMap::new();
    // Several flushes, each with rows spread over 3 days, some tenants and tables skipped.
    for flush in 0..5 {
        for (t, tenant) in tenants.iter().enumerate() {
            for table in Table::ALL {
                let n = rng.next(40) as usize;
                if n < 5 {
                    continue;
                }
                let rows: Vec<(i64, String)> = (0..n)
                    .map(|i| {
                        let ts = BASE + (rng.next(3) as i64) * DAY + rng.next(DAY as u64) as i64;
                        (ts, format!("{tenant}-{}-{flush}-{i}", table.name()))
                    })
                    .collect();
                let mut log = TenantLog::open(&layout, tenant, identity()).unwrap();
                let lsn = (flush * 100) as u64;
                let batches = [batch(table, tenant.as_str(), &rows)];
                let options = WriterOptions::default();
                commit(&layout, &mut log, table, &batches, lsn..=lsn, &options).unwrap();
                expected.entry((t, table)).or_default().extend(rows);
            }
        }
    }
    for (t, tenant) in tenants.iter().enumerate() {
        for table in Table::ALL {
            let column = if table == Table::Spans {
                "name"
            } else {
                "body"
            };
            let sql = format!(
                "SELECT {column}, tenant_id FROM {} ORDER BY {column}",
                table.name()
            );
            let got = read(&layout, tenant, TimeRange::all(), &sql).await;
            let mut want: Vec<String> = expected
                .get(&(t, table))
                .map(|rows| rows.iter().map(|r| r.1.clone()).collect())
                .unwrap_or_default();
            want.sort();
            assert_eq!(strings(&got, 0), want, "{tenant} {}", table.name());
            assert!(strings(&got, 1).iter().all(|id| id == tenant.as_str()));

            // One day only: the range prunes partitions and filters rows exactly.
            let from = chrono::Utc.timestamp_nanos(BASE + DAY);
            let range = TimeRange {
                from: Some(from),
                to: Some(from + chrono::Duration::days(1)),
            };
            let got = read(&layout, tenant, range, &sql).await;
            let mut want: Vec<String> = expected
                .get(&(t, table))
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r.0 >= BASE + DAY && r.0 < BASE + 2 * DAY)
                        .map(|r| r.1.clone())
                        .collect()
                })
                .unwrap_or_default();
            want.sort();
            assert_eq!(strings(&got, 0), want, "{tenant} {} day 2", table.name());
        }
    }
}

#[tokio::test]
async fn files_are_hive_partitioned_sorted_and_never_half_visible() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let rows = vec![
        (BASE + 5, "late".to_owned()),
        (BASE + 1, "early".to_owned()),
        (BASE + DAY, "next day".to_owned()),
    ];
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    let batches = [batch(Table::Events, "acme", &rows)];
    let options = WriterOptions::default();
    let committed = commit(&layout, &mut log, Table::Events, &batches, 0..=2, &options).unwrap();
    let files: Vec<std::path::PathBuf> = committed
        .iter()
        .map(|f| layout.tenant_dir(&tenant).join(&f.path))
        .collect();
    let names: Vec<String> = committed.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        names[..]
            .iter()
            .map(|n| n.rsplit_once('/').unwrap().0)
            .collect::<Vec<_>>(),
        [
            "signal=events/date=2026-11-18",
            "signal=events/date=2026-11-19"
        ]
    );
    assert_eq!(committed[0].rows, 2);
    assert_eq!(
        (committed[0].min_timestamp, committed[0].max_timestamp),
        (BASE + 1, BASE + 5)
    );
    assert_eq!(committed[0].sha256.len(), 64);
    assert!(committed[0].rows_digest.starts_with("blake3:"));
    assert_eq!(
        (committed[0].commit_files, committed[1].commit_index),
        (2, 1)
    );
    drop(log);
    let reloaded = TenantLog::open(&layout, &tenant, identity()).unwrap();
    assert_eq!(
        reloaded.files(Table::Events).cloned().collect::<Vec<_>>(),
        committed
    );
    assert_eq!(reloaded.committed_lsn(Table::Events), Some(2));
    assert_eq!(reloaded.committed_lsn(Table::Logs), None);
    // Sorted by time inside the file.
    let got = read(
        &layout,
        &tenant,
        TimeRange::all(),
        "SELECT body FROM events",
    )
    .await;
    let bodies = strings(&got, 0);
    assert_eq!(bodies.len(), 3);
    // No temporary file is left behind and none would match *.parquet.
    for f in &files {
        for entry in std::fs::read_dir(f.parent().unwrap()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name.ends_with(".parquet") && !name.starts_with('.'),
                "{name}"
            );
        }
    }
    // A stray temporary file (a crash mid-write) is invisible to queries.
    let partition = files[0].parent().unwrap();
    std::fs::write(partition.join(".x.parquet.tmp"), b"PAR1 torn").unwrap();
    // And so is an orphan: a complete file no log entry names.
    std::fs::copy(&files[0], partition.join("orphan.parquet")).unwrap();
    let got = read(
        &layout,
        &tenant,
        TimeRange::all(),
        "SELECT count(*) FROM events",
    )
    .await;
    let n = got[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 3);
    // Recovery removes the temporary file, quarantines the orphan (recording it) and keeps every
    // committed file.
    let logs = crate::log::AuditLogs::new(layout.clone(), identity());
    let report = logs.recover().unwrap();
    assert_eq!((report.quarantined, report.temporaries_removed), (1, 1));
    assert!(files.iter().all(|f| f.exists()));
    assert!(!partition.join("orphan.parquet").exists());
    let relative = "signal=events/date=2026-11-18/orphan.parquet".to_string();
    assert!(
        dir.path()
            .join("quarantine/tenant=acme")
            .join(&relative)
            .exists()
    );
    let log = logs.get(&tenant).unwrap();
    let log = log.lock().unwrap();
    assert!(log.names(&relative));
    let last = log.line(log.size() - 1).unwrap();
    assert!(
        String::from_utf8(last)
            .unwrap()
            .contains(r#""type":"quarantine""#)
    );
}

#[test]
fn time_range_overlaps_dates() {
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let at = |d: u32, h: u32| chrono::Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
    let all = TimeRange::all();
    assert!(all.overlaps_date(day(1)));
    let r = TimeRange {
        from: Some(at(10, 12)),
        to: Some(at(12, 0)),
    };
    assert!(!r.overlaps_date(day(9)));
    assert!(r.overlaps_date(day(10)));
    assert!(r.overlaps_date(day(11)));
    assert!(!r.overlaps_date(day(12)), "to is exclusive at midnight");
    let r = TimeRange {
        from: None,
        to: Some(at(12, 1)),
    };
    assert!(r.overlaps_date(day(12)));
    assert!(r.overlaps_date(day(1)));
}

#[tokio::test]
async fn refuses_everything_but_queries() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let scope = TenantScope::open(&layout, &tenant, TimeRange::all())
        .await
        .unwrap();
    for sql in [
        "DROP TABLE logs",
        "CREATE TABLE t (a INT)",
        "DELETE FROM logs",
        "COPY (SELECT 1) TO 'x.csv'",
        "SET x = 1",
    ] {
        match scope.execute(sql).await {
            Err(QueryError::Invalid(_)) => {}
            Err(other) => panic!("{sql}: wrong error {other}"),
            Ok(_) => panic!("{sql}: accepted"),
        }
    }
}

#[tokio::test]
async fn memory_limit_fails_the_query_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("a").unwrap();
    let limits = crate::query::QueryLimits {
        memory_limit: Some(1 << 20),
        max_sql_length: Some(200),
    };
    let sql = "SELECT n FROM (SELECT unnest(range(0, 200000)) AS n) ORDER BY n DESC";
    let mut stream = crate::query::run(
        &layout,
        LogSource::Disk,
        &tenant,
        TimeRange::all(),
        sql,
        limits,
    )
    .await
    .unwrap();
    let mut error = None;
    while let Some(batch) = futures::StreamExt::next(&mut stream).await {
        if let Err(e) = batch {
            error = Some(QueryError::from(e));
            break;
        }
    }
    assert!(
        matches!(error, Some(QueryError::MemoryLimit(_))),
        "{error:?}"
    );
    let long = format!("SELECT 1 {}", " ".repeat(200));
    let err = crate::query::run(
        &layout,
        LogSource::Disk,
        &tenant,
        TimeRange::all(),
        &long,
        limits,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, QueryError::TooLong { max: 200, .. }), "{err}");
}

/// A damaged or hostile Parquet file under the store: the query fails with an error naming the
/// file (never a panic, never a result read from half a file).
#[tokio::test]
async fn a_damaged_file_fails_the_query_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let mut log = TenantLog::open(&layout, &tenant, identity()).unwrap();
    let rows: Vec<(i64, String)> = (0..2000).map(|i| (BASE + i, format!("row {i}"))).collect();
    let batches = [batch(Table::Logs, "acme", &rows)];
    let files = commit(
        &layout,
        &mut log,
        Table::Logs,
        &batches,
        1..=1,
        &WriterOptions::default(),
    )
    .unwrap();
    let path = layout.tenant_dir(&tenant).join(&files[0].path);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let pristine = std::fs::read(&path).unwrap();
    let damages: [(&str, Vec<u8>); 3] = [
        ("footer cut off", pristine[..pristine.len() - 64].to_vec()),
        ("not Parquet at all", vec![b'x'; pristine.len()]),
        ("a footer claiming more metadata than the file holds", {
            let mut d = pristine.clone();
            let at = d.len() - 8;
            d[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            d
        }),
    ];
    let sql = "SELECT count(*), max(body) FROM logs";
    for (what, bytes) in damages {
        std::fs::write(&path, bytes).unwrap();
        let outcome = match crate::query::run(
            &layout,
            LogSource::Disk,
            &tenant,
            TimeRange::all(),
            sql,
            Default::default(),
        )
        .await
        {
            Ok(stream) => stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(QueryError::from),
            Err(e) => Err(e),
        };
        let error = outcome.expect_err(what).to_string();
        assert!(error.contains(&name), "{what}: {error}");
    }
}

async fn count_logs(
    layout: &Layout,
    source: LogSource<'_>,
    tenant: &TenantId,
) -> Result<i64, QueryError> {
    let sql = "SELECT count(*) AS n FROM logs";
    let stream = run(
        layout,
        source,
        tenant,
        TimeRange::all(),
        sql,
        Default::default(),
    )
    .await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let n = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
    Ok(n.unwrap().value(0))
}

/// The daemon's queries read the open logs, not the log files: a file committed through the
/// open log is seen at once, and a query does not re-read (or depend on) `_log.jsonl`.
#[tokio::test]
async fn queries_through_the_open_logs_do_not_reread_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let logs = crate::log::AuditLogs::new(layout.clone(), identity());
    let rows = vec![(BASE + 1, "one".to_owned()), (BASE + DAY, "two".to_owned())];
    {
        let log = logs.get(&tenant).unwrap();
        let mut log = log.lock().unwrap();
        let batches = [batch(Table::Logs, "acme", &rows)];
        commit(
            &layout,
            &mut log,
            Table::Logs,
            &batches,
            0..=1,
            &WriterOptions::default(),
        )
        .unwrap();
    }
    assert_eq!(
        count_logs(&layout, LogSource::Open(&logs), &tenant)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        count_logs(&layout, LogSource::Disk, &tenant).await.unwrap(),
        2
    );
    // The log file damaged on disk: a query reading it fails, one through the open log does not.
    let log_file = layout.tenant_dir(&tenant).join(crate::log::LOG_FILE);
    std::fs::write(&log_file, b"not a log\n").unwrap();
    assert!(matches!(
        count_logs(&layout, LogSource::Disk, &tenant).await,
        Err(QueryError::Log(_))
    ));
    assert_eq!(
        count_logs(&layout, LogSource::Open(&logs), &tenant)
            .await
            .unwrap(),
        2
    );
    // A tenant whose log is not open is read from disk (here: none, so no rows).
    let other = TenantId::parse("globex").unwrap();
    let none = count_logs(&layout, LogSource::Open(&logs), &other).await;
    assert_eq!(none.unwrap(), 0);
    assert!(logs.get_opened(&other).is_none(), "a query opens no log");
}
