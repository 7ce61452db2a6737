//! The download state machine, sans I/O: which chunk to ask which peer for, what to do with what
//! comes back, when a request has waited too long. It never reads a clock; `now` comes in.
//!
//! Driving loop (the I/O side, `download`, does this per peer and per pipeline slot):
//! ```text
//! loop {
//!     match transfer.poll_request(peer, now) { Some(i) => send request for chunk i, None => wait }
//!     on data:    transfer.handle_data(peer, i, &bytes, now)   -> write it if Accepted::New
//!     on busy:    transfer.handle_busy(peer, i)
//!     on error:   transfer.handle_peer_lost(peer)
//!     at transfer.poll_timeout(): transfer.handle_timeout(now)
//!     until transfer.is_complete()
//! }
//! ```
//! Chunks are assigned by pull: a peer gets a new chunk when one of its requests completes, so a
//! faster peer does more. The last chunk goes first (it pins the file size and the final SHA-1).
//! When nothing is left unassigned, an idle peer may duplicate a chunk another peer still holds
//! (endgame), so that one slow peer does not hold up the end.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transfer::manifest::Manifest;

/// A peer's index in one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerSlot(pub usize);

/// Limits of one transfer.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Requests in flight per peer at first (pipelining depth).
    pub min_pipeline: usize,
    /// Most requests in flight per peer: the depth grows with the peer's measured rate so
    /// that about `pipeline_target` of data is in flight, between the two bounds.
    pub max_pipeline: usize,
    /// How much time's worth of a peer's data to keep requested.
    pub pipeline_target: Duration,
    /// Most requests in flight over all peers (each holds a chunk-sized buffer).
    pub max_in_flight: usize,
    /// A peer that has delivered nothing for this long (since its oldest pending request was
    /// sent, or since its last delivery if later) loses its pending requests to other peers.
    /// Measured from progress rather than from each request, so that a deep pipeline on a slow
    /// link is not mistaken for a dead peer.
    pub request_timeout: Duration,
    /// Timeouts after which a peer is dropped from the transfer.
    pub max_timeouts: u32,
    /// Most peers that may hold the same chunk during the endgame.
    pub endgame_holders: u8,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            min_pipeline: 2,
            max_pipeline: 16,
            pipeline_target: Duration::from_millis(500),
            max_in_flight: 32,
            request_timeout: Duration::from_secs(30),
            max_timeouts: 3,
            endgame_holders: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Missing,
    InFlight(u8),
    Done,
}

/// Why a peer no longer takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped {
    /// It sent a chunk that failed verification.
    Corrupt,
    /// Its requests timed out too often.
    TooSlow,
    /// Its connection failed.
    Lost,
}

#[derive(Debug, Default)]
struct PeerState {
    dropped: Option<Dropped>,
    in_flight: Vec<(u32, Instant)>,
    chunks_ok: u32,
    bytes_ok: u64,
    timeouts: u32,
    first_request: Option<Instant>,
    last_progress: Option<Instant>,
}

/// What became of data a peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Verified and new: write it at `offset`.
    New {
        /// Byte offset in the file.
        offset: u64,
    },
    /// Verified, but another peer delivered this chunk first.
    Duplicate,
}

/// Data that was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The chunk failed verification; the peer is dropped and the chunk goes to another.
    Corrupt,
    /// The chunk index is outside the file.
    OutOfRange,
}

/// Per-peer outcome counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerTally {
    /// Chunks this peer delivered first.
    pub chunks_ok: u32,
    /// Their bytes.
    pub bytes_ok: u64,
    /// Requests that timed out.
    pub timeouts: u32,
    /// Why it was dropped, if it was.
    pub dropped: Option<Dropped>,
}

/// One file being fetched.
#[derive(Debug)]
pub struct Transfer {
    manifest: Arc<Manifest>,
    config: TransferConfig,
    chunks: Vec<Chunk>,
    queue: VecDeque<u32>,
    peers: Vec<PeerState>,
    done: u32,
    first_failure: HashMap<u32, PeerSlot>,
    suspect: bool,
}

impl Transfer {
    /// A transfer of `manifest`'s file; `have(i)` tells which chunks are already on disk and
    /// verified (resume).
    pub fn new(
        manifest: Arc<Manifest>,
        config: TransferConfig,
        have: impl Fn(u32) -> bool,
    ) -> Self {
        let n = manifest.chunk_count();
        let mut chunks = Vec::with_capacity(n as usize);
        let mut done = 0;
        for i in 0..n {
            if have(i) {
                chunks.push(Chunk::Done);
                done += 1;
            } else {
                chunks.push(Chunk::Missing);
            }
        }
        let mut queue: VecDeque<u32> = (0..n)
            .filter(|&i| chunks[i as usize] == Chunk::Missing)
            .collect();
        if let Some(last) = queue.pop_back() {
            queue.push_front(last);
        }
        Self {
            manifest,
            config,
            chunks,
            queue,
            peers: Vec::new(),
            done,
            first_failure: HashMap::new(),
            suspect: false,
        }
    }

    /// The manifest being fetched.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Whether two different peers failed the same chunk: either both lie or the manifest
    /// does. A download whose peers are all dropped reports this so that the caller can try
    /// a manifest from another source.
    pub fn manifest_suspect(&self) -> bool {
        self.suspect
    }

    /// Adds a peer.
    pub fn add_peer(&mut self) -> PeerSlot {
        self.peers.push(PeerState::default());
        PeerSlot(self.peers.len() - 1)
    }

    /// Whether every chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.done as usize == self.chunks.len()
    }

    /// Chunks verified so far.
    pub fn chunks_done(&self) -> u32 {
        self.done
    }

    /// Whether chunk `index` is verified (and written).
    pub fn is_done(&self, index: u32) -> bool {
        self.chunks.get(index as usize) == Some(&Chunk::Done)
    }

    /// Whether the peer still takes part.
    pub fn is_active(&self, peer: PeerSlot) -> bool {
        self.peers[peer.0].dropped.is_none()
    }

    /// Whether every peer has been dropped.
    pub fn all_dropped(&self) -> bool {
        self.peers.iter().all(|p| p.dropped.is_some())
    }

    /// The peer's counters.
    pub fn tally(&self, peer: PeerSlot) -> PeerTally {
        let p = &self.peers[peer.0];
        PeerTally {
            chunks_ok: p.chunks_ok,
            bytes_ok: p.bytes_ok,
            timeouts: p.timeouts,
            dropped: p.dropped,
        }
    }

    /// Requests this peer has in flight.
    pub fn in_flight(&self, peer: PeerSlot) -> usize {
        self.peers[peer.0].in_flight.len()
    }

    /// How many requests `peer` may have in flight now: enough for `pipeline_target` of data
    /// at the rate it has delivered so far, within the configured bounds.
    pub fn pipeline_depth(&self, peer: PeerSlot, now: Instant) -> usize {
        let p = &self.peers[peer.0];
        let (min, max) = (
            self.config.min_pipeline,
            self.config.max_pipeline.max(self.config.min_pipeline),
        );
        let Some(start) = p.first_request else {
            return min;
        };
        let elapsed = now.saturating_duration_since(start).as_secs_f64().max(1e-3);
        let rate = p.bytes_ok as f64 / elapsed;
        let want = rate * self.config.pipeline_target.as_secs_f64()
            / f64::from(self.manifest.chunk_size());
        (1 + want as usize).clamp(min, max)
    }

    /// The next chunk to ask `peer` for, if it has a free pipeline slot and there is work.
    pub fn poll_request(&mut self, peer: PeerSlot, now: Instant) -> Option<u32> {
        let total: usize = self.peers.iter().map(|p| p.in_flight.len()).sum();
        let p = &self.peers[peer.0];
        if p.dropped.is_some()
            || p.in_flight.len() >= self.pipeline_depth(peer, now)
            || total >= self.config.max_in_flight
        {
            return None;
        }
        let index = self.next_missing().or_else(|| self.endgame_pick(peer))?;
        let c = &mut self.chunks[index as usize];
        *c = match *c {
            Chunk::InFlight(h) => Chunk::InFlight(h + 1),
            _ => Chunk::InFlight(1),
        };
        let p = &mut self.peers[peer.0];
        p.first_request.get_or_insert(now);
        p.in_flight.push((index, now));
        Some(index)
    }

    fn next_missing(&mut self) -> Option<u32> {
        while let Some(i) = self.queue.pop_front() {
            if self.chunks[i as usize] == Chunk::Missing {
                return Some(i);
            }
        }
        None
    }

    fn endgame_pick(&self, peer: PeerSlot) -> Option<u32> {
        let mine = &self.peers[peer.0].in_flight;
        self.chunks.iter().enumerate().find_map(|(i, c)| match c {
            Chunk::InFlight(h)
                if *h < self.config.endgame_holders
                    && !mine.iter().any(|&(j, _)| j as usize == i) =>
            {
                Some(i as u32)
            }
            _ => None,
        })
    }

    /// Takes `index` out of `peer`'s in-flight list; true if it was there.
    fn settle(&mut self, peer: PeerSlot, index: u32) -> bool {
        let fl = &mut self.peers[peer.0].in_flight;
        let Some(pos) = fl.iter().position(|&(i, _)| i == index) else {
            return false;
        };
        fl.swap_remove(pos);
        if let Chunk::InFlight(h) = self.chunks[index as usize] {
            self.chunks[index as usize] = if h > 1 {
                Chunk::InFlight(h - 1)
            } else {
                self.queue.push_front(index);
                Chunk::Missing
            };
        }
        true
    }

    /// Data for chunk `index` arrived from `peer`: verify it.
    pub fn handle_data(
        &mut self,
        peer: PeerSlot,
        index: u32,
        data: &[u8],
        now: Instant,
    ) -> Result<Accepted, Rejected> {
        if index as usize >= self.chunks.len() {
            return Err(Rejected::OutOfRange);
        }
        let verified = self.manifest.verify_chunk(index, data);
        self.handle_checked(peer, index, data.len(), verified, now)
    }

    /// Like [`Transfer::handle_data`], for `len` bytes of chunk `index` that the caller
    /// verified itself (`Manifest::verify_chunk`), for example on another thread.
    pub fn handle_checked(
        &mut self,
        peer: PeerSlot,
        index: u32,
        len: usize,
        verified: bool,
        now: Instant,
    ) -> Result<Accepted, Rejected> {
        if index as usize >= self.chunks.len() {
            return Err(Rejected::OutOfRange);
        }
        if !verified {
            self.settle(peer, index);
            self.drop_peer(peer, Dropped::Corrupt);
            let first = *self.first_failure.entry(index).or_insert(peer);
            if first != peer {
                self.suspect = true;
            }
            return Err(Rejected::Corrupt);
        }
        let was_done = self.chunks[index as usize] == Chunk::Done;
        self.settle(peer, index);
        if was_done {
            return Ok(Accepted::Duplicate);
        }
        self.chunks[index as usize] = Chunk::Done;
        self.done += 1;
        let p = &mut self.peers[peer.0];
        p.chunks_ok += 1;
        p.bytes_ok += len as u64;
        p.last_progress = Some(now);
        Ok(Accepted::New {
            offset: self.manifest.chunk_range(index).0,
        })
    }

    /// The peer answered "busy" (or could not serve) for `index`: give the chunk back, no penalty.
    pub fn handle_busy(&mut self, peer: PeerSlot, index: u32) {
        self.settle(peer, index);
    }

    /// The peer is gone (connection lost or it answered "not found"): release its chunks.
    pub fn handle_peer_lost(&mut self, peer: PeerSlot) {
        self.drop_peer(peer, Dropped::Lost);
    }

    fn drop_peer(&mut self, peer: PeerSlot, why: Dropped) {
        if self.peers[peer.0].dropped.is_none() {
            self.peers[peer.0].dropped = Some(why);
        }
        let held: Vec<u32> = self.peers[peer.0]
            .in_flight
            .iter()
            .map(|&(i, _)| i)
            .collect();
        for i in held {
            self.settle(peer, i);
        }
    }

    /// When `peer`'s pending requests become late: `request_timeout` after the later of its
    /// oldest pending request and its last delivery.
    fn deadline(&self, p: &PeerState) -> Option<Instant> {
        let oldest = p.in_flight.iter().map(|&(_, sent)| sent).min()?;
        Some(oldest.max(p.last_progress.unwrap_or(oldest)) + self.config.request_timeout)
    }

    /// The earliest request deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|p| self.deadline(p)).min()
    }

    /// Gives the pending requests of peers that made no progress in time to others; a peer
    /// that times out too often is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        for slot in 0..self.peers.len() {
            if self.deadline(&self.peers[slot]).is_none_or(|d| d > now) {
                continue;
            }
            let late: Vec<u32> = self.peers[slot].in_flight.iter().map(|&(i, _)| i).collect();
            for i in late {
                self.settle(PeerSlot(slot), i);
            }
            let p = &mut self.peers[slot];
            p.timeouts += 1;
            // The next requests get a full timeout of their own.
            p.last_progress = Some(now);
            if p.timeouts >= self.config.max_timeouts {
                self.drop_peer(PeerSlot(slot), Dropped::TooSlow);
            }
        }
    }
}

#[cfg(test)]
#[path = "plan_sim.rs"]
mod sim;
