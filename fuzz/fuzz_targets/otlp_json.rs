#![no_main]
//! OTLP/JSON logs, traces and metrics requests, through the same path as `otlp_protobuf`
//! (`tenantscope_fuzz::otlp`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::otlp(data, tenantscope_fuzz::Encoding::Json);
});
