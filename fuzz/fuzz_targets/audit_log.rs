#![no_main]
//! A tenant's audit log, checkpoints and a trusted checkpoint of arbitrary bytes, read and
//! verified (`tenantscope_fuzz::store::audit_log`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::store::audit_log(data);
});
