//! Settings of the phone book, each with a safe default.
//!
//! Every field is a long flag (`--snapshot-interval`), an environment variable
//! (`PI_SERVER_SNAPSHOT_INTERVAL`) and a config-file key (`snapshot-interval = 30`);
//! precedence is flag > environment > file > default. See `pi-server --help`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// The one forwarding header the operator's reverse proxy sets; only it is read, and only
/// from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx `$proxy_add_x_forwarded_for`, Caddy,
    /// HAProxy `option forwardfor`, Traefik): the default.
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client` (nginx `proxy_set_header X-Real-IP $remote_addr`).
    XRealIp,
}

impl ProxyHeader {
    /// Every header, in help order.
    pub const ALL: [ProxyHeader; 3] = [
        ProxyHeader::XForwardedFor,
        ProxyHeader::Forwarded,
        ProxyHeader::XRealIp,
    ];

    /// The header name in lower case, as flags and files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
            ProxyHeader::XRealIp => "x-real-ip",
        }
    }

    /// Parses a header name, ignoring ASCII case.
    pub fn parse(text: &str) -> Option<ProxyHeader> {
        ProxyHeader::ALL
            .into_iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(text))
    }

    /// The header name as usually written (`X-Forwarded-For`).
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "X-Forwarded-For",
            ProxyHeader::Forwarded => "Forwarded",
            ProxyHeader::XRealIp => "X-Real-IP",
        }
    }

    /// Position in [`ProxyHeader::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ProxyHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
        }
    }
}

/// Longest accepted prefix length for an IPv4 network.
pub const IPV4_PREFIX_MAX: u8 = 32;
/// Longest accepted prefix length for an IPv6 network.
pub const IPV6_PREFIX_MAX: u8 = 128;

/// Why a text is not a CIDR network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress,
    /// The part after `/` is not a decimal number within the family's range.
    BadPrefix,
    /// Bits after the prefix are set; the value is the network that was probably meant.
    HostBitsSet(Cidr),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress => f.write_str("not an IPv4 or IPv6 address"),
            CidrError::BadPrefix => f.write_str("prefix must be 0-32 for IPv4 and 0-128 for IPv6"),
            CidrError::HostBitsSet(net) => {
                write!(
                    f,
                    "host bits after the prefix are set (did you mean {net}?)"
                )
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Parses `addr/prefix`, or a bare address as a single host (`/32`, `/128`).
    ///
    /// Host bits must be zero: `10.0.0.1/8` is refused rather than silently widened, since it
    /// usually means a typo. An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is folded to
    /// its IPv4 form (`10.0.0.0/8`), because the server folds mapped source addresses too.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::BadAddress)?;
        let max = match addr {
            IpAddr::V4(_) => IPV4_PREFIX_MAX,
            IpAddr::V6(_) => IPV6_PREFIX_MAX,
        };
        let prefix = match prefix_text {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| CidrError::BadPrefix)?
            }
            Some(_) => return Err(CidrError::BadPrefix),
        };
        if prefix > max {
            return Err(CidrError::BadPrefix);
        }
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let net = Cidr {
            addr: mask(addr, prefix),
            prefix,
        };
        if net.addr != addr {
            return Err(CidrError::HostBitsSet(net));
        }
        Ok(net)
    }

    /// Whether `ip` lies in this network (an IPv4 address never lies in an IPv6 network).
    /// IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

/// `addr` with every bit after the first `prefix` bits cleared.
pub(crate) fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl LogLevel {
    /// Every level, quietest first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The spelling used in flags and files: `error`, `warn`, `info`, `debug`, `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Parses [`LogLevel::as_str`]'s spelling, ignoring ASCII case.
    pub fn parse(text: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(text))
    }

    /// The matching `log` filter.
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Config {
    /// The settings in config-file syntax (what `--print-config` prints); `--config` reads it
    /// back to an equal `Config`.
    pub fn to_config_file(&self) -> String {
        crate::cli::to_config_file(self)
    }
}
