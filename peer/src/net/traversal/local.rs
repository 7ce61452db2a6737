//! The addresses a player offers (signed into its registration as candidates): its own LAN
//! address for players behind the same router, the reflexive address the phone book sees,
//! a port mapped on the router, and a global IPv6 address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};

use phonebook_proto::{Candidate, CandidateKind, MAX_CANDIDATES};

use super::discovery::MappingBehaviour;

/// An address of a public resolver, used only to ask the kernel which source address it would
/// pick for the internet (a UDP `connect` sends nothing).
const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);

/// The local address the kernel picks to reach `toward` (no packet is sent).
pub fn source_toward(toward: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match toward {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(SocketAddr::new(toward, 9)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Whether `ip` is a private (RFC 1918) or unique-local address: one other players can use
/// only from the same network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Whether `ip` is in the carrier-grade NAT range (100.64.0.0/10, RFC 6598).
pub fn is_shared(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64,
        IpAddr::V6(_) => false,
    }
}

/// Whether `ip` is a global IPv6 unicast address (2000::/3).
pub fn is_global_v6(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xe000) == 0x2000,
        IpAddr::V4(_) => false,
    }
}

/// Our global IPv6 address, if the system has a route for it.
pub fn global_v6() -> Option<IpAddr> {
    source_toward(PROBE_V6.into()).filter(|ip| is_global_v6(*ip))
}

/// What the candidates are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// The QUIC socket's port.
    pub local_port: u16,
    /// Our address toward the phone book.
    pub lan: Option<IpAddr>,
    /// Our global IPv6 address (only when the socket takes IPv6).
    pub v6: Option<IpAddr>,
    /// The phone book's view of us.
    pub reflexive: Option<SocketAddr>,
    /// Whether the reflexive address is the same toward every destination.
    pub mapping: MappingBehaviour,
    /// A port mapped on our router.
    pub mapped: Option<SocketAddr>,
}

/// The candidate list, best first: mapped, reflexive (unless the NAT is symmetric), LAN
/// (private addresses only), IPv6; no address twice, at most [`MAX_CANDIDATES`].
pub fn gather(i: &Inputs) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |kind, addr: SocketAddr| {
        if phonebook_proto::candidate::usable(&addr)
            && !out.iter().any(|c| c.addr == addr)
            && out.len() < MAX_CANDIDATES
        {
            out.push(Candidate::new(kind, addr));
        }
    };
    // Behind two NATs the router's "external" address is private or carrier-grade, or not
    // the address the phone book sees: nobody outside can use it.
    if let Some(m) = i.mapped
        && !is_private(m.ip())
        && !is_shared(m.ip())
        && i.reflexive.is_none_or(|r| r.ip() == m.ip())
    {
        push(CandidateKind::Mapped, m);
    }
    if let Some(r) = i.reflexive
        && i.mapping != MappingBehaviour::DestinationDependent
    {
        push(CandidateKind::Reflexive, r);
    }
    if let Some(lan) = i.lan.filter(|ip| is_private(*ip)) {
        push(CandidateKind::Lan, SocketAddr::new(lan, i.local_port));
    }
    if let Some(v6) = i.v6.filter(|ip| is_global_v6(*ip)) {
        push(CandidateKind::V6, SocketAddr::new(v6, i.local_port));
    }
    out
}

/// The port to put in the record's `port` field (the plan's, read by clients that know no
/// candidates): the best candidate's, else the local one.
pub fn best_port(candidates: &[Candidate], local_port: u16) -> u16 {
    candidates
        .iter()
        .find(|c| matches!(c.kind, CandidateKind::Mapped | CandidateKind::Reflexive))
        .map_or(local_port, |c| c.addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            local_port: 7000,
            lan: Some("10.1.0.2".parse().unwrap()),
            v6: Some("2001:db8::2".parse().unwrap()),
            reflexive: Some("198.51.100.2:7000".parse().unwrap()),
            mapping: MappingBehaviour::EndpointIndependent,
            mapped: Some("198.51.100.2:7001".parse().unwrap()),
        }
    }

    #[test]
    fn order_and_filters() {
        let all = gather(&inputs());
        let kinds: Vec<_> = all.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                CandidateKind::Mapped,
                CandidateKind::Reflexive,
                CandidateKind::Lan,
                CandidateKind::V6
            ]
        );
        assert_eq!(best_port(&all, 7000), 7001);
        // A symmetric NAT's reflexive address helps nobody.
        let sym = gather(&Inputs {
            mapping: MappingBehaviour::DestinationDependent,
            mapped: None,
            ..inputs()
        });
        assert!(sym.iter().all(|c| c.kind != CandidateKind::Reflexive));
        assert_eq!(best_port(&sym, 7000), 7000);
        // A public host: its LAN address is not private, the reflexive one says it all.
        let public = gather(&Inputs {
            lan: Some("198.51.100.2".parse().unwrap()),
            v6: Some("fe80::1".parse().unwrap()),
            mapped: None,
            ..inputs()
        });
        assert_eq!(public.len(), 1);
        assert_eq!(public[0].kind, CandidateKind::Reflexive);
        // Double NAT: the router's external address is not what the phone book sees.
        for outer in ["100.64.1.2:7001", "192.168.0.9:7001", "198.51.100.99:7001"] {
            let double = gather(&Inputs {
                mapped: Some(outer.parse().unwrap()),
                ..inputs()
            });
            assert!(
                double.iter().all(|c| c.kind != CandidateKind::Mapped),
                "{outer}"
            );
        }
    }

    #[test]
    fn address_classes() {
        assert!(is_private("192.168.1.2".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
        assert!(!is_private("203.0.113.1".parse().unwrap()));
        assert!(is_global_v6("2001:db8::1".parse().unwrap()));
        assert!(!is_global_v6("fe80::1".parse().unwrap()));
        assert!(!is_global_v6("::ffff:1.2.3.4".parse().unwrap()));
        assert_eq!(
            source_toward("127.0.0.1".parse().unwrap()),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
