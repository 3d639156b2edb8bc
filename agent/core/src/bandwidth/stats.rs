//! Throughput and latency statistics, sans-IO: byte counts and round-trip samples go in,
//! figures come out. Nothing here reads a clock.
//!
//! The receiver counts verified bytes in [`BIN`] (100 ms) bins from its first byte. The figures
//! of a direction are computed from the *full* bins only (the bin the test ended in is partial
//! and would bias the last window low):
//!
//! 1. Warm-up: at least [`WARMUP_MIN_BINS`] (1 s) are discarded; after that, the first bin `w`
//!    where the 1 s window starting at `w` carries at least 90 % of the next 1 s window is the
//!    stable point (slow start is over). At most [`WARMUP_MAX_BINS`] (3 s) are discarded.
//! 2. Windows: every 1 s window (10 consecutive bins) that starts at or after the stable point,
//!    sliding by one bin.
//! 3. Median and 10th percentile of those window rates, nearest-rank (the lower median for an
//!    even count), so every figure is one window's real rate, never an interpolation.
//!
//! A test cut short (byte cap) may leave less than one full window after warm-up; then its last
//! full window (warm-up bins included) is the only window, and a test shorter than one window
//! gets the rate over all its full bins; a test shorter than one bin, the rate of its bytes
//! over its duration. So the median is always the rate of a span of bytes the test counted,
//! as long as [`wisp_protocol::msg::rate_span_ms`] of its duration: the oracle's
//! `implausible_throughput` bound holds for every honest test.

use std::time::Duration;

use wisp_protocol::msg::{RATE_BIN_MS, RATE_WINDOW_MS};

/// The width of one receiver bin.
pub const BIN: Duration = Duration::from_millis(RATE_BIN_MS as u64);
/// Bins in one throughput window (1 s).
pub const WINDOW_BINS: usize = (RATE_WINDOW_MS / RATE_BIN_MS) as usize;
/// Bins always discarded as warm-up (1 s).
pub const WARMUP_MIN_BINS: usize = 10;
/// Bins discarded at most as warm-up (3 s).
pub const WARMUP_MAX_BINS: usize = 30;

/// Verified byte counts per [`BIN`] since the first byte, with a fixed upper bound on the
/// number of bins (bytes arriving later count in the last bin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bins {
    counts: Vec<u64>,
    max_bins: usize,
}

impl Bins {
    /// Empty bins covering at most `span` (rounded up to whole bins, at least one bin).
    pub fn new(span: Duration) -> Self {
        let max_bins = usize::try_from(span.as_millis().div_ceil(BIN.as_millis()))
            .unwrap_or(usize::MAX)
            .max(1);
        Self {
            counts: Vec::new(),
            max_bins,
        }
    }

    /// Bins from counts (reports received from the other side).
    pub fn from_counts(counts: Vec<u64>) -> Self {
        let max_bins = counts.len().max(1);
        Self { counts, max_bins }
    }

    /// Counts `bytes` that arrived `at` after the first byte.
    pub fn record(&mut self, at: Duration, bytes: u64) {
        let i = usize::try_from(at.as_millis() / BIN.as_millis())
            .unwrap_or(usize::MAX)
            .min(self.max_bins - 1);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(bytes);
    }

    /// The counts, one per bin; trailing empty bins are not stored.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The sum of all bins.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }
}

/// The figures of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Median 1 s window rate, bits per second.
    pub median_bps: u64,
    /// 10th percentile 1 s window rate, bits per second.
    pub p10_bps: u64,
    /// Bins discarded as warm-up.
    pub warmup_bins: usize,
    /// How many windows the figures are taken from.
    pub windows: usize,
}

/// The number of full bins in a test that lasted `elapsed` from its first byte.
pub fn full_bins(elapsed: Duration) -> usize {
    usize::try_from(elapsed.as_millis() / BIN.as_millis()).unwrap_or(usize::MAX)
}

fn sum(bins: &[u64]) -> u64 {
    bins.iter().fold(0u64, |a, &c| a.saturating_add(c))
}

/// The stable point of `full` (see the module docs).
pub fn warmup(full: &[u64]) -> usize {
    let mut w = WARMUP_MIN_BINS;
    while w <= WARMUP_MAX_BINS {
        if w + 2 * WINDOW_BINS > full.len() {
            // Not enough data to compare two windows: stop discarding here.
            return w.min(full.len());
        }
        let this = sum(&full[w..w + WINDOW_BINS]);
        let next = sum(&full[w + WINDOW_BINS..w + 2 * WINDOW_BINS]);
        if u128::from(this) * 10 >= u128::from(next) * 9 {
            return w;
        }
        w += 1;
    }
    WARMUP_MAX_BINS
}

/// Rate in bits per second of `bytes` over `bins` bins.
fn rate(bytes: u64, bins: usize) -> u64 {
    let bins = u128::try_from(bins.max(1)).unwrap_or(u128::MAX);
    let per_s = 1000 / BIN.as_millis();
    u64::try_from(u128::from(bytes) * 8 * per_s / bins).unwrap_or(u64::MAX)
}

/// The index of the nearest-rank `p`-th percentile in a sorted list of `n > 0` values.
fn rank(n: usize, p: usize) -> usize {
    (n * p).div_ceil(100).max(1) - 1
}

/// The figures of the bins `counts` of a test that lasted `elapsed` from its first byte; `None`
/// when no time elapsed. A test shorter than one bin gets the rate of all its bytes over its
/// duration.
pub fn summarize(counts: &[u64], elapsed: Duration) -> Option<Summary> {
    if elapsed.is_zero() {
        return None;
    }
    let n = full_bins(elapsed).min(counts.len());
    // Bins after the last stored one are empty but full if time passed: a stalled tail counts.
    let n_time = full_bins(elapsed);
    let mut full: Vec<u64> = counts[..n].to_vec();
    full.resize(n_time, 0);
    if full.is_empty() {
        // Over at least 1 ms: the receipt carries whole milliseconds, at least one, and the
        // oracle's bound divides by that span (a faster rate would be refused as implausible).
        let bps = u128::from(sum(counts)) * 8 * 1_000_000 / elapsed.as_micros().max(1_000);
        let bps = u64::try_from(bps).unwrap_or(u64::MAX);
        return Some(Summary {
            median_bps: bps,
            p10_bps: bps,
            warmup_bins: 0,
            windows: 1,
        });
    }
    // The windows start at the stable point; with less than one window after it, the last
    // full window is the only one, warm-up bins included (a real 1 s window, so the oracle's
    // plausibility bound holds).
    let warmup_bins = warmup(&full).min(full.len().saturating_sub(WINDOW_BINS));
    let mut rates: Vec<u64> = if full.len() >= WINDOW_BINS {
        (warmup_bins..=full.len() - WINDOW_BINS)
            .map(|s| rate(sum(&full[s..s + WINDOW_BINS]), WINDOW_BINS))
            .collect()
    } else {
        vec![rate(sum(&full), full.len())]
    };
    rates.sort_unstable();
    Some(Summary {
        median_bps: rates[rank(rates.len(), 50)],
        p10_bps: rates[rank(rates.len(), 10)],
        warmup_bins,
        windows: rates.len(),
    })
}

impl Summary {
    /// The figures scaled by `permille` / 1000 (the wire overhead, see [`wire_ratio_permille`]).
    pub fn scaled(self, permille: u64) -> Self {
        let f = |x: u64| {
            u64::try_from(u128::from(x) * u128::from(permille) / 1_000).unwrap_or(u64::MAX)
        };
        Self {
            median_bps: f(self.median_bps),
            p10_bps: f(self.p10_bps),
            ..self
        }
    }
}

/// The ratio of IP-layer bytes to verified payload bytes in the steady state of a test, in
/// parts per thousand, between 1000 and `max_permille`.
///
/// `elapsed` and `summary` are the receiver's duration and figures (from [`summarize`]);
/// `samples` are the measurer's own cumulative IP-layer byte counts of the data direction, each
/// at its time since the receiver's first byte (as near as the measurer knows it). The IP rate
/// is the median of the 1 s windows between samples over the bins the figures came from (after
/// warm-up), the payload rate is the figures' median: both medians of steady windows, so
/// neither the bursts of in-order delivery after a loss nor a small offset between the two
/// clocks moves the ratio. No 1 s window among the samples gives 1000 (no scaling).
pub fn wire_ratio_permille(
    elapsed: Duration,
    summary: &Summary,
    samples: &[(Duration, u64)],
    max_permille: u64,
) -> u64 {
    let n = full_bins(elapsed);
    let w = summary.warmup_bins;
    if n <= w || summary.median_bps == 0 {
        return 1_000;
    }
    let bins = |k: usize| BIN * u32::try_from(k).unwrap_or(u32::MAX);
    let (from, to) = (bins(w), bins(n));
    let inside: Vec<(Duration, u64)> = samples
        .iter()
        .copied()
        .filter(|(at, _)| (from..=to).contains(at))
        .collect();
    let window = bins(WINDOW_BINS);
    let mut rates: Vec<u128> = inside
        .iter()
        .enumerate()
        .filter_map(|(i, (t0, b0))| {
            let (t1, b1) = inside[i..].iter().find(|(t, _)| *t >= *t0 + window)?;
            let us = (*t1 - *t0).as_micros().max(1);
            Some(u128::from(b1.saturating_sub(*b0)) * 8 * 1_000_000 / us)
        })
        .collect();
    if rates.is_empty() {
        return 1_000;
    }
    rates.sort_unstable();
    let ip_bps = rates[rank(rates.len(), 50)];
    let ratio = ip_bps * 1_000 / u128::from(summary.median_bps);
    u64::try_from(ratio)
        .unwrap_or(u64::MAX)
        .clamp(1_000, max_permille.max(1_000))
}

/// The lower median of round-trip samples, or 0 when there are none.
pub fn median_us(samples: &[u32]) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    s[rank(s.len(), 50)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn the_wire_ratio_is_taken_from_the_steady_span_and_bounded() {
        // 5 s at 100,000 payload bytes per bin (1 MB/s), with the bursts in-order delivery
        // makes after a loss: a gap, then the held-back bytes at once. The IP counter grows
        // 5 % faster than the payload, evenly, from an arbitrary offset, sampled every 100 ms
        // from 50 ms before the first byte.
        let mut counts = vec![100_000u64; 50];
        for gap in [12, 20, 33] {
            counts[gap] = 0;
            counts[gap + 1] = 200_000;
        }
        let s = summarize(&counts, ms(5_000)).unwrap();
        assert_eq!((s.warmup_bins, s.median_bps), (10, 8_000_000));
        let samples: Vec<(Duration, u64)> = (0..60u64)
            .map(|i| (ms(i * 100).saturating_sub(ms(50)), 7_777 + i * 105_000))
            .collect();
        let ratio = |smp: &[(Duration, u64)]| wire_ratio_permille(ms(5_000), &s, smp, 1_100);
        assert_eq!(ratio(&samples), 1_050);
        assert_eq!(s.scaled(1_050).median_bps, 8_400_000);
        // A ratio above the bound is cut to it; one below 1 (lost counters) counts as 1.
        let fast: Vec<(Duration, u64)> = samples.iter().map(|(t, b)| (*t, b * 2)).collect();
        assert_eq!(ratio(&fast), 1_100);
        let slow: Vec<(Duration, u64)> = samples.iter().map(|(t, b)| (*t, b / 2)).collect();
        assert_eq!(ratio(&slow), 1_000);
        // No 1 s window in the span, or no samples in it: no scaling.
        assert_eq!(ratio(&samples[..15]), 1_000);
        assert_eq!(ratio(&[]), 1_000);
    }

    #[test]
    fn bins_count_by_arrival_time() {
        let mut b = Bins::new(ms(1000));
        b.record(ms(0), 10);
        b.record(ms(99), 5);
        b.record(ms(100), 7);
        b.record(ms(350), 1);
        // Beyond the span: counted in the last bin, never a new one.
        b.record(ms(5000), 2);
        assert_eq!(b.counts(), &[15, 7, 0, 1, 0, 0, 0, 0, 0, 2]);
        assert_eq!(b.total(), 25);
    }

    #[test]
    fn flat_rate_after_one_second_of_ramp() {
        // 1 s ramp at 1000 bytes per bin, then 5 s at 12 500 bytes per bin (1 Mbit/s).
        let mut counts = vec![1000u64; 10];
        counts.extend(std::iter::repeat_n(12_500, 50));
        let s = summarize(&counts, ms(6000)).unwrap();
        assert_eq!(s.warmup_bins, 10);
        // Windows start at bins 10..=50: 41 windows, each 125 000 bytes = 1 000 000 bit/s.
        assert_eq!(s.windows, 41);
        assert_eq!(s.median_bps, 1_000_000);
        assert_eq!(s.p10_bps, 1_000_000);
    }

    #[test]
    fn a_slow_ramp_moves_the_stable_point() {
        // Bins 0..15 at 100, then 15..45 at 1000. The window at w compares against w+10:
        // w=10: 5*100+5*1000=5500 vs 10000 → not stable; w=11: 6400 vs 10000; ...;
        // w=14: 100+9000=9100 vs 10000 → 91 % ≥ 90 %: stable at 14.
        let mut counts = vec![100u64; 15];
        counts.extend(std::iter::repeat_n(1000, 30));
        let s = summarize(&counts, ms(4500)).unwrap();
        assert_eq!(s.warmup_bins, 14);
        // Windows start 14..=35: 22 windows; the first is 9100 bytes (72 800 bit/s), the
        // rest 10 000 bytes (80 000 bit/s). p10: rank ceil(2.2)=3 → 80 000.
        assert_eq!(s.windows, 22);
        assert_eq!(s.median_bps, 80_000);
        assert_eq!(s.p10_bps, 80_000);
    }

    #[test]
    fn median_and_p10_are_nearest_rank() {
        // Warm-up 10 bins of 0 is not stable against a full window, so give a flat start;
        // then windows whose sums are distinct: bins 10.. increase by 10 each.
        let mut counts = vec![1000u64; 10];
        counts.extend((0..20u64).map(|i| 1000 + i * 10));
        // 30 full bins. Stable point: w=10 → sum(10..20)=10450, next=sum(20..30)=11450:
        // 10450*10=104500 ≥ 11450*9=103050 → stable at 10.
        let s = summarize(&counts, ms(3000)).unwrap();
        assert_eq!(s.warmup_bins, 10);
        // Windows start at 10..=20 (11 windows), sums 10450, 10550, ..., 11450 (step 100),
        // rates ×8: 83 600 .. 91 600. Lower median: rank ceil(5.5)=6 → 6th = 10950*8.
        // p10: rank ceil(1.1)=2 → 2nd = 10550*8.
        assert_eq!(s.windows, 11);
        assert_eq!(s.median_bps, 10_950 * 8);
        assert_eq!(s.p10_bps, 10_550 * 8);
    }

    #[test]
    fn the_partial_last_bin_is_left_out() {
        let mut counts = vec![500u64; 25];
        counts.push(3); // the bin the test ended in: 2.55 s elapsed
        let s = summarize(&counts, ms(2550)).unwrap();
        // 25 full bins; w=10 would need 30 bins to compare, so warm-up stops at 10.
        assert_eq!(s.warmup_bins, 10);
        assert_eq!(s.windows, 6);
        assert_eq!(s.median_bps, 40_000);
    }

    #[test]
    fn a_short_test_still_reports_what_it_saw() {
        // Byte cap reached after 1.5 s: 5 full bins after the 1 s warm-up.
        let counts = vec![2000u64; 16];
        let s = summarize(&counts, ms(1550)).unwrap();
        // The last full window, bins 5..15, half of it warm-up.
        assert_eq!(s.warmup_bins, 5);
        assert_eq!(s.windows, 1);
        // 10 bins of 2000 bytes in 1 s = 160 000 bit/s.
        assert_eq!(s.median_bps, 160_000);
        // A slow start and a fast tail: the window is still a whole second.
        let mut counts = vec![100u64; 10];
        counts.extend([5000u64; 3]);
        let s = summarize(&counts, ms(1350)).unwrap();
        assert_eq!((s.warmup_bins, s.median_bps), (3, (7 * 100 + 3 * 5000) * 8));
        // Shorter than the warm-up: the rate over all full bins.
        let s = summarize(&[1000, 1000, 1000, 7], ms(350)).unwrap();
        assert_eq!((s.warmup_bins, s.windows, s.median_bps), (0, 1, 80_000));
        // Shorter than one bin: all bytes over the duration (5 bytes in 50 ms = 800 bit/s).
        assert_eq!(summarize(&[5], ms(50)).unwrap().median_bps, 800);
        assert_eq!(summarize(&[5], Duration::ZERO), None);
    }

    proptest::proptest! {
        /// Whatever the bins and the duration, the median is a rate the counted bytes could
        /// carry over the span the oracle checks (`implausible_throughput`).
        #[test]
        fn every_honest_median_passes_the_oracles_bound(
            counts in proptest::collection::vec(0u64..10_000_000, 0..80),
            elapsed_us in 1u64..8_000_000,
        ) {
            let elapsed = Duration::from_micros(elapsed_us);
            // Bins the test could have filled in `elapsed` (one partial bin at most beyond).
            let stored = full_bins(elapsed) + 1;
            let counts = &counts[..counts.len().min(stored)];
            if let Some(s) = summarize(counts, elapsed) {
                let duration_ms = u32::try_from(elapsed.as_millis()).unwrap().max(1);
                let span = u128::from(wisp_protocol::msg::rate_span_ms(duration_ms));
                let total: u64 = counts.iter().sum();
                proptest::prop_assert!(
                    u128::from(s.median_bps) * span <= u128::from(total) * 8 * 1_000,
                    "median {} over {} ms exceeds {} bytes", s.median_bps, span, total
                );
            }
        }
    }

    #[test]
    fn a_test_shorter_than_a_millisecond_is_rated_over_one() {
        // One byte in 1 µs: the receipt says 1 ms, so the rate is one byte per millisecond.
        let s = summarize(&[1], Duration::from_micros(1)).unwrap();
        assert_eq!(s.median_bps, 8_000);
        let s = summarize(&[1_000], Duration::from_micros(1_500)).unwrap();
        assert_eq!(s.median_bps, 1_000 * 8 * 1_000_000 / 1_500);
    }

    #[test]
    fn a_stalled_tail_counts_as_zero() {
        // Bytes stop at bin 20 but the test ran 4 s: the empty bins are real and pull p10 down.
        let counts = vec![1000u64; 20];
        let s = summarize(&counts, ms(4000)).unwrap();
        assert_eq!(s.p10_bps, 0);
    }

    #[test]
    fn rtt_median() {
        assert_eq!(median_us(&[]), 0);
        assert_eq!(median_us(&[30, 10, 20]), 20);
        assert_eq!(median_us(&[40, 10, 30, 20]), 20);
    }
}
