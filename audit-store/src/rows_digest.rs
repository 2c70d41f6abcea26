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
//!    unambiguously, so the encoding is injective. The lanes are written in `lanes`.
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

mod lanes;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampNanosecondArray};
use arrow::array::{DynComparator, make_comparator};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use std::cmp::Ordering;

use crate::Table;
use lanes::ColumnLanes;

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
            for lane in column.lane_hashes() {
                digest.update(lane.as_bytes());
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

/// The batch's `timestamp` values.
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

/// The batch's columns in the order of `schema`'s fields, found by name.
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
