#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(v) = pi_server::tls::validity(data) {
        // Times come from at most 15 digits: far inside i64.
        assert!(v.not_before.abs() < 1 << 50 && v.not_after.abs() < 1 << 50);
    }
});
