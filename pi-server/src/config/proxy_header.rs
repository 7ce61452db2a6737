//! The forwarding header a trusted reverse proxy sets (`proxy-header`).

use core::fmt;

/// The one forwarding header the operator's reverse proxy sets; only it is read, and only
/// from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, ...`: the default. nginx
    /// (`$proxy_add_x_forwarded_for`) and HAProxy (`option forwardfor`) append to it, Caddy and
    /// Traefik overwrite it by default.
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
