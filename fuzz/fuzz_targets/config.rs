#![no_main]
//! A configuration file, parsed, checked and its tenants built (`tenantscope_fuzz::config`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::config(data);
});
