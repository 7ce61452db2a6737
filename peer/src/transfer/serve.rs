//! The serving side: answers manifest and chunk requests from a [`Store`], with a cap on
//! connections, on concurrent uploads and on upload bandwidth.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::PeerId;
use crate::net::endpoint::{CLOSE_FULL, CLOSE_REFUSED, Endpoint, PeerConnection};
use crate::storage::store::Store;
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::Manifest;
use crate::transfer::rate_limit::TokenBucket;
use crate::transfer::records::{RecordReader, RecordWriter, StreamError};
use crate::transfer::wire::{
    MAX_REQUEST_LEN, RECORD_HEADER_LEN, RECORD_SIZE, RecordKind, Request, Status, TAG_LEN,
};

/// Serving limits.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Most peers connected to us at once; more are closed with [`CLOSE_FULL`].
    pub max_connections: usize,
    /// Most requests served at once over all peers; more get [`Status::Busy`].
    pub max_concurrent_uploads: usize,
    /// Upload bandwidth over all peers, bytes per second (`None`: unlimited).
    pub upload_rate: Option<u64>,
    /// Burst allowed above `upload_rate`, bytes.
    pub upload_burst: u64,
    /// When to send LZ4-compressed records (the requester must accept them, and a record is
    /// sent compressed only if it shrinks by at least an eighth).
    pub compress: Compression,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_concurrent_uploads: 16,
            upload_rate: None,
            upload_burst: 256 * 1024,
            compress: Compression::WhenRateLimited,
        }
    }
}

/// When the serving side compresses.
///
/// Measured (README, `bench_codec`): LZ4 compresses at 0.4-1.5 GB/s per core and saves about
/// 17% on vertex buffers but nothing on BCn texture blocks or index buffers. On a fast link the
/// CPU is the bottleneck and compression only costs; on an uplink limited to a few Mbit/s the
/// CPU is idle and every byte saved is time saved. Hence the default: compress only when an
/// upload rate limit says the link is the bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Never compress.
    Never,
    /// Compress when `upload_rate` is set.
    #[default]
    WhenRateLimited,
    /// Always try.
    Always,
}

/// Who may download from us: return false to close the connection with [`CLOSE_REFUSED`].
pub type Policy = Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;

/// The policy that matches a phone-book registration: `Public` serves every key (`None`);
/// `Friends` serves only the listed keys and the owner's own (`owner`, so that the owner's
/// other devices sharing the key can fetch). The visibility a player chose for the phone book
/// must also decide who may download: without this, a stranger who learnt the address (an
/// older record, a shared network) could fetch from a friends-only player.
pub fn visibility_policy(
    owner: PeerId,
    visibility: phonebook_proto::Visibility,
    friends: &[PeerId],
) -> Option<Policy> {
    match visibility {
        phonebook_proto::Visibility::Public => None,
        phonebook_proto::Visibility::Friends => {
            let allowed: std::collections::HashSet<PeerId> =
                friends.iter().copied().chain([owner]).collect();
            Some(Arc::new(move |key: &PeerId| allowed.contains(key)))
        }
    }
}

/// Serving counters.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Peers connected now.
    pub connections: AtomicUsize,
    /// Requests being served now.
    pub uploads: AtomicUsize,
    /// Record bytes sent.
    pub bytes_sent: AtomicU64,
    /// Requests answered with data.
    pub requests_ok: AtomicU64,
    /// Requests refused because every upload slot was taken.
    pub requests_busy: AtomicU64,
    /// Requests for files we do not have.
    pub requests_not_found: AtomicU64,
    /// Connections refused by policy or the connection cap.
    pub connections_refused: AtomicU64,
}

struct Shared {
    endpoint: Arc<Endpoint>,
    store: Arc<dyn Store>,
    config: ServeConfig,
    policy: Option<Policy>,
    bucket: Option<Mutex<TokenBucket>>,
    stats: Arc<ServeStats>,
}

/// A running server. Dropping it stops accepting (existing connections finish their streams).
#[derive(Debug)]
pub struct Server {
    _task: smol::Task<()>,
    stats: Arc<ServeStats>,
}

impl Server {
    /// Serves `store` on `endpoint` until dropped.
    pub fn spawn(
        endpoint: Arc<Endpoint>,
        store: Arc<dyn Store>,
        config: ServeConfig,
        policy: Option<Policy>,
    ) -> Self {
        let stats = Arc::new(ServeStats::default());
        let bucket = config
            .upload_rate
            .map(|r| Mutex::new(TokenBucket::new(r, config.upload_burst, Instant::now())));
        let shared = Arc::new(Shared {
            endpoint,
            store,
            config,
            policy,
            bucket,
            stats: stats.clone(),
        });
        let task = shared.endpoint.spawner().spawn(accept_loop(shared.clone()));
        Self { _task: task, stats }
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<ServeStats> {
        &self.stats
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.quinn().accept().await {
        let spawner = shared.endpoint.spawner().clone();
        let shared = shared.clone();
        spawner
            .spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        log::debug!("incoming handshake failed: {e}");
                        return;
                    }
                };
                let conn = match PeerConnection::accepted(conn, shared.endpoint.identity()) {
                    Ok(c) => c,
                    Err(e) => {
                        log::info!("incoming connection refused: {e}");
                        return;
                    }
                };
                let allowed = shared.policy.as_ref().is_none_or(|p| p(&conn.peer()));
                let count = shared.stats.connections.fetch_add(1, Ordering::Relaxed) + 1;
                if !allowed || count > shared.config.max_connections {
                    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
                    shared
                        .stats
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    let (code, why) = if allowed {
                        (CLOSE_FULL, "full")
                    } else {
                        (CLOSE_REFUSED, "refused")
                    };
                    log::info!("closing connection from {}: {why}", conn.peer().short());
                    conn.close(code, why.as_bytes());
                    return;
                }
                log::debug!(
                    "peer {} connected from {}",
                    conn.peer().short(),
                    conn.remote_address()
                );
                serve_connection(&shared, &conn).await;
                shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
            })
            .detach();
    }
}

async fn serve_connection(shared: &Arc<Shared>, conn: &PeerConnection) {
    loop {
        let (send, recv) = match conn.conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                log::debug!("peer {} gone: {e}", conn.peer().short());
                return;
            }
        };
        // Asked again at every request: a policy can change while a connection lives (a
        // player who hid from a key stops serving it at once, not at its next connection).
        if shared.policy.as_ref().is_some_and(|p| !p(&conn.peer())) {
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            log::info!(
                "closing connection from {}: no longer allowed",
                conn.peer().short()
            );
            conn.close(CLOSE_REFUSED, b"refused");
            return;
        }
        let (shared, conn) = (shared.clone(), conn.clone());
        shared
            .endpoint
            .spawner()
            .clone()
            .spawn(async move {
                if let Err(e) = serve_stream(&shared, &conn, send, recv).await {
                    log::debug!("request from {} failed: {e}", conn.peer().short());
                }
            })
            .detach();
    }
}

/// Decrements the upload count when dropped.
struct UploadSlot<'a>(&'a AtomicUsize);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_stream(
    shared: &Shared,
    conn: &PeerConnection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), StreamError> {
    let mut reader = RecordReader::new(&mut recv, &conn.keys);
    let header = reader.header().await?.ok_or(StreamError::Truncated)?;
    if header.kind != RecordKind::Request || header.len as usize > MAX_REQUEST_LEN + TAG_LEN {
        return Err(StreamError::Unexpected);
    }
    let mut buf = [0u8; MAX_REQUEST_LEN + TAG_LEN];
    let n = reader.body(header, &mut buf).await?;
    let request = Request::decode(&buf[..n]);

    let (hash, slot) = match request {
        Ok(Request::Manifest { hash, .. }) | Ok(Request::Chunks { hash, .. }) => {
            let uploads = shared.stats.uploads.fetch_add(1, Ordering::Relaxed) + 1;
            let slot = UploadSlot(&shared.stats.uploads);
            if uploads > shared.config.max_concurrent_uploads {
                shared.stats.requests_busy.fetch_add(1, Ordering::Relaxed);
                return answer(&mut send, Status::Busy as u8).await;
            }
            (hash, slot)
        }
        Err(_) => return answer(&mut send, Status::BadRequest as u8).await,
    };
    let Some(manifest) = shared.store.manifest(&hash) else {
        shared
            .stats
            .requests_not_found
            .fetch_add(1, Ordering::Relaxed);
        return answer(&mut send, Status::NotFound as u8).await;
    };
    let request = request.expect("matched Ok above");
    if let Request::Chunks { first, count, .. } = request
        && u64::from(first) + u64::from(count) > u64::from(manifest.chunk_count())
    {
        return answer(&mut send, Status::BadRequest as u8).await;
    }
    send.write_all(&[Status::Ok as u8]).await?;
    let mut writer = RecordWriter::new(&mut send, &conn.keys);
    match request {
        Request::Manifest {
            with_last_chunk,
            accept_lz4,
            ..
        } => {
            for piece in manifest.encode().chunks(RECORD_SIZE) {
                let mut buf = RecordWriter::buffer(piece.len());
                buf[RECORD_HEADER_LEN..].copy_from_slice(piece);
                let n = writer.send(RecordKind::Manifest, buf).await?;
                throttle(shared, n).await;
            }
            if with_last_chunk
                && let Some(last) = manifest.chunk_count().checked_sub(1)
                && !send_chunk(
                    shared,
                    &mut writer,
                    &hash,
                    &manifest,
                    last,
                    compress(shared, accept_lz4),
                )
                .await?
            {
                return Ok(());
            }
        }
        Request::Chunks {
            first,
            count,
            accept_lz4,
            ..
        } => {
            let compress = compress(shared, accept_lz4);
            for index in first..first + u32::from(count) {
                if !send_chunk(shared, &mut writer, &hash, &manifest, index, compress).await? {
                    return Ok(());
                }
            }
        }
    }
    shared.stats.requests_ok.fetch_add(1, Ordering::Relaxed);
    drop(slot);
    let _ = send.finish();
    Ok(())
}

/// Whether to try LZ4 on a chunk for a requester that does (or does not) accept it.
fn compress(shared: &Shared, accept_lz4: bool) -> bool {
    accept_lz4
        && match shared.config.compress {
            Compression::Never => false,
            Compression::WhenRateLimited => shared.config.upload_rate.is_some(),
            Compression::Always => true,
        }
}

/// Sends one chunk as records; false if the store failed (the stream is then reset).
async fn send_chunk(
    shared: &Shared,
    writer: &mut RecordWriter<'_>,
    hash: &FileHash,
    manifest: &Manifest,
    index: u32,
    compress: bool,
) -> Result<bool, StreamError> {
    let (offset, len) = manifest.chunk_range(index);
    let mut pos = 0;
    while pos < len {
        let piece = (len - pos).min(RECORD_SIZE);
        let mut buf = RecordWriter::buffer(piece);
        if let Err(e) =
            shared
                .store
                .read_at(hash, offset + pos as u64, &mut buf[RECORD_HEADER_LEN..])
        {
            log::warn!("store read failed for {hash}: {e}");
            send_reset(writer.send);
            return Ok(false);
        }
        let (kind, buf) = if compress {
            maybe_compress(buf)
        } else {
            (RecordKind::Data, buf)
        };
        let n = writer.send(kind, buf).await?;
        throttle(shared, n).await;
        pos += piece;
    }
    Ok(true)
}

fn send_reset(send: &mut quinn::SendStream) {
    let _ = send.reset(0u32.into());
}

/// LZ4 when it saves at least an eighth, raw otherwise.
fn maybe_compress(buf: Vec<u8>) -> (RecordKind, Vec<u8>) {
    let raw = &buf[RECORD_HEADER_LEN..];
    let packed = lz4_flex::block::compress(raw);
    if packed.len() <= raw.len() - raw.len() / 8 {
        let mut out = RecordWriter::buffer(packed.len());
        out[RECORD_HEADER_LEN..].copy_from_slice(&packed);
        (RecordKind::DataLz4, out)
    } else {
        (RecordKind::Data, buf)
    }
}

async fn throttle(shared: &Shared, bytes: usize) {
    shared
        .stats
        .bytes_sent
        .fetch_add(bytes as u64, Ordering::Relaxed);
    let Some(bucket) = &shared.bucket else { return };
    let wait = bucket
        .lock()
        .expect("not poisoned")
        .take(bytes as u64, Instant::now());
    if wait > Duration::ZERO {
        smol::Timer::after(wait).await;
    }
}

async fn answer(send: &mut quinn::SendStream, status: u8) -> Result<(), StreamError> {
    send.write_all(&[status]).await?;
    let _ = send.finish();
    Ok(())
}
