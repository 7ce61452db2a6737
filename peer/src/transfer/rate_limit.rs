//! A token bucket for upload bandwidth, sans I/O: it says how long to wait, the caller waits.

use std::time::{Duration, Instant};

/// Bytes per second with a burst allowance.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` bytes refilled at `rate` bytes per second.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        assert!(rate > 0, "rate must be positive");
        Self {
            rate,
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Takes `n` bytes (going into debt if needed) and returns how long the sender must wait
    /// before sending them so that the long-run rate stays at or under `rate`.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn long_run_rate_never_exceeds_the_limit(sizes in proptest::collection::vec(1u64..100_000, 1..200), rate in 1_000u64..10_000_000) {
            let start = Instant::now();
            let burst = 64 * 1024;
            let mut b = TokenBucket::new(rate, burst, start);
            let mut now = start;
            let mut sent = 0u64;
            for n in sizes {
                now += b.take(n, now);
                sent += n;
                let allowed = burst as f64 + rate as f64 * (now - start).as_secs_f64();
                prop_assert!(sent as f64 <= allowed + 1.0, "sent {} allowed {}", sent, allowed);
            }
        }
    }

    #[test]
    fn within_burst_there_is_no_wait() {
        let now = Instant::now();
        let mut b = TokenBucket::new(1000, 5000, now);
        assert_eq!(b.take(5000, now), Duration::ZERO);
        assert_eq!(b.take(1000, now), Duration::from_secs(1));
    }
}
