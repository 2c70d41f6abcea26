//! What a query asks for, without DataFusion: its time range, its bounds and its output format
//! (shared by the CLI, the HTTP API and request parsing, which are built with or without the
//! `query` feature).

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

/// Bounds on one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory the query's operators may hold (sorts, joins, aggregations); `None`: unbounded.
    pub memory_limit: Option<usize>,
    /// Longest SQL text accepted; `None`: unbounded.
    pub max_sql_length: Option<usize>,
}

/// A half-open time range `[from, to)` on the `timestamp` column; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// All of time.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether rows timed `min..=max` (ns) can fall in this range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
        self.from.is_none_or(|from| max >= ns(from)) && self.to.is_none_or(|to| min < ns(to))
    }

    /// Whether the UTC day `date` can hold rows of this range.
    pub fn overlaps_date(&self, date: NaiveDate) -> bool {
        let after_from = self.from.is_none_or(|from| date >= from.date_naive());
        let before_to = self.to.is_none_or(|to| {
            // `to` is exclusive: a range ending at midnight does not reach that day.
            let last = to - chrono::Duration::nanoseconds(1);
            date <= last.date_naive()
        });
        after_from && before_to
    }
}

/// A result format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
    Parquet,
    /// Arrow IPC stream format.
    Arrow,
}

impl OutputFormat {
    /// The media type of a result in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Table => "text/plain; charset=utf-8",
            OutputFormat::Json => "application/x-ndjson",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Self::Table),
            "json" | "jsonl" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            "arrow" => Ok(Self::Arrow),
            other => Err(format!(
                "unknown format {other:?}; expected table, json, csv, parquet or arrow"
            )),
        }
    }
}
