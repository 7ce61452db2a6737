//! The relay client: when no direct path opens (a network without UDP, two symmetric NATs),
//! peers reach each other through the relay that runs beside a phone book (docs/PROTOCOL.md
//! "Relay"). The relay carries the peers' own QUIC packets, so it sees only ciphertext, and the
//! transfer code does not know a path is relayed ([`paths`]).
//!
//! [`Relays`] holds at most one connection per phone book's relay and opens sessions on it:
//! to a player we fetch from ([`Relays::open`]), and for a player who wants to fetch from us
//! ([`Relays::accept`], after a phone book's relay call; [`Relays::listen`] when our network
//! lets no UDP through and no call could reach us).

pub mod client;
pub mod hub;
pub mod paths;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use phonebook_proto::PlayerName;
use phonebook_proto::relay::{CloseReason, RefuseReason, TICKET_LEN, TOKEN_LEN};

use crate::identity::{Identity, PeerId};
use crate::net::runtime::Spawner;
use crate::transfer::serve::Policy;
pub use client::RelayConn;
pub use hub::{PeerRelay, PeerRelayConfig};
pub use paths::RelayPaths;

/// [`RelayBook::index`] of the first peer relay ([`RelayBook::peer`]); phone books count from 0.
pub const PEER_RELAY_INDEX: usize = 1 << 20;

/// A phone book's relay as the last registration there announced it.
#[derive(Clone)]
pub struct RelayBook {
    /// Which configured phone book (index into the URLs).
    pub index: usize,
    /// Where the relay listens (personal data of nobody: the operator's address).
    pub addr: SocketAddr,
    /// The name for TLS (the phone book's host, or `relayHost`).
    pub host: String,
    /// SHA-256 of the relay's certificate.
    pub pin: [u8; 32],
    /// Our lookup token there, raw.
    pub token: [u8; TOKEN_LEN],
    /// For a friend's peer relay (docs/PROTOCOL.md "Peer relays"), instead of `pin` and
    /// `token`: the key it must prove and the identity we prove.
    pub peer: Option<PeerRelayAuth>,
}

/// How a peer relay and we prove ourselves: by our keys, in the TLS handshake.
#[derive(Clone, Debug)]
pub struct PeerRelayAuth {
    /// The relay's owner's key, from its verified record.
    pub relay: PeerId,
    /// Ours.
    pub identity: Arc<Identity>,
}

impl RelayBook {
    /// A friend's peer relay at `addr`, owned by `relay`; we prove `identity`.
    pub fn peer(index: usize, addr: SocketAddr, relay: PeerId, identity: Arc<Identity>) -> Self {
        Self {
            index,
            addr,
            host: crate::net::tls::SERVER_NAME.to_owned(),
            pin: [0; 32],
            token: [0; TOKEN_LEN],
            peer: Some(PeerRelayAuth { relay, identity }),
        }
    }
}

impl fmt::Debug for RelayBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayBook")
            .field("index", &self.index)
            .field("host", &self.host)
            .field("peer", &self.peer.as_ref().map(|p| p.relay))
            .finish_non_exhaustive()
    }
}

/// Why a relay could not carry a session.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayError {
    /// No phone book we are registered with announced a relay.
    NoRelay,
    /// The TCP connection failed.
    Connect(std::io::Error),
    /// The TLS handshake failed (a certificate other than the pinned one, among others).
    Tls(String),
    /// The relay refused us.
    Refused(RefuseReason),
    /// The session was closed or never opened.
    Closed(CloseReason),
    /// No answer in time.
    TimedOut,
    /// The relay broke the protocol, or the connection ended.
    Protocol,
    /// Our own limit of relayed sessions.
    Full,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRelay => f.write_str("no phone book offers a relay"),
            Self::Connect(e) => write!(f, "cannot reach the relay: {e}"),
            Self::Tls(e) => write!(f, "relay TLS handshake failed: {e}"),
            Self::Refused(r) => write!(f, "the relay refused us: {r}"),
            Self::Closed(r) => write!(f, "relay session closed: {r}"),
            Self::TimedOut => f.write_str("the relay did not answer in time"),
            Self::Protocol => f.write_str("the relay connection ended or broke the protocol"),
            Self::Full => f.write_str("too many relayed sessions"),
        }
    }
}

impl std::error::Error for RelayError {}

/// The relay connections of one endpoint.
pub struct Relays {
    paths: Arc<RelayPaths>,
    spawner: Spawner,
    timeout: Duration,
    /// One slot per phone book (by index), each with its own lock: connecting to one relay
    /// (which may hang until `timeout`) never holds up another.
    conns: std::sync::Mutex<HashMap<usize, Slot>>,
    /// Whom we accept incoming sessions from (the keys we serve); `None`: anyone the relay
    /// lets through.
    policy: std::sync::Mutex<Option<Policy>>,
}

impl fmt::Debug for Relays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relays")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

type Slot = Arc<smol::lock::Mutex<Option<Arc<RelayConn>>>>;

impl Relays {
    /// Relays over `paths` (the endpoint's), tasks on `spawner`, each step bounded by
    /// `timeout`.
    pub fn new(paths: Arc<RelayPaths>, spawner: Spawner, timeout: Duration) -> Self {
        Self {
            paths,
            spawner,
            timeout,
            conns: Default::default(),
            policy: Default::default(),
        }
    }

    /// Accepts incoming sessions only from keys `policy` admits (the serve policy), on
    /// connections made from now on. A peer relay tells its friends nothing about us unless we
    /// accept, so a player that serves friends only should set it.
    pub fn set_policy(&self, policy: Option<Policy>) {
        *self.policy.lock().expect("not poisoned") = policy;
    }

    fn slot(&self, index: usize) -> Slot {
        self.conns
            .lock()
            .expect("not poisoned")
            .entry(index)
            .or_default()
            .clone()
    }

    /// The live connection to `book`'s relay, connecting if needed.
    pub async fn conn(&self, book: &RelayBook) -> Result<Arc<RelayConn>, RelayError> {
        let slot = self.slot(book.index);
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref()
            && c.is_alive()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let policy = self.policy.lock().expect("not poisoned").clone();
        let c = RelayConn::connect(
            book.addr,
            book,
            self.paths.clone(),
            &self.spawner,
            self.timeout,
            policy,
        )
        .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A session to `target` through `book`'s relay: the virtual address to dial.
    pub async fn open(
        &self,
        book: &RelayBook,
        target: &PlayerName,
    ) -> Result<SocketAddr, RelayError> {
        let c = self.conn(book).await?;
        c.open(client::OpenTarget::Name(target), self.timeout).await
    }

    /// A session to the player whose key is `target` through a peer relay (`book.peer`).
    pub async fn open_key(
        &self,
        book: &RelayBook,
        target: &PeerId,
    ) -> Result<SocketAddr, RelayError> {
        let c = self.conn(book).await?;
        c.open(client::OpenTarget::Key(target), self.timeout).await
    }

    /// Accepts the session of a relay call from `book`'s phone book: the virtual address the
    /// requester's handshake will come from.
    pub async fn accept(
        &self,
        book: &RelayBook,
        ticket: [u8; TICKET_LEN],
    ) -> Result<SocketAddr, RelayError> {
        self.conn(book).await?.accept(ticket)
    }

    /// Holds a connection to `book`'s relay on which it tells us of incoming sessions (for a
    /// network without UDP, where no relay call reaches us).
    pub async fn listen(&self, book: &RelayBook) -> Result<(), RelayError> {
        self.conn(book).await?.listen().await
    }

    /// Whether we hold a live connection to `book`'s relay.
    pub async fn is_connected(&self, book: &RelayBook) -> bool {
        let slot = self.slot(book.index);
        let slot = slot.lock().await;
        slot.as_ref().is_some_and(|c| c.is_alive())
    }

    /// Closes every relay connection.
    pub async fn close_all(&self) {
        let slots: Vec<Slot> = self
            .conns
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        for slot in slots {
            *slot.lock().await = None;
        }
    }
}
