#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::transfer::wire::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(r.encode(), data);
    }
});
