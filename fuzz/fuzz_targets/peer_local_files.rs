#![no_main]
use libfuzzer_sys::fuzz_target;

// The two local file formats: the pin store and the identity key file.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = peer::PinStore::from_text(text);
        let _ = peer::Identity::from_file_text(text);
    }
});
