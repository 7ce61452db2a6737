//! The facade: one [`Node`] that owns a player's endpoint, pool, pins, server and phone-book
//! registration, with a typed, non-blocking [`Event`] stream. Start here; the other modules are
//! the advanced door.
//!
//! A node with phone books is reachable like the CLI's `serve`: it keeps NAT mappings open with
//! keep-alives, maps a port on the router ([`NodeConfig::portmap`]), publishes its address
//! candidates, punches holes and falls back to relays (the phone books' and its friends' peer
//! relays, [`NodeConfig::relay_via`]). A visibility change re-registers at once and changes
//! who the running server and the relays answer. Its tasks run on threads of its own
//! ([`NodeConfig::threads`]), stopped and joined when the node is dropped.

pub mod events;
mod threads;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use events::{DEFAULT_EVENT_QUEUE, Event, EventQueue, OpId, Registration};

use crate::net::reach::Reach;
use crate::net::runtime::Spawner;
use crate::net::traversal::{Traversal, TraversalConfig};
use crate::storage::folder::{FolderStore, FolderStoreConfig};
use crate::transfer::serve::Policy;
use crate::{
    DownloadConfig, Endpoint, EndpointConfig, FileHash, Found, Identity, MemoryStore, PeerId,
    PhoneBook, PhoneBookConfig, PinStore, PlayerName, Pool, PoolConfig, ServeConfig, Server,
    Source, Store, Visibility,
};

/// Progress reports buffered between a download and the event queue.
pub const PROGRESS_CHANNEL: usize = 16;

/// Default bound on [`Node::shutdown`]'s wait for the phone book to forget us.
pub const DEFAULT_SHUTDOWN_BOUND: Duration = Duration::from_secs(3);

/// Everything a [`Node`] needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The identity key file (created if missing).
    pub identity: PathBuf,
    /// Where downloads and the pin store live.
    pub data_dir: PathBuf,
    /// Phone-book URLs, `https://HOST[:PORT]` (verified against the bundled web roots) or
    /// `http://` on a LAN (empty: no registration, no lookups).
    pub phonebooks: Vec<String>,
    /// Our player name (needed with phone books).
    pub name: Option<String>,
    /// Who may find and fetch from us.
    pub visibility: Visibility,
    /// Friends, for [`Visibility::Friends`].
    pub friends: Vec<PeerId>,
    /// UDP listen address.
    pub listen: SocketAddr,
    /// A folder to share from the start.
    pub share: Option<PathBuf>,
    /// Bound on queued events before progress is coalesced.
    pub event_queue: usize,
    /// Bound on the shutdown's wait for the phone book.
    pub shutdown_bound: Duration,
    /// Ask the router to forward our port (UPnP IGD, NAT-PMP, PCP); on by default.
    pub portmap: bool,
    /// Friends whose peer relays we use (docs/PROTOCOL.md "Peer relays"), at most 4.
    pub relay_via: Vec<String>,
    /// Threads of the node's own executor (1 to 8; default 2), stopped and joined when the
    /// node is dropped.
    pub threads: usize,
    /// A PEM file of extra certificate authorities trusted for `https://` phone books, beside
    /// the bundled webpki roots (a private CA, or a test CA such as pebble's).
    pub phonebook_ca: Option<PathBuf>,
}

impl NodeConfig {
    /// A config with defaults: friends-only with no friends (nobody can find us), listening on
    /// every interface, no phone book.
    pub fn new(identity: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            identity: identity.into(),
            data_dir: data_dir.into(),
            phonebooks: Vec::new(),
            name: None,
            visibility: Visibility::Friends,
            friends: Vec::new(),
            listen: EndpointConfig::default().listen,
            share: None,
            event_queue: DEFAULT_EVENT_QUEUE,
            shutdown_bound: DEFAULT_SHUTDOWN_BOUND,
            portmap: true,
            relay_via: Vec::new(),
            threads: 2,
            phonebook_ca: None,
        }
    }
}

/// Why a node could not start or an operation could not begin.
pub type NodeError = Box<dyn std::error::Error + Send + Sync>;

/// A running player: see the module docs.
pub struct Node {
    identity: Arc<Identity>,
    endpoint: Arc<Endpoint>,
    pool: Arc<Pool>,
    book: Option<Arc<PhoneBook>>,
    server: Mutex<Option<Server>>,
    registration: Mutex<Option<smol::Task<()>>>,
    ops: Arc<Mutex<HashMap<OpId, smol::Task<()>>>>,
    next_op: AtomicU64,
    events: Arc<EventQueue>,
    config: Mutex<NodeConfig>,
    /// Who the server and the relays answer now (`None`: everyone); read at each connection, so
    /// [`Node::set_visibility`] takes effect at once.
    policy: Arc<std::sync::RwLock<Option<Policy>>>,
    traversal: Option<Arc<Traversal>>,
    /// Starts keep-alives, the port mapping and the candidates, then hands over the [`Reach`].
    reach_start: Mutex<Option<smol::Task<()>>>,
    reach: Arc<Mutex<Option<Reach>>>,
    spawner: Spawner,
    /// Last: dropped after every task and the endpoint, it stops and joins the threads.
    _threads: threads::Threads,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.identity.id())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Binds the endpoint, opens the pins and the shared folder, starts serving and, with phone
    /// books, keeps registered (state reported as [`Event::Registration`]).
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.data_dir)?;
        if !(1..=threads::MAX_THREADS).contains(&config.threads) {
            return Err("threads is between 1 and 8".into());
        }
        let identity = Arc::new(Identity::load_or_create(&config.identity)?);
        let threads = threads::Threads::start(config.threads)?;
        let spawner = Spawner::Executor(threads.ex.clone());
        let endpoint = Arc::new(Endpoint::bind_on(
            identity.clone(),
            &EndpointConfig {
                listen: config.listen,
                ..Default::default()
            },
            spawner.clone(),
        )?);
        let pins = PinStore::open(&config.data_dir.join("pins"))?;
        let pool = Arc::new(Pool::new(endpoint.clone(), pins, PoolConfig::default()));
        let book = match (&config.phonebooks.is_empty(), &config.name) {
            (true, _) => None,
            (false, None) => return Err("phone books need a player name".into()),
            (false, Some(n)) => Some(Arc::new(PhoneBook::new(
                &identity,
                PlayerName::parse(n)?,
                PhoneBookConfig {
                    urls: config.phonebooks.clone(),
                    ca_file: config.phonebook_ca.clone(),
                    ..Default::default()
                },
            )?)),
        };
        let relay_via = config
            .relay_via
            .iter()
            .map(|n| PlayerName::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        if relay_via.len() > crate::net::traversal::peer_relays::MAX_RELAY_VIA {
            return Err("at most 4 friends' relays (relay_via)".into());
        }
        let policy = Arc::new(std::sync::RwLock::new(
            crate::transfer::serve::visibility_policy(
                identity.id(),
                config.visibility,
                &config.friends,
            ),
        ));
        let traversal = match &book {
            Some(b) => {
                let t = Traversal::start(
                    endpoint.clone(),
                    Some(b.clone()),
                    TraversalConfig {
                        relay_via,
                        ..TraversalConfig::default()
                    },
                )
                .ok_or("the endpoint's control queue is taken")?;
                pool.set_traversal(t.clone());
                t.relays().set_policy(Some(dynamic(&policy)));
                Some(t)
            }
            None => None,
        };
        let node = Node {
            identity,
            endpoint,
            pool,
            book,
            server: Mutex::new(None),
            registration: Mutex::new(None),
            ops: Arc::default(),
            next_op: AtomicU64::new(1),
            events: Arc::new(EventQueue::new(config.event_queue)),
            config: Mutex::new(config.clone()),
            policy,
            traversal,
            reach_start: Mutex::new(None),
            reach: Arc::default(),
            spawner,
            _threads: threads,
        };
        match &config.share {
            Some(dir) => node.share(dir)?,
            None => node.serve(Arc::new(MemoryStore::default())),
        }
        node.restart_registration();
        if let Some(t) = node.traversal.clone() {
            let (slot, portmap) = (node.reach.clone(), config.portmap);
            let task = node.spawner.spawn(async move {
                let (reach, _) = Reach::start(&t, portmap).await;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(reach);
            });
            *node.reach_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(node)
    }

    /// Our key: what a friend lists to let us find them, and what we give friends.
    pub fn id(&self) -> PeerId {
        self.identity.id()
    }

    /// Our visibility and friend list, as last set.
    pub fn visibility(&self) -> (Visibility, Vec<PeerId>) {
        let c = self.cfg();
        (c.visibility, c.friends.clone())
    }

    /// The UDP address we listen on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The oldest event, without blocking.
    pub fn poll_event(&self) -> Option<Event> {
        self.events.poll()
    }

    fn cfg(&self) -> std::sync::MutexGuard<'_, NodeConfig> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self, store: Arc<dyn Store>) {
        let server = Server::spawn(
            self.endpoint.clone(),
            store,
            ServeConfig::default(),
            Some(dynamic(&self.policy)),
        );
        // The old server (if any) is dropped: its tasks end.
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    }

    /// Serves the files of `dir` (indexed now, with the hash index in the data folder).
    pub fn share(&self, dir: &Path) -> Result<(), NodeError> {
        let index = self.cfg().data_dir.join("share.index");
        let config = FolderStoreConfig {
            index: Some(index),
            ..Default::default()
        };
        let (store, _) = FolderStore::open(dir, &config)?;
        self.serve(Arc::new(store));
        Ok(())
    }

    /// Changes who may find us (and re-registers at once) and who the server answers.
    pub fn set_visibility(&self, visibility: Visibility, friends: Vec<PeerId>) {
        {
            let mut c = self.cfg();
            c.visibility = visibility;
            c.friends = friends.clone();
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) =
            crate::transfer::serve::visibility_policy(self.id(), visibility, &friends);
        self.restart_registration();
    }

    fn restart_registration(&self) {
        let Some(book) = self.book.clone() else {
            self.events.push(Event::Registration(Registration::Off));
            return;
        };
        let (visibility, friends) = {
            let c = self.cfg();
            (c.visibility, c.friends.clone())
        };
        let port = self.endpoint.local_addr().map(|a| a.port()).unwrap_or(0);
        let events = self.events.clone();
        let task = self.spawner.spawn(async move {
            let mut failures = 0u32;
            loop {
                let wait = match book.register(port, visibility, &friends).await {
                    Ok(a) => {
                        failures = 0;
                        events.push(Event::Registration(Registration::Registered {
                            ttl_secs: a.expires_in,
                        }));
                        Duration::from_secs(a.reregister_in.max(1))
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = book.retry_after(failures);
                        events.push(Event::Registration(Registration::Retrying {
                            reason: e.to_string(),
                            failures,
                            retry_in_secs: wait.as_secs(),
                        }));
                        wait
                    }
                };
                smol::Timer::after(wait).await;
            }
        });
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Looks a player up in the phone books.
    pub async fn lookup(&self, name: &str) -> Result<Found, NodeError> {
        let book = self.book.as_ref().ok_or("no phone book configured")?;
        Ok(book.lookup(&PlayerName::parse(name)?).await?)
    }

    /// Starts a lookup: [`Event::Found`] or [`Event::Failed`] follows with the returned id.
    pub fn start_lookup(&self, name: &str) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let (book, events, ops, name) = (
            self.book.clone(),
            self.events.clone(),
            self.ops.clone(),
            name.to_owned(),
        );
        let task = self.spawner.spawn(async move {
            let result: Result<Found, NodeError> = async {
                let book = book.ok_or("no phone book configured")?;
                Ok(book.lookup(&PlayerName::parse(&name)?).await?)
            }
            .await;
            events.push(match result {
                Ok(f) => Event::Found { op, key: f.key },
                Err(e) => Event::Failed {
                    op,
                    reason: e.to_string(),
                },
            });
            ops.lock().unwrap_or_else(|p| p.into_inner()).remove(&op);
        });
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op, task);
        op
    }

    /// Starts fetching `hash` into the data folder from the players named (looked up first) and
    /// the given sources; progress and the result arrive as events carrying the returned id.
    pub fn fetch(&self, hash: FileHash, players: Vec<String>, mut sources: Vec<Source>) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let dest = self.cfg().data_dir.join("downloads").join(hash.to_string());
        let (pool, book, events, ops) = (
            self.pool.clone(),
            self.book.clone(),
            self.events.clone(),
            self.ops.clone(),
        );
        let task = self.spawner.spawn(async move {
            let result: Result<(), String> = async {
                for p in &players {
                    let book = book.as_ref().ok_or("no phone book configured")?;
                    let name = PlayerName::parse(p).map_err(|e| e.to_string())?;
                    match book.lookup(&name).await {
                        Ok(f) => sources.push(Source {
                            name: Some(p.clone()),
                            addr: f.addr,
                            key: f.key,
                            candidates: f.record.candidates.clone(),
                        }),
                        Err(e) => log::info!("lookup of a player failed: {e}"),
                    }
                }
                if sources.is_empty() {
                    return Err("no sources".to_owned());
                }
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let (tx, rx) = smol::channel::bounded::<crate::Progress>(PROGRESS_CHANNEL);
                let forward = {
                    let events = events.clone();
                    async move {
                        while let Ok(p) = rx.recv().await {
                            events.push(Event::Progress {
                                op,
                                hash: p.hash,
                                done: p.bytes_done,
                                total: p.bytes_total,
                            });
                        }
                    }
                };
                let work = crate::download(
                    &pool,
                    hash,
                    &sources,
                    &dest,
                    DownloadConfig::default(),
                    Some(tx),
                );
                let (r, ()) = smol::future::zip(work, forward).await;
                r.map(|_| ()).map_err(|e| e.to_string())
            }
            .await;
            events.push(match result {
                Ok(()) => Event::Done { op },
                Err(reason) => Event::Failed { op, reason },
            });
            ops.lock().unwrap_or_else(|p| p.into_inner()).remove(&op);
        });
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op, task);
        op
    }

    /// Where a fetch of `hash` lands.
    pub fn download_path(&self, hash: FileHash) -> PathBuf {
        self.cfg().data_dir.join("downloads").join(hash.to_string())
    }

    /// Cancels an operation: returns whether it was running ([`Event::Failed`] follows).
    pub fn cancel(&self, op: OpId) -> bool {
        let task = self
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&op);
        match task {
            Some(t) => {
                drop(t);
                self.events.push(Event::Failed {
                    op,
                    reason: "cancelled".into(),
                });
                true
            }
            None => false,
        }
    }

    /// Stops every task, tells the phone book we left and lets connections close (each wait
    /// within [`NodeConfig::shutdown_bound`]). The socket is released when the node is dropped.
    pub async fn shutdown(&self) {
        let bound = self.cfg().shutdown_bound;
        drop(
            self.registration
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let ops: Vec<_> = self
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (op, t) in ops {
            t.cancel().await;
            self.events.push(Event::Failed {
                op,
                reason: "shut down".into(),
            });
        }
        drop(self.server.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(
            self.reach_start
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let reach = self.reach.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = reach {
            // The router forgets our port now rather than when the lease ends.
            smol::future::or(r.close(), async {
                smol::Timer::after(bound).await;
            })
            .await;
        }
        if let Some(t) = &self.traversal {
            t.relays().close_all().await;
        }
        if let Some(book) = &self.book {
            let gone = async {
                let _ = book.unregister().await;
            };
            smol::future::or(gone, async {
                smol::Timer::after(bound).await;
            })
            .await;
        }
        self.events.push(Event::Registration(Registration::Off));
        self.endpoint.close();
        smol::future::or(self.endpoint.wait_idle(), async {
            smol::Timer::after(bound).await;
        })
        .await;
    }
}

/// A policy that asks `cell` at each call: `None` in it serves everyone.
fn dynamic(cell: &Arc<std::sync::RwLock<Option<Policy>>>) -> Policy {
    let cell = cell.clone();
    Arc::new(move |key: &PeerId| {
        cell.read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|p| p(key))
    })
}
