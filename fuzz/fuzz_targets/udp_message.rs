//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none udp_message` (in `fuzz/`).
//! Any datagram as a phone-book UDP message, and any text as an address candidate: a value or
//! a typed error, never a panic; what decodes encodes back to the same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonebook_proto::candidate::Candidate;
use phonebook_proto::udp::{tag_ok, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.encode(&[0; 16]).len(), data.len());
    }
    let _ = tag_ok(&[1; 16], data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Candidate::parse(text) {
            assert_eq!(c.to_string(), text);
        }
    }
});
