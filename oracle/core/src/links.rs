//! The radio links of one epoch, judged together at its close.
//!
//! Per proof, a witness can only be held to physical upper bounds (free space, the link
//! budget), which an honest link always meets — and so does a cheater who reports values under
//! them. Taken together, the links of an epoch show what honest links look like in this
//! network, per frequency class, and what a lie cannot hide:
//!
//! - **The network's reach.** Links heard both ways in the epoch cannot be relays (the far end
//!   would have to hear the relay too); the 99th percentile of their distances, per band, is
//!   how far this network's radios reach, carried from epoch to epoch. Only links typical of
//!   both their ends count ([`TYPICAL_FACTOR`]): a liar's links, all far longer than its
//!   partners' others, cannot set the reach even in a network small enough for them to be
//!   more than 1 % of its links. A link more than
//!   [`PAY_FACTOR`] times that is not paid (`link_implausible`), and one more than
//!   [`FAR_FACTOR`] times that is implausible whatever its RSSI: a beacon relayed from afar,
//!   or a false location, with an RSSI forged to look right. (A propagation model fitted
//!   to the reports cannot do this job: only links above the receivers' sensitivity are ever
//!   seen, so its far end is biased towards strong links exactly where lies live.)
//! - **Who lies.** An implausible link (or one refused at ingest as `rssi_too_strong` or
//!   `too_far`) implicates both ends. First, a node heard both ways, over such links, by at
//!   least `link_min_partners` distinct partners that are at least a third of its partners is
//!   `links_implausible`: its asserted place is false (its real neighbours hear it and it hears
//!   them, all from farther than it says; a relay's far links are one-way, since the far end
//!   never hears the relay). Nodes are judged in order of their share of bad partners, and a
//!   link explained by a node already judged no longer counts against its other end: the
//!   honest neighbours of several liars keep their place. A node contradicted both ways by
//!   two partners or more, a third of its partners, but too few to be misplaced (a liar in its
//!   first epochs) is in doubt: its links are no witness's word either, so the honest
//!   neighbour of two cheaters just started is not blamed for hearing both. Then the links
//!   those nodes explain are set aside, and what is left is each witness's word ([`Judgement::far_heard`]): the
//!   beaconers it claims to have heard from afar. A relay brings in beacons of ever other
//!   nodes, and the epoch close counts them over a window of epochs; the honest neighbour of a
//!   liar has the one implausible partner, the liar, again and again; the beaconer a relay
//!   "heard" is not blamed at all.
//! - **The network's floor.** The weakest signal this network's receivers report, per band:
//!   the 2nd percentile of the RSSI reported over links heard both ways by nodes in groups of
//!   at least `trusted_cluster_min` (so neither relays nor rings set it) less
//!   [`FLOOR_MARGIN_DECIDB`], carried from epoch to epoch. A report below it is `signal_implausible`: no radio here decodes so
//!   weak a signal, so it was made up (a ring that forges the mean level of the distance it
//!   claims, where real links are too weak to be heard at all).
//! - **Reciprocity of levels.** For a pair heard both ways, gains and distance cancel in the
//!   difference of the two path losses, leaving fading (and transmit-power errors, a few dB).
//!   A node whose median difference over its last partners (at least
//!   `asymmetry_min_partners`, the latest difference with each, kept across epochs) says it
//!   hears them more than `max_link_asymmetry_decidb` louder than they hear it is
//!   `rssi_inconsistent` for the epoch: it inflates what it reports. One liar among its
//!   partners cannot make an honest node look so. Beacons heard by several witnesses add
//!   offsets of their own: each witness's path loss, with distance taken out by a typical
//!   exponent, against the median of the beacon's witnesses within half the band's reach (the
//!   transmitter is the same for all of them; farther out, only links that fade up are heard,
//!   which would bias the comparison). One such epoch is a mark; the epoch close penalizes marks that repeat.
//!   A node with fewer partners than the median needs (a sparse area's pairs) is judged on its
//!   pairs over the epochs instead ([`Judgement::pair_offsets`]); a pair alone cannot tell
//!   a witness that reports its partner too loud from a partner that reports it too weak, or
//!   claims a gain it does not have, except by which report is unusual for a link of its
//!   length, so only a loud report that is itself unusual counts.
//! - **Far links that came over the internet.** A far beacon that only the witness reports
//!   (the beaconer never heard it back) is a relayed one if the beaconer's place is
//!   corroborated by a plausible link heard both ways: no false place on the beaconer's side
//!   explains it ([`Judgement::relayed`]). Lateness alone does not say so: the beaconer signs
//!   the send time, so a liar next to an honest witness could make its beacons look late. A relay in a sparse area has one far beaconer to relay, so the
//!   epoch close counts these per epoch.
//! - **Reciprocity of time.** For a pair heard both ways, the two lags (receive time minus send
//!   time) add up to the two clocks' offsets, which cancel, plus twice the propagation time,
//!   microseconds: nothing, for radio. A node whose lags with a partner add up to more than
//!   `max_round_trip_ms`, with at least half of its partners heard both ways, has a
//!   `links_relayed` mark per such partner (marks, as above, counted per distinct partner):
//!   its beacons and its partners' travel over the internet, as a ring's do. The honest
//!   neighbour of a relay has that one slow partner, among many.
//!
//! Everything here is a pure function of the observations, sorted by the caller.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::{NodeId, ProofId};

use crate::config::RulesConfig;

/// A link farther than this multiple of the band's reach (the 99th percentile of its links
/// heard both ways) is implausible: evidence against whoever it implicates.
pub const FAR_FACTOR: u64 = 3;

/// A link farther than this multiple of the band's reach is not paid (`link_implausible`),
/// though it is no evidence yet: an honest link that long is rare, but not unheard of.
pub const PAY_FACTOR: u64 = 2;

/// A link heard both ways sets its band's reach only if it is at most this multiple of the
/// typical (median) both-way link of each of its ends. A false location makes every link of
/// the liar far longer than its partners' other links; in a small network those links are
/// more than the 1 % the 99th percentile leaves out, and would set the reach themselves. An
/// honest long link is long for both ends' other links too (a sparse area), and stays.
pub const TYPICAL_FACTOR: u64 = 4;

/// Links heard both ways a band needs before its reach is measured.
const MIN_RECIPROCAL_FOR_REACH: usize = 30;

/// Level offsets kept per node across epochs, one per partner (the latest): enough for a
/// median that neither one fade nor one lying partner can move.
pub const LEVEL_OFFSETS_KEPT: usize = 9;

/// The links of about the same length whose median path loss is what a link of that length
/// typically reports (see [`Judgement::pair_offsets`]).
const TYPICAL_NEIGHBOURS: usize = 31;

/// Pair offsets kept per node across epochs (see [`Judgement::pair_offsets`]), the latest
/// first, one per partner and epoch.
pub const PAIR_OFFSETS_KEPT: usize = 8;

/// Pair offsets a node with too few partners for the median of its level offsets needs before
/// their median can make it `rssi_inconsistent`: a pair heard both ways in four epochs, whose
/// fading differs each time (three of the four must be loud).
pub const PAIR_OFFSETS_MIN: usize = 4;

/// The path-loss exponent that takes distance out of co-witnesses' levels (suburban radio,
/// between free space's 2 and the 3.5 of dense cities: an error of ±1 moves a witness twice as
/// far as another by 3 dB).
const NORMALISING_EXPONENT: f64 = 3.0;

/// Reports a band needs before its floor is measured.
const MIN_REPORTS_FOR_FLOOR: usize = 200;

/// Below the 2nd percentile of a band's reported RSSI, how much weaker a report may be before
/// no radio of the network could have decoded it, tenths of dB. Generous: receivers differ by
/// a few dB in sensitivity.
pub const FLOOR_MARGIN_DECIDB: i16 = 60;

/// The frequency class of a band, so that links are compared only with links of similar
/// propagation: sub-GHz, 2.4 GHz, 5 GHz, 6 GHz, 60 GHz, or other (by GHz).
pub fn band_class(freq_khz: u32) -> u8 {
    match freq_khz {
        0..1_000_000 => 0,
        2_300_000..2_500_000 => 1,
        5_150_000..5_925_000 => 2,
        5_925_000..7_125_000 => 3,
        57_000_000..71_000_000 => 4,
        f => 10u8.saturating_add(u8::try_from(f / 1_000_000).unwrap_or(u8::MAX - 10)),
    }
}

/// One witnessed link: `rx` heard `tx`'s beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The witness proof.
    pub id: ProofId,
    /// The beaconer.
    pub tx: NodeId,
    /// The witness.
    pub rx: NodeId,
    /// Band class ([`band_class`]).
    pub band: u8,
    /// Distance of the two asserted cells' centres, metres.
    pub distance_m: u32,
    /// The path loss the report implies, tenths of dB.
    pub path_loss_decidb: i16,
    /// The reported RSSI, tenths of dBm.
    pub rssi_decidbm: i16,
    /// Receive time minus send time, milliseconds.
    pub lag_ms: i32,
}

/// What the oracle knows of one band's links, carried from epoch to epoch: the last reach and
/// floor measured (an epoch with too few links keeps the previous ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BandModel {
    /// The reach: 99th percentile of the distances of links heard both ways, metres.
    pub reach_m: Option<u32>,
    /// The floor: the weakest believable report, tenths of dBm.
    pub floor_decidbm: Option<i16>,
}

/// The judgement of an epoch's links.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Judgement {
    /// Witnesses (by proof id) whose link is implausible (beyond [`FAR_FACTOR`] times the
    /// reach).
    pub implausible: BTreeSet<ProofId>,
    /// Witnesses (by proof id) whose link is too long to be paid (beyond [`PAY_FACTOR`] times
    /// the reach; the implausible ones among them).
    pub unpaid: BTreeSet<ProofId>,
    /// Witnesses (by proof id) reporting a signal below the band's floor.
    pub too_weak: BTreeSet<ProofId>,
    /// Nodes whose asserted place the links contradict (`links_implausible`).
    pub misplaced: BTreeSet<NodeId>,
    /// Per node, for each partner heard both ways: how much louder the node reports the
    /// partner than the partner reports the node, tenths of dB (the epoch close weighs these
    /// with the node's earlier ones, one per partner).
    pub level_offsets: BTreeMap<NodeId, Vec<(NodeId, i32)>>,
    /// Per node slow with at least half of its partners heard both ways: those slow partners
    /// (each a `links_relayed` mark).
    pub delayed: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Per node not flagged: the beaconers it claims to have heard over implausible links
    /// that no false location explains (those of [`Judgement::relayed`] left out).
    pub far_heard: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Per node not flagged: the beaconers it claims to have heard over implausible links
    /// that only it reports (the beaconer did not hear it back in the epoch) from a beaconer
    /// whose own place a plausible link heard both ways corroborates. Nothing on the
    /// beaconer's side explains such a link: the witness relays (the epoch close counts these
    /// per epoch, not per beaconer, since a relay in a sparse area has one far beaconer to
    /// relay, again and again).
    pub relayed: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Per node, for each partner heard both ways: its level offset as in
    /// [`Judgement::level_offsets`], except that a positive offset (the node reports its
    /// partner louder) is 0 when the pair's two path losses together are above what links of
    /// that length typically report in the band (or that is not known yet): then the partner's report is the unusual one, which the node's inflated claim
    /// of its own transmit power or gain explains as well as a partner that under-reports it.
    /// A pair alone cannot tell those two apart; a loud report whose own level is the unusual
    /// one can only be the node's. The epoch close weighs these per epoch for nodes with too
    /// few partners for the median of [`Judgement::level_offsets`].
    pub pair_offsets: BTreeMap<NodeId, Vec<(NodeId, i32)>>,
    /// Each band's reach as of this epoch.
    pub bands: BTreeMap<u8, BandModel>,
}

/// Judges the epoch's links. `obs` holds one observation per (beaconer, witness) pair, in
/// arrival order; `contradicted` the (beaconer, witness) pairs whose witnesses the stateless
/// rules refused as physically impossible (`rssi_too_strong`, `too_far`); `carried` the bands'
/// reach from earlier epochs.
pub fn judge(
    obs: &[Observation],
    contradicted: &[(NodeId, NodeId)],
    carried: &BTreeMap<u8, BandModel>,
    cfg: &RulesConfig,
) -> Judgement {
    let mut out = Judgement {
        bands: carried.clone(),
        ..Judgement::default()
    };
    let by_pair: BTreeMap<(NodeId, NodeId), &Observation> =
        obs.iter().map(|o| ((o.tx, o.rx), o)).collect();
    let reciprocal = |o: &Observation| by_pair.contains_key(&(o.rx, o.tx));

    // Reach per band, from this epoch's links heard both ways that are typical of both their
    // ends (see [`TYPICAL_FACTOR`]).
    let mut per_node: BTreeMap<(u8, NodeId), Vec<u32>> = BTreeMap::new();
    for o in obs.iter().filter(|o| reciprocal(o)) {
        per_node
            .entry((o.band, o.tx))
            .or_default()
            .push(o.distance_m);
        per_node
            .entry((o.band, o.rx))
            .or_default()
            .push(o.distance_m);
    }
    let typical: BTreeMap<(u8, NodeId), u64> = per_node
        .into_iter()
        .map(|(k, mut d)| {
            d.sort_unstable();
            (k, u64::from(d[(d.len() - 1) / 2]))
        })
        .collect();
    let mut per_band: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for o in obs.iter().filter(|o| reciprocal(o)) {
        let bound = |n: NodeId| typical.get(&(o.band, n)).copied().unwrap_or(0);
        if u64::from(o.distance_m) <= TYPICAL_FACTOR * bound(o.tx).min(bound(o.rx)) {
            per_band.entry(o.band).or_default().push(o.distance_m);
        }
    }
    for (band, mut both_ways) in per_band {
        if both_ways.len() >= MIN_RECIPROCAL_FOR_REACH {
            both_ways.sort_unstable();
            let k = (both_ways.len() * 99).div_ceil(100).saturating_sub(1);
            out.bands.entry(band).or_default().reach_m = both_ways.get(k).copied();
        }
    }
    for o in obs {
        let Some(reach) = out.bands.get(&o.band).and_then(|b| b.reach_m) else {
            continue;
        };
        let d = u64::from(o.distance_m);
        if d > PAY_FACTOR * u64::from(reach) {
            out.unpaid.insert(o.id);
        }
        if d > FAR_FACTOR * u64::from(reach) {
            out.implausible.insert(o.id);
        }
    }
    // Floor per band, from the reports over links heard both ways by nodes in groups large
    // enough to be trusted (of the plausible links): a ring's or a relay's made-up levels
    // cannot set it.
    let group = groups(
        obs.iter()
            .filter(|o| !out.implausible.contains(&o.id))
            .map(|o| (o.tx, o.rx)),
    );
    let trusted = |n: &NodeId| {
        group
            .get(n)
            .is_some_and(|(_, size)| *size >= u32::from(cfg.trusted_cluster_min))
    };
    let mut levels: BTreeMap<u8, Vec<i16>> = BTreeMap::new();
    for o in obs
        .iter()
        .filter(|o| !out.implausible.contains(&o.id) && reciprocal(o) && trusted(&o.rx))
    {
        levels.entry(o.band).or_default().push(o.rssi_decidbm);
    }
    for (band, mut levels) in levels {
        if levels.len() >= MIN_REPORTS_FOR_FLOOR {
            levels.sort_unstable();
            out.bands.entry(band).or_default().floor_decidbm = levels
                .get(levels.len() / 50)
                .map(|p2| p2.saturating_sub(FLOOR_MARGIN_DECIDB));
        }
    }
    for o in obs {
        let weak = out
            .bands
            .get(&o.band)
            .and_then(|b| b.floor_decidbm)
            .is_some_and(|f| o.rssi_decidbm < f);
        if weak {
            out.too_weak.insert(o.id);
        }
    }

    // Who lies about its place: partners heard both ways (a relay's far links are one-way:
    // the far end never hears it), and those of them over an implausible link.
    let mut directed: BTreeMap<(NodeId, NodeId), bool> = BTreeMap::new();
    for o in obs {
        *directed.entry((o.tx, o.rx)).or_default() |= out.implausible.contains(&o.id);
    }
    for (tx, rx) in contradicted {
        directed.insert((*tx, *rx), true);
    }
    #[derive(Default)]
    struct Tally {
        partners: BTreeSet<NodeId>,
        bad: BTreeSet<NodeId>,
    }
    let mut tally: BTreeMap<NodeId, Tally> = BTreeMap::new();
    for ((a, b), bad) in &directed {
        tally.entry(*a).or_default().partners.insert(*b);
        tally.entry(*b).or_default().partners.insert(*a);
        if a < b
            && let Some(back) = directed.get(&(*b, *a))
            && (*bad || *back)
        {
            tally.entry(*a).or_default().bad.insert(*b);
            tally.entry(*b).or_default().bad.insert(*a);
        }
    }
    // A false place makes every link of the liar look bad, and each of them one link of an
    // honest partner: the node whose partners are most often bad answers first, and the
    // links it explains no longer count against its partners (ten liars around one honest
    // node do not make it misplaced).
    let min_partners = usize::from(cfg.link_min_partners);
    let mut order: Vec<(&NodeId, &Tally)> = tally
        .iter()
        .filter(|(_, t)| t.bad.len() >= min_partners)
        .collect();
    order.sort_by(|(a, ta), (b, tb)| {
        (tb.bad.len() * ta.partners.len())
            .cmp(&(ta.bad.len() * tb.partners.len()))
            .then(tb.bad.len().cmp(&ta.bad.len()))
            .then(a.cmp(b))
    });
    for (node, t) in order {
        let bad = t.bad.iter().filter(|p| !out.misplaced.contains(p)).count();
        if bad >= min_partners && bad * 3 >= t.partners.len() {
            out.misplaced.insert(*node);
        }
    }
    // In doubt: a node contradicted, both ways, by two partners or more that are at least a
    // third of its partners (those already misplaced left out), without enough of them to be
    // misplaced yet (a liar in its first epochs, heard by few). One false place explains all
    // those links better than two witnesses each reporting a far beacon, so the links of a
    // beaconer in doubt are no witness's word: the honest neighbour of two cheaters that
    // have just started is not blamed for hearing both before either can be misplaced.
    let in_doubt: BTreeSet<NodeId> = tally
        .iter()
        .filter(|(node, t)| {
            let bad = t.bad.iter().filter(|p| !out.misplaced.contains(p)).count();
            !out.misplaced.contains(node) && bad >= 2 && bad * 3 >= t.partners.len()
        })
        .map(|(node, _)| *node)
        .collect();
    // What is left is the witnesses' word: a beacon it says it heard farther than any radio
    // here reaches (a beacon's far witnesses say nothing against the beaconer, so a relay
    // cannot frame the nodes it relays).
    let far_links = obs
        .iter()
        .filter(|o| out.implausible.contains(&o.id))
        .map(|o| (o.tx, o.rx))
        .chain(contradicted.iter().copied());
    // A beaconer's place is corroborated by a plausible link heard both ways with a partner
    // whose place is not contradicted.
    let plausible_both_ways = |o: &Observation| {
        !out.implausible.contains(&o.id)
            && by_pair
                .get(&(o.rx, o.tx))
                .is_some_and(|b| !out.implausible.contains(&b.id))
    };
    let corroborated: BTreeSet<NodeId> = obs
        .iter()
        .filter(|o| {
            plausible_both_ways(o)
                && !out.misplaced.contains(&o.tx)
                && !out.misplaced.contains(&o.rx)
                && !directed.get(&(o.tx, o.rx)).copied().unwrap_or(false)
                && !directed.get(&(o.rx, o.tx)).copied().unwrap_or(false)
        })
        .flat_map(|o| [o.tx, o.rx])
        .collect();
    for (tx, rx) in far_links {
        if out.misplaced.contains(&tx) || out.misplaced.contains(&rx) || in_doubt.contains(&tx) {
            continue;
        }
        let one_way = !directed.contains_key(&(rx, tx));
        if one_way && corroborated.contains(&tx) {
            out.relayed.entry(rx).or_default().insert(tx);
        } else {
            out.far_heard.entry(rx).or_default().insert(tx);
        }
    }

    // Reciprocity of reported levels and of time.
    let mut asym: BTreeMap<NodeId, Vec<(NodeId, i32)>> = BTreeMap::new();
    let mut pair_asym: BTreeMap<NodeId, Vec<(NodeId, i32)>> = BTreeMap::new();
    // Per band, the plausible links' path losses with distance taken out, by distance: what a
    // link of a given length typically reports here.
    let mut per_band_z: BTreeMap<u8, Vec<(u32, i32)>> = BTreeMap::new();
    for o in obs.iter().filter(|o| !out.implausible.contains(&o.id)) {
        per_band_z
            .entry(o.band)
            .or_default()
            .push((o.distance_m, normalised(o)));
    }
    for z in per_band_z.values_mut() {
        z.sort_unstable();
    }
    let mut slow_pairs: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
    let mut pairs_of: BTreeMap<NodeId, u16> = BTreeMap::new();
    for ((tx, rx), o) in &by_pair {
        if tx < rx
            && let Some(back) = by_pair.get(&(*rx, *tx))
            && o.band == back.band
        {
            // How much weaker tx's transmissions look than its receptions from rx: how much
            // louder tx reports rx than rx reports tx.
            let d = i32::from(o.path_loss_decidb) - i32::from(back.path_loss_decidb);
            asym.entry(*tx).or_default().push((*rx, d));
            asym.entry(*rx).or_default().push((*tx, -d));
            // Whose report is the unusual one: the pair's path losses together against the
            // band's median (see [`Judgement::pair_offsets`]).
            let above = per_band_z
                .get(&o.band)
                .and_then(|z| typical_at(z, o.distance_m))
                .is_none_or(|m| normalised(o) + normalised(back) > 2 * m);
            let kept = |d: i32| if d > 0 && above { 0 } else { d };
            pair_asym.entry(*tx).or_default().push((*rx, kept(d)));
            pair_asym.entry(*rx).or_default().push((*tx, kept(-d)));
            // Both ways: the clocks' offset cancels, radio takes microseconds.
            *pairs_of.entry(*tx).or_default() += 1;
            *pairs_of.entry(*rx).or_default() += 1;
            if i64::from(o.lag_ms) + i64::from(back.lag_ms) > i64::from(cfg.max_round_trip_ms) {
                slow_pairs.entry(*tx).or_default().insert(*rx);
                slow_pairs.entry(*rx).or_default().insert(*tx);
            }
        }
    }
    // A slow pair implicates both ends: the relay (or ring member) is slow with most of its
    // partners, the honest neighbour of one with one of many. Half of the partners heard both
    // ways, and each slow partner is one mark: the epoch close counts distinct partners over
    // its window, so one relay cannot frame its neighbour.
    for (node, slow) in slow_pairs {
        let pairs = pairs_of.get(&node).copied().unwrap_or(0);
        if 2 * slow.len() >= usize::from(pairs) {
            out.delayed.insert(node, slow);
        }
    }
    // Co-witnesses: the witnesses of one beacon heard the same transmitter; with the distance
    // taken out by a typical exponent, what is left of their path losses is shadowing and
    // each witness's reporting. A node that reports beacons louder than their other
    // witnesses do, beacon after beacon, inflates its levels.
    // Only links well within the band's reach: farther out, only the links that happen to
    // fade up are heard at all, which would make honest witnesses there look loud.
    let near = |o: &Observation| {
        out.bands
            .get(&o.band)
            .and_then(|b| b.reach_m)
            .is_some_and(|r| o.distance_m <= r / 2)
    };
    let mut per_beacon: BTreeMap<NodeId, Vec<&Observation>> = BTreeMap::new();
    for o in obs.iter().filter(|o| near(o)) {
        per_beacon.entry(o.tx).or_default().push(o);
    }
    for (tx, list) in per_beacon {
        if list.len() < 3 {
            continue;
        }
        let mut zs: Vec<i32> = list.iter().map(|o| normalised(o)).collect();
        zs.sort_unstable();
        let mid = zs[(zs.len() - 1) / 2];
        for o in list {
            // Positive: it reports the beacon louder than the beacon's other witnesses do.
            asym.entry(o.rx)
                .or_default()
                .push((tx, mid - normalised(o)));
        }
    }
    out.level_offsets = asym;
    out.pair_offsets = pair_asym;
    out
}

/// The median of the [`TYPICAL_NEIGHBOURS`] values nearest in distance to `distance_m` in
/// `by_distance` (sorted by distance), or nothing if there are fewer.
fn typical_at(by_distance: &[(u32, i32)], distance_m: u32) -> Option<i32> {
    if by_distance.len() < TYPICAL_NEIGHBOURS {
        return None;
    }
    let at = by_distance.partition_point(|(d, _)| *d < distance_m);
    let start = at
        .saturating_sub(TYPICAL_NEIGHBOURS / 2)
        .min(by_distance.len() - TYPICAL_NEIGHBOURS);
    let mut z: Vec<i32> = by_distance[start..start + TYPICAL_NEIGHBOURS]
        .iter()
        .map(|(_, z)| *z)
        .collect();
    z.sort_unstable();
    Some(z[TYPICAL_NEIGHBOURS / 2])
}

/// The path loss of a report with distance taken out by [`NORMALISING_EXPONENT`], tenths of
/// dB.
fn normalised(o: &Observation) -> i32 {
    // Tenths of dB; distances are metres, at least 10 m here.
    #[allow(clippy::cast_possible_truncation)]
    let d = (100.0 * NORMALISING_EXPONENT * f64::from(o.distance_m.max(10)).log10()).round() as i32;
    i32::from(o.path_loss_decidb) - d
}

/// Each node's connected group in a graph given by its edges: the group's smallest node id and
/// its size (nodes on no edge are absent).
pub fn groups(
    edges: impl IntoIterator<Item = (NodeId, NodeId)>,
) -> BTreeMap<NodeId, (NodeId, u32)> {
    let mut index: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut id = |n: NodeId, parent: &mut Vec<usize>| -> usize {
        *index.entry(n).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (a, b) in edges {
        let (ia, ib) = (id(a, &mut parent), id(b, &mut parent));
        pairs.push((ia, ib));
    }
    for (a, b) in pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let roots: Vec<usize> = (0..parent.len()).map(|i| find(&mut parent, i)).collect();
    let mut size = vec![0u32; parent.len()];
    for r in &roots {
        size[*r] += 1;
    }
    // The map iterates in id order, so the first member seen of each group is its smallest.
    let mut smallest: BTreeMap<usize, NodeId> = BTreeMap::new();
    for (n, i) in &index {
        smallest.entry(roots[*i]).or_insert(*n);
    }
    index
        .iter()
        .map(|(n, i)| (*n, (smallest[&roots[*i]], size[roots[*i]])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_connected_components() {
        let n = |b: u8| NodeId([b; 32]);
        let g = groups([(n(3), n(2)), (n(2), n(1)), (n(5), n(4)), (n(3), n(1))]);
        assert_eq!(g[&n(1)], (n(1), 3));
        assert_eq!(g[&n(3)], (n(1), 3));
        assert_eq!(g[&n(5)], (n(4), 2));
        assert!(!g.contains_key(&n(6)));
    }

    /// A 3 × 3 grid of honest nodes 150 m apart, every pair in range heard both ways, and one
    /// node on the grid that asserts a place 3 km away: a devnet-sized network.
    fn small_network_with_a_liar() -> (Vec<Observation>, NodeId) {
        let n = |i: u8| NodeId([i + 1; 32]);
        let at = |i: u8| (f64::from(i % 3) * 150.0, f64::from(i / 3) * 150.0);
        let liar = n(9);
        let mut obs = Vec::new();
        let mut seq = 0u8;
        for a in 0..10u8 {
            for b in 0..10u8 {
                if a == b {
                    continue;
                }
                let d = if a == 9 || b == 9 {
                    3_000.0
                } else {
                    let (p, q) = (at(a), at(b));
                    (p.0 - q.0).hypot(p.1 - q.1)
                };
                seq = seq.wrapping_add(1);
                obs.push(Observation {
                    id: ProofId([seq; 32].into()),
                    tx: n(a),
                    rx: n(b),
                    band: 1,
                    // Rounded metres of a few hundred, or 3 000.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    distance_m: d.round() as u32,
                    path_loss_decidb: 900,
                    rssi_decidbm: -700,
                    lag_ms: 1,
                });
            }
        }
        (obs, liar)
    }

    #[test]
    fn a_liars_links_do_not_set_the_reach_of_a_small_network() {
        let (obs, liar) = small_network_with_a_liar();
        let j = judge(&obs, &[], &BTreeMap::new(), &RulesConfig::default());
        // The grid's longest link (the diagonal, 424 m) is the reach, not the liar's 3 km.
        assert_eq!(j.bands[&1].reach_m, Some(424));
        let liars: BTreeSet<ProofId> = obs
            .iter()
            .filter(|o| o.tx == liar || o.rx == liar)
            .map(|o| o.id)
            .collect();
        assert_eq!(j.implausible, liars);
        assert!(j.misplaced.contains(&liar), "{:?}", j.misplaced);
        assert_eq!(j.misplaced.len(), 1);
    }

    #[test]
    fn band_classes() {
        assert_eq!(band_class(2_412_000), 1);
        assert_eq!(band_class(5_180_000), 2);
        assert_eq!(band_class(5_955_000), 3);
        assert_eq!(band_class(60_480_000), 4);
        assert_eq!(band_class(868_000), 0);
        assert_eq!(band_class(3_500_000), 13);
    }
}
