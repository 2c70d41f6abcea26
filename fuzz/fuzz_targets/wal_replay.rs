#![no_main]
//! A write-ahead log segment of arbitrary bytes, replayed and read back
//! (`tenantscope_fuzz::store::wal_replay`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::store::wal_replay(data);
});
