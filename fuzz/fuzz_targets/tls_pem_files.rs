#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

// The certificate and key files an operator gives (tls-cert, tls-key): any bytes are an error
// or a usable pair, never a panic.
fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (cert, key) = data.split_at(split);
    let _ = pi_server::tls::certified_key_from_pem(cert, key, Path::new("c"), Path::new("k"));
});
