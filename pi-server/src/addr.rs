//! Which address a request comes from, and the keys rate limits and quotas count it under.
//!
//! The TCP peer address is the truth, unless the peer is a configured trusted proxy. Then the
//! one header the operator named (`proxy-header`: `X-Forwarded-For`, `Forwarded` or
//! `X-Real-IP`) is read, and no other: a header the proxy does not set is the client's to write.
//! All lines of that header form one comma-separated list (RFC 9110 section 5.3), walked from
//! the right: each proxy appends the address it received the request from, so the hops to the
//! right were written by trusted proxies and everything left of the first untrusted hop was
//! written by the client. The first hop (from the right) that is not a trusted proxy is the
//! client; what lies left of it is never read, so junk there changes nothing.
//!
//! A trusted peer without the header is itself the client (a health check on the proxy host).
//! If every hop is a trusted proxy, the left-most one is the client. An unparsable hop where the
//! walk stops, a client hop beyond the [`MAX_FORWARD_HOPS`] right-most ones, or more than
//! [`crate::http::MAX_FORWARD_LINES`] lines are a [`ForwardError`] (answered 400).
//! IPv4-mapped IPv6 addresses are folded to IPv4 everywhere.

use crate::config::{Cidr, ProxyHeader};
use crate::http::Forwarding;
use core::fmt;
use std::net::IpAddr;

/// Most hops read from the right of the forwarding list: the client must be among them.
pub const MAX_FORWARD_HOPS: usize = 16;

/// Why the forwarding header of a trusted proxy gave no client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// The hop where the walk stopped is not an address (`unknown`, an obfuscated node, junk).
    Unparsable,
    /// The [`MAX_FORWARD_HOPS`] right-most hops are all trusted proxies, and more follow.
    TooManyHops,
    /// More than [`crate::http::MAX_FORWARD_LINES`] lines of the header.
    TooManyLines,
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardError::Unparsable => "the client hop is not an IP address",
            ForwardError::TooManyHops => "too many trusted proxy hops",
            ForwardError::TooManyLines => "too many header lines",
        })
    }
}

impl std::error::Error for ForwardError {}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client address of a request from `peer` carrying `forwarding`, when `which` is the
/// header the trusted `proxies` set (see the module docs).
pub fn client_ip(
    peer: IpAddr,
    forwarding: &Forwarding<'_>,
    which: ProxyHeader,
    proxies: &[Cidr],
) -> Result<IpAddr, ForwardError> {
    let peer = peer.to_canonical();
    if proxies.is_empty() || !trusted(peer, proxies) {
        return Ok(peer);
    }
    let lines = forwarding.lines(which).ok_or(ForwardError::TooManyLines)?;
    walk(lines, which, proxies).map(|found| found.unwrap_or(peer))
}

/// Walks the hops of `lines` from the right; `None` if there is none.
pub fn walk(
    lines: &[&[u8]],
    which: ProxyHeader,
    proxies: &[Cidr],
) -> Result<Option<IpAddr>, ForwardError> {
    let hops = lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(|b| *b == b','))
        .filter(|hop| !hop.trim_ascii().is_empty());
    let mut last = None;
    for (n, hop) in hops.enumerate() {
        if n == MAX_FORWARD_HOPS {
            return Err(ForwardError::TooManyHops);
        }
        let ip = match which {
            ProxyHeader::Forwarded => forwarded_for(hop),
            ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => core::str::from_utf8(hop)
                .ok()
                .and_then(|t| parse_node(t.trim())),
        }
        .ok_or(ForwardError::Unparsable)?;
        if !trusted(ip, proxies) {
            return Ok(Some(ip));
        }
        last = Some(ip);
    }
    Ok(last)
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let element = core::str::from_utf8(element).ok()?;
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        parse_node(v)
    })
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse::<IpAddr>().ok().map(|i| i.to_canonical());
    }
    let (host, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
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
    use proptest::prelude::*;

    fn cidr(s: &str, p: u8) -> Cidr {
        Cidr {
            addr: s.parse().unwrap(),
            prefix: p,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `client_ip` for lines of `which` (and the same lines under every other name too, which
    /// must change nothing).
    fn resolve(
        peer: &str,
        which: ProxyHeader,
        lines: &[&str],
        proxies: &[Cidr],
    ) -> Result<IpAddr, ForwardError> {
        let mut f = Forwarding::default();
        for h in ProxyHeader::ALL.iter().filter(|h| **h != which) {
            f.push(*h, b"192.0.2.200");
        }
        for l in lines {
            f.push(which, l.as_bytes());
        }
        client_ip(ip(peer), &f, which, proxies)
    }

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;

    #[test]
    fn untrusted_peer_headers_ignored() {
        let p = [cidr("10.0.0.0", 8)];
        assert_eq!(
            resolve("198.51.100.7", XFF, &["203.0.113.1"], &p),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            resolve("198.51.100.7", XFF, &["203.0.113.1"], &[]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn trusted_proxy_chain_walked_from_the_right() {
        let p = [cidr("10.0.0.0", 8)];
        // The client may prepend lies; the rightmost untrusted hop is what the proxy saw.
        let got = resolve("10.0.0.2", XFF, &["1.1.1.1, 203.0.113.5, 10.0.0.9"], &p);
        assert_eq!(got, Ok(ip("203.0.113.5")));
        let fwd = ["for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\""];
        let got = resolve("10.0.0.2", ProxyHeader::Forwarded, &fwd, &p);
        assert_eq!(got, Ok(ip("2001:db8::7")));
        let got = resolve("10.0.0.2", ProxyHeader::XRealIp, &["203.0.113.9"], &p);
        assert_eq!(got, Ok(ip("203.0.113.9")));
        // No header: the proxy host itself. All hops trusted: the left-most.
        assert_eq!(resolve("10.0.0.2", XFF, &[], &p), Ok(ip("10.0.0.2")));
        assert_eq!(
            resolve("10.0.0.2", XFF, &["10.0.0.7, 10.0.0.8"], &p),
            Ok(ip("10.0.0.7"))
        );
        // Ports, mapped addresses, empty list elements.
        let got = resolve(
            "10.0.0.2",
            XFF,
            &["203.0.113.5:4711, , ::ffff:10.0.0.1"],
            &p,
        );
        assert_eq!(got, Ok(ip("203.0.113.5")));
    }

    #[test]
    fn bad_hops_are_errors_only_where_the_walk_stops() {
        let p = [cidr("10.0.0.0", 8)];
        assert_eq!(
            resolve("10.0.0.2", XFF, &["garbage"], &p),
            Err(ForwardError::Unparsable)
        );
        assert_eq!(
            resolve("10.0.0.2", XFF, &["garbage, 203.0.113.1"], &p),
            Ok(ip("203.0.113.1"))
        );
        let fwd = ["for=unknown"];
        let got = resolve("10.0.0.2", ProxyHeader::Forwarded, &fwd, &p);
        assert_eq!(got, Err(ForwardError::Unparsable));
        let got = resolve("10.0.0.2", ProxyHeader::Forwarded, &["proto=https"], &p);
        assert_eq!(got, Err(ForwardError::Unparsable));
        assert_eq!(
            resolve("10.0.0.2", XFF, &["[::1]x"], &p),
            Err(ForwardError::Unparsable)
        );
        let many: Vec<String> = (0..=MAX_FORWARD_HOPS)
            .map(|i| format!("10.0.1.{i}"))
            .collect();
        let many = many.join(",");
        assert_eq!(
            resolve("10.0.0.2", XFF, &[&many], &p),
            Err(ForwardError::TooManyHops)
        );
        let lines = ["203.0.113.1"; crate::http::MAX_FORWARD_LINES + 1];
        assert_eq!(
            resolve("10.0.0.2", XFF, &lines, &p),
            Err(ForwardError::TooManyLines)
        );
    }

    #[test]
    fn only_the_configured_header_counts() {
        let p = [cidr("10.0.0.0", 8)];
        let mut f = Forwarding::default();
        f.push(ProxyHeader::Forwarded, b"for=192.0.2.66");
        f.push(ProxyHeader::XForwardedFor, b"203.0.113.7");
        let got = client_ip(ip("10.0.0.2"), &f, XFF, &p);
        assert_eq!(got, Ok(ip("203.0.113.7")));
        let got = client_ip(ip("10.0.0.2"), &f, ProxyHeader::XRealIp, &p);
        assert_eq!(got, Ok(ip("10.0.0.2")));
    }

    #[test]
    fn repeated_lines_are_one_list() {
        let p = [cidr("10.0.0.0", 8)];
        let got = resolve("10.0.0.2", XFF, &["203.0.113.7", "10.9.9.9"], &p);
        assert_eq!(got, Ok(ip("203.0.113.7")));
        let got = resolve("10.0.0.2", XFF, &["6.6.6.6", "203.0.113.7, 10.9.9.9"], &p);
        assert_eq!(got, Ok(ip("203.0.113.7")));
    }

    #[test]
    fn mapped_addresses_fold_and_v6_limits_by_64() {
        let mapped = ip("::ffff:192.0.2.1");
        let none = Forwarding::default();
        assert_eq!(client_ip(mapped, &none, XFF, &[]), Ok(ip("192.0.2.1")));
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff::9");
        let c = ip("2001:db8:1:3::1");
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        assert!(cidr("2001:db8::", 32).contains(a));
        assert!(cidr("0.0.0.0", 0).contains(mapped));
    }

    proptest! {
        /// Whatever the client writes left of the proxy's hop, and however it splits it into
        /// lines, the answer is the hop the proxy appended.
        #[test]
        fn client_junk_never_changes_the_answer(
            junk in proptest::collection::vec(any::<Vec<u8>>(), 0..3),
            which in 0..3usize,
            v6 in any::<bool>(),
        ) {
            let which = ProxyHeader::ALL[which];
            let p = [cidr("10.0.0.0", 8)];
            let real = if v6 { ip("2001:db8::42") } else { ip("203.0.113.42") };
            let hop = match (which, v6) {
                (ProxyHeader::Forwarded, true) => "for=\"[2001:db8::42]:1234\"".to_owned(),
                (ProxyHeader::Forwarded, false) => "for=203.0.113.42;proto=https".to_owned(),
                _ => real.to_string(),
            };
            let mut lines: Vec<Vec<u8>> = junk;
            // The proxy appends to the client's last line (nginx) ...
            let mut last = lines.pop().unwrap_or_default();
            last.extend_from_slice(b", ");
            last.extend_from_slice(hop.as_bytes());
            lines.push(last);
            let mut f = Forwarding::default();
            for l in &lines {
                f.push(which, l);
            }
            prop_assert_eq!(client_ip(ip("10.0.0.2"), &f, which, &p), Ok(real));
            // ... or adds a line of its own (HAProxy).
            lines.pop();
            lines.push(hop.into_bytes());
            let mut f = Forwarding::default();
            for l in &lines {
                f.push(which, l);
            }
            prop_assert_eq!(client_ip(ip("10.0.0.2"), &f, which, &p), Ok(real));
        }

        #[test]
        fn any_header_bytes_never_panic(
            lines in proptest::collection::vec(any::<Vec<u8>>(), 0..6),
            which in 0..3usize,
        ) {
            let which = ProxyHeader::ALL[which];
            let mut f = Forwarding::default();
            for l in &lines {
                f.push(which, l);
            }
            let _ = client_ip(ip("10.0.0.2"), &f, which, &[cidr("10.0.0.0", 8)]);
        }
    }
}
