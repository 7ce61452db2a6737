//! NAT traversal on the QUIC socket: address discovery and keep-alives with the phone book's
//! UDP service, and hole punching that the phone book coordinates (docs/PROTOCOL.md "UDP
//! service"; the README's design notes say why it is done here rather than inside QUIC).
//!
//! One [`Traversal`] per endpoint owns the control datagrams that the socket diverts from QUIC
//! ([`crate::net::control`]) and dispatches them:
//! - answers of the phone book (binding, keep-alive, punch) go to whoever waits for them;
//! - a punch request forwarded by a phone book (tagged with our token) makes us send punches
//!   to the requester's addresses, which opens our NAT toward it;
//! - punches and their acknowledgements tell a connecting side which address of the target
//!   answers: it dials QUIC there.
//!
//! Sending and waiting live in [`discovery`], [`keepalive`] and [`punch`]; the local addresses
//! a player offers in [`local`].

pub mod discovery;
pub mod keepalive;
pub mod local;
pub mod peer_relays;
pub mod punch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phonebook_proto::udp::{self, Message};

use phonebook_proto::{Candidate, PlayerName};

use crate::identity::PeerId;
use crate::net::control::{ControlReceiver, Datagram};
use crate::net::endpoint::Endpoint;
use crate::net::relay::{RelayBook, Relays};
use crate::phonebook::{PhoneBook, UdpBook, to_peer_id};

pub use discovery::{Discovery, MappingBehaviour};
pub use keepalive::KeepAlivePolicy;
pub use punch::{Connected, PathKind, Target};

/// Most requests (bindings, keep-alives, punch requests) waiting for an answer at once.
pub const MAX_PENDING: usize = 256;
/// Most punch sessions a phone book may start on our side at once (each sends a few small
/// datagrams for [`TraversalConfig::punch_for`]); more forwards are ignored.
pub const MAX_INCOMING_PUNCHES: usize = 32;
/// Rounds of punches sent to a requester's extra (unsigned) addresses.
pub const EXTRA_ROUNDS: u32 = 2;
/// Most of our own connection attempts listening for punches at once.
pub const MAX_OUTGOING_PUNCHES: usize = 64;

/// Traversal timers and limits.
#[derive(Debug, Clone)]
pub struct TraversalConfig {
    /// Wait for one answer of a phone book before asking again.
    pub answer_timeout: Duration,
    /// Times a request to a phone book is sent before giving up.
    pub attempts: u32,
    /// Time between the first two rounds of punches; it doubles after each round, so the
    /// first rounds, which open the path, are dense and later ones cost little.
    pub punch_interval: Duration,
    /// How long a side sends punches after a request or a forward.
    pub punch_for: Duration,
    /// Keep-alive intervals.
    pub keepalive: KeepAlivePolicy,
    /// How long a connection attempt waits for a direct path before it also tries a relay
    /// (at once when our UDP is known to be blocked, [`Traversal::udp_blocked`]).
    pub relay_after: Duration,
    /// Delay between the relays of successive phone books in one attempt: the next one is
    /// tried while the previous one still may answer, so a phone book that is down (or whose
    /// packets vanish) costs this delay, not the whole connect timeout.
    pub relay_stagger: Duration,
    /// Friends whose peer relays we use (docs/PROTOCOL.md "Peer relays"), tried before the
    /// phone books' relays; at most [`peer_relays::MAX_RELAY_VIA`]. We also hold a listening
    /// connection to each, since no phone book can call us there.
    pub relay_via: Vec<PlayerName>,
}

impl Default for TraversalConfig {
    fn default() -> Self {
        Self {
            answer_timeout: Duration::from_millis(600),
            attempts: 3,
            punch_interval: Duration::from_millis(100),
            punch_for: Duration::from_secs(4),
            keepalive: KeepAlivePolicy::default(),
            relay_after: Duration::from_secs(1),
            relay_stagger: Duration::from_millis(750),
            relay_via: Vec::new(),
        }
    }
}

/// What waits for a datagram.
#[derive(Debug)]
enum Waiter {
    /// An answer of a phone book, by its id (txid or counter).
    Answer(smol::channel::Sender<(SocketAddr, Message)>),
}

#[derive(Debug, Default)]
struct State {
    /// Answers awaited, by transaction id or counter.
    pending: HashMap<u64, Waiter>,
    /// Our attempts: nonce -> where to report the addresses that punched or acknowledged.
    outgoing: HashMap<[u8; 8], smol::channel::Sender<SocketAddr>>,
    /// Punch sessions a phone book started: nonce -> (requester, until when we answer).
    incoming: HashMap<[u8; 8], (PeerId, Instant)>,
}

/// Counters of what traversal did, for `netcheck` and monitoring.
#[derive(Debug, Default)]
pub struct TraversalStats {
    /// Datagrams received from a phone book's UDP service (any answer): our UDP works.
    pub answers: AtomicU64,
    /// Forwards accepted (a fetcher asked to connect to us).
    pub forwards: AtomicU64,
    /// Forwards refused (bad tag, unknown source, too many at once).
    pub forwards_refused: AtomicU64,
    /// Punches and acknowledgements received for our attempts.
    pub punches_heard: AtomicU64,
    /// Relay calls accepted (a fetcher waits for us at a relay).
    pub relay_calls: AtomicU64,
    /// Connections that moved from a relay to a direct path.
    pub upgraded: AtomicU64,
    /// Rounds of requests sent to every phone book we are registered with that none answered.
    pub silent_rounds: AtomicU64,
}

/// NAT traversal for one endpoint.
#[derive(Debug)]
pub struct Traversal {
    endpoint: Arc<Endpoint>,
    phonebook: Option<Arc<PhoneBook>>,
    config: TraversalConfig,
    state: Mutex<State>,
    /// Counter of keep-alives and punch requests: Unix ms x 1024 at start, then +1 each, so
    /// it keeps growing across restarts (the phone book refuses a counter that does not).
    counter: AtomicU64,
    stats: TraversalStats,
    /// Our address as the phone book last saw it (keep-alive answers).
    reflexive: Mutex<Option<SocketAddr>>,
    /// What the published candidates were made of (`None` until published).
    inputs: Mutex<Option<local::Inputs>>,
    /// A port mapped on our router, also when we publish nothing (a fetcher offers it in punch
    /// requests: the target's punch through it makes our router send our answers from it).
    mapped: Mutex<Option<SocketAddr>>,
    /// Relay connections, for peers no direct path reaches.
    relays: Relays,
    /// Friends' peer relays, as last looked up.
    peer_relays: Mutex<peer_relays::Cache>,
    _rx: Mutex<Option<smol::Task<()>>>,
}

fn random8() -> [u8; 8] {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random generator");
    b
}

impl Traversal {
    /// Starts traversal on `endpoint`, which must not have given its control queue away yet;
    /// with `phonebook`, its UDP services are used (registrations made through it give the
    /// tokens). Returns `None` if the control queue was already taken.
    pub fn start(
        endpoint: Arc<Endpoint>,
        phonebook: Option<Arc<PhoneBook>>,
        config: TraversalConfig,
    ) -> Option<Arc<Self>> {
        let control = endpoint.take_control()?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let me = Arc::new(Self {
            endpoint: endpoint.clone(),
            phonebook,
            config,
            state: Mutex::default(),
            counter: AtomicU64::new(now_ms << 10),
            stats: TraversalStats::default(),
            reflexive: Mutex::new(None),
            inputs: Mutex::new(None),
            mapped: Mutex::new(None),
            relays: Relays::new(
                endpoint.relay_paths().clone(),
                endpoint.spawner().clone(),
                endpoint.connect_timeout(),
            ),
            peer_relays: Mutex::default(),
            _rx: Mutex::new(None),
        });
        let weak = Arc::downgrade(&me);
        let task = endpoint.spawner().spawn(receive_loop(weak, control));
        *me._rx.lock().expect("not poisoned") = Some(task);
        Some(me)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The phone-book client, if any.
    pub fn phonebook(&self) -> Option<&Arc<PhoneBook>> {
        self.phonebook.as_ref()
    }

    /// The relay connections.
    pub fn relays(&self) -> &Relays {
        &self.relays
    }

    /// The relays of the phone books we are registered with.
    pub fn relay_books(&self) -> Vec<RelayBook> {
        self.phonebook
            .as_ref()
            .map(|p| p.relay_books())
            .unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> &TraversalStats {
        &self.stats
    }

    /// Settings.
    pub fn config(&self) -> &TraversalConfig {
        &self.config
    }

    /// Our address as a phone book last reported it (personal data).
    pub fn reflexive(&self) -> Option<SocketAddr> {
        *self.reflexive.lock().expect("not poisoned")
    }

    pub(crate) fn set_reflexive(&self, addr: SocketAddr) -> bool {
        let mut r = self.reflexive.lock().expect("not poisoned");
        let changed = *r != Some(addr);
        *r = Some(addr);
        changed
    }

    /// Discovers our addresses (once a registration gave us a phone book's UDP service; up
    /// to `wait` for it) and signs them into the next registrations as candidates. `mapped` is
    /// a port mapped on our router, if any. Returns what discovery learned and the list.
    pub async fn publish_candidates(
        &self,
        mapped: Option<SocketAddr>,
        wait: Duration,
    ) -> (Discovery, Vec<Candidate>) {
        let until = Instant::now() + wait;
        while self.books().is_empty() && Instant::now() < until {
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        let discovery = self.discover().await;
        let local = self.endpoint.local_addr().ok();
        let toward = self.books().first().map(|b| b.addr.ip());
        *self.mapped.lock().expect("not poisoned") = mapped;
        let inputs = local::Inputs {
            local_port: local.map_or(0, |a| a.port()),
            lan: match local.map(|a| a.ip()) {
                Some(ip) if !ip.is_unspecified() => Some(ip.to_canonical()),
                _ => toward.and_then(local::source_toward),
            },
            v6: match local {
                Some(SocketAddr::V6(_)) => local::global_v6(),
                _ => None,
            },
            reflexive: discovery.reflexive,
            mapping: discovery.mapping,
            mapped,
        };
        let list = self.republish(|i| *i = Some(inputs));
        (discovery, list)
    }

    /// Changes the inputs of the published candidates and publishes them again.
    fn republish(&self, change: impl FnOnce(&mut Option<local::Inputs>)) -> Vec<Candidate> {
        let mut inputs = self.inputs.lock().expect("not poisoned");
        change(&mut inputs);
        let Some(i) = *inputs else {
            return Vec::new();
        };
        drop(inputs);
        let list = local::gather(&i);
        if let Some(pb) = &self.phonebook
            && pb.set_candidates(list.clone())
        {
            log::debug!("publishing candidates {list:?}");
        }
        list
    }

    /// A keep-alive showed a new public address: publish it (if candidates are published).
    pub fn update_reflexive(&self, observed: SocketAddr) {
        self.republish(|i| {
            if let Some(i) = i {
                i.reflexive = Some(observed);
            }
        });
    }

    /// A port mapping appeared, changed or went away: publish it (and offer it in punch
    /// requests).
    pub fn update_mapped(&self, mapped: Option<SocketAddr>) {
        *self.mapped.lock().expect("not poisoned") = mapped;
        self.republish(|i| {
            if let Some(i) = i {
                i.mapped = mapped;
            }
        });
    }

    /// What a serving player runs: publishes candidates (see
    /// [`Traversal::publish_candidates`]), then keeps the mappings open and the reflexive
    /// candidate current while the task lives.
    pub fn serve(self: &Arc<Self>, mapped: Option<SocketAddr>) -> smol::Task<()> {
        let me = self.clone();
        self.endpoint.spawner().spawn(async move {
            // Keep-alives first: until the phone book holds our mapping it cannot forward.
            let again = me.clone();
            let _keep = me.keep_alive(move |observed| again.update_reflexive(observed));
            let (d, list) = me.publish_candidates(mapped, Duration::from_secs(30)).await;
            log::debug!("discovery: {d:?}; candidates {list:?}");
            std::future::pending::<()>().await;
        })
    }

    /// Asks each phone book to forward a punch request to ourselves (`own_name` is the name
    /// we registered): whether one arrives within `wait`, that is, whether a phone book can
    /// reach this endpoint through its NAT (`peer netcheck`).
    pub async fn reachable_by_phonebook(&self, own_name: &PlayerName, wait: Duration) -> bool {
        let before = self.stats.forwards.load(Ordering::Relaxed);
        let nonce = random8();
        for book in self.books() {
            let counter = self.next_counter();
            let bytes = Message::PunchRequest {
                auth: book.token.auth,
                counter,
                nonce,
                target: phonebook_proto::LookupId::of(own_name),
                extra: [None, None],
            }
            .encode(&book.token.key);
            let _ = self.ask(book.addr, counter, &bytes).await;
        }
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stats.forwards.load(Ordering::Relaxed) > before {
                return true;
            }
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        false
    }

    /// The port mapped on our router, if any.
    pub fn mapped(&self) -> Option<SocketAddr> {
        *self.mapped.lock().expect("not poisoned")
    }

    /// Whether any phone book ever answered us over UDP.
    pub fn udp_works(&self) -> bool {
        self.stats.answers.load(Ordering::Relaxed) > 0
    }

    /// Whether our UDP is known to be blocked: a whole round of requests to our phone books
    /// went unanswered and none ever answered. Connection attempts then go to a relay at once.
    pub fn udp_blocked(&self) -> bool {
        !self.udp_works() && self.stats.silent_rounds.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn note_silent_round(&self) {
        self.stats.silent_rounds.fetch_add(1, Ordering::Relaxed);
    }

    fn next_counter(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The UDP services of the phone books we are registered with.
    fn books(&self) -> Vec<UdpBook> {
        self.phonebook
            .as_ref()
            .map(|p| p.udp_books())
            .unwrap_or_default()
    }

    /// Registers a wait for the answer with id `id`; `None` when too many are waiting.
    fn expect(&self, id: u64) -> Option<smol::channel::Receiver<(SocketAddr, Message)>> {
        let mut st = self.state.lock().expect("not poisoned");
        if st.pending.len() >= MAX_PENDING {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(1);
        st.pending.insert(id, Waiter::Answer(tx));
        Some(rx)
    }

    fn forget(&self, id: u64) {
        self.state.lock().expect("not poisoned").pending.remove(&id);
    }

    /// Sends `msg` to `to` and waits for its answer (id `id`), asking again after each
    /// timeout, up to the configured attempts. `None`: no answer.
    async fn ask(&self, to: SocketAddr, id: u64, bytes: &[u8]) -> Option<(SocketAddr, Message)> {
        let rx = self.expect(id)?;
        let mut answer = None;
        for _ in 0..self.config.attempts.max(1) {
            if let Err(e) = self.endpoint.send_control(to, bytes) {
                log::debug!("cannot send to the phone book's UDP service: {e}");
                break;
            }
            let timeout = self.config.answer_timeout;
            let got = smol::future::or(async { rx.recv().await.ok() }, async move {
                smol::Timer::after(timeout).await;
                None
            })
            .await;
            if got.is_some() {
                answer = got;
                break;
            }
        }
        self.forget(id);
        answer
    }

    /// A forwarded punch request from a phone book: punch toward the requester.
    fn on_forward(self: &Arc<Self>, d: &Datagram, msg: Message) {
        let Message::PunchForward {
            nonce,
            requester,
            addrs,
        } = msg
        else {
            return;
        };
        let book = self
            .books()
            .into_iter()
            .find(|b| b.addr == d.from && udp::tag_ok(&b.token.key, &d.bytes));
        if book.is_none() {
            self.stats.forwards_refused.fetch_add(1, Ordering::Relaxed);
            log::debug!("ignored a punch forward that no phone book of ours signed");
            return;
        }
        let until = Instant::now() + self.config.punch_for;
        {
            let mut st = self.state.lock().expect("not poisoned");
            let now = Instant::now();
            st.incoming.retain(|_, (_, t)| *t > now);
            if st.incoming.contains_key(&nonce) {
                return; // a copy (the phone book or the network repeated it)
            }
            if st.incoming.len() >= MAX_INCOMING_PUNCHES {
                drop(st);
                self.stats.forwards_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            st.incoming.insert(nonce, (to_peer_id(&requester), until));
        }
        self.stats.forwards.fetch_add(1, Ordering::Relaxed);
        let targets: Vec<SocketAddr> = addrs.into_iter().flatten().collect();
        log::debug!("punching toward {targets:?} for a connection request");
        let me = self.clone();
        self.endpoint
            .spawner()
            .spawn(async move {
                // The address the phone book saw gets every round; the requester's extra
                // addresses (which it chose, unsigned) only the first two, so that a forged
                // extra address gets no more bytes from us than the request cost its sender.
                me.punch_rounds(nonce, &targets, EXTRA_ROUNDS, until).await
            })
            .detach();
    }

    /// Sends punches to `targets` in rounds (see [`TraversalConfig::punch_interval`]) until
    /// `until`: the first address every round, the others only in the first `others_rounds`.
    pub(crate) async fn punch_rounds(
        &self,
        nonce: [u8; 8],
        targets: &[SocketAddr],
        others_rounds: u32,
        until: Instant,
    ) {
        let punch = Message::Punch { nonce }.encode(&[0; 16]);
        let mut wait = self.config.punch_interval;
        let mut round = 0u32;
        while Instant::now() < until {
            for (i, t) in targets.iter().enumerate() {
                if i == 0 || round < others_rounds {
                    let _ = self.endpoint.send_control(*t, &punch);
                }
            }
            round += 1;
            smol::Timer::after(wait.min(until.saturating_duration_since(Instant::now()))).await;
            wait = wait.saturating_mul(2);
        }
    }

    fn dispatch(self: &Arc<Self>, d: Datagram) {
        let Ok(msg) = Message::decode(&d.bytes) else {
            return;
        };
        match msg {
            Message::BindingAnswer { txid, .. } => self.deliver(u64::from_be_bytes(txid), d, msg),
            Message::KeepAliveAnswer { counter, .. } | Message::PunchAnswer { counter, .. } => {
                self.deliver(counter, d, msg)
            }
            Message::PunchForward { .. } => self.on_forward(&d, msg),
            Message::Punch { nonce } => {
                let mut st = self.state.lock().expect("not poisoned");
                if let Some(tx) = st.outgoing.get(&nonce) {
                    self.stats.punches_heard.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.try_send(d.from);
                } else if let Some((_, until)) = st.incoming.get(&nonce) {
                    if *until > Instant::now() {
                        drop(st);
                        let ack = Message::PunchAck { nonce }.encode(&[0; 16]);
                        let _ = self.endpoint.send_control(d.from, &ack);
                    } else {
                        st.incoming.remove(&nonce);
                    }
                }
            }
            Message::PunchAck { nonce } => {
                let st = self.state.lock().expect("not poisoned");
                if let Some(tx) = st.outgoing.get(&nonce) {
                    self.stats.punches_heard.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.try_send(d.from);
                }
            }
            // Requests to a phone book: we are not one.
            Message::BindingRequest { .. }
            | Message::KeepAlive { .. }
            | Message::PunchRequest { .. } => {}
            Message::RelayCall { .. } => self.on_relay_call(&d, msg),
        }
    }

    /// A phone book calls us to its relay: someone who may see us could not reach us directly.
    fn on_relay_call(self: &Arc<Self>, d: &Datagram, msg: Message) {
        let Message::RelayCall { ticket, .. } = msg else {
            return;
        };
        let book = self
            .books()
            .into_iter()
            .find(|b| b.addr == d.from && udp::tag_ok(&b.token.key, &d.bytes));
        let Some(relay) =
            book.and_then(|b| self.relay_books().into_iter().find(|r| r.index == b.index))
        else {
            self.stats.forwards_refused.fetch_add(1, Ordering::Relaxed);
            log::debug!("ignored a relay call that no phone book of ours signed");
            return;
        };
        self.stats.relay_calls.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        self.endpoint
            .spawner()
            .spawn(async move {
                if let Err(e) = me.relays.accept(&relay, ticket).await {
                    log::info!("could not answer a relay call: {e}");
                }
            })
            .detach();
    }

    /// Holds a connection to every phone book's relay on which incoming sessions are
    /// announced: for a network that lets no UDP through, where no relay call reaches us.
    /// Also to every friend's peer relay ([`Traversal::listen_on_peer_relays`]).
    pub async fn listen_on_relays(&self) -> usize {
        let mut n = self.listen_on_peer_relays().await;
        for book in self.relay_books() {
            if self.relays.is_connected(&book).await {
                n += 1;
                continue;
            }
            match self.relays.listen(&book).await {
                Ok(()) => n += 1,
                Err(e) => log::info!("cannot listen on a relay: {e}"),
            }
        }
        n
    }

    /// Holds a listening connection to every friend's peer relay in
    /// [`TraversalConfig::relay_via`]: a peer relay cannot call us, so we wait there whatever
    /// our network. The number held.
    pub async fn listen_on_peer_relays(&self) -> usize {
        let mut n = 0;
        for book in self.peer_relay_books().await {
            if self.relays.is_connected(&book).await {
                n += 1;
                continue;
            }
            if self.peer_relay_refused_lately(book.index) {
                continue;
            }
            match self.relays.listen(&book).await {
                Ok(()) => n += 1,
                Err(e) => {
                    if matches!(e, crate::net::relay::RelayError::Refused(_)) {
                        self.peer_relay_refused(book.index);
                    }
                    log::info!("cannot listen on a friend's peer relay: {e}");
                }
            }
        }
        n
    }

    fn deliver(&self, id: u64, d: Datagram, msg: Message) {
        let waiter = self.state.lock().expect("not poisoned").pending.remove(&id);
        if let Some(Waiter::Answer(tx)) = waiter {
            self.stats.answers.fetch_add(1, Ordering::Relaxed);
            let _ = tx.try_send((d.from, msg));
        }
    }

    /// Listens for punches carrying `nonce`; `None` when too many attempts listen already.
    fn listen_punches(&self, nonce: [u8; 8]) -> Option<smol::channel::Receiver<SocketAddr>> {
        let mut st = self.state.lock().expect("not poisoned");
        if st.outgoing.len() >= MAX_OUTGOING_PUNCHES {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(16);
        st.outgoing.insert(nonce, tx);
        Some(rx)
    }

    fn stop_listening(&self, nonce: &[u8; 8]) {
        self.state
            .lock()
            .expect("not poisoned")
            .outgoing
            .remove(nonce);
    }
}

async fn receive_loop(me: std::sync::Weak<Traversal>, control: ControlReceiver) {
    while let Ok(d) = control.rx.recv().await {
        let Some(me) = me.upgrade() else { return };
        me.dispatch(d);
    }
}
