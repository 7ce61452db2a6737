#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::transfer::wire::{RecordHeader, Status};

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = <[u8; 5]>::try_from(data) {
        if let Ok(h) = RecordHeader::decode(&bytes) {
            assert_eq!(h.encode(), bytes);
        }
    }
    if let Some(&b) = data.first() {
        let _ = Status::from_u8(b);
    }
});
