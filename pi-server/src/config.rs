//! Settings of the phone book, each with a safe default.
//!
//! Every field is a long flag (`--snapshot-interval`), an environment variable
//! (`PI_SERVER_SNAPSHOT_INTERVAL`) and a config-file key (`snapshot-interval = 30`);
//! precedence is flag > environment > file > default. See `pi-server --help`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Audit lines (suspicious events) and errors.
    Warn,
    /// Start, stop and snapshots.
    Info,
    /// Per-request details, including addresses (personal data).
    Debug,
    /// Everything.
    Trace,
}

/// All settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address and port to listen on; `[::]` is dual-stack.
    pub listen: SocketAddr,
    /// Snapshot file; `None` keeps the table in memory only.
    pub snapshot: Option<PathBuf>,
    /// Seconds between snapshots (written only when something changed).
    pub snapshot_interval: u32,
    /// Most live registrations held; allocated at start.
    pub capacity: u32,
    /// Seconds a registration lives unless renewed.
    pub ttl: u32,
    /// Seconds a name stays bound to its key after expiry or unregistration.
    pub retention: u32,
    /// Largest allowed difference, in seconds, between a signed timestamp and the server clock.
    pub max_skew: u32,
    /// Most open client connections.
    pub max_connections: u32,
    /// Networks whose `Forwarded` / `X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Accept a client-claimed `ip` that differs from the observed address (LAN deployments only).
    pub allow_claimed_ip: bool,
    /// Serve `/metrics` to everyone (otherwise only to loopback and trusted proxies).
    pub metrics_public: bool,
    /// Log verbosity (RUST_LOG, if set, wins).
    pub log_level: LogLevel,
    /// Largest request head in bytes (431 above).
    pub max_header_bytes: u32,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: u32,
    /// Seconds allowed to receive a whole request once it started (slowloris defence).
    pub read_timeout: u32,
    /// Seconds an idle keep-alive connection is kept.
    pub idle_timeout: u32,
    /// Requests per second allowed per source address (IPv6 per /64), sustained.
    pub rate_ip: u32,
    /// Burst allowed per source address.
    pub rate_ip_burst: u32,
    /// Requests per second allowed per public key, sustained.
    pub rate_key: u32,
    /// Burst allowed per public key.
    pub rate_key_burst: u32,
    /// Most friend keys stored across all registrations.
    pub friend_keys_total: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 3000)),
            snapshot: None,
            snapshot_interval: 30,
            capacity: 1_000_000,
            ttl: 3600,
            retention: 86_400,
            max_skew: 300,
            max_connections: 16_384,
            trusted_proxies: Vec::new(),
            allow_claimed_ip: false,
            metrics_public: false,
            log_level: LogLevel::Info,
            max_header_bytes: 8192,
            max_body_bytes: 8192,
            read_timeout: 10,
            idle_timeout: 60,
            rate_ip: 200,
            rate_ip_burst: 400,
            rate_key: 50,
            rate_key_burst: 100,
            friend_keys_total: 4_000_000,
        }
    }
}
