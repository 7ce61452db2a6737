//! Helpers shared by the end-to-end tests: a pi-server with its relay on loopback, and its
//! `/metrics`.
#![allow(dead_code)]

pub mod player;
pub mod raw_relay;

use pi_server::config::Config;
use pi_server::server::TestServer;

/// A phone book on 127.0.0.1 with its relay (capacity 64, the other settings their defaults),
/// after `adjust` changed what a test needs.
pub fn relay_phone_book(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        relay_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    };
    adjust(&mut config);
    TestServer::start(config).expect("pi-server starts")
}

/// The value of the `/metrics` line that starts with `prefix` (name, labels and a space).
pub fn metric(pb: &TestServer, prefix: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(pb.addr()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in /metrics"))
}
