//! Address candidates: the addresses at which a player may be reached, signed by the player
//! inside its registration (record version 2, docs/PROTOCOL.md "Candidates").
//!
//! Text form: `KIND ADDR`, for example `reflexive 203.0.113.7:40123` or
//! `v6 [2001:db8::7]:7000`. A record lists at most [`MAX_CANDIDATES`], no address twice.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Most candidates one record may carry.
pub const MAX_CANDIDATES: usize = 8;
/// Longest text form of one candidate (`reflexive [` + a full IPv6 address + `]:65535`).
pub const MAX_CANDIDATE_TEXT: usize = 64;

/// How the owner learned the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateKind {
    /// An address of the owner's own interface on a private network: for players behind the
    /// same router.
    Lan,
    /// The address the phone book saw the owner's QUIC socket send from (the NAT's mapping).
    Reflexive,
    /// A port mapped on the owner's router (UPnP IGD, NAT-PMP or PCP).
    Mapped,
    /// A global IPv6 address of the owner's own interface.
    V6,
    /// The TCP address of the owner's peer relay (docs/PROTOCOL.md "Peer relays"): the owner
    /// relays for its friends there. Not a QUIC address: never dialled.
    Relay,
}

impl CandidateKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Reflexive => "reflexive",
            Self::Mapped => "mapped",
            Self::V6 => "v6",
            Self::Relay => "relay",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lan" => Self::Lan,
            "reflexive" => Self::Reflexive,
            "mapped" => Self::Mapped,
            "v6" => Self::V6,
            "relay" => Self::Relay,
            _ => return None,
        })
    }
}

/// One address at which the owner may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// How it was learned.
    pub kind: CandidateKind,
    /// The UDP address.
    pub addr: SocketAddr,
}

/// Why a candidate or a candidate list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CandidateError {
    /// Not `KIND ADDR` with a known kind.
    Syntax,
    /// Port 0, an unspecified, multicast or broadcast address: nobody can be reached there.
    Unusable,
    /// More than [`MAX_CANDIDATES`].
    TooMany,
    /// The same address twice.
    Duplicate,
}

impl fmt::Display for CandidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "must be \"KIND ADDR\" with KIND lan, reflexive, mapped, v6 or relay and ADDR IP:PORT ([IPv6]:PORT)",
            Self::Unusable => "port 0, an unspecified, multicast or broadcast address",
            Self::TooMany => "more than 8 candidates",
            Self::Duplicate => "the same address twice",
        })
    }
}

impl std::error::Error for CandidateError {}

impl Candidate {
    /// A candidate.
    pub fn new(kind: CandidateKind, addr: SocketAddr) -> Self {
        Self { kind, addr }
    }

    /// Parses the text form and refuses unusable addresses.
    pub fn parse(s: &str) -> Result<Self, CandidateError> {
        if s.len() > MAX_CANDIDATE_TEXT {
            return Err(CandidateError::Syntax);
        }
        let (kind, addr) = s.split_once(' ').ok_or(CandidateError::Syntax)?;
        let kind = CandidateKind::parse(kind).ok_or(CandidateError::Syntax)?;
        let addr: SocketAddr = addr.parse().map_err(|_| CandidateError::Syntax)?;
        // `SocketAddr`'s parser accepts scope ids and flow info only in forms we never print;
        // compare with our own text to keep one spelling per address (signatures cover text).
        let c = Candidate { kind, addr };
        if c.to_string() != s {
            return Err(CandidateError::Syntax);
        }
        if !usable(&addr) {
            return Err(CandidateError::Unusable);
        }
        Ok(c)
    }
}

impl std::str::FromStr for Candidate {
    type Err = CandidateError;

    fn from_str(s: &str) -> Result<Self, CandidateError> {
        Candidate::parse(s)
    }
}

/// Whether anyone could send to `addr`.
pub fn usable(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // IPv6 without scope id or flow info: `[ip]:port`.
        match self.addr {
            SocketAddr::V4(a) => write!(f, "{} {}:{}", self.kind.as_str(), a.ip(), a.port()),
            SocketAddr::V6(a) => write!(f, "{} [{}]:{}", self.kind.as_str(), a.ip(), a.port()),
        }
    }
}

/// Checks a list: at most [`MAX_CANDIDATES`], every address usable and listed once.
pub fn check_list(list: &[Candidate]) -> Result<(), CandidateError> {
    if list.len() > MAX_CANDIDATES {
        return Err(CandidateError::TooMany);
    }
    for (i, c) in list.iter().enumerate() {
        if !usable(&c.addr) {
            return Err(CandidateError::Unusable);
        }
        if list[..i].iter().any(|o| o.addr == c.addr) {
            return Err(CandidateError::Duplicate);
        }
    }
    Ok(())
}

/// The signed form of a list: the text forms joined by `,` (empty for none).
pub fn signed_text(list: &[Candidate]) -> String {
    let mut s = String::new();
    for (i, c) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&c.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_forms() {
        let c = Candidate::parse("reflexive 203.0.113.7:40123").unwrap();
        assert_eq!(c.kind, CandidateKind::Reflexive);
        assert_eq!(c.addr, "203.0.113.7:40123".parse().unwrap());
        let v6 = Candidate::parse("v6 [2001:db8::7]:7000").unwrap();
        assert_eq!(v6.to_string(), "v6 [2001:db8::7]:7000");
        for bad in [
            "",
            "lan",
            "lan ",
            "wan 10.0.0.1:1",
            "lan 10.0.0.1",
            "lan  10.0.0.1:1",
            "Lan 10.0.0.1:1",
            "v6 [2001:db8::7%1]:7000",
            "v6 [2001:0db8::7]:7000",
            "lan 010.0.0.1:1",
        ] {
            assert_eq!(
                Candidate::parse(bad),
                Err(CandidateError::Syntax),
                "{bad:?}"
            );
        }
        for bad in [
            "lan 0.0.0.0:1",
            "lan 10.0.0.1:0",
            "lan 224.0.0.1:5",
            "v6 [::]:5",
        ] {
            assert_eq!(
                Candidate::parse(bad),
                Err(CandidateError::Unusable),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lists() {
        let a = Candidate::parse("lan 10.0.0.1:7000").unwrap();
        let b = Candidate::parse("reflexive 203.0.113.1:7000").unwrap();
        assert_eq!(check_list(&[a, b]), Ok(()));
        assert_eq!(
            check_list(&[a, Candidate::new(CandidateKind::Mapped, a.addr)]),
            Err(CandidateError::Duplicate)
        );
        let many: Vec<Candidate> = (1..=9)
            .map(|p| Candidate::new(CandidateKind::Lan, ([10, 0, 0, 1], p).into()))
            .collect();
        assert_eq!(check_list(&many), Err(CandidateError::TooMany));
        assert_eq!(check_list(&many[..8]), Ok(()));
        assert_eq!(
            signed_text(&[a, b]),
            "lan 10.0.0.1:7000,reflexive 203.0.113.1:7000"
        );
        assert_eq!(signed_text(&[]), "");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(c) = Candidate::parse(&s) {
                prop_assert_eq!(c.to_string(), s);
            }
        }

        #[test]
        fn every_usable_address_round_trips(ip in any::<std::net::IpAddr>(), port in 1u16..) {
            let c = Candidate::new(CandidateKind::Mapped, SocketAddr::new(ip, port));
            if usable(&c.addr) {
                prop_assert_eq!(Candidate::parse(&c.to_string()), Ok(c));
            }
        }
    }
}
