//! Property tests of the reward invariants over a small world of real, checked proofs:
//! 16 honest nodes on a 4 × 4 grid and three cheaters whose every proof is refused.
//!
//! - the amounts of an epoch sum to its emission exactly, whatever the emission;
//! - nobody is paid for refused proofs (the cheaters get nothing);
//! - duplicate submissions change nothing;
//! - the order of pushes changes nothing, and neither does the order of arrivals where no
//!   "first to arrive" rule is in play;
//! - honest nodes are all paid.

// Helpers of a test panic on a broken fixture; casts convert small, known values.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use wisp_oracle::rewards::{self, allocate, split_pools};
use wisp_oracle::{Arrival, EpochOutcome, EpochRewards, Rules, RulesConfig};
use wisp_protocol::msg::{EpochParams, RewardManifest};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{NodeId, ProofId, envelope};

const HONEST: usize = 16;
const FREELOADER: usize = 16;
const LATE: usize = 17;
const CONSTANT: usize = 18;

struct World {
    fx: Fixture,
    items: Vec<(Arrival, Fact)>,
    cheaters: Vec<NodeId>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

fn build_world() -> World {
    let mut points: Vec<(f64, f64)> = (0..HONEST)
        .map(|i| offset((i / 4) as f64 * SPACING_M, (i % 4) as f64 * SPACING_M))
        .collect();
    points.push(offset(125.0, 125.0)); // freeloader: witnesses, never beacons
    points.push(offset(375.0, 125.0)); // late: everything after the settle window
    points.push(offset(125.0, 375.0)); // constant: forged constant RSSI, never beacons
    let mut fx = Fixture::at(
        points,
        RulesConfig::permissionless(),
        EpochParams::default(),
    );
    let all = honest_epoch(
        &mut fx,
        &HonestOpts {
            witness_radius_m: 400.0,
            measurers: (0..HONEST).collect(),
            heartbeats: 12,
        },
    );
    let cheaters: Vec<NodeId> = [FREELOADER, LATE, CONSTANT].map(|i| fx.ids[i]).to_vec();
    let is_cheater = |id: &NodeId| cheaters.contains(id);
    let cheater_beacons: BTreeSet<ProofId> = all
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Beacon(b) if is_cheater(&b.node) => Some(b.id),
            _ => None,
        })
        .collect();
    let late_beacon: BTreeSet<ProofId> = all
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Beacon(b) if b.node == fx.ids[LATE] => Some(b.id),
            _ => None,
        })
        .collect();
    let closes_at = close_time(&fx);
    let mut items = Vec::new();
    for (a, f) in all {
        let keep = match &f {
            // Honest nodes never hear the cheaters except the late one, whose beacon they
            // witness (and those witnesses must fail with it).
            Fact::Witness(w) if cheater_beacons.contains(&w.beacon_id) => {
                late_beacon.contains(&w.beacon_id) && !is_cheater(&w.witness)
            }
            Fact::Witness(w) if w.witness == fx.ids[CONSTANT] => false,
            Fact::Beacon(b) => ![fx.ids[FREELOADER], fx.ids[CONSTANT]].contains(&b.node),
            Fact::Receipt(r) => !is_cheater(&r.prover),
            Fact::Heartbeat(h) => ![fx.ids[FREELOADER], fx.ids[CONSTANT]].contains(&h.node),
            Fact::Witness(_) => true,
        };
        if !keep {
            continue;
        }
        let late = f.node() == fx.ids[LATE];
        let at = if late {
            closes_at + 1 + a.at_ms % 1_000
        } else {
            a.at_ms
        };
        items.push((Arrival::new(a.seq, at), f));
    }
    // The constant-RSSI node's witnesses, all −77.0 dBm.
    for b in 0..HONEST {
        if fx.cell(b).distance_m(fx.cell(CONSTANT)) > 400.0 {
            continue;
        }
        let beacon = fx.beacon_msg(b);
        let bytes = fx.sign(b, &beacon);
        let mut w = fx.witness_msg(CONSTANT, &bytes, &beacon, b);
        w.rssi = DeciDb(-770);
        let fact = fx
            .checker()
            .witness(&open(&fx.sign(CONSTANT, &w)), fx.seed.end_ms())
            .unwrap();
        let seq = items.len() as u64 + 1_000_000;
        items.push((Arrival::new(seq, beacon.tx_ms + 500), Fact::Witness(fact)));
    }
    World {
        fx,
        items,
        cheaters,
    }
}

fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    for i in (1..out.len()).rev() {
        let j = (mix(seed ^ i as u64) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

fn outcome_of(items: &[(Arrival, Fact)]) -> EpochOutcome {
    let w = world();
    state_of(&w.fx, items)
        .close(&w.fx.registry, close_time(&w.fx))
        .unwrap()
}

fn rewards_of(outcome: &EpochOutcome, emission: u64) -> EpochRewards {
    rewards::compute(&world().fx.registry, outcome, emission)
}

fn baseline() -> &'static EpochOutcome {
    static BASE: OnceLock<EpochOutcome> = OnceLock::new();
    BASE.get_or_init(|| outcome_of(&world().items))
}

/// Every manifest page opens after signing, and every paid node's inclusion proof verifies.
fn check_manifest(r: &EpochRewards) {
    let oracle = key(1_000);
    let pages = r.manifest_pages();
    let mut seen = Vec::new();
    for page in &pages {
        let bytes = sign_with(&oracle, page);
        let opened = envelope::open::<RewardManifest>(&bytes).unwrap();
        assert_eq!(opened.msg.root.0, r.root());
        seen.extend(opened.msg.entries);
    }
    assert_eq!(seen, r.entries);
    for e in &r.entries {
        let proof = r.inclusion_proof(&e.node).unwrap();
        assert!(proof.verify(e, pages[0].entry_count, &r.root()));
    }
}

#[test]
fn the_world_is_what_it_claims() {
    let w = world();
    let outcome = baseline();
    let rejected: BTreeSet<ProofId> = outcome.rejections.iter().map(|(id, _)| *id).collect();
    // Every cheater proof is refused; an honest proof only when it witnesses the late beacon.
    let late = w.fx.ids[LATE];
    let late_beacons: BTreeSet<ProofId> = w
        .items
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Beacon(b) if b.node == late => Some(b.id),
            _ => None,
        })
        .collect();
    assert_eq!(late_beacons.len(), 1);
    for (_, f) in &w.items {
        let cheat = w.cheaters.contains(&f.node());
        let of_late = matches!(f, Fact::Witness(x) if late_beacons.contains(&x.beacon_id));
        assert_eq!(rejected.contains(&f.id()), cheat || of_late, "{f:?}");
    }
    let reasons: BTreeSet<_> = outcome.rejections.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        reasons,
        [
            wisp_protocol::Reason::LateArrival,
            wisp_protocol::Reason::BeaconNotFound,
            wisp_protocol::Reason::NoReciprocity,
            wisp_protocol::Reason::SignalImplausible,
        ]
        .into()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn amounts_sum_to_the_emission_and_cheaters_get_nothing(
        emission in prop_oneof![1u64..1_000, 1_000u64..u64::MAX, Just(u64::MAX)],
        seed in any::<u64>(),
    ) {
        let w = world();
        let outcome = outcome_of(&shuffled(&w.items, seed));
        let r = rewards_of(&outcome, emission);
        prop_assert_eq!(r.total_paid(), u128::from(emission));
        for e in &r.entries {
            prop_assert!(!w.cheaters.contains(&e.node));
            prop_assert_eq!(e.amount, e.coverage + e.backhaul + e.uptime + e.usage);
            prop_assert!(e.amount > 0);
        }
        prop_assert_eq!(r.pools.total(), u128::from(emission));
        check_manifest(&r);
    }

    #[test]
    fn honest_nodes_are_all_paid(emission in 1_000_000u64..=u64::MAX) {
        let w = world();
        let r = rewards_of(baseline(), emission);
        for id in &w.fx.ids[..HONEST] {
            let e = r.entry(id);
            prop_assert!(e.is_some_and(|e| e.coverage > 0 && e.backhaul > 0 && e.uptime > 0), "{:?}", e);
        }
    }

    #[test]
    fn duplicates_change_nothing(
        seed in any::<u64>(),
        dups in proptest::collection::vec((any::<proptest::sample::Index>(), 0u64..3), 1..100),
    ) {
        let w = world();
        let mut items = w.items.clone();
        for (i, delay) in dups {
            let (a, f) = *i.get(&w.items);
            // The same proof again, at the same time or later.
            items.push((Arrival::new(a.seq + delay * 10_000_000, a.at_ms + delay), f));
        }
        let outcome = outcome_of(&shuffled(&items, seed));
        prop_assert_eq!(&outcome, baseline());
        prop_assert_eq!(rewards_of(&outcome, 1 << 40), rewards_of(baseline(), 1 << 40));
    }

    #[test]
    fn push_order_changes_nothing(seed in any::<u64>()) {
        let outcome = outcome_of(&shuffled(&world().items, seed));
        prop_assert_eq!(&outcome, baseline());
    }

    #[test]
    fn arrival_order_changes_nothing_without_first_to_arrive_contention(seed in any::<u64>()) {
        // The world has no duplicate beacons, witnesses or receipts and no beacon above the
        // witness limit, so permuting the arrival sequence numbers (times kept) is invisible.
        let w = world();
        let seqs: Vec<u64> = shuffled(&w.items.iter().map(|(a, _)| a.seq).collect::<Vec<_>>(), seed);
        let items: Vec<_> = w
            .items
            .iter()
            .zip(seqs)
            .map(|((a, f), seq)| (Arrival::new(seq, a.at_ms), *f))
            .collect();
        prop_assert_eq!(&outcome_of(&items), baseline());
    }

    #[test]
    fn any_subset_pays_only_counted_signers_and_sums_exactly(
        keep in proptest::collection::vec(any::<bool>(), 0..600),
        emission in 1u64..=u64::MAX,
    ) {
        let w = world();
        let items: Vec<_> = w
            .items
            .iter()
            .zip(keep.iter().chain(std::iter::repeat(&true)))
            .filter(|(_, k)| **k)
            .map(|(x, _)| *x)
            .collect();
        let outcome = outcome_of(&items);
        let r = rewards_of(&outcome, emission);
        let rejected: BTreeSet<ProofId> = outcome.rejections.iter().map(|(id, _)| *id).collect();
        let mut counted: BTreeSet<NodeId> = BTreeSet::new();
        for (_, f) in &items {
            if !rejected.contains(&f.id()) {
                counted.insert(f.node());
                if let Fact::Receipt(rc) = f {
                    counted.insert(rc.prover);
                }
            }
        }
        for e in &r.entries {
            prop_assert!(counted.contains(&e.node));
        }
        if r.entries.is_empty() {
            prop_assert!(r.units.values().all(|u| u.coverage == 0 && u.backhaul == 0 && u.uptime == 0));
        } else {
            prop_assert_eq!(r.total_paid(), u128::from(emission));
        }
    }

    #[test]
    fn allocation_is_exact_and_fair(
        pool in any::<u64>(),
        units in proptest::collection::vec(0u64..=u64::MAX, 1..40),
    ) {
        let nodes: Vec<(NodeId, u64)> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (key(i).id(), *u))
            .collect();
        let amounts = allocate(pool, &nodes);
        let total: u128 = units.iter().map(|u| u128::from(*u)).sum();
        let paid: u128 = amounts.iter().map(|a| u128::from(*a)).sum();
        if total == 0 {
            prop_assert_eq!(paid, 0);
        } else {
            prop_assert_eq!(paid, u128::from(pool));
        }
        for ((_, u), a) in nodes.iter().zip(&amounts) {
            if total == 0 || *u == 0 {
                prop_assert_eq!(*a, 0);
                continue;
            }
            let exact_floor = u128::from(pool) * u128::from(*u) / total;
            prop_assert!(u128::from(*a) == exact_floor || u128::from(*a) == exact_floor + 1);
        }
    }

    #[test]
    fn pools_move_to_earners_and_sum_to_the_emission(
        emission in any::<u64>(),
        mask in 1u8..8,
        shares in (0u16..=10_000, 0u16..=10_000),
    ) {
        let (a, b) = (shares.0.min(shares.1), shares.0.max(shares.1));
        let rules: Rules = RulesConfig {
            coverage_share_bps: a,
            backhaul_share_bps: b - a,
            uptime_share_bps: 10_000 - b,
            usage_share_bps: 0,
            ..RulesConfig::permissionless()
        }
        .validate()
        .unwrap();
        let earners = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0];
        let p = split_pools(&rules, emission, earners);
        prop_assert_eq!(p.total(), u128::from(emission));
        for (amount, earns) in [(p.coverage, earners[0]), (p.backhaul, earners[1]), (p.uptime, earners[2])] {
            if !earns {
                prop_assert_eq!(amount, 0);
            }
        }
    }
}

#[test]
fn a_farm_in_one_hex_earns_what_the_target_would() {
    // Twelve nodes inside one res-8 hex (a 3 × 4 grid 60 m apart) beacon and witness each
    // other honestly; the hex's coverage multiplier caps them at the target of four nodes.
    let points: Vec<(f64, f64)> = (0..12)
        .map(|i| offset((i / 4) as f64 * 60.0, (i % 4) as f64 * 60.0))
        .collect();
    let mut fx = Fixture::at(
        points,
        RulesConfig::permissionless(),
        EpochParams::default(),
    );
    let items = honest_epoch(
        &mut fx,
        &HonestOpts {
            witness_radius_m: 1_000.0,
            measurers: vec![],
            heartbeats: 12,
        },
    );
    let outcome = state_of(&fx, &items)
        .close(&fx.registry, close_time(&fx))
        .unwrap();
    let units = rewards::node_units(&fx.registry, &outcome);
    let hexes: BTreeSet<_> = fx
        .ids
        .iter()
        .map(|id| fx.registry.get(id).unwrap().cell.parent(8))
        .collect();
    assert_eq!(hexes.len(), 1, "the farm must sit in one hex for this test");
    let raw: u128 = units.values().map(|u| u128::from(u.coverage_raw)).sum();
    let paid: u128 = units.values().map(|u| u128::from(u.coverage)).sum();
    for u in units.values() {
        assert_eq!(u.density_bps, 4 * 10_000 / 12);
    }
    // 4 of 12 nodes' worth (3 333 bps each, rounded down per node), never more.
    let expected = raw * 3_333 / 10_000;
    assert!(
        paid <= expected && paid + 12 >= expected,
        "{paid} vs {expected}"
    );
    assert!(paid * 3 <= raw);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Candidates follow each node's last declaration of the measurer role: a snapshot is
    /// exactly the nodes whose last `set` was on, however adds, removals, re-adds and
    /// snapshots interleave.
    #[test]
    fn candidates_follow_the_last_declaration(
        ops in proptest::collection::vec((0u16..30, any::<bool>(), any::<bool>()), 1..200),
    ) {
        use std::collections::BTreeSet;
        use wisp_oracle::rules::{Candidates, MeasurerPool};
        let id = |i: u16| NodeId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let mut candidates = Candidates::new();
        let mut model: BTreeSet<NodeId> = BTreeSet::new();
        for (node, on, snapshot) in ops {
            candidates.set(id(node), on);
            if on {
                model.insert(id(node));
            } else {
                model.remove(&id(node));
            }
            prop_assert_eq!(candidates.len(), model.len());
            if snapshot {
                prop_assert_eq!(candidates.snapshot(), MeasurerPool::new(model.iter().copied()));
            }
        }
        prop_assert_eq!(candidates.snapshot(), MeasurerPool::new(model.iter().copied()));
    }

    /// An epoch's measurer cache answers exactly as the protocol's assignment over the pool
    /// fixed when the epoch opened, whatever joins after: candidates snapshot in any order.
    #[test]
    fn measurer_cache_agrees_with_the_protocol(
        joins in proptest::collection::vec(0u16..60, 1..80),
        later in proptest::collection::vec(0u16..90, 0..20),
        queries in proptest::collection::vec((0u16..90, 0u16..90, 0u8..3), 1..200),
    ) {
        use wisp_oracle::rules::{Candidates, MeasurerCache, MeasurerPool};
        let id = |i: u16| NodeId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let seeds = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let mut candidates = Candidates::new();
        for j in &joins {
            candidates.add(id(*j));
        }
        let pool = MeasurerPool::new(joins.iter().map(|j| id(*j)));
        let snapshot = candidates.snapshot();
        prop_assert_eq!(&snapshot, &pool);
        let mut cache = MeasurerCache::new(snapshot);
        // Nodes joining after the epoch opened change neither the cache nor the snapshot.
        for j in &later {
            candidates.add(id(*j));
        }
        for (p, m, s) in queries {
            // k is a parameter of the seed's epoch: one per seed.
            let k = 1 + usize::from(s);
            let seed = &seeds[usize::from(s)];
            let want = wisp_protocol::schedule::assign_measurers(seed, &id(p), pool.eligible(), k)
                .contains(&id(m));
            prop_assert_eq!(cache.is_assigned(seed, &id(p), &id(m), k), want);
            prop_assert_eq!(pool.is_assigned(seed, &id(p), &id(m), k), want);
        }
        let all = MeasurerPool::new(joins.iter().chain(&later).map(|j| id(*j)));
        prop_assert_eq!(candidates.snapshot(), all);
    }
}
