//! Which address a request comes from, and the keys rate limits count it under.
//!
//! The TCP peer address is the truth, unless the peer is a configured trusted proxy: then the
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` chain is walked from the right, skipping trusted
//! proxies, and the first other address is the client. Anything unparsable falls back to the
//! peer address. IPv4-mapped IPv6 addresses are folded to IPv4 everywhere.

use crate::config::Cidr;
use std::net::IpAddr;

/// Most addresses read from one forwarding header.
pub const MAX_FORWARD_HOPS: usize = 16;

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client address of a request from `peer` with the given forwarding headers.
pub fn client_ip(
    peer: IpAddr,
    forwarded: Option<&[u8]>,
    x_forwarded_for: Option<&[u8]>,
    proxies: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    if proxies.is_empty() || !trusted(peer, proxies) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    if let Some(f) = forwarded.and_then(|f| core::str::from_utf8(f).ok()) {
        for elem in f.split(',').take(MAX_FORWARD_HOPS) {
            for pair in elem.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.eq_ignore_ascii_case("for") {
                    match parse_node(v.trim().trim_matches('"')) {
                        Some(ip) => chain.push(ip),
                        None => return peer,
                    }
                }
            }
        }
    } else if let Some(x) = x_forwarded_for.and_then(|x| core::str::from_utf8(x).ok()) {
        for part in x.split(',').take(MAX_FORWARD_HOPS) {
            match parse_node(part.trim()) {
                Some(ip) => chain.push(ip),
                None => return peer,
            }
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip, proxies))
        .unwrap_or(peer)
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end].parse::<IpAddr>().ok().map(|i| i.to_canonical());
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse::<IpAddr>().ok().map(|i| i.to_canonical())
}

/// The rate-limit key of an address: IPv4 whole, IPv6 by /64 (one subscriber's prefix).
pub fn limit_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) << 64 | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str, p: u8) -> Cidr {
        Cidr {
            addr: s.parse().unwrap(),
            prefix: p,
        }
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let peer: IpAddr = "198.51.100.7".parse().unwrap();
        let got = client_ip(peer, None, Some(b"203.0.113.1"), &[cidr("10.0.0.0", 8)]);
        assert_eq!(got, peer);
        assert_eq!(client_ip(peer, None, Some(b"203.0.113.1"), &[]), peer);
    }

    #[test]
    fn trusted_proxy_chain_walked_from_the_right() {
        let proxies = [cidr("10.0.0.0", 8)];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        // The client may prepend lies; the rightmost untrusted hop is what the proxy saw.
        let got = client_ip(
            peer,
            None,
            Some(b"1.1.1.1, 203.0.113.5, 10.0.0.9"),
            &proxies,
        );
        assert_eq!(got, "203.0.113.5".parse::<IpAddr>().unwrap());
        let got = client_ip(
            peer,
            Some(b"for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\""),
            Some(b"9.9.9.9"),
            &proxies,
        );
        assert_eq!(got, "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, None, Some(b"garbage"), &proxies), peer);
    }

    #[test]
    fn mapped_addresses_fold_and_v6_limits_by_64() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, None, None, &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        assert!(cidr("2001:db8::", 32).contains(a));
        assert!(cidr("0.0.0.0", 0).contains(mapped));
    }
}
