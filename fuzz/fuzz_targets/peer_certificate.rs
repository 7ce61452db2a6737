#![no_main]
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    let _ = peer::net::tls::key_of_certificate(&CertificateDer::from(data));
});
