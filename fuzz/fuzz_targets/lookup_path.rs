//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none lookup_path` (in `fuzz/`).
//! Any bytes as the `{name}` path segment: a valid name or an error; valid names re-encode to
//! a segment that decodes to the same name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonebook_proto::name::{decode_path_name, encode_path_name};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = decode_path_name(data) {
        let again = decode_path_name(encode_path_name(&n).as_bytes()).unwrap();
        assert_eq!(again.as_str(), n.as_str());
    }
});
