//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none forwarding_header` (in `fuzz/`).
//! Any bytes as the lines of a forwarding header from a trusted proxy: an address or a typed
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::addr::client_ip;
use pi_server::config::{Cidr, ProxyHeader};
use pi_server::http::Forwarding;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let which = ProxyHeader::ALL[usize::from(which) % ProxyHeader::ALL.len()];
    let mut f = Forwarding::default();
    for line in rest.split(|b| *b == b'\n') {
        f.push(which, line);
    }
    let proxies = [Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("fd00::/8").unwrap()];
    let _ = client_ip("10.0.0.1".parse().unwrap(), &f, which, &proxies);
});
