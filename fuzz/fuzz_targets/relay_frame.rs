//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none relay_frame` (in `fuzz/`).
//! Any bytes as a stream of relay frames: each decodes to a frame, asks for more, or is a typed
//! error, never a panic; what decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonebook_proto::relay::{Frame, HEADER_LEN, MAX_BODY};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match Frame::decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEADER_LEN && used <= HEADER_LEN + MAX_BODY);
                let mut out = Vec::new();
                frame.encode(&mut out);
                assert_eq!(&out[..], &rest[..used]);
                rest = &rest[used..];
            }
            Ok(None) => {
                assert!(rest.len() < HEADER_LEN + MAX_BODY);
                break;
            }
            Err(_) => break,
        }
    }
});
