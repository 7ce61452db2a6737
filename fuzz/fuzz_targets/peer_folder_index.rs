#![no_main]
use libfuzzer_sys::fuzz_target;

// The folder store's hash index file (peer/src/storage/folder_index.rs); the second call puts
// the input behind a valid header and checksum so the fuzzer reaches the fields.
fuzz_target!(|data: &[u8]| {
    let _ = peer::storage::folder_index::decode(data);
    let mut framed = peer::storage::folder_index::MAGIC.to_vec();
    framed.push(peer::storage::folder_index::VERSION);
    framed.extend_from_slice(data);
    let sum = ring::digest::digest(&ring::digest::SHA256, &framed);
    framed.extend_from_slice(sum.as_ref());
    let _ = peer::storage::folder_index::decode(&framed);
});
