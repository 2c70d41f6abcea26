#![no_main]
//! A Parquet file under the store, read for its rows digest as `verify` does
//! (`tenantscope_fuzz::store::parquet_file`). The Parquet reader's panics on some damaged files
//! are caught there and reported as an error naming the file; only a panic that escapes counts
//! (see `tenantscope_fuzz::init`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::store::parquet_file(data);
});
