//! What the crate's tests share: one signing identity, a batch of any table, and the test clock.
//! Tests take their shared helpers from here, never from another module's tests.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array,
};
use arrow::datatypes::DataType;

use crate::Table;
use crate::log::Identity;
use crate::log::checkpoint::SigningKey;

/// The one signing key of every test of the crate (generating keys is slow in debug builds).
pub(crate) static KEY: LazyLock<Arc<SigningKey>> =
    LazyLock::new(|| Arc::new(SigningKey::generate("test/tenantscope").unwrap().0));

/// An identity with [`KEY`].
pub(crate) fn identity() -> Identity {
    Identity {
        instance: "test".into(),
        key: KEY.clone(),
    }
}

pub(crate) const DAY: i64 = 86_400_000_000_000;
pub(crate) const BASE: i64 = 1_795_000_000_000_000_000; // 2026-11-18

/// A batch of `table` whose `tenant_id`, `timestamp` and `body`/`name` columns are given and
/// every other column holds a neutral value.
pub(crate) fn batch(table: Table, tenant: &str, rows: &[(i64, String)]) -> RecordBatch {
    let schema = table.schema();
    let n = rows.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match (f.name().as_str(), f.data_type()) {
                ("tenant_id", _) => Arc::new(StringArray::from(vec![tenant; n])),
                ("body" | "name", _) => Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.clone()),
                )),
                (_, DataType::Timestamp(_, _)) => Arc::new(
                    TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                        .with_timezone("UTC"),
                ),
                (_, DataType::Utf8) => Arc::new(StringArray::from(vec![""; n])),
                (_, DataType::Int32) => Arc::new(Int32Array::from(vec![0; n])),
                (_, DataType::Int64) => Arc::new(Int64Array::from(vec![0; n])),
                (_, DataType::UInt32) => Arc::new(UInt32Array::from(vec![0; n])),
                (_, DataType::Map(_, _)) => {
                    let mut b = crate::schema::string_map_builder();
                    for _ in 0..n {
                        b.keys().append_value("k");
                        b.values().append_value(tenant);
                        b.append(true).unwrap();
                    }
                    Arc::new(b.finish())
                }
                (name, other) => panic!("no test value for {name}: {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}
