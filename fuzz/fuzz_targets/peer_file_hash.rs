#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::{FileHash, PeerId};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(h) = s.parse::<FileHash>() {
            assert!(h.to_string().eq_ignore_ascii_case(s));
        }
        if let Ok(k) = s.parse::<PeerId>() {
            assert_eq!(k.to_string(), s.trim());
        }
    }
});
