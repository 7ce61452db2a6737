//! Connecting to a player through NATs.
//!
//! At once, in parallel: a QUIC handshake to each of the target's addresses (its signed
//! candidates and the address the phone book reported); a punch request to every phone book we
//! are registered with, which forwards it through the target's keep-alive mapping so that the
//! target sends punches to us; and punches of our own to the target's addresses, which open our
//! NAT toward them. When a punch or an acknowledgement arrives from an address, that path is
//! open: a fresh handshake goes there (an earlier one may have been dropped by a NAT that was
//! still closed, and QUIC would retry it only after its one-second probe timeout). The first
//! handshake to complete wins; the rest are dropped. Nothing waits longer than the endpoint's
//! connect timeout.
//!
//! quinn's client accepts packets only from the address it dialled: dialling the address a
//! punch came from (a symmetric NAT's fresh port, a peer-reflexive address) is what makes
//! those paths usable.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use phonebook_proto::udp::{Message, PunchStatus};
use phonebook_proto::{Candidate, CandidateKind, PlayerName};

use super::{Traversal, random8};
use crate::identity::PeerId;
use crate::net::endpoint::{ConnectError, PeerConnection};
use crate::phonebook::Found;

/// How the address that was dialled became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// One of the target's signed candidates.
    Candidate(CandidateKind),
    /// The address in the record's `ip` and `port` fields.
    Reported,
    /// The source of a punch: an address nobody published (a symmetric NAT's port for us).
    PeerReflexive,
    /// Given by the caller (`--peer ADDR,KEY`).
    Given,
    /// Through a phone book's relay (the address is a virtual one, see
    /// [`crate::net::relay::paths`]).
    Relayed,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Candidate(k) => f.write_str(k.as_str()),
            Self::Reported => f.write_str("reported"),
            Self::PeerReflexive => f.write_str("peer-reflexive"),
            Self::Given => f.write_str("given"),
            Self::Relayed => f.write_str("relayed"),
        }
    }
}

/// Whom to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The player's name: with it, phone books are asked to coordinate punching.
    pub name: Option<PlayerName>,
    /// The key the target must prove.
    pub key: PeerId,
    /// Its known addresses.
    pub addrs: Vec<(SocketAddr, PathKind)>,
}

impl Target {
    /// A target at one address given by the caller (no phone book involved).
    pub fn given(addr: SocketAddr, key: PeerId) -> Self {
        Self {
            name: None,
            key,
            addrs: vec![(addr, PathKind::Given)],
        }
    }

    /// A target from a verified lookup: its candidates, then the reported address.
    pub fn found(found: &Found) -> Self {
        Self::from_parts(
            Some(found.name.clone()),
            found.key,
            &found.record.candidates,
            found.addr,
        )
    }

    /// A target from a name, candidates and the reported address.
    pub fn from_parts(
        name: Option<PlayerName>,
        key: PeerId,
        candidates: &[Candidate],
        reported: SocketAddr,
    ) -> Self {
        let mut addrs: Vec<(SocketAddr, PathKind)> = candidates
            .iter()
            // A peer relay's address is TCP, not QUIC.
            .filter(|c| c.kind != phonebook_proto::CandidateKind::Relay)
            .map(|c| (c.addr, PathKind::Candidate(c.kind)))
            .collect();
        if !addrs.iter().any(|(a, _)| *a == reported) {
            addrs.push((reported, PathKind::Reported));
        }
        Self { name, key, addrs }
    }
}

/// A connection and the path it took.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The connection.
    pub conn: PeerConnection,
    /// The address that answered (personal data).
    pub addr: SocketAddr,
    /// How that address was known.
    pub kind: PathKind,
    /// From the start of the attempt to the end of the handshake.
    pub elapsed: Duration,
}

enum Event {
    Dialed(SocketAddr, PathKind, Result<PeerConnection, ConnectError>),
    Relayed(Result<(SocketAddr, PeerConnection), String>),
    Heard(SocketAddr),
    Status(Option<PunchStatus>),
}

impl Traversal {
    /// Connects to `target` as described in the module's documentation.
    pub async fn connect(self: &Arc<Self>, target: &Target) -> Result<Connected, ConnectError> {
        let start = Instant::now();
        let timeout = self.endpoint.connect_timeout();
        let deadline = start + timeout;
        let (tx, rx) = smol::channel::unbounded::<Event>();
        let mut tasks: Vec<smol::Task<()>> = Vec::new();
        let spawner = self.endpoint.spawner().clone();

        let nonce = random8();
        let heard = self.listen_punches(nonce);
        let _forget = Forget(self, nonce);
        if let Some(heard) = heard {
            let tx = tx.clone();
            tasks.push(spawner.spawn(async move {
                while let Ok(a) = heard.recv().await {
                    if tx.send(Event::Heard(a)).await.is_err() {
                        return;
                    }
                }
            }));
        }

        // Ask the phone books to tell the target.
        let mut asked = 0usize;
        if let Some(name) = &target.name {
            let extra = self.extra_addrs();
            for book in self.books() {
                asked += 1;
                let counter = self.next_counter();
                let bytes = Message::PunchRequest {
                    auth: book.token.auth,
                    counter,
                    nonce,
                    target: phonebook_proto::LookupId::of(name),
                    extra,
                }
                .encode(&book.token.key);
                let (me, tx) = (self.clone(), tx.clone());
                tasks.push(spawner.spawn(async move {
                    let status = match me.ask(book.addr, counter, &bytes).await {
                        Some((from, Message::PunchAnswer { status, .. })) if from == book.addr => {
                            Some(status)
                        }
                        _ => None,
                    };
                    let _ = tx.send(Event::Status(status)).await;
                }));
            }
        }

        // Our own punches toward every known address.
        let targets: Vec<SocketAddr> = target.addrs.iter().map(|(a, _)| *a).collect();
        let me = self.clone();
        tasks.push(
            spawner
                .spawn(async move { me.punch_rounds(nonce, &targets, u32::MAX, deadline).await }),
        );

        let dial = |addr: SocketAddr, kind: PathKind| {
            let tx = tx.clone();
            let endpoint = self.endpoint.clone();
            let key = target.key;
            spawner.spawn(async move {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let result = smol::future::or(endpoint.connect_once(addr, key), async move {
                    smol::Timer::after(remaining).await;
                    Err(ConnectError::TimedOut)
                })
                .await;
                let _ = tx.send(Event::Dialed(addr, kind, result)).await;
            })
        };
        for (addr, kind) in &target.addrs {
            tasks.push(dial(*addr, *kind));
        }

        // The relays, if no direct path opened within `relay_after` (happy eyeballs; at once
        // when our UDP is known to be blocked): one phone book's relay after another, each
        // `relay_stagger` after the previous one, the first session to complete a handshake
        // wins. Any phone book both players use will do, so one that is down costs a stagger.
        // Friends' peer relays come first (they spare the phone book's operator), then the
        // phone books' relays.
        let via = self
            .config
            .relay_via
            .len()
            .min(super::peer_relays::MAX_RELAY_VIA);
        let phone_books = self.relay_books();
        let relay_tries = phone_books.len() + via;
        if let Some(name) = target.name.clone() {
            let first = if self.udp_blocked() {
                Duration::ZERO
            } else {
                self.config.relay_after
            };
            for i in 0..relay_tries {
                let (me, tx, key, name) = (self.clone(), tx.clone(), target.key, name.clone());
                let after = first + self.config.relay_stagger * i as u32;
                let phone_book = i.checked_sub(via).and_then(|j| phone_books.get(j).cloned());
                tasks.push(spawner.spawn(async move {
                    smol::Timer::after(after).await;
                    let result = async {
                        let vaddr = match phone_book {
                            Some(book) => me.relays().open(&book, &name).await,
                            None => {
                                let books = me.peer_relay_books().await;
                                let index = crate::net::relay::PEER_RELAY_INDEX + i;
                                match books.into_iter().find(|b| b.index == index) {
                                    Some(book) => me.relays().open_key(&book, &key).await,
                                    None => Err(crate::net::relay::RelayError::NoRelay),
                                }
                            }
                        }
                        .map_err(|e| e.to_string())?;
                        match me.endpoint.connect_once(vaddr, key).await {
                            Ok(conn) => Ok((vaddr, conn)),
                            Err(e) => {
                                me.endpoint.relay_paths().remove(vaddr);
                                Err(e.to_string())
                            }
                        }
                    }
                    .await;
                    let _ = tx.send(Event::Relayed(result)).await;
                }));
            }
        }

        let mut redialled: HashSet<SocketAddr> = HashSet::new();
        let mut statuses: Vec<Option<PunchStatus>> = Vec::new();
        let mut heard_any = false;
        let mut relay_failed: Option<String> = None;
        let mut relay_failures = 0usize;
        let mut tried: Vec<SocketAddr> = target.addrs.iter().map(|(a, _)| *a).collect();
        let wait_events = async {
            loop {
                let Ok(ev) = rx.recv().await else {
                    return None;
                };
                match ev {
                    Event::Dialed(addr, kind, Ok(conn)) => {
                        return Some(Ok(Connected {
                            conn,
                            addr,
                            kind,
                            elapsed: start.elapsed(),
                        }));
                    }
                    Event::Dialed(_, _, Err(e)) if e.is_definitive() => return Some(Err(e)),
                    Event::Relayed(Ok((vaddr, conn))) => {
                        return Some(Ok(Connected {
                            conn,
                            addr: vaddr,
                            kind: PathKind::Relayed,
                            elapsed: start.elapsed(),
                        }));
                    }
                    Event::Relayed(Err(e)) => {
                        log::debug!("relayed attempt failed: {e}");
                        relay_failures += 1;
                        relay_failed = Some(e);
                    }
                    Event::Dialed(addr, _, Err(e)) => {
                        log::debug!("attempt to {addr} failed: {e}");
                    }
                    Event::Heard(addr) => {
                        heard_any = true;
                        if redialled.insert(addr) && redialled.len() <= MAX_REDIALS {
                            let kind = target
                                .addrs
                                .iter()
                                .find(|(a, _)| *a == addr)
                                .map_or(PathKind::PeerReflexive, |(_, k)| *k);
                            if !tried.contains(&addr) {
                                tried.push(addr);
                            }
                            tasks.push(dial(addr, kind));
                        }
                    }
                    Event::Status(s) => {
                        statuses.push(s);
                        if statuses.len() == asked && statuses.iter().all(Option::is_none) {
                            self.note_silent_round();
                        }
                    }
                }
            }
        };
        let outcome = smol::future::or(wait_events, async {
            smol::Timer::at(deadline).await;
            None
        })
        .await;
        if let Some(Ok(c)) = &outcome
            && c.kind == PathKind::Relayed
        {
            // Keep punching a while: a direct path that opens takes the connection over.
            let (me, vaddr) = (self.clone(), c.addr);
            let until = Instant::now() + self.config.punch_for;
            let forget = _forget.keep();
            spawner
                .spawn(async move {
                    let _forget = forget;
                    let _tasks = tasks;
                    let wait = async {
                        while let Ok(ev) = rx.recv().await {
                            if let Event::Heard(addr) = ev
                                && me.endpoint.relay_paths().set_direct(vaddr, addr)
                            {
                                me.stats.upgraded.fetch_add(1, Ordering::Relaxed);
                                log::debug!("relayed connection moved to a direct path");
                                return;
                            }
                        }
                    };
                    smol::future::or(wait, async {
                        smol::Timer::at(until).await;
                    })
                    .await;
                })
                .detach();
            return outcome.expect("checked above");
        }
        drop(tasks);
        if let Some(result) = outcome {
            return result;
        }
        if let Some(e) = &relay_failed {
            log::debug!("no relay either ({relay_failures} of {relay_tries} failed; last: {e})");
        }
        let answered: Vec<PunchStatus> = statuses.iter().flatten().copied().collect();
        Err(
            if !heard_any
                && !answered.is_empty()
                && answered.iter().all(|s| *s == PunchStatus::Unknown)
            {
                ConnectError::Offline
            } else if !heard_any && !self.books().is_empty() && !self.udp_works() {
                ConnectError::UdpBlocked
            } else {
                ConnectError::NoDirectPath { tried }
            },
        )
    }

    /// Two more of our addresses for the target to punch toward, best first: a port mapped on
    /// our router (the target's punch through it makes the router send our answers from that
    /// port, which even a symmetric NAT then keeps), then IPv6 (a stateful IPv6 firewall opens
    /// only for addresses we sent to), then LAN. Taken from our published candidates, or, for
    /// a player who publishes none (a fetcher), found now.
    fn extra_addrs(&self) -> [Option<SocketAddr>; 2] {
        let published = self
            .phonebook
            .as_ref()
            .map(|p| p.candidates())
            .unwrap_or_default();
        let pick = |kind| published.iter().find(|c| c.kind == kind).map(|c| c.addr);
        let local = self.endpoint.local_addr().ok();
        let port = local.map_or(0, |a| a.port());
        let v6 = pick(CandidateKind::V6).or_else(|| match local {
            Some(SocketAddr::V6(a)) if a.ip().is_unspecified() => {
                super::local::global_v6().map(|ip| SocketAddr::new(ip, port))
            }
            _ => None,
        });
        let lan = pick(CandidateKind::Lan).or_else(|| {
            let toward = self.books().first()?.addr.ip();
            let ip = match local.map(|a| a.ip()) {
                Some(ip) if !ip.is_unspecified() => ip.to_canonical(),
                _ => super::local::source_toward(toward)?,
            };
            super::local::is_private(ip).then(|| SocketAddr::new(ip, port))
        });
        let mapped = self.mapped().filter(|m| !super::local::is_private(m.ip()));
        let mut picked = [mapped, v6, lan].into_iter().flatten();
        [picked.next(), picked.next()]
    }
}

/// Most fresh handshakes started toward addresses that punched us, per attempt.
pub const MAX_REDIALS: usize = 8;

/// Stops listening for an attempt's punches when the attempt ends.
struct Forget<'a>(&'a Arc<Traversal>, [u8; 8]);

impl Forget<'_> {
    /// The same duty, for a task that outlives the attempt.
    fn keep(self) -> OwnedForget {
        let owned = OwnedForget(self.0.clone(), self.1);
        std::mem::forget(self);
        owned
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.stop_listening(&self.1);
    }
}

/// [`Forget`] owning its traversal.
struct OwnedForget(Arc<Traversal>, [u8; 8]);

impl Drop for OwnedForget {
    fn drop(&mut self) {
        self.0.stop_listening(&self.1);
    }
}
