//! Drives `Transfer` with a virtual clock and simulated peers over a lossy link: no sockets,
//! no sleeping, every run reproducible from its seed.

use super::*;
use crate::transfer::manifest::MIN_CHUNK_SIZE;
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct SimPeer {
    /// Bytes per second of its uplink.
    rate: u64,
    latency: Duration,
    /// Chance, in percent, that a request or its answer is lost.
    loss_pct: u64,
    corrupt: bool,
}

const HONEST: SimPeer = SimPeer {
    rate: 1 << 20,
    latency: Duration::from_millis(20),
    loss_pct: 0,
    corrupt: false,
};

struct Sim {
    data: Vec<u8>,
    out: Vec<u8>,
    transfer: Transfer,
    peers: Vec<(PeerSlot, SimPeer, Instant)>,
    events: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    rng: u64,
    now: Instant,
}

impl Sim {
    fn new(len: usize, peers: &[SimPeer], config: TransferConfig, seed: u64) -> Self {
        let data: Vec<u8> = (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let manifest = Arc::new(Manifest::from_bytes(&data, MIN_CHUNK_SIZE));
        let mut transfer = Transfer::new(manifest, config, |_| false);
        let now = Instant::now();
        let peers = peers
            .iter()
            .map(|p| (transfer.add_peer(), *p, now))
            .collect();
        Self {
            out: vec![0; len],
            data,
            transfer,
            peers,
            events: BinaryHeap::new(),
            rng: seed | 1,
            now,
        }
    }

    fn chance(&mut self, pct: u64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100 < pct
    }

    /// Runs until done or stuck; returns whether the file completed.
    fn run(&mut self) -> bool {
        for _ in 0..1_000_000 {
            for k in 0..self.peers.len() {
                let (slot, p, _) = self.peers[k];
                while let Some(i) = self.transfer.poll_request(slot, self.now) {
                    let len = self.transfer.manifest().chunk_range(i).1 as u64;
                    let start = self.peers[k].2.max(self.now);
                    let end = start + Duration::from_micros(len * 1_000_000 / p.rate);
                    self.peers[k].2 = end;
                    if !self.chance(p.loss_pct) {
                        self.events.push(Reverse((end + p.latency, k, i)));
                    }
                }
            }
            if self.transfer.is_complete() {
                return true;
            }
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next = match (next_event, self.transfer.poll_timeout()) {
                (Some(e), Some(t)) => e.min(t),
                (Some(e), None) => e,
                (None, Some(t)) => t,
                (None, None) => return false,
            };
            self.now = self.now.max(next);
            if next_event == Some(next) {
                let Reverse((_, k, i)) = self.events.pop().unwrap();
                let (slot, p, _) = self.peers[k];
                let (off, len) = self.transfer.manifest().chunk_range(i);
                let mut chunk = self.data[off as usize..off as usize + len].to_vec();
                if p.corrupt {
                    chunk[len / 3] ^= 0x20;
                }
                match self.transfer.handle_data(slot, i, &chunk, self.now) {
                    Ok(Accepted::New { offset }) => {
                        self.out[offset as usize..offset as usize + len].copy_from_slice(&chunk);
                    }
                    Ok(Accepted::Duplicate) | Err(Rejected::Corrupt) => {}
                    Err(Rejected::OutOfRange) => panic!("simulated peers stay in range"),
                }
            } else {
                self.transfer.handle_timeout(self.now);
            }
        }
        false
    }
}

const CHUNKS: usize = 40;
const LEN: usize = CHUNKS * MIN_CHUNK_SIZE as usize - 77;

#[test]
fn faster_peer_does_more_of_the_work() {
    let slow = SimPeer {
        rate: 1 << 18,
        ..HONEST
    };
    let mut sim = Sim::new(LEN, &[HONEST, slow], TransferConfig::default(), 1);
    assert!(sim.run());
    assert_eq!(sim.out, sim.data);
    let fast = sim.transfer.tally(PeerSlot(0)).chunks_ok;
    let slow = sim.transfer.tally(PeerSlot(1)).chunks_ok;
    assert!(fast > 2 * slow, "fast {fast} slow {slow}");
}

#[test]
fn corrupt_peer_is_caught_and_the_file_completes_from_the_others() {
    let bad = SimPeer {
        corrupt: true,
        rate: 1 << 22,
        ..HONEST
    };
    let mut sim = Sim::new(LEN, &[bad, HONEST, HONEST], TransferConfig::default(), 2);
    assert!(sim.run());
    assert_eq!(sim.out, sim.data);
    let t = sim.transfer.tally(PeerSlot(0));
    assert_eq!(t.dropped, Some(Dropped::Corrupt));
    assert_eq!(t.chunks_ok, 0);
}

#[test]
fn lossy_link_completes_through_timeouts() {
    let lossy = SimPeer {
        loss_pct: 30,
        ..HONEST
    };
    let config = TransferConfig {
        max_timeouts: u32::MAX,
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut sim = Sim::new(LEN, &[lossy, lossy], config, 3);
    assert!(sim.run());
    assert_eq!(sim.out, sim.data);
    assert!(
        sim.transfer.tally(PeerSlot(0)).timeouts + sim.transfer.tally(PeerSlot(1)).timeouts > 0
    );
}

#[test]
fn a_peer_that_never_answers_is_dropped_as_too_slow() {
    let dead = SimPeer {
        loss_pct: 100,
        ..HONEST
    };
    let slow_honest = SimPeer {
        rate: 1 << 18,
        ..HONEST
    };
    let config = TransferConfig {
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let mut sim = Sim::new(LEN, &[dead, slow_honest], config, 4);
    assert!(sim.run());
    assert_eq!(sim.out, sim.data);
    assert_eq!(
        sim.transfer.tally(PeerSlot(0)).dropped,
        Some(Dropped::TooSlow)
    );
}

#[test]
fn two_peers_failing_one_chunk_flags_the_manifest() {
    let data = vec![7u8; 5 * MIN_CHUNK_SIZE as usize];
    let m = Arc::new(Manifest::from_bytes(&data, MIN_CHUNK_SIZE));
    let mut t = Transfer::new(
        m,
        TransferConfig {
            min_pipeline: 1,
            max_pipeline: 1,
            ..Default::default()
        },
        |_| false,
    );
    let (a, b, now) = (t.add_peer(), t.add_peer(), Instant::now());
    let bad = vec![0u8; MIN_CHUNK_SIZE as usize];
    let i = t.poll_request(a, now).unwrap();
    assert_eq!(t.handle_data(a, i, &bad, now), Err(Rejected::Corrupt));
    assert!(!t.manifest_suspect());
    assert_eq!(t.poll_request(a, now), None, "a dropped peer gets no work");
    assert_eq!(
        t.poll_request(b, now),
        Some(i),
        "the failed chunk goes to the next peer first"
    );
    assert_eq!(t.handle_data(b, i, &bad, now), Err(Rejected::Corrupt));
    assert!(t.manifest_suspect());
    assert!(t.all_dropped());
}

#[test]
fn last_chunk_is_requested_first_and_resume_skips_done_chunks() {
    let data = vec![7u8; 5 * MIN_CHUNK_SIZE as usize];
    let m = Arc::new(Manifest::from_bytes(&data, MIN_CHUNK_SIZE));
    let mut t = Transfer::new(
        m,
        TransferConfig {
            min_pipeline: 10,
            ..Default::default()
        },
        |i| i == 1,
    );
    let p = t.add_peer();
    let now = Instant::now();
    let asked: Vec<u32> = std::iter::from_fn(|| t.poll_request(p, now)).collect();
    assert_eq!(asked, vec![4, 0, 2, 3]);
    assert_eq!(t.chunks_done(), 1);
}

#[test]
fn pipeline_grows_with_a_fast_peer_and_stays_shallow_for_a_slow_one() {
    let slow = SimPeer {
        rate: 1 << 16,
        ..HONEST
    };
    let fast = SimPeer {
        rate: 1 << 26,
        latency: Duration::from_millis(1),
        ..HONEST
    };
    let mut sim = Sim::new(
        300 * MIN_CHUNK_SIZE as usize,
        &[fast, slow],
        TransferConfig::default(),
        6,
    );
    assert!(sim.run());
    let now = sim.now;
    assert_eq!(
        sim.transfer.pipeline_depth(PeerSlot(0), now),
        TransferConfig::default().max_pipeline
    );
    assert_eq!(
        sim.transfer.pipeline_depth(PeerSlot(1), now),
        TransferConfig::default().min_pipeline
    );
}

#[test]
fn in_flight_requests_are_capped_over_all_peers() {
    let data = vec![1u8; 40 * MIN_CHUNK_SIZE as usize];
    let m = Arc::new(Manifest::from_bytes(&data, MIN_CHUNK_SIZE));
    let config = TransferConfig {
        min_pipeline: 8,
        max_in_flight: 10,
        ..Default::default()
    };
    let mut t = Transfer::new(m, config, |_| false);
    let (a, b, now) = (t.add_peer(), t.add_peer(), Instant::now());
    let n = std::iter::from_fn(|| t.poll_request(a, now)).count()
        + std::iter::from_fn(|| t.poll_request(b, now)).count();
    assert_eq!(n, 10);
}

#[test]
fn empty_file_is_complete_at_once() {
    let m = Arc::new(Manifest::from_bytes(b"", MIN_CHUNK_SIZE));
    let t = Transfer::new(m, TransferConfig::default(), |_| false);
    assert!(t.is_complete());
}

fn any_peer() -> impl Strategy<Value = SimPeer> {
    (16u64..22, 0u64..200, 0u64..40, any::<bool>()).prop_map(|(r, lat, loss, corrupt)| SimPeer {
        rate: 1 << r,
        latency: Duration::from_millis(lat),
        loss_pct: loss,
        corrupt,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn completes_with_the_exact_bytes_whatever_the_other_peers_do(
        others in proptest::collection::vec(any_peer(), 1..5),
        seed in any::<u64>(),
        chunks in 1usize..24,
    ) {
        let mut peers = vec![HONEST];
        peers.extend(others);
        let config = TransferConfig { max_timeouts: 1000, request_timeout: Duration::from_secs(3), ..Default::default() };
        let mut sim = Sim::new(chunks * MIN_CHUNK_SIZE as usize - 5, &peers, config, seed);
        prop_assert!(sim.run());
        prop_assert_eq!(&sim.out, &sim.data);
        for (k, p) in peers.iter().enumerate() {
            if p.corrupt {
                prop_assert_eq!(sim.transfer.tally(PeerSlot(k)).chunks_ok, 0);
            }
        }
    }
}
