//! A token bucket, sans-IO: time is passed in.
//!
//! Owns: the arithmetic of rate and burst. Must not touch: policy (what to
//! do when the bucket is empty is the connection's decision), the clock.
//!
//! Hand-written rather than a crate: it is a dozen lines on the per-message
//! path, and it may go into debt — a message already read is always
//! accepted, and the debt says how long to stop reading (TCP back-pressure)
//! so that nothing the server promised to process is lost.

use std::time::{Duration, Instant};

/// Refills at `rate` per second up to `burst`; spends may overdraw.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Spends `n`. `None` if the bucket stays non-negative; otherwise how
    /// long until the debt is repaid.
    pub fn spend(&mut self, n: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.tokens -= n;
        self.debt_wait()
    }

    fn debt_wait(&self) -> Option<Duration> {
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }

    /// Tokens available now (negative while in debt).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        for _ in 0..5 {
            assert_eq!(b.spend(1.0, t0), None);
        }
        // Overdraw by one: wait 0.1 s at 10/s.
        let wait = b.spend(1.0, t0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9);
        assert_eq!(b.spend(0.0, t0 + Duration::from_millis(100)), None);
        // Refill caps at the burst.
        assert!((b.available(t0 + Duration::from_secs(100)) - 5.0).abs() < 1e-9);
    }

    proptest! {
        /// Over any schedule, what is spent without debt never exceeds the
        /// burst plus rate × elapsed.
        #[test]
        fn never_more_than_burst_plus_rate(steps in proptest::collection::vec((0u64..50, 0.0f64..5.0), 1..200)) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(20.0, 10.0, t0);
            let mut now = t0;
            let mut spent = 0.0;
            for (ms, n) in steps {
                now += Duration::from_millis(ms);
                if b.available(now) >= n {
                    prop_assert_eq!(b.spend(n, now), None);
                    spent += n;
                }
            }
            let bound = 10.0 + 20.0 * now.duration_since(t0).as_secs_f64();
            prop_assert!(spent <= bound + 1e-6);
        }
    }
}
