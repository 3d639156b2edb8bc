//! The agent's sans-IO core: what to sign and transmit, and when.
//!
//! The core holds no sockets, reads no clock and draws no randomness: every input carries
//! `now_ms`, and every output is polled. The tokio shell and the simulator drive the same code.
//!
//! Call order: after [`Core::new`], a driver that persisted the last heartbeat it signed calls
//! [`Core::resume_heartbeats`] once, before the first input. Then, per turn of the driver's loop:
//! 1. feed inputs: [`Core::handle_seed`], [`Core::handle_ack`], [`Core::handle_radio_frame`],
//!    [`Core::handle_fix`], [`Core::handle_peer_witness`] (witnesses gossiped by peers), and
//!    [`Core::handle_timeout`] when [`Core::poll_timeout`] is due;
//! 2. drain outputs: [`Core::poll_transmit`] (frames for the radio), [`Core::poll_proof`]
//!    (signed envelopes for the outbox) and [`Core::poll_event`] (things to log and count);
//! 3. sleep until [`Core::poll_timeout`] or the next input.

use std::collections::{BTreeSet, VecDeque};

use wisp_protocol::envelope::{self, Envelope, EnvelopeRef};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{
    AckEntry, Beacon, EpochSeed, GnssFix, Heartbeat, OracleClock, STATUS_WITNESSES_MAX, Versions,
    Witness,
};
use wisp_protocol::units::{DeciDb, FreqKhz};
use wisp_protocol::{Cell, NodeId, NodeKey, ProofId, Reason, schedule};

use crate::trust::{OracleTrust, TrustError};

/// Bound on queued outputs of each kind. The driver drains them every turn, so reaching it means
/// the driver is stuck; the oldest output is then dropped and counted, never memory grown.
const OUTPUT_CAP: usize = 256;

/// The radio the node beacons on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadioParams {
    /// Centre frequency.
    pub freq_khz: FreqKhz,
    /// Channel width.
    pub width_mhz: u16,
    /// Conducted transmit power (dBm).
    pub tx_power: DeciDb,
    /// Antenna gain (dBi).
    pub antenna_gain: DeciDb,
}

/// Fixed settings of a core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The radio.
    pub radio: RadioParams,
    /// The node's asserted location. Without it the node neither beacons nor witnesses (the
    /// oracle would reject both), but it still heartbeats.
    pub cell: Option<Cell>,
    /// Heartbeat interval until an epoch seed says otherwise.
    pub heartbeat_interval_ms: u64,
    /// Software versions reported in heartbeats.
    pub versions: Versions,
    /// At most this many witnesses per epoch (bounds the work a beacon flood can cause).
    pub max_witnesses_per_epoch: usize,
    /// A seed whose start differs from our clock by more than this raises a clock warning.
    pub clock_skew_warn_ms: u64,
    /// Clock tolerance when checking a received beacon's slot.
    pub slot_tolerance_ms: u64,
}

impl CoreConfig {
    /// Defaults for a 2.4 GHz WiFi hotspot on channel 1.
    pub fn new(cell: Option<Cell>, versions: Versions) -> Self {
        Self {
            radio: RadioParams {
                freq_khz: 2_412_000,
                width_mhz: 20,
                tx_power: DeciDb::from_db(20),
                antenna_gain: DeciDb::from_db(3),
            },
            cell,
            heartbeat_interval_ms: 300_000,
            versions,
            max_witnesses_per_epoch: 512,
            clock_skew_warn_ms: 5_000,
            slot_tolerance_ms: 2_000,
        }
    }
}

/// A frame for the radio: a signed beacon envelope to transmit on the node's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFrame {
    /// The beacon envelope bytes (≤ 240).
    pub payload: Vec<u8>,
    /// Where to transmit.
    pub freq_khz: FreqKhz,
    /// Channel width.
    pub width_mhz: u16,
}

/// A signed proof for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// BLAKE3 of the bytes.
    pub id: ProofId,
    /// What it is.
    pub kind: Kind,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
    /// When it was signed.
    pub created_ms: u64,
}

/// Why a received radio frame produced no witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a valid beacon envelope (with the reason the oracle would give).
    Invalid(Reason),
    /// Our own beacon.
    Own,
    /// No epoch seed yet, or the beacon is for another epoch.
    WrongEpoch,
    /// The nonce is not the one the seed gives this beaconer.
    BadNonce,
    /// Sent outside the beaconer's slot.
    WrongSlot,
    /// The radio's receive time is implausible: more than the slot tolerance ahead of our
    /// clock, or more than the slot tolerance before the beacon says it was sent.
    BadRxTime,
    /// Already witnessed this beaconer this epoch.
    Duplicate,
    /// The per-epoch witness budget is spent.
    Budget,
    /// We have no asserted location to put in the witness.
    NoLocation,
    /// Our own slot of this epoch passed without our beacon (we started, or had the seed,
    /// after it): the oracle pays witnesses only to nodes that beacon in the epoch and would
    /// refuse the witness as `no_reciprocity`.
    NoBeacon,
}

/// Something the driver should log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new epoch began.
    NewEpoch {
        /// Its number.
        epoch: u64,
        /// When this node beacons in it (absent without a location).
        beacon_at_ms: Option<u64>,
    },
    /// Our clock and the oracle's seed disagree.
    ClockSkew {
        /// Our time minus the epoch's start, at reception.
        skew_ms: i64,
    },
    /// A frame was heard but not witnessed.
    Ignored(Ignored),
    /// Our beacon slot passed while we could not beacon (started late, no location).
    BeaconMissed {
        /// The epoch.
        epoch: u64,
    },
    /// The driver fell behind and an output was dropped.
    OutputDropped,
}

/// A peer's witness of this node's beacon, heard about by gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessSeen {
    /// Who heard the beacon.
    pub witness: NodeId,
    /// Signal strength they report.
    pub rssi: DeciDb,
    /// Signal to noise they report.
    pub snr: DeciDb,
    /// Frequency they heard it on.
    pub freq_khz: FreqKhz,
    /// When they heard it.
    pub rx_ms: u64,
    /// The signed witness envelope (shown to monitors as evidence).
    pub envelope: Vec<u8>,
}

/// Why a gossiped witness was not recorded as a witness of this node's beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecorded {
    /// It witnesses another node's beacon (the common case; nothing to do).
    OtherBeacon,
    /// It does not open (framing, signatures, structure).
    Invalid(Reason),
    /// No epoch yet, or the beacon is of another epoch.
    WrongEpoch,
    /// This witness was already recorded.
    Duplicate,
    /// [`STATUS_WITNESSES_MAX`] witnesses are already recorded this epoch.
    Full,
}

/// Timestamps shown in the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Last beacon sent.
    pub last_beacon_ms: Option<u64>,
    /// Last witness signed.
    pub last_witness_ms: Option<u64>,
    /// Last heartbeat signed.
    pub last_heartbeat_ms: Option<u64>,
    /// Last valid oracle ack.
    pub last_ack_ms: Option<u64>,
}

/// The agent's decision logic.
#[derive(Debug)]
pub struct Core {
    key: NodeKey,
    id: NodeId,
    cfg: CoreConfig,
    trust: OracleTrust,
    started_ms: u64,
    epoch: Option<EpochSeed>,
    heartbeat_seq: u64,
    heartbeat_interval_ms: u64,
    next_heartbeat_ms: u64,
    /// When a heartbeat was last signed before this core started (persisted by the driver),
    /// until this core signs one: the first heartbeat waits a full interval after it, whatever
    /// interval the next seed sets.
    resumed_from_ms: Option<u64>,
    beacon_at_ms: Option<u64>,
    /// Witnesses of the current epoch heard before this node's own beacon, signed when it
    /// goes out.
    held: Vec<Witness>,
    fix: Option<GnssFix>,
    witnessed: BTreeSet<NodeId>,
    witnessed_by: Vec<WitnessSeen>,
    activity: Activity,
    peers: u16,
    tx: VecDeque<TxFrame>,
    proofs: VecDeque<Proof>,
    events: VecDeque<Event>,
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, events: &mut VecDeque<Event>) {
    if q.len() >= OUTPUT_CAP {
        q.pop_front();
        if events.len() < OUTPUT_CAP {
            events.push_back(Event::OutputDropped);
        }
    }
    q.push_back(item);
}

impl Core {
    /// A core for `key`, started at `now_ms`. `heartbeat_seq` is the last sequence number this
    /// node signed (persisted by the driver), so sequence numbers keep increasing across restarts.
    pub fn new(
        key: NodeKey,
        cfg: CoreConfig,
        oracle: NodeId,
        now_ms: u64,
        heartbeat_seq: u64,
    ) -> Self {
        let id = key.id();
        Self {
            trust: OracleTrust::new(oracle, id),
            key,
            id,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms.max(1),
            cfg,
            started_ms: now_ms,
            epoch: None,
            heartbeat_seq,
            // The first heartbeat goes out as soon as an epoch is known (unless
            // `resume_heartbeats` says one was signed recently).
            next_heartbeat_ms: now_ms,
            resumed_from_ms: None,
            beacon_at_ms: None,
            held: Vec::new(),
            fix: None,
            witnessed: BTreeSet::new(),
            witnessed_by: Vec::new(),
            activity: Activity::default(),
            peers: 0,
            tx: VecDeque::new(),
            proofs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

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
    fn beaconed_in(&self, epoch: &EpochSeed) -> bool {
        let (start, end) = schedule::beacon_window(epoch, &self.id);
        let tol = self.cfg.slot_tolerance_ms;
        self.activity
            .last_beacon_ms
            .is_some_and(|t| epoch.contains(t) && t + tol >= start && t < end + tol)
    }

    /// Whether this node beaconed in `epoch`'s window, or still will.
    fn beacons_in(&self, epoch: &EpochSeed, now_ms: u64) -> bool {
        let (_, end) = schedule::beacon_window(epoch, &self.id);
        self.beaconed_in(epoch) || (self.beacon_at_ms.is_some() && now_ms < end)
    }

    /// Keeps the first heartbeat after a restart a full (current) interval after the last one
    /// signed. Until this core signs a heartbeat, the schedule has not moved from its start, so
    /// it is recomputed from scratch when a seed changes the interval.
    fn hold_first_heartbeat(&mut self, now_ms: u64) {
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

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current epoch, once a seed was accepted.
    pub fn epoch(&self) -> Option<&EpochSeed> {
        self.epoch.as_ref()
    }

    /// The last heartbeat sequence number signed.
    pub fn heartbeat_seq(&self) -> u64 {
        self.heartbeat_seq
    }

    /// Timestamps for the status.
    pub fn activity(&self) -> Activity {
        self.activity
    }

    /// The latest GNSS fix.
    pub fn fix(&self) -> Option<GnssFix> {
        self.fix
    }

    /// The asserted cell.
    pub fn cell(&self) -> Option<Cell> {
        self.cfg.cell
    }

    /// Seconds since the core started.
    pub fn uptime_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.started_ms) / 1000
    }

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
        self.beacon_at_ms = self.cfg.cell.filter(|_| !sent).map(|_| {
            // Transmit a quarter of a second into the slot (or a quarter of the slot if it is
            // shorter), so that small clock errors on either side keep us inside it.
            start + ((end - start) / 4).min(250)
        });
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

    /// A GNSS fix from the device.
    pub fn handle_fix(&mut self, fix: GnssFix) {
        self.fix = Some(fix);
    }

    /// The number of connected peers, reported in heartbeats.
    pub fn handle_peers(&mut self, peers: u16) {
        self.peers = peers;
    }

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
    /// creation, [`Activity::last_witness_ms`]). A receive time more than
    /// [`CoreConfig::slot_tolerance_ms`] ahead of `now_ms`, or that much before the beacon's
    /// `tx_ms`, is refused as [`Ignored::BadRxTime`].
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

    fn sign_witness(&mut self, w: &Witness, now_ms: u64) -> ProofId {
        let env = Envelope::sign(&self.key, w);
        self.activity.last_witness_ms = Some(now_ms);
        self.emit(env, now_ms)
    }

    /// Drops the held witnesses: this node's beacon of their epoch never went out.
    fn drop_held(&mut self) {
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

    /// The next frame to transmit.
    pub fn poll_transmit(&mut self) -> Option<TxFrame> {
        self.tx.pop_front()
    }

    /// The next signed proof for the outbox.
    pub fn poll_proof(&mut self) -> Option<Proof> {
        self.proofs.pop_front()
    }

    /// The next event to log or count.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Signs an arbitrary message as this node (onboarding, status reports).
    pub fn sign<M: envelope::Message>(&self, msg: &M) -> Envelope {
        Envelope::sign(&self.key, msg)
    }

    fn emit(&mut self, env: Envelope, now_ms: u64) -> ProofId {
        let bytes = env.to_bytes();
        let id = ProofId::of(&bytes);
        let proof = Proof {
            id,
            kind: env.kind,
            bytes,
            created_ms: now_ms,
        };
        push_bounded(&mut self.proofs, proof, &mut self.events);
        id
    }

    fn event(&mut self, e: Event) {
        if self.events.len() < OUTPUT_CAP {
            self.events.push_back(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::msg::{Ack, EpochParams, Verdict, seal_acks};

    const T0: u64 = 1_800_000_000_000;

    fn seed(epoch: u64, start: u64) -> EpochSeed {
        EpochSeed {
            epoch,
            start_ms: start,
            duration_ms: 60_000,
            seed: [epoch.to_le_bytes()[0]; 32].into(),
            params: EpochParams {
                slot_count: 10,
                heartbeat_interval_ms: 10_000,
                ..EpochParams::default()
            },
        }
    }

    fn core(n: u8, oracle: &NodeKey) -> Core {
        let cell = Cell::from_degrees(38.7, -9.1 + f64::from(n) * 0.001, 12).unwrap();
        Core::new(
            NodeKey::from_seed(&[n; 32]),
            CoreConfig::new(Some(cell), Versions::new("t", "sim")),
            oracle.id(),
            T0,
            0,
        )
    }

    fn drain(c: &mut Core) -> Vec<Proof> {
        std::iter::from_fn(|| c.poll_proof()).collect()
    }

    /// The witness `handle_radio_frame` made: signed at once (`Some(id)`), or held until `c`'s
    /// own beacon, its clock then run from `now` in 100 ms steps until it goes out.
    fn signed_witness(c: &mut Core, id: Option<ProofId>, now: u64) -> Proof {
        if let Some(id) = id {
            return drain(c).into_iter().find(|p| p.id == id).unwrap();
        }
        assert!(
            drain(c).iter().all(|p| p.kind != Kind::Witness),
            "a held witness was signed before the beacon"
        );
        let mut t = now;
        loop {
            c.handle_timeout(t);
            if let Some(w) = drain(c).into_iter().find(|p| p.kind == Kind::Witness) {
                return w;
            }
            t += 100;
            assert!(t < now + 120_000, "no beacon, so no witness");
        }
    }

    #[test]
    fn nothing_happens_before_a_seed() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut c = core(1, &oracle);
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(T0 + 1_000_000);
        assert!(c.poll_proof().is_none());
    }

    #[test]
    fn heartbeats_keep_their_phase_and_sequence() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut c = Core::new(
            NodeKey::from_seed(&[1; 32]),
            CoreConfig::new(None, Versions::new("t", "sim")),
            oracle.id(),
            T0,
            41,
        );
        assert!(
            c.handle_seed(&Envelope::sign(&oracle, &seed(1, T0)).to_bytes(), T0)
                .unwrap()
        );
        c.handle_timeout(T0);
        c.handle_timeout(T0 + 25_000); // one heartbeat, though 2.5 intervals passed
        // The next on the phase, but not at T0 + 30 s: that is less than three quarters of
        // an interval after the late one.
        assert_eq!(c.poll_timeout(), Some(T0 + 40_000));
        c.handle_timeout(T0 + 39_999);
        c.handle_timeout(T0 + 40_000);
        let sent: Vec<(u64, u64)> = drain(&mut c)
            .iter()
            .map(|p| envelope::open::<Heartbeat>(&p.bytes).unwrap().msg)
            .map(|h| (h.seq, h.sent_ms))
            .collect();
        assert_eq!(sent, vec![(42, T0), (43, T0 + 25_000), (44, T0 + 40_000)]);
        assert_eq!(c.poll_timeout(), Some(T0 + 50_000));
        // Without a location the node cannot beacon, and says so.
        let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(events.contains(&Event::BeaconMissed { epoch: 1 }));
    }

    #[test]
    fn no_heartbeat_is_signed_past_the_end_of_the_last_seeds_epoch() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut c = core(1, &oracle);
        // Restarted with the saved seed of an epoch that has just ended.
        let late = T0 + 60_000 + 500;
        c.handle_seed(&Envelope::sign(&oracle, &seed(1, T0)).to_bytes(), late)
            .unwrap();
        c.handle_timeout(late);
        assert!(
            drain(&mut c).iter().all(|p| p.kind != Kind::Heartbeat),
            "a heartbeat for a closed epoch"
        );
        // Nothing is due until the next seed (a timer in the past would spin the driver).
        assert!(
            c.poll_timeout().is_none_or(|t| t > late),
            "{:?}",
            c.poll_timeout()
        );
        // The next seed arrives: the heartbeat goes out at once, in the new epoch.
        c.handle_seed(
            &Envelope::sign(&oracle, &seed(2, T0 + 60_000)).to_bytes(),
            late + 20,
        )
        .unwrap();
        c.handle_timeout(late + 20);
        let hbs: Vec<Heartbeat> = drain(&mut c)
            .iter()
            .filter(|p| p.kind == Kind::Heartbeat)
            .map(|p| envelope::open::<Heartbeat>(&p.bytes).unwrap().msg)
            .collect();
        assert_eq!(hbs.len(), 1);
        assert_eq!(
            (hbs[0].epoch, hbs[0].seq, hbs[0].sent_ms),
            (2, 1, late + 20)
        );
    }

    #[test]
    fn a_restarted_core_waits_an_interval_after_the_last_persisted_heartbeat() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let seed_bytes = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
        let interval = 10_000; // the seed's
        // (last heartbeat signed, restart at): the first heartbeat after the restart.
        let cases = [
            // Restarted 3 s after a heartbeat: the next one a full interval after it.
            (T0 + 20_000, T0 + 23_000, T0 + 20_000 + interval),
            // Down longer than an interval: at once.
            (T0 + 20_000, T0 + 45_000, T0 + 45_000),
            // The clock was set back: at most one interval from now.
            (T0 + 90_000, T0 + 23_000, T0 + 23_000 + interval),
        ];
        for (last, restart, want) in cases {
            let mut c = Core::new(
                NodeKey::from_seed(&[1; 32]),
                CoreConfig::new(None, Versions::new("t", "sim")),
                oracle.id(),
                restart,
                7,
            );
            // The configured interval (5 min) applies until the seed sets 10 s.
            c.resume_heartbeats(last, restart);
            assert_eq!(c.activity().last_heartbeat_ms, Some(last));
            assert!(c.handle_seed(&seed_bytes, restart).unwrap());
            assert_eq!(
                c.poll_timeout(),
                Some(want),
                "last {last} restart {restart}"
            );
            c.handle_timeout(want - 1);
            assert!(c.poll_proof().is_none(), "too early, last {last}");
            c.handle_timeout(want);
            let hb = envelope::open::<Heartbeat>(&c.poll_proof().unwrap().bytes)
                .unwrap()
                .msg;
            assert_eq!((hb.seq, hb.sent_ms), (8, want));
            // Then the usual phase from there.
            assert_eq!(c.poll_timeout(), Some(want + interval));
        }
    }

    #[test]
    fn a_clock_set_back_after_a_restart_moves_the_first_heartbeat_with_it() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let seed_bytes = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
        // The last heartbeat was signed at T0 + 20 s on the oracle's clock; the node restarts
        // at T0 + 23 s with its clock 30 s ahead, then learns the oracle's clock.
        let (last, restart, ahead) = (T0 + 20_000, T0 + 23_000, 30_000);
        let mut c = Core::new(
            NodeKey::from_seed(&[1; 32]),
            CoreConfig::new(None, Versions::new("t", "sim")),
            oracle.id(),
            restart + ahead,
            7,
        );
        c.resume_heartbeats(last, restart + ahead);
        c.handle_seed(&seed_bytes, restart + ahead).unwrap();
        c.clock_stepped(-30_000);
        assert_eq!(c.poll_timeout(), Some(last + 10_000));
        c.handle_timeout(last + 10_000);
        let hb = envelope::open::<Heartbeat>(&c.poll_proof().unwrap().bytes)
            .unwrap()
            .msg;
        assert_eq!((hb.seq, hb.sent_ms), (8, last + 10_000));
        // Set back mid-run: the schedule keeps its phase on the new clock.
        c.clock_stepped(-5_000);
        assert_eq!(c.poll_timeout(), Some(last + 15_000));
    }

    /// A beacon `a` sends in its slot of `seed(1, T0)`, and when.
    fn beacon_of(a: &mut Core) -> (Vec<u8>, u64) {
        let mut t = T0;
        while t < T0 + 60_000 {
            a.handle_timeout(t);
            if let Some(f) = a.poll_transmit() {
                return (f.payload, t);
            }
            t += 100;
        }
        panic!("no beacon");
    }

    #[test]
    fn a_core_that_missed_its_slot_does_not_witness_and_a_restart_does_not_beacon_twice() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
        let window = |n: u8| schedule::beacon_window(&seed(1, T0), &core(n, &oracle).id());
        // b's slot ends before a's begins.
        let (na, nb) = (1..30u8)
            .flat_map(|x| (1..30u8).map(move |y| (x, y)))
            .find(|&(x, y)| x != y && window(y).1 + 2_000 < window(x).0)
            .expect("two nodes with slots apart");
        let mut a = core(na, &oracle);
        a.handle_seed(&s, T0).unwrap();
        let (frame, sent) = beacon_of(&mut a);
        let hear = |c: &mut Core| {
            c.handle_radio_frame(
                &frame,
                DeciDb(-600),
                DeciDb(200),
                2_412_000,
                sent + 1,
                sent + 1,
            )
        };
        // b started after its own slot: it will not beacon this epoch, so it does not witness.
        let mut b = Core::new(
            NodeKey::from_seed(&[nb; 32]),
            CoreConfig::new(core(nb, &oracle).cell(), Versions::new("t", "sim")),
            oracle.id(),
            window(nb).1 + 1,
            0,
        );
        b.handle_seed(&s, window(nb).1 + 1).unwrap();
        assert_eq!(hear(&mut b), Err(Ignored::NoBeacon));
        // b beaconed in its slot, then restarted: it does not beacon again, and it witnesses.
        let mut b = Core::new(
            NodeKey::from_seed(&[nb; 32]),
            CoreConfig::new(core(nb, &oracle).cell(), Versions::new("t", "sim")),
            oracle.id(),
            window(nb).1 + 1,
            0,
        );
        b.resume_beacon(window(nb).0 + 250);
        b.handle_seed(&s, window(nb).1 + 1).unwrap();
        let mut t = window(nb).1 + 1;
        while t < T0 + 60_000 {
            b.handle_timeout(t);
            assert!(b.poll_transmit().is_none(), "a second beacon at {t}");
            t += 500;
        }
        assert!(hear(&mut b).is_ok());
        // A beacon of an earlier epoch does not count, even one sent just before this epoch
        // began (within the slot tolerance of a first slot): this epoch's slot is used.
        for before in [window(nb).0 - 60_000, T0 - 270] {
            let mut c = core(nb, &oracle);
            c.resume_beacon(before);
            c.handle_seed(&s, T0).unwrap();
            assert!(
                (0..600).any(|i| {
                    c.handle_timeout(T0 + i * 100);
                    c.poll_transmit().is_some()
                }),
                "no beacon after one at {before}"
            );
        }
    }

    #[test]
    fn beacons_once_in_its_slot_and_neighbours_witness_once() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut a = core(1, &oracle);
        let mut b = core(2, &oracle);
        let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
        a.handle_seed(&s, T0).unwrap();
        b.handle_seed(&s, T0).unwrap();
        let (start, end) = schedule::beacon_window(&seed(1, T0), &a.id());
        // Run a's clock through the whole epoch in 100 ms steps.
        let mut frames = Vec::new();
        let mut t = T0;
        while t < T0 + 60_000 {
            a.handle_timeout(t);
            frames.extend(std::iter::from_fn(|| a.poll_transmit()));
            t += 100;
        }
        assert_eq!(frames.len(), 1, "one beacon per epoch");
        let beacon = envelope::open::<Beacon>(&frames[0].payload).unwrap().msg;
        assert!(beacon.tx_ms >= start && beacon.tx_ms < end);
        assert!(drain(&mut a).iter().any(|p| p.kind == Kind::Beacon));

        let rx = beacon.tx_ms + 2;
        let id = b
            .handle_radio_frame(
                &frames[0].payload,
                DeciDb(-700),
                DeciDb(200),
                2_412_000,
                rx,
                rx,
            )
            .unwrap();
        let w = signed_witness(&mut b, id, rx);
        let witness = envelope::open::<Witness>(&w.bytes).unwrap().msg;
        assert_eq!(witness.open_beacon().unwrap().signer, a.id());
        assert_eq!(witness.rx_ms, rx);
        // The same beacon again, and a's own beacon heard by a: ignored.
        assert_eq!(
            b.handle_radio_frame(
                &frames[0].payload,
                DeciDb(-700),
                DeciDb(200),
                2_412_000,
                rx + 5,
                rx + 5
            ),
            Err(Ignored::Duplicate)
        );
        assert_eq!(
            a.handle_radio_frame(
                &frames[0].payload,
                DeciDb(-700),
                DeciDb(200),
                2_412_000,
                rx,
                rx
            ),
            Err(Ignored::Own)
        );
    }

    #[test]
    fn the_beaconer_records_who_witnessed_it() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut a = core(1, &oracle);
        let mut others: Vec<Core> = (2..5).map(|n| core(n, &oracle)).collect();
        let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
        a.handle_seed(&s, T0).unwrap();
        let mut t = T0;
        let frame = loop {
            a.handle_timeout(t);
            if let Some(f) = a.poll_transmit() {
                break f;
            }
            t += 100;
        };
        let mut gossip = Vec::new();
        for (i, o) in others.iter_mut().enumerate() {
            o.handle_seed(&s, T0).unwrap();
            // Each runs its own clock: it beacons in its slot, so it may witness.
            (T0..=t).step_by(100).for_each(|u| o.handle_timeout(u));
            let rssi = DeciDb(-600 - 10 * i16::try_from(i).unwrap());
            let id = o
                .handle_radio_frame(&frame.payload, rssi, DeciDb(150), 2_412_000, t + 3, t + 3)
                .unwrap();
            gossip.push(signed_witness(o, id, t + 3).bytes);
        }
        for g in &gossip {
            assert_eq!(a.handle_peer_witness(g), Ok(()));
        }
        assert_eq!(
            a.handle_peer_witness(&gossip[0]),
            Err(NotRecorded::Duplicate)
        );
        let seen = a.witnessed_by();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].witness, others[1].id());
        assert_eq!(seen[1].rssi, DeciDb(-610));
        // Another node's beacon is not ours; a tampered witness is refused.
        assert_eq!(
            others[0].handle_peer_witness(&gossip[1]),
            Err(NotRecorded::OtherBeacon)
        );
        let mut bad = gossip[0].clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        let mut fresh = core(1, &oracle);
        fresh.handle_seed(&s, T0).unwrap();
        assert!(matches!(
            fresh.handle_peer_witness(&bad),
            Err(NotRecorded::Invalid(_))
        ));
        // A new epoch starts a new list.
        a.handle_seed(
            &Envelope::sign(&oracle, &seed(2, T0 + 60_000)).to_bytes(),
            T0 + 60_000,
        )
        .unwrap();
        assert!(a.witnessed_by().is_empty());
    }

    #[test]
    fn suspicious_beacons_are_not_witnessed() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut b = core(2, &oracle);
        let beaconer = NodeKey::from_seed(&[1; 32]);
        let s1 = seed(1, T0);
        b.handle_seed(&Envelope::sign(&oracle, &s1).to_bytes(), T0)
            .unwrap();
        let (start, _) = schedule::beacon_window(&s1, &beaconer.id());
        let good = Beacon {
            epoch: 1,
            nonce: schedule::beacon_nonce(&s1.seed.0, &beaconer.id()).into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
            tx_ms: start + 100,
        };
        let mut check = |b_msg: &Beacon| {
            let bytes = Envelope::sign(&beaconer, b_msg).to_bytes();
            let rx = start + 200;
            let r = b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, rx);
            // Undo the dedupe so each case is judged alone.
            b.witnessed.clear();
            r.map(drop)
        };
        assert_eq!(check(&good), Ok(()));
        assert_eq!(
            check(&Beacon {
                epoch: 2,
                ..good.clone()
            }),
            Err(Ignored::WrongEpoch)
        );
        assert_eq!(
            check(&Beacon {
                nonce: [0; 16].into(),
                ..good.clone()
            }),
            Err(Ignored::BadNonce)
        );
        assert_eq!(
            check(&Beacon {
                tx_ms: start + 30_000,
                ..good.clone()
            }),
            Err(Ignored::WrongSlot)
        );
        assert_eq!(
            b.handle_radio_frame(b"\x01\x03garbage", DeciDb(0), DeciDb(0), 1, T0, T0),
            Err(Ignored::Invalid(Reason::Malformed))
        );
    }

    /// A core (node 2) with epoch 1 of [`seed`], and a beacon of node 1 sent `into_slot` ms
    /// into node 1's slot: `(core, beacon bytes, beacon tx_ms)`.
    fn witness_of_a_beacon(into_slot: u64) -> (Core, Vec<u8>, u64) {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut b = core(2, &oracle);
        let beaconer = NodeKey::from_seed(&[1; 32]);
        let s1 = seed(1, T0);
        b.handle_seed(&Envelope::sign(&oracle, &s1).to_bytes(), T0)
            .unwrap();
        let (start, _) = schedule::beacon_window(&s1, &beaconer.id());
        let tx_ms = start + into_slot;
        let beacon = Beacon {
            epoch: 1,
            nonce: schedule::beacon_nonce(&s1.seed.0, &beaconer.id()).into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
            tx_ms,
        };
        (b, Envelope::sign(&beaconer, &beacon).to_bytes(), tx_ms)
    }

    #[test]
    fn a_witness_carries_the_radios_receive_time() {
        let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
        // Heard 40 ms after it was sent; the loop gets to it 900 ms later.
        let rx = tx_ms + 40;
        let now = rx + 900;
        let id = b
            .handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, now)
            .unwrap();
        let proof = signed_witness(&mut b, id, now);
        assert_eq!(
            envelope::open::<Witness>(&proof.bytes).unwrap().msg.rx_ms,
            rx
        );
        // Everything else is stamped with the core's clock.
        assert_eq!(proof.created_ms, now);
        assert_eq!(b.activity().last_witness_ms, Some(now));
    }

    #[test]
    fn implausible_receive_times_are_refused() {
        let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
        let tol = b.cfg.slot_tolerance_ms;
        let now = tx_ms + 500;
        let mut check = |rx_ms: u64| {
            let r = b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx_ms, now);
            let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
            if let Err(why) = r {
                assert_eq!(events, vec![Event::Ignored(why)], "rx_ms {rx_ms}");
            }
            // Undo the dedupe so each case is judged alone.
            b.witnessed.clear();
            r.map(drop)
        };
        // Ahead of our clock by up to the tolerance: accepted; beyond it: refused.
        assert_eq!(check(now + tol), Ok(()));
        assert_eq!(check(now + tol + 1), Err(Ignored::BadRxTime));
        assert_eq!(check(now + 3_600_000), Err(Ignored::BadRxTime));
        // Before the beacon's tx_ms by up to the tolerance: accepted; earlier: refused.
        assert_eq!(check(tx_ms - tol), Ok(()));
        assert_eq!(check(tx_ms - tol - 1), Err(Ignored::BadRxTime));
        assert_eq!(check(0), Err(Ignored::BadRxTime));
        // A refused frame does not count as witnessed: the same beacon heard at a plausible
        // time afterwards still is.
        let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
        let now = tx_ms + 500;
        let frame = |b: &mut Core, rx| {
            b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, now)
        };
        assert_eq!(frame(&mut b, now + tol + 1), Err(Ignored::BadRxTime));
        assert!(frame(&mut b, tx_ms + 10).is_ok());
        assert_eq!(frame(&mut b, tx_ms + 20), Err(Ignored::Duplicate));
    }

    #[test]
    fn forged_seeds_and_acks_change_nothing() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let forger = NodeKey::from_seed(&[101; 32]);
        let mut c = core(1, &oracle);
        assert!(
            c.handle_seed(&Envelope::sign(&forger, &seed(1, T0)).to_bytes(), T0)
                .is_err()
        );
        assert!(c.epoch().is_none());
        let ack = Ack {
            node: c.id(),
            issued_ms: T0,
            entries: vec![AckEntry {
                proof_id: ProofId::of(b"x"),
                verdict: Verdict::Accepted,
            }],
        };
        assert!(
            c.handle_ack(&seal_acks(&forger, T0, std::slice::from_ref(&ack))[0], T0)
                .is_err()
        );
        assert_eq!(c.activity().last_ack_ms, None);
        assert_eq!(
            c.handle_ack(
                &seal_acks(&oracle, T0, std::slice::from_ref(&ack))[0],
                T0 + 1
            )
            .unwrap(),
            ack.entries
        );
        assert_eq!(c.activity().last_ack_ms, Some(T0 + 1));
        // An older or equal epoch never replaces the current one.
        c.handle_seed(&Envelope::sign(&oracle, &seed(5, T0)).to_bytes(), T0)
            .unwrap();
        assert!(
            !c.handle_seed(&Envelope::sign(&oracle, &seed(4, T0)).to_bytes(), T0)
                .unwrap()
        );
        assert_eq!(c.epoch().unwrap().epoch, 5);
    }

    #[test]
    fn clock_skew_is_reported() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let mut c = core(1, &oracle);
        c.handle_seed(
            &Envelope::sign(&oracle, &seed(1, T0)).to_bytes(),
            T0 + 3_600_000,
        )
        .unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(
            events.contains(&Event::ClockSkew { skew_ms: 3_600_000 }),
            "{events:?}"
        );
    }
}
