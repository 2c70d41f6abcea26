//! Naming the damaged file when a query fails reading the store.
//!
//! DataFusion's Parquet errors do not say which file they come from ("Corrupt footer"); a query
//! that fails reading names the first of its files that is not what its entry in the tenant's
//! log says: a size that differs, a footer that cannot be read, bytes whose SHA-256 differs.
//! Only on that error path; `tenantscope verify` checks every file.
//!
//! A panic while planning or reading (parquet 59's footer decoder subtracts past zero on a
//! footer announcing more metadata than the file holds) is such an error too, not the end of
//! the query's task.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{FutureExt as _, StreamExt as _};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::log::entry::FileEntry;

/// The files a query reads: where each is and what its entry says.
pub(super) type ScopeFiles = Arc<Vec<(PathBuf, FileEntry)>>;

/// Starts a planned query (`start`), a panic being an error; errors name the damaged file.
pub(super) async fn start_guarded(
    start: impl Future<Output = Result<SendableRecordBatchStream, DataFusionError>>,
    files: ScopeFiles,
) -> Result<SendableRecordBatchStream, DataFusionError> {
    let started = std::panic::AssertUnwindSafe(start)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panicked(panic)));
    match started {
        Ok(stream) => Ok(naming_damage(stream, files)),
        Err(e) => Err(name_damaged(&files, e)),
    }
}

/// `stream` with each error from reading the store naming the damaged file; a panic while it
/// is polled is such an error, and its last item.
fn naming_damage(
    stream: SendableRecordBatchStream,
    files: ScopeFiles,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let named = std::panic::AssertUnwindSafe(stream)
        .catch_unwind()
        .map(move |item| {
            item.unwrap_or_else(|panic| Err(panicked(panic)))
                .map_err(|e| name_damaged(&files, e))
        });
    Box::pin(RecordBatchStreamAdapter::new(schema, named))
}

fn panicked(panic: Box<dyn std::any::Any + Send>) -> DataFusionError {
    let what = crate::panic_message(panic.as_ref());
    DataFusionError::External(format!("the query engine panicked: {what}").into())
}

/// `error`, with the first damaged file of `files` named when the error is one of reading.
pub(super) fn name_damaged(
    files: &[(PathBuf, FileEntry)],
    error: DataFusionError,
) -> DataFusionError {
    let reading = matches!(
        error.find_root(),
        DataFusionError::ParquetError(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::IoError(_)
            | DataFusionError::External(_)
            | DataFusionError::ObjectStore(_)
    );
    let Some((path, why)) = reading.then(|| first_damaged(files)).flatten() else {
        return error;
    };
    DataFusionError::Execution(format!(
        "{}; the damaged file is {} ({why}; `tenantscope verify` checks every file)",
        error.strip_backtrace(),
        path.display()
    ))
}

fn first_damaged(files: &[(PathBuf, FileEntry)]) -> Option<(PathBuf, String)> {
    files
        .iter()
        .find_map(|(path, entry)| damage(path, entry).map(|why| (path.clone(), why)))
}

/// What is wrong with one file, if anything, cheapest check first.
fn damage(path: &std::path::Path, entry: &FileEntry) -> Option<String> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if size != entry.bytes {
        return Some(format!("{size} bytes, its entry says {}", entry.bytes));
    }
    let footer = std::panic::catch_unwind(|| {
        std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string()))
            .map(drop)
    });
    match footer {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Some(format!("its footer cannot be read: {e}")),
        Err(_) => return Some("its footer cannot be read".into()),
    }
    match crate::log::sha256_file(path) {
        Ok((sha256, _)) if sha256 != entry.sha256 => {
            Some(format!("SHA-256 {sha256}, its entry says {}", entry.sha256))
        }
        Ok(_) => None,
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}
