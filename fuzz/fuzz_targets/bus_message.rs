//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none bus_message` (in `fuzz/`).
//! Any bytes as a message between phone-book instances (pi-server's `bus::codec`, what Redis
//! pub/sub carries): a message or a typed error, never a panic; what decodes encodes back to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::bus::codec::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok((from, m)) = Message::decode(data) {
        assert_eq!(m.encode(from), data);
    }
});
