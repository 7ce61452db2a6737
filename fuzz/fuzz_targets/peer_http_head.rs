#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = peer::phonebook::http_client::parse_head(data) {
        assert!(h.len <= data.len());
        assert!(h.content_length <= peer::phonebook::http_client::MAX_BODY);
    }
});
