//! What the oracle sends: epoch seeds, its clock and acks, believed only when the pinned
//! oracle signed them.

use wisp_protocol::msg::{AckEntry, OracleClock};
use wisp_protocol::schedule;

use super::{Core, Event};
use crate::trust::TrustError;

impl Core {
    /// An epoch seed arrived (MQTT retained topic or gossip). Only seeds the pinned oracle
    /// signed are believed; a seed older than or equal to the current epoch is ignored.
    pub fn handle_seed(&mut self, bytes: &[u8], now_ms: u64) -> Result<bool, TrustError> {
        self.take_seed(bytes, now_ms, true)
    }

    /// The seed the driver saved before a restart: as [`Core::handle_seed`], but an epoch that
    /// ended while the node was down says nothing about its clock.
    pub fn resume_seed(&mut self, bytes: &[u8], now_ms: u64) -> Result<bool, TrustError> {
        self.take_seed(bytes, now_ms, false)
    }

    fn take_seed(&mut self, bytes: &[u8], now_ms: u64, live: bool) -> Result<bool, TrustError> {
        let seed = self.trust.accept_seed(bytes)?;
        if self.epoch.as_ref().is_some_and(|e| e.epoch >= seed.epoch) {
            return Ok(false);
        }
        // A seed is published when its epoch starts; a large gap means one of the clocks is off.
        let skew_ms = i64::try_from(now_ms).unwrap_or(i64::MAX)
            - i64::try_from(seed.start_ms).unwrap_or(i64::MAX);
        if live && !seed.contains(now_ms) && skew_ms.unsigned_abs() > self.cfg.clock_skew_warn_ms {
            self.event(Event::ClockSkew { skew_ms });
        }
        self.heartbeat_interval_ms = u64::from(seed.params.heartbeat_interval_ms).max(1);
        self.hold_first_heartbeat(now_ms);
        self.drop_held();
        self.witnessed.clear();
        self.witnessed_by.clear();
        let (start, end) = schedule::beacon_window(&seed, &self.id);
        // Beaconed in this epoch's slot before a restart: not again.
        let sent = self.beaconed_in(&seed);
        self.beacon_at_ms = self
            .cfg
            .cell
            .filter(|_| !sent)
            .map(|_| start + schedule::beacon_tx_offset_ms(end - start));
        if self.cfg.cell.is_none() {
            self.event(Event::BeaconMissed { epoch: seed.epoch });
        }
        self.event(Event::NewEpoch {
            epoch: seed.epoch,
            beacon_at_ms: self.beacon_at_ms,
        });
        self.epoch = Some(seed);
        Ok(true)
    }

    /// The oracle's clock arrived: opened if the pinned oracle signed it (the driver keeps
    /// the time with [`crate::clock::ClockSync`]).
    pub fn open_clock(&self, bytes: &[u8]) -> Result<OracleClock, TrustError> {
        self.trust.accept_clock(bytes)
    }

    /// An ack arrived on this node's ack topic. Returns its entries if the pinned oracle signed
    /// it for this node; the driver deletes those proofs from the outbox.
    pub fn handle_ack(&mut self, bytes: &[u8], now_ms: u64) -> Result<Vec<AckEntry>, TrustError> {
        let ack = self.trust.accept_ack(bytes)?;
        self.activity.last_ack_ms = Some(now_ms);
        Ok(ack.entries)
    }
}
