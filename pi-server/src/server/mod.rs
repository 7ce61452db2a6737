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
mod persist;
mod relay;
mod udp;
mod verify;

use crate::api::{App, Now};
use crate::config::Config;
use crate::metrics::Reject;
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use conns::{ConnEntry, Conns};
use futures_lite::FutureExt as _;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use verify::MAX_BATCH;
use verify::Verifier;

/// How often expiry and connection deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Table slots the expiry sweep examines per tick: the whole table about once a second.
pub const SWEEP_FRACTION_PER_TICK: u32 = 10;

/// State shared by the tasks of one server (all on one thread).
pub(crate) struct Shared {
    pub(crate) app: RefCell<App>,
    pub(crate) input: RefCell<Vec<u8>>,
    pub(crate) output: RefCell<Vec<u8>>,
    conns: RefCell<Conns>,
    verifier: Verifier,
    start: Instant,
    snapshot_changes: Cell<u64>,
}

impl Shared {
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
        Ok(Server {
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
            }),
        })
    }

    /// The relay's address, if it is on.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref()?.local_addr()
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
        let accept = accept_loop(&ex, shared.clone(), listener);
        let mut udp_tasks = Vec::new();
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
        if let Some(r) = self.relay {
            if let Some(a) = r.local_addr() {
                log::info!("relay on TCP {a} (TLS)");
            }
            udp_tasks.push(ex.spawn(relay::serve(ex.clone(), shared.clone(), r, udp_main)));
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
        let entry = Rc::new(ConnEntry {
            stream: Rc::new(stream),
            last_active_ms: Cell::new(shared.now().mono_ms),
            busy_since_ms: Cell::new(None),
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
            let _ = entry.stream.get_ref().write(&out);
            continue;
        };
        {
            let mut app = shared.app.borrow_mut();
            app.metrics.connections_total += 1;
            app.metrics.connections_open = shared.conns.borrow().open() as u64;
        }
        let sh = shared.clone();
        ex.spawn(async move {
            conn::serve(sh.clone(), entry, peer.ip()).await;
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
            let _ = ready_tx.send(Ok(server.local_addr()));
            smol::block_on(server.run(async move {
                let _ = rx.recv().await;
            }))
        });
        let addr = ready_rx
            .recv()
            .map_err(|_| io::Error::other("server thread died"))??;
        Ok(TestServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
