//! The relay's connections (docs/PROTOCOL.md "Relay"): TLS 1.3 over TCP, frames of
//! `phonebook_proto::relay`, sessions paired between two authenticated peers, datagrams copied
//! from one to the other. Who may use it and whom an open may reach is decided by
//! [`App::relay_auth`](crate::api::App::relay_auth) and
//! [`App::relay_open`](crate::api::App::relay_open).
//!
//! Bounded everywhere: connections (`relay-max-connections`, counted from the TCP accept, so
//! handshakes in progress count too; one address may hold at most [`max_per_address`] of
//! them), sessions per connection
//! (`relay-max-sessions`), tickets (at most one per opening session), each connection's
//! outbound queue ([`QUEUE`] frames: a datagram for a full queue is dropped, as a full UDP
//! buffer would, and QUIC recovers it), bandwidth per connection and in total (token buckets:
//! a connection over its rate is simply not read until it has tokens again, so TCP slows the
//! sender), and silence (`relay-idle`). A peer that breaks the protocol gets `Refused` and is
//! cut off with a logged reason; nothing it sends affects other connections.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use phonebook_proto::relay::{Bucket, CloseReason, Frame, RefuseReason};
use phonebook_proto::relay_hub::{self, Accepted, ConnId, Out, Refusal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::cell::RefCell;

use super::Shared;
use super::relay_bridge::Bridges;
use crate::api::relay::{RelayInfo, RelayPeer, RelayTarget};
use crate::metrics::RelayRefusal;

/// Frames waiting to be written to one connection.
pub const QUEUE: usize = 1024;
/// Time allowed for the TLS handshake and the Hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a target has to accept a session.
pub const ACCEPT_TIMEOUT_MS: u64 = 10_000;
/// Connections being refused at once (each is told why after its TLS handshake, bounded by
/// [`HANDSHAKE_TIMEOUT`]); beyond it, a connection over a limit is closed without a word.
pub const MAX_REFUSING: usize = 64;
/// Bytes gathered into one TLS write.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes read from TLS at once.
const READ_CHUNK: usize = 64 * 1024;

/// The relay's certificate and key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("relay::Identity(key hidden)")
    }
}

impl Identity {
    /// SHA-256 of the certificate, lowercase hex: `relayCert`.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.cert.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn generate() -> io::Result<Self> {
        let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
        let params = rcgen::CertificateParams::new(vec!["ffxiv-p2p-relay".to_owned()])
            .map_err(io::Error::other)?;
        let cert = params.self_signed(&key).map_err(io::Error::other)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// The identity kept in `file` (PEM: key, then certificate), made and stored durably on
    /// first use, so the pin that peers hold survives restarts; without a file, a new one.
    pub fn load_or_create(file: Option<&Path>) -> io::Result<Self> {
        let Some(file) = file else {
            return Self::generate();
        };
        match std::fs::read(file) {
            Ok(pem) => {
                let bad = |what: &str| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("relay identity {}: {what}", file.display()),
                    )
                };
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| bad("no private key"))?;
                let cert =
                    CertificateDer::from_pem_slice(&pem).map_err(|_| bad("no certificate"))?;
                Ok(Self { cert, key })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = Self::generate()?;
                let mut pem = Vec::new();
                let b64 = |der: &[u8]| {
                    let text = phonebook_proto::b64::encode(der);
                    text.as_bytes()
                        .chunks(64)
                        .map(|l| String::from_utf8_lossy(l).into_owned() + "\n")
                        .collect::<String>()
                };
                pem.extend_from_slice(b"-----BEGIN PRIVATE KEY-----\n");
                pem.extend_from_slice(b64(id.key.secret_der()).as_bytes());
                pem.extend_from_slice(b"-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\n");
                pem.extend_from_slice(b64(id.cert.as_ref()).as_bytes());
                pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
                write_private(file, &pem)?;
                Ok(id)
            }
            Err(e) => Err(e),
        }
    }

    fn tls(&self) -> io::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(io::Error::other)?;
        c.alpn_protocols = vec![phonebook_proto::relay::ALPN.to_vec()];
        Ok(c)
    }
}

/// Writes `bytes` to `path` durably (temporary file, fsync, rename, fsync of the folder),
/// readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The bound relay.
#[derive(Debug)]
pub struct Bound {
    listener: Async<TcpListener>,
    identity: Identity,
}

impl Bound {
    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.get_ref().local_addr().ok()
    }
}

/// Binds the relay if configured; what register answers announce.
pub fn bind(config: &crate::config::Config) -> io::Result<Option<(Bound, RelayInfo)>> {
    let Some(addr) = config.relay_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for the relay on TCP {addr} (relay-listen): {e}"),
        )
    })?;
    let port = listener.local_addr()?.port();
    let file = config
        .snapshot
        .as_ref()
        .map(|s| s.with_extension("relay-identity.pem"));
    let identity = Identity::load_or_create(file.as_deref())?;
    let info = RelayInfo {
        port,
        host: config.relay_host.clone(),
        cert_sha256: identity.fingerprint(),
    };
    Ok(Some((
        Bound {
            listener: Async::new(listener)?,
            identity,
        },
        info,
    )))
}

/// Connections one IP address may hold: an eighth of `relay-max-connections`, at least 4. Not
/// one: players behind one carrier-grade NAT share an address, and they are the ones who
/// need the relay most.
pub fn max_per_address(max_connections: usize) -> usize {
    (max_connections / 8).max(4)
}

/// The pairing (shared with a player's peer relay) and what this server adds around it.
#[derive(Debug)]
pub(super) struct Hub {
    pub(super) core: relay_hub::Hub<RelayPeer>,
    txs: HashMap<ConnId, async_channel::Sender<Vec<u8>>>,
    /// Connections accepted and not ended yet (handshaking or authenticated), in all and by
    /// address.
    open: usize,
    per_address: HashMap<std::net::IpAddr, usize>,
    /// Connections being told `Refused` now.
    refusing: usize,
    pub(super) next: u64,
    total: Bucket,
    /// Sessions bridged to other instances.
    pub(super) bridges: Bridges,
}

fn frame(f: &Frame<'_>) -> Vec<u8> {
    relay_hub::encode(f)
}

impl Hub {
    /// A hub of connections holding at most `max_sessions` sessions, sending at most `total`
    /// bytes a second in all.
    pub(super) fn new(max_sessions: usize, total: u32, bridges: Bridges) -> Self {
        Hub {
            core: relay_hub::Hub::new(max_sessions),
            txs: HashMap::new(),
            open: 0,
            per_address: HashMap::new(),
            refusing: 0,
            next: 1,
            total: Bucket::new(total),
            bridges,
        }
    }

    /// Authenticated connections (a bridge's half is not one).
    fn connections(&self) -> usize {
        self.core.len().saturating_sub(self.bridges.len())
    }

    /// Queues `bytes` for `to` (a connection, or a bridge's half: then for the other
    /// instance); false if its queue is full or gone.
    pub(super) fn send(&self, (to, bytes): Out) -> bool {
        if self.bridges.is_bridge(to) {
            return self.bridges.forward(to, &bytes);
        }
        self.txs
            .get(&to)
            .is_some_and(|tx| tx.try_send(bytes).is_ok())
    }

    /// Adds authenticated connection `id` as `key` and returns what is queued for it.
    #[cfg(test)]
    pub(super) fn attach(
        &mut self,
        id: ConnId,
        key: RelayPeer,
    ) -> async_channel::Receiver<Vec<u8>> {
        let (tx, rx) = async_channel::bounded(QUEUE);
        self.core.insert(id, key);
        self.txs.insert(id, tx);
        rx
    }

    /// Tells `target` of an open by `requester` with `ticket`: `Incoming` on its listening
    /// connection, else the UDP call through its mapping. False if neither is possible.
    fn tell(
        &self,
        target: &RelayTarget,
        requester: &[u8; 32],
        ticket: [u8; 16],
        udp: Option<&Async<UdpSocket>>,
        shared: &Shared,
    ) -> bool {
        match (self.core.listener(&target.peer), &target.call, udp) {
            (Some(l), _, _) => match phonebook_proto::PublicKey::from_bytes(requester) {
                Ok(requester) => self.send((l, frame(&Frame::Incoming { ticket, requester }))),
                Err(_) => false,
            },
            (None, Some(call), Some(sock)) => {
                super::udp::send(sock, &call.bytes, call.to);
                let mut app = shared.app.borrow_mut();
                app.metrics.udp_out.0 += 1;
                app.metrics.udp_out.1 += call.bytes.len() as u64;
                true
            }
            _ => false,
        }
    }
}

/// Accepts relay connections until dropped.
pub async fn serve(
    ex: Rc<LocalExecutor<'static>>,
    shared: Rc<Shared>,
    bound: Bound,
    udp: Option<Rc<Async<UdpSocket>>>,
    inbox: Option<async_channel::Receiver<Vec<u8>>>,
) {
    let tls = match bound.identity.tls() {
        Ok(c) => futures_rustls::TlsAcceptor::from(Arc::new(c)),
        Err(e) => {
            log::error!("relay TLS setup failed: {e}");
            return;
        }
    };
    let (total, max, max_sessions, bridges) = {
        let app = shared.app.borrow();
        let bridges = Bridges::new(
            app.bus.as_ref().map(|b| b.me),
            shared.bus_tx.clone(),
            app.config.relay_max_connections as usize,
            u64::from(app.config.relay_idle) * 1000,
        );
        (
            app.config.relay_rate_total,
            app.config.relay_max_connections as usize,
            app.config.relay_max_sessions as usize,
            bridges,
        )
    };
    let per_address = max_per_address(max);
    let hub = Rc::new(RefCell::new(Hub::new(max_sessions, total, bridges)));
    let sweeper = {
        let (hub, shared) = (hub.clone(), shared.clone());
        async move {
            loop {
                Timer::after(Duration::from_secs(1)).await;
                let now = shared.now().mono_ms;
                let mut h = hub.borrow_mut();
                h.bridges.tick(now);
                for o in h.core.expire(now) {
                    // A bridge's half waiting at this end stands for a requester elsewhere,
                    // whose own relay counts the timeout.
                    let elsewhere = h.bridges.is_bridge(o.0);
                    h.send(o);
                    if !elsewhere {
                        shared
                            .app
                            .borrow_mut()
                            .metrics
                            .relay
                            .refuse(RelayRefusal::Timeout);
                    }
                }
                let ended = h.sweep_bridges(now, ACCEPT_TIMEOUT_MS);
                let mut app = shared.app.borrow_mut();
                app.metrics.relay.sessions =
                    app.metrics.relay.sessions.saturating_sub(ended as u64);
                app.metrics.relay.bridges = h.bridges.len() as u64;
            }
        }
    };
    let from_bus = {
        let (hub, shared, udp) = (hub.clone(), shared.clone(), udp.clone());
        async move {
            let Some(inbox) = inbox else {
                return std::future::pending().await;
            };
            while let Ok(bytes) = inbox.recv().await {
                on_bus(&bytes, &hub, &shared, udp.as_deref());
            }
            std::future::pending().await
        }
    };
    let accept = async {
        loop {
            let (stream, from) = match bound.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    log::warn!("relay accept failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ip = from.ip();
            let over = {
                let h = hub.borrow();
                h.open >= max || h.per_address.get(&ip).copied().unwrap_or(0) >= per_address
            };
            if over {
                shared
                    .app
                    .borrow_mut()
                    .metrics
                    .relay
                    .refuse(RelayRefusal::Full);
                if hub.borrow().refusing >= MAX_REFUSING {
                    continue;
                }
                hub.borrow_mut().refusing += 1;
                // Told after the handshake, so the peer knows why.
                let (tls, hub) = (tls.clone(), hub.clone());
                ex.spawn(async move {
                    if let Ok(Ok(mut s)) = async { Ok(tls.accept(stream).await) }
                        .or(async {
                            Timer::after(HANDSHAKE_TIMEOUT).await;
                            Err(())
                        })
                        .await
                    {
                        let _ = s
                            .write_all(&frame(&Frame::Refused {
                                reason: RefuseReason::Full,
                            }))
                            .await;
                        let _ = s.close().await;
                    }
                    hub.borrow_mut().refusing -= 1;
                })
                .detach();
                continue;
            }
            {
                let mut h = hub.borrow_mut();
                h.open += 1;
                *h.per_address.entry(ip).or_default() += 1;
            }
            let (tls, hub, shared, udp) = (tls.clone(), hub.clone(), shared.clone(), udp.clone());
            ex.spawn(async move {
                let id = {
                    let mut h = hub.borrow_mut();
                    h.next += 1;
                    h.next
                };
                if let Err(why) =
                    connection(id, stream, tls, hub.clone(), shared.clone(), udp).await
                {
                    log::info!("relay connection {id} cut off: {why}");
                }
                end(id, &hub, &shared);
                let mut h = hub.borrow_mut();
                h.open -= 1;
                if let Some(n) = h.per_address.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        h.per_address.remove(&ip);
                    }
                }
            })
            .detach();
        }
    };
    accept.or(sweeper).or(from_bus).await;
}

/// A relay message from another instance (see [`crate::bus`]).
fn on_bus(
    bytes: &[u8],
    hub: &Rc<RefCell<Hub>>,
    shared: &Rc<Shared>,
    udp: Option<&Async<UdpSocket>>,
) {
    let Ok((from, msg)) = crate::bus::codec::Message::decode(bytes) else {
        return;
    };
    let now = shared.now();
    let mut h = hub.borrow_mut();
    h.bridges.tick(now.mono_ms);
    match msg {
        crate::bus::codec::Message::RelayOpen {
            bridge,
            requester,
            target,
            target_key,
        } => {
            if !h.bridge_room() {
                shared.app.borrow_mut().metrics.redis.bus_dropped += 1;
                return;
            }
            let ticket = random16();
            let decided = shared
                .app
                .borrow_mut()
                .relay_open_from_bus(&requester, &target, target_key, ticket, now);
            // Not visible here, or no way to tell it: another instance may answer.
            let Some(t) = decided else { return };
            if !h.tell(&t, &requester, ticket, udp, shared) {
                return;
            }
            h.answer_elsewhere(from, bridge, requester, t.peer, ticket, now.mono_ms);
        }
        crate::bus::codec::Message::Bridged {
            bridge,
            to_origin,
            frame,
        } => {
            let counts = h.on_bridged(from, bridge, to_origin, frame, now.mono_ms);
            let mut app = shared.app.borrow_mut();
            if counts.paired > 0 {
                app.metrics.relay.sessions += counts.paired as u64;
                app.metrics.relay.sessions_total += counts.paired as u64;
            } else {
                app.metrics.relay.sessions = app
                    .metrics
                    .relay
                    .sessions
                    .saturating_sub(counts.paired.unsigned_abs());
            }
            app.metrics.redis.bus_dropped += counts.dropped;
            app.metrics.relay.bridges = h.bridges.len() as u64;
        }
        crate::bus::codec::Message::Punch { .. } => {}
    }
}

/// Removes connection `id`: its sessions end for the other sides.
fn end(id: ConnId, hub: &Rc<RefCell<Hub>>, shared: &Rc<Shared>) {
    let mut h = hub.borrow_mut();
    let (out, paired) = h.core.remove(id);
    for o in out {
        h.send(o);
    }
    if let Some(tx) = h.txs.remove(&id) {
        tx.close();
    }
    let mut app = shared.app.borrow_mut();
    app.metrics.relay.sessions = app.metrics.relay.sessions.saturating_sub(paired as u64);
    app.metrics.relay.connections = h.connections() as u64;
}

/// Why a connection was cut off.
type Why = String;

async fn connection(
    id: u64,
    stream: Async<std::net::TcpStream>,
    tls: futures_rustls::TlsAcceptor,
    hub: Rc<RefCell<Hub>>,
    shared: Rc<Shared>,
    udp: Option<Rc<Async<UdpSocket>>>,
) -> Result<(), Why> {
    let _ = stream.get_ref().set_nodelay(true);
    let timeout = |d: Duration| async move {
        Timer::after(d).await;
        Err::<(), Why>("silent for too long".into())
    };
    let mut s = async {
        tls.accept(stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    }
    .or(async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        Err("no TLS handshake in time".into())
    })
    .await?;
    // Hello.
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let token = loop {
        match Frame::decode(&buf) {
            Ok(Some((Frame::Hello { token }, used))) => {
                buf.drain(..used);
                break token;
            }
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                refuse(&mut s, &shared, RefuseReason::Protocol).await;
                return Err("first frame is not a Hello".into());
            }
        }
        let n = async { s.read(&mut chunk).await.map_err(|e| e.to_string()) }
            .or(async {
                Timer::after(HANDSHAKE_TIMEOUT).await;
                Err("no Hello in time".into())
            })
            .await?;
        if n == 0 {
            return Err("closed before Hello".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let now = shared.now();
    let Some(peer) = shared.app.borrow_mut().relay_auth(&token, now) else {
        refuse(&mut s, &shared, RefuseReason::Unauthenticated).await;
        return Err("token not valid".into());
    };
    let (idle, rate) = {
        let app = shared.app.borrow();
        (app.config.relay_idle, app.config.relay_rate)
    };
    s.write_all(&frame(&Frame::Welcome {
        idle_secs: idle.min(u32::from(u16::MAX)) as u16,
    }))
    .await
    .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let (tx, rx) = async_channel::bounded::<Vec<u8>>(QUEUE);
    {
        let mut h = hub.borrow_mut();
        h.core.insert(id, peer);
        h.txs.insert(id, tx.clone());
        shared.app.borrow_mut().metrics.relay.connections = h.connections() as u64;
    }
    let (mut reader, mut writer) = futures_lite::io::split(s);
    let shared_w = shared.clone();
    let write = async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Ok(first) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            shared_w.app.borrow_mut().metrics.relay.bytes_out += batch.len() as u64;
            if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
        Ok::<(), Why>(())
    };
    let read = async move {
        let mut own = Bucket::new(rate);
        let idle = Duration::from_secs(u64::from(idle));
        loop {
            let mut start = 0;
            loop {
                let decoded = Frame::decode(&buf[start..]);
                match decoded {
                    Ok(Some((f, used))) => {
                        if let Err(why) = on_frame(id, peer, f, &hub, &shared, udp.as_deref()) {
                            // Give the writer a moment to send the `Refused` that says why.
                            Timer::after(Duration::from_millis(50)).await;
                            return Err(why);
                        }
                        start += used;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.try_send(frame(&Frame::Refused {
                            reason: RefuseReason::Protocol,
                        }));
                        shared
                            .app
                            .borrow_mut()
                            .metrics
                            .relay
                            .refuse(RelayRefusal::Protocol);
                        // Give the writer a moment to say why.
                        Timer::after(Duration::from_millis(50)).await;
                        return Err(format!("malformed frame: {e}"));
                    }
                }
            }
            buf.drain(..start);
            let n = async { reader.read(&mut chunk).await.map_err(|e| e.to_string()) }
                .or(async {
                    timeout(idle).await?;
                    Ok(0)
                })
                .await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            let now = shared.now().mono_ms;
            shared.app.borrow_mut().metrics.relay.bytes_in += n as u64;
            let wait = own.take(n, now).max(hub.borrow_mut().total.take(n, now));
            if !wait.is_zero() {
                Timer::after(wait).await;
            }
        }
    };
    read.or(write).await
}

async fn refuse(
    s: &mut futures_rustls::server::TlsStream<Async<std::net::TcpStream>>,
    shared: &Rc<Shared>,
    reason: RefuseReason,
) {
    if reason == RefuseReason::Protocol {
        shared
            .app
            .borrow_mut()
            .metrics
            .relay
            .refuse(RelayRefusal::Protocol);
    }
    let _ = s.write_all(&frame(&Frame::Refused { reason })).await;
    let _ = s.flush().await;
    let _ = s.close().await;
}

fn random16() -> [u8; 16] {
    let mut t = [0u8; 16];
    getrandom::fill(&mut t).expect("OS random generator");
    t
}

/// Handles one frame of connection `id`; an error cuts it off.
fn on_frame(
    id: ConnId,
    peer: RelayPeer,
    f: Frame<'_>,
    hub: &Rc<RefCell<Hub>>,
    shared: &Rc<Shared>,
    udp: Option<&Async<UdpSocket>>,
) -> Result<(), Why> {
    let mut h = hub.borrow_mut();
    let refuse = |r: RelayRefusal| shared.app.borrow_mut().metrics.relay.refuse(r);
    let cut = |h: &Hub, what: &str| {
        refuse(RelayRefusal::Protocol);
        h.send((
            id,
            frame(&Frame::Refused {
                reason: RefuseReason::Protocol,
            }),
        ));
        Err(what.to_owned())
    };
    let reply = |h: &Hub, session, reason| h.send((id, frame(&Frame::Close { session, reason })));
    match f {
        Frame::Data { session, payload } => {
            // Data for a session that just closed or is still opening: dropped.
            if let Some(o) = h.core.data(id, session, payload)
                && !h.send(o)
            {
                shared.app.borrow_mut().metrics.relay.dropped += 1;
            }
            Ok(())
        }
        Frame::Ping { nonce } => {
            h.send((id, frame(&Frame::Pong { nonce })));
            Ok(())
        }
        Frame::Pong { .. } => Ok(()),
        Frame::Listen => {
            h.core.listen(id);
            Ok(())
        }
        Frame::Open { session, target } => {
            match h.core.may_add(id, session) {
                Err(Refusal::Reused) => return cut(&h, "session number reused"),
                Err(Refusal::Limit) => {
                    refuse(RelayRefusal::Limit);
                    reply(&h, session, CloseReason::Limit);
                    return Ok(());
                }
                Ok(()) => {}
            }
            let ticket = random16();
            let now = shared.now();
            let decided = shared
                .app
                .borrow_mut()
                .relay_open(&peer.key, &target, ticket, now);
            let target = match decided {
                Ok(t) => t,
                Err(reason) => {
                    reply(&h, session, reason);
                    return Ok(());
                }
            };
            let deadline = now.mono_ms + ACCEPT_TIMEOUT_MS;
            if h.tell(&target, &peer.key, ticket, udp, shared) {
                h.core.open(id, session, target.peer, ticket, deadline);
                return Ok(());
            }
            // Its relay connection or keep-alives may reach another instance: ask them.
            let bus_up = shared.app.borrow().bus.as_ref().is_some_and(|b| b.up);
            h.bridges.tick(now.mono_ms);
            if bus_up && h.open_elsewhere(id, session, peer.key, &target, ticket, now.mono_ms) {
                shared.app.borrow_mut().metrics.relay.bridges = h.bridges.len() as u64;
                return Ok(());
            }
            refuse(RelayRefusal::NoPath);
            reply(&h, session, CloseReason::NoPath);
            Ok(())
        }
        Frame::Accept { session, ticket } => {
            if h.core.may_add(id, session) == Err(Refusal::Reused) {
                return cut(&h, "session number reused");
            }
            match h.core.accept(id, session, ticket) {
                Accepted::Paired(opened) => {
                    h.send(opened);
                    let mut app = shared.app.borrow_mut();
                    app.metrics.relay.sessions += 1;
                    app.metrics.relay.sessions_total += 1;
                }
                Accepted::Closed(reason) => {
                    reply(&h, session, reason);
                }
            }
            Ok(())
        }
        Frame::Close { session, .. } => {
            if let Some(o) = h.core.close(id, session, CloseReason::Normal) {
                h.send(o);
                let mut app = shared.app.borrow_mut();
                app.metrics.relay.sessions = app.metrics.relay.sessions.saturating_sub(1);
            }
            Ok(())
        }
        Frame::Hello { .. }
        | Frame::Welcome { .. }
        | Frame::Refused { .. }
        | Frame::Incoming { .. }
        | Frame::Opened { .. }
        | Frame::Join
        | Frame::OpenKey { .. } => cut(&h, "a frame peers do not send here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_a_restart_through_its_file() {
        let dir = std::env::temp_dir().join(format!("relay-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.pem");
        let a = Identity::load_or_create(Some(&file)).unwrap();
        let b = Identity::load_or_create(Some(&file)).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        assert!(a.tls().is_ok());
        std::fs::write(&file, b"garbage").unwrap();
        assert!(Identity::load_or_create(Some(&file)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
