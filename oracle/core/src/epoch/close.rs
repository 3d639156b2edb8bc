//! The close of an epoch: the stateful rules that need all of its proofs (the parent module
//! documents them in order), and their helpers.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::msg::Direction;
use wisp_protocol::units::{DeciDb, EpochNo, UnixMs};
use wisp_protocol::{NodeId, ProofId, Reason};

use super::{
    Arrival, CloseError, DirectionFacts, EpochOutcome, EpochState, Level, LocationEvidence, Mark,
    NodeFacts, StoredHeartbeat, StoredWitness,
};
use crate::config::BPS;
use crate::facts::GnssEvidence;
use crate::links::{self, Observation};
use crate::registry::Registry;
use crate::usage::{Ledger, UsageFact};

/// One witness node's reading of a beaconer this epoch: (arrival seq, proof id, RSSI, band).
type Reading = (u64, ProofId, DeciDb, u8);

/// The measurers among `samples` (distinct measurers of one prover and direction, with their
/// median figures) whose figure is below `measurer_floor_bps` of what they should have seen:
/// the lower median of the other measurers' figures (at least two of them, so one liar among
/// them cannot set it), capped by the measurer's own rated capacity in the direction it sends
/// (a download test: the measurer's upload) or receives — an honest measurer on a slow link
/// sees less, never less than its link carries. Without a rated capacity nothing is judged.
fn disagreeing_measurers(
    registry: &Registry,
    direction: Direction,
    samples: &[(NodeId, u64)],
) -> Vec<NodeId> {
    let floor = u128::from(registry.rules().config().measurer_floor_bps);
    let mut out = Vec::new();
    if samples.len() < 3 {
        return out;
    }
    for (i, (m, figure)) in samples.iter().enumerate() {
        let Some(own) = registry.get(m).and_then(|r| match direction {
            Direction::Down => r.capacity.up_bps,
            Direction::Up => r.capacity.down_bps,
        }) else {
            continue;
        };
        let mut others: Vec<u64> = samples
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, f))| *f)
            .collect();
        let Some(seen) = lower_median(&mut others) else {
            continue;
        };
        let expected = seen.min(own);
        if u128::from(*figure) * u128::from(BPS) < u128::from(expected) * floor {
            out.push(*m);
        }
    }
    out
}

/// Readings at or above this (tenths of dBm) are left out of the constant-signal rule:
/// receivers saturate near −20 dBm and report their ceiling for every strong link.
const SATURATION_DECIDBM: i16 = -300;

/// Where reception ends in a band, tenths of dBm, for the constant-signal rule: 12 dB above the
/// band's floor (the floor is its weakest believable report less 6 dB), or −85 dBm before the
/// band has one.
fn reception_edge(registry: &Registry, band: u8) -> i16 {
    registry
        .bands()
        .get(&band)
        .and_then(|b| b.floor_decidbm)
        .map_or(DEFAULT_RECEPTION_EDGE_DECIDBM, |f| f.saturating_add(120))
}

/// The reception edge of a band that has no floor yet, tenths of dBm.
const DEFAULT_RECEPTION_EDGE_DECIDBM: i16 = -850;

/// How far above the reception edge a constant reading must be to count, tenths of dB.
const EDGE_CLEARANCE_DECIDB: i16 = 30;

/// Readings kept per node across epochs for the constant-signal rule.
const RECENT_LEVELS_KEPT: usize = 9;

/// The lower median of a non-empty slice (sorts it).
fn lower_median<T: Ord + Copy>(v: &mut [T]) -> Option<T> {
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

impl EpochState {
    /// Applies the stateful rules (see the module documentation) at oracle time `now_ms`,
    /// which must be at or after [`EpochState::closes_at`]. The state is not consumed, so a
    /// close can be repeated (it gives the same outcome).
    pub fn close(&self, registry: &Registry, now_ms: UnixMs) -> Result<EpochOutcome, CloseError> {
        self.close_with(registry, &Ledger::new(), now_ms)
    }

    /// [`EpochState::close`] with the ledger of data credits whose balances the usage burns
    /// from, and whose sessions' counted totals the usage is measured against
    /// ([`crate::usage::settle`]). `close` uses an empty ledger: nothing is burned.
    pub fn close_with(
        &self,
        registry: &Registry,
        ledger: &Ledger,
        now_ms: UnixMs,
    ) -> Result<EpochOutcome, CloseError> {
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
        // One reading per (witness node, beaconer): the earliest arrival's. With the node's
        // latest readings of other beaconers from earlier epochs, they make its recent levels.
        let mut readings: BTreeMap<NodeId, BTreeMap<NodeId, Reading>> = BTreeMap::new();
        for (id, arrival, w) in &matched {
            let per_beaconer = readings.entry(w.witness).or_default();
            let candidate = (arrival.seq, *id, w.rssi, w.band);
            per_beaconer
                .entry(w.beaconer)
                .and_modify(|e| {
                    if (candidate.0, candidate.1) < (e.0, e.1) {
                        *e = candidate;
                    }
                })
                .or_insert(candidate);
        }
        let min_constant = usize::from(cfg.constant_rssi_witnesses);
        let mut recent_levels: Vec<(NodeId, Vec<Level>)> = Vec::new();
        let mut constant: BTreeSet<NodeId> = BTreeSet::new();
        for (node, per_beaconer) in &readings {
            // A saturated front end reports its ceiling for every strong link, and links at the
            // edge of reception are only ever heard at the few levels just above it: neither is
            // evidence of anything.
            // The lowest level admitted is the commonest reading of a link that is usually
            // just below it, so a constant reading counts only clear of that edge.
            let edge = per_beaconer
                .values()
                .map(|(_, _, _, band)| reception_edge(registry, *band))
                .max()
                .unwrap_or(DEFAULT_RECEPTION_EDGE_DECIDBM);
            let mut latest: Vec<(NodeId, EpochNo, DeciDb)> = per_beaconer
                .iter()
                .filter(|(_, (_, _, rssi, band))| {
                    rssi.0 < SATURATION_DECIDBM && rssi.0 >= reception_edge(registry, *band)
                })
                .map(|(b, (_, _, rssi, _))| (*b, self.seed.epoch, *rssi))
                .collect();
            if let Some(rec) = registry.get(node) {
                latest.extend(&rec.recent_levels);
            }
            latest.truncate(RECENT_LEVELS_KEPT.max(min_constant));
            let beaconers: BTreeSet<NodeId> = latest.iter().map(|(b, _, _)| *b).collect();
            let mut values = latest.iter().map(|(_, _, rssi)| *rssi);
            if latest.len() >= min_constant
                && beaconers.len() >= 2
                && values.next().is_some_and(|first| {
                    first.0 >= edge.saturating_add(EDGE_CLEARANCE_DECIDB)
                        && values.all(|v| v == first)
                })
            {
                constant.insert(*node);
            }
            recent_levels.push((*node, latest));
        }
        // Nodes that witnessed nothing keep their levels in the registry.
        recent_levels.sort_unstable();
        // Links judged together ([`links`]): one observation per (beaconer, witness), the
        // earliest reading, in arrival order.
        let mut first_of_pair: BTreeMap<(NodeId, NodeId), (u64, ProofId, StoredWitness)> =
            BTreeMap::new();
        for (id, arrival, w) in &matched {
            if constant.contains(&w.witness) {
                continue;
            }
            let c = (arrival.seq, *id, *w);
            first_of_pair
                .entry((w.beaconer, w.witness))
                .and_modify(|e| {
                    if (c.0, c.1) < (e.0, e.1) {
                        *e = c;
                    }
                })
                .or_insert(c);
        }
        let mut ordered: Vec<&(u64, ProofId, StoredWitness)> = first_of_pair.values().collect();
        ordered.sort_unstable_by_key(|(seq, id, _)| (*seq, *id));
        let observations: Vec<Observation> = ordered
            .into_iter()
            .map(|(_, id, w)| Observation {
                id: *id,
                tx: w.beaconer,
                rx: w.witness,
                band: w.band,
                distance_m: w.distance_m,
                path_loss_decidb: w.path_loss.0,
                rssi_decidbm: w.rssi.0,
                lag_ms: w.lag_ms,
            })
            .collect();
        let contradicted: Vec<(NodeId, NodeId)> = self.contradicted.values().copied().collect();
        let judged = links::judge(&observations, &contradicted, registry.bands(), cfg);
        // A node whose place is not believed has no believable link.
        let misplaced = |n: &NodeId| judged.misplaced.contains(n);
        // Marks of this epoch (see [`Mark`]): (node, reason, key).
        let mut new_marks: Vec<(NodeId, Reason, [u8; 32])> = Vec::new();

        let mut by_beacon: BTreeMap<ProofId, Vec<(u64, ProofId, NodeId, u32)>> = BTreeMap::new();
        for (id, arrival, w) in matched {
            if constant.contains(&w.witness) {
                rejections.push((id, Reason::SignalImplausible));
                new_marks.push((w.witness, Reason::SignalImplausible, *id.as_bytes()));
            } else {
                by_beacon.entry(w.beacon_id).or_default().push((
                    arrival.seq,
                    id,
                    w.witness,
                    w.distance_m,
                ));
            }
        }
        let limit = usize::from(self.seed.params.witness_limit);
        let beaconed: BTreeSet<NodeId> = valid_beacons.values().copied().collect();
        let mut paid_links: Vec<(NodeId, NodeId)> = Vec::new();
        for (beacon_id, mut list) in by_beacon {
            let Some(beaconer) = valid_beacons.get(&beacon_id).copied() else {
                continue;
            };
            list.sort_unstable();
            let mut seen: BTreeSet<NodeId> = BTreeSet::new();
            let mut paid: Vec<NodeId> = Vec::new();
            for (_, id, witness, distance_m) in list {
                if !seen.insert(witness) {
                    rejections.push((id, Reason::DuplicateWitness));
                } else if distance_m < cfg.min_witness_distance_m {
                    // One site: witnessing it is witnessing itself.
                    rejections.push((id, Reason::TooClose));
                } else if judged.too_weak.contains(&id) {
                    rejections.push((id, Reason::SignalImplausible));
                    new_marks.push((witness, Reason::SignalImplausible, *id.as_bytes()));
                } else if judged.unpaid.contains(&id) || misplaced(&witness) || misplaced(&beaconer)
                {
                    rejections.push((id, Reason::LinkImplausible));
                } else if !beaconed.contains(&witness) {
                    rejections.push((id, Reason::NoReciprocity));
                } else if paid.len() >= limit {
                    rejections.push((id, Reason::WitnessLimit));
                } else {
                    paid.push(witness);
                }
            }
            let count = u16::try_from(paid.len()).unwrap_or(u16::MAX);
            nodes.entry(beaconer).or_default().beacon_witnesses = count;
            for witness in paid {
                nodes.entry(witness).or_default().witnessed.push(count);
                paid_links.push((beaconer, witness));
            }
        }
        // Sites: identities that witnessed each other closer than the minimum distance (the
        // stateless rule refuses those whose cells cannot be farther apart; the centres of
        // neighbouring cells are closer than that too).
        let site_pairs = self.colocated.values().copied().chain(
            observations
                .iter()
                .filter(|o| o.distance_m < cfg.min_witness_distance_m)
                .map(|o| (o.tx, o.rx)),
        );
        let sites = links::groups(site_pairs);
        for (node, site) in &sites {
            nodes.entry(*node).or_default().site = Some(*site);
        }
        // Groups of paid links, counted in sites: identities at one place are one member.
        let site_of = |n: NodeId| sites.get(&n).map_or(n, |(first, _)| *first);
        let site_groups = links::groups(paid_links.iter().map(|(a, b)| (site_of(*a), site_of(*b))));
        for (a, b) in &paid_links {
            for n in [a, b] {
                let size = site_groups.get(&site_of(*n)).map_or(1, |(_, size)| *size);
                nodes.entry(*n).or_default().group = size;
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
        // Disagreements, each a mark keyed by its epoch, prover and direction.
        let mut disagreements: Vec<(NodeId, [u8; 32])> = Vec::new();
        for ((prover, direction), mut list) in by_link {
            list.sort_unstable();
            let mut seen: BTreeSet<NodeId> = BTreeSet::new();
            let mut rates: Vec<u64> = Vec::new();
            let mut link_rtts: Vec<u32> = Vec::new();
            let mut samples: Vec<(NodeId, u64)> = Vec::new();
            for (_, id, measurer, median, rtt) in list {
                if seen.insert(measurer) {
                    rates.push(median);
                    link_rtts.push(rtt);
                    samples.push((measurer, median));
                } else {
                    rejections.push((id, Reason::DuplicateMeasurer));
                }
            }
            for m in disagreeing_measurers(registry, direction, &samples) {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&self.seed.epoch.to_le_bytes());
                key[8] = match direction {
                    Direction::Down => 0,
                    Direction::Up => 1,
                };
                key[9..].copy_from_slice(&prover.as_bytes()[..23]);
                disagreements.push((m, key));
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

        // Standing: who earns nothing this epoch.
        let mut penalties: BTreeMap<NodeId, Reason> = judged
            .misplaced
            .iter()
            .map(|n| (*n, Reason::LinksImplausible))
            .collect();
        // Marks within the window: the registry's, then this epoch's.
        let epoch = self.seed.epoch;
        let oldest = epoch.saturating_sub(u64::from(cfg.strike_window_epochs).saturating_sub(1));
        let mut marks: BTreeMap<NodeId, BTreeMap<(Reason, [u8; 32]), EpochNo>> = BTreeMap::new();
        for rec in registry.iter().filter(|r| !r.marks.is_empty()) {
            let m = marks.entry(rec.id).or_default();
            for mark in rec.marks.iter().filter(|m| m.epoch >= oldest) {
                m.insert((mark.reason, mark.key), mark.epoch);
            }
        }
        for (rx, txs) in &judged.far_heard {
            let m = marks.entry(*rx).or_default();
            for tx in txs {
                m.insert((Reason::LinksImplausible, *tx.as_bytes()), epoch);
            }
        }
        for ((id, node), reason) in &self.evidence {
            marks
                .entry(*node)
                .or_default()
                .insert((*reason, *id.as_bytes()), epoch);
        }
        let mut epoch_key = [0u8; 32];
        epoch_key[..8].copy_from_slice(&epoch.to_le_bytes());
        let mut level_offsets: Vec<(NodeId, Vec<(NodeId, i32)>)> = Vec::new();
        let mut asymmetric = |node: NodeId, mut latest: Vec<(NodeId, i32)>| {
            // The latest offset with each partner, most recent first.
            if let Some(rec) = registry.get(&node) {
                let fresh: BTreeSet<NodeId> = latest.iter().map(|(p, _)| *p).collect();
                latest.extend(rec.level_offsets.iter().filter(|(p, _)| !fresh.contains(p)));
            }
            latest.truncate(links::LEVEL_OFFSETS_KEPT);
            let mut sorted: Vec<i32> = latest.iter().map(|(_, d)| *d).collect();
            sorted.sort_unstable();
            let loud = sorted.len() >= usize::from(cfg.asymmetry_min_partners)
                && sorted[(sorted.len() - 1) / 2] > i32::from(cfg.max_link_asymmetry_decidb);
            level_offsets.push((node, latest));
            loud
        };
        for (node, offsets) in &judged.level_offsets {
            if asymmetric(*node, offsets.clone()) {
                new_marks.push((*node, Reason::RssiInconsistent, epoch_key));
            }
        }
        // Nodes without a new pair keep their offsets in the registry.
        level_offsets.sort_unstable();
        // A node with too few partners for that median: its pair offsets over the epochs,
        // counted only where its own report is the unusual one
        // ([`links::Judgement::pair_offsets`]).
        let partners_of = |node: &NodeId| {
            level_offsets
                .binary_search_by(|(n, _)| n.cmp(node))
                .ok()
                .map(|i| level_offsets[i].1.len())
                .or_else(|| registry.get(node).map(|r| r.level_offsets.len()))
                .unwrap_or(0)
        };
        let mut pair_offsets: Vec<(NodeId, Vec<(NodeId, i32)>)> = Vec::new();
        for (node, fresh) in &judged.pair_offsets {
            let mut latest = fresh.clone();
            if let Some(rec) = registry.get(node) {
                latest.extend(rec.pair_offsets.iter().copied());
            }
            latest.truncate(links::PAIR_OFFSETS_KEPT);
            let mut sorted: Vec<i32> = latest.iter().map(|(_, d)| *d).collect();
            sorted.sort_unstable();
            if partners_of(node) < usize::from(cfg.asymmetry_min_partners)
                && sorted.len() >= links::PAIR_OFFSETS_MIN
                && sorted[(sorted.len() - 1) / 2] > i32::from(cfg.max_link_asymmetry_decidb)
            {
                new_marks.push((*node, Reason::RssiInconsistent, epoch_key));
            }
            pair_offsets.push((*node, latest));
        }
        // Witnesses of far beacons that came over the internet ([`links::Judgement::relayed`]):
        // one mark per beaconer and epoch.
        for (rx, txs) in &judged.relayed {
            for tx in txs.iter().filter(|tx| !registry.is_penalized(tx, epoch)) {
                let mut key = *tx.as_bytes();
                key[24..].copy_from_slice(&epoch.to_le_bytes());
                new_marks.push((*rx, Reason::LinksImplausible, key));
            }
        }
        for (node, partners) in &judged.delayed {
            for p in partners {
                new_marks.push((*node, Reason::LinksRelayed, *p.as_bytes()));
            }
        }
        for (node, key) in &disagreements {
            new_marks.push((*node, Reason::MeasurerDisagrees, *key));
        }
        for (node, reason, key) in new_marks {
            marks.entry(node).or_default().insert((reason, key), epoch);
        }
        let keep = 4 * usize::from(
            cfg.link_strikes
                .max(cfg.evidence_min)
                .max(cfg.measurer_strikes),
        );
        let marks: Vec<(NodeId, Vec<Mark>)> = marks
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(node, m)| {
                let mut v: Vec<Mark> = m
                    .into_iter()
                    .map(|((reason, key), epoch)| Mark { epoch, reason, key })
                    .collect();
                // The most recent first, at most `keep`.
                v.sort_unstable_by(|a, b| b.cmp(a));
                v.truncate(keep);
                (node, v)
            })
            .collect();
        // A far link whose beaconer is misplaced now, or on probation for a penalty, is that
        // node's lie (its place was false then, or it is a cheater still): it does not count
        // against the witness that told the truth about what it heard.
        let blamed = |key: &[u8; 32]| {
            let tx = NodeId(*key);
            judged.misplaced.contains(&tx) || registry.is_penalized(&tx, epoch)
        };
        for (node, m) in &marks {
            let far = m
                .iter()
                .filter(|x| x.reason == Reason::LinksImplausible && !blamed(&x.key))
                .count();
            if far >= usize::from(cfg.link_strikes) {
                penalties.entry(*node).or_insert(Reason::LinksImplausible);
            }
            let mut evidence: BTreeMap<Reason, usize> = BTreeMap::new();
            for x in m.iter().filter(|x| {
                !matches!(
                    x.reason,
                    Reason::LinksImplausible | Reason::MeasurerDisagrees
                )
            }) {
                *evidence.entry(x.reason).or_default() += 1;
            }
            let total: usize = evidence.values().sum();
            // The most frequent reason (the lowest code among equals) names the penalty.
            if total >= usize::from(cfg.evidence_min)
                && let Some((reason, _)) = evidence
                    .iter()
                    .max_by_key(|(r, c)| (**c, std::cmp::Reverse(**r)))
            {
                penalties.entry(*node).or_insert(*reason);
            }
            let disagreed = m
                .iter()
                .filter(|x| x.reason == Reason::MeasurerDisagrees)
                .count();
            if disagreed >= usize::from(cfg.measurer_strikes) {
                penalties.entry(*node).or_insert(Reason::MeasurerDisagrees);
            }
        }
        for rec in registry.iter() {
            if rec.is_penalized_in(self.seed.epoch) {
                penalties.entry(rec.id).or_insert(Reason::Penalized);
            }
        }

        // Usage, after standing: a hotspot that earns nothing burns nothing.
        let counted: Vec<UsageFact> = self.usage().copied().collect();
        let earns = |h: &NodeId| -> Result<(), Reason> {
            if let Some(r) = penalties.get(h) {
                return Err(*r);
            }
            crate::rules::Checker::known(registry, h).map(|_| ())
        };
        let rated_bps = |h: &NodeId| {
            nodes.get(h).map_or((None, None), |f| {
                (f.down.map(|d| d.median_bps), f.up.map(|d| d.median_bps))
            })
        };
        let (usage, usage_flags) = crate::usage::settle(
            &counted,
            ledger,
            rated_bps,
            earns,
            registry.rules(),
            self.seed.duration_ms,
        );
        flagged.extend(usage_flags);

        rejections.sort_unstable();
        flagged.sort_unstable();
        Ok(EpochOutcome {
            epoch: self.seed.epoch,
            nodes,
            rejections,
            flagged,
            penalties: penalties.into_iter().collect(),
            bands: judged.bands,
            marks,
            level_offsets,
            pair_offsets,
            recent_levels,
            usage,
        })
    }
}
