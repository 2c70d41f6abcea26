//! The writer's files, read back with the Parquet reader.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::test_support::{BASE, DAY, batch};

/// `(timestamp, body)` of every row of a Parquet file, in file order.
fn rows_of(path: &Path) -> Vec<(i64, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let times = timestamps(&batch).unwrap();
        let bodies = batch
            .column_by_name("body")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        rows.extend((0..batch.num_rows()).map(|i| (times.value(i), bodies.value(i).to_owned())));
    }
    rows
}

/// Every file under `dir`, hidden or not.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Midnight (UTC) of the day of `BASE`.
fn first_day() -> i64 {
    BASE.div_euclid(DAY) * DAY
}

/// 300 rows over a day and a half from 12:00: 100 on the first day, 200 on the second.
fn two_days() -> Vec<(i64, String)> {
    (0..300)
        .map(|i| (first_day() + DAY / 2 + i * (DAY / 200), format!("row {i}")))
        .collect()
}

#[test]
fn sorted_writer_writes_the_files_write_batches_writes() {
    let tenant = TenantId::parse("acme").unwrap();
    let options = WriterOptions::default();
    let rows = two_days();
    // Three batches in time order; the second crosses midnight.
    let batches: Vec<RecordBatch> = [0..80, 80..250, 250..300]
        .into_iter()
        .map(|range| batch(Table::Logs, "acme", &rows[range]))
        .collect();

    let streamed_dir = tempfile::tempdir().unwrap();
    let streamed_layout = Layout::new(streamed_dir.path());
    let mut writer = SortedWriter::new(&streamed_layout, &tenant, Table::Logs, &options);
    for b in &batches {
        writer.write(b).unwrap();
    }
    let streamed = writer.finish().unwrap();

    let gathered_dir = tempfile::tempdir().unwrap();
    let gathered_layout = Layout::new(gathered_dir.path());
    let gathered =
        write_batches(&gathered_layout, &tenant, Table::Logs, &batches, &options).unwrap();

    assert_eq!(streamed.len(), 2, "one file per day");
    assert_eq!(gathered.len(), 2);
    let midnight = first_day() + DAY;
    for (s, g) in streamed.iter().zip(&gathered) {
        assert_eq!(
            (s.rows, s.min_timestamp, s.max_timestamp),
            (g.rows, g.min_timestamp, g.max_timestamp)
        );
        assert_eq!(rows_of(&s.path), rows_of(&g.path));
        assert_eq!(s.bytes, std::fs::metadata(&s.path).unwrap().len());
        // The date partition is the rows' day.
        let partition = s.path.parent().unwrap().file_name().unwrap();
        let date = date_of(day_of(s.min_timestamp)).unwrap();
        assert_eq!(partition.to_string_lossy(), format!("date={date}"));
    }
    assert_eq!(streamed[0].rows, 100);
    assert!(streamed[0].max_timestamp < midnight && streamed[1].min_timestamp >= midnight);
    assert_eq!(
        [rows_of(&streamed[0].path), rows_of(&streamed[1].path)].concat(),
        rows
    );
    // Nothing else is left in the directory: no temporary file.
    assert_eq!(files_under(streamed_dir.path()).len(), 2);
}

#[test]
fn sorted_writer_refuses_rows_out_of_order_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let options = WriterOptions::default();
    let rows = two_days();

    // A batch that starts before the last row written.
    let mut writer = SortedWriter::new(&layout, &tenant, Table::Logs, &options);
    writer
        .write(&batch(Table::Logs, "acme", &rows[..150]))
        .unwrap();
    let late = writer.write(&batch(Table::Logs, "acme", &rows[140..200]));
    assert!(matches!(
        late,
        Err(WriteError::OutOfOrder { table: "logs" })
    ));
    drop(writer);
    assert_eq!(
        files_under(dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "the first day's finished file and the open one are both removed"
    );

    // A batch whose own rows are not in order.
    let mut shuffled = rows[..10].to_vec();
    shuffled.swap(3, 4);
    let mut writer = SortedWriter::new(&layout, &tenant, Table::Logs, &options);
    let unsorted = writer.write(&batch(Table::Logs, "acme", &shuffled));
    assert!(matches!(unsorted, Err(WriteError::OutOfOrder { .. })));
    assert!(writer.finish().unwrap().is_empty());

    // A batch of another table's schema.
    let mut writer = SortedWriter::new(&layout, &tenant, Table::Logs, &options);
    let spans = writer.write(&batch(Table::Spans, "acme", &rows[..10]));
    assert!(matches!(spans, Err(WriteError::Schema { .. })));
    assert!(writer.finish().unwrap().is_empty());
    assert!(files_under(dir.path()).is_empty());
}

#[test]
fn sorted_writer_without_rows_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let tenant = TenantId::parse("acme").unwrap();
    let options = WriterOptions::default();
    let mut writer = SortedWriter::new(&layout, &tenant, Table::Events, &options);
    writer.write(&batch(Table::Events, "acme", &[])).unwrap();
    assert!(writer.finish().unwrap().is_empty());
    assert!(files_under(dir.path()).is_empty());
}

/// The `trace_id` bloom filter of a file's first row group.
fn trace_id_filter(path: &Path) -> parquet::bloom_filter::Sbbf {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(File::open(path).unwrap(), options).unwrap();
    let row_group = reader.get_row_group(0).unwrap();
    let column = row_group
        .metadata()
        .columns()
        .iter()
        .position(|c| c.column_path().string() == "trace_id")
        .unwrap();
    row_group
        .get_column_bloom_filter(column)
        .expect("a trace_id bloom filter")
        .clone()
}

#[test]
fn trace_id_bloom_filters_hold_every_id_however_many_rows_were_expected() {
    let tenant = TenantId::parse("acme").unwrap();
    let options = WriterOptions::default();
    let rows: Vec<(i64, String)> = (0..2_000).map(|i| (BASE + i, format!("row {i}"))).collect();
    let ids: Vec<String> = (0..4_000u64)
        .map(|i| format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let (written, absent) = ids.split_at(rows.len());
    let mut batch = batch(Table::Logs, "acme", &rows);
    let column = batch.schema().index_of("trace_id").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[column] = Arc::new(StringArray::from_iter_values(written));
    batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
    // As many rows as expected, far fewer (the filter is then too small), and no hint (sized for
    // a row group of a million rows).
    for expected in [Some(2_000), Some(10), None] {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut writer = SortedWriter::new(&layout, &tenant, Table::Logs, &options);
        if let Some(rows) = expected {
            writer = writer.expecting_rows(rows);
        }
        writer.write(&batch).unwrap();
        let files = writer.finish().unwrap();
        let filter = trace_id_filter(&files[0].path);
        assert!(
            written.iter().all(|id| filter.check(id.as_str())),
            "no false negatives, expecting {expected:?} rows"
        );
        let false_positives = absent.iter().filter(|id| filter.check(id.as_str())).count();
        if expected != Some(10) {
            // The target rate is 5 %: about 100 of 2,000.
            assert!(
                false_positives < 200,
                "{false_positives} false positives, expecting {expected:?} rows"
            );
        }
    }
}
