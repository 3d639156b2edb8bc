//! What the checks and the epoch close find: the facts of proofs that passed the stateless
//! rules ([`crate::rules::Checker`]), and an epoch's outcome ([`crate::epoch::EpochState::close`]).
//!
//! Plain data, below the registry, the rules and the epoch in the module order: the registry
//! applies an [`EpochOutcome`] and keeps [`HeartbeatFact`]s without importing the code that
//! makes them.

use std::collections::BTreeMap;

use wisp_protocol::msg::Direction;
use wisp_protocol::units::{DeciDb, EpochNo, UnixMs};
use wisp_protocol::{NodeId, ProofId, Reason, SubscriberId};

use crate::links::BandModel;

/// A beacon that passed every stateless rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeaconFact {
    /// The beacon's proof id (BLAKE3 of its envelope); witnesses name it.
    pub id: ProofId,
    /// The beaconer.
    pub node: NodeId,
    /// The epoch.
    pub epoch: EpochNo,
    /// When it was sent.
    pub tx_ms: UnixMs,
}

/// A witness that passed every stateless rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WitnessFact {
    /// The witness's proof id.
    pub id: ProofId,
    /// Who witnessed.
    pub witness: NodeId,
    /// The proof id of the embedded beacon.
    pub beacon_id: ProofId,
    /// Who beaconed.
    pub beaconer: NodeId,
    /// The beacon's epoch.
    pub epoch: EpochNo,
    /// The reported RSSI (the constant-signal rule at close compares them).
    pub rssi: DeciDb,
    /// Distance between the two asserted cells' centres, metres.
    pub distance_m: u32,
    /// The frequency class of the beacon ([`crate::links::band_class`]): links are compared
    /// only with links of their class.
    pub band: u8,
    /// The path loss the report implies: the beacon's EIRP as the RSSI bound takes it (the
    /// claimed power and gain, capped by the onboarded gain and the band's EIRP limit) plus
    /// the witness's onboarded gain, minus the RSSI.
    pub path_loss: DeciDb,
    /// The witness's receive time minus the beacon's send time, milliseconds (the two
    /// clocks' offset plus how long the beacon took to arrive).
    pub lag_ms: i32,
}

/// A measured bandwidth receipt that passed every stateless rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptFact {
    /// The receipt's proof id.
    pub id: ProofId,
    /// The epoch.
    pub epoch: EpochNo,
    /// The node measured.
    pub prover: NodeId,
    /// The node that measured.
    pub measurer: NodeId,
    /// Which way.
    pub direction: Direction,
    /// Median of the 1 s windows, bits per second.
    pub median_bps: u64,
    /// Idle round-trip time, microseconds.
    pub rtt_idle_us: u32,
}

/// What a heartbeat's GNSS fix says about the node's asserted location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GnssEvidence {
    /// No fix, or one from too few satellites to be a position.
    NoFix,
    /// The fix lies within a trust band.
    Within {
        /// Shortest distance from the asserted cell, metres.
        distance_m: u32,
        /// The band's multiplier.
        trust_bps: u16,
    },
    /// The fix lies beyond the last trust band (`gnss_mismatch`; trust 0 for this fix).
    Mismatch {
        /// Shortest distance from the asserted cell, metres.
        distance_m: u32,
    },
}

/// A heartbeat that passed every stateless rule. It counts for uptime even with a GNSS
/// mismatch: the node is alive, only its location is in doubt, and that costs it coverage
/// rewards through location trust instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatFact {
    /// The heartbeat's proof id.
    pub id: ProofId,
    /// The node.
    pub node: NodeId,
    /// The epoch.
    pub epoch: EpochNo,
    /// Its sequence number.
    pub seq: u64,
    /// When the node signed it.
    pub sent_ms: UnixMs,
    /// The registry's `asserted_ms` of the cell the fix was compared with; evidence about an
    /// older assertion is ignored after a re-assertion.
    pub asserted_ms: UnixMs,
    /// The location evidence.
    pub gnss: GnssEvidence,
}

impl HeartbeatFact {
    /// A reason to record alongside the accepted heartbeat, when its fix contradicts the
    /// asserted cell (`gnss_mismatch`). The heartbeat still counts for uptime.
    pub fn finding(&self) -> Option<Reason> {
        matches!(self.gnss, GnssEvidence::Mismatch { .. }).then_some(Reason::GnssMismatch)
    }
}

/// One reading of a beaconer's level, kept across epochs: (beaconer, epoch, RSSI).
pub type Level = (NodeId, EpochNo, DeciDb);

/// A direction's rating from its receipts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectionFacts {
    /// Lower median of the distinct measurers' median throughputs, bits per second.
    pub median_bps: u64,
    /// Distinct measurers counted.
    pub measurers: u16,
}

/// GNSS evidence an epoch brought about a node's current assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocationEvidence {
    /// The assertion it is about (registry `asserted_ms`).
    pub asserted_ms: UnixMs,
    /// The trust it gives.
    pub trust_bps: u16,
}

/// Everything the reward math needs about one node in one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The node's valid beacon, if any.
    pub beacon: Option<ProofId>,
    /// Paid witnesses of that beacon.
    pub beacon_witnesses: u16,
    /// For each beacon this node was paid for witnessing, that beacon's paid witness count
    /// (sorted ascending).
    pub witnessed: Vec<u16>,
    /// The download rating, once enough measurers reported.
    pub down: Option<DirectionFacts>,
    /// The upload rating, once enough measurers reported.
    pub up: Option<DirectionFacts>,
    /// Lower median of the idle RTTs of the rated directions' receipts, microseconds.
    pub rtt_idle_us: Option<u32>,
    /// Distinct heartbeat intervals covered.
    pub heartbeats: u32,
    /// Heartbeat intervals in the epoch.
    pub expected_heartbeats: u32,
    /// Whether the node earns uptime rewards.
    pub uptime_eligible: bool,
    /// The location trust multiplier applied to its coverage.
    pub location_trust_bps: u16,
    /// The GNSS evidence of this epoch, when there was some (the registry carries it forward).
    pub location_evidence: Option<LocationEvidence>,
    /// How many sites the node's connected group of paid witness links holds (its own
    /// included; identities sharing a site count once; 0 without a paid link).
    pub group: u32,
    /// The site the node shares with other identities (they witnessed each other closer than
    /// `min_witness_distance_m`): its smallest member's id and how many share it. `None` when
    /// the node is alone at its place.
    pub site: Option<(NodeId, u32)>,
}

/// Something a node was caught at, which counts towards a penalty for `strike_window_epochs`:
/// a beaconer it claimed to hear over an implausible link that no false location explains
/// (`links_implausible`, keyed by the beaconer: distinct beaconers count), a refusal only a
/// dishonest node earns (its reason, keyed by the proof), or an epoch of `rssi_inconsistent`
/// or `links_relayed` (keyed by the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// The epoch it happened in (the latest, for a beaconer heard again).
    pub epoch: EpochNo,
    /// What it was.
    pub reason: Reason,
    /// The beaconer's id or the proof's id.
    pub key: [u8; 32],
}

/// The result of closing an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochOutcome {
    /// The epoch.
    pub epoch: EpochNo,
    /// Per node, in id order: every node that pushed or was named by a counted proof.
    pub nodes: BTreeMap<NodeId, NodeFacts>,
    /// Proofs refused by the stateful rules, sorted by proof id. Each proof appears at most
    /// once; pushed proofs not listed here were counted.
    pub rejections: Vec<(ProofId, Reason)>,
    /// Proofs counted but flagged (a heartbeat's `gnss_mismatch`, a usage receipt's
    /// `usage_exceeds_backhaul`, `usage_credit_short` or the penalty of its hotspot), sorted by
    /// proof id.
    pub flagged: Vec<(ProofId, Reason)>,
    /// Nodes that earn nothing this epoch, with why (caught this epoch, or `penalized` for an
    /// earlier one), sorted by node id.
    pub penalties: Vec<(NodeId, Reason)>,
    /// Each band's reach after this epoch (the registry carries them).
    pub bands: BTreeMap<u8, BandModel>,
    /// Per node, what it was caught at within the last `strike_window_epochs` (nodes with
    /// nothing left out).
    pub marks: Vec<(NodeId, Vec<Mark>)>,
    /// Per node with a new pair this epoch, its last level offset with each of its latest
    /// partners (see [`crate::links`]), most recent first; the registry keeps the others'.
    pub level_offsets: Vec<(NodeId, Vec<(NodeId, i32)>)>,
    /// Per node with a new pair this epoch, its latest pair offsets (see
    /// [`crate::links::Judgement::pair_offsets`]), most recent first; the registry keeps the others'.
    pub pair_offsets: Vec<(NodeId, Vec<(NodeId, i32)>)>,
    /// Per node that witnessed this epoch, its latest readings (beaconer, epoch, RSSI), most
    /// recent first (the constant-signal rule reads them across epochs); the registry keeps
    /// the others'.
    pub recent_levels: Vec<(NodeId, Vec<Level>)>,
    /// Usage counted, burned and paid for ([`crate::usage::settle`]); the ledger applies it.
    pub usage: UsageOutcome,
}

impl EpochOutcome {
    /// How many rejections per reason, for metrics.
    pub fn rejection_counts(&self) -> BTreeMap<Reason, u64> {
        let mut out = BTreeMap::new();
        for (_, r) in &self.rejections {
            *out.entry(*r).or_insert(0) += 1;
        }
        out
    }

    /// Whether `node` earns nothing this epoch.
    pub fn is_penalized(&self, node: &NodeId) -> bool {
        self.penalties
            .binary_search_by(|(n, _)| n.cmp(node))
            .is_ok()
    }
}

/// A session id, as the subscriber's client chose it.
pub type SessionId = [u8; 16];

/// One hotspot's usage in a closed epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotspotUsage {
    /// Bytes its sessions used this epoch (both directions).
    pub bytes: u64,
    /// Of them, the bytes its verified backhaul could carry: those priced.
    pub paid_bytes: u64,
    /// Data credits burned on it (what the usage pool pays it in proportion to).
    pub burned_dc: u64,
}

/// The usage part of an epoch's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageOutcome {
    /// Per hotspot with counted usage.
    pub hotspots: BTreeMap<NodeId, HotspotUsage>,
    /// Per subscriber, the credits burned at this close.
    pub burns: BTreeMap<SubscriberId, u64>,
    /// Per counted session, the totals (down, up) now counted.
    pub counted: Vec<(SessionId, u64, u64)>,
}

impl UsageOutcome {
    /// Credits burned at this close, in total.
    pub fn burned_dc(&self) -> u128 {
        self.burns.values().map(|b| u128::from(*b)).sum()
    }
}
