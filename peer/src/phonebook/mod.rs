//! Client of the phone book (docs/PROTOCOL.md): register with every configured phone book and
//! keep the registration alive, look players up in order and check the owner's signature on
//! every answer, unregister on shutdown. Retries use exponential backoff with jitter and
//! honour `Retry-After`.

mod fanout;
pub mod http_client;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phonebook_proto::{
    BodyError, ErrorBody, FriendsSalt, LookupId, LookupRecord, PlayerName, PublicKey, RecordError,
    Register, RegisterAnswer, Unregister, Visibility, paths,
};

use crate::identity::{Identity, PeerId};
use crate::net::relay::RelayBook;
use phonebook_proto::Candidate;
use phonebook_proto::udp::TokenParts;

use crate::phonebook::http_client::{BadCaFile, BadUrl, HttpClient, Response};

/// Phone-book client settings.
#[derive(Debug, Clone)]
pub struct PhoneBookConfig {
    /// Phone books, `https://host[:port]` (or `http://` on a LAN), registered with all, looked
    /// up in order.
    pub urls: Vec<String>,
    /// A PEM file of extra CA certificates trusted for `https://` phone books, beside the
    /// bundled web roots (a private CA; pebble's root in tests).
    pub ca_file: Option<std::path::PathBuf>,
    /// Attempts per request to one phone book.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured (a longer one fails the request instead).
    pub max_retry_after: Duration,
    /// Timeout of one HTTP exchange.
    pub request_timeout: Duration,
    /// Registrations and unregistrations go to every phone book at once; once one accepted,
    /// the others get this long before they are left for the next round (one that is down
    /// would hold the caller for its timeouts and retries).
    pub slow_book_grace: Duration,
    /// Lookups ask the phone books in order, the next one this long after the previous one
    /// if it has not answered yet (at once if it failed).
    pub lookup_stagger: Duration,
}

impl Default for PhoneBookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            ca_file: None,
            max_attempts: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            slow_book_grace: Duration::from_secs(2),
            lookup_stagger: Duration::from_secs(1),
        }
    }
}

/// A phone-book operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PhoneBookError {
    /// A configured URL is unusable.
    BadUrl(BadUrl),
    /// The extra CA file ([`PhoneBookConfig::ca_file`]) is unusable.
    BadCaFile(BadCaFile),
    /// No phone book is configured.
    NoPhoneBook,
    /// The phone book could not be reached (after retries).
    Unreachable(io::Error),
    /// The phone book refused the request (status and `error` code of its answer).
    Rejected {
        /// HTTP status.
        status: u16,
        /// The `error` field.
        code: String,
    },
    /// No such player, or the player does not let us see them. `retry_after` seconds before
    /// asking again.
    NotFound {
        /// Advised wait.
        retry_after: Option<u64>,
    },
    /// An answer failed verification: the phone book lied or the record was altered.
    Lying(RecordError),
    /// An answer could not be parsed.
    Malformed(BodyError),
    /// Lookups need a registration first (its token authenticates them).
    NotRegistered,
    /// 409 `key_conflict`: `name` is bound to another key (a lost or replaced identity file,
    /// or another player's name). The phone book frees a name only after the record of the key
    /// holding it has expired and the retention after it has passed; it says nothing more, so
    /// `frees_within` is that bound under the phone book's default settings.
    KeyConflict {
        /// The name we asked for.
        name: PlayerName,
        /// TTL + retention with the phone book's defaults ([`KEY_BINDING_DEFAULT`]), counted
        /// from the holder's last registration; a phone book with other settings differs.
        frees_within: Duration,
    },
}

/// How long a phone book with default settings keeps a name bound to its key after that key's
/// last registration: the record's TTL (1 h) plus the retention after it expires (24 h).
pub const KEY_BINDING_DEFAULT: Duration = Duration::from_secs(3600 + 24 * 3600);

impl fmt::Display for PhoneBookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadUrl(e) => e.fmt(f),
            Self::BadCaFile(e) => e.fmt(f),
            Self::NoPhoneBook => f.write_str("no phone book configured"),
            Self::Unreachable(e) => write!(f, "phone book unreachable: {e}"),
            Self::Rejected { status, code } => write!(f, "phone book refused: {status} {code}"),
            Self::NotFound { .. } => f.write_str("no such player, or not visible to us"),
            Self::Lying(e) => write!(f, "phone book answer rejected: {e}"),
            Self::Malformed(e) => write!(f, "malformed phone book answer: {e}"),
            Self::NotRegistered => f.write_str("register before looking players up"),
            Self::KeyConflict { name, frees_within } => write!(
                f,
                "the name {name} is bound to another key (the identity file that registered it \
                 is lost or different): use that identity file, or wait until the name frees \
                 up, within the TTL + retention of that key's last registration (about {} h \
                 with the phone book's default settings)",
                frees_within.as_secs().div_ceil(3600),
            ),
        }
    }
}

impl std::error::Error for PhoneBookError {}

/// A verified lookup answer.
#[derive(Debug, Clone)]
pub struct Found {
    /// The player asked for (the phone book never sends names back to a lookup by id).
    pub name: PlayerName,
    /// Where the player's peer listens (personal data: never log above debug).
    pub addr: SocketAddr,
    /// The player's key, checked against the owner's signature.
    pub key: PeerId,
    /// The full record.
    pub record: LookupRecord,
}

#[derive(Debug)]
struct Book {
    client: smol::lock::Mutex<HttpClient>,
    token: std::sync::Mutex<Option<String>>,
    udp: std::sync::Mutex<Option<UdpBook>>,
    relay: std::sync::Mutex<Option<RelayBook>>,
}

/// A phone book's UDP service as the last registration there gave it: where to send
/// keep-alives and punch requests, and the token parts that sign them.
#[derive(Debug, Clone)]
pub struct UdpBook {
    /// Which configured phone book (index into the URLs).
    pub index: usize,
    /// The UDP service's address: the address the HTTP client reached, at the answer's
    /// `udpPort` (the HTTP port when absent).
    pub addr: SocketAddr,
    /// The current lookup token's slot, timestamp and tag.
    pub token: TokenParts,
}

/// The relay a register answer announced, if any and well-formed.
async fn relay_book(
    index: usize,
    a: &RegisterAnswer,
    phonebook_ip: Option<std::net::IpAddr>,
    phonebook_host: String,
) -> Option<RelayBook> {
    let port = a.relay_port.filter(|p| *p != 0)?;
    let pin = crate::net::relay::client::parse_pin(a.relay_cert.as_deref()?)?;
    let token =
        phonebook_proto::b64::decode_exact::<{ phonebook_proto::relay::TOKEN_LEN }>(&a.token)?;
    let (addr, host) = match &a.relay_host {
        Some(h) => {
            let addr = smol::net::resolve((h.as_str(), port))
                .await
                .ok()?
                .first()
                .copied()?;
            (addr, h.clone())
        }
        None => (SocketAddr::new(phonebook_ip?, port), phonebook_host),
    };
    Some(RelayBook {
        index,
        addr,
        host,
        pin,
        token,
        peer: None,
    })
}

/// The client.
#[derive(Debug)]
pub struct PhoneBook {
    config: PhoneBookConfig,
    keypair: phonebook_proto::Keypair,
    name: PlayerName,
    books: Vec<Book>,
    last_timestamp: AtomicU64,
    /// Signed into every registration (record version 2 when not empty).
    candidates: std::sync::Mutex<Vec<Candidate>>,
    /// Our peer relay's TCP address, published as a `relay` candidate.
    relay_addr: std::sync::Mutex<Option<SocketAddr>>,
    /// Notified when the candidates change: `keep_registered` registers again at once.
    candidates_changed: event_listener::Event,
    /// Notified after every registration that a phone book accepted (a new token): the
    /// keep-alives switch to it at once, since the old one stopped authenticating.
    registered: event_listener::Event,
}

/// Converts between the library's key type and the protocol crate's.
pub fn to_public_key(id: &PeerId) -> PublicKey {
    PublicKey::from_bytes(id.as_bytes()).expect("a PeerId is a valid key")
}

/// See [`to_public_key`].
pub fn to_peer_id(key: &PublicKey) -> PeerId {
    PeerId::from_bytes(*key.as_bytes()).expect("a PublicKey is a valid key")
}

/// 32 bytes from the OS's CSPRNG: the `friendsSalt` of one registration.
fn fresh_salt() -> FriendsSalt {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).expect("OS random generator");
    salt
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    d.mul_f64(0.5 + 0.5 * frac)
}

impl PhoneBook {
    /// A client for player `name` with `identity`.
    pub fn new(
        identity: &Identity,
        name: PlayerName,
        config: PhoneBookConfig,
    ) -> Result<Self, PhoneBookError> {
        if config.urls.is_empty() {
            return Err(PhoneBookError::NoPhoneBook);
        }
        // One TLS configuration (root store) for every https:// phone book.
        let tls = if config.urls.iter().any(|u| u.starts_with("https://")) {
            Some(
                http_client::tls_config(config.ca_file.as_deref())
                    .map_err(PhoneBookError::BadCaFile)?,
            )
        } else {
            None
        };
        let books = config
            .urls
            .iter()
            .map(|u| {
                Ok(Book {
                    client: smol::lock::Mutex::new(
                        HttpClient::with_tls(u, tls.clone()).map_err(PhoneBookError::BadUrl)?,
                    ),
                    token: Default::default(),
                    udp: Default::default(),
                    relay: Default::default(),
                })
            })
            .collect::<Result<_, PhoneBookError>>()?;
        Ok(Self {
            keypair: identity.phonebook_keypair(),
            name,
            books,
            config,
            last_timestamp: AtomicU64::new(0),
            candidates: Default::default(),
            relay_addr: Default::default(),
            candidates_changed: event_listener::Event::new(),
            registered: event_listener::Event::new(),
        })
    }

    /// Our player name.
    pub fn name(&self) -> &PlayerName {
        &self.name
    }

    /// Sets the address candidates signed into the next registrations (at most
    /// [`phonebook_proto::MAX_CANDIDATES`]; extra ones are cut). Returns whether they changed;
    /// if so, [`PhoneBook::keep_registered`] registers again at once.
    pub fn set_candidates(&self, mut list: Vec<Candidate>) -> bool {
        list.truncate(phonebook_proto::MAX_CANDIDATES);
        let mut current = self.candidates.lock().expect("not poisoned");
        if *current == list {
            return false;
        }
        *current = list;
        drop(current);
        self.candidates_changed.notify(usize::MAX);
        true
    }

    /// Resolves after the next registration a phone book accepts (a new token).
    pub fn next_registration(&self) -> event_listener::EventListener {
        self.registered.listen()
    }

    /// Publishes `addr` as our peer relay's address (a `relay` candidate, docs/PROTOCOL.md
    /// "Peer relays"), or stops publishing one. Returns whether it changed; if so,
    /// [`PhoneBook::keep_registered`] registers again at once.
    pub fn set_relay_addr(&self, addr: Option<SocketAddr>) -> bool {
        let mut current = self.relay_addr.lock().expect("not poisoned");
        if *current == addr {
            return false;
        }
        *current = addr;
        drop(current);
        self.candidates_changed.notify(usize::MAX);
        true
    }

    /// The candidates signed into registrations: the addresses, then our peer relay's.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut list = self.candidates.lock().expect("not poisoned").clone();
        if let Some(relay) = *self.relay_addr.lock().expect("not poisoned") {
            list.truncate(phonebook_proto::MAX_CANDIDATES - 1);
            if !list.iter().any(|c| c.addr == relay) {
                list.push(Candidate::new(phonebook_proto::CandidateKind::Relay, relay));
            }
        }
        list
    }

    /// The UDP services of the phone books we are registered with.
    pub fn udp_books(&self) -> Vec<UdpBook> {
        self.books
            .iter()
            .filter_map(|b| b.udp.lock().expect("not poisoned").clone())
            .collect()
    }

    /// The relays of the phone books we are registered with (docs/PROTOCOL.md "Relay").
    pub fn relay_books(&self) -> Vec<RelayBook> {
        self.books
            .iter()
            .filter_map(|b| b.relay.lock().expect("not poisoned").clone())
            .collect()
    }

    /// A signing timestamp: now in Unix ms, strictly above every earlier one.
    fn timestamp(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let prev = self.last_timestamp.fetch_max(now, Ordering::Relaxed);
        if prev >= now {
            self.last_timestamp.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            now
        }
    }

    /// One request with retries; `body` is rebuilt per attempt (fresh signature timestamps).
    async fn call(
        &self,
        book: &Book,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: impl Fn() -> Option<String>,
    ) -> Result<Response, PhoneBookError> {
        let mut last_err = None;
        for attempt in 0..self.config.max_attempts {
            let backoff = jitter(
                self.config
                    .backoff_base
                    .saturating_mul(1 << attempt.min(16))
                    .min(self.config.backoff_max),
            );
            let b = body();
            let exchange = async {
                let mut client = book.client.lock().await;
                client
                    .request(method, path, bearer, b.as_deref().map(str::as_bytes))
                    .await
            };
            let timeout = async {
                smol::Timer::after(self.config.request_timeout).await;
                Err(io::Error::from(io::ErrorKind::TimedOut))
            };
            let wait = match smol::future::or(exchange, timeout).await {
                // A 429 without `Retry-After` is a quota (`quota_exceeded`): waiting does not
                // lift it, only a record of ours expiring does, so it is not retried.
                Ok(r) if r.status == 429 && r.retry_after.is_none() => return Ok(r),
                Ok(r) if r.status == 429 || r.status == 503 || r.status >= 500 => {
                    let ra = r.retry_after.map(Duration::from_secs);
                    if ra.is_some_and(|ra| ra > self.config.max_retry_after)
                        || attempt + 1 == self.config.max_attempts
                    {
                        return Ok(r);
                    }
                    backoff.max(ra.unwrap_or_default())
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    log::debug!("phone book request failed (attempt {}): {e}", attempt + 1);
                    last_err = Some(e);
                    backoff
                }
            };
            if attempt + 1 < self.config.max_attempts {
                smol::Timer::after(wait).await;
            }
        }
        Err(PhoneBookError::Unreachable(last_err.unwrap_or_else(|| {
            io::Error::from(io::ErrorKind::TimedOut)
        })))
    }

    /// Like [`PhoneBook::rejected`] for a request about our own name: a key conflict gets its
    /// own error.
    fn refused_for_name(&self, r: &Response) -> PhoneBookError {
        match Self::rejected(r) {
            PhoneBookError::Rejected { status: 409, code } if code == "key_conflict" => {
                PhoneBookError::KeyConflict {
                    name: self.name.clone(),
                    frees_within: KEY_BINDING_DEFAULT,
                }
            }
            other => other,
        }
    }

    fn rejected(r: &Response) -> PhoneBookError {
        let code = ErrorBody::from_json(&r.body)
            .map(|b| b.error)
            .unwrap_or_default();
        PhoneBookError::Rejected {
            status: r.status,
            code,
        }
    }

    /// Registers (or renews) with every phone book; succeeds if at least one accepted. Returns
    /// the answer asking for the earliest renewal.
    pub async fn register(
        &self,
        port: u16,
        visibility: Visibility,
        friends: &[PeerId],
    ) -> Result<RegisterAnswer, PhoneBookError> {
        let mut friends: Vec<PublicKey> = friends.iter().map(to_public_key).collect();
        // The phone book refuses a list with a key twice (400); `--friend K --friend K` means K.
        friends.sort_unstable_by_key(|k| *k.as_bytes());
        friends.dedup_by_key(|k| *k.as_bytes());
        // A fresh salt for each registration, so nobody can confirm a guessed friend list
        // from the digest that lookups show (docs/PROTOCOL.md "Signed messages").
        let salt = fresh_salt();
        let candidates = self.candidates();
        // The plan's `port` field: the best candidate's, for clients that know no candidates.
        let port = crate::net::traversal::local::best_port(&candidates, port);
        let asks: Vec<fanout::Ask<'_, Result<RegisterAnswer, PhoneBookError>>> = self
            .books
            .iter()
            .enumerate()
            .map(|(index, book)| {
                let (friends, candidates) = (&friends, &candidates);
                let ask: fanout::Ask<'_, _> = Box::pin(async move {
                    let body = || {
                        let (name, ts) = (self.name.clone(), self.timestamp());
                        let r = match visibility {
                            Visibility::Public => {
                                Register::sign_public(&self.keypair, name, port, ts)
                            }
                            Visibility::Friends => Register::sign_friends(
                                &self.keypair,
                                name,
                                port,
                                friends.clone(),
                                salt,
                                ts,
                            ),
                        };
                        let r = if candidates.is_empty() {
                            r
                        } else {
                            r.with_candidates(&self.keypair, candidates.clone())
                        };
                        Some(r.to_json())
                    };
                    let r = self.call(book, "POST", paths::REGISTER, None, body).await?;
                    if r.status != 200 {
                        return Err(self.refused_for_name(&r));
                    }
                    let a =
                        RegisterAnswer::from_json(&r.body).map_err(PhoneBookError::Malformed)?;
                    *book.token.lock().expect("not poisoned") = Some(a.token.clone());
                    let ip = book.client.lock().await.remote_ip();
                    let http_port = book.client.lock().await.port();
                    let udp_port = a.udp_port.unwrap_or(http_port);
                    let host = book.client.lock().await.host().to_owned();
                    *book.relay.lock().expect("not poisoned") =
                        relay_book(index, &a, ip, host).await;
                    *book.udp.lock().expect("not poisoned") =
                        match (ip, TokenParts::parse(&a.token)) {
                            (Some(ip), Some(token)) if udp_port != 0 => Some(UdpBook {
                                index,
                                addr: SocketAddr::new(ip, udp_port),
                                token,
                            }),
                            _ => None,
                        };
                    Ok(a)
                });
                ask
            })
            .collect();
        let results =
            fanout::all_with_grace(asks, Result::is_ok, self.config.slow_book_grace).await;
        let mut best: Option<RegisterAnswer> = None;
        let mut last_err = PhoneBookError::NoPhoneBook;
        for r in results {
            match r {
                Some(Ok(a)) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| a.reregister_in < b.reregister_in)
                    {
                        best = Some(a);
                    }
                }
                Some(Err(e)) => last_err = e,
                // Still waiting when another had accepted: the next round tries it again.
                None => log::debug!("a phone book was still not answering; left for later"),
            }
        }
        if best.is_some() {
            self.registered.notify(usize::MAX);
        }
        best.ok_or(last_err)
    }

    /// Looks `name` up in each phone book in order until one gives an answer that verifies.
    /// The name never leaves this process: the phone books are asked for its lookup id.
    pub async fn lookup(&self, name: &PlayerName) -> Result<Found, PhoneBookError> {
        let path = format!("{}/{}", paths::LOOKUP, LookupId::of(name));
        let path = &path;
        let asks: Vec<fanout::Ask<'_, Result<Found, PhoneBookError>>> = self
            .books
            .iter()
            .filter_map(|book| {
                let token = book.token.lock().expect("not poisoned").clone()?;
                let ask: fanout::Ask<'_, _> = Box::pin(async move {
                    let mut r = self.call(book, "GET", path, Some(&token), || None).await?;
                    // A registration that finished meanwhile (a renewal, new candidates)
                    // replaced the token we sent: once more with the new one.
                    if r.status == 401 {
                        let now = book.token.lock().expect("not poisoned").clone();
                        if let Some(fresh) = now.filter(|t| *t != token) {
                            r = self.call(book, "GET", path, Some(&fresh), || None).await?;
                        }
                    }
                    match r.status {
                        200 => match LookupRecord::from_json_verified(&r.body, name) {
                            Ok(record) => {
                                let key = to_peer_id(&record.key);
                                let addr = SocketAddr::new(record.ip, record.port);
                                Ok(Found {
                                    name: name.clone(),
                                    addr,
                                    key,
                                    record,
                                })
                            }
                            Err(e) => {
                                log::warn!(
                                    "a phone book sent a lookup answer that fails verification: {e}"
                                );
                                Err(PhoneBookError::Lying(e))
                            }
                        },
                        404 => Err(PhoneBookError::NotFound {
                            retry_after: r.retry_after,
                        }),
                        _ => Err(Self::rejected(&r)),
                    }
                });
                Some(ask)
            })
            .collect();
        match fanout::first_staggered(asks, self.config.lookup_stagger, Result::is_ok).await {
            Ok(found) => found,
            Err(all) => Err(all
                .into_iter()
                .last()
                .and_then(Result::err)
                .unwrap_or(PhoneBookError::NotRegistered)),
        }
    }

    /// Unregisters from every phone book (on shutdown). Succeeds if at least one accepted.
    pub async fn unregister(&self) -> Result<(), PhoneBookError> {
        let asks: Vec<fanout::Ask<'_, Result<(), PhoneBookError>>> = self
            .books
            .iter()
            .map(|book| {
                let ask: fanout::Ask<'_, _> = Box::pin(async move {
                    let body = || {
                        Some(
                            Unregister::sign(&self.keypair, self.name.clone(), self.timestamp())
                                .to_json(),
                        )
                    };
                    let r = self
                        .call(book, "DELETE", paths::UNREGISTER, None, body)
                        .await?;
                    if r.status != 200 {
                        return Err(self.refused_for_name(&r));
                    }
                    *book.token.lock().expect("not poisoned") = None;
                    *book.udp.lock().expect("not poisoned") = None;
                    *book.relay.lock().expect("not poisoned") = None;
                    Ok(())
                });
                ask
            })
            .collect();
        let mut ok = false;
        let mut last_err = PhoneBookError::NoPhoneBook;
        for r in fanout::all_with_grace(asks, Result::is_ok, self.config.slow_book_grace).await {
            match r {
                Some(Ok(())) => ok = true,
                Some(Err(e)) => last_err = e,
                None => {}
            }
        }
        if ok { Ok(()) } else { Err(last_err) }
    }

    /// Registers only to obtain a lookup token: visibility `friends` with an empty list, which
    /// no key but our own can see (docs/PROTOCOL.md), so looking players up publishes nobody.
    /// Call [`PhoneBook::unregister`] when the lookups are done, so that the name is not live
    /// either. Use a client for [`requester_name`] rather than the player's own name, which a
    /// running `serve` may hold with another visibility.
    pub async fn register_hidden(&self, port: u16) -> Result<RegisterAnswer, PhoneBookError> {
        self.register(port, Visibility::Friends, &[]).await
    }

    /// How long to wait before registering again after `failures` consecutive failures
    /// (exponential from the config's `backoff_base` up to `backoff_max`, jittered).
    pub fn retry_after(&self, failures: u32) -> Duration {
        jitter(
            self.config
                .backoff_base
                .saturating_mul(1 << failures.min(10))
                .min(self.config.backoff_max),
        )
    }

    /// Keeps the registration alive: registers now, then again before each TTL runs out
    /// (at the phone book's `reregisterIn`, less up to a tenth of jitter). Failed attempts are
    /// retried after a backoff. Drop the task to stop; call [`PhoneBook::unregister`] after.
    pub fn keep_registered(
        self: &Arc<Self>,
        port: u16,
        visibility: Visibility,
        friends: Vec<PeerId>,
    ) -> smol::Task<()> {
        let me = self.clone();
        smol::spawn(async move {
            let mut failures = 0u32;
            loop {
                let wait = match me.register(port, visibility, &friends).await {
                    Ok(a) => {
                        failures = 0;
                        let d = Duration::from_secs(a.reregister_in.max(1));
                        d - jitter(d / 10).min(d / 10)
                    }
                    Err(e) => {
                        failures += 1;
                        log::warn!("registration failed: {e}");
                        me.retry_after(failures)
                    }
                };
                // New candidates (a new NAT mapping, a port mapped): register at once.
                let changed = me.candidates_changed.listen();
                smol::future::or(
                    async {
                        smol::Timer::after(wait).await;
                    },
                    changed,
                )
                .await;
            }
        })
    }
}

/// The name a requester registers under (hidden, see [`PhoneBook::register_hidden`]) to look
/// players up without touching its player's own registration:
/// `Req<12 letters> Peer@Lookup<10 letters>`, the 22 letters derived from the identity's
/// *secret* (SHA-256 of its deterministic signature of a fixed label; about 103 bits, so two
/// keys do not meet on one name; the name rule allows 20 letters before the world and 16 in
/// it). Derived from the public key, anyone who knows the key (every lookup record shows it)
/// could register the name first and lock the player's lookups out for a day with
/// `key_conflict`; this name is stable across runs but only the key's owner can compute it.
pub fn requester_name(identity: &Identity) -> PlayerName {
    const LABEL: &[u8] = b"phonebook peer requester name v1";
    let digest = ring::digest::digest(&ring::digest::SHA256, &identity.sign(LABEL));
    let letters: Vec<char> = digest.as_ref()[..22]
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let (forename, world): (String, String) = (
        letters[..12].iter().collect(),
        letters[12..].iter().collect(),
    );
    PlayerName::parse(&format!("Req{forename} Peer@Lookup{world}")).expect("a valid derived name")
}
