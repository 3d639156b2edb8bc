//! The stateful rules applied at epoch close, table-driven: an honest epoch of nine nodes on a
//! 3 × 3 grid (real envelopes through the checker), plus the minimal extra proofs that produce
//! each rejection.

// Helpers of a test panic on a broken fixture; casts convert small, known values.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use wisp_oracle::rules::{GnssEvidence, HeartbeatFact, WitnessFact};
use wisp_oracle::{Arrival, CloseError, EpochOutcome, Push, RulesConfig};
use wisp_protocol::msg::{Beacon, Direction, EpochParams, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{ProofId, Reason};

const CENTRE: usize = 4;

fn setup(params: EpochParams) -> (Fixture, Vec<(Arrival, Fact)>) {
    let mut fx = Fixture::grid(9, 3, RulesConfig::permissionless(), params);
    let items = honest_epoch(
        &mut fx,
        &HonestOpts {
            witness_radius_m: 400.0,
            measurers: (0..9).collect(),
            heartbeats: 12,
        },
    );
    (fx, items)
}

fn honest() -> (Fixture, Vec<(Arrival, Fact)>) {
    setup(EpochParams::default())
}

/// An arrival after everything in `items`, at `at_ms`.
fn after(items: &[(Arrival, Fact)], at_ms: u64) -> Arrival {
    Arrival::new(
        items.iter().map(|(a, _)| a.seq).max().unwrap_or(0) + 1,
        at_ms,
    )
}

fn mid(fx: &Fixture) -> u64 {
    fx.seed.start_ms + fx.seed.duration_ms / 2
}

/// A witness of `beacon` (signed by node `b`) by node `j`, through the checker.
fn witness(
    fx: &Fixture,
    b: usize,
    beacon: &Beacon,
    j: usize,
    edit: impl FnOnce(&mut Witness),
) -> WitnessFact {
    let bytes = fx.sign(b, beacon);
    let mut w = fx.witness_msg(j, &bytes, beacon, b);
    edit(&mut w);
    fx.checker()
        .witness(&open(&fx.sign(j, &w)), fx.seed.end_ms())
        .unwrap()
}

fn close(fx: &Fixture, items: &[(Arrival, Fact)]) -> EpochOutcome {
    state_of(fx, items)
        .close(&fx.registry, close_time(fx))
        .unwrap()
}

/// Closes the epoch and requires exactly these rejections.
fn check(
    name: &str,
    fx: &Fixture,
    items: &[(Arrival, Fact)],
    want: &[(ProofId, Reason)],
) -> EpochOutcome {
    let outcome = close(fx, items);
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(outcome.rejections, want, "{name}");
    outcome
}

fn ids_of(items: &[(Arrival, Fact)], pred: impl Fn(&Fact) -> bool) -> Vec<ProofId> {
    items
        .iter()
        .filter(|(_, f)| pred(f))
        .map(|(_, f)| f.id())
        .collect()
}

#[test]
fn honest_epoch_rejects_nothing_and_pays_everyone() {
    let (fx, items) = honest();
    let outcome = check("honest", &fx, &items, &[]);
    assert!(outcome.flagged.is_empty());
    assert_eq!(outcome.nodes.len(), 9);
    for (i, id) in fx.ids.iter().enumerate() {
        let f = &outcome.nodes[id];
        let neighbours = (0..9)
            .filter(|j| *j != i && fx.cell(i).distance_m(fx.cell(*j)) <= 400.0)
            .count();
        assert!(f.beacon.is_some(), "node {i}");
        assert_eq!(usize::from(f.beacon_witnesses), neighbours, "node {i}");
        assert_eq!(f.witnessed.len(), neighbours, "node {i}");
        assert_eq!(f.heartbeats, 12, "node {i}");
        assert_eq!(f.expected_heartbeats, 12);
        assert!(f.uptime_eligible);
        assert_eq!(f.location_trust_bps, 10_000);
        assert_eq!(f.down.unwrap().measurers, 3);
        assert_eq!(f.up.unwrap().measurers, 3);
        assert_eq!(f.rtt_idle_us, Some(18_000));
    }
    // Closing again gives the same outcome.
    let state = state_of(&fx, &items);
    let now = close_time(&fx);
    assert_eq!(
        state.close(&fx.registry, now),
        state.close(&fx.registry, now + 1)
    );
}

#[test]
fn close_waits_for_the_settle_window() {
    let (fx, items) = honest();
    let state = state_of(&fx, &items);
    let closes_at = close_time(&fx);
    assert_eq!(state.closes_at(), closes_at);
    assert_eq!(
        state.close(&fx.registry, closes_at - 1),
        Err(CloseError::TooEarly { closes_at })
    );
    assert!(state.close(&fx.registry, closes_at).is_ok());
}

#[test]
fn one_beacon_per_node_first_arrival_wins() {
    let (fx, mut items) = honest();
    let mut second = fx.beacon_msg(0);
    second.freq_khz = 2_437_000;
    let fact = fx
        .checker()
        .beacon(&open(&fx.sign(0, &second)), fx.seed.end_ms())
        .unwrap();
    // Later: the second is the duplicate.
    let mut later = items.clone();
    later.push((after(&items, mid(&fx)), Fact::Beacon(fact)));
    check(
        "second beacon later",
        &fx,
        &later,
        &[(fact.id, Reason::BeaconDuplicate)],
    );
    // Earlier: the honest one is the duplicate, and its witnesses lose their beacon.
    let honest_beacon = ids_of(
        &items,
        |f| matches!(f, Fact::Beacon(b) if b.node == fx.ids[0]),
    )[0];
    let orphaned = ids_of(
        &items,
        |f| matches!(f, Fact::Witness(w) if w.beacon_id == honest_beacon),
    );
    items.push((Arrival::new(0, fx.seed.start_ms), Fact::Beacon(fact)));
    let mut want = vec![(honest_beacon, Reason::BeaconDuplicate)];
    want.extend(orphaned.iter().map(|id| (*id, Reason::BeaconNotFound)));
    let outcome = check("second beacon earlier", &fx, &items, &want);
    assert_eq!(outcome.nodes[&fx.ids[0]].beacon, Some(fact.id));
    assert_eq!(outcome.nodes[&fx.ids[0]].beacon_witnesses, 0);
}

#[test]
fn witness_rules_at_close() {
    let (fx, items) = honest();
    let honest_b0 = fx.beacon_msg(0);

    // A witness of a beacon the beaconer never reported.
    let mut unreported = fx.beacon_msg(0);
    unreported.tx_ms += 1;
    let orphan = witness(&fx, 0, &unreported, 1, |_| {});
    let mut case = items.clone();
    case.push((after(&items, mid(&fx)), Fact::Witness(orphan)));
    check(
        "beacon not found",
        &fx,
        &case,
        &[(orphan.id, Reason::BeaconNotFound)],
    );

    // The same node witnessing the same beacon twice: the later one is the duplicate, even
    // when pushed first.
    let again = witness(&fx, 0, &honest_b0, 1, |w| w.rssi = DeciDb(w.rssi.0 - 7));
    let mut case = vec![(after(&items, mid(&fx)), Fact::Witness(again))];
    case.extend(items.iter().copied());
    check(
        "duplicate witness",
        &fx,
        &case,
        &[(again.id, Reason::DuplicateWitness)],
    );

    // A witness claiming to be the beaconer (a fact built by hand; the envelope refuses it).
    let forged = WitnessFact {
        id: ProofId::of(b"self"),
        witness: fx.ids[0],
        ..orphan
    };
    let honest_id = ids_of(
        &items,
        |f| matches!(f, Fact::Beacon(b) if b.node == fx.ids[0]),
    )[0];
    let mut case = items.clone();
    case.push((
        after(&items, mid(&fx)),
        Fact::Witness(WitnessFact {
            beacon_id: honest_id,
            ..forged
        }),
    ));
    check(
        "self witness",
        &fx,
        &case,
        &[(forged.id, Reason::SelfWitness)],
    );
}

#[test]
fn witness_limit_pays_the_first_arrivals() {
    let (fx, items) = setup(EpochParams {
        witness_limit: 2,
        ..EpochParams::default()
    });
    let mut want = Vec::new();
    let beacons = ids_of(&items, |f| matches!(f, Fact::Beacon(_)));
    for b in &beacons {
        let mut ws: Vec<(Arrival, ProofId)> = items
            .iter()
            .filter_map(|(a, f)| match f {
                Fact::Witness(w) if w.beacon_id == *b => Some((*a, w.id)),
                _ => None,
            })
            .collect();
        ws.sort();
        want.extend(ws.iter().skip(2).map(|(_, id)| (*id, Reason::WitnessLimit)));
    }
    let outcome = check("limit 2", &fx, &items, &want);
    assert!(outcome.nodes.values().all(|f| f.beacon_witnesses == 2));
}

#[test]
fn no_reciprocity_without_a_valid_beacon() {
    let (fx, items) = honest();
    let centre = fx.ids[CENTRE];
    let its_beacon = ids_of(&items, |f| matches!(f, Fact::Beacon(b) if b.node == centre))[0];
    // The centre node never beacons (its beacon and the witnesses of it are gone).
    let case: Vec<_> = items
        .iter()
        .filter(|(_, f)| match f {
            Fact::Beacon(b) => b.node != centre,
            Fact::Witness(w) => w.beacon_id != its_beacon,
            _ => true,
        })
        .copied()
        .collect();
    let want: Vec<_> = ids_of(
        &case,
        |f| matches!(f, Fact::Witness(w) if w.witness == centre),
    )
    .into_iter()
    .map(|id| (id, Reason::NoReciprocity))
    .collect();
    assert_eq!(want.len(), 8);
    let outcome = check("no reciprocity", &fx, &case, &want);
    assert!(outcome.nodes[&centre].witnessed.is_empty());
}

#[test]
fn constant_rssi_is_a_forgery() {
    let (fx, items) = honest();
    let centre = fx.ids[CENTRE];
    // The centre node reports −80.0 dBm for all eight beacons it hears.
    let mut case: Vec<_> = items
        .iter()
        .filter(|(_, f)| !matches!(f, Fact::Witness(w) if w.witness == centre))
        .copied()
        .collect();
    let mut want = Vec::new();
    for b in (0..9).filter(|b| *b != CENTRE) {
        let f = witness(&fx, b, &fx.beacon_msg(b), CENTRE, |w| w.rssi = DeciDb(-800));
        case.push((after(&case, mid(&fx)), Fact::Witness(f)));
        want.push((f.id, Reason::SignalImplausible));
    }
    check("constant rssi", &fx, &case, &want);
    // Four equal readings are below the threshold of five: nothing is rejected.
    let mut fewer: Vec<_> = items
        .iter()
        .filter(|(_, f)| !matches!(f, Fact::Witness(w) if w.witness == centre))
        .copied()
        .collect();
    for b in [0usize, 1, 2, 3] {
        let f = witness(&fx, b, &fx.beacon_msg(b), CENTRE, |w| w.rssi = DeciDb(-800));
        fewer.push((after(&fewer, mid(&fx)), Fact::Witness(f)));
    }
    check("four equal readings", &fx, &fewer, &[]);
}

#[test]
fn late_arrivals_are_refused_at_close() {
    let (fx, items) = honest();
    let closes_at = close_time(&fx);
    let mut state = state_of(&fx, &items);
    let hb = fx.heartbeat_msg(0, 13, fx.seed.end_ms() - 1_000);
    // Checked at arrival time; it arrives one ms after the settle window.
    let mut registry = fx.registry.clone();
    registry.set_rules(
        RulesConfig {
            heartbeat_max_delay_ms: u64::MAX / 4,
            ..RulesConfig::permissionless()
        }
        .validate()
        .unwrap(),
    );
    let fact = wisp_oracle::Checker::new(&registry, &fx.seed)
        .heartbeat(&open(&fx.sign(0, &hb)), closes_at + 1)
        .unwrap();
    let arrival = after(&items, closes_at + 1);
    assert_eq!(state.push_heartbeat(arrival, &fact), Ok(Push::Late));
    let outcome = state.close(&fx.registry, closes_at + 5).unwrap();
    assert_eq!(outcome.rejections, vec![(fact.id, Reason::LateArrival)]);
}

#[test]
fn one_receipt_per_measurer_per_direction() {
    let (fx, items) = honest();
    let first = items
        .iter()
        .find_map(|(_, f)| match f {
            Fact::Receipt(r) if r.direction == Direction::Down => Some(*r),
            _ => None,
        })
        .unwrap();
    let p = fx.ids.iter().position(|id| *id == first.prover).unwrap();
    let m = fx.ids.iter().position(|id| *id == first.measurer).unwrap();
    let pool = wisp_oracle::MeasurerPool::new(fx.ids.iter().copied());
    let again = fx
        .checker()
        .receipt(
            &open(&fx.receipt_bytes(p, m, Direction::Down, 9_000_000_000)),
            &pool,
        )
        .unwrap();
    let mut case = items.clone();
    case.push((after(&items, fx.seed.end_ms()), Fact::Receipt(again)));
    let outcome = check(
        "second receipt",
        &fx,
        &case,
        &[(again.id, Reason::DuplicateMeasurer)],
    );
    // The inflated second receipt changed nothing.
    assert_eq!(outcome.nodes, close(&fx, &items).nodes);
}

#[test]
fn heartbeats_count_intervals_once_per_sequence_number() {
    let (fx, items) = honest();
    let node = fx.ids[0];
    let mine = items
        .iter()
        .find_map(|(_, f)| match f {
            Fact::Heartbeat(h) if h.node == node => Some(*h),
            _ => None,
        })
        .unwrap();
    let replay = HeartbeatFact {
        id: ProofId::of(b"same seq, other bytes"),
        ..mine
    };
    let mut case = items.clone();
    case.push((after(&items, mid(&fx)), Fact::Heartbeat(replay)));
    check(
        "replayed seq",
        &fx,
        &case,
        &[(replay.id, Reason::HeartbeatReplay)],
    );

    // 6 of 12 intervals is exactly the 50 % threshold; 5 is below.
    for (kept, eligible) in [(6usize, true), (5, false)] {
        let case: Vec<_> = items
            .iter()
            .filter(|(_, f)| match f {
                Fact::Heartbeat(h) if h.node == node => h.seq as usize <= kept,
                _ => true,
            })
            .copied()
            .collect();
        let outcome = close(&fx, &case);
        assert_eq!(outcome.nodes[&node].heartbeats, kept as u32);
        assert_eq!(outcome.nodes[&node].uptime_eligible, eligible, "{kept}");
    }
}

#[test]
fn location_trust_from_the_epochs_fixes() {
    let (mut fx, items) = honest();
    let node = fx.ids[0];
    // Node 0's fixes all land 5 km away: trust 0, every heartbeat flagged, still uptime.
    let mut flagged = Vec::new();
    let case: Vec<_> = items
        .iter()
        .map(|(a, f)| match f {
            Fact::Heartbeat(h) if h.node == node => {
                let moved = HeartbeatFact {
                    id: ProofId::of(&h.seq.to_le_bytes()),
                    gnss: GnssEvidence::Mismatch { distance_m: 5_000 },
                    ..*h
                };
                flagged.push((moved.id, Reason::GnssMismatch));
                (*a, Fact::Heartbeat(moved))
            }
            _ => (*a, *f),
        })
        .collect();
    let outcome = check("gnss mismatch", &fx, &case, &[]);
    flagged.sort();
    assert_eq!(outcome.flagged, flagged);
    assert_eq!(outcome.nodes[&node].location_trust_bps, 0);
    assert!(outcome.nodes[&node].uptime_eligible);

    // The registry carries an epoch's trust to the next epoch without fixes.
    let good = close(&fx, &items);
    fx.registry.apply_epoch(&good);
    assert_eq!(
        fx.registry.get(&node).unwrap().location_trust_bps,
        Some(10_000)
    );
    let no_heartbeats: Vec<_> = items
        .iter()
        .filter(|(_, f)| !matches!(f, Fact::Heartbeat(_)))
        .copied()
        .collect();
    let carried = close(&fx, &no_heartbeats);
    assert_eq!(carried.nodes[&node].location_trust_bps, 10_000);
    assert_eq!(carried.nodes[&node].location_evidence, None);
    // Without history, an unverified location earns nothing.
    let fresh = Fixture::grid(9, 3, RulesConfig::permissionless(), EpochParams::default());
    let unverified = state_of(&fresh, &no_heartbeats)
        .close(&fresh.registry, close_time(&fresh))
        .unwrap();
    assert_eq!(unverified.nodes[&node].location_trust_bps, 0);
}

#[test]
fn pushes_dedupe_and_refuse_other_epochs() {
    let (fx, items) = honest();
    let mut state = state_of(&fx, &items);
    let len = state.len();
    for (a, f) in items.iter().take(50) {
        assert_eq!(f.push(&mut state, *a), Ok(Push::Duplicate));
        // A later arrival of the same proof changes nothing either.
        assert_eq!(
            f.push(&mut state, Arrival::new(a.seq + 1_000_000, a.at_ms + 1)),
            Ok(Push::Duplicate)
        );
    }
    assert_eq!(state.len(), len);
    assert_eq!(
        state.close(&fx.registry, close_time(&fx)).unwrap(),
        close(&fx, &items)
    );
    let Fact::Beacon(b) = items
        .iter()
        .find(|(_, f)| matches!(f, Fact::Beacon(_)))
        .unwrap()
        .1
    else {
        unreachable!()
    };
    let other = wisp_oracle::BeaconFact {
        epoch: EPOCH + 1,
        ..b
    };
    assert_eq!(
        state.push_beacon(Arrival::new(0, 0), &other),
        Err(Reason::WrongEpoch)
    );
    let counts = close(&fx, &items).rejection_counts();
    assert!(counts.is_empty());
}

#[test]
fn non_reciprocal_witnesses_never_take_a_paid_slot() {
    let (fx, items) = setup(EpochParams {
        witness_limit: 2,
        ..EpochParams::default()
    });
    let loner = fx.ids[8];
    let its_beacon = ids_of(&items, |f| matches!(f, Fact::Beacon(b) if b.node == loner))[0];
    // Node 8 never beacons, and its witnesses all arrive before anyone else's.
    let case: Vec<_> = items
        .iter()
        .filter(|(_, f)| match f {
            Fact::Beacon(b) => b.node != loner,
            Fact::Witness(w) => w.beacon_id != its_beacon,
            _ => true,
        })
        .map(|(a, f)| match f {
            Fact::Witness(w) if w.witness == loner => (Arrival::new(0, a.at_ms), *f),
            _ => (*a, *f),
        })
        .collect();
    let outcome = close(&fx, &case);
    let loner_witnesses = ids_of(
        &case,
        |f| matches!(f, Fact::Witness(w) if w.witness == loner),
    );
    assert!(!loner_witnesses.is_empty());
    for id in loner_witnesses {
        assert!(outcome.rejections.contains(&(id, Reason::NoReciprocity)));
    }
    for (id, f) in &outcome.nodes {
        if *id != loner {
            assert_eq!(
                f.beacon_witnesses, 2,
                "every beacon still pays two honest witnesses"
            );
        }
    }
}

/// The items with every receipt's figure replaced by `rate(prover, measurer, direction)`.
fn with_rates(
    fx: &Fixture,
    items: &[(Arrival, Fact)],
    rate: impl Fn(usize, usize, Direction) -> u64,
) -> Vec<(Arrival, Fact)> {
    let pool = wisp_oracle::MeasurerPool::new(fx.ids.iter().copied());
    let index = |id| fx.ids.iter().position(|x| *x == id).unwrap();
    items
        .iter()
        .map(|(a, f)| match f {
            Fact::Receipt(r) => {
                let (p, m) = (index(r.prover), index(r.measurer));
                let bytes = fx.receipt_bytes(p, m, r.direction, rate(p, m, r.direction));
                (
                    *a,
                    Fact::Receipt(fx.checker().receipt(&open(&bytes), &pool).unwrap()),
                )
            }
            _ => (*a, *f),
        })
        .collect()
}

/// Honest measurers agree: each prover's link has one rate, whoever measures it.
fn agreeing(p: usize, _m: usize, d: Direction) -> u64 {
    200_000_000 + p as u64 * 20_000_000 + if d == Direction::Up { 5_000_000 } else { 0 }
}

#[test]
fn a_measurer_that_shaves_two_links_within_the_window_is_struck() {
    let (mut fx, items) = honest();
    let items = with_rates(&fx, &items, agreeing);
    // Capacities come from an earlier epoch.
    let first = close(&fx, &items);
    assert!(first.penalties.is_empty(), "{:?}", first.penalties);
    fx.registry.apply_epoch(&first);
    assert!(close(&fx, &items).penalties.is_empty());
    let tested_by = |m: usize| -> Vec<usize> {
        (0..9)
            .filter(|p| {
                items.iter().any(|(_, f)| {
                    matches!(f, Fact::Receipt(r)
                        if r.measurer == fx.ids[m] && r.prover == fx.ids[*p])
                })
            })
            .collect()
    };
    let penalty = |o: &EpochOutcome, m: usize| {
        o.penalties
            .iter()
            .find(|(n, _)| *n == fx.ids[m])
            .map(|(_, r)| *r)
    };
    // Shaving a link to 30 % of what the others saw (below the floor even of the capacity
    // cap: a measurer slower than the prover is held to its own rated capacity).
    let shave = |m: usize, links: Vec<(usize, Direction)>| {
        with_rates(&fx, &items, move |p, mm, d| {
            let honest = agreeing(p, mm, d);
            if mm == m && links.contains(&(p, d)) {
                honest * 3 / 10
            } else {
                honest
            }
        })
    };
    let mut checked = 0;
    for m in 0..9 {
        let provers = tested_by(m);
        if provers.len() < 2 {
            continue;
        }
        // One disagreement in an epoch is not enough (one slow test happens)…
        let once = close(&fx, &shave(m, vec![(provers[0], Direction::Down)]));
        assert_eq!(penalty(&once, m), None, "measurer {m}");
        // …two are.
        let twice = close(
            &fx,
            &shave(
                m,
                vec![(provers[0], Direction::Down), (provers[1], Direction::Up)],
            ),
        );
        assert_eq!(
            penalty(&twice, m),
            Some(Reason::MeasurerDisagrees),
            "measurer {m}"
        );
        // Nobody else is struck for it.
        assert!(
            twice.penalties.iter().all(|(n, _)| *n == fx.ids[m]),
            "{:?}",
            twice.penalties
        );
        // One disagreement now and one in an earlier epoch of the window are two as well;
        // one from before the window is forgotten (a 4-epoch window here).
        let rules = RulesConfig {
            strike_window_epochs: 4,
            ..RulesConfig::permissionless()
        }
        .validate()
        .unwrap();
        let later_items = shave(m, vec![(provers[1], Direction::Up)]);
        for (ago, struck) in [(3, true), (4, false)] {
            let mut earlier = once.clone();
            for (_, marks) in &mut earlier.marks {
                for mark in marks {
                    mark.epoch -= ago;
                }
            }
            let mut registry = fx.registry.clone();
            registry.set_rules(rules.clone());
            registry.apply_epoch(&earlier);
            let later = state_of(&fx, &later_items)
                .close(&registry, close_time(&fx))
                .unwrap();
            assert_eq!(
                penalty(&later, m),
                struck.then_some(Reason::MeasurerDisagrees),
                "measurer {m}, the first disagreement {ago} epochs ago"
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} measurers checked");
}
