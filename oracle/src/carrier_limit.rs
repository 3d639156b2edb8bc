//! The per-carrier rate limit of `POST /v1/usage/carrier` and its batch: a token bucket per
//! carrier key.
//!
//! [`Buckets`] is the sans-IO core: time is an input (`now_ms`, on any monotonic clock), so it
//! is tested without sleeping. [`CarrierLimit`] is the API's handle on it, which reads
//! the process's monotonic clock.
//!
//! **Only allow-listed carriers get a bucket**: the handler checks the signature and the
//! allow-list first, so the map holds at most one bucket per key on `[rules] usage_carriers`
//! (and [`BUCKETS_MAX`] bounds it whatever the list's length).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wisp_protocol::NodeId;

/// Most buckets held at once; past it the fullest ones (idle carriers) are dropped, which
/// only ever gives a carrier a full bucket again.
pub const BUCKETS_MAX: usize = 4096;

/// The default sustained rate: reports a second per carrier (`http.carrier_reports_per_s`).
pub const DEFAULT_RATE_PER_S: f64 = 50.0;

/// The default burst: reports a carrier may send at once (`http.carrier_burst`).
pub const DEFAULT_BURST: f64 = 500.0;

/// One carrier's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Token buckets by carrier: `rate_per_s` tokens a second up to `burst`, one per report.
#[derive(Debug)]
pub struct Buckets {
    rate_per_s: f64,
    burst: f64,
    buckets: HashMap<NodeId, Bucket>,
}

impl Buckets {
    /// Buckets refilling at `rate_per_s` (> 0) up to `burst` (≥ 1); the settings validate both.
    pub fn new(rate_per_s: f64, burst: f64) -> Buckets {
        Buckets {
            rate_per_s,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// One report by `carrier` at `now_ms`: `Ok` takes a token, `Err` is how long until one
    /// is there (nothing taken). A clock that goes back refills nothing.
    pub fn handle_report(&mut self, carrier: &NodeId, now_ms: u64) -> Result<(), Duration> {
        if !self.buckets.contains_key(carrier) && self.buckets.len() >= BUCKETS_MAX {
            self.prune(now_ms);
        }
        let (rate, burst) = (self.rate_per_s, self.burst);
        let b = self.buckets.entry(*carrier).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed_ms = now_ms.saturating_sub(b.at_ms);
        // Precision: milliseconds as f64 are exact far beyond a process's lifetime.
        #[allow(clippy::cast_precision_loss)]
        let refill = elapsed_ms as f64 * rate / 1000.0;
        b.tokens = (b.tokens + refill).min(burst);
        b.at_ms = b.at_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait_s = (1.0 - b.tokens) / rate;
        Err(Duration::from_secs_f64(wait_s.clamp(0.001, 86_400.0)))
    }

    /// Drops the buckets that are full at `now_ms` (a carrier idle long enough loses
    /// nothing), else the fullest half.
    fn prune(&mut self, now_ms: u64) {
        let (rate, burst) = (self.rate_per_s, self.burst);
        #[allow(clippy::cast_precision_loss)]
        let level = |b: &Bucket| b.tokens + now_ms.saturating_sub(b.at_ms) as f64 * rate / 1000.0;
        self.buckets.retain(|_, b| level(b) < burst);
        if self.buckets.len() >= BUCKETS_MAX {
            let mut levels: Vec<f64> = self.buckets.values().map(level).collect();
            levels.sort_by(f64::total_cmp);
            let cut = levels[levels.len() / 2];
            self.buckets.retain(|_, b| level(b) < cut);
        }
    }

    /// Buckets held (for tests).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The API's rate limit of carriers' reports: [`Buckets`] on this process's monotonic clock.
#[derive(Debug)]
pub struct CarrierLimit {
    origin: Instant,
    buckets: Mutex<Buckets>,
}

impl CarrierLimit {
    /// A limit of `rate_per_s` reports a second with bursts of `burst` per carrier.
    pub fn new(rate_per_s: f64, burst: f64) -> CarrierLimit {
        CarrierLimit {
            origin: Instant::now(),
            buckets: Mutex::new(Buckets::new(rate_per_s, burst)),
        }
    }

    /// One report by `carrier` now: `Err` is how long until the next one is taken.
    pub fn check(&self, carrier: &NodeId) -> Result<(), Duration> {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        match self.buckets.lock() {
            Ok(mut b) => b.handle_report(carrier, now_ms),
            // A panic while holding the lock cannot leave a bucket inconsistent enough to
            // matter: let the report through rather than refuse every carrier.
            Err(poisoned) => poisoned.into_inner().handle_report(carrier, now_ms),
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
        let mut b = Buckets::new(2.0, 3.0);
        let c = id(1);
        for _ in 0..3 {
            assert_eq!(b.handle_report(&c, 1_000), Ok(()));
        }
        // Empty: the next token comes in 1/2 s.
        assert_eq!(b.handle_report(&c, 1_000), Err(Duration::from_millis(500)));
        // 250 ms later, half a token: 250 ms to go; refused reports take nothing.
        assert_eq!(b.handle_report(&c, 1_250), Err(Duration::from_millis(250)));
        assert_eq!(b.handle_report(&c, 1_500), Ok(()));
        // Idle for long: full again, never above the burst.
        for _ in 0..3 {
            assert_eq!(b.handle_report(&c, 100_000), Ok(()));
        }
        assert!(b.handle_report(&c, 100_000).is_err());
    }

    #[test]
    fn carriers_have_buckets_of_their_own_and_a_clock_going_back_refills_nothing() {
        let mut b = Buckets::new(1.0, 1.0);
        let (x, y) = (id(1), id(2));
        assert_eq!(b.handle_report(&x, 5_000), Ok(()));
        assert_eq!(b.handle_report(&y, 5_000), Ok(()));
        assert!(b.handle_report(&x, 5_000).is_err());
        assert!(b.handle_report(&x, 1_000).is_err());
        assert_eq!(b.handle_report(&x, 6_000), Ok(()));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut b = Buckets::new(1.0, 2.0);
        for i in 0..(BUCKETS_MAX + 10) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let k = NodeKey::from_seed(&seed).id();
            assert_eq!(b.handle_report(&k, 0), Ok(()));
        }
        assert!(b.len() <= BUCKETS_MAX, "{}", b.len());
    }
}
