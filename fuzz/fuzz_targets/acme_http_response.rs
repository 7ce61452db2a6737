#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for eof in [false, true] {
        if let Ok(Some(r)) = pi_server::acme::parse_response(data, eof) {
            assert!(r.body.len() <= data.len());
        }
    }
});
