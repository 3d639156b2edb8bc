//! The agent's view of the oracle's time, set by the oracle's signed clock
//! ([`OracleClock`], published every few seconds on `wisp/v1/clock`).
//!
//! Every timestamp in a proof is judged against the oracle's clock, within a tolerance of a
//! few seconds: a router whose clock is 30 s off (no NTP, a dead RTC battery) would have every
//! proof refused. So the agent stamps proofs with its own clock plus an offset learnt from the
//! oracle's clock messages:
//!
//! - each live clock message gives a sample `oracle_ms − local_ms`, which is the true offset
//!   less the message's delivery delay; the offset is the largest of the last
//!   [`ClockSync::WINDOW`] samples (the least delayed one);
//! - a sample more than [`ClockSync::STEP_MS`] above the offset means the local clock was set
//!   back: the window starts again from it; one that far below may be a message held up on
//!   its way, so it takes two in a row that agree (the clock jumped ahead) to start again;
//! - an offset smaller than [`ClockSync::APPLY_MS`] (a clock kept by NTP, a few ms of delivery)
//!   is not applied: the local clock stands;
//! - the retained copy a new subscriber gets is up to one interval old, so it is no sample; it
//!   says that the oracle publishes a clock, and the agent then signs nothing time-stamped until
//!   it is in step, for at most three intervals and two seconds ([`ClockSync::holding`]). The
//!   interval is saved, so a restart holds from its start;
//! - a broker may hand a resumed session the clocks published while it was away, in a burst
//!   and not marked retained (rumqttd does): whatever arrives in the first
//!   [`ClockSync::QUIET_MS`] after (re)connecting is ignored, and the first offset is taken
//!   only from two samples that agree within [`ClockSync::STEP_MS`] and arrived at least half an
//!   interval apart.
//!
//! Pure: the caller passes the local time (the system clock, never corrected) in.

use std::collections::VecDeque;

use wisp_protocol::msg::OracleClock;

/// The offset between the local clock and the oracle's.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    samples: VecDeque<i64>,
    offset_ms: i64,
    interval_ms: Option<u32>,
    hold_until: Option<u64>,
    synced: bool,
    /// The last sample far below the others, if the one before this was such.
    low: Option<i64>,
    /// The offset last reported.
    reported_ms: i64,
    /// Clock messages arriving before this (local ms, just after a connect) are ignored.
    quiet_until: u64,
    /// Before the first offset: a sample waiting for a second that agrees, and when it came.
    pending: Option<(i64, u64)>,
}

/// What a clock message changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockUpdate {
    /// The interval the oracle publishes at changed (save it).
    pub interval_changed: bool,
    /// The applied offset changed, from this value (timers move with it).
    pub offset_changed: Option<i64>,
    /// The offset moved by a second or more since it was last reported, or went back to 0:
    /// worth a log line.
    pub report: bool,
}

impl ClockSync {
    /// Samples kept.
    pub const WINDOW: usize = 4;
    /// A sample this far from the offset is a step of the local clock.
    pub const STEP_MS: i64 = 1_000;
    /// Offsets smaller than this are not applied.
    pub const APPLY_MS: i64 = 500;
    /// Clock messages this soon after (re)connecting may be stale: ignored.
    pub const QUIET_MS: u64 = 1_000;

    /// A clock that knows, from a previous run, that the oracle publishes one every
    /// `known_interval_ms`: it holds from `now` until a live one comes.
    pub fn new(known_interval_ms: Option<u32>, now: u64) -> Self {
        let mut c = Self {
            interval_ms: known_interval_ms,
            ..Self::default()
        };
        if let Some(i) = known_interval_ms {
            c.hold_until = Some(now.saturating_add(Self::hold_ms(i)));
        }
        c
    }

    fn hold_ms(interval_ms: u32) -> u64 {
        3 * u64::from(interval_ms) + 2_000
    }

    /// The broker connection was (re)established at local time `now`.
    pub fn on_connected(&mut self, now: u64) {
        self.quiet_until = now.saturating_add(Self::QUIET_MS);
    }

    /// A verified clock message received at local time `now`; `retained` when the broker
    /// delivered its retained copy (on subscribing) rather than a live one.
    pub fn on_clock(&mut self, msg: &OracleClock, retained: bool, now: u64) -> ClockUpdate {
        let mut up = ClockUpdate {
            interval_changed: self.interval_ms != Some(msg.interval_ms),
            ..ClockUpdate::default()
        };
        self.interval_ms = Some(msg.interval_ms);
        if retained {
            if !self.synced {
                let until = now.saturating_add(Self::hold_ms(msg.interval_ms));
                self.hold_until = Some(self.hold_until.map_or(until, |t| t.max(until)));
            }
            return up;
        }
        if now < self.quiet_until {
            return up;
        }
        let sample = i64::try_from(msg.now_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
        if !self.synced {
            let half = u64::from(msg.interval_ms / 2);
            match self.pending {
                Some((p, at))
                    if (sample - p).abs() <= Self::STEP_MS && now >= at.saturating_add(half) =>
                {
                    self.samples.push_back(p);
                }
                _ => {
                    self.pending = Some((sample, now));
                    return up;
                }
            }
        }
        if let Some(raw) = self.samples.iter().copied().max() {
            if sample > raw + Self::STEP_MS {
                self.samples.clear();
                self.low = None;
            } else if sample < raw - Self::STEP_MS {
                // Two in a row that agree: the clock jumped ahead.
                match self.low.replace(sample) {
                    Some(l) if (sample - l).abs() <= Self::STEP_MS => {
                        self.samples.clear();
                        self.samples.push_back(l);
                        self.low = None;
                    }
                    _ => return up,
                }
            } else {
                self.low = None;
            }
        }
        if self.samples.len() == Self::WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let raw = self.samples.iter().copied().max().unwrap_or(0);
        let applied = if raw.abs() >= Self::APPLY_MS { raw } else { 0 };
        if applied != self.offset_ms {
            up.offset_changed = Some(self.offset_ms);
            self.offset_ms = applied;
        }
        if (applied - self.reported_ms).abs() >= Self::STEP_MS
            || (applied == 0 && self.reported_ms != 0)
        {
            up.report = true;
            self.reported_ms = applied;
        }
        self.synced = true;
        self.hold_until = None;
        up
    }

    /// Milliseconds to add to the local clock to get the oracle's (0 when within
    /// [`Self::APPLY_MS`]).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// The oracle's clock interval, once known.
    pub fn interval_ms(&self) -> Option<u32> {
        self.interval_ms
    }

    /// Whether a live clock message has been received in this run.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Whether nothing time-stamped should be signed at local time `now`: the oracle publishes
    /// a clock, none has come live yet, and the wait is not over.
    pub fn holding(&self, now: u64) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    /// `local_ms` on the oracle's clock.
    pub fn apply(&self, local_ms: u64) -> u64 {
        local_ms.saturating_add_signed(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(now_ms: u64) -> OracleClock {
        OracleClock {
            now_ms,
            interval_ms: 5_000,
        }
    }

    /// A clock in step after two agreeing samples, `ahead` ms ahead of the oracle's.
    fn synced(ahead: u64) -> ClockSync {
        let mut c = ClockSync::new(None, 0);
        c.on_clock(&clock(1_000_000), false, 1_000_000 + ahead + 10);
        c.on_clock(&clock(1_005_000), false, 1_005_000 + ahead + 10);
        assert!(c.synced());
        c
    }

    #[test]
    fn a_clock_in_step_with_the_oracle_is_left_alone() {
        let mut c = ClockSync::new(None, 0);
        for (t, delay) in [(1_000_000u64, 3u64), (1_005_000, 40), (1_010_000, 1)] {
            let up = c.on_clock(&clock(t), false, t + delay);
            assert_eq!(up.offset_changed, None);
        }
        assert_eq!(c.offset_ms(), 0);
        assert_eq!(c.apply(123), 123);
        assert!(c.synced());
    }

    #[test]
    fn a_clock_30_s_ahead_is_set_back_by_the_least_delayed_sample() {
        let mut c = ClockSync::new(None, 0);
        let ahead = 30_000;
        // The first sample waits for a second that agrees, half an interval later at least.
        let up = c.on_clock(&clock(1_000_000), false, 1_000_000 + ahead + 200);
        assert_eq!(up.offset_changed, None);
        assert!(!c.synced());
        let up = c.on_clock(&clock(1_005_000), false, 1_005_000 + ahead + 300);
        assert_eq!(up.offset_changed, Some(0));
        assert!(up.report);
        assert_eq!(c.offset_ms(), -30_200);
        // A faster delivery is the better estimate (not worth another line); a slower one
        // changes nothing.
        let up = c.on_clock(&clock(1_010_000), false, 1_010_000 + ahead + 5);
        assert_eq!(up.offset_changed, Some(-30_200));
        assert!(!up.report);
        assert_eq!(c.offset_ms(), -30_005);
        c.on_clock(&clock(1_015_000), false, 1_015_000 + ahead + 700);
        assert_eq!(c.offset_ms(), -30_005);
        assert_eq!(c.apply(1_020_000 + ahead), 1_020_000 - 5);
    }

    #[test]
    fn stale_clocks_replayed_on_a_resumed_session_set_nothing() {
        // Restarted after 12 s down: the broker replays the two clocks of the downtime at
        // once, not marked retained, then the live ones follow.
        let mut c = ClockSync::new(Some(5_000), 2_000_000);
        c.on_connected(2_000_050);
        c.on_clock(&clock(1_990_000), false, 2_000_060);
        c.on_clock(&clock(1_995_000), false, 2_000_061);
        assert!(!c.synced() && c.holding(2_000_061));
        // Even when the burst comes after the quiet second, two samples that do not agree, or
        // that came too close together, set nothing.
        c.on_clock(&clock(1_990_000), false, 2_001_100);
        c.on_clock(&clock(1_995_000), false, 2_001_101);
        c.on_clock(&clock(2_000_000), false, 2_001_102);
        assert!(!c.synced());
        c.on_clock(&clock(2_005_000), false, 2_005_004);
        c.on_clock(&clock(2_010_000), false, 2_010_003);
        assert!(c.synced());
        assert_eq!(c.offset_ms(), 0);
        // A reconnect later: its burst is ignored too.
        c.on_connected(2_030_000);
        c.on_clock(&clock(2_020_000), false, 2_030_001);
        assert_eq!(c.offset_ms(), 0);
    }

    #[test]
    fn a_step_of_the_local_clock_starts_the_window_again() {
        let mut c = synced(30_000);
        assert_eq!(c.offset_ms(), -30_010);
        // NTP set the clock right: the next sample is 30 s larger and wins at once, and an
        // offset under the threshold is not applied.
        let up = c.on_clock(&clock(1_010_000), false, 1_010_020);
        assert_eq!(up.offset_changed, Some(-30_010));
        assert_eq!(c.offset_ms(), 0);
        // One message held up 3 s on its way changes nothing.
        c.on_clock(&clock(1_015_000), false, 1_018_000);
        assert_eq!(c.offset_ms(), 0);
        // The clock jumps 40 s ahead: the second sample that says so wins.
        c.on_clock(&clock(1_020_000), false, 1_060_000);
        assert_eq!(c.offset_ms(), 0);
        c.on_clock(&clock(1_025_000), false, 1_065_000);
        assert_eq!(c.offset_ms(), -40_000);
    }

    #[test]
    fn a_retained_clock_holds_signing_until_in_step_or_three_intervals() {
        let mut c = ClockSync::new(None, 0);
        assert!(!c.holding(0), "an oracle without a clock is not waited for");
        let up = c.on_clock(&clock(900_000), true, 1_000_000);
        assert!(up.interval_changed);
        assert_eq!(c.offset_ms(), 0, "a retained copy is no sample");
        assert!(c.holding(1_000_000));
        assert!(c.holding(1_016_999));
        assert!(!c.holding(1_017_000), "three intervals and 2 s at most");
        c.on_clock(&clock(1_003_000), false, 1_003_100);
        assert!(c.holding(1_003_100), "one sample is not enough");
        c.on_clock(&clock(1_008_000), false, 1_008_100);
        assert!(!c.holding(1_008_100));
        // Retained copies after that (a reconnect) hold nothing.
        c.on_clock(&clock(1_000_000), true, 1_009_000);
        assert!(!c.holding(1_009_000));
    }

    #[test]
    fn a_restart_that_knows_the_interval_holds_from_its_start() {
        let c = ClockSync::new(Some(5_000), 50_000);
        assert!(c.holding(50_000));
        assert!(!c.holding(67_000));
        assert_eq!(c.interval_ms(), Some(5_000));
    }
}
