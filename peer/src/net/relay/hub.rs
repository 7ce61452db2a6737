//! A peer relay (docs/PROTOCOL.md "Peer relays"): a player with a public or forwarded TCP port
//! relays for their friends, so that the phone book's operator need not carry that traffic.
//!
//! The same frames as the phone book's relay (`phonebook_proto::relay`), with the peer's own
//! identity on both ends of the TLS connection: the relay proves the key its friends looked up
//! (its record announces the address as a `relay` candidate), and a client proves its key with
//! its certificate and says [`Frame::Join`]. Only keys the relay's owner allows (its friends)
//! are welcome. A client names the friend it wants with [`Frame::OpenKey`]; the target, which
//! holds a connection after [`Frame::Listen`], gets [`Frame::Incoming`] with the requester's
//! key and accepts only keys it serves.
//!
//! **What a friend learns:** an open that is not accepted (the target is not a friend of the
//! relay, is not listening, or does not serve the requester) ends the same way after
//! [`PeerRelayConfig::accept_timeout`]: `Close` `timeout`. So the relay tells nobody whether another of its
//! friends is online.
//!
//! Bounded like the phone book's relay: connections ([`PeerRelayConfig::max_connections`]),
//! sessions per connection, each connection's outbound queue ([`QUEUE`]), bandwidth per
//! connection and in total (token buckets: an over-rate connection is not read), the handshake
//! ([`HANDSHAKE_TIMEOUT`]) and silence ([`PeerRelayConfig::idle`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phonebook_proto::relay::{self, Bucket, CloseReason, Frame, RefuseReason, TICKET_LEN};
use phonebook_proto::relay_hub::{self, Accepted, ConnId, Out, Refusal};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::identity::{Identity, PeerId};
use crate::net::runtime::Spawner;
use crate::net::tls;
use crate::phonebook::{to_peer_id, to_public_key};
use crate::transfer::serve::Policy;

/// Frames waiting to be written to one connection; a datagram for a full queue is dropped (QUIC
/// recovers it), as a full UDP buffer would drop it.
pub const QUEUE: usize = 1024;
/// Time allowed for the TLS handshake and the Join.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from TLS at once, and gathered into one TLS write.
const CHUNK: usize = 64 * 1024;

/// Settings of a peer relay. The defaults suit a home uplink: a friend's relay should not eat
/// its owner's connection.
#[derive(Debug, Clone)]
pub struct PeerRelayConfig {
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// Connections at once (beyond: `Refused` `full`).
    pub max_connections: usize,
    /// Sessions per connection (beyond: `Close` `limit`).
    pub max_sessions: usize,
    /// Bytes per second read from one connection (0: unlimited).
    pub rate: u32,
    /// Bytes per second read from all connections together (0: unlimited).
    pub rate_total: u32,
    /// A connection silent this long is closed.
    pub idle: Duration,
    /// Time a target has to accept; every open that is not accepted ends after it, alike.
    pub accept_timeout: Duration,
}

impl Default for PeerRelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            max_connections: 32,
            max_sessions: 8,
            rate: 1_250_000,
            rate_total: 2_500_000,
            idle: Duration::from_secs(60),
            accept_timeout: Duration::from_secs(10),
        }
    }
}

/// What a peer relay did.
#[derive(Debug, Default)]
pub struct PeerRelayStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Sessions paired, in all.
    pub sessions_total: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Datagrams dropped at a full queue.
    pub dropped: AtomicU64,
    /// Connections refused: not a friend (or no key), over the connection limit, or a protocol
    /// error.
    pub refused_unauthenticated: AtomicU64,
    /// See [`PeerRelayStats::refused_unauthenticated`].
    pub refused_full: AtomicU64,
    /// See [`PeerRelayStats::refused_unauthenticated`].
    pub refused_protocol: AtomicU64,
}

/// A running peer relay; dropping it stops accepting and ends every connection.
pub struct PeerRelay {
    addr: SocketAddr,
    stats: Arc<PeerRelayStats>,
    _task: smol::Task<()>,
}

impl std::fmt::Debug for PeerRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRelay").finish_non_exhaustive()
    }
}

/// The pairing (shared with the phone book's relay) and each connection's outbound queue.
struct Hub {
    core: relay_hub::Hub<PeerId>,
    txs: HashMap<ConnId, smol::channel::Sender<Vec<u8>>>,
    next: u64,
    total: Bucket,
    epoch: Instant,
}

impl Hub {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Queues `bytes` for `to`; false if its queue is full or gone.
    fn send(&self, (to, bytes): Out) -> bool {
        self.txs
            .get(&to)
            .is_some_and(|tx| tx.try_send(bytes).is_ok())
    }

    fn end(&mut self, id: ConnId) {
        let (out, _) = self.core.remove(id);
        for o in out {
            self.send(o);
        }
        if let Some(tx) = self.txs.remove(&id) {
            tx.close();
        }
    }

    /// Ends the opens nobody accepted in time, all alike.
    fn sweep(&mut self) {
        for o in self.core.expire(self.now_ms()) {
            self.send(o);
        }
    }
}

fn frame(f: &Frame<'_>) -> Vec<u8> {
    relay_hub::encode(f)
}

struct Shared {
    hub: Mutex<Hub>,
    allowed: Policy,
    config: PeerRelayConfig,
    stats: Arc<PeerRelayStats>,
}

impl PeerRelay {
    /// Listens on `config.listen` as `identity`, for the keys `allowed` admits.
    pub fn start(
        identity: &Identity,
        allowed: Policy,
        config: PeerRelayConfig,
        spawner: &Spawner,
    ) -> io::Result<Self> {
        let listener = smol::net::TcpListener::from(smol::Async::new(
            std::net::TcpListener::bind(config.listen)?,
        )?);
        let addr = listener.local_addr()?;
        let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(tls::server_config(
            identity,
            vec![relay::ALPN.to_vec()],
        )));
        let stats = Arc::new(PeerRelayStats::default());
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                core: relay_hub::Hub::new(config.max_sessions),
                txs: HashMap::new(),
                next: 0,
                total: Bucket::new(config.rate_total),
                epoch: Instant::now(),
            }),
            allowed,
            config,
            stats: stats.clone(),
        });
        let spawner2 = spawner.clone();
        let task = spawner.spawn(async move {
            let sweeper = {
                let shared = shared.clone();
                async move {
                    loop {
                        smol::Timer::after(Duration::from_millis(500)).await;
                        shared.hub.lock().expect("not poisoned").sweep();
                    }
                }
            };
            let accept = async {
                let mut tasks: Vec<smol::Task<()>> = Vec::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        smol::Timer::after(Duration::from_millis(100)).await;
                        continue;
                    };
                    tasks.retain(|t| !t.is_finished());
                    let (acceptor, shared) = (acceptor.clone(), shared.clone());
                    tasks.push(spawner2.spawn(async move {
                        let id = {
                            let mut h = shared.hub.lock().expect("not poisoned");
                            h.next += 1;
                            h.next
                        };
                        if let Err(why) = connection(id, stream, acceptor, &shared).await {
                            log::info!("peer relay connection {id} cut off: {why}");
                        }
                        let mut h = shared.hub.lock().expect("not poisoned");
                        h.end(id);
                        shared
                            .stats
                            .connections
                            .store(h.core.len() as u64, Ordering::Relaxed);
                    }));
                }
            };
            smol::future::or(accept, sweeper).await;
        });
        Ok(Self {
            addr,
            stats,
            _task: task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<PeerRelayStats> {
        &self.stats
    }
}

type Why = String;

async fn refuse<S: smol::io::AsyncWrite + Unpin>(s: &mut S, reason: RefuseReason) {
    let _ = s.write_all(&frame(&Frame::Refused { reason })).await;
    let _ = s.flush().await;
    let _ = s.close().await;
}

async fn connection(
    id: u64,
    stream: smol::net::TcpStream,
    acceptor: futures_rustls::TlsAcceptor,
    shared: &Shared,
) -> Result<(), Why> {
    let _ = stream.set_nodelay(true);
    let stats = &shared.stats;
    let handshake = async {
        let mut s = acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let key = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(tls::key_of_certificate)
            .ok_or("no client key")?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        loop {
            match Frame::decode(&buf) {
                Ok(Some((Frame::Join, used))) => {
                    buf.drain(..used);
                    return Ok((s, key, buf));
                }
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => {
                    stats.refused_protocol.fetch_add(1, Ordering::Relaxed);
                    refuse(&mut s, RefuseReason::Protocol).await;
                    return Err("first frame is not a Join".to_owned());
                }
            }
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before Join".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (mut s, key, mut buf) = smol::future::or(handshake, async {
        smol::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err("no TLS handshake and Join in time".to_owned())
    })
    .await?;
    if !(shared.allowed)(&key) {
        stats
            .refused_unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        refuse(&mut s, RefuseReason::Unauthenticated).await;
        return Err("not a friend".into());
    }
    let (tx, rx) = smol::channel::bounded::<Vec<u8>>(QUEUE);
    let full = {
        let mut h = shared.hub.lock().expect("not poisoned");
        let full = h.core.len() >= shared.config.max_connections;
        if !full {
            h.core.insert(id, key);
            h.txs.insert(id, tx.clone());
        }
        stats
            .connections
            .store(h.core.len() as u64, Ordering::Relaxed);
        full
    };
    if full {
        stats.refused_full.fetch_add(1, Ordering::Relaxed);
        refuse(&mut s, RefuseReason::Full).await;
        return Err("relay full".into());
    }
    let idle = shared.config.idle;
    s.write_all(&frame(&Frame::Welcome {
        idle_secs: idle.as_secs().clamp(1, u64::from(u16::MAX)) as u16,
    }))
    .await
    .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = smol::io::split(s);
    let write = async move {
        let mut batch = Vec::with_capacity(CHUNK);
        while let Ok(first) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < CHUNK {
                match rx.try_recv() {
                    Ok(f) => batch.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
        Ok::<(), Why>(())
    };
    let read = async move {
        let mut own = Bucket::new(shared.config.rate);
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let mut start = 0;
            loop {
                match Frame::decode(&buf[start..]) {
                    Ok(Some((f, used))) => {
                        if let Err(why) = on_frame(id, key, f, shared) {
                            // Give the writer a moment to send the `Refused` that says why.
                            smol::Timer::after(Duration::from_millis(50)).await;
                            return Err(why);
                        }
                        start += used;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.try_send(frame(&Frame::Refused {
                            reason: RefuseReason::Protocol,
                        }));
                        stats.refused_protocol.fetch_add(1, Ordering::Relaxed);
                        smol::Timer::after(Duration::from_millis(50)).await;
                        return Err(format!("malformed frame: {e}"));
                    }
                }
            }
            buf.drain(..start);
            let n = smol::future::or(
                async { reader.read(&mut chunk).await.map_err(|e| e.to_string()) },
                async {
                    smol::Timer::after(idle).await;
                    Err("silent for too long".to_owned())
                },
            )
            .await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            let wait = {
                let mut h = shared.hub.lock().expect("not poisoned");
                let now = h.now_ms();
                own.take(n, now).max(h.total.take(n, now))
            };
            if !wait.is_zero() {
                smol::Timer::after(wait).await;
            }
        }
    };
    smol::future::or(read, write).await
}

fn random16() -> [u8; TICKET_LEN] {
    let mut t = [0u8; TICKET_LEN];
    getrandom::fill(&mut t).expect("OS random generator");
    t
}

/// Handles one frame of connection `id` (authenticated as `key`); an error cuts it off.
fn on_frame(id: ConnId, key: PeerId, f: Frame<'_>, shared: &Shared) -> Result<(), Why> {
    let mut h = shared.hub.lock().expect("not poisoned");
    let stats = &shared.stats;
    let cut = |h: &Hub, what: &str| {
        stats.refused_protocol.fetch_add(1, Ordering::Relaxed);
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
            if let Some(o) = h.core.data(id, session, payload)
                && !h.send(o)
            {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
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
        Frame::OpenKey { session, target } => {
            match h.core.may_add(id, session) {
                Err(Refusal::Reused) => return cut(&h, "session number reused"),
                Err(Refusal::Limit) => {
                    reply(&h, session, CloseReason::Limit);
                    return Ok(());
                }
                Ok(()) => {}
            }
            let target = to_peer_id(&target);
            let ticket = random16();
            // Told only if the relay serves the target and it listens here; whatever happens,
            // the requester hears nothing until the target accepts or the time is up.
            if (shared.allowed)(&target)
                && let Some(l) = h.core.listener(&target)
            {
                h.send((
                    l,
                    frame(&Frame::Incoming {
                        ticket,
                        requester: to_public_key(&key),
                    }),
                ));
            }
            let deadline = h.now_ms() + shared.config.accept_timeout.as_millis() as u64;
            h.core.open(id, session, target, ticket, deadline);
            Ok(())
        }
        Frame::Accept { session, ticket } => {
            if h.core.may_add(id, session) == Err(Refusal::Reused) {
                return cut(&h, "session number reused");
            }
            match h.core.accept(id, session, ticket) {
                Accepted::Paired(opened) => {
                    h.send(opened);
                    stats.sessions_total.fetch_add(1, Ordering::Relaxed);
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
            }
            Ok(())
        }
        Frame::Hello { .. }
        | Frame::Join
        | Frame::Open { .. }
        | Frame::Welcome { .. }
        | Frame::Refused { .. }
        | Frame::Incoming { .. }
        | Frame::Opened { .. } => cut(&h, "a frame clients do not send to a peer relay"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::{AsyncReadExt, AsyncWriteExt};

    /// Speaks raw frames to a peer relay as `who`, after a TLS handshake that proves `who`'s
    /// key; returns every byte the relay sends until it closes.
    async fn raw(relay: &PeerRelay, owner: PeerId, who: &Identity, first: &Frame<'_>) -> Vec<u8> {
        let tcp = smol::net::TcpStream::connect(relay.local_addr())
            .await
            .unwrap();
        let config = tls::client_config(
            who,
            Arc::new(tls::ExpectedServer {
                expected: owner,
                seen: std::sync::Mutex::new(None),
            }),
            vec![relay::ALPN.to_vec()],
        );
        let name = rustls::pki_types::ServerName::try_from("peer-relay").unwrap();
        let mut s = futures_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        s.write_all(&frame(first)).await.unwrap();
        s.flush().await.unwrap();
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        smol::future::or(async { read.await.map(|_| ()) }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            Err(io::Error::other("the relay did not close"))
        })
        .await
        .ok();
        got
    }

    /// A friend who proves its key but opens with anything other than `Join` (a phone book's
    /// `Hello`, an `Open` by lookup id) is told `Refused protocol` before the cut, and the
    /// refusal is counted; a stranger's `Join` is told `Refused unauthenticated`.
    #[test]
    fn a_first_frame_other_than_join_is_refused_with_the_reason() {
        let owner = Identity::generate();
        let friend = Identity::generate();
        let fid = friend.id();
        let allowed: Policy = Arc::new(move |k: &PeerId| *k == fid);
        let config = PeerRelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..PeerRelayConfig::default()
        };
        let relay = PeerRelay::start(&owner, allowed, config, &Spawner::Global).unwrap();
        let refused = |bytes: &[u8]| match Frame::decode(bytes) {
            Ok(Some((Frame::Refused { reason }, _))) => Some(reason),
            _ => None,
        };
        smol::block_on(async {
            let hello = Frame::Hello {
                token: [7; relay::TOKEN_LEN],
            };
            let got = raw(&relay, owner.id(), &friend, &hello).await;
            assert_eq!(refused(&got), Some(RefuseReason::Protocol), "{got:?}");
            let open = Frame::Open {
                session: 1,
                target: phonebook_proto::LookupId([1; 32]),
            };
            let got = raw(&relay, owner.id(), &friend, &open).await;
            assert_eq!(refused(&got), Some(RefuseReason::Protocol), "{got:?}");
            let got = raw(&relay, owner.id(), &Identity::generate(), &Frame::Join).await;
            assert_eq!(
                refused(&got),
                Some(RefuseReason::Unauthenticated),
                "{got:?}"
            );
        });
        let stats = relay.stats();
        assert_eq!(stats.refused_protocol.load(Ordering::Relaxed), 2);
        assert_eq!(stats.refused_unauthenticated.load(Ordering::Relaxed), 1);
    }
}
