//! Output formats of query results: `table`, `json` (JSON Lines), `csv`, `parquet` and `arrow`
//! (the Arrow IPC stream format).
//!
//! Shared by the CLI and the HTTP query API, so a result looks the same whichever way it
//! was asked for. All but `table` stream batch by batch; `table` needs every row to size its
//! columns.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, MapArray, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

pub use super::OutputFormat;
use super::QueryError;

/// Writes every batch of `stream` to `out` in `format`; returns the number of rows written.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: W,
) -> Result<usize, QueryError> {
    let schema = stream.schema();
    let mut rows = 0;
    match format {
        OutputFormat::Table => rows = write_table(&mut stream, out).await?,
        OutputFormat::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                writer.write(&batch).map_err(arrow_err)?;
            }
            writer.finish().map_err(arrow_err)?;
            writer.into_inner().flush()?;
        }
        OutputFormat::Csv => rows = write_csv(&mut stream, out).await?,
        OutputFormat::Arrow => {
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(out, &schema).map_err(arrow_err)?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                writer.write(&batch).map_err(arrow_err)?;
            }
            writer.finish().map_err(arrow_err)?;
            writer.into_inner().map_err(arrow_err)?.flush()?;
        }
        OutputFormat::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema, None)
                .map_err(|e| QueryError::Execution(e.into()))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                writer
                    .write(&batch)
                    .map_err(|e| QueryError::Execution(e.into()))?;
            }
            writer
                .into_inner()
                .map_err(|e| QueryError::Execution(e.into()))?
                .flush()?;
        }
    }
    Ok(rows)
}

/// Writes every batch of `stream` as one pretty-printed table (held in memory to size the
/// columns); returns the number of rows.
async fn write_table<W: Write + Send>(
    stream: &mut SendableRecordBatchStream,
    mut out: W,
) -> Result<usize, QueryError> {
    let mut rows = 0;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        batches.push(batch);
    }
    let table = arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(|e| QueryError::Execution(e.into()))?;
    writeln!(out, "{table}")?;
    out.flush()?;
    Ok(rows)
}

/// Writes every batch of `stream` as CSV with a header (maps flattened to text); returns the
/// number of rows.
async fn write_csv<W: Write + Send>(
    stream: &mut SendableRecordBatchStream,
    out: W,
) -> Result<usize, QueryError> {
    let schema = stream.schema();
    let mut rows = 0;
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(out);
    let mut wrote_header = false;
    while let Some(batch) = stream.next().await {
        let batch = flatten_for_csv(&batch?)?;
        rows += batch.num_rows();
        writer.write(&batch).map_err(arrow_err)?;
        wrote_header = true;
    }
    if !wrote_header {
        // arrow's writer prints the header with the first batch; an empty result still
        // gets one so that a consumer sees the columns.
        let empty = flatten_for_csv(&RecordBatch::new_empty(schema))?;
        writer.write(&empty).map_err(arrow_err)?;
    }
    writer.into_inner().flush()?;
    Ok(rows)
}

/// An Arrow error as a query error.
fn arrow_err(e: arrow::error::ArrowError) -> QueryError {
    QueryError::Execution(e.into())
}

/// CSV holds only flat values: maps become JSON objects, other nested values their display text.
fn flatten_for_csv(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let text = match column.as_any().downcast_ref::<MapArray>() {
            Some(map) => map_to_json(map),
            None => display_text(column)?,
        };
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)
}

/// Renders `MAP<string, string>` rows as JSON objects (`{"k":"v"}`).
pub fn map_to_json(map: &MapArray) -> StringArray {
    let keys = map.keys().as_any().downcast_ref::<StringArray>();
    let values = map.values().as_any().downcast_ref::<StringArray>();
    let (Some(keys), Some(values)) = (keys, values) else {
        return display_text(&(Arc::new(map.clone()) as ArrayRef))
            .unwrap_or_else(|_| StringArray::new_null(map.len()));
    };
    let offsets = map.value_offsets();
    let mut out = StringBuilder::new();
    for row in 0..map.len() {
        if map.is_null(row) {
            out.append_null();
            continue;
        }
        let mut object = serde_json::Map::new();
        for i in offsets[row] as usize..offsets[row + 1] as usize {
            let value = if values.is_null(i) {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(values.value(i).to_owned())
            };
            object.insert(keys.value(i).to_owned(), value);
        }
        out.append_value(serde_json::Value::Object(object).to_string());
    }
    out.finish()
}

fn display_text(column: &ArrayRef) -> Result<StringArray, QueryError> {
    let formatter =
        ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()).map_err(arrow_err)?;
    let mut out = StringBuilder::new();
    for row in 0..column.len() {
        if column.is_null(row) {
            out.append_null();
        } else {
            out.append_value(formatter.value(row).to_string());
        }
    }
    Ok(out.finish())
}
