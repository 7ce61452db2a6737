#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data);
        for i in 0..m.chunk_count().min(4) {
            let (_, len) = m.chunk_range(i);
            let _ = m.verify_chunk(i, &vec![0u8; len]);
        }
    }
});
