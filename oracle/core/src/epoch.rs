//! One epoch's accepted proofs and the stateful rules applied when it closes.
//!
//! The service (or the simulator) pushes the facts that [`crate::rules::Checker`] returned,
//! each with its [`Arrival`]: a sequence number that orders arrivals, and the oracle time it
//! arrived. Nothing is decided at push time except deduplication; [`EpochState::close`], after
//! the settle window, applies the rules that need several proofs:
//!
//! 1. **Late arrivals**: arrived after `end + settle` → `late_arrival`.
//! 2. **Beacons**: one per node; the first to arrive wins, the rest `beacon_duplicate`.
//! 3. **Witnesses**, each matched to its beacon by the beacon's proof id:
//!    no valid beacon with that id → `beacon_not_found`; the beaconer itself → `self_witness`.
//!    **Constant signal**: a node's latest readings (one per beaconer per epoch, kept across
//!    epochs, leaving out saturated readings and those below the band's reception edge) that
//!    number at least `constant_rssi_witnesses`, come from two or more beaconers and are all
//!    the same level, clear of the edge → all its witnesses `signal_implausible`.
//!    **Links** ([`crate::links::judge`]): one observation per (beaconer, witness) is judged against
//!    the band's reach and floor, learnt from the network's own reciprocal links. Then per
//!    beacon, by arrival: the same node again → `duplicate_witness`; closer than
//!    `min_witness_distance_m` → `too_close` (one site); weaker than the band's floor →
//!    `signal_implausible`; farther than twice the band's reach, or either end misplaced →
//!    `link_implausible`; a node without a valid beacon of its own → `no_reciprocity`; beyond
//!    `witness_limit` paid witnesses → `witness_limit`. Reciprocity is applied before the
//!    limit so that non-beaconing nodes never take an honest node's slot.
//!    **Sites and groups**: identities that witnessed each other (or were refused `too_close`)
//!    are one site; the paid links, counted in sites, form groups whose size the reward
//!    split reads (an isolated group shares a small pool, [`crate::rewards`]).
//! 4. **Receipts**: one per measurer per prover and direction; the first to arrive wins, the
//!    rest `duplicate_measurer`. A direction is rated by the lower median of its receipts'
//!    throughputs once `backhaul_min_measurers` distinct measurers reported. A measurer whose
//!    figure is below `measurer_floor_bps` of what the others saw (capped by its own rated
//!    capacity) disagrees; `measurer_strikes` disagreements within the last
//!    `strike_window_epochs` → `measurer_disagrees` (a mark per prover, direction and epoch:
//!    a measurer is judged only where three or more measured one direction, so a liar can be
//!    judged once an epoch or less).
//! 5. **Heartbeats**: one per sequence number (first arrival); uptime is the number of distinct
//!    heartbeat intervals of the epoch covered by a heartbeat's `sent_ms`.
//! 6. **Location trust**: the lower median of the trust multipliers of the epoch's GNSS fixes
//!    for the node's current assertion (a mismatch counts as 0), or the trust carried in the
//!    registry when the epoch had no fix.
//! 7. **Standing**: a node earns nothing this epoch (a penalty, in
//!    [`EpochOutcome::penalties`]) when it is misplaced (`links_implausible`), when within
//!    the last `strike_window_epochs` it claimed links of `link_strikes` distinct beaconers
//!    that are too far or contradicted, or in `link_strikes` epochs far links that came over
//!    the internet ([`crate::links::Judgement::relayed`]) (`links_implausible`), when it gathered
//!    `evidence_min` marks of evidence — refusals that only a cheater earns, a level offset
//!    against its partners above `max_link_asymmetry_decidb` (`rssi_inconsistent`: the
//!    median over `asymmetry_min_partners` partners or more, or for a node with fewer, over
//!    its last pairs in [`crate::links::PAIR_OFFSETS_MIN`] epochs or more, where its own report is the
//!    unusual one), a round trip to a partner above `max_round_trip_ms` (`links_relayed`) —
//!    named by the
//!    commonest, or as a disagreeing measurer. A penalty keeps the node on probation
//!    (`penalized`) for `penalty_epochs` after it.
//! 8. **Usage** ([`crate::usage`]): per session its highest-seq receipt of the epoch is
//!    counted; the bytes beyond the hotspot's verified backhaul are not paid
//!    (`usage_exceeds_backhaul`), the rest is priced and burned from its subscriber's credits
//!    (`usage_credit_short` when they fall short). Judged after standing: a hotspot that earns
//!    nothing this epoch burns nothing either.
//!
//! **Order.** Every result is a function of the set of `(fact, arrival)` pairs pushed: facts
//! are stored by proof id, a duplicate keeps the earlier arrival, and every "first to arrive"
//! rule sorts by `(arrival seq, proof id)`. Pushing the same arrivals in any order, any number
//! of times, gives the same outcome.

use std::collections::BTreeMap;

use wisp_protocol::msg::EpochSeed;
use wisp_protocol::units::{DeciDb, EpochNo, UnixMs};
use wisp_protocol::{NodeId, ProofId, Reason};

use crate::facts::{BeaconFact, GnssEvidence, HeartbeatFact, ReceiptFact, WitnessFact};
pub use crate::facts::{DirectionFacts, EpochOutcome, Level, LocationEvidence, Mark, NodeFacts};
use crate::usage::{SessionId, UsageFact};

mod close;

/// When a proof arrived: `seq` orders arrivals (ties are broken by proof id) and must grow
/// with `at_ms`; `at_ms` is the oracle's clock at arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Arrival {
    /// Arrival order.
    pub seq: u64,
    /// Oracle time of arrival, Unix ms.
    pub at_ms: UnixMs,
}

impl Arrival {
    /// An arrival.
    pub const fn new(seq: u64, at_ms: UnixMs) -> Arrival {
        Arrival { seq, at_ms }
    }
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Stored; judged at close.
    Queued,
    /// Already stored (same proof id); nothing changed, except that an earlier arrival
    /// replaces a later one.
    Duplicate,
    /// Stored, but it arrived after the settle window: it will be `late_arrival` at close.
    Late,
}

/// Why an epoch cannot close yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// The settle window has not passed.
    #[error("the epoch closes at {closes_at} (end + settle window)")]
    TooEarly {
        /// The earliest time `close` succeeds.
        closes_at: UnixMs,
    },
}

#[derive(Clone, Copy, Debug)]
struct StoredWitness {
    witness: NodeId,
    beacon_id: ProofId,
    beaconer: NodeId,
    rssi: DeciDb,
    band: u8,
    distance_m: u32,
    path_loss: DeciDb,
    lag_ms: i32,
}

#[derive(Clone, Copy, Debug)]
struct StoredHeartbeat {
    node: NodeId,
    seq: u64,
    sent_ms: UnixMs,
    asserted_ms: UnixMs,
    gnss: GnssEvidence,
}

/// The accepted proofs of one epoch, stored by proof id.
#[derive(Clone, Debug)]
pub struct EpochState {
    seed: EpochSeed,
    beacons: BTreeMap<ProofId, (Arrival, NodeId)>,
    witnesses: BTreeMap<ProofId, (Arrival, StoredWitness)>,
    receipts: BTreeMap<ProofId, (Arrival, ReceiptFact)>,
    heartbeats: BTreeMap<ProofId, (Arrival, StoredHeartbeat)>,
    /// Witnesses refused at ingest as physically impossible: (beaconer, witness).
    contradicted: BTreeMap<ProofId, (NodeId, NodeId)>,
    /// Witnesses refused at ingest as `too_close`: (beaconer, witness), one site.
    colocated: BTreeMap<ProofId, (NodeId, NodeId)>,
    /// Refusals only a dishonest node produces, per (proof, node it implicates).
    evidence: BTreeMap<(ProofId, NodeId), Reason>,
    /// Per session, its latest accepted usage receipt of the epoch (the highest seq: the
    /// ledger accepts a session's receipts only in increasing seq).
    usage: BTreeMap<SessionId, (Arrival, UsageFact)>,
}

/// Inserts or deduplicates; a duplicate keeps the earlier arrival.
fn store<T>(
    map: &mut BTreeMap<ProofId, (Arrival, T)>,
    id: ProofId,
    arrival: Arrival,
    value: T,
    closes_at: UnixMs,
) -> Push {
    match map.get_mut(&id) {
        Some((existing, _)) => {
            if arrival.seq < existing.seq {
                *existing = arrival;
            }
            Push::Duplicate
        }
        None => {
            map.insert(id, (arrival, value));
            if arrival.at_ms > closes_at {
                Push::Late
            } else {
                Push::Queued
            }
        }
    }
}

impl EpochState {
    /// An empty state for the epoch `seed` describes.
    pub fn new(seed: EpochSeed) -> EpochState {
        EpochState {
            seed,
            beacons: BTreeMap::new(),
            witnesses: BTreeMap::new(),
            receipts: BTreeMap::new(),
            heartbeats: BTreeMap::new(),
            contradicted: BTreeMap::new(),
            colocated: BTreeMap::new(),
            evidence: BTreeMap::new(),
            usage: BTreeMap::new(),
        }
    }

    /// The epoch's seed.
    pub fn seed(&self) -> &EpochSeed {
        &self.seed
    }

    /// The earliest oracle time at which [`EpochState::close`] succeeds: the epoch's end plus
    /// its settle window. Proofs arriving later are `late_arrival`.
    pub fn closes_at(&self) -> UnixMs {
        self.seed
            .end_ms()
            .saturating_add(u64::from(self.seed.params.settle_ms))
    }

    /// Proofs stored (all kinds, duplicates counted once).
    pub fn len(&self) -> usize {
        self.beacons.len()
            + self.witnesses.len()
            + self.receipts.len()
            + self.heartbeats.len()
            + self.usage.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn epoch_ok(&self, epoch: EpochNo) -> Result<(), Reason> {
        if epoch == self.seed.epoch {
            Ok(())
        } else {
            Err(Reason::WrongEpoch)
        }
    }

    /// Adds a checked beacon. `wrong_epoch` if it belongs to another epoch (not stored).
    pub fn push_beacon(&mut self, arrival: Arrival, fact: &BeaconFact) -> Result<Push, Reason> {
        self.epoch_ok(fact.epoch)?;
        let closes_at = self.closes_at();
        Ok(store(
            &mut self.beacons,
            fact.id,
            arrival,
            fact.node,
            closes_at,
        ))
    }

    /// Adds a checked witness. `wrong_epoch` if it belongs to another epoch (not stored).
    pub fn push_witness(&mut self, arrival: Arrival, fact: &WitnessFact) -> Result<Push, Reason> {
        self.epoch_ok(fact.epoch)?;
        let closes_at = self.closes_at();
        let stored = StoredWitness {
            witness: fact.witness,
            beacon_id: fact.beacon_id,
            beaconer: fact.beaconer,
            rssi: fact.rssi,
            band: fact.band,
            distance_m: fact.distance_m,
            path_loss: fact.path_loss,
            lag_ms: fact.lag_ms,
        };
        Ok(store(
            &mut self.witnesses,
            fact.id,
            arrival,
            stored,
            closes_at,
        ))
    }

    /// Records a witness of this epoch that the stateless rules refused as physically
    /// impossible (`rssi_too_strong`, `too_far`): the link it claims contradicts the two
    /// asserted places, which at close counts against both nodes ([`crate::links`]).
    pub fn push_contradiction(&mut self, id: ProofId, beaconer: NodeId, witness: NodeId) {
        self.contradicted.insert(id, (beaconer, witness));
    }

    /// Records a witness of this epoch refused at ingest as `too_close`: the two nodes are one
    /// site, which is paid as one hotspot (see `rewards`).
    pub fn push_colocated(&mut self, id: ProofId, beaconer: NodeId, witness: NodeId) {
        self.colocated.insert(id, (beaconer, witness));
    }

    /// Records a refusal of this epoch's proof `id` that only a dishonest `node` produces
    /// (see [`crate::rules::is_evidence`]); enough of them penalize the node at close.
    pub fn push_evidence(&mut self, id: ProofId, node: NodeId, reason: Reason) {
        self.evidence.insert((id, node), reason);
    }

    /// Adds a checked bandwidth receipt. `wrong_epoch` if it belongs to another epoch.
    pub fn push_receipt(&mut self, arrival: Arrival, fact: &ReceiptFact) -> Result<Push, Reason> {
        self.epoch_ok(fact.epoch)?;
        let closes_at = self.closes_at();
        Ok(store(
            &mut self.receipts,
            fact.id,
            arrival,
            *fact,
            closes_at,
        ))
    }

    /// Adds a checked heartbeat. `wrong_epoch` if it belongs to another epoch.
    pub fn push_heartbeat(
        &mut self,
        arrival: Arrival,
        fact: &HeartbeatFact,
    ) -> Result<Push, Reason> {
        self.epoch_ok(fact.epoch)?;
        let closes_at = self.closes_at();
        let stored = StoredHeartbeat {
            node: fact.node,
            seq: fact.seq,
            sent_ms: fact.sent_ms,
            asserted_ms: fact.asserted_ms,
            gnss: fact.gnss,
        };
        Ok(store(
            &mut self.heartbeats,
            fact.id,
            arrival,
            stored,
            closes_at,
        ))
    }

    /// Adds a usage receipt the ledger accepted ([`crate::usage::Ledger::check`]): it becomes
    /// its session's counted receipt of the epoch (the ledger accepts a session's receipts in
    /// increasing seq only). One that arrives after the settle window is not stored
    /// ([`Push::Late`]), so that it never becomes its session's latest.
    pub fn push_usage(&mut self, arrival: Arrival, fact: &UsageFact) -> Result<Push, Reason> {
        self.epoch_ok(fact.epoch)?;
        if arrival.at_ms > self.closes_at() {
            return Ok(Push::Late);
        }
        match self.usage.get(&fact.session) {
            Some((_, f)) if f.id == fact.id => Ok(Push::Duplicate),
            Some((_, f)) if f.seq > fact.seq => Ok(Push::Duplicate),
            _ => {
                self.usage.insert(fact.session, (arrival, *fact));
                Ok(Push::Queued)
            }
        }
    }

    /// The usage receipt counted so far for each session with one this epoch, by session id.
    pub fn usage(&self) -> impl Iterator<Item = &UsageFact> {
        self.usage.values().map(|(_, f)| f)
    }
}
