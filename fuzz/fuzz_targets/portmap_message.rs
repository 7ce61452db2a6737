//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none portmap_message` (in `fuzz/`).
//! Any datagram as a PCP or NAT-PMP message, request or response: a value or a typed error,
//! never a panic; what decodes encodes to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer::net::portmap::{natpmp, pcp};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = pcp::Response::decode(data) {
        assert_eq!(pcp::Response::decode(&r.encode()), Ok(r));
    }
    if let Ok(r) = pcp::Request::decode(data) {
        assert_eq!(pcp::Request::decode(&r.encode()), Ok(r));
    }
    if let Ok(r) = natpmp::Response::decode(data) {
        assert_eq!(r.encode(), data);
    }
    if let Ok(r) = natpmp::Request::decode(data) {
        assert_eq!(natpmp::Request::decode(&r.encode()), Ok(r));
    }
});
