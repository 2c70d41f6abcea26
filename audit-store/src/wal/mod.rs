//! The write-ahead log: what makes an acknowledgement durable before any Parquet exists.
//!
//! Records live in segment files `DIR/wal/<first lsn, 20 digits>.wal`. Each record is framed as
//!
//! ```text
//! [u32 LE body length][u32 LE CRC32C of body][body]
//! body = [u8 version = 1][u64 LE lsn][u8 table][u8 durability][u8 flags][u8 tenant length]
//!        [tenant][payload]
//! ```
//!
//! so the tenant, the table and the durability class survive a restart with the payload (an
//! Arrow IPC stream of one record batch). A client request is atomic: its records are written
//! together and the last one carries the `END_OF_REQUEST` flag; replay keeps a request's records
//! only once that flag is seen, so a write cut short never leaves half a request. Log sequence numbers (LSNs) increase by one per record
//! across segments and are never reused, even for records whose write failed.
//!
//! [`WalWriter::append`] writes a whole group of records with one `write` and one `fdatasync`
//! (group commit is the caller batching requests). A failed write or sync is never retried on the
//! same file descriptor (after a failed fsync the kernel may have dropped the dirty pages and
//! report success next time): the segment is truncated back to its last good length, closed, and
//! the next append starts a new segment.
//!
//! [`replay`] reads every segment in order at start-up; zeros where a frame would start end a
//! segment. A record cut short at the end of a segment's data (a torn tail, followed by nothing
//! or by zeros) is truncated away and counted. A record whose checksum fails with more
//! data after it is corruption: the segment is copied to `DIR/wal/corrupt/` as evidence,
//! truncated before the bad record, and replay continues with the next segment.

pub mod payload;
mod replay;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Table, TenantId};

pub use replay::{ReplayReport, replay};

/// Bytes of a frame header (length + checksum).
pub const FRAME_HEADER: usize = 8;
const VERSION: u8 = 1;
/// Flag: the last record of a client request.
const END_OF_REQUEST: u8 = 1;
const SEGMENT_EXTENSION: &str = "wal";

/// How a tenant's records must be made durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd to the write-ahead log before the acknowledgement.
    Sync = 1,
}

impl Durability {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Durability::Sync),
            _ => None,
        }
    }
}

/// One record to append.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub tenant: &'a TenantId,
    pub table: Table,
    pub durability: Durability,
    /// Set on the last record of each client request (see the module docs).
    pub ends_request: bool,
    pub payload: &'a [u8],
}

/// A record read back from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub lsn: u64,
    pub tenant: TenantId,
    pub table: Table,
    pub durability: Durability,
    pub payload: Vec<u8>,
    /// Where it is, to read it again with [`WalReader`].
    pub location: Location,
}

/// Where a record's frame is: enough to read it again while its segment exists (segments are
/// deleted only once everything in them is committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The segment, named by its first LSN.
    pub segment: u64,
    /// Byte offset of the frame in the segment.
    pub offset: u64,
    /// Length of the whole frame (header included).
    pub len: u32,
}

/// What [`WalWriter::append`] wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The LSN of the first entry; the others follow one by one.
    pub first_lsn: u64,
    /// Where each entry is, in order.
    pub locations: Vec<Location>,
}

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a write-ahead log record is {0} bytes; the largest allowed is {max}", max = u32::MAX)]
    TooLarge(usize),
    #[error("write-ahead log record {lsn} in {path} at offset {offset} is damaged: {reason}")]
    Damaged {
        path: PathBuf,
        lsn: u64,
        offset: u64,
        reason: &'static str,
    },
}

impl WalError {
    /// Whether the error is the disk being full (the caller answers "retry later").
    pub fn is_disk_full(&self) -> bool {
        match self {
            WalError::Io { source, .. } => source.raw_os_error() == Some(28),
            WalError::TooLarge(_) | WalError::Damaged { .. } => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Table ids in the log; never renumber.
fn table_id(table: Table) -> u8 {
    match table {
        Table::Logs => 1,
        Table::Spans => 2,
        Table::Events => 3,
    }
}

fn table_from_id(id: u8) -> Option<Table> {
    match id {
        1 => Some(Table::Logs),
        2 => Some(Table::Spans),
        3 => Some(Table::Events),
        _ => None,
    }
}

/// Appends one framed record to `buf`.
pub fn encode(buf: &mut Vec<u8>, lsn: u64, entry: &Entry<'_>) -> Result<(), WalError> {
    let tenant = entry.tenant.as_str().as_bytes();
    let body_len = 1 + 8 + 1 + 1 + 1 + 1 + tenant.len() + entry.payload.len();
    let len = u32::try_from(body_len).map_err(|_| WalError::TooLarge(body_len))?;
    let start = buf.len();
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(VERSION);
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.push(table_id(entry.table));
    buf.push(entry.durability as u8);
    buf.push(if entry.ends_request {
        END_OF_REQUEST
    } else {
        0
    });
    // TenantId guarantees at most 64 bytes.
    buf.push(tenant.len() as u8);
    buf.extend_from_slice(tenant);
    buf.extend_from_slice(entry.payload);
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a frame body whose checksum matched: the record and whether it ends its request.
/// `None` when its fields are invalid.
fn decode_body(body: &[u8], location: Location) -> Option<(Record, bool)> {
    let (&version, rest) = body.split_first()?;
    if version != VERSION || rest.len() < 12 {
        return None;
    }
    let lsn = u64::from_le_bytes(rest[..8].try_into().ok()?);
    // The next LSN must exist: u64::MAX is damage (the `wal_replay` fuzz target found it
    // overflowing the replay's next LSN).
    if lsn == u64::MAX {
        return None;
    }
    let table = table_from_id(rest[8])?;
    let durability = Durability::from_u8(rest[9])?;
    let ends_request = rest[10] & END_OF_REQUEST != 0;
    let tenant_len = rest[11] as usize;
    let rest = &rest[12..];
    if rest.len() < tenant_len {
        return None;
    }
    let tenant = TenantId::parse(std::str::from_utf8(&rest[..tenant_len]).ok()?).ok()?;
    let record = Record {
        lsn,
        tenant,
        table,
        durability,
        payload: rest[tenant_len..].to_vec(),
        location,
    };
    Some((record, ends_request))
}

/// The path of the segment whose first record is `first_lsn`.
pub fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.{SEGMENT_EXTENSION}"))
}

/// Segments in `dir` as (first lsn, path), oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXTENSION) {
            continue;
        }
        if let Some(lsn) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push((lsn, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Appends records to the active segment. Not thread-safe: one writer thread owns it.
pub struct WalWriter {
    dir: PathBuf,
    segment_limit: u64,
    next_lsn: u64,
    active: Option<Active>,
    buf: Vec<u8>,
    opened: u64,
}

struct Active {
    file: File,
    path: PathBuf,
    first_lsn: u64,
    len: u64,
}

impl WalWriter {
    /// A writer that continues at `next_lsn` (from [`replay`]). It never appends to an existing
    /// segment: the first append creates a new one.
    pub fn new(dir: &Path, next_lsn: u64, segment_limit: u64) -> Result<Self, WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_limit,
            next_lsn,
            active: None,
            buf: Vec::new(),
            opened: 0,
        })
    }

    /// Segments this writer has opened since it was created.
    pub fn segments_opened(&self) -> u64 {
        self.opened
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Writes and fsyncs `entries`; returns the LSN of the first and where each one is. On error
    /// nothing of the group counts as written, its LSNs are burnt, and the next append uses a
    /// new segment.
    pub fn append(&mut self, entries: &[Entry<'_>]) -> Result<Appended, WalError> {
        let first = self.next_lsn;
        self.next_lsn += entries.len() as u64;
        if self.active.is_none() {
            self.open_segment(first)?;
        }
        let Some(active) = self.active.as_mut() else {
            unreachable!("a segment was just opened")
        };
        self.buf.clear();
        let mut locations = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let start = self.buf.len();
            encode(&mut self.buf, first + i as u64, entry)?;
            locations.push(Location {
                segment: active.first_lsn,
                offset: active.len + start as u64,
                // `encode` refuses bodies whose length does not fit in a u32.
                len: (self.buf.len() - start) as u32,
            });
        }
        let result = active
            .file
            .write_all(&self.buf)
            .and_then(|()| active.file.sync_data())
            .map_err(io_err(&active.path));
        match result {
            Ok(()) => {
                active.len += self.buf.len() as u64;
                if active.len >= self.segment_limit {
                    self.active = None;
                }
                Ok(Appended {
                    first_lsn: first,
                    locations,
                })
            }
            Err(error) => {
                // Never fsync this descriptor again. Cut what may have reached the file, so a
                // refused record cannot reappear at replay, then retire the segment.
                let good = active.len;
                let cut = OpenOptions::new()
                    .write(true)
                    .open(&active.path)
                    .and_then(|f| f.set_len(good).and_then(|()| f.sync_all()));
                if let Err(e) = cut {
                    tracing::error!(path = %active.path.display(), error = %e, "cannot truncate a failed write-ahead log segment");
                }
                self.active = None;
                Err(error)
            }
        }
    }

    fn open_segment(&mut self, first_lsn: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, first_lsn);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.active = Some(Active {
            file,
            path,
            first_lsn,
            len: 0,
        });
        self.opened += 1;
        Ok(())
    }

    /// Closes the active segment (at shutdown, so that it too can be deleted once committed).
    pub fn close(&mut self) {
        self.active = None;
    }

    /// Deletes every segment all of whose records have an LSN below `lsn` (they are committed).
    /// Returns the number of segments deleted.
    pub fn delete_before(&mut self, lsn: u64) -> Result<usize, WalError> {
        remove_segments(&self.segments_before(lsn)?)
    }

    /// The segments all of whose records have an LSN below `lsn`, without deleting them: the
    /// caller removes them with [`remove_segments`] after letting go of the writer (unlinking a
    /// large file can wait for its writeback; appends need not wait for that). Segment names are
    /// never reused, so they stay safe to remove.
    pub fn segments_before(&self, lsn: u64) -> Result<Vec<PathBuf>, WalError> {
        let segments = list_segments(&self.dir)?;
        let active = self.active.as_ref().map(|a| &a.path);
        let mut done = Vec::new();
        for pair in segments.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first <= lsn && Some(path) != active {
                done.push(path.clone());
            }
        }
        // The newest segment has no successor: it is complete only when it is not active and
        // every LSN handed out so far is committed.
        if let Some((_, path)) = segments.last()
            && Some(path) != active
            && self.next_lsn <= lsn
        {
            done.push(path.clone());
        }
        Ok(done)
    }
}

/// Deletes these segment files (from [`WalWriter::segments_before`]); returns how many.
pub fn remove_segments(paths: &[PathBuf]) -> Result<usize, WalError> {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            // Already gone (a previous attempt stopped half-way): the goal is reached.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    Ok(paths.len())
}

/// Reads records again by their [`Location`] (the flusher does, when it writes Parquet), keeping
/// the segments it has opened. Every read checks the frame's checksum and that it holds the LSN
/// asked for.
pub struct WalReader {
    dir: PathBuf,
    open: std::collections::HashMap<u64, File>,
}

impl WalReader {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            open: Default::default(),
        }
    }

    /// The record `lsn`, which the writer put at `location`.
    pub fn read(&mut self, lsn: u64, location: Location) -> Result<Record, WalError> {
        use std::os::unix::fs::FileExt;
        let path = segment_path(&self.dir, location.segment);
        let file = match self.open.entry(location.segment) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(&path).map_err(io_err(&path))?)
            }
        };
        let mut frame = vec![0u8; location.len as usize];
        file.read_exact_at(&mut frame, location.offset)
            .map_err(io_err(&path))?;
        let damaged = |reason| WalError::Damaged {
            path: path.clone(),
            lsn,
            offset: location.offset,
            reason,
        };
        if frame.len() < FRAME_HEADER {
            return Err(damaged("frame shorter than its header"));
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let body = &frame[FRAME_HEADER..];
        if len != body.len() {
            return Err(damaged("frame length differs from where it was written"));
        }
        if crc32c::crc32c(body) != crc {
            return Err(damaged("checksum mismatch"));
        }
        match decode_body(body, location) {
            Some((record, _)) if record.lsn == lsn => Ok(record),
            Some(_) => Err(damaged("another LSN at this place")),
            None => Err(damaged("invalid record fields")),
        }
    }
}

#[cfg(test)]
mod tests;
