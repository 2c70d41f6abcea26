use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::take_record_batch;

use super::*;
use crate::test_support::{BASE, batch};

fn digest(table: Table, batches: &[RecordBatch]) -> String {
    let mut hasher = RowsHasher::new(table);
    for b in batches {
        hasher.update(b).unwrap();
    }
    hasher.finish().unwrap()
}

fn rows(n: usize, ties: i64) -> Vec<(i64, String)> {
    // `ties` rows share each timestamp.
    (0..n)
        .map(|i| (BASE + i as i64 / ties, format!("row {i}")))
        .collect()
}

#[test]
fn the_digest_does_not_depend_on_batch_boundaries_or_tie_order() {
    let all = batch(Table::Logs, "acme", &rows(1000, 7));
    let whole = digest(Table::Logs, std::slice::from_ref(&all));
    assert!(whole.starts_with(PREFIX) && whole.len() == PREFIX.len() + 64);
    // Split at every size, including inside tie runs.
    for size in [1, 2, 3, 6, 7, 8, 100, 999] {
        let parts: Vec<_> = (0..all.num_rows())
            .step_by(size)
            .map(|s| all.slice(s, size.min(all.num_rows() - s)))
            .collect();
        assert_eq!(digest(Table::Logs, &parts), whole, "split by {size}");
    }
    // Rows of one timestamp in reverse order: the same set.
    let reversed: Vec<u32> = (0..1000u32)
        .collect::<Vec<_>>()
        .chunks(7)
        .flat_map(|c| c.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let shuffled = take_record_batch(&all, &arrow::array::UInt32Array::from(reversed)).unwrap();
    assert_eq!(
        digest(
            Table::Logs,
            &[shuffled.slice(0, 500), shuffled.slice(500, 500)]
        ),
        whole
    );
}

#[test]
fn any_changed_added_or_removed_row_changes_the_digest() {
    let base_rows = rows(50, 3);
    let whole = digest(Table::Events, &[batch(Table::Events, "acme", &base_rows)]);
    let mut changed = base_rows.clone();
    changed[17].1.push('!');
    let mut removed = base_rows.clone();
    removed.remove(30);
    let mut added = base_rows.clone();
    added.push((base_rows[49].0, "row 49".into())); // a duplicate row is another multiset
    let mut moved = base_rows.clone();
    moved[10].0 += 1;
    for (what, rows) in [
        ("changed", changed),
        ("removed", removed),
        ("added", added),
        ("moved in time", moved),
    ] {
        let mut rows = rows;
        rows.sort_by_key(|r| r.0);
        assert_ne!(
            digest(Table::Events, &[batch(Table::Events, "acme", &rows)]),
            whole,
            "{what}"
        );
    }
    // Another tenant's value in one column, or another table, differs too.
    assert_ne!(
        digest(Table::Events, &[batch(Table::Events, "globex", &base_rows)]),
        whole
    );
    assert_ne!(
        digest(Table::Logs, &[batch(Table::Events, "acme", &base_rows)]),
        whole
    );
}

#[test]
fn nulls_and_empty_strings_are_told_apart() {
    let b = batch(Table::Logs, "acme", &rows(4, 1));
    let body = b.schema().index_of("body").unwrap();
    let with = |values: Vec<Option<&str>>| {
        let mut columns = b.columns().to_vec();
        columns[body] = std::sync::Arc::new(StringArray::from(values));
        RecordBatch::try_new(b.schema(), columns).unwrap()
    };
    let a = digest(Table::Logs, &[with(vec![Some(""), None, Some("x"), None])]);
    let c = digest(Table::Logs, &[with(vec![None, Some(""), Some("x"), None])]);
    let d = digest(
        Table::Logs,
        &[with(vec![Some(""), Some(""), Some("x"), None])],
    );
    assert_ne!(a, c);
    assert_ne!(a, d);
    assert!(with(vec![None, None, None, None]).column(body).null_count() == 4);
}

#[test]
fn rows_out_of_time_order_are_refused() {
    let mut r = rows(10, 1);
    r.swap(2, 5);
    let mut hasher = RowsHasher::new(Table::Logs);
    let err = hasher.update(&batch(Table::Logs, "acme", &r)).unwrap_err();
    assert!(matches!(err, RowsDigestError::OutOfOrder { .. }), "{err}");
    let all = batch(Table::Logs, "acme", &rows(10, 1));
    let mut hasher = RowsHasher::new(Table::Logs);
    hasher.update(&all.slice(5, 5)).unwrap();
    assert!(hasher.update(&all.slice(0, 5)).is_err());
}

/// Rows with runs of repeated bodies and maps (some values null, some maps empty), one row per
/// timestamp. (The tables' map columns are not nullable.)
/// A map row: its entries, a value `None` for null.
type MapRow<'a> = Option<Vec<(&'a str, Option<&'a str>)>>;

fn repeating(bodies: &[Option<&str>], maps: &[MapRow]) -> RecordBatch {
    let n = bodies.len();
    let b = batch(Table::Logs, "acme", &rows(n, 1));
    let mut columns = b.columns().to_vec();
    columns[b.schema().index_of("body").unwrap()] =
        std::sync::Arc::new(StringArray::from(bodies.to_vec()));
    let mut m = crate::schema::string_map_builder();
    for row in maps {
        match row {
            Some(entries) => {
                for (k, v) in entries {
                    m.keys().append_value(k);
                    m.values().append_option(*v);
                }
                m.append(true).unwrap();
            }
            None => m.append(false).unwrap(),
        }
    }
    columns[b.schema().index_of("attributes").unwrap()] = std::sync::Arc::new(m.finish());
    RecordBatch::try_new(b.schema(), columns).unwrap()
}

#[test]
fn repeated_values_are_digested_as_repeats_whatever_the_batches() {
    // Long values (repeats are marked from 32 bytes on) and short ones (always hashed).
    let (la, lb) = ("a".repeat(40), "b".repeat(32));
    let (la, lb) = (la.as_str(), lb.as_str());
    let a = Some(vec![("k", Some(la)), ("x", None)]);
    let b = Some(vec![("k", Some(lb))]);
    let bodies = [
        Some(la),
        Some(la),
        Some(""),
        Some(""),
        None,
        Some(la),
        Some(la),
        Some(la),
        Some(lb),
        None,
        Some("c"),
        Some("c"),
        Some(lb),
    ];
    let maps = [
        a.clone(),
        a.clone(),
        a.clone(),
        Some(vec![]),
        Some(vec![]),
        a.clone(),
        a.clone(),
        b.clone(),
        b.clone(),
        a.clone(),
        Some(vec![("k", None)]),
        Some(vec![("k", None)]),
        a.clone(),
    ];
    let all = repeating(&bodies, &maps);
    let whole = digest(Table::Logs, std::slice::from_ref(&all));
    for size in 1..all.num_rows() {
        let parts: Vec<_> = (0..all.num_rows())
            .step_by(size)
            .map(|s| all.slice(s, size.min(all.num_rows() - s)))
            .collect();
        assert_eq!(digest(Table::Logs, &parts), whole, "split by {size}");
    }
    // Any one row changed — a repeat broken, or a value made a repeat — changes the digest.
    let mut seen = std::collections::HashSet::from([whole.clone()]);
    for i in 0..bodies.len() {
        for body in [Some(la), Some(lb), Some("c"), Some(""), None] {
            if body == bodies[i] {
                continue;
            }
            let mut changed = bodies;
            changed[i] = body;
            let d = digest(Table::Logs, &[repeating(&changed, &maps)]);
            assert!(seen.insert(d), "body of row {i} made {body:?}");
        }
        for map in [a.clone(), b.clone(), Some(vec![]), Some(vec![("k", None)])] {
            if map == maps[i] {
                continue;
            }
            let mut changed = maps.clone();
            changed[i] = map.clone();
            let d = digest(Table::Logs, &[repeating(&bodies, &changed)]);
            assert!(seen.insert(d), "map of row {i} made {map:?}");
        }
    }
}
