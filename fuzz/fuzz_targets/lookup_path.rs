//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none lookup_path` (in `fuzz/`).
//! Any bytes as the `{id or name}` path segment: a valid lookup id, a valid name, or an error;
//! valid ids and names re-encode to a segment that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonebook_proto::LookupId;
use phonebook_proto::name::{decode_path_name, encode_path_name};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = core::str::from_utf8(data)
        .ok()
        .and_then(|s| LookupId::parse(s).ok())
    {
        assert_eq!(LookupId::parse(&id.to_text()), Ok(id));
        assert_eq!(id.to_text().as_bytes(), data);
    }
    if let Ok(n) = decode_path_name(data) {
        let again = decode_path_name(encode_path_name(&n).as_bytes()).unwrap();
        assert_eq!(again.as_str(), n.as_str());
    }
});
