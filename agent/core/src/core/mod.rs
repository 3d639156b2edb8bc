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
//!
//! Layout: this file holds the types and the outputs; `timers.rs` the heartbeats and the beacon
//! slot ([`Core::handle_timeout`], [`Core::poll_timeout`], what a restart resumes); `seed.rs` what
//! the oracle sends (seeds, clocks, acks); `witness.rs` the beacons heard and the witnesses of
//! this node's own beacon; `tests.rs` the tests.

use std::collections::{BTreeSet, VecDeque};

use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{EpochSeed, GnssFix, Versions, Witness};
use wisp_protocol::units::{DeciDb, FreqKhz};
use wisp_protocol::{Cell, NodeId, NodeKey, ProofId, Reason};

use crate::trust::OracleTrust;

/// Bound on queued outputs of each kind. The driver drains them every turn, so reaching it means
/// the driver is stuck; the oldest output is then dropped and counted, never memory grown.
const OUTPUT_CAP: usize = 256;

mod seed;
#[cfg(test)]
mod tests;
mod timers;
mod witness;

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
    /// [`STATUS_WITNESSES_MAX`](wisp_protocol::msg::STATUS_WITNESSES_MAX) witnesses are already
    /// recorded this epoch.
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

    /// A GNSS fix from the device.
    pub fn handle_fix(&mut self, fix: GnssFix) {
        self.fix = Some(fix);
    }

    /// The number of connected peers, reported in heartbeats.
    pub fn handle_peers(&mut self, peers: u16) {
        self.peers = peers;
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
