//! Heartbeats and the beacon slot: when each is due, what a restart resumes, and a step of
//! the driver's clock.

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Beacon, EpochSeed, Heartbeat};
use wisp_protocol::schedule;

use super::{Core, Event, TxFrame, push_bounded};

impl Core {
    /// The driver persisted that this node signed its last heartbeat at `last_sent_ms` (before
    /// a restart). The first heartbeat of this core then waits until a full interval after it
    /// rather than going out at once: the oracle refuses heartbeats signed less than half an
    /// interval apart (`heartbeat_too_frequent`), and a routine restart must not cost one. A
    /// `last_sent_ms` ahead of `now_ms` (the clock was set back) delays it by one interval at
    /// most. Call once, right after [`Core::new`].
    pub fn resume_heartbeats(&mut self, last_sent_ms: u64, now_ms: u64) {
        self.resumed_from_ms = Some(last_sent_ms);
        self.activity.last_heartbeat_ms = Some(last_sent_ms);
        self.hold_first_heartbeat(now_ms);
    }

    /// The driver persisted that this node last beaconed at `sent_ms` (before a restart). If
    /// that is in the epoch the next seed opens, the beacon is not sent again (the oracle
    /// would refuse it `beacon_duplicate`) and witnesses of that epoch go out as usual. Call
    /// once, right after [`Core::new`].
    pub fn resume_beacon(&mut self, sent_ms: u64) {
        self.activity.last_beacon_ms = Some(sent_ms);
    }

    /// Whether this node's last beacon was sent in its slot of `epoch`.
    pub(super) fn beaconed_in(&self, epoch: &EpochSeed) -> bool {
        let (start, end) = schedule::beacon_window(epoch, &self.id);
        let tol = self.cfg.slot_tolerance_ms;
        self.activity
            .last_beacon_ms
            .is_some_and(|t| epoch.contains(t) && t + tol >= start && t < end + tol)
    }

    /// Whether this node beaconed in `epoch`'s window, or still will.
    pub(super) fn beacons_in(&self, epoch: &EpochSeed, now_ms: u64) -> bool {
        let (_, end) = schedule::beacon_window(epoch, &self.id);
        self.beaconed_in(epoch) || (self.beacon_at_ms.is_some() && now_ms < end)
    }

    /// Keeps the first heartbeat after a restart a full (current) interval after the last one
    /// signed. Until this core signs a heartbeat, the schedule has not moved from its start, so
    /// it is recomputed from scratch when a seed changes the interval.
    pub(super) fn hold_first_heartbeat(&mut self, now_ms: u64) {
        if let Some(last) = self.resumed_from_ms {
            let earliest = last.min(now_ms).saturating_add(self.heartbeat_interval_ms);
            self.next_heartbeat_ms = self.started_ms.max(earliest);
        }
    }

    /// The driver's clock moved by `delta_ms` (its correction by the oracle's clock changed):
    /// the start and the heartbeat schedule, set on the old clock, move with it, so that a
    /// clock set back 30 s does not hold the next heartbeat 30 s longer. Times from the oracle
    /// (the seed, the beacon slot) and those already signed stay as they are.
    pub fn clock_stepped(&mut self, delta_ms: i64) {
        self.started_ms = self.started_ms.saturating_add_signed(delta_ms);
        self.next_heartbeat_ms = self.next_heartbeat_ms.saturating_add_signed(delta_ms);
        if self.resumed_from_ms.is_some() {
            let now = self.started_ms;
            self.hold_first_heartbeat(now);
        }
    }

    /// Time passed: heartbeat and beacon when due. Call when [`Core::poll_timeout`] is reached
    /// (calling more often is harmless).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let Some(epoch) = self.epoch.clone() else {
            return;
        };
        // A heartbeat names the epoch it is signed in: past the end of the last seed's epoch
        // (its next seed not here yet: just restarted, or the oracle is late), it waits for the
        // seed rather than go out to be refused `timestamp_out_of_window`.
        if now_ms >= self.next_heartbeat_ms && now_ms >= epoch.end_ms() {
            // Due again as the next epoch starts (the next seed brings it).
            self.next_heartbeat_ms = epoch.end_ms();
        }
        if now_ms >= self.next_heartbeat_ms && epoch.contains(now_ms) {
            self.heartbeat_seq += 1;
            let hb = Heartbeat {
                epoch: epoch.epoch,
                seq: self.heartbeat_seq,
                uptime_s: self.uptime_s(now_ms),
                sent_ms: now_ms,
                fix: self.fix,
                cell: self.cfg.cell,
                versions: self.cfg.versions.clone(),
                peers: self.peers,
            };
            let env = Envelope::sign(&self.key, &hb);
            self.emit(env, now_ms);
            self.activity.last_heartbeat_ms = Some(now_ms);
            self.resumed_from_ms = None;
            // Keep the phase (a late wake-up does not shift every later heartbeat), but never
            // closer than three quarters of an interval after this one: the oracle refuses
            // heartbeats less than half an interval apart (`heartbeat_too_frequent`), and a
            // heartbeat signed late (after a hold, a busy loop) must not bring the next one
            // right behind it.
            let interval = self.heartbeat_interval_ms;
            let earliest = now_ms + interval * 3 / 4;
            let behind = earliest
                .saturating_sub(self.next_heartbeat_ms)
                .div_ceil(interval);
            self.next_heartbeat_ms += behind.max(1) * interval;
        }
        if let (Some(at), Some(cell)) = (self.beacon_at_ms, self.cfg.cell)
            && now_ms >= at
        {
            self.beacon_at_ms = None;
            let (_, end) = schedule::beacon_window(&epoch, &self.id);
            if now_ms >= end {
                self.event(Event::BeaconMissed { epoch: epoch.epoch });
                self.drop_held();
                return;
            }
            let beacon = Beacon {
                epoch: epoch.epoch,
                nonce: schedule::beacon_nonce(&epoch.seed.0, &self.id).into(),
                freq_khz: self.cfg.radio.freq_khz,
                width_mhz: self.cfg.radio.width_mhz,
                tx_power: self.cfg.radio.tx_power,
                antenna_gain: self.cfg.radio.antenna_gain,
                cell,
                tx_ms: now_ms,
            };
            let env = Envelope::sign(&self.key, &beacon);
            let frame = TxFrame {
                payload: env.to_bytes(),
                freq_khz: self.cfg.radio.freq_khz,
                width_mhz: self.cfg.radio.width_mhz,
            };
            push_bounded(&mut self.tx, frame, &mut self.events);
            // The beacon is reported too, so the oracle knows it was sent even if nobody heard it.
            self.emit(env, now_ms);
            self.activity.last_beacon_ms = Some(now_ms);
            // Then what was heard before it.
            for w in std::mem::take(&mut self.held) {
                self.sign_witness(&w, now_ms);
            }
        }
    }

    /// When [`Core::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let epoch = self.epoch.as_ref()?;
        // A heartbeat is signed only within the seed's epoch: none is due past its end (the
        // next seed sets the next one), and none before its start.
        let heartbeat =
            Some(self.next_heartbeat_ms.max(epoch.start_ms)).filter(|t| *t < epoch.end_ms());
        match (self.beacon_at_ms, heartbeat) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        }
    }
}
