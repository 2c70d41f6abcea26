//! The payload of a write-ahead log record: one Arrow record batch as an Arrow IPC stream.
//!
//! IPC is Arrow's own serialisation: cheap to write (buffers are copied as they are) and
//! self-describing, so a record can be replayed into the table's schema after a restart.

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

/// Serialises `batch` (appending to `out`).
pub fn encode_batch(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let mut writer = StreamWriter::try_new(out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()
}

/// Reads back what [`encode_batch`] wrote: every batch in the stream.
pub fn decode_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    StreamReader::try_new(bytes, None)?.collect()
}
