//! The epoch calendar: when epoch 0 began, which epoch is current, whether it still has to be
//! opened, and the emission each epoch is closed with — decisions only. The caller does the
//! I/O: it persists the genesis, draws the seed from the OS, signs, stores and publishes it,
//! and tells the calendar what it stored.
//!
//! Call order, each time the caller's clock says `now` (the service: every pass of its worker
//! loop that [`EpochCalendar::poll_timeout`] says is due):
//!
//! 1. [`EpochCalendar::poll`] — what is due at `now`: a genesis to persist (first start only)
//!    and the current epoch to open, if it has not been.
//! 2. Persist the genesis, then [`EpochCalendar::handle_genesis_stored`].
//! 3. Seed, sign and **store** the opening, then [`EpochCalendar::handle_opened`], then
//!    publish (store before publish: a crash in between is repaired by the retained seed
//!    published again on the next connection).
//! 4. For each epoch the engine finds closable ([`crate::engine::Engine::closable`]), close it
//!    with [`EpochCalendar::emission`].
//!
//! **Only the current epoch is ever opened**: after an outage of several epochs the missed
//! ones stay unopened (nobody could have proved anything in them), and epochs are numbered
//! from the genesis, which never moves once stored.

use std::collections::BTreeMap;

/// An epoch to open: what its signed seed says, and the emission stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// The epoch number, counted from the genesis.
    pub epoch: u64,
    /// Its start (oracle ms): the genesis plus `epoch` epoch lengths.
    pub start_ms: u64,
    /// Its length (ms).
    pub duration_ms: u64,
    /// What its close pays out: the configured default at the time it opens.
    pub emission: u64,
}

/// What is due at a given time, in the order the caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The start of epoch 0, decided now (the first start: `now` rounded down to the epoch
    /// length). Persist it before anything else.
    pub genesis: Option<u64>,
    /// The current epoch, if no stored epoch has its number.
    pub open: Option<Opening>,
}

/// The epoch policy of one oracle: its genesis, its epoch length, its default emission and the
/// epochs stored so far with their emissions.
#[derive(Debug, Clone)]
pub struct EpochCalendar {
    epoch_ms: u64,
    default_emission: u64,
    genesis: Option<u64>,
    /// Every stored epoch's emission, so a close needs no query.
    emissions: BTreeMap<u64, u64>,
}

impl EpochCalendar {
    /// A calendar with epochs of `epoch_ms` (must be positive) paying `default_emission` unless
    /// stored otherwise, from the stored genesis (`None` on the first start) and the stored
    /// epochs' `(epoch, emission)`.
    ///
    /// # Panics
    ///
    /// If `epoch_ms` is zero.
    pub fn new(
        epoch_ms: u64,
        default_emission: u64,
        genesis: Option<u64>,
        stored: impl IntoIterator<Item = (u64, u64)>,
    ) -> Self {
        assert!(epoch_ms > 0, "an epoch lasts at least 1 ms");
        Self {
            epoch_ms,
            default_emission,
            genesis,
            emissions: stored.into_iter().collect(),
        }
    }

    /// The start of epoch 0, once stored.
    pub fn genesis(&self) -> Option<u64> {
        self.genesis
    }

    /// The genesis a first start at `now_ms` gets: `now_ms` rounded down to the epoch length.
    fn genesis_at(&self, now_ms: u64) -> u64 {
        self.genesis.unwrap_or(now_ms - now_ms % self.epoch_ms)
    }

    /// The epoch `now_ms` falls in (epoch 0 before the genesis).
    fn current_at(&self, genesis: u64, now_ms: u64) -> u64 {
        now_ms.saturating_sub(genesis) / self.epoch_ms
    }

    /// The epoch current at `now_ms`, once the genesis is stored.
    pub fn current(&self, now_ms: u64) -> Option<u64> {
        self.genesis.map(|g| self.current_at(g, now_ms))
    }

    /// Whether an epoch has been stored (opened, by this process or an earlier one).
    pub fn is_stored(&self, epoch: u64) -> bool {
        self.emissions.contains_key(&epoch)
    }

    /// What is due at `now_ms`. Nothing changes until the caller reports what it stored, so
    /// asking again gives the same answer.
    pub fn poll(&self, now_ms: u64) -> Due {
        let genesis = self.genesis_at(now_ms);
        let current = self.current_at(genesis, now_ms);
        Due {
            genesis: self.genesis.is_none().then_some(genesis),
            open: (!self.is_stored(current)).then_some(Opening {
                epoch: current,
                start_ms: genesis + current * self.epoch_ms,
                duration_ms: self.epoch_ms,
                emission: self.default_emission,
            }),
        }
    }

    /// The genesis [`EpochCalendar::poll`] decided has been persisted.
    pub fn handle_genesis_stored(&mut self, genesis_ms: u64) {
        self.genesis = Some(genesis_ms);
    }

    /// An opening [`EpochCalendar::poll`] asked for has been stored.
    pub fn handle_opened(&mut self, opening: &Opening) {
        self.emissions.insert(opening.epoch, opening.emission);
    }

    /// The emission to close `epoch` with: the one stored with it, else the default.
    pub fn emission(&self, epoch: u64) -> u64 {
        self.emissions
            .get(&epoch)
            .copied()
            .unwrap_or(self.default_emission)
    }

    /// The earliest time at or after which [`EpochCalendar::poll`] or a close may have work:
    /// `now_ms` itself while something is due, else the start of the next epoch or
    /// `next_close_ms` (the engine's [`crate::engine::Engine::next_close_at`]), whichever is
    /// first. Until then, with a clock that does not go back, both are no-ops.
    pub fn poll_timeout(&self, now_ms: u64, next_close_ms: Option<u64>) -> u64 {
        let Some(genesis) = self.genesis else {
            return now_ms;
        };
        let current = self.current_at(genesis, now_ms);
        if !self.is_stored(current) {
            return now_ms;
        }
        let next_epoch = genesis.saturating_add((current + 1).saturating_mul(self.epoch_ms));
        next_close_ms.map_or(next_epoch, |c| c.min(next_epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const EMISSION: u64 = 1_000;

    fn opening(epoch: u64, start_ms: u64) -> Opening {
        Opening {
            epoch,
            start_ms,
            duration_ms: HOUR,
            emission: EMISSION,
        }
    }

    /// Acts on `poll(now)` as the service does and returns what was due.
    fn step(cal: &mut EpochCalendar, now: u64) -> Due {
        let due = cal.poll(now);
        if let Some(g) = due.genesis {
            cal.handle_genesis_stored(g);
        }
        if let Some(o) = &due.open {
            cal.handle_opened(o);
        }
        due
    }

    #[test]
    fn the_first_start_sets_the_genesis_and_opens_epoch_0() {
        let mut cal = EpochCalendar::new(HOUR, EMISSION, None, []);
        let now = 10 * HOUR + 1_234;
        assert_eq!(cal.poll_timeout(now, None), now);
        let due = cal.poll(now);
        assert_eq!(
            due,
            Due {
                genesis: Some(10 * HOUR),
                open: Some(opening(0, 10 * HOUR)),
            }
        );
        // Nothing is decided until the caller says it stored it.
        assert_eq!(cal.poll(now), due);
        assert_eq!(cal.current(now), None);
        step(&mut cal, now);
        assert_eq!(cal.genesis(), Some(10 * HOUR));
        assert_eq!(cal.current(now), Some(0));
        assert_eq!(
            cal.poll(now + 1),
            Due {
                genesis: None,
                open: None
            }
        );
    }

    #[test]
    fn a_restart_mid_epoch_with_the_epoch_stored_has_nothing_to_do() {
        let genesis = 5 * HOUR;
        let cal = EpochCalendar::new(HOUR, EMISSION, Some(genesis), [(0, 7), (1, 8), (2, 9)]);
        let now = genesis + 2 * HOUR + HOUR / 2;
        assert_eq!(cal.current(now), Some(2));
        assert_eq!(
            cal.poll(now),
            Due {
                genesis: None,
                open: None
            }
        );
    }

    #[test]
    fn a_restart_in_a_new_epoch_opens_it_from_the_stored_genesis() {
        let genesis = 5 * HOUR;
        let mut cal = EpochCalendar::new(HOUR, EMISSION, Some(genesis), [(0, 7)]);
        let now = genesis + HOUR + 17;
        let due = step(&mut cal, now);
        assert_eq!(due.genesis, None);
        assert_eq!(due.open, Some(opening(1, genesis + HOUR)));
        assert!(cal.is_stored(1));
    }

    #[test]
    fn after_missed_epochs_only_the_current_one_opens() {
        let genesis = 0;
        let mut cal = EpochCalendar::new(HOUR, EMISSION, Some(genesis), [(0, EMISSION)]);
        let now = 7 * HOUR + 5;
        let due = step(&mut cal, now);
        assert_eq!(due.open, Some(opening(7, 7 * HOUR)));
        assert_eq!(cal.poll(now).open, None);
        for missed in 1..7 {
            assert!(!cal.is_stored(missed), "epoch {missed}");
        }
    }

    #[test]
    fn before_the_genesis_is_epoch_0() {
        // A clock set back before the stored genesis.
        let cal = EpochCalendar::new(HOUR, EMISSION, Some(3 * HOUR), []);
        assert_eq!(cal.poll(HOUR).open, Some(opening(0, 3 * HOUR)));
    }

    #[test]
    fn a_stored_epoch_closes_with_its_own_emission() {
        let mut cal = EpochCalendar::new(HOUR, EMISSION, Some(0), [(0, 7), (1, 0)]);
        assert_eq!(cal.emission(0), 7);
        assert_eq!(cal.emission(1), 0);
        // Unknown to the store: the default.
        assert_eq!(cal.emission(2), EMISSION);
        // An opening is stored with the default of the day, and keeps it after a restart
        // with another default.
        step(&mut cal, 3 * HOUR);
        assert_eq!(cal.emission(3), EMISSION);
        let later = EpochCalendar::new(HOUR, 5, Some(0), [(0, 7), (1, 0), (3, EMISSION)]);
        assert_eq!(later.emission(3), EMISSION);
        assert_eq!(later.emission(4), 5);
    }

    #[test]
    fn poll_timeout_is_the_next_epoch_or_the_next_close() {
        let mut cal = EpochCalendar::new(HOUR, EMISSION, Some(HOUR), []);
        let now = 3 * HOUR + 10;
        // Epoch 2 is due at once.
        assert_eq!(cal.poll_timeout(now, None), now);
        step(&mut cal, now);
        assert_eq!(cal.poll_timeout(now, None), 4 * HOUR);
        // A close due before the next epoch comes first.
        assert_eq!(
            cal.poll_timeout(now, Some(3 * HOUR + 60_000)),
            3 * HOUR + 60_000
        );
        assert_eq!(cal.poll_timeout(now, Some(5 * HOUR)), 4 * HOUR);
        // A close already due is due now (or earlier).
        assert!(cal.poll_timeout(now, Some(now - 1)) <= now);
        // At the boundary the next epoch is due.
        assert_eq!(cal.poll_timeout(4 * HOUR, None), 4 * HOUR);
    }

    #[test]
    fn poll_timeout_before_the_genesis_is_stored_is_now() {
        let cal = EpochCalendar::new(HOUR, EMISSION, None, [(0, EMISSION)]);
        assert_eq!(cal.poll_timeout(42, Some(1)), 42);
    }
}
