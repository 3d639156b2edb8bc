//! Beacons heard on the radio and the witnesses this node signs of them (held until its own
//! beacon of the epoch goes out), and gossiped witnesses of its own beacon.

use wisp_protocol::envelope::{self, Envelope, EnvelopeRef};
use wisp_protocol::msg::{Beacon, STATUS_WITNESSES_MAX, Witness};
use wisp_protocol::units::{DeciDb, FreqKhz};
use wisp_protocol::{Cell, ProofId, Reason, schedule};

use super::{Core, Event, Ignored, NotRecorded, WitnessSeen};

impl Core {
    /// The radio received a frame at `rx_ms`; the core handles it at `now_ms`. If it is a valid
    /// beacon of the current epoch, sent in its slot by another node we have not yet witnessed,
    /// a witness is made. It is signed and goes to the outbox at once if this node has already
    /// beaconed in the epoch; before its own beacon it is held (`Ok(None)`) and signed when the
    /// beacon goes out: the oracle pays witnesses only to nodes that beacon in the epoch
    /// (`no_reciprocity`), so a node that crashes or loses its radio before its slot signs
    /// nothing that would be refused. Held witnesses of an epoch whose beacon never went out
    /// are dropped ([`Ignored::NoBeacon`]).
    ///
    /// `rx_ms` is the radio's own receive time (Unix ms on the same clock as `now_ms`) and is
    /// what the witness reports, so a frame that waited in the radio's queue for a loop turn is
    /// still witnessed at the moment it was heard. `now_ms` stamps everything else (the proof's
    /// creation, [`Activity::last_witness_ms`](super::Activity::last_witness_ms)). A receive
    /// time more than [`CoreConfig::slot_tolerance_ms`](super::CoreConfig::slot_tolerance_ms)
    /// ahead of `now_ms`, or that much before the beacon's `tx_ms`, is refused as
    /// [`Ignored::BadRxTime`].
    pub fn handle_radio_frame(
        &mut self,
        payload: &[u8],
        rssi: DeciDb,
        snr: DeciDb,
        freq_khz: FreqKhz,
        rx_ms: u64,
        now_ms: u64,
    ) -> Result<Option<ProofId>, Ignored> {
        let cell = match self.admit(payload, rx_ms, now_ms) {
            Ok(cell) => cell,
            Err(why) => {
                self.event(Event::Ignored(why));
                return Err(why);
            }
        };
        let w = Witness {
            beacon: payload.to_vec(),
            rssi,
            snr,
            freq_khz,
            rx_ms,
            cell,
        };
        let beaconed = self.epoch.as_ref().is_some_and(|e| self.beaconed_in(e));
        if !beaconed {
            // Bounded: `admit` allows at most `max_witnesses_per_epoch` per epoch.
            self.held.push(w);
            return Ok(None);
        }
        Ok(Some(self.sign_witness(&w, now_ms)))
    }

    pub(super) fn sign_witness(&mut self, w: &Witness, now_ms: u64) -> ProofId {
        let env = Envelope::sign(&self.key, w);
        self.activity.last_witness_ms = Some(now_ms);
        self.emit(env, now_ms)
    }

    /// Drops the held witnesses: this node's beacon of their epoch never went out.
    pub(super) fn drop_held(&mut self) {
        for _ in std::mem::take(&mut self.held) {
            self.event(Event::Ignored(Ignored::NoBeacon));
        }
    }

    /// Whether a frame heard at `rx_ms` is a beacon to witness; if so, records its signer as
    /// witnessed this epoch and returns the cell the witness reports.
    fn admit(&mut self, payload: &[u8], rx_ms: u64, now_ms: u64) -> Result<Cell, Ignored> {
        let opened = envelope::open::<Beacon>(payload).map_err(|e| Ignored::Invalid(e.reason()))?;
        if opened.signer == self.id {
            return Err(Ignored::Own);
        }
        let epoch = self.epoch.as_ref().ok_or(Ignored::WrongEpoch)?;
        let beacon = &opened.msg;
        if beacon.epoch != epoch.epoch {
            return Err(Ignored::WrongEpoch);
        }
        if beacon.nonce.0 != schedule::beacon_nonce(&epoch.seed.0, &opened.signer) {
            return Err(Ignored::BadNonce);
        }
        let (start, end) = schedule::beacon_window(epoch, &opened.signer);
        let tol = self.cfg.slot_tolerance_ms;
        if beacon.tx_ms + tol < start || beacon.tx_ms >= end + tol {
            return Err(Ignored::WrongSlot);
        }
        // Nothing is received before it was sent or after our clock's now. The beaconer's
        // clock and ours may disagree, so both bounds get the slot check's tolerance.
        if rx_ms > now_ms.saturating_add(tol) || rx_ms.saturating_add(tol) < beacon.tx_ms {
            return Err(Ignored::BadRxTime);
        }
        if !self.beacons_in(epoch, now_ms) {
            return Err(Ignored::NoBeacon);
        }
        if self.witnessed.contains(&opened.signer) {
            return Err(Ignored::Duplicate);
        }
        if self.witnessed.len() >= self.cfg.max_witnesses_per_epoch {
            return Err(Ignored::Budget);
        }
        let cell = self.cfg.cell.ok_or(Ignored::NoLocation)?;
        self.witnessed.insert(opened.signer);
        Ok(cell)
    }

    /// A peer's witness arrived by gossip. If it witnesses this node's beacon of the current
    /// epoch it is recorded (at most [`STATUS_WITNESSES_MAX`] per epoch, one per witness) for
    /// the status. Witnesses of other nodes cost a framing parse only; ours are verified here
    /// in full, whatever the network layer checked.
    pub fn handle_peer_witness(&mut self, bytes: &[u8]) -> Result<(), NotRecorded> {
        let invalid = |e: envelope::EnvelopeError| NotRecorded::Invalid(e.reason());
        // Cheap first: whose beacon is it? (Nothing decoded here is trusted yet.)
        let outer = EnvelopeRef::parse(bytes).map_err(invalid)?;
        let unverified = outer.decode::<Witness>().map_err(invalid)?;
        if EnvelopeRef::parse(&unverified.msg.beacon)
            .map_err(invalid)?
            .signer_id()
            != self.id
        {
            return Err(NotRecorded::OtherBeacon);
        }
        let w = envelope::open::<Witness>(bytes).map_err(invalid)?;
        let b = w.msg.open_beacon().map_err(invalid)?;
        let epoch = self.epoch.as_ref().ok_or(NotRecorded::WrongEpoch)?;
        if b.msg.epoch != epoch.epoch {
            return Err(NotRecorded::WrongEpoch);
        }
        if w.signer == self.id {
            return Err(NotRecorded::Invalid(Reason::SelfWitness));
        }
        if self.witnessed_by.iter().any(|s| s.witness == w.signer) {
            return Err(NotRecorded::Duplicate);
        }
        if self.witnessed_by.len() >= STATUS_WITNESSES_MAX {
            return Err(NotRecorded::Full);
        }
        self.witnessed_by.push(WitnessSeen {
            witness: w.signer,
            rssi: w.msg.rssi,
            snr: w.msg.snr,
            freq_khz: w.msg.freq_khz,
            rx_ms: w.msg.rx_ms,
            envelope: bytes.to_vec(),
        });
        Ok(())
    }

    /// The witnesses of this node's beacon in the current epoch, in arrival order.
    pub fn witnessed_by(&self) -> &[WitnessSeen] {
        &self.witnessed_by
    }
}
