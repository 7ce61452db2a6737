//! The network edge: a single-threaded smol executor that accepts connections, drives the
//! sans-IO [`App`], sweeps expired records and slow connections, and writes snapshots.
//!
//! ```no_run
//! use pi_server::{config::Config, server::Server};
//! let server = Server::bind(Config::default()).unwrap();
//! println!("listening on {}", server.local_addr());
//! smol::block_on(server.run(std::future::pending())).unwrap();
//! ```

mod conn;
mod conns;
mod link;
pub(crate) mod persist;
mod relay;
mod relay_bridge;
pub(crate) mod udp;
mod verify;

use crate::api::{App, Now};
use crate::config::Config;
use crate::metrics::Reject;
use crate::tls::CertStore;
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use conns::{ConnEntry, Conns};
use futures_lite::FutureExt as _;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use verify::MAX_BATCH;
use verify::Verifier;

/// How often expiry and connection deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Table slots the expiry sweep examines per tick: the whole table about once a second.
pub const SWEEP_FRACTION_PER_TICK: u32 = 10;

/// How often the certificate files are checked for a change (size or modification time).
pub const TLS_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// HTTPS on the listener.
pub(crate) struct TlsState {
    config: Arc<rustls::ServerConfig>,
    pub(crate) store: Arc<CertStore>,
    handshake_timeout_ms: u64,
}

/// Asks a running server to reload its certificate files now, or, with ACME, to renew its
/// certificate now (what SIGHUP does to `pi-server`).
#[derive(Debug, Clone)]
pub struct TlsReload(async_channel::Sender<()>);

impl TlsReload {
    /// Requests a reload (or renewal); several requests before it runs count as one.
    pub fn request(&self) {
        let _ = self.0.try_send(());
    }
}

/// State shared by the tasks of one server (all on one thread).
pub(crate) struct Shared {
    pub(crate) app: RefCell<App>,
    pub(crate) input: RefCell<Vec<u8>>,
    pub(crate) output: RefCell<Vec<u8>>,
    conns: RefCell<Conns>,
    verifier: Verifier,
    start: Instant,
    snapshot_changes: Cell<u64>,
    pub(crate) tls: Option<TlsState>,
    /// The shared store, when `redis-url` is set.
    pub(crate) redis: Option<Rc<crate::store::redis::Redis>>,
    /// Messages to the other instances, when `redis-url` is set (see [`crate::bus`]).
    pub(crate) bus_tx: Option<async_channel::Sender<(crate::bus::Dest, Vec<u8>)>>,
}

impl Shared {
    /// Queues what the app left for the other instances (dropped and counted if the queue
    /// is full).
    pub(crate) fn flush_bus(&self) {
        let Some(tx) = &self.bus_tx else { return };
        let mut app = self.app.borrow_mut();
        let Some(side) = app.bus.as_mut() else { return };
        if side.outbox.is_empty() {
            return;
        }
        let out = std::mem::take(&mut side.outbox);
        for m in out {
            if tx.try_send(m).is_err() {
                app.metrics.redis.bus_dropped += 1;
            }
        }
    }

    pub(crate) fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now {
            mono_ms: self.start.elapsed().as_millis() as u64,
            wall_ms,
        }
    }
}

/// A bound, not yet running, phone book.
pub struct Server {
    listener: Async<TcpListener>,
    udp: Option<udp::UdpSockets>,
    relay: Option<relay::Bound>,
    shared: Rc<Shared>,
    reload: (async_channel::Sender<()>, async_channel::Receiver<()>),
    acme: Option<crate::acme::Manager>,
    redis_ready: Option<crate::store::replicate::Ready>,
    bus_rx: Option<async_channel::Receiver<(crate::bus::Dest, Vec<u8>)>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl Server {
    /// Loads the snapshot (if configured) and binds the listening socket.
    pub fn bind(config: Config) -> io::Result<Server> {
        raise_fd_limit(config.max_connections);
        // std sets SO_REUSEADDR, so a restart binds even while old connections are in
        // TIME_WAIT (async-io's own bind does not).
        let listener = Async::new(TcpListener::bind(config.listen)?)?;
        let udp = udp::bind_all(&config, listener.get_ref().local_addr()?)?;
        let relay = relay::bind(&config)?;
        let start = Instant::now();
        let max_conns = config.max_connections as usize;
        let mut app = persist::load(config)?;
        if let Some(u) = &udp {
            app.udp.port = u.main.get_ref().local_addr()?.port();
            app.udp.alt_port = match &u.alt {
                Some(a) => a.get_ref().local_addr()?.port(),
                None => 0,
            };
        }
        let (relay, info) = relay.map_or((None, None), |(b, i)| (Some(b), Some(i)));
        app.relay = info;
        let changes = app.table.changes();
        let (redis, redis_ready) = match redis_setup(&mut app)? {
            Some((r, ready)) => (Some(r), Some(ready)),
            None => (None, None),
        };
        let (bus_tx, bus_rx) = match &redis {
            Some(_) => {
                app.bus = Some(crate::bus::Side::new());
                let (tx, rx) = async_channel::bounded(crate::bus::QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (tls, acme) = tls_setup(&app.config)?;
        if let Some(t) = &tls {
            app.metrics.tls.enabled = true;
            app.metrics.tls.cert_not_after = t
                .store
                .current()
                .and_then(|c| crate::tls::leaf_validity(&c))
                .map(|v| v.not_after);
        }
        Ok(Server {
            reload: async_channel::bounded(1),
            acme,
            redis_ready,
            bus_rx,
            listener,
            udp,
            relay,
            shared: Rc::new(Shared {
                app: RefCell::new(app),
                input: RefCell::new(Vec::new()),
                output: RefCell::new(Vec::new()),
                conns: RefCell::new(Conns::new(max_conns)),
                verifier: Verifier::new(max_conns),
                start,
                snapshot_changes: Cell::new(changes),
                tls,
                redis,
                bus_tx,
            }),
        })
    }

    /// The relay's address, if it is on.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref()?.local_addr()
    }

    /// Whether the listener speaks HTTPS.
    pub fn is_https(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// A handle that reloads the certificate files (or renews the ACME certificate) while
    /// the server runs; `None` for plain HTTP.
    pub fn tls_reload(&self) -> Option<TlsReload> {
        self.shared.tls.as_ref()?;
        Some(TlsReload(self.reload.0.clone()))
    }

    /// The UDP service's address, if it is on.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref()?.main.get_ref().local_addr().ok()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .get_ref()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then closes connections and writes a final
    /// snapshot.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let ex = Rc::new(LocalExecutor::new());
        let shared = self.shared.clone();
        let listener = self.listener;
        {
            let app = shared.app.borrow();
            log::info!(
                "phone book listening on {} (capacity {}, ttl {} s, {} records loaded)",
                listener.get_ref().local_addr()?,
                app.config.capacity,
                app.config.ttl,
                app.table.live()
            );
        }
        let local = listener.get_ref().local_addr()?;
        match &shared.tls {
            Some(_) => log::info!("HTTPS on {local}"),
            None if faces_internet(local.ip()) => log::warn!(
                "plain HTTP on {local}, which is not a loopback or private address: players' \
                 requests cross the network unencrypted. Use HTTPS (tls-cert and tls-key, or \
                 acme-domain), or listen on a private address behind a TLS proxy"
            ),
            None => {}
        }
        let mut udp_tasks = Vec::new();
        let accept = accept_loop(&ex, shared.clone(), listener);
        let reload_rx = self.reload.1;
        if let Some(t) = &shared.tls {
            let task = match self.acme {
                Some(m) => ex.spawn(crate::acme::run(shared.clone(), m, reload_rx)),
                None => ex.spawn(tls_files_loop(shared.clone(), t.store.clone(), reload_rx)),
            };
            udp_tasks.push(task);
        }
        let mut udp_main = None;
        if let Some(u) = self.udp {
            let main = Rc::new(u.main);
            udp_main = Some(main.clone());
            log::info!(
                "UDP service on {} (second port {})",
                main.get_ref().local_addr()?,
                shared.app.borrow().udp.alt_port
            );
            udp_tasks.push(ex.spawn(udp::serve(shared.clone(), main.clone(), main.clone())));
            if let Some(alt) = u.alt {
                udp_tasks.push(ex.spawn(udp::serve(shared.clone(), Rc::new(alt), main)));
            }
        }
        // Relay messages from the other instances, for the relay.
        let (inbox_tx, inbox_rx) = match (&self.relay, &self.bus_rx) {
            (Some(_), Some(_)) => {
                let (tx, rx) = async_channel::bounded(crate::bus::INBOX);
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        #[cfg(feature = "redis")]
        if let (Some(r), Some(rx)) = (&shared.redis, self.bus_rx) {
            let sinks = crate::bus::link::Sinks {
                udp: udp_main.clone(),
                relay: inbox_tx,
            };
            udp_tasks.push(ex.spawn(crate::bus::link::run(shared.clone(), r.clone(), rx, sinks)));
        }
        #[cfg(not(feature = "redis"))]
        let _ = (inbox_tx, self.bus_rx);
        if let Some(r) = self.relay {
            if let Some(a) = r.local_addr() {
                log::info!("relay on TCP {a} (TLS)");
            }
            udp_tasks.push(ex.spawn(relay::serve(
                ex.clone(),
                shared.clone(),
                r,
                udp_main,
                inbox_rx,
            )));
        }
        if let Some(r) = &shared.redis {
            udp_tasks.push(ex.spawn(crate::store::replicate::run(
                shared.clone(),
                r.clone(),
                self.redis_ready,
            )));
        }
        let ticker = tick_loop(shared.clone());
        let snapshots = persist::snapshot_loop(shared.clone());
        // A task of its own, so it runs in turn after the connections that queued work.
        let sh = shared.clone();
        let verifier = ex.spawn(async move { sh.verifier.run(&sh.app).await });
        let serve = async {
            let _ = accept.or(ticker).or(snapshots).await;
        };
        ex.run(serve.or(shutdown)).await;
        // Cancelled on the executor, so their futures (the relay's holds the executor and its
        // listener) are dropped now and every socket closes, not when the executor would be.
        ex.run(async {
            verifier.cancel().await;
            for t in udp_tasks {
                t.cancel().await;
            }
        })
        .await;
        log::info!("stopping");
        shared.conns.borrow().close_all();
        persist::final_snapshot(&shared).await;
        Ok(())
    }
}

async fn accept_loop(ex: &LocalExecutor<'_>, shared: Rc<Shared>, listener: Async<TcpListener>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        let now_ms = shared.now().mono_ms;
        let (link, handshake_until) = match &shared.tls {
            None => (link::Link::Plain, None),
            Some(_)
                if !shared
                    .app
                    .borrow_mut()
                    .admit_handshake(peer.ip(), shared.now()) =>
            {
                continue;
            }
            Some(t) => match rustls::ServerConnection::new(t.config.clone()) {
                Ok(mut c) => {
                    // Answers are bounded by what one read of requests asks for, as with
                    // plain HTTP's `unsent`; rustls's default 64 KiB cap would cut them.
                    c.set_buffer_limit(None);
                    (
                        link::Link::Tls(Box::new(c)),
                        Some(now_ms + t.handshake_timeout_ms),
                    )
                }
                Err(e) => {
                    log::warn!("TLS session: {e}");
                    continue;
                }
            },
        };
        let entry = Rc::new(ConnEntry {
            stream: Rc::new(stream),
            last_active_ms: Cell::new(now_ms),
            busy_since_ms: Cell::new(None),
            handshake_until_ms: Cell::new(handshake_until),
        });
        let id = shared.conns.borrow_mut().insert(entry.clone());
        let Some(id) = id else {
            let mut app = shared.app.borrow_mut();
            let mut out = Vec::new();
            app.reject(
                phonebook_proto::ErrorCode::Overloaded,
                "too many connections",
                Reject::TooManyConnections,
                &mut out,
            );
            app.audit().warn(
                shared.now().mono_ms,
                format_args!("connection limit reached"),
            );
            if matches!(link, link::Link::Plain) {
                let _ = entry.stream.get_ref().write(&out);
            }
            continue;
        };
        {
            let mut app = shared.app.borrow_mut();
            app.metrics.connections_total += 1;
            app.metrics.connections_open = shared.conns.borrow().open() as u64;
        }
        let sh = shared.clone();
        ex.spawn(async move {
            conn::serve(sh.clone(), entry, peer.ip(), link).await;
            sh.conns.borrow_mut().remove(id);
            sh.app.borrow_mut().metrics.connections_open = sh.conns.borrow().open() as u64;
        })
        .detach();
    }
}

async fn tick_loop(shared: Rc<Shared>) {
    let mut last_conn_sweep = 0;
    let mut last_udp_sweep = 0;
    loop {
        Timer::after(TICK).await;
        let now = shared.now();
        let mut app = shared.app.borrow_mut();
        let budget = app
            .table
            .capacity()
            .div_ceil(SWEEP_FRACTION_PER_TICK)
            .max(64);
        let retention = app.config.retention;
        app.table.sweep(now.secs(), budget, retention);
        if now.mono_ms - last_udp_sweep >= 10_000 {
            last_udp_sweep = now.mono_ms;
            app.sweep_udp(now);
        }
        if now.mono_ms - last_conn_sweep >= 1000 {
            last_conn_sweep = now.mono_ms;
            let closed = shared.conns.borrow().sweep(
                now.mono_ms,
                u64::from(app.config.read_timeout) * 1000,
                u64::from(app.config.idle_timeout) * 1000,
            );
            for _ in 0..closed {
                app.metrics.reject(Reject::Timeout);
            }
        }
    }
}

/// Connects to Redis when `redis-url` is set and takes the shared token key from it (or
/// gives it this instance's, if it is the first). The records are read by the replication
/// task once the server runs; until then writes answer 503.
type RedisSetup = Option<(
    Rc<crate::store::redis::Redis>,
    crate::store::replicate::Ready,
)>;

fn redis_setup(app: &mut App) -> io::Result<RedisSetup> {
    let Some(url) = app.config.redis_url.clone() else {
        return Ok(None);
    };
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err(bad(format!("redis-url: {}", crate::store::WITHOUT_REDIS)))
    }
    #[cfg(feature = "redis")]
    {
        if app.config.retention == 0 {
            return Err(bad(
                "redis-url needs retention of at least 1 s (an unregistration is shared as a \
                 retained binding)"
                    .into(),
            ));
        }
        let ca = match &app.config.redis_ca {
            None => None,
            Some(_) if !url.starts_with("rediss://") => {
                return Err(bad("redis-ca needs a rediss:// (TLS) redis-url".into()));
            }
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| bad(format!("redis-ca: cannot read {}: {e}", path.display())))?,
            ),
        };
        if let Some(pem) = &ca {
            use rustls::pki_types::pem::PemObject as _;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("redis-ca: not PEM certificates: {e:?}")))?;
            if certs.is_empty() {
                return Err(bad("redis-ca: no certificate in the file".into()));
            }
        }
        let redis = crate::store::redis::Redis::new(&url, &app.config.redis_prefix, ca)
            .map_err(|e| bad(format!("redis-url: {e}")))?;
        let (secret, (records, ready)) = smol::block_on(async {
            let mut c = redis.connect().await?;
            let secret = redis.token_secret(&mut c, app.tokens.secret()).await?;
            // Start with every record, so the first requests meet a full table.
            let read = crate::store::replicate::connect_and_read(&redis, |r| match r {
                Some((b, pttl)) => crate::store::replicate::apply_to(app, Some(b), Some(pttl), 0),
                None => crate::store::replicate::apply_to(app, None, None, 0),
            })
            .await?;
            Ok::<_, crate::store::redis::StoreError>((secret, read))
        })
        .map_err(|e| io::Error::other(format!("redis-url: cannot use Redis at start: {e}")))?;
        log::info!("Redis: {records} records read at start");
        app.tokens = crate::token::TokenKey::new(secret);
        app.metrics.redis.enabled = true;
        app.metrics.redis.up = true;
        redis.set_connection(Some(ready.writer()));
        Ok(Some((Rc::new(redis), ready)))
    }
}

/// The certificate store and its configuration if HTTPS is configured, and the ACME manager
/// if the certificate comes from ACME. Errors name the setting at fault.
fn tls_setup(config: &Config) -> io::Result<(Option<TlsState>, Option<crate::acme::Manager>)> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let (store, acme) = match (&config.tls_cert, &config.tls_key, &config.acme_domain) {
        (None, None, None) => return Ok((None, None)),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(bad(
                "tls-cert/tls-key and acme-domain exclude each other: give files or a domain"
                    .into(),
            ));
        }
        (Some(c), Some(k), None) => (
            CertStore::from_files(c, k).map_err(|e| bad(format!("tls-cert/tls-key: {e}")))?,
            None,
        ),
        (Some(_), None, None) => return Err(bad("tls-cert needs tls-key".into())),
        (None, Some(_), None) => return Err(bad("tls-key needs tls-cert".into())),
        (None, None, Some(_)) => {
            let store = CertStore::empty();
            let m = crate::acme::Manager::new(config)?;
            if let Some(ck) = m.stored_certificate() {
                store.set(ck);
            }
            (store, Some(m))
        }
    };
    let store = Arc::new(store);
    Ok((
        Some(TlsState {
            config: crate::tls::server_config(store.clone())?,
            store,
            handshake_timeout_ms: u64::from(config.tls_handshake_timeout) * 1000,
        }),
        acme,
    ))
}

/// Whether plain HTTP on `ip` may face the internet: not loopback, not a private, link-local
/// or shared (carrier-grade NAT) range; the unspecified address listens on every interface.
pub fn faces_internet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return faces_internet(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Reloads the certificate files when asked ([`TlsReload`], SIGHUP) and when their size or
/// modification time changes (checked every [`TLS_FILE_CHECK_INTERVAL`]). A file that fails
/// to load leaves the served certificate in place and is logged.
async fn tls_files_loop(
    shared: Rc<Shared>,
    store: Arc<CertStore>,
    asked: async_channel::Receiver<()>,
) {
    let stamp = |store: &CertStore| {
        store.files().map(|(c, k)| {
            let m = |p: &std::path::Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok()))
            };
            (m(c), m(k))
        })
    };
    let mut last = stamp(&store);
    loop {
        let by_request = async { asked.recv().await.is_ok() }
            .or(async {
                Timer::after(TLS_FILE_CHECK_INTERVAL).await;
                false
            })
            .await;
        let now = stamp(&store);
        if !by_request && now == last {
            continue;
        }
        last = now;
        let mut app = shared.app.borrow_mut();
        match store.reload_files() {
            Ok(v) => {
                app.metrics.tls.reloads += 1;
                app.metrics.tls.cert_not_after = v.map(|v| v.not_after);
                log::info!("certificate files reloaded");
            }
            Err(e) => {
                app.metrics.tls.reload_failures += 1;
                log::warn!("certificate reload failed, still serving the previous one: {e}");
            }
        }
    }
}

/// Lets the process hold `want` connections plus files for the snapshot (Windows has no such
/// limit on sockets: nothing to do there).
#[cfg(not(unix))]
fn raise_fd_limit(_want: u32) {}

/// Lets the process hold `want` connections plus files for the snapshot.
#[cfg(unix)]
fn raise_fd_limit(want: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let need = u64::from(want) + 64;
    if cur.current.is_some_and(|c| c < need) {
        let mut new = cur;
        new.current = Some(cur.maximum.map_or(need, |m| m.min(need)));
        if setrlimit(Resource::Nofile, new).is_err() {
            log::warn!("could not raise the open-file limit to {need}");
        }
    }
}

/// A server on its own thread, for tests: bind 127.0.0.1:0, never sleep to wait.
pub struct TestServer {
    addr: SocketAddr,
    reload: Option<TlsReload>,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestServer {
    /// Starts a server with `config` on its own thread; returns once it is bound.
    pub fn start(config: Config) -> io::Result<TestServer> {
        let (tx, rx) = async_channel::bounded::<()>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let server = match Server::bind(config) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok((server.local_addr(), server.tls_reload())));
            smol::block_on(server.run(async move {
                let _ = rx.recv().await;
            }))
        });
        let (addr, reload) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("server thread died"))??;
        Ok(TestServer {
            addr,
            reload,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reloads the certificate files (or renews over ACME), as SIGHUP does; `None` for plain
    /// HTTP.
    pub fn tls_reload(&self) -> Option<&TlsReload> {
        self.reload.as_ref()
    }

    /// Stops the server (final snapshot included) and waits for it.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.try_send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::faces_internet;

    #[test]
    fn which_addresses_face_the_internet() {
        for ip in [
            "0.0.0.0",
            "::",
            "203.0.113.7",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(faces_internet(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "169.254.1.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(!faces_internet(ip.parse().unwrap()), "{ip}");
        }
    }
}
