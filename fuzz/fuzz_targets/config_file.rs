//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none config_file` (in `fuzz/`).
//! Any text: the config-file parser must not panic, and whatever it accepts must survive
//! `--print-config` and be read back to the same settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::cli::{parse_config_file, to_config_file};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.conf");
    if let Ok(config) = parse_config_file(path, data) {
        let again = parse_config_file(path, to_config_file(&config).as_bytes())
            .expect("printed config must parse");
        assert_eq!(again, config);
    }
});
