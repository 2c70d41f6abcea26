//! The payload of a write-ahead log record: one Arrow record batch as an Arrow IPC message.
//!
//! IPC is Arrow's own serialisation: cheap to write (buffers are copied as they are) and cheap to
//! read (buffers are used where they lie). A record is one *encapsulated record-batch message*
//! behind an 8-byte format tag, without the schema: the record's [`Table`] names its schema, and
//! writing and parsing the schema for every batch cost more than the batch itself for small
//! requests. Records written before the tag existed are whole IPC streams (schema, batches, end
//! marker) and are still read.
//!
//! Changing a table's schema therefore changes how records already in a log must be read: bump
//! [`FORMAT`]'s version byte and keep a reader for the old one.
//!
//! Log records (tables `logs` and `events`) are kept as OTLP instead ([`OTLP_LOGS`]): the
//! accepted, redacted records of one tenant and table, as an `ExportLogsServiceRequest` in
//! protobuf, behind a header with their row count, the time they were received and the redaction
//! policy applied. That is about 40 % of the bytes of the same rows in IPC and costs nothing to
//! encode (the records' bytes are the request's); the collector converts them to Arrow when it
//! writes their Parquet file. This module only frames them ([`OtlpLogs`]).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::reader::{StreamDecoder, read_record_batch};
use arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message,
};
use arrow::ipc::{MessageHeader, root_as_message};

use crate::Table;

/// The tag that starts a payload of this format (version 2).
pub const FORMAT: [u8; 8] = *b"tsbatch\x02";

const CONTINUATION: [u8; 4] = [0xff; 4];

/// The tag that starts a payload of OTLP log records (version 1).
pub const OTLP_LOGS: [u8; 8] = *b"tsotlpl\x01";

/// The framing of an [`OTLP_LOGS`] payload: tag, row count (u32), receive time (i64 nanoseconds),
/// the redaction policy's length (u16) and text, then the protobuf request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpLogs<'a> {
    pub rows: u32,
    /// Nanoseconds since the epoch: the timestamp of records that carry none.
    pub received_at: i64,
    /// The redaction policy version applied before the records were logged (empty: none).
    pub redaction_policy: &'a str,
    /// An `ExportLogsServiceRequest` in protobuf.
    pub request: &'a [u8],
}

impl<'a> OtlpLogs<'a> {
    const ROWS_AT: usize = OTLP_LOGS.len();

    /// Starts a payload in `out` (cleared): the header, with a row count of zero until
    /// [`OtlpLogs::set_rows`]. The request's bytes are appended after it.
    pub fn begin(out: &mut Vec<u8>, received_at: i64, redaction_policy: &str) {
        out.clear();
        out.extend_from_slice(&OTLP_LOGS);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&received_at.to_le_bytes());
        // Policy versions are short names; a longer one is cut at a character boundary.
        let mut end = redaction_policy.len().min(u16::MAX as usize);
        while !redaction_policy.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&(end as u16).to_le_bytes());
        out.extend_from_slice(&redaction_policy.as_bytes()[..end]);
    }

    /// Sets the row count of a payload [`OtlpLogs::begin`] started.
    pub fn set_rows(out: &mut [u8], rows: u32) {
        out[Self::ROWS_AT..Self::ROWS_AT + 4].copy_from_slice(&rows.to_le_bytes());
    }

    /// Reads the framing of a payload; `None` when it is not an OTLP logs payload.
    pub fn parse(payload: &'a [u8]) -> Option<Result<Self, ArrowError>> {
        let rest = payload.strip_prefix(&OTLP_LOGS)?;
        let bad =
            || ArrowError::ParseError("write-ahead log payload: OTLP header cut short".into());
        let parse = || {
            let rows = u32::from_le_bytes(
                rest.get(..4)
                    .ok_or_else(bad)?
                    .try_into()
                    .unwrap_or_default(),
            );
            let received_at = i64::from_le_bytes(
                rest.get(4..12)
                    .ok_or_else(bad)?
                    .try_into()
                    .unwrap_or_default(),
            );
            let length = u16::from_le_bytes(
                rest.get(12..14)
                    .ok_or_else(bad)?
                    .try_into()
                    .unwrap_or_default(),
            );
            let policy = rest.get(14..14 + length as usize).ok_or_else(bad)?;
            let redaction_policy = std::str::from_utf8(policy).map_err(|_| {
                ArrowError::ParseError("write-ahead log payload: policy is not UTF-8".into())
            })?;
            Ok(Self {
                rows,
                received_at,
                redaction_policy,
                request: &rest[14 + length as usize..],
            })
        };
        Some(parse())
    }

    /// Where the request starts in the payload.
    pub fn request_offset(&self, payload: &[u8]) -> usize {
        payload.len() - self.request.len()
    }
}

/// Serialises `batch` (appending to `out`).
pub fn encode_batch(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = IpcWriteOptions::default();
    let (dictionaries, encoded) = IpcDataGenerator::default().encode(
        batch,
        &mut DictionaryTracker::new(false),
        &options,
        &mut IpcWriteContext::default(),
    )?;
    if !dictionaries.is_empty() {
        return Err(ArrowError::IpcError(
            "the write-ahead log does not store dictionary-encoded columns".into(),
        ));
    }
    // Tag, continuation, length, metadata padded to 8, body.
    out.reserve(FORMAT.len() + 8 + encoded.ipc_message.len() + 8 + encoded.arrow_data.len());
    out.extend_from_slice(&FORMAT);
    write_message(&mut *out, encoded, &options)?;
    Ok(())
}

/// A tagged payload's record-batch message, checked so that reading it cannot go out of bounds:
/// its metadata, the batch header and the range of the body.
struct Parts<'a> {
    message: arrow::ipc::Message<'a>,
    header: arrow::ipc::RecordBatch<'a>,
    body: std::ops::Range<usize>,
}

fn parts(payload: &[u8]) -> Result<Parts<'_>, ArrowError> {
    let bad = |what: &str| ArrowError::IpcError(format!("write-ahead log payload: {what}"));
    let rest = &payload[FORMAT.len()..];
    if rest.len() < 8 || rest[..4] != CONTINUATION {
        return Err(bad("no message header"));
    }
    let length = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let length = usize::try_from(length).map_err(|_| bad("negative metadata length"))?;
    let metadata = rest
        .get(8..8 + length)
        .ok_or_else(|| bad("metadata past the end"))?;
    let message = root_as_message(metadata).map_err(|e| bad(&format!("metadata: {e}")))?;
    if message.header_type() != MessageHeader::RecordBatch {
        return Err(bad("not a record batch"));
    }
    let header = message
        .header_as_record_batch()
        .ok_or_else(|| bad("no batch header"))?;
    let start = FORMAT.len() + 8 + length;
    let body_length = usize::try_from(message.bodyLength()).map_err(|_| bad("body length"))?;
    let end = start
        .checked_add(body_length)
        .filter(|end| *end <= payload.len())
        .ok_or_else(|| bad("body cut short"))?;
    // Arrow's reader slices these without checking: a buffer past the body would panic.
    for b in header.buffers().into_iter().flatten() {
        let inside = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.length()).ok())
            .and_then(|(o, l)| o.checked_add(l))
            .is_some_and(|last| last <= body_length as u64);
        if !inside {
            return Err(bad("a buffer lies outside the body"));
        }
    }
    if header.compression().is_some() {
        return Err(bad("compressed batches are not written here"));
    }
    // Arrow's reader sizes buffers by the row counts before it checks them against the body: a
    // count no body this long can hold (every column needs at least a bit per row) is damage,
    // refused before anything that large is allocated (found by the `wal_replay` fuzz target).
    let most = (body_length as u64).saturating_mul(8).saturating_add(8);
    let nodes = header.nodes().into_iter().flatten();
    let mut lengths = std::iter::once(header.length()).chain(nodes.map(|n| n.length()));
    if !lengths.all(|n| u64::try_from(n).is_ok_and(|n| n <= most)) {
        return Err(bad("a row count larger than its body can hold"));
    }
    Ok(Parts {
        message,
        header,
        body: start..end,
    })
}

/// Reads back what [`encode_batch`] wrote for `table` (or an older record's whole IPC stream):
/// every batch in it. (OTLP log payloads are the collector's to convert: an error here.)
///
/// A payload damaged so that the Arrow IPC reader panics (it can, on lengths its buffers do not
/// hold: found by the `wal_replay` fuzz target) is an error like any other damage, never a
/// panic of the caller.
pub fn decode_batches(table: Table, payload: Vec<u8>) -> Result<Vec<RecordBatch>, ArrowError> {
    let decode = std::panic::AssertUnwindSafe(|| decode_unguarded(table, payload));
    std::panic::catch_unwind(decode).unwrap_or_else(|panic| {
        let what = crate::panic_message(panic.as_ref());
        Err(ArrowError::IpcError(format!(
            "the Arrow IPC reader failed on the payload: {what}"
        )))
    })
}

fn decode_unguarded(table: Table, payload: Vec<u8>) -> Result<Vec<RecordBatch>, ArrowError> {
    if payload.starts_with(&OTLP_LOGS) {
        return Err(ArrowError::ParseError(
            "an OTLP logs payload is converted by the collector, not decoded as Arrow".into(),
        ));
    }
    if !payload.starts_with(&FORMAT) {
        return decode_stream(payload);
    }
    let buffer = Buffer::from_vec(payload);
    let parts = parts(buffer.as_slice())?;
    let body = buffer.slice_with_length(parts.body.start, parts.body.len());
    let batch = read_record_batch(
        &body,
        parts.header,
        table.schema(),
        &HashMap::new(),
        None,
        &parts.message.version(),
    )?;
    Ok(vec![batch])
}

/// A whole IPC stream (records of older versions), decoded from memory: unlike `StreamReader`,
/// the decoder never allocates a message body before it has its bytes, so a damaged body
/// length cannot make it allocate more than the payload (found by the `wal_replay` fuzz target).
fn decode_stream(payload: Vec<u8>) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from_vec(payload);
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        let before = buffer.len();
        if let Some(batch) = decoder.decode(&mut buffer)? {
            batches.push(batch);
        } else if buffer.len() == before {
            break;
        }
    }
    decoder.finish()?;
    Ok(batches)
}

/// The number of rows in a payload, read from its header alone where it can be.
pub fn rows(table: Table, payload: &[u8]) -> Result<usize, ArrowError> {
    if let Some(otlp) = OtlpLogs::parse(payload) {
        return Ok(otlp?.rows as usize);
    }
    if !payload.starts_with(&FORMAT) {
        let batches = decode_batches(table, payload.to_vec())?;
        return Ok(batches.iter().map(RecordBatch::num_rows).sum());
    }
    let parts = parts(payload)?;
    usize::try_from(parts.header.length())
        .map_err(|_| ArrowError::IpcError("write-ahead log payload: negative row count".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;

    use super::*;

    /// A `spans`-shaped batch is not needed: any schema works for the old format, and the new
    /// format is checked against a real table in the pipeline's tests.
    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let column: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")]));
        RecordBatch::try_new(schema, vec![column]).unwrap()
    }

    #[test]
    fn records_written_as_whole_ipc_streams_are_still_read() {
        let mut old = Vec::new();
        let mut writer = StreamWriter::try_new(&mut old, &batch().schema()).unwrap();
        writer.write(&batch()).unwrap();
        writer.write(&batch()).unwrap();
        writer.finish().unwrap();
        drop(writer);
        assert_eq!(rows(Table::Logs, &old).unwrap(), 6);
        let batches = decode_batches(Table::Logs, old).unwrap();
        assert_eq!(batches, vec![batch(), batch()]);
    }

    #[test]
    fn a_tagged_payload_cut_short_or_damaged_is_refused_not_misread() {
        let mut out = Vec::new();
        encode_batch(&batch(), &mut out).unwrap();
        assert!(out.starts_with(&FORMAT));
        assert_eq!(rows(Table::Logs, &out).unwrap(), 3);
        for cut in [FORMAT.len(), FORMAT.len() + 6, out.len() / 2, out.len() - 1] {
            assert!(rows(Table::Logs, &out[..cut]).is_err(), "cut at {cut}");
            assert!(
                decode_batches(Table::Logs, out[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        let mut negative = out.clone();
        negative[FORMAT.len() + 4..FORMAT.len() + 8].copy_from_slice(&(-8i32).to_le_bytes());
        assert!(rows(Table::Logs, &negative).is_err());
        // A one-column batch is not a `logs` batch: the schema mismatch is an error.
        assert!(decode_batches(Table::Logs, out).is_err());
    }

    /// Found by the `wal_replay` fuzz target: a payload whose row count its buffers do not hold
    /// made the Arrow IPC reader panic. Every one-byte change of a real `spans` payload now
    /// decodes or is an error.
    #[test]
    fn a_damaged_payload_is_an_error_never_a_panic() {
        let rows: Vec<(i64, String)> = (0..5).map(|i| (i, format!("span {i}"))).collect();
        let batch = crate::test_support::batch(Table::Spans, "acme", &rows);
        let mut out = Vec::new();
        encode_batch(&batch, &mut out).unwrap();
        assert_eq!(
            decode_batches(Table::Spans, out.clone()).unwrap(),
            vec![batch]
        );
        let mut errors = 0;
        for i in FORMAT.len()..out.len() {
            for value in [0x00, 0x7f, 0xff] {
                let mut damaged = out.clone();
                damaged[i] = value;
                errors += decode_batches(Table::Spans, damaged).is_err() as usize;
            }
        }
        assert!(errors > 0, "some damage is detected");
    }

    #[test]
    fn otlp_log_payloads_carry_rows_time_and_policy_and_refuse_a_cut_header() {
        let mut out = vec![1, 2, 3];
        OtlpLogs::begin(&mut out, -5, "pii-v2");
        out.extend_from_slice(b"\x0a\x00");
        OtlpLogs::set_rows(&mut out, 7);
        let read = OtlpLogs::parse(&out).unwrap().unwrap();
        assert_eq!(
            read,
            OtlpLogs {
                rows: 7,
                received_at: -5,
                redaction_policy: "pii-v2",
                request: b"\x0a\x00",
            }
        );
        assert_eq!(read.request_offset(&out), out.len() - 2);
        assert_eq!(rows(Table::Events, &out).unwrap(), 7);
        assert!(decode_batches(Table::Events, out.clone()).is_err());
        for cut in [
            OTLP_LOGS.len() + 3,
            OTLP_LOGS.len() + 13,
            OTLP_LOGS.len() + 16,
        ] {
            assert!(
                OtlpLogs::parse(&out[..cut]).unwrap().is_err(),
                "cut at {cut}"
            );
            assert!(rows(Table::Logs, &out[..cut]).is_err(), "cut at {cut}");
        }
        assert!(OtlpLogs::parse(b"tsbatch\x02").is_none());
        // A policy name is cut at a character boundary, never inside one.
        let long = "é".repeat(40_000);
        OtlpLogs::begin(&mut out, 0, &long);
        let read = OtlpLogs::parse(&out).unwrap().unwrap();
        assert_eq!(read.redaction_policy.len(), 65_534);
        assert!(read.request.is_empty());
    }
}
