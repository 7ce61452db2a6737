//! Where the UDP service listens (`udp-listen`, `udp-alt-port`).

use core::fmt;
use std::net::SocketAddr;

/// `udp-listen`: the UDP service's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpListen {
    /// The HTTP listener's address and port number (the default).
    SameAsHttp,
    /// No UDP service: peers get no discovery, keep-alives or hole punching.
    Off,
    /// Its own address.
    At(SocketAddr),
}

impl UdpListen {
    /// Parses `same`, `off` or an address with port.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "same" => Some(Self::SameAsHttp),
            "off" => Some(Self::Off),
            other => other.parse().ok().map(Self::At),
        }
    }

    /// The socket address given the HTTP listener's bound address.
    pub fn resolve(self, http: SocketAddr) -> Option<SocketAddr> {
        match self {
            Self::SameAsHttp => Some(http),
            Self::Off => None,
            Self::At(a) => Some(a),
        }
    }
}

impl fmt::Display for UdpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameAsHttp => f.write_str("same"),
            Self::Off => f.write_str("off"),
            Self::At(a) => a.fmt(f),
        }
    }
}

/// `udp-alt-port`: the second UDP port that lets a peer tell a symmetric NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltPort {
    /// The UDP port + 1 (the default); skipped with a warning if it cannot be bound.
    Next,
    /// None: peers cannot tell whether their NAT maps per destination.
    Off,
    /// This port, at the UDP service's address.
    Port(u16),
}

impl AltPort {
    /// Parses `next`, `off` or a port number 1..=65535.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "next" => Some(Self::Next),
            "off" => Some(Self::Off),
            other => match other.parse::<u16>() {
                Ok(0) | Err(_) => None,
                Ok(p) => Some(Self::Port(p)),
            },
        }
    }

    /// The port given the main UDP port (`None`: no second socket).
    pub fn resolve(self, main: u16) -> Option<u16> {
        match self {
            Self::Next => main.checked_add(1),
            Self::Off => None,
            Self::Port(p) => Some(p),
        }
    }
}

impl fmt::Display for AltPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Next => f.write_str("next"),
            Self::Off => f.write_str("off"),
            Self::Port(p) => p.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        let http: SocketAddr = "[::]:3000".parse().unwrap();
        assert_eq!(UdpListen::parse("same").unwrap().resolve(http), Some(http));
        assert_eq!(UdpListen::parse("off").unwrap().resolve(http), None);
        let own: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        assert_eq!(
            UdpListen::parse("0.0.0.0:3478").unwrap().resolve(http),
            Some(own)
        );
        assert_eq!(UdpListen::parse("3478"), None);
        assert_eq!(AltPort::parse("next").unwrap().resolve(3000), Some(3001));
        assert_eq!(AltPort::Next.resolve(65535), None);
        assert_eq!(AltPort::parse("off").unwrap().resolve(3000), None);
        assert_eq!(AltPort::parse("4000").unwrap().resolve(3000), Some(4000));
        assert_eq!(AltPort::parse("0"), None);
        assert_eq!(AltPort::parse("70000"), None);
        for t in ["same", "off", "[::1]:5"] {
            assert_eq!(UdpListen::parse(t).unwrap().to_string(), t);
        }
        for t in ["next", "off", "4000"] {
            assert_eq!(AltPort::parse(t).unwrap().to_string(), t);
        }
    }
}
