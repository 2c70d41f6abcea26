//! The lanes of the rows digest (step 2 of the construction in [`super`]): how each column's
//! values, in canonical order, are split into BLAKE3 streams — null positions, fixed-width
//! values, string lengths and bytes, map entry counts, keys and values — with the repeat marker
//! for long values equal to the previous row's.
//!
//! This is the per-row hot path of every commit: it works on whole Arrow buffers and must not
//! allocate per row. It knows nothing of the canonical order; [`super::RowsHasher`] feeds it rows
//! already ordered.

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt32Type};
use arrow::error::ArrowError;

use super::RowsDigestError;

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
    /// Adds `bytes` to the stream.
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

    /// The hash of everything written so far.
    fn finalize(&self) -> blake3::Hash {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.gathered);
        hasher.finalize()
    }
}

/// The hash lanes of one column.
pub(super) struct ColumnLanes {
    lanes: Vec<Lane>,
    /// The previous row in canonical order (a one-row slice), for the repeat marker.
    last: Option<ArrayRef>,
    /// Map entries hashed so far (their numbering for the key and value null lanes).
    entries: u64,
}

impl ColumnLanes {
    /// Empty lanes for a column of `data_type`.
    pub(super) fn new(data_type: &DataType) -> Self {
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
    pub(super) fn update(&mut self, array: &ArrayRef, first: u64) -> Result<(), RowsDigestError> {
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

    /// The hash of each lane, in lane order.
    pub(super) fn lane_hashes(&self) -> impl Iterator<Item = blake3::Hash> + '_ {
        self.lanes.iter().map(Lane::finalize)
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
