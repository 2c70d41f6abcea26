#![no_main]
//! A `POST /api/v1/query` body (`tenantscope_fuzz::query_request`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::query_request(data);
});
