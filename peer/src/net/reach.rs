//! Staying reachable while serving: keep-alives to the phone books (so they can forward punch
//! requests and relay calls to us), a listening connection at each friend's peer relay, a port mapped on our router (UPnP IGD, NAT-PMP or PCP) and
//! the signed address candidates published from both, kept up to date. With a peer relay of
//! our own ([`RelayListener`]), its TCP port is mapped too and its address published as the
//! `relay` candidate. One call for the CLI's `serve` and for [`Node`](crate::Node).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use phonebook_proto::{Candidate, CandidateKind};

use crate::net::portmap::{Mapping, PortMapConfig, PortMapper, Status, Transport};
use crate::net::traversal::{Discovery, Traversal};
use crate::phonebook::PhoneBook;

/// How long start-up waits for the phone books' UDP services before publishing candidates.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// What [`Reach::start`] found.
#[derive(Debug, Clone)]
pub struct Reached {
    /// How our NAT maps.
    pub discovery: Discovery,
    /// The candidates published.
    pub candidates: Vec<Candidate>,
    /// The port mapped on our router, if any.
    pub mapping: Option<Mapping>,
    /// Why none was mapped (`None` with port mapping off).
    pub mapper_status: Option<Status>,
    /// The TCP port of our peer relay mapped on our router, if any.
    pub relay_mapping: Option<Mapping>,
    /// Why none was mapped (`None` without a peer relay, or with port mapping off).
    pub relay_mapper_status: Option<Status>,
    /// The address published for our peer relay (the `relay` candidate), if any.
    pub relay_addr: Option<SocketAddr>,
}

/// A peer relay we run for our friends (docs/PROTOCOL.md "Peer relays"), for
/// [`Reach::start_with_relay`] to map on the router and publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayListener {
    /// Where it listens for TCP (`PeerRelay::local_addr`).
    pub local: SocketAddr,
    /// The address friends reach it at, given outright (the CLI's `--relay-public`): published
    /// whatever the router maps.
    pub public: Option<SocketAddr>,
}

/// The address to publish for our peer relay: the one given outright, else the TCP port
/// mapped on our router (`mapped`), else the address of our first `mapped`, `reflexive` or
/// `v6` candidate with the relay's port (reachable only if that TCP port is forwarded by hand
/// or the host is not behind a NAT). `None`: nothing is known.
pub fn relay_address(
    relay: &RelayListener,
    mapped: Option<SocketAddr>,
    candidates: &[Candidate],
) -> Option<SocketAddr> {
    relay.public.or(mapped).or_else(|| {
        candidates
            .iter()
            .find(|c| {
                matches!(
                    c.kind,
                    CandidateKind::Mapped | CandidateKind::Reflexive | CandidateKind::V6
                )
            })
            .map(|c| SocketAddr::new(c.addr.ip(), relay.local.port()))
    })
}

/// Whether the router can forward to a TCP listener at `local`: not on loopback, and on IPv4
/// or every address (a port mapping forwards IPv4 to our LAN address).
fn tcp_mappable(local: SocketAddr) -> bool {
    match local {
        SocketAddr::V4(a) => !a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().is_unspecified(),
    }
}

/// Publishes our peer relay's address (see [`relay_address`]) with the candidates `book`
/// publishes now and the TCP mapping of `mapper`; returns it.
pub(crate) fn publish_relay(
    book: &PhoneBook,
    relay: &RelayListener,
    mapper: Option<&PortMapper>,
) -> Option<SocketAddr> {
    let mapped = mapper.and_then(|m| m.mapping()).map(|m| m.external);
    let addr = relay_address(relay, mapped, &book.candidates());
    if book.set_relay_addr(addr) {
        log::info!("peer relay: publishing {addr:?}");
    }
    addr
}

/// Publishes our peer relay's address again each time its TCP mapping changes (renewed at
/// another port, lost, found again).
pub(crate) async fn follow_relay(
    book: Arc<PhoneBook>,
    relay: RelayListener,
    mapper: Arc<PortMapper>,
) {
    let mut seen = mapper.status();
    loop {
        seen = mapper.changed(&seen).await;
        publish_relay(&book, &relay, Some(&mapper));
    }
}

/// The tasks that keep us reachable; dropping them stops them (call [`Reach::close`] to also
/// remove the router's mapping now rather than when its lease ends).
#[derive(Debug)]
pub struct Reach {
    tasks: Vec<smol::Task<()>>,
    mapper: Option<Arc<PortMapper>>,
    /// The mapping of our peer relay's TCP port.
    relay_mapper: Option<Arc<PortMapper>>,
}

impl Reach {
    /// Starts keep-alives, maps a port unless `portmap` is off (or the socket is on loopback),
    /// publishes candidates (waiting
    /// at most [`PUBLISH_WAIT`] for the phone books) and follows the mapping's changes.
    pub async fn start(traversal: &Arc<Traversal>, portmap: bool) -> (Reach, Reached) {
        Self::start_with_relay(traversal, portmap, None).await
    }

    /// [`Reach::start`] for a player that runs a peer relay too: unless `portmap` is off or
    /// the relay's address is given outright, the relay's TCP port is mapped on the router (at the same time as the QUIC port, with the
    /// same protocols, bounds and renewals; a failure is only logged), and the relay's address
    /// ([`relay_address`]: one given outright wins over the mapping) is published as the
    /// `relay` candidate and kept current as the mapping changes.
    pub async fn start_with_relay(
        traversal: &Arc<Traversal>,
        portmap: bool,
        relay: Option<RelayListener>,
    ) -> (Reach, Reached) {
        let mut tasks = Vec::new();
        // Keep-alives first: until a phone book holds our mapping it cannot tell us that a
        // player wants to connect.
        let again = traversal.clone();
        tasks.push(traversal.keep_alive(move |observed| again.update_reflexive(observed)));
        // Friends' peer relays cannot call us: a listening connection at each.
        tasks.push(traversal.hold_peer_relays());
        let endpoint = traversal.endpoint();
        // A socket on loopback cannot be forwarded to (and tests stay off the real network).
        let quic = async {
            match (portmap, endpoint.local_addr()) {
                (true, Ok(local)) if !local.ip().is_loopback() => Some(
                    PortMapper::start(local, PortMapConfig::default(), endpoint.spawner()).await,
                ),
                _ => None,
            }
        };
        let tcp = async {
            match relay {
                // An address given outright is forwarded by hand: asking the router for the
                // same port could only get another one that nobody would use.
                Some(r) if portmap && r.public.is_none() && tcp_mappable(r.local) => {
                    let config = PortMapConfig::default();
                    let spawner = endpoint.spawner();
                    let m = PortMapper::start_for(Transport::Tcp, r.local, config, spawner).await;
                    if let Status::Unmapped(why) = m.status() {
                        log::info!("peer relay: TCP port {} not mapped ({why})", r.local.port());
                    }
                    Some(m)
                }
                _ => None,
            }
        };
        // Both bounded by the discovery timeout, side by side.
        let (mapper, relay_mapper) = smol::future::zip(quic, tcp).await;
        let mapping = mapper.as_ref().and_then(|m| m.mapping());
        let (discovery, candidates) = traversal
            .publish_candidates(mapping.map(|m| m.external), PUBLISH_WAIT)
            .await;
        let mapper_status = mapper.as_ref().map(|m| m.status());
        let mapper = mapper.map(Arc::new);
        let relay_mapping = relay_mapper.as_ref().and_then(|m| m.mapping());
        let relay_mapper_status = relay_mapper.as_ref().map(|m| m.status());
        let relay_mapper = relay_mapper.map(Arc::new);
        let book = traversal.phonebook().cloned();
        let relay_addr = match (&relay, &book) {
            (Some(r), Some(b)) => {
                if let Some(m) = &relay_mapper {
                    let follow = follow_relay(b.clone(), *r, m.clone());
                    tasks.push(endpoint.spawner().spawn(follow));
                }
                publish_relay(b, r, relay_mapper.as_deref())
            }
            _ => None,
        };
        if let Some(m) = &mapper {
            let (watched, t) = (m.clone(), traversal.clone());
            tasks.push(endpoint.spawner().spawn(async move {
                let mut seen = watched.status();
                loop {
                    seen = watched.changed(&seen).await;
                    t.update_mapped(watched.mapping().map(|m| m.external));
                }
            }));
        }
        (
            Reach {
                tasks,
                mapper,
                relay_mapper,
            },
            Reached {
                discovery,
                candidates,
                mapping,
                mapper_status,
                relay_mapping,
                relay_mapper_status,
                relay_addr,
            },
        )
    }

    /// Stops the tasks and removes the router's mappings (each bounded by its close timeout;
    /// the two side by side).
    pub async fn close(self) {
        drop(self.tasks);
        let close = |m: Option<Arc<PortMapper>>| async move {
            if let Some(m) = m.and_then(Arc::into_inner) {
                m.close().await;
            }
        };
        smol::future::zip(close(self.mapper), close(self.relay_mapper)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::portmap::tests::FakeGateway;
    use crate::net::portmap::{Protocol, until};
    use crate::phonebook::PhoneBookConfig;
    use crate::{Identity, PlayerName};
    use std::time::Instant;

    const RELAY_PORT: u16 = 4443;

    fn book() -> Arc<PhoneBook> {
        let config = PhoneBookConfig {
            // Never contacted: these tests only read what would be signed into a registration.
            urls: vec!["http://127.0.0.1:9".into()],
            ..Default::default()
        };
        let name = PlayerName::parse("Relay Owner@Gilgamesh").unwrap();
        Arc::new(PhoneBook::new(&Identity::generate(), name, config).unwrap())
    }

    fn relay_candidate(book: &PhoneBook) -> Option<SocketAddr> {
        book.candidates()
            .iter()
            .find(|c| c.kind == CandidateKind::Relay)
            .map(|c| c.addr)
    }

    fn candidate(kind: CandidateKind, addr: &str) -> Candidate {
        Candidate::new(kind, addr.parse().unwrap())
    }

    #[test]
    fn relay_address_prefers_what_is_given_then_the_mapping() {
        let relay = RelayListener {
            local: "0.0.0.0:4443".parse().unwrap(),
            public: None,
        };
        let list = [
            candidate(CandidateKind::Lan, "192.168.1.5:5000"),
            candidate(CandidateKind::Reflexive, "203.0.113.7:61000"),
        ];
        let mapped: SocketAddr = "198.51.100.1:20001".parse().unwrap();
        // The mapping beats the guess from our public IP.
        assert_eq!(relay_address(&relay, Some(mapped), &list), Some(mapped));
        // Without a mapping: our public IP with the relay's port, as before.
        assert_eq!(
            relay_address(&relay, None, &list),
            Some("203.0.113.7:4443".parse().unwrap())
        );
        assert_eq!(relay_address(&relay, None, &list[..1]), None);
        // An address given outright wins over both.
        let given: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let relay = RelayListener {
            public: Some(given),
            ..relay
        };
        assert_eq!(relay_address(&relay, Some(mapped), &list), Some(given));
        assert_eq!(relay_address(&relay, None, &[]), Some(given));
    }

    #[test]
    fn only_ipv4_or_every_address_is_mapped() {
        assert!(tcp_mappable("0.0.0.0:4443".parse().unwrap()));
        assert!(tcp_mappable("[::]:4443".parse().unwrap()));
        assert!(tcp_mappable("192.168.1.5:4443".parse().unwrap()));
        assert!(!tcp_mappable("127.0.0.1:4443".parse().unwrap()));
        assert!(!tcp_mappable("[::1]:4443".parse().unwrap()));
        assert!(!tcp_mappable("[2001:db8::5]:4443".parse().unwrap()));
    }

    #[test]
    fn a_peer_relay_is_published_at_its_mapped_tcp_port_and_follows_it() {
        let gateway = FakeGateway::start_pcp(2);
        let book = book();
        // The QUIC candidates already published: a reflexive address.
        book.set_candidates(vec![candidate(
            CandidateKind::Reflexive,
            "203.0.113.7:61000",
        )]);
        let relay = RelayListener {
            local: SocketAddr::from(([0, 0, 0, 0], RELAY_PORT)),
            public: None,
        };
        smol::block_on(async {
            let mapper = gateway.mapper(Transport::Tcp, RELAY_PORT, 2).await;
            let m = mapper.mapping().expect("mapped");
            assert_eq!((m.protocol, m.transport), (Protocol::Pcp, Transport::Tcp));
            assert_eq!(m.internal.port(), RELAY_PORT);
            let first: SocketAddr = "198.51.100.1:20001".parse().unwrap();
            assert_eq!(m.external, first);
            assert_eq!(publish_relay(&book, &relay, Some(&mapper)), Some(first));
            assert_eq!(relay_candidate(&book), Some(first));

            // The renewal moves the port (the fake gateway's way): the candidate follows.
            let mapper = Arc::new(mapper);
            let follow = smol::spawn(follow_relay(book.clone(), relay, mapper.clone()));
            let moved = until(Instant::now() + Duration::from_secs(10), async {
                while relay_candidate(&book) == Some(first) {
                    smol::Timer::after(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(
                moved.is_some(),
                "the relay candidate did not follow the renewal"
            );
            assert_eq!(
                relay_candidate(&book),
                Some("198.51.100.1:20002".parse().unwrap())
            );
            let _ = follow.cancel().await;
            Arc::into_inner(mapper).expect("one owner").close().await;
        });

        // With the mapping gone: back to our public IP with the relay's port.
        assert_eq!(
            publish_relay(&book, &relay, None),
            Some("203.0.113.7:4443".parse().unwrap())
        );
        // An address given outright stays published whatever the router maps.
        let given: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let relay = RelayListener {
            public: Some(given),
            ..relay
        };
        let gateway = FakeGateway::start_pcp(7200);
        smol::block_on(async {
            let mapper = gateway.mapper(Transport::Tcp, RELAY_PORT, 7200).await;
            assert!(mapper.mapping().is_some(), "mapped all the same");
            assert_eq!(publish_relay(&book, &relay, Some(&mapper)), Some(given));
            mapper.close().await;
        });
        assert_eq!(relay_candidate(&book), Some(given));
    }
}
