//! The network layer: the QUIC endpoint on one UDP socket, its runtime on smol, the TLS
//! identity check, per-session record keys, the pool of connections to peers, NAT traversal,
//! port mapping, and the relay client for peers no direct path reaches.

pub mod control;
pub mod endpoint;
pub mod pool;
pub mod portmap;
pub mod reach;
pub mod relay;
pub mod runtime;
pub mod session;
pub mod tls;
pub mod traversal;
