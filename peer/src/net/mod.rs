//! The network layer: the QUIC endpoint on one UDP socket, its runtime on smol, the TLS
//! identity check, per-session record keys, and the pool of connections to peers.

pub mod control;
pub mod endpoint;
pub mod pool;
pub mod portmap;
pub mod runtime;
pub mod session;
pub mod tls;
pub mod traversal;
