//! Reading the log back at start-up: torn tails truncated, corruption reported and preserved,
//! zeros after a segment's last record read as its end (after a power loss ext4 can show a file
//! at its new size with zeros where the last write's data never reached the disk; the same holds
//! for preallocated segments, should the writer ever preallocate).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::{FRAME_HEADER, Location, Record, WalError, decode_body, io_err, list_segments};

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    /// Segments whose incomplete last record (or request) was cut away.
    pub torn_tails: usize,
    /// Complete records dropped because the rest of their request was missing.
    pub incomplete_request_records: u64,
    /// Copies of segments in which a damaged record was found (under `wal/corrupt/`).
    pub corrupt_segments: Vec<PathBuf>,
    /// The LSN after the highest one seen (or implied by segment names).
    pub next_lsn: u64,
}

/// Reads every segment in `dir`, oldest first, calling `visit` for each valid record.
pub fn replay(dir: &Path, mut visit: impl FnMut(Record)) -> Result<ReplayReport, WalError> {
    let mut report = ReplayReport::default();
    for (first_lsn, path) in list_segments(dir)? {
        report.segments += 1;
        report.next_lsn = report.next_lsn.max(first_lsn);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        let mut offset = 0usize;
        // Records of the request being read, and where it started; released at its last record.
        let mut pending: Vec<Record> = Vec::new();
        let mut request_start = 0usize;
        let damage = loop {
            let rest = &data[offset..];
            if rest.is_empty() {
                break None;
            }
            // Zeros after the last record end the segment (no frame starts with a zero length:
            // checked first, so that this costs nothing per frame).
            if zeros(&rest[..rest.len().min(FRAME_HEADER)]) && zeros(rest) {
                break None;
            }
            if rest.len() < FRAME_HEADER {
                break Some(Damage::Torn);
            }
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
            let Some(body) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
                break Some(Damage::Torn);
            };
            let location = Location {
                segment: first_lsn,
                offset: offset as u64,
                len: (FRAME_HEADER + len) as u32,
            };
            let decoded = (crc32c::crc32c(body) == crc)
                .then(|| decode_body(body, location))
                .flatten()
                .filter(|(r, _)| r.lsn >= report.next_lsn); // LSNs only grow
            let Some((record, ends_request)) = decoded else {
                // A bad last frame is a write cut short; anything but zeros after it means
                // corruption.
                let last = zeros(&rest[FRAME_HEADER + len..]);
                break Some(if last { Damage::Torn } else { Damage::Corrupt });
            };
            report.next_lsn = report.next_lsn.max(record.lsn + 1);
            offset += FRAME_HEADER + len;
            pending.push(record);
            if ends_request {
                report.records += pending.len() as u64;
                pending.drain(..).for_each(&mut visit);
                request_start = offset;
            }
        };
        // A request without its last record was never acknowledged: drop all of it.
        report.incomplete_request_records += pending.len() as u64;
        let damage = match damage {
            None if !pending.is_empty() => Some(Damage::Torn),
            other => other,
        };
        let offset = request_start;
        match damage {
            None => {}
            Some(Damage::Torn) => {
                tracing::warn!(segment = %path.display(), offset, bytes = data.len() - offset, "truncating a torn write-ahead log tail");
                truncate(&path, offset)?;
                report.torn_tails += 1;
            }
            Some(Damage::Corrupt) => {
                let corrupt_dir = dir.join("corrupt");
                std::fs::create_dir_all(&corrupt_dir).map_err(io_err(&corrupt_dir))?;
                let copy = corrupt_dir.join(path.file_name().unwrap_or_default());
                std::fs::write(&copy, &data).map_err(io_err(&copy))?;
                tracing::error!(segment = %path.display(), offset, copy = %copy.display(), "corrupt write-ahead log record; the rest of the segment is skipped");
                truncate(&path, offset)?;
                report.corrupt_segments.push(copy);
            }
        }
    }
    Ok(report)
}

fn zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

enum Damage {
    Torn,
    Corrupt,
}

fn truncate(path: &Path, len: usize) -> Result<(), WalError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len as u64).and_then(|()| f.sync_all()))
        .map_err(io_err(path))
}
