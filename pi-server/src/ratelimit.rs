//! Token-bucket rate limits in fixed memory, keyed by address or public key.
//!
//! Sans-IO: every call takes `now_ms` from a monotonic clock. The table has a fixed number of
//! buckets ([`BUCKETS`]); a key is hashed (with a random per-process key, so clients cannot aim
//! at one bucket) to one bucket. A bucket that is full (idle) is taken over by a new key; one
//! still in use is shared, which can only make the limit stricter for the sharers, never looser.

use std::hash::{BuildHasher, Hash, RandomState};

/// Buckets per limiter: fixed memory (24 bytes each), chosen well above the number of
/// concurrently active clients of a phone book.
pub const BUCKETS: usize = 1 << 16;
/// Longest advised wait after repeated lookups of absent names, in seconds.
pub const MAX_MISS_BACKOFF: u32 = 60;
/// Seconds after which a requester's miss streak is forgotten.
pub const MISS_MEMORY_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    fingerprint: u32,
    misses: u8,
    /// Tokens times 1000.
    milli_tokens: u32,
    last_ms: u64,
    last_miss_ms: u64,
}

/// One limiter: `rate` requests per second sustained, `burst` at once; `rate == 0` disables it.
#[derive(Debug)]
pub struct Limiter {
    buckets: Box<[Bucket]>,
    hasher: RandomState,
    rate: u32,
    burst: u32,
}

impl Limiter {
    /// A limiter; allocates [`BUCKETS`] buckets unless disabled.
    pub fn new(rate: u32, burst: u32) -> Self {
        let n = if rate == 0 { 0 } else { BUCKETS };
        Limiter {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            hasher: RandomState::new(),
            rate,
            burst: burst.max(1),
        }
    }

    fn bucket<K: Hash>(&mut self, key: &K, now_ms: u64) -> Option<&mut Bucket> {
        if self.buckets.is_empty() {
            return None;
        }
        let h = self.hasher.hash_one(key);
        let fp = (h >> 32) as u32 | 1;
        let (rate, burst) = (u64::from(self.rate), u64::from(self.burst) * 1000);
        let b = &mut self.buckets[h as usize % BUCKETS];
        let refill = now_ms.saturating_sub(b.last_ms).saturating_mul(rate);
        let tokens = (u64::from(b.milli_tokens) + refill).min(burst);
        if b.fingerprint != fp && (tokens == burst || b.fingerprint == 0) {
            *b = Bucket {
                fingerprint: fp,
                ..Bucket::default()
            };
            b.milli_tokens = burst as u32;
        } else {
            b.milli_tokens = tokens as u32;
        }
        b.last_ms = now_ms;
        Some(b)
    }

    /// Takes `cost` tokens; `Err(seconds)` to wait if there are not enough.
    pub fn check<K: Hash>(&mut self, key: &K, cost: u32, now_ms: u64) -> Result<(), u32> {
        let rate = self.rate;
        let Some(b) = self.bucket(key, now_ms) else {
            return Ok(());
        };
        let need = cost * 1000;
        if b.milli_tokens >= need {
            b.milli_tokens -= need;
            Ok(())
        } else {
            Err((need - b.milli_tokens).div_ceil(rate * 1000).max(1))
        }
    }

    /// Gives back `cost` tokens taken by [`Limiter::check`] for a request that turned out to
    /// change nothing (a replayed copy), up to the burst.
    pub fn refund<K: Hash>(&mut self, key: &K, cost: u32, now_ms: u64) {
        let full = self.burst.saturating_mul(1000);
        if let Some(b) = self.bucket(key, now_ms) {
            b.milli_tokens = b.milli_tokens.saturating_add(cost * 1000).min(full);
        }
    }

    /// Whether `cost` tokens are there, without taking them; `Err(seconds)` to wait if not.
    /// Lets a caller refuse early without charging a request it has not authenticated yet.
    pub fn peek<K: Hash>(&mut self, key: &K, cost: u32, now_ms: u64) -> Result<(), u32> {
        let rate = self.rate;
        let Some(b) = self.bucket(key, now_ms) else {
            return Ok(());
        };
        let need = cost * 1000;
        if b.milli_tokens >= need {
            Ok(())
        } else {
            Err((need - b.milli_tokens).div_ceil(rate * 1000).max(1))
        }
    }

    /// Records a lookup of an absent name and returns the advised wait in seconds: 1, 2, 4 ...
    /// up to [`MAX_MISS_BACKOFF`]; each miss also costs one extra token.
    pub fn miss<K: Hash>(&mut self, key: &K, now_ms: u64) -> u32 {
        let Some(b) = self.bucket(key, now_ms) else {
            return 1;
        };
        if now_ms.saturating_sub(b.last_miss_ms) > MISS_MEMORY_SECS * 1000 {
            b.misses = 0;
        }
        b.last_miss_ms = now_ms;
        b.misses = b.misses.saturating_add(1);
        b.milli_tokens = b.milli_tokens.saturating_sub(1000);
        (1u32 << (b.misses - 1).min(6)).min(MAX_MISS_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut l = Limiter::new(10, 5);
        for _ in 0..5 {
            assert_eq!(l.check(&"a", 1, 0), Ok(()));
        }
        assert_eq!(l.check(&"a", 1, 0), Err(1));
        // Another key has its own bucket (or shares a full one).
        assert_eq!(l.check(&"b", 1, 0), Ok(()));
        // 100 ms at 10/s gives one token back.
        assert_eq!(l.check(&"a", 1, 100), Ok(()));
        assert_eq!(l.check(&"a", 1, 100), Err(1));
        assert_eq!(l.check(&"a", 5, 1100), Ok(()));
    }

    #[test]
    fn disabled_allows_everything() {
        let mut l = Limiter::new(0, 0);
        for _ in 0..10_000 {
            assert_eq!(l.check(&1u64, 1, 0), Ok(()));
        }
    }

    #[test]
    fn misses_back_off_and_are_forgotten() {
        let mut l = Limiter::new(1000, 1000);
        let waits: Vec<u32> = (0..9).map(|i| l.miss(&"k", i)).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(l.miss(&"k", 100_000), 1);
    }

    /// docs/PROTOCOL.md "Miss back-off": a run of misses lasts while each comes at most 60 s
    /// after the previous one, however long the run; a longer pause starts it again.
    #[test]
    fn a_miss_run_lasts_while_misses_come_within_60_s() {
        let mut l = Limiter::new(1000, 1000);
        let waits: Vec<u32> = (0..4).map(|i| l.miss(&"k", i * 60_000)).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(l.miss(&"k", 3 * 60_000 + 60_001), 1);
    }

    #[test]
    fn long_waits_are_reported_in_seconds() {
        let mut l = Limiter::new(1, 2);
        assert!(l.check(&"x", 2, 0).is_ok());
        assert_eq!(l.check(&"x", 2, 0), Err(2));
    }
}
