//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none http_request` (in `fuzz/`).
//! Any bytes as a request (head and body) through the whole sans-IO API: an answer, never a
//! panic; the answer is always a complete HTTP/1.1 response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_server::api::{App, Now};
use pi_server::config::{Cidr, Config};
use pi_server::http::parse_head;
use std::cell::RefCell;

thread_local! {
    // The fuzzer's peer 192.0.2.1 is a trusted proxy, so forwarding headers are read too.
    static APP: RefCell<App> = RefCell::new(App::new(Config {
        capacity: 64,
        rate_ip: 0,
        rate_key: 0,
        trusted_proxies: vec![Cidr::parse("192.0.2.0/24").unwrap()],
        ..Config::default()
    }, [1; 32]));
}

fuzz_target!(|data: &[u8]| {
    let Ok(head) = parse_head(data, 8192) else { return };
    assert!(head.len <= data.len());
    let body = &data[head.len..];
    let now = Now { mono_ms: 1000, wall_ms: 1_764_000_000_000 };
    APP.with(|app| {
        let mut out = Vec::new();
        app.borrow_mut().handle(&head, body, "192.0.2.1".parse().unwrap(), now, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 "));
    });
});
