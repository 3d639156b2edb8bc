//! The per-carrier rate limit of `POST /v1/usage/carrier` and its batch: a token bucket per
//! carrier key.
//!
//! The buckets are the engine's own [`RateLimiter`], the one ingest limits each node with
//! (sans-IO: time is an input, so it is tested without sleeping). [`CarrierLimit`] is the
//! API's handle on it, which reads the process's monotonic clock.
//!
//! **Only allow-listed carriers get a bucket**: the handler checks the signature and the
//! allow-list first, so the map holds at most one bucket per key on `[rules] usage_carriers`
//! (and [`BUCKETS_MAX`] bounds it whatever the list's length).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::RateLimiter;
use wisp_protocol::NodeId;

/// Most buckets held at once; past it the carrier that got its bucket first is forgotten,
/// which only ever gives it a full bucket again.
pub const BUCKETS_MAX: usize = 4096;

/// The default sustained rate: reports a second per carrier (`http.carrier_reports_per_s`).
pub const DEFAULT_RATE_PER_S: f64 = 50.0;

/// The default burst: reports a carrier may send at once (`http.carrier_burst`).
pub const DEFAULT_BURST: f64 = 500.0;

/// The API's rate limit of carriers' reports: [`RateLimiter`] on this process's monotonic clock.
#[derive(Debug)]
pub struct CarrierLimit {
    origin: Instant,
    buckets: Mutex<RateLimiter>,
}

impl CarrierLimit {
    /// A limit of `rate_per_s` reports a second with bursts of `burst` per carrier.
    pub fn new(rate_per_s: f64, burst: f64) -> CarrierLimit {
        CarrierLimit {
            origin: Instant::now(),
            buckets: Mutex::new(RateLimiter::new(rate_per_s, burst.max(1.0), BUCKETS_MAX)),
        }
    }

    /// One report by `carrier` now: `Err` is how long until the next one is taken.
    pub fn check(&self, carrier: &NodeId) -> Result<(), Duration> {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        match self.buckets.lock() {
            Ok(mut b) => b.take(carrier, now_ms),
            // A panic while holding the lock cannot leave a bucket inconsistent enough to
            // matter: let the report through rather than refuse every carrier.
            Err(poisoned) => poisoned.into_inner().take(carrier, now_ms),
        }
    }
}

impl Default for CarrierLimit {
    fn default() -> Self {
        CarrierLimit::new(DEFAULT_RATE_PER_S, DEFAULT_BURST)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wisp_protocol::NodeKey;

    fn id(seed: u8) -> NodeId {
        NodeKey::from_seed(&[seed; 32]).id()
    }

    #[test]
    fn a_burst_then_the_rate_and_the_wait_until_the_next_token() {
        let mut b = RateLimiter::new(2.0, 3.0, BUCKETS_MAX);
        let c = id(1);
        for _ in 0..3 {
            assert_eq!(b.take(&c, 1_000), Ok(()));
        }
        // Empty: the next token comes in 1/2 s.
        assert_eq!(b.take(&c, 1_000), Err(Duration::from_millis(500)));
        // 250 ms later, half a token: 250 ms to go; refused reports take nothing.
        assert_eq!(b.take(&c, 1_250), Err(Duration::from_millis(250)));
        assert_eq!(b.take(&c, 1_500), Ok(()));
        // Idle for long: full again, never above the burst.
        for _ in 0..3 {
            assert_eq!(b.take(&c, 100_000), Ok(()));
        }
        assert!(b.take(&c, 100_000).is_err());
    }

    #[test]
    fn carriers_have_buckets_of_their_own_and_a_clock_going_back_refills_nothing() {
        let mut b = RateLimiter::new(1.0, 1.0, BUCKETS_MAX);
        let (x, y) = (id(1), id(2));
        assert_eq!(b.take(&x, 5_000), Ok(()));
        assert_eq!(b.take(&y, 5_000), Ok(()));
        assert!(b.take(&x, 5_000).is_err());
        assert!(b.take(&x, 1_000).is_err());
        assert_eq!(b.take(&x, 6_000), Ok(()));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut b = RateLimiter::new(1.0, 2.0, BUCKETS_MAX);
        for i in 0..(BUCKETS_MAX + 10) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let k = NodeKey::from_seed(&seed).id();
            assert_eq!(b.take(&k, 0), Ok(()));
        }
        assert!(b.len() <= BUCKETS_MAX, "{}", b.len());
    }
}
