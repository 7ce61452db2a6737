//! Loopback tests of the peer library: real QUIC on 127.0.0.1:0, several peers in one process.

mod cli;
mod common;
mod loopback;
mod phonebook;
// A real miniupnpd in network namespaces: Linux only.
#[cfg(target_os = "linux")]
mod portmap;
mod traversal;
