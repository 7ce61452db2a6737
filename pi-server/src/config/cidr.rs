//! IP networks in CIDR notation, as `trusted-proxies` lists them.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
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
