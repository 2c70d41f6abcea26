#![no_main]
//! OTLP protobuf logs, traces and metrics requests: decode (in place and salvaging), tenant
//! resolution, per-record checks, redaction, conversion, the write-ahead log records read back,
//! metric families under their budgets (`tenantscope_fuzz::otlp`).

libfuzzer_sys::fuzz_target!(init: tenantscope_fuzz::init(), |data: &[u8]| {
    tenantscope_fuzz::otlp(data, tenantscope_fuzz::Encoding::Protobuf);
});
