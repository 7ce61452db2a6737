//! Settings of the phone book: the [`Config`] type, its defaults and the range of every
//! numeric setting. Reading them from flags, environment and file, the help text and the
//! config-file writer are in [`crate::cli`], which depends on this module and not the reverse.
//!
//! Every field is a long flag (`--snapshot-interval`), an environment variable
//! (`PI_SERVER_SNAPSHOT_INTERVAL`) and a config-file key (`snapshot-interval = 30`);
//! precedence is flag > environment > file > default. See `pi-server --help`.

mod cidr;
mod log_level;
mod proxy_header;
mod ranges;
mod udp;

#[cfg(test)]
pub(crate) use cidr::mask;
pub use cidr::{Cidr, CidrError, IPV4_PREFIX_MAX, IPV6_PREFIX_MAX};
pub use log_level::LogLevel;
pub use proxy_header::ProxyHeader;
pub use ranges::*;
pub use udp::{AltPort, UdpListen};

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Networks whose forwarding header ([`Config::proxy_header`]) is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The one forwarding header the trusted proxies set; the others are ignored.
    pub proxy_header: ProxyHeader,
    /// Accept a client-claimed `ip` that differs from the observed address (LAN deployments only).
    pub allow_claimed_ip: bool,
    /// Serve `/metrics` to everyone (otherwise only to clients on loopback or in a trusted proxy
    /// range, judged by the client address after proxy resolution).
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
    /// Most live records charged to one address (IPv6: one `quota_ipv6_prefix`).
    pub max_records_per_address: u32,
    /// Most friend keys held by the live records of one address (IPv6: one prefix).
    pub max_friend_keys_per_address: u32,
    /// Most friend keys held by the live records of one public key.
    pub max_friend_keys_per_key: u32,
    /// Prefix length under which IPv6 addresses share the per-address quotas.
    pub quota_ipv6_prefix: u32,
    /// The UDP service (discovery, keep-alives, hole-punch coordination; docs/PROTOCOL.md).
    pub udp_listen: UdpListen,
    /// Its second port, for peers to tell a symmetric NAT.
    pub udp_alt_port: AltPort,
    /// UDP requests per second allowed per source address (IPv6 per quota prefix), sustained.
    pub udp_rate: u32,
    /// Burst of UDP requests allowed per source address.
    pub udp_rate_burst: u32,
    /// Punch requests per second allowed per requester key, and forwarded per target.
    pub punch_rate: u32,
    /// Seconds a keep-alive mapping is used after the last keep-alive.
    pub udp_mapping_ttl: u32,
    /// The relay's TLS listener (docs/PROTOCOL.md "Relay"); `None`: no relay.
    pub relay_listen: Option<SocketAddr>,
    /// The relay's public host name, sent to peers when it is not the phone book's host.
    pub relay_host: Option<String>,
    /// Most relay connections at once.
    pub relay_max_connections: u32,
    /// Most sessions (open or opening) per relay connection.
    pub relay_max_sessions: u32,
    /// Bytes per second one relay connection may send through the relay (0: unlimited).
    pub relay_rate: u32,
    /// Bytes per second the relay carries in total (0: unlimited).
    pub relay_rate_total: u32,
    /// Seconds a relay connection may stay silent before it is closed.
    pub relay_idle: u32,
    /// PEM certificate chain for HTTPS on `listen` (with [`Config::tls_key`]); `None` with no
    /// [`Config::acme_domain`] serves plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`Config::tls_cert`].
    pub tls_key: Option<PathBuf>,
    /// Seconds a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: u32,
    /// Domain to obtain a certificate for over ACME (TLS-ALPN-01 on `listen`); turns HTTPS on.
    pub acme_domain: Option<String>,
    /// Contact e-mail address given to the ACME server (expiry notices).
    pub acme_contact: Option<String>,
    /// The ACME server's directory URL.
    pub acme_directory: String,
    /// An extra PEM root trusted for the ACME server (a test CA such as pebble's).
    pub acme_ca_root: Option<PathBuf>,
    /// Where the ACME account key and certificate are kept; `None`: beside the snapshot.
    pub acme_dir: Option<PathBuf>,
    /// Redis (or Valkey) shared by several instances (`redis://[user:password@]host[:port][/db]`
    /// or `redis+unix:///path`); `None`: the in-memory table alone.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several phone books can share one Redis.
    pub redis_prefix: String,
    /// A PEM CA certificate trusted for a `rediss://` Redis (else the bundled web roots).
    pub redis_ca: Option<PathBuf>,
}

/// Let's Encrypt's production directory, the default `acme-directory`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

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
            proxy_header: ProxyHeader::XForwardedFor,
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
            max_records_per_address: 256,
            max_friend_keys_per_address: 4096,
            max_friend_keys_per_key: 256,
            quota_ipv6_prefix: 48,
            udp_listen: UdpListen::SameAsHttp,
            udp_alt_port: AltPort::Next,
            udp_rate: 20,
            udp_rate_burst: 40,
            punch_rate: 5,
            udp_mapping_ttl: 300,
            relay_listen: None,
            relay_host: None,
            relay_max_connections: 256,
            relay_max_sessions: 16,
            relay_rate: 1_250_000,
            relay_rate_total: 2_500_000,
            relay_idle: 60,
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout: 10,
            acme_domain: None,
            acme_contact: None,
            acme_directory: LETS_ENCRYPT_DIRECTORY.to_owned(),
            acme_ca_root: None,
            acme_dir: None,
            redis_url: None,
            redis_prefix: "pb".to_owned(),
            redis_ca: None,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Issue 9: `config` must not call back into `cli` (it did, for `to_config_file`).
    #[test]
    fn config_does_not_depend_on_cli() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("cidr.rs"),
            include_str!("log_level.rs"),
            include_str!("proxy_header.rs"),
            include_str!("ranges.rs"),
            include_str!("udp.rs"),
        ];
        let needles = [concat!("crate::cli", "::"), concat!("use crate::", "cli")];
        for (i, src) in sources.iter().enumerate() {
            for n in needles {
                assert!(!src.contains(n), "config source {i} uses {n}");
            }
        }
    }
}
