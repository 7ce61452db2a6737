//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none json_body` (in `fuzz/`).
//! Any bytes as every JSON body the protocol reads: an error or a value, never a panic or a
//! hang; whatever parses re-serialises to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonebook_proto::json::{Limits, parse, to_string};
use phonebook_proto::*;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = parse(data, Limits::default()) {
        assert_eq!(parse(to_string(&v).as_bytes(), Limits::default()).ok(), Some(v));
    }
    if let Ok(r) = Register::from_json(data) {
        let _ = r.verify();
        // A salt exactly on friends-only registrations (docs/PROTOCOL.md "Signed messages").
        assert_eq!(r.friends_salt.is_some(), r.visibility == Visibility::Friends);
        assert_eq!(Register::from_json(r.to_json().as_bytes()).ok(), Some(r));
    }
    let _ = Unregister::from_json(data);
    let _ = BatchLookup::from_json(data);
    let _ = LookupRecord::from_json(data);
    let _ = BatchAnswer::from_json(data);
    let _ = RegisterAnswer::from_json(data);
    let _ = Health::from_json(data);
    let _ = ErrorBody::from_json(data);
});
