//! The rows digest: a digest of the *set of rows* of a file, independent of its encoding (Parquet
//! settings, row groups, pages, compression) and of the order its rows are stored in.
//!
//! Construction (`blake3:` + 64 hex digits; `RowsHasher` computes it in one pass):
//!
//! 1. **Canonical order.** Rows are taken in ascending `timestamp`; rows that share a timestamp
//!    are ordered by their columns in schema order (integers by value, strings by their bytes,
//!    maps entry by entry — key, then value — a shorter one first when one is a prefix of the
//!    other, nulls first). Rows that tie on every column are identical and interchangeable, so the
//!    sequence is a function of the multiset of rows alone.
//! 2. **Canonical columns.** Each column of the table's schema, in schema order, is split into
//!    *lanes*, each hashed with BLAKE3 as one stream over the rows in canonical order: the
//!    positions of null values (u64 LE row numbers), fixed-width values (little-endian; a null's
//!    slot as zeros), string lengths (u32 LE) and string bytes; a map column adds its entry
//!    counts and its keys and values as two string columns (entries numbered in the order they
//!    are hashed). A string or map of 32 bytes or more (a map: its keys and values together)
//!    equal to the previous row's in canonical order is written as the length or count
//!    `u32::MAX` (no Arrow value is that long) and its bytes are not hashed again: values
//!    repeated row after row (a resource's attributes, a long service name) cost a comparison,
//!    not a hash; shorter ones cost less to hash than to compare. Values can be read back from the lanes
//!    unambiguously, so the encoding is injective.
//! 3. **The digest** is BLAKE3 over a version tag, the table, the row count and each column's name
//!    and lane hashes.
//!
//! Two files get the same digest exactly when they hold the same multiset of rows, unless
//! BLAKE3 collides (128-bit collision resistance): finding a second set of rows with a given
//! digest is as hard as breaking BLAKE3. Hashing whole column buffers keeps BLAKE3 on its wide
//! SIMD path (several GB/s); hashing every row separately, as a homomorphic multiset hash
//! (LtHash, MuHash) must, costs 250–600 ns a row here — more than a tenth of the whole ingest
//! path — which is why the canonical order is used instead (ARCHITECTURE.md, "Rows digest").
//! The price: the digest of a union is not computed from the digests of its parts; whoever merges
//! files (compaction) computes the digest of the rows it read and compares it with the one of the
//! file it wrote.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, MapArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::array::{DynComparator, make_comparator};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef, UInt32Type};
use arrow::error::ArrowError;
use std::cmp::Ordering;

use crate::Table;

/// Prefix of a rows digest's text form.
pub const PREFIX: &str = "blake3:";
const VERSION_TAG: &[u8] = b"tenantscope rows digest v2\0";

/// Why a rows digest could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum RowsDigestError {
    #[error("column {column} is missing or has type {found}, not the {table} schema's")]
    Schema {
        table: &'static str,
        column: String,
        found: String,
    },
    #[error("rows are not in time order (row {row})")]
    OutOfOrder { row: u64 },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Computes the rows digest of batches that arrive in time order (as every file of the store is
/// written and read back).
pub struct RowsHasher {
    table: Table,
    schema: SchemaRef,
    columns: Vec<ColumnLanes>,
    /// Rows hashed so far (the row number of the next row in canonical order).
    rows: u64,
    /// The newest timestamp seen, and the rows that carry it, not yet hashed: more rows with the
    /// same time may follow in the next batch, and a tie is ordered by content.
    pending: Vec<RecordBatch>,
    pending_time: Option<i64>,
    seen: u64,
}

impl RowsHasher {
    pub fn new(table: Table) -> Self {
        let schema = table.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnLanes::new(f.data_type()))
            .collect();
        Self {
            table,
            schema,
            columns,
            rows: 0,
            pending: Vec::new(),
            pending_time: None,
            seen: 0,
        }
    }

    /// Adds the rows of `batch`, which must come in time order, none earlier than a row before.
    /// Columns are found by name, so a batch read from any Parquet file of the table works.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), RowsDigestError> {
        let batch = self.conform(batch)?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = times(&batch)?;
        if let Some(i) = times.windows(2).position(|w| w[1] < w[0]) {
            return Err(RowsDigestError::OutOfOrder {
                row: self.seen + i as u64 + 1,
            });
        }
        if self.pending_time.is_some_and(|t| times[0] < t) {
            return Err(RowsDigestError::OutOfOrder { row: self.seen });
        }
        self.seen += n as u64;
        let mut rest = batch.clone();
        if let Some(t) = self.pending_time {
            let head = times.partition_point(|&x| x == t);
            if head > 0 {
                self.pending.push(batch.slice(0, head));
                if head == n {
                    return Ok(());
                }
                rest = batch.slice(head, n - head);
            }
        }
        self.flush_pending()?;
        let times = &times[n - rest.num_rows()..];
        let last = times[times.len() - 1];
        let tail_start = times.partition_point(|&x| x < last);
        if tail_start > 0 {
            self.hash_sorted(&rest.slice(0, tail_start), &times[..tail_start])?;
        }
        self.pending
            .push(rest.slice(tail_start, rest.num_rows() - tail_start));
        self.pending_time = Some(last);
        Ok(())
    }

    /// The digest, as `blake3:<hex>`.
    pub fn finish(mut self) -> Result<String, RowsDigestError> {
        self.flush_pending()?;
        let mut digest = blake3::Hasher::new();
        digest.update(VERSION_TAG);
        digest.update(self.table.name().as_bytes());
        digest.update(&[0]);
        digest.update(&self.rows.to_le_bytes());
        for (field, column) in self.schema.fields().iter().zip(&self.columns) {
            digest.update(&(field.name().len() as u32).to_le_bytes());
            digest.update(field.name().as_bytes());
            for lane in &column.lanes {
                digest.update(lane.finalize().as_bytes());
            }
        }
        Ok(format!("{PREFIX}{}", digest.finalize().to_hex()))
    }

    /// The batch's columns in the table's schema order, found by name and checked by type.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, RowsDigestError> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column = batch.column_by_name(field.name());
            match column {
                Some(c) if same_type(c.data_type(), field.data_type()) => columns.push(c.clone()),
                _ => {
                    return Err(RowsDigestError::Schema {
                        table: self.table.name(),
                        column: field.name().clone(),
                        found: column
                            .map(|c| c.data_type().to_string())
                            .unwrap_or_else(|| "nothing".into()),
                    });
                }
            }
        }
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .or_else(|_| {
            // Field names inside maps may differ between writers; the values are what counts.
            RecordBatch::try_new_with_options(
                relaxed_schema(&self.schema, batch),
                batch_columns(&self.schema, batch),
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
        })?)
    }

    /// Hashes the held tie run in canonical order.
    fn flush_pending(&mut self) -> Result<(), RowsDigestError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_time = None;
        let batch = if pending.len() == 1 {
            pending.into_iter().next().expect("one batch")
        } else {
            arrow::compute::concat_batches(&pending[0].schema(), &pending)?
        };
        let times = times(&batch)?.to_vec();
        self.hash_sorted(&batch, &times)
    }

    /// Hashes rows sorted by time, after ordering each run of equal times by row hash.
    fn hash_sorted(&mut self, batch: &RecordBatch, times: &[i64]) -> Result<(), RowsDigestError> {
        let mut order: Option<Vec<u32>> = None;
        let mut comparators: Option<Vec<DynComparator>> = None;
        let mut start = 0;
        for run in times.chunk_by(|a, b| a == b) {
            if run.len() > 1 {
                let compare = match &comparators {
                    Some(c) => c,
                    None => comparators.insert(row_comparators(batch)?),
                };
                let by_content = |a: &u32, b: &u32| {
                    compare
                        .iter()
                        .map(|c| c(*a as usize, *b as usize))
                        .find(|o| o.is_ne())
                        .unwrap_or(Ordering::Equal)
                };
                let range = start as u32..(start + run.len()) as u32;
                // Most runs are already in order (or are copies of one row): checked first.
                if !range
                    .clone()
                    .zip(range.clone().skip(1))
                    .all(|(a, b)| by_content(&a, &b).is_le())
                {
                    let order = order.get_or_insert_with(|| (0..times.len() as u32).collect());
                    order[start..start + run.len()].sort_unstable_by(by_content);
                }
            }
            start += run.len();
        }
        let batch = match order {
            Some(order) => {
                let indices = arrow::array::UInt32Array::from(order);
                arrow::compute::take_record_batch(batch, &indices)?
            }
            None => batch.clone(),
        };
        for (column, lanes) in batch.columns().iter().zip(&mut self.columns) {
            lanes.update(column, self.rows)?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// One comparator per column, in schema order: rows that share a timestamp are ordered by their
/// columns, each compared as Arrow orders it (integers by value, strings by their bytes, maps
/// entry by entry — key, then value — a shorter one first when one is a prefix of the other,
/// nulls first).
fn row_comparators(batch: &RecordBatch) -> Result<Vec<DynComparator>, ArrowError> {
    batch
        .columns()
        .iter()
        .map(|c| make_comparator(c.as_ref(), c.as_ref(), SortOptions::default()))
        .collect()
}

/// A length or entry count that stands for "the same value as the row before" (see the module
/// documentation); no Arrow string or map can be this long.
const REPEAT: u32 = u32::MAX;

/// Values shorter than this (a map: its keys' and values' bytes together) are hashed even when
/// they repeat: comparing costs about as much as hashing them.
const MIN_REPEAT: usize = 32;

/// Writes smaller than this are gathered first: BLAKE3 hashes 16 KiB and more on its widest SIMD
/// path, and small updates one 64-byte block at a time.
const GATHER: usize = 32 << 10;

/// One lane: a BLAKE3 stream fed in large writes.
#[derive(Default)]
struct Lane {
    hasher: blake3::Hasher,
    gathered: Vec<u8>,
}

impl Lane {
    fn write(&mut self, bytes: &[u8]) {
        if self.gathered.is_empty() && bytes.len() >= GATHER {
            self.hasher.update(bytes);
            return;
        }
        self.gathered.extend_from_slice(bytes);
        if self.gathered.len() >= GATHER {
            self.hasher.update(&self.gathered);
            self.gathered.clear();
        }
    }

    fn finalize(&self) -> blake3::Hash {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.gathered);
        hasher.finalize()
    }
}

/// The hash lanes of one column.
struct ColumnLanes {
    lanes: Vec<Lane>,
    /// The previous row in canonical order (a one-row slice), for the repeat marker.
    last: Option<ArrayRef>,
    /// Map entries hashed so far (their numbering for the key and value null lanes).
    entries: u64,
}

impl ColumnLanes {
    fn new(data_type: &DataType) -> Self {
        let count = match data_type {
            // nulls, counts; keys: nulls, lengths, bytes; values: nulls, lengths, bytes
            DataType::Map(..) => 8,
            // nulls, lengths, bytes
            DataType::Utf8 => 3,
            // nulls, values
            _ => 2,
        };
        Self {
            lanes: (0..count).map(|_| Lane::default()).collect(),
            last: None,
            entries: 0,
        }
    }

    /// Hashes `array`, whose first row is row number `first` in canonical order.
    fn update(&mut self, array: &ArrayRef, first: u64) -> Result<(), RowsDigestError> {
        if array.is_empty() {
            return Ok(());
        }
        let Self {
            lanes,
            last,
            entries,
        } = self;
        match array.data_type() {
            DataType::Utf8 => {
                let previous = last.as_ref().map(|l| l.as_string::<i32>());
                strings(array.as_string::<i32>(), true, previous, first, lanes)
            }
            DataType::Map(..) => {
                let previous = last.as_ref().map(|l| l.as_map());
                *entries = map(array.as_map(), previous, first, *entries, lanes);
            }
            DataType::Int32 => {
                let values = array.as_primitive::<Int32Type>().values();
                fixed(values.inner().as_slice(), array, 4, first, lanes)
            }
            DataType::UInt32 => {
                let values = array.as_primitive::<UInt32Type>().values();
                fixed(values.inner().as_slice(), array, 4, first, lanes)
            }
            DataType::Int64 => {
                let values = array.as_primitive::<Int64Type>().values();
                fixed(values.inner().as_slice(), array, 8, first, lanes)
            }
            DataType::Timestamp(..) => {
                let ts = array
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .ok_or_else(|| ArrowError::SchemaError("timestamp not in ns".into()))?;
                fixed(ts.values().inner().as_slice(), array, 8, first, lanes)
            }
            other => {
                return Err(ArrowError::SchemaError(format!("unexpected type {other}")).into());
            }
        }
        if matches!(array.data_type(), DataType::Utf8 | DataType::Map(..)) {
            *last = Some(array.slice(array.len() - 1, 1));
        }
        Ok(())
    }
}

/// Row numbers of nulls, as u64 LE.
fn nulls(array: &dyn Array, first: u64, lane: &mut Lane) {
    if array.null_count() == 0 {
        return;
    }
    for i in (0..array.len()).filter(|&i| array.is_null(i)) {
        lane.write(&(first + i as u64).to_le_bytes());
    }
}

/// Whether `n` strings of `a` from `i` equal `n` strings of `b` from `j` (values and nulls).
fn same_strings(a: &StringArray, i: usize, b: &StringArray, j: usize, n: usize) -> bool {
    let (ao, bo) = (a.value_offsets(), b.value_offsets());
    let (a0, a1, b0, b1) = (ao[i], ao[i + n], bo[j], bo[j + n]);
    if a1 - a0 != b1 - b0 {
        return false;
    }
    if (a.null_count() > 0 || b.null_count() > 0)
        && (0..n).any(|k| a.is_null(i + k) != b.is_null(j + k))
    {
        return false;
    }
    (1..n).all(|k| ao[i + k] - a0 == bo[j + k] - b0)
        && a.values()[a0 as usize..a1 as usize] == b.values()[b0 as usize..b1 as usize]
}

/// A string column: its nulls, then a length per row — with `repeats`, [`REPEAT`] for a value
/// of [`MIN_REPEAT`] bytes or more equal to the previous row's (`previous` is the row before the
/// first) — and the bytes of every value not repeated.
fn strings(
    array: &StringArray,
    repeats: bool,
    previous: Option<&StringArray>,
    first: u64,
    lanes: &mut [Lane],
) {
    nulls(array, first, &mut lanes[0]);
    let offsets = array.value_offsets();
    let values = array.values().as_slice();
    let [_, lengths, bytes] = lanes else {
        unreachable!("a string column has three lanes")
    };
    if !repeats {
        for w in offsets.windows(2) {
            lengths.write(&((w[1] - w[0]) as u32).to_le_bytes());
        }
        bytes.write(&values[offsets[0] as usize..offsets[array.len()] as usize]);
        return;
    }
    // Bytes of consecutive values not repeated are contiguous: written a run at a time.
    let mut run = offsets[0] as usize;
    for i in 0..array.len() {
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let repeat = end - start >= MIN_REPEAT
            && match i {
                0 => previous.is_some_and(|p| same_strings(p, 0, array, 0, 1)),
                _ => {
                    offsets[i] - offsets[i - 1] == (end - start) as i32
                        && values[offsets[i - 1] as usize..start] == values[start..end]
                }
            };
        if repeat {
            lengths.write(&REPEAT.to_le_bytes());
            bytes.write(&values[run..start]);
            run = end;
        } else {
            lengths.write(&((end - start) as u32).to_le_bytes());
        }
    }
    bytes.write(&values[run..offsets[array.len()] as usize]);
}

/// A map column: its nulls, an entry count per row — [`REPEAT`] for a map of [`MIN_REPEAT`]
/// bytes or more (keys and values) equal to the previous row's — and the keys and values of every map not repeated, as two string
/// columns whose entries are numbered from the column's first hashed entry. Returns the number
/// of entries hashed so far.
fn map(
    array: &MapArray,
    previous: Option<&MapArray>,
    first: u64,
    mut entries: u64,
    lanes: &mut [Lane],
) -> u64 {
    nulls(array, first, &mut lanes[0]);
    let offsets = array.value_offsets();
    let keys = array.keys().as_string::<i32>();
    let values = array.values().as_string::<i32>();
    // Whether the map before row `j` (`a`'s row `i`: the previous batch's last) equals row `j`.
    let same =
        |(a, a_keys, a_values): (&MapArray, &StringArray, &StringArray), i: usize, j: usize| {
            let (ao, n) = (a.value_offsets(), (offsets[j + 1] - offsets[j]) as usize);
            let (ai, bj) = (ao[i] as usize, offsets[j] as usize);
            (ao[i + 1] - ao[i]) as usize == n
                && same_strings(a_keys, ai, keys, bj, n)
                && same_strings(a_values, ai, values, bj, n)
        };
    let (key_offsets, value_offsets) = (keys.value_offsets(), values.value_offsets());
    let bytes = |start: usize, end: usize| {
        (key_offsets[end] - key_offsets[start] + value_offsets[end] - value_offsets[start]) as usize
    };
    let mut hash_entries = |lanes: &mut [Lane], start: usize, end: usize| {
        if end > start {
            // Entries are not compared with the entry before: a run may start anywhere.
            let n = end - start;
            strings(
                &keys.slice(start, n),
                false,
                None,
                entries,
                &mut lanes[2..5],
            );
            strings(
                &values.slice(start, n),
                false,
                None,
                entries,
                &mut lanes[5..8],
            );
            entries += n as u64;
        }
    };
    let mut run = offsets[0] as usize;
    for i in 0..array.len() {
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let repeat = end > start
            && bytes(start, end) >= MIN_REPEAT
            && match i {
                0 => previous
                    .is_some_and(|p| same((p, p.keys().as_string(), p.values().as_string()), 0, 0)),
                _ => same((array, keys, values), i - 1, i),
            };
        if repeat {
            lanes[1].write(&REPEAT.to_le_bytes());
            hash_entries(lanes, run, start);
            run = end;
        } else {
            lanes[1].write(&((end - start) as u32).to_le_bytes());
        }
    }
    hash_entries(lanes, run, offsets[array.len()] as usize);
    entries
}

/// Fixed-width values, little-endian, a null's slot as zeros.
fn fixed(bytes: &[u8], array: &dyn Array, width: usize, first: u64, lanes: &mut [Lane]) {
    nulls(array, first, &mut lanes[0]);
    if array.null_count() == 0 {
        lanes[1].write(bytes);
        return;
    }
    let zeros = [0u8; 8];
    let mut run = 0;
    for i in (0..array.len()).filter(|&i| array.is_null(i)) {
        lanes[1].write(&bytes[run * width..i * width]);
        lanes[1].write(&zeros[..width]);
        run = i + 1;
    }
    lanes[1].write(&bytes[run * width..]);
}

fn times(batch: &RecordBatch) -> Result<&[i64], RowsDigestError> {
    batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .map(|a| a.values().as_ref())
        .ok_or_else(|| ArrowError::SchemaError("no timestamp(ns) column".into()).into())
}

/// Types equal up to the names of nested fields (a map's entries, keys and values).
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Map(fa, _), DataType::Map(fb, _)) => match (fa.data_type(), fb.data_type()) {
            (DataType::Struct(ca), DataType::Struct(cb)) => {
                ca.len() == 2
                    && cb.len() == 2
                    && ca
                        .iter()
                        .zip(cb.iter())
                        .all(|(x, y)| same_type(x.data_type(), y.data_type()))
            }
            _ => false,
        },
        (DataType::Timestamp(ua, _), DataType::Timestamp(ub, _)) => ua == ub,
        _ => a == b,
    }
}

/// The table's schema with the batch's own field types (for nested names that differ).
fn relaxed_schema(schema: &SchemaRef, batch: &RecordBatch) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).expect("checked by conform");
            Arc::new(
                f.as_ref()
                    .clone()
                    .with_data_type(column.data_type().clone())
                    .with_nullable(true),
            )
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

fn batch_columns(schema: &SchemaRef, batch: &RecordBatch) -> Vec<ArrayRef> {
    schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .expect("checked by conform")
                .clone()
        })
        .collect()
}

#[cfg(test)]
mod tests;
