//! The query API's request body (`POST /api/v1/query`), read without running anything: JSON →
//! SQL, tenant, time range and output format, or the refusal the API answers. Built with or
//! without the `query` feature (the `query_request` fuzz target reads bodies through it).

use audit_store::query::{OutputFormat, TimeRange};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::tenancy::TenancyError;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A refused query: status, metric result and message.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub result: &'static str,
    pub error_type: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, result: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            result,
            error_type: result,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl From<TenancyError> for Refusal {
    fn from(e: TenancyError) -> Self {
        match &e {
            TenancyError::Unauthenticated(_) => {
                Refusal::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            TenancyError::Throttled { retry_after } => Refusal {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Refusal::new(StatusCode::TOO_MANY_REQUESTS, "throttled", e.to_string())
            },
            _ if e.is_forbidden() => {
                Refusal::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            _ => Refusal::bad(e.to_string()),
        }
    }
}

/// A request body read: the SQL, the tenant it names (if any), its time range and format.
#[derive(Debug)]
pub struct ParsedRequest {
    pub sql: String,
    pub tenant: Option<String>,
    pub range: TimeRange,
    pub format: OutputFormat,
}

/// Reads a query request's JSON body; `headers` give the `Accept` format when the body names
/// none.
pub fn parse(body: &[u8], headers: &HeaderMap) -> Result<ParsedRequest, Refusal> {
    let req: QueryRequest = serde_json::from_slice(body).map_err(|e| {
        Refusal::bad(format!(
            "the body must be JSON like {{\"sql\": \"SELECT ...\", \"from\": \"2026-01-01T00:00:00Z\"}}: {e}"
        ))
    })?;
    let format = output_format(req.format.as_deref(), headers)?;
    let range = time_range(&req)?;
    Ok(ParsedRequest {
        sql: req.sql,
        tenant: req.tenant,
        range,
        format,
    })
}

fn output_format(field: Option<&str>, headers: &HeaderMap) -> Result<OutputFormat, Refusal> {
    if let Some(f) = field {
        return match f.parse::<OutputFormat>() {
            Ok(OutputFormat::Table) | Err(_) => Err(Refusal::bad(format!(
                "unknown format {f:?}; expected json, csv, arrow or parquet"
            ))),
            Ok(format) => Ok(format),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for media in accept.split(',') {
        let media = media
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let format = match media.as_str() {
            "application/x-ndjson" | "application/jsonl" | "application/json" => OutputFormat::Json,
            "text/csv" => OutputFormat::Csv,
            "application/vnd.apache.arrow.stream" => OutputFormat::Arrow,
            "application/vnd.apache.parquet" => OutputFormat::Parquet,
            _ => continue,
        };
        return Ok(format);
    }
    Ok(OutputFormat::Json)
}

fn rfc3339(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, Refusal> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    Refusal::bad(format!(
                        "{field} {v:?} is not an RFC 3339 time like 2026-11-27T00:00:00Z: {e}"
                    ))
                })
        })
        .transpose()
}

fn time_range(req: &QueryRequest) -> Result<TimeRange, Refusal> {
    let range = match &req.since {
        Some(since) => {
            if req.from.is_some() || req.to.is_some() {
                return Err(Refusal::bad("use either since or from/to, not both"));
            }
            let d = humantime::parse_duration(since)
                .map_err(|e| Refusal::bad(format!("since {since:?} is not a duration: {e}")))?;
            // Checked: a duration reaching before the year -262143 made chrono panic (found by
            // the `query_request` fuzz target).
            let from = chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| Utc::now().checked_sub_signed(d))
                .ok_or_else(|| Refusal::bad(format!("since {since:?} is too long")))?;
            TimeRange {
                from: Some(from),
                to: None,
            }
        }
        None => TimeRange {
            from: rfc3339("from", req.from.as_deref())?,
            to: rfc3339("to", req.to.as_deref())?,
        },
    };
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from >= to
    {
        return Err(Refusal::bad("from must be before to"));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_body(body: &str) -> Result<ParsedRequest, Refusal> {
        parse(body.as_bytes(), &HeaderMap::new())
    }

    #[test]
    fn bodies_read_into_sql_range_and_format() {
        let r =
            parse_body(r#"{"sql": "SELECT 1", "from": "2026-01-01T00:00:00Z", "format": "csv"}"#)
                .unwrap();
        assert_eq!((r.sql.as_str(), r.format), ("SELECT 1", OutputFormat::Csv));
        assert!(r.range.from.is_some() && r.range.to.is_none());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/csv;q=1".parse().unwrap());
        let r = parse(br#"{"sql": "SELECT 1"}"#, &headers).unwrap();
        assert_eq!(r.format, OutputFormat::Csv);
        for bad in [
            r#"{"sql": "SELECT 1", "format": "table"}"#,
            r#"{"sql": "SELECT 1", "since": "1h", "to": "2026-01-01T00:00:00Z"}"#,
            r#"{"sql": "SELECT 1", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}"#,
            r#"{"sql": 1}"#,
            r#"{"sql": "SELECT 1", "extra": true}"#,
        ] {
            assert_eq!(
                parse_body(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    /// Found by the `query_request` fuzz target: a `since` reaching before chrono's earliest
    /// time panicked.
    #[test]
    fn a_since_longer_than_time_is_refused_not_a_panic() {
        let refusal = parse_body(r#"{"sql": "SELECT 1", "since": "100000000000y"}"#).unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert!(refusal.message.contains("too long"), "{}", refusal.message);
    }
}
