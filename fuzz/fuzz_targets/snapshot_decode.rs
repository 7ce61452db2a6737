//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none snapshot_decode` (in `fuzz/`).
//! Any bytes: the reader must return an error or records, never panic or over-allocate; the
//! same bytes as one record alone (as Redis carries them) decode to a record that re-encodes to
//! exactly those bytes, or to an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::snapshot::{SnapshotReader, decode_record, encode_record};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data, 4096) {
        let mut again = Vec::new();
        encode_record(&record, &mut again);
        assert_eq!(again, data);
    }
    // Small enough that slot and count limits are hit, large enough for real records.
    let Ok((mut reader, _header)) = SnapshotReader::open(data, 4096) else {
        return;
    };
    while let Ok(Some(_record)) = reader.next_record() {}
});
