//! Time sources.
//!
//! Drivers never read a clock themselves: the caller passes `now_ms` in. The [`Clock`] trait is
//! how the agent's shell gets that time from the device, so the simulator can substitute its
//! own ([`ManualClock`]) and stay deterministic.

/// A device clock: a monotonic millisecond counter for scheduling and the wall clock (UTC) for
/// timestamps that leave the device.
pub trait Clock {
    /// Milliseconds since an arbitrary fixed point (boot). Never goes backwards.
    fn monotonic_ms(&self) -> u64;
    /// Milliseconds since the Unix epoch (UTC). May jump when the system clock is set.
    fn wall_ms(&self) -> u64;
}

/// A clock the owner sets explicitly: the simulator's clock, and handy in tests.
///
/// The monotonic reading never decreases: [`ManualClock::set`] clamps a backwards step, because
/// drivers compute elapsed times from it with plain subtraction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManualClock {
    monotonic_ms: u64,
    wall_ms: u64,
}

impl ManualClock {
    /// A clock reading `monotonic_ms` and `wall_ms`.
    pub const fn new(monotonic_ms: u64, wall_ms: u64) -> Self {
        Self {
            monotonic_ms,
            wall_ms,
        }
    }

    /// Sets both readings. A monotonic value lower than the current one is ignored (clamped).
    pub fn set(&mut self, monotonic_ms: u64, wall_ms: u64) {
        self.monotonic_ms = self.monotonic_ms.max(monotonic_ms);
        self.wall_ms = wall_ms;
    }

    /// Advances both readings by `ms`.
    pub fn advance(&mut self, ms: u64) {
        self.monotonic_ms = self.monotonic_ms.saturating_add(ms);
        self.wall_ms = self.wall_ms.saturating_add(ms);
    }
}

impl Clock for ManualClock {
    fn monotonic_ms(&self) -> u64 {
        self.monotonic_ms
    }

    fn wall_ms(&self) -> u64 {
        self.wall_ms
    }
}

/// The host's clocks: [`std::time::Instant`] since construction and [`std::time::SystemTime`].
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    start: std::time::Instant,
}

#[cfg(feature = "std")]
impl StdClock {
    /// A clock whose monotonic reading starts at zero now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for StdClock {
    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn wall_ms(&self) -> u64 {
        // A system clock set before 1970 reads as the epoch rather than failing: the agent
        // compares this against the oracle's time and warns about the disagreement.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_never_goes_backwards() {
        let mut clock = ManualClock::new(1_000, 50_000);
        clock.set(500, 40_000);
        assert_eq!(clock.monotonic_ms(), 1_000, "monotonic clamped");
        assert_eq!(clock.wall_ms(), 40_000, "wall clock may be set back");
        clock.advance(250);
        assert_eq!((clock.monotonic_ms(), clock.wall_ms()), (1_250, 40_250));
    }

    #[cfg(feature = "std")]
    #[test]
    fn std_clock_reads_plausible_times() {
        let clock = StdClock::new();
        // 2020-01-01 in ms: any machine running these tests is later than that.
        assert!(clock.wall_ms() > 1_577_836_800_000);
        let a = clock.monotonic_ms();
        assert!(clock.monotonic_ms() >= a);
    }
}
