//! The table of settings: each one's name, kind, range, doc, and how to read and write it.

use super::ENV_PREFIX;
use super::values::{boolean, cidrs, int};
use crate::config::*;
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// What a setting holds, for the help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Addr,
    Path,
    Secs,
    Count,
    Bytes,
    Bool,
    Cidrs,
    Level,
    Header,
    Host,
    Email,
    Url,
}

impl Kind {
    pub(super) fn placeholder(self) -> &'static str {
        match self {
            Kind::Addr => "ADDR",
            Kind::Path => "PATH",
            Kind::Secs => "SECS",
            Kind::Count => "N",
            Kind::Bytes => "BYTES",
            Kind::Bool => "true|false",
            Kind::Cidrs => "CIDR,...",
            Kind::Level => "LEVEL",
            Kind::Header => "HEADER",
            Kind::Host => "HOST",
            Kind::Email => "EMAIL",
            Kind::Url => "URL",
        }
    }
}

/// One setting: its name, doc, accepted range, and how to read and write its value.
pub(super) struct Setting {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) doc: &'static str,
    /// The accepted values of a numeric setting (shown by `--help`).
    pub(super) range: Option<RangeInclusive<u32>>,
    pub(super) set: fn(&mut Config, &str) -> Result<(), String>,
    pub(super) get: fn(&Config) -> String,
}

macro_rules! int_setting {
    ($name:literal, $field:ident, $kind:expr, $range:expr, $doc:literal) => {
        Setting {
            name: $name,
            kind: $kind,
            doc: $doc,
            range: Some($range),
            set: |c, v| {
                c.$field = int(v, $range)?;
                Ok(())
            },
            get: |c| c.$field.to_string(),
        }
    };
}

macro_rules! bool_setting {
    ($name:literal, $field:ident, $doc:literal) => {
        Setting {
            name: $name,
            kind: Kind::Bool,
            doc: $doc,
            range: None,
            set: |c, v| {
                c.$field = boolean(v)?;
                Ok(())
            },
            get: |c| c.$field.to_string(),
        }
    };
}

macro_rules! path_setting {
    ($name:literal, $field:ident, $doc:literal) => {
        Setting {
            name: $name,
            kind: Kind::Path,
            doc: $doc,
            range: None,
            set: |c, v| {
                c.$field = opt_path(v)?;
                Ok(())
            },
            get: |c| show_path(&c.$field),
        }
    };
}

fn opt_path(v: &str) -> Result<Option<PathBuf>, String> {
    if v.contains(['\n', '\r']) {
        return Err("must not contain a line break".to_string());
    }
    Ok((!v.is_empty()).then(|| PathBuf::from(v)))
}

fn show_path(p: &Option<PathBuf>) -> String {
    let path = p
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("\"{path}\"")
}

/// A DNS name as ACME certifies it: letters, digits, `-` and dots, at most 253 characters,
/// labels of 1 to 63, not an address.
fn dns_name(v: &str) -> Result<String, String> {
    let rule = || "must be a DNS name such as pb.example.org (not an address)".to_string();
    let v = v.trim_end_matches('.').to_ascii_lowercase();
    if v.len() > 253
        || !v.contains('.')
        || v.parse::<std::net::IpAddr>().is_ok()
        || v.split('.').any(|l| {
            l.is_empty()
                || l.len() > 63
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return Err(rule());
    }
    Ok(v)
}

/// Every setting, in help and `--print-config` order.
pub(super) static SETTINGS: [Setting; 50] = [
    Setting {
        name: "listen",
        kind: Kind::Addr,
        doc: "Address and port to listen on; [::] is dual-stack (IPv6 and IPv4).",
        range: None,
        set: |c, v| {
            c.listen = v.parse().map_err(|_| {
                "must be an address and port such as [::]:3000 or 0.0.0.0:3000".to_string()
            })?;
            Ok(())
        },
        get: |c| c.listen.to_string(),
    },
    Setting {
        name: "snapshot",
        kind: Kind::Path,
        doc: "Snapshot file kept across restarts; empty keeps the table in memory only.",
        range: None,
        set: |c, v| {
            if v.contains(['\n', '\r']) {
                return Err("must not contain a line break".to_string());
            }
            c.snapshot = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
        get: |c| {
            let path = c
                .snapshot
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("\"{path}\"")
        },
    },
    int_setting!(
        "snapshot-interval",
        snapshot_interval,
        Kind::Secs,
        SNAPSHOT_INTERVAL_RANGE,
        "Seconds between snapshots (written only when something changed)."
    ),
    int_setting!(
        "capacity",
        capacity,
        Kind::Count,
        CAPACITY_RANGE,
        "Most live registrations held; memory for them is allocated at start."
    ),
    int_setting!(
        "ttl",
        ttl,
        Kind::Secs,
        TTL_RANGE,
        "Seconds a registration lives unless renewed."
    ),
    int_setting!(
        "retention",
        retention,
        Kind::Secs,
        RETENTION_RANGE,
        "Seconds a name stays bound to its key after expiry or unregistration."
    ),
    int_setting!(
        "max-skew",
        max_skew,
        Kind::Secs,
        MAX_SKEW_RANGE,
        "Largest difference allowed between a signed timestamp and the server clock."
    ),
    int_setting!(
        "max-connections",
        max_connections,
        Kind::Count,
        MAX_CONNECTIONS_RANGE,
        "Most open client connections."
    ),
    Setting {
        name: "trusted-proxies",
        kind: Kind::Cidrs,
        doc: "Networks of your reverse proxies: their proxy-header is believed (empty: none).",
        range: None,
        set: |c, v| {
            c.trusted_proxies = cidrs(v)?;
            Ok(())
        },
        get: |c| {
            let list: Vec<String> = c.trusted_proxies.iter().map(Cidr::to_string).collect();
            list.join(",")
        },
    },
    Setting {
        name: "proxy-header",
        kind: Kind::Header,
        doc: "The one header your trusted proxies set: x-forwarded-for (what nginx, Caddy, HAProxy \
              and Traefik write by default), forwarded (RFC 7239) or x-real-ip. Only it is read, \
              walked from the right; the proxy must append to it or overwrite it.",
        range: None,
        set: |c, v| {
            c.proxy_header = ProxyHeader::parse(v).ok_or_else(|| {
                "must be one of x-forwarded-for, forwarded, x-real-ip".to_string()
            })?;
            Ok(())
        },
        get: |c| c.proxy_header.to_string(),
    },
    bool_setting!(
        "allow-claimed-ip",
        allow_claimed_ip,
        "Accept a client-claimed ip that differs from the observed one (LAN only)."
    ),
    bool_setting!(
        "metrics-public",
        metrics_public,
        "Serve /metrics to everyone (otherwise only to clients on loopback or in \
         trusted-proxies, judged after proxy resolution)."
    ),
    Setting {
        name: "log-level",
        kind: Kind::Level,
        doc: "error, warn (audit lines), info, debug (shows addresses) or trace; RUST_LOG wins.",
        range: None,
        set: |c, v| {
            c.log_level = LogLevel::parse(v)
                .ok_or_else(|| "must be one of error, warn, info, debug, trace".to_string())?;
            Ok(())
        },
        get: |c| c.log_level.to_string(),
    },
    int_setting!(
        "max-header-bytes",
        max_header_bytes,
        Kind::Bytes,
        MESSAGE_BYTES_RANGE,
        "Largest request head (431 above)."
    ),
    int_setting!(
        "max-body-bytes",
        max_body_bytes,
        Kind::Bytes,
        MESSAGE_BYTES_RANGE,
        "Largest request body (413 above)."
    ),
    int_setting!(
        "read-timeout",
        read_timeout,
        Kind::Secs,
        TIMEOUT_RANGE,
        "Seconds allowed to receive a whole request once it started (slowloris defence)."
    ),
    int_setting!(
        "idle-timeout",
        idle_timeout,
        Kind::Secs,
        TIMEOUT_RANGE,
        "Seconds an idle keep-alive connection is kept."
    ),
    int_setting!(
        "rate-ip",
        rate_ip,
        Kind::Count,
        RATE_RANGE,
        "Requests per second per source address (IPv6 per /64), sustained; 0 = unlimited. A TLS handshake costs 10."
    ),
    int_setting!(
        "rate-ip-burst",
        rate_ip_burst,
        Kind::Count,
        BURST_RANGE,
        "Burst of requests allowed per source address."
    ),
    int_setting!(
        "rate-key",
        rate_key,
        Kind::Count,
        RATE_RANGE,
        "Requests per second per public key, sustained; 0 = unlimited."
    ),
    int_setting!(
        "rate-key-burst",
        rate_key_burst,
        Kind::Count,
        BURST_RANGE,
        "Burst of requests allowed per public key."
    ),
    int_setting!(
        "friend-keys-total",
        friend_keys_total,
        Kind::Count,
        FRIEND_KEYS_TOTAL_RANGE,
        "Most friend keys stored across all registrations."
    ),
    int_setting!(
        "max-records-per-address",
        max_records_per_address,
        Kind::Count,
        RECORDS_PER_ADDRESS_RANGE,
        "Most live registrations charged to one address (IPv6: one quota-ipv6-prefix); \
         more get 429 quota_exceeded. Players behind one carrier-grade NAT share it."
    ),
    int_setting!(
        "max-friend-keys-per-address",
        max_friend_keys_per_address,
        Kind::Count,
        FRIEND_KEYS_QUOTA_RANGE,
        "Most friend keys held by the live registrations of one address (IPv6: one prefix)."
    ),
    int_setting!(
        "max-friend-keys-per-key",
        max_friend_keys_per_key,
        Kind::Count,
        FRIEND_KEYS_QUOTA_RANGE,
        "Most friend keys held by the live registrations of one public key (64 = one full list)."
    ),
    int_setting!(
        "quota-ipv6-prefix",
        quota_ipv6_prefix,
        Kind::Count,
        QUOTA_IPV6_PREFIX_RANGE,
        "IPv6 addresses in one prefix of this length share the per-address quotas: 48, since \
         one subscriber or server often holds a whole /48 (65,536 /64s)."
    ),
    Setting {
        name: "udp-listen",
        kind: Kind::Addr,
        doc: "The UDP service (address discovery, keep-alives, hole-punch coordination): same \
              (the listen address and port), off, or ADDR:PORT. Open this UDP port too.",
        range: None,
        set: |c, v| {
            c.udp_listen = UdpListen::parse(v).ok_or_else(|| {
                "must be same, off, or an address and port such as [::]:3000".to_string()
            })?;
            Ok(())
        },
        get: |c| c.udp_listen.to_string(),
    },
    Setting {
        name: "udp-alt-port",
        kind: Kind::Count,
        doc: "A second UDP port at the same address, so peers can tell a symmetric NAT: next \
              (the UDP port + 1), off, or a port 1-65535. Open it too.",
        range: None,
        set: |c, v| {
            c.udp_alt_port = AltPort::parse(v)
                .ok_or_else(|| "must be next, off, or a port from 1 to 65535".to_string())?;
            Ok(())
        },
        get: |c| c.udp_alt_port.to_string(),
    },
    int_setting!(
        "udp-rate",
        udp_rate,
        Kind::Count,
        RATE_RANGE,
        "UDP requests per second per source address (IPv6 per quota prefix), sustained; 0 \
         means unlimited."
    ),
    int_setting!(
        "udp-rate-burst",
        udp_rate_burst,
        Kind::Count,
        BURST_RANGE,
        "UDP requests in a burst per source address."
    ),
    int_setting!(
        "punch-rate",
        punch_rate,
        Kind::Count,
        PUNCH_RATE_RANGE,
        "Punch requests per second per requester key, and forwarded per target (bursts of 4x)."
    ),
    int_setting!(
        "udp-mapping-ttl",
        udp_mapping_ttl,
        Kind::Secs,
        UDP_MAPPING_TTL_RANGE,
        "Seconds a peer's keep-alive address is used after its last keep-alive."
    ),
    Setting {
        name: "relay-listen",
        kind: Kind::Addr,
        doc: "The relay for peers without a direct path (TLS over TCP; port 443 gets through \
              strict networks): off or ADDR:PORT such as [::]:443. Open this TCP port too.",
        range: None,
        set: |c, v| {
            c.relay_listen = match v {
                "off" | "" => None,
                v => Some(v.parse().map_err(|_| {
                    "must be off or an address and port such as [::]:443".to_string()
                })?),
            };
            Ok(())
        },
        get: |c| c.relay_listen.map_or("off".into(), |a| a.to_string()),
    },
    Setting {
        name: "relay-host",
        kind: Kind::Path,
        doc: "The relay's host name for peers when it is not the phone book's host (empty: \
              the phone book's).",
        range: None,
        set: |c, v| {
            if v.len() > 253
                || v.contains(|ch: char| !(ch.is_ascii_alphanumeric() || ".-:[]".contains(ch)))
            {
                return Err("must be a host name or address".to_string());
            }
            c.relay_host = (!v.is_empty()).then(|| v.to_owned());
            Ok(())
        },
        get: |c| c.relay_host.clone().unwrap_or_default(),
    },
    int_setting!(
        "relay-max-connections",
        relay_max_connections,
        Kind::Count,
        RELAY_CONNECTIONS_RANGE,
        "Most relay connections at once."
    ),
    int_setting!(
        "relay-max-sessions",
        relay_max_sessions,
        Kind::Count,
        RELAY_SESSIONS_RANGE,
        "Most relay sessions (open or opening) per relay connection."
    ),
    int_setting!(
        "relay-rate",
        relay_rate,
        Kind::Bytes,
        RELAY_RATE_RANGE,
        "Bytes per second one relay connection may send (10 Mbit/s by default; 0 means \
         unlimited)."
    ),
    int_setting!(
        "relay-rate-total",
        relay_rate_total,
        Kind::Bytes,
        RELAY_RATE_RANGE,
        "Bytes per second the relay carries in all (20 Mbit/s by default, a share of a home \
         uplink; 0 means unlimited)."
    ),
    int_setting!(
        "relay-idle",
        relay_idle,
        Kind::Secs,
        RELAY_IDLE_RANGE,
        "Seconds a relay connection may stay silent before it is closed."
    ),
    path_setting!(
        "tls-cert",
        tls_cert,
        "PEM certificate chain for HTTPS on listen (with tls-key); re-read on SIGHUP and when \
         the file changes. Empty, and no acme-domain: plain HTTP (for a LAN or behind a proxy)."
    ),
    path_setting!(
        "tls-key",
        tls_key,
        "PEM private key of tls-cert (PKCS#8, PKCS#1 or SEC1)."
    ),
    int_setting!(
        "tls-handshake-timeout",
        tls_handshake_timeout,
        Kind::Secs,
        TLS_HANDSHAKE_TIMEOUT_RANGE,
        "Seconds a client may take to complete the TLS handshake."
    ),
    Setting {
        name: "acme-domain",
        kind: Kind::Host,
        doc: "Get and renew a certificate for this DNS name over ACME (TLS-ALPN-01, answered on \
              listen, which must be reachable as DOMAIN:443); turns HTTPS on. Empty: off.",
        range: None,
        set: |c, v| {
            c.acme_domain = match v {
                "" => None,
                v => Some(dns_name(v)?),
            };
            Ok(())
        },
        get: |c| c.acme_domain.clone().unwrap_or_default(),
    },
    Setting {
        name: "acme-contact",
        kind: Kind::Email,
        doc: "E-mail address the ACME server may write to about the certificate (optional).",
        range: None,
        set: |c, v| {
            let v = v.strip_prefix("mailto:").unwrap_or(v);
            if !v.is_empty()
                && (v.len() > 254
                    || v.matches('@').count() != 1
                    || v.starts_with('@')
                    || v.ends_with('@')
                    || v.contains(|ch: char| ch.is_whitespace() || ch.is_control() || ch == ','))
            {
                return Err("must be an e-mail address such as admin@example.org".to_string());
            }
            c.acme_contact = (!v.is_empty()).then(|| v.to_owned());
            Ok(())
        },
        get: |c| c.acme_contact.clone().unwrap_or_default(),
    },
    Setting {
        name: "acme-directory",
        kind: Kind::Url,
        doc: "The ACME server's directory URL (https://); the default is Let's Encrypt's \
              production server.",
        range: None,
        set: |c, v| {
            if !v.starts_with("https://")
                || v.len() > 1024
                || v.contains(|ch: char| ch.is_whitespace() || ch.is_control())
            {
                return Err("must be an https:// URL".to_string());
            }
            c.acme_directory = v.to_owned();
            Ok(())
        },
        get: |c| c.acme_directory.clone(),
    },
    path_setting!(
        "acme-ca-root",
        acme_ca_root,
        "Extra PEM root certificate trusted for the ACME server (a test CA such as pebble's); \
         empty: only the bundled web roots."
    ),
    path_setting!(
        "acme-dir",
        acme_dir,
        "Directory for the ACME account key and the certificate (mode 0600 files); empty: the \
         snapshot's directory."
    ),
    Setting {
        name: "redis-url",
        kind: Kind::Url,
        doc: "Share records, name bindings and the token key with every phone book using this \
              Redis or Valkey (redis://[user:password@]host[:port][/db], rediss:// for TLS, or \
              redis+unix:///path); writes are acknowledged once Redis has them. Empty: the \
              in-memory table alone. A password in it is a secret: --print-config prints it, \
              so prefer PI_SERVER_REDIS_URL from a root-only environment file.",
        range: None,
        set: |c, v| {
            c.redis_url = match v {
                "" => None,
                v => Some(crate::store::check_url(v)?),
            };
            Ok(())
        },
        get: |c| c.redis_url.clone().unwrap_or_default(),
    },
    Setting {
        name: "redis-prefix",
        kind: Kind::Host,
        doc: "Prefix of every Redis key (letters, digits, '-', '_', '.', ':'; at most 64), so \
              several phone books can share one Redis.",
        range: None,
        set: |c, v| {
            c.redis_prefix = crate::store::check_prefix(v)?;
            Ok(())
        },
        get: |c| c.redis_prefix.clone(),
    },
    path_setting!(
        "redis-ca",
        redis_ca,
        "PEM CA certificate trusted for a rediss:// (TLS) Redis, e.g. a private CA; empty: \
         the bundled web roots."
    ),
];

pub(super) fn find(name: &str) -> Option<usize> {
    SETTINGS.iter().position(|s| s.name == name)
}

/// The environment variable of a setting: `ttl` -> `PI_SERVER_TTL`.
pub fn env_var_name(setting: &str) -> String {
    let mut var = String::with_capacity(ENV_PREFIX.len() + setting.len());
    var.push_str(ENV_PREFIX);
    var.extend(setting.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    var
}
