//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none snapshot_decode` (in `fuzz/`).
//! Any bytes: the reader must return an error or records, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::snapshot::SnapshotReader;

fuzz_target!(|data: &[u8]| {
    // Small enough that slot and count limits are hit, large enough for real records.
    let Ok((mut reader, _header)) = SnapshotReader::open(data, 4096) else {
        return;
    };
    while let Ok(Some(_record)) = reader.next_record() {}
});
