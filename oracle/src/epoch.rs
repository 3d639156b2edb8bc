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
//!    no valid beacon with that id → `beacon_not_found`; the beaconer itself → `self_witness`;
//!    a node whose witnesses (one per beacon) number at least `constant_rssi_witnesses` and all
//!    carry the same RSSI → all of them `signal_implausible`; then per beacon, by arrival: the
//!    same node again → `duplicate_witness`; a node without a valid beacon of its own →
//!    `no_reciprocity`; beyond `witness_limit` paid witnesses → `witness_limit`. Reciprocity is
//!    applied before the limit so that non-beaconing nodes never take an honest node's slot.
//! 4. **Receipts**: one per measurer per prover and direction; the first to arrive wins, the
//!    rest `duplicate_measurer`. A direction is rated by the lower median of its receipts'
//!    throughputs once `backhaul_min_measurers` distinct measurers reported.
//! 5. **Heartbeats**: one per sequence number (first arrival); uptime is the number of distinct
//!    heartbeat intervals of the epoch covered by a heartbeat's `sent_ms`.
//! 6. **Location trust**: the lower median of the trust multipliers of the epoch's GNSS fixes
//!    for the node's current assertion (a mismatch counts as 0), or the trust carried in the
//!    registry when the epoch had no fix.
//!
//! **Order.** Every result is a function of the set of `(fact, arrival)` pairs pushed: facts
//! are stored by proof id, a duplicate keeps the earlier arrival, and every "first to arrive"
//! rule sorts by `(arrival seq, proof id)`. Pushing the same arrivals in any order, any number
//! of times, gives the same outcome.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::msg::{Direction, EpochSeed};
use wisp_protocol::units::{DeciDb, EpochNo, UnixMs};
use wisp_protocol::{NodeId, ProofId, Reason};

use crate::config::BPS;
use crate::registry::Registry;
use crate::rules::{BeaconFact, GnssEvidence, HeartbeatFact, ReceiptFact, WitnessFact};

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
}

/// The result of closing an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochOutcome {
    /// The epoch.
    pub epoch: EpochNo,
    /// Per node, in id order: every node that pushed or was named by a counted proof.
    pub nodes: BTreeMap<NodeId, NodeFacts>,
    /// Proofs refused by the stateful rules, sorted by proof id. Each proof appears at most
    /// once; pushed proofs not listed here were counted.
    pub rejections: Vec<(ProofId, Reason)>,
    /// Proofs counted but flagged (a heartbeat's `gnss_mismatch`), sorted by proof id.
    pub flagged: Vec<(ProofId, Reason)>,
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
}

#[derive(Clone, Copy, Debug)]
struct StoredWitness {
    witness: NodeId,
    beacon_id: ProofId,
    rssi: DeciDb,
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

/// The lower median of a non-empty slice (sorts it).
fn lower_median<T: Ord + Copy>(v: &mut [T]) -> Option<T> {
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
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
        self.beacons.len() + self.witnesses.len() + self.receipts.len() + self.heartbeats.len()
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
            rssi: fact.rssi,
        };
        Ok(store(
            &mut self.witnesses,
            fact.id,
            arrival,
            stored,
            closes_at,
        ))
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

    /// Applies the stateful rules (see the module documentation) at oracle time `now_ms`,
    /// which must be at or after [`EpochState::closes_at`]. The state is not consumed, so a
    /// close can be repeated (it gives the same outcome).
    pub fn close(&self, registry: &Registry, now_ms: UnixMs) -> Result<EpochOutcome, CloseError> {
        let closes_at = self.closes_at();
        if now_ms < closes_at {
            return Err(CloseError::TooEarly { closes_at });
        }
        let cfg = registry.rules().config();
        let on_time = |a: &Arrival| a.at_ms <= closes_at;
        let mut rejections: Vec<(ProofId, Reason)> = Vec::new();
        let mut flagged: Vec<(ProofId, Reason)> = Vec::new();
        let mut nodes: BTreeMap<NodeId, NodeFacts> = BTreeMap::new();

        // Beacons: the first valid arrival per node wins.
        let mut by_node: BTreeMap<NodeId, Vec<(u64, ProofId)>> = BTreeMap::new();
        for (id, (arrival, node)) in &self.beacons {
            if on_time(arrival) {
                by_node.entry(*node).or_default().push((arrival.seq, *id));
            } else {
                rejections.push((*id, Reason::LateArrival));
            }
        }
        let mut valid_beacons: BTreeMap<ProofId, NodeId> = BTreeMap::new();
        for (node, mut list) in by_node {
            list.sort_unstable();
            let mut it = list.into_iter();
            if let Some((_, first)) = it.next() {
                valid_beacons.insert(first, node);
                nodes.entry(node).or_default().beacon = Some(first);
            }
            rejections.extend(it.map(|(_, id)| (id, Reason::BeaconDuplicate)));
        }

        // Witnesses: match, then the constant-signal rule per witness node, then per beacon.
        let mut matched: Vec<(ProofId, Arrival, StoredWitness)> = Vec::new();
        for (id, (arrival, w)) in &self.witnesses {
            if !on_time(arrival) {
                rejections.push((*id, Reason::LateArrival));
                continue;
            }
            match valid_beacons.get(&w.beacon_id) {
                None => rejections.push((*id, Reason::BeaconNotFound)),
                Some(beaconer) if *beaconer == w.witness => {
                    rejections.push((*id, Reason::SelfWitness));
                }
                Some(_) => matched.push((*id, *arrival, *w)),
            }
        }
        // One reading per (witness node, beacon): the earliest arrival's.
        let mut readings: BTreeMap<NodeId, BTreeMap<ProofId, (u64, ProofId, DeciDb)>> =
            BTreeMap::new();
        for (id, arrival, w) in &matched {
            let per_beacon = readings.entry(w.witness).or_default();
            let candidate = (arrival.seq, *id, w.rssi);
            per_beacon
                .entry(w.beacon_id)
                .and_modify(|e| {
                    if (candidate.0, candidate.1) < (e.0, e.1) {
                        *e = candidate;
                    }
                })
                .or_insert(candidate);
        }
        let min_constant = usize::from(cfg.constant_rssi_witnesses);
        let constant: BTreeSet<NodeId> = readings
            .iter()
            .filter(|(_, per_beacon)| {
                let mut values = per_beacon.values().map(|(_, _, rssi)| *rssi);
                per_beacon.len() >= min_constant
                    && values
                        .next()
                        .is_some_and(|first| values.all(|v| v == first))
            })
            .map(|(node, _)| *node)
            .collect();
        let mut by_beacon: BTreeMap<ProofId, Vec<(u64, ProofId, NodeId)>> = BTreeMap::new();
        for (id, arrival, w) in matched {
            if constant.contains(&w.witness) {
                rejections.push((id, Reason::SignalImplausible));
            } else {
                by_beacon
                    .entry(w.beacon_id)
                    .or_default()
                    .push((arrival.seq, id, w.witness));
            }
        }
        let limit = usize::from(self.seed.params.witness_limit);
        let beaconed: BTreeSet<NodeId> = valid_beacons.values().copied().collect();
        for (beacon_id, mut list) in by_beacon {
            list.sort_unstable();
            let mut seen: BTreeSet<NodeId> = BTreeSet::new();
            let mut paid: Vec<NodeId> = Vec::new();
            for (_, id, witness) in list {
                if !seen.insert(witness) {
                    rejections.push((id, Reason::DuplicateWitness));
                } else if !beaconed.contains(&witness) {
                    rejections.push((id, Reason::NoReciprocity));
                } else if paid.len() >= limit {
                    rejections.push((id, Reason::WitnessLimit));
                } else {
                    paid.push(witness);
                }
            }
            let count = u16::try_from(paid.len()).unwrap_or(u16::MAX);
            if let Some(beaconer) = valid_beacons.get(&beacon_id) {
                nodes.entry(*beaconer).or_default().beacon_witnesses = count;
            }
            for witness in paid {
                nodes.entry(witness).or_default().witnessed.push(count);
            }
        }

        // Receipts: distinct measurers per prover and direction.
        type Sample = (u64, ProofId, NodeId, u64, u32);
        let mut by_link: BTreeMap<(NodeId, Direction), Vec<Sample>> = BTreeMap::new();
        for (id, (arrival, r)) in &self.receipts {
            if on_time(arrival) {
                by_link.entry((r.prover, r.direction)).or_default().push((
                    arrival.seq,
                    *id,
                    r.measurer,
                    r.median_bps,
                    r.rtt_idle_us,
                ));
            } else {
                rejections.push((*id, Reason::LateArrival));
            }
        }
        let min_measurers = usize::from(cfg.backhaul_min_measurers);
        let mut rtts: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for ((prover, direction), mut list) in by_link {
            list.sort_unstable();
            let mut seen: BTreeSet<NodeId> = BTreeSet::new();
            let mut rates: Vec<u64> = Vec::new();
            let mut link_rtts: Vec<u32> = Vec::new();
            for (_, id, measurer, median, rtt) in list {
                if seen.insert(measurer) {
                    rates.push(median);
                    link_rtts.push(rtt);
                } else {
                    rejections.push((id, Reason::DuplicateMeasurer));
                }
            }
            if rates.len() < min_measurers {
                continue;
            }
            let facts = DirectionFacts {
                median_bps: lower_median(&mut rates).unwrap_or(0),
                measurers: u16::try_from(rates.len()).unwrap_or(u16::MAX),
            };
            let entry = nodes.entry(prover).or_default();
            match direction {
                Direction::Down => entry.down = Some(facts),
                Direction::Up => entry.up = Some(facts),
            }
            rtts.entry(prover).or_default().extend(link_rtts);
        }
        for (node, mut list) in rtts {
            nodes.entry(node).or_default().rtt_idle_us = lower_median(&mut list);
        }

        // Heartbeats: one per sequence number, uptime by covered intervals.
        let interval = u64::from(self.seed.params.heartbeat_interval_ms).max(1);
        let expected = self.seed.duration_ms.div_ceil(interval).max(1);
        let expected_u32 = u32::try_from(expected).unwrap_or(u32::MAX);
        type Beat = (u64, ProofId, StoredHeartbeat);
        let mut beats: BTreeMap<NodeId, Vec<Beat>> = BTreeMap::new();
        for (id, (arrival, h)) in &self.heartbeats {
            if on_time(arrival) {
                beats
                    .entry(h.node)
                    .or_default()
                    .push((arrival.seq, *id, *h));
            } else {
                rejections.push((*id, Reason::LateArrival));
            }
        }
        let mut evidence: BTreeMap<NodeId, Vec<u16>> = BTreeMap::new();
        for (node, mut list) in beats {
            list.sort_unstable_by_key(|a| (a.0, a.1));
            let asserted_ms = registry.get(&node).map(|r| r.asserted_ms);
            let mut seqs: BTreeSet<u64> = BTreeSet::new();
            let mut slots: BTreeSet<u64> = BTreeSet::new();
            let mut trust: Vec<u16> = Vec::new();
            for (_, id, h) in list {
                if !seqs.insert(h.seq) {
                    rejections.push((id, Reason::HeartbeatReplay));
                    continue;
                }
                let slot =
                    (h.sent_ms.saturating_sub(self.seed.start_ms) / interval).min(expected - 1);
                slots.insert(slot);
                let current = Some(h.asserted_ms) == asserted_ms;
                match h.gnss {
                    GnssEvidence::NoFix => {}
                    GnssEvidence::Within { trust_bps, .. } => {
                        if current {
                            trust.push(trust_bps);
                        }
                    }
                    GnssEvidence::Mismatch { .. } => {
                        flagged.push((id, Reason::GnssMismatch));
                        if current {
                            trust.push(0);
                        }
                    }
                }
            }
            let covered = u32::try_from(slots.len()).unwrap_or(u32::MAX);
            let entry = nodes.entry(node).or_default();
            entry.heartbeats = covered;
            entry.uptime_eligible = u64::from(covered) * u64::from(BPS)
                >= expected * u64::from(cfg.uptime_min_share_bps);
            if !trust.is_empty() {
                evidence.insert(node, trust);
            }
        }

        // Location trust for every node with facts.
        for (node, facts) in &mut nodes {
            facts.expected_heartbeats = expected_u32;
            facts.witnessed.sort_unstable();
            let Some(rec) = registry.get(node) else {
                facts.location_trust_bps = 0;
                continue;
            };
            match evidence.get_mut(node).and_then(|t| lower_median(t)) {
                Some(trust_bps) => {
                    facts.location_trust_bps = trust_bps;
                    facts.location_evidence = Some(LocationEvidence {
                        asserted_ms: rec.asserted_ms,
                        trust_bps,
                    });
                }
                None => facts.location_trust_bps = registry.carried_trust_bps(rec),
            }
        }

        rejections.sort_unstable();
        flagged.sort_unstable();
        Ok(EpochOutcome {
            epoch: self.seed.epoch,
            nodes,
            rejections,
            flagged,
        })
    }
}
