//! One connection per peer, reused for many transfers, with a cap; per-peer records of
//! outcomes (failures, corrupt chunks) for monitoring and penalties.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::PeerId;
use crate::net::endpoint::{
    CLOSE_EVICTED, CLOSE_RELAY_GONE, ConnectError, Endpoint, PeerConnection,
};
use crate::net::traversal::{Connected, PathKind, Target, Traversal};
use crate::storage::pins::PinStore;
use phonebook_proto::{Candidate, PlayerName};

/// Pool limits.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most outgoing connections held; the least recently used is closed to make room.
    pub max_connections: usize,
    /// Most peers whose outcome records are kept.
    pub max_peer_records: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_peer_records: 4096,
        }
    }
}

/// What happened with one peer over this pool's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// Connections made.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Requests that failed after connecting.
    pub request_failures: u64,
    /// Chunks that failed verification (each is a penalty).
    pub corrupt_chunks: u64,
    /// Verified chunks received.
    pub chunks_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
}

/// A snapshot of one connected peer, for a plugin to show.
#[derive(Debug, Clone)]
pub struct PeerMetrics {
    /// The peer.
    pub peer: PeerId,
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// UDP packets sent on the connection.
    pub sent_packets: u64,
    /// Of which QUIC declared lost.
    pub lost_packets: u64,
    /// UDP payload bytes received.
    pub udp_bytes_received: u64,
    /// UDP payload bytes sent.
    pub udp_bytes_sent: u64,
    /// How long the connection has been up.
    pub connected_for: Duration,
    /// Mean receive rate over the connection's life, bytes per second.
    pub mean_receive_rate: f64,
    /// Outcome counters.
    pub record: PeerRecord,
}

#[derive(Debug)]
struct Held {
    conn: PeerConnection,
    since: Instant,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<PeerId, Held>,
    records: HashMap<PeerId, PeerRecord>,
    /// The path of the last connection to each peer (bounded like `records`).
    paths: HashMap<PeerId, Path>,
}

/// How the last connection to a peer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The address that answered (personal data).
    pub addr: SocketAddr,
    /// How it was known.
    pub kind: PathKind,
    /// Time from the start of the attempt to the end of the handshake.
    pub elapsed: Duration,
}

/// The connection pool.
#[derive(Debug)]
pub struct Pool {
    endpoint: Arc<Endpoint>,
    config: PoolConfig,
    inner: Mutex<Inner>,
    pins: Mutex<PinStore>,
    traversal: Mutex<Option<Arc<Traversal>>>,
}

impl Pool {
    /// A pool on `endpoint` checking names against `pins`.
    pub fn new(endpoint: Arc<Endpoint>, pins: PinStore, config: PoolConfig) -> Self {
        Self {
            endpoint,
            config,
            inner: Mutex::new(Inner::default()),
            pins: Mutex::new(pins),
            traversal: Mutex::new(None),
        }
    }

    /// Connects through NATs from now on: candidates in parallel, hole punching coordinated
    /// by the phone books (see [`crate::net::traversal`]).
    pub fn set_traversal(&self, traversal: Arc<Traversal>) {
        *self.traversal.lock().expect("not poisoned") = Some(traversal);
    }

    /// How the last connection to `key` was made.
    pub fn path(&self, key: &PeerId) -> Option<Path> {
        self.inner
            .lock()
            .expect("not poisoned")
            .paths
            .get(key)
            .copied()
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// A connection to the peer with `key` at `addr`, reusing a live one. With a player
    /// `name`, the key is checked against the pin store first (and pinned if new).
    pub async fn connect(
        &self,
        name: Option<&str>,
        addr: SocketAddr,
        key: PeerId,
    ) -> Result<PeerConnection, ConnectError> {
        self.connect_with(name, addr, key, &[]).await
    }

    /// [`Pool::connect`] trying the player's signed `candidates` too; with traversal set
    /// (and a player name), the phone books coordinate hole punching.
    pub async fn connect_with(
        &self,
        name: Option<&str>,
        addr: SocketAddr,
        key: PeerId,
        candidates: &[Candidate],
    ) -> Result<PeerConnection, ConnectError> {
        if let Some(name) = name {
            self.pins
                .lock()
                .expect("not poisoned")
                .check_and_pin(name, key)
                .map_err(ConnectError::Pin)?;
        }
        if let Some(c) = self.reuse(key) {
            return Ok(c);
        }
        let traversal = self.traversal.lock().expect("not poisoned").clone();
        let result = match traversal {
            Some(t) => {
                let target = match name.and_then(|n| PlayerName::parse(n).ok()) {
                    Some(n) => Target::from_parts(Some(n), key, candidates, addr),
                    None if candidates.is_empty() => Target::given(addr, key),
                    None => Target::from_parts(None, key, candidates, addr),
                };
                t.connect(&target).await
            }
            None => {
                let start = Instant::now();
                self.endpoint
                    .connect(addr, key)
                    .await
                    .map(|conn| Connected {
                        conn,
                        addr,
                        kind: PathKind::Given,
                        elapsed: start.elapsed(),
                    })
            }
        };
        let mut inner = self.inner.lock().expect("not poisoned");
        if let Ok(c) = &result
            && (inner.paths.contains_key(&key) || inner.paths.len() < self.config.max_peer_records)
        {
            inner.paths.insert(
                key,
                Path {
                    addr: c.addr,
                    kind: c.kind,
                    elapsed: c.elapsed,
                },
            );
        }
        let result = result.map(|c| c.conn);
        Self::touch_record(
            &mut inner,
            key,
            self.config.max_peer_records,
            |r| match &result {
                Ok(_) => r.connects += 1,
                Err(_) => r.connect_failures += 1,
            },
        );
        let conn = result?;
        // Another task may have connected meanwhile: keep the first, close ours.
        if let Some(h) = inner.conns.get_mut(&key)
            && !h.conn.is_closed()
        {
            conn.close(CLOSE_EVICTED, b"duplicate");
            h.last_used = Instant::now();
            return Ok(h.conn.clone());
        }
        inner.conns.retain(|_, h| !h.conn.is_closed());
        while inner.conns.len() >= self.config.max_connections {
            let oldest = inner
                .conns
                .iter()
                .min_by_key(|(_, h)| h.last_used)
                .map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            if let Some(h) = inner.conns.remove(&k) {
                h.conn.close(CLOSE_EVICTED, b"pool full");
            }
        }
        let now = Instant::now();
        inner.conns.insert(
            key,
            Held {
                conn: conn.clone(),
                since: now,
                last_used: now,
            },
        );
        drop(inner);
        self.watch_relay(&conn);
        Ok(conn)
    }

    /// A connection through a relay whose session ends (the relay went away) without a direct
    /// path having taken over can carry nothing more, but QUIC would only notice at its idle
    /// timeout: close it now, so transfers on it fail at once and reconnect (through another
    /// relay or path, see [`crate::transfer::download::DownloadConfig::reconnects`]).
    fn watch_relay(&self, conn: &PeerConnection) {
        let vaddr = conn.remote_address();
        if crate::net::relay::paths::route_of(vaddr).is_none() {
            return;
        }
        let paths = self.endpoint.relay_paths().clone();
        let watched = conn.clone();
        self.endpoint
            .spawner()
            .spawn(async move {
                let gone = async {
                    paths.wait_gone(vaddr).await;
                    true
                };
                let closed = async {
                    watched.quinn().closed().await;
                    false
                };
                if smol::future::or(gone, closed).await {
                    log::debug!("relay session ended: closing the connection that used it");
                    watched.close(CLOSE_RELAY_GONE, b"relay gone");
                }
            })
            .detach();
    }

    fn reuse(&self, key: PeerId) -> Option<PeerConnection> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let h = inner.conns.get_mut(&key)?;
        if h.conn.is_closed() {
            inner.conns.remove(&key);
            return None;
        }
        h.last_used = Instant::now();
        Some(h.conn.clone())
    }

    fn touch_record(inner: &mut Inner, key: PeerId, cap: usize, f: impl FnOnce(&mut PeerRecord)) {
        if !inner.records.contains_key(&key) && inner.records.len() >= cap {
            return;
        }
        f(inner.records.entry(key).or_default());
    }

    /// Updates a peer's record.
    pub fn record(&self, key: PeerId, f: impl FnOnce(&mut PeerRecord)) {
        let mut inner = self.inner.lock().expect("not poisoned");
        Self::touch_record(&mut inner, key, self.config.max_peer_records, f);
    }

    /// A peer's record.
    pub fn peer_record(&self, key: &PeerId) -> PeerRecord {
        self.inner
            .lock()
            .expect("not poisoned")
            .records
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Live connections held.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("not poisoned");
        inner.conns.values().filter(|h| !h.conn.is_closed()).count()
    }

    /// Whether no live connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Metrics of every live connection.
    pub fn metrics(&self) -> Vec<PeerMetrics> {
        let inner = self.inner.lock().expect("not poisoned");
        inner
            .conns
            .iter()
            .filter(|(_, h)| !h.conn.is_closed())
            .map(|(k, h)| {
                let s = h.conn.quinn().stats();
                let age = h.since.elapsed();
                PeerMetrics {
                    peer: *k,
                    rtt: s.path.rtt,
                    sent_packets: s.path.sent_packets,
                    lost_packets: s.path.lost_packets,
                    udp_bytes_received: s.udp_rx.bytes,
                    udp_bytes_sent: s.udp_tx.bytes,
                    connected_for: age,
                    mean_receive_rate: s.udp_rx.bytes as f64 / age.as_secs_f64().max(1e-3),
                    record: inner.records.get(k).copied().unwrap_or_default(),
                }
            })
            .collect()
    }
}
