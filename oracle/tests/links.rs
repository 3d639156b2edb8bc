//! The links of an epoch judged together (`wisp_oracle::links::judge`): table tests of who is
//! blamed for what, and who is not.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::collections::{BTreeMap, BTreeSet};

use wisp_oracle::config::RulesConfig;
use wisp_oracle::links::{self, Judgement, Observation};
use wisp_protocol::{NodeId, ProofId};

const BAND: u8 = 1;

fn node(i: u32) -> NodeId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    NodeId(b)
}

/// `rx` heard `tx` at `d` metres (log-distance, exponent 3), `lag` ms after it was sent.
fn link(tx: u32, rx: u32, d: u32, lag: i32) -> Observation {
    let path_loss = 400.0 + 300.0 * f64::from(d.max(1)).log10();
    let mut seed = Vec::new();
    seed.extend_from_slice(&tx.to_be_bytes());
    seed.extend_from_slice(&rx.to_be_bytes());
    Observation {
        id: ProofId::of(&seed),
        tx: node(tx),
        rx: node(rx),
        band: BAND,
        distance_m: d,
        path_loss_decidb: path_loss as i16,
        rssi_decidbm: (200.0 - path_loss) as i16,
        lag_ms: lag,
    }
}

/// Both ways.
fn pair(a: u32, b: u32, d: u32, lag: i32) -> [Observation; 2] {
    [link(a, b, d, lag), link(b, a, d, lag)]
}

/// A town: nodes 0..100 on a 10 × 10 grid, 200 m apart, heard both ways up to 450 m with 1 ms
/// of lag: the honest background that sets the band's reach (≈ 447 m) and floor.
fn town() -> Vec<Observation> {
    let mut out = Vec::new();
    for a in 0..100u32 {
        for b in (a + 1)..100u32 {
            let (dx, dy) = (
                f64::from(a % 10) - f64::from(b % 10),
                f64::from(a / 10) - f64::from(b / 10),
            );
            let d = 200.0 * dx.hypot(dy);
            if d <= 450.0 {
                out.extend(pair(a, b, d.round() as u32, 1));
            }
        }
    }
    out
}

fn judge(obs: &[Observation], contradicted: &[(u32, u32)]) -> Judgement {
    let contradicted: Vec<(NodeId, NodeId)> = contradicted
        .iter()
        .map(|(a, b)| (node(*a), node(*b)))
        .collect();
    links::judge(
        obs,
        &contradicted,
        &BTreeMap::new(),
        &RulesConfig::default(),
    )
}

#[test]
fn the_town_sets_reach_and_floor_and_blames_nobody() {
    let j = judge(&town(), &[]);
    let band = j.bands.get(&BAND).unwrap();
    let reach = band.reach_m.unwrap();
    assert!((440..=450).contains(&reach), "reach {reach}");
    assert!(band.floor_decidbm.is_some());
    assert!(j.implausible.is_empty() && j.unpaid.is_empty() && j.too_weak.is_empty());
    assert!(j.misplaced.is_empty() && j.far_heard.is_empty() && j.delayed.is_empty());
}

#[test]
fn a_beacon_heard_far_beyond_reach_is_implausible_and_the_witness_answers_for_it() {
    let mut obs = town();
    // Node 5 claims to hear node 500, 5 km away (a relay's sniffer heard it).
    let far = link(500, 5, 5_000, 1);
    // Node 6 hears node 501 at 1 km: beyond twice the reach (not paid) but not implausible.
    let long = link(501, 6, 1_000, 1);
    obs.push(far);
    obs.push(long);
    let j = judge(&obs, &[]);
    assert!(j.implausible.contains(&far.id) && j.unpaid.contains(&far.id));
    assert!(!j.implausible.contains(&long.id) && j.unpaid.contains(&long.id));
    assert_eq!(j.far_heard.get(&node(5)).unwrap().len(), 1);
    // The beaconer a relay "heard" is not blamed.
    assert!(!j.far_heard.contains_key(&node(500)));
    assert!(!j.far_heard.contains_key(&node(6)));
}

#[test]
fn a_signal_below_the_floor_is_too_weak() {
    let mut obs = town();
    let mut weak = link(3, 4, 200, 1);
    weak.id = ProofId::of(b"weak");
    weak.tx = node(700);
    weak.rssi_decidbm = -1_200;
    obs.push(weak);
    let j = judge(&obs, &[]);
    assert!(j.too_weak.contains(&weak.id));
    assert_eq!(j.too_weak.len(), 1);
}

#[test]
fn liars_are_misplaced_and_their_sparse_honest_neighbour_is_not() {
    // Node 900, honest and sparse: 4 honest partners (heard both ways) and 3 liars (1000..1003)
    // whose links with it contradict their asserted places. Each liar also contradicts three
    // honest town nodes. Without the liars' explanation, 900 would have 3 bad partners of 7.
    let mut obs = town();
    for p in [0, 1, 2, 3] {
        obs.extend(pair(900, p, 300, 1));
    }
    let mut contradicted = Vec::new();
    for (k, liar) in [1000u32, 1001, 1002].into_iter().enumerate() {
        for honest in [900, 20 + k as u32, 40 + k as u32, 60 + k as u32] {
            contradicted.push((liar, honest));
            contradicted.push((honest, liar));
        }
    }
    let j = judge(&obs, &contradicted);
    for liar in [1000, 1001, 1002] {
        assert!(j.misplaced.contains(&node(liar)), "liar {liar}");
    }
    assert!(!j.misplaced.contains(&node(900)));
    // What the liars explain is not the honest witnesses' word.
    assert!(j.far_heard.is_empty(), "{:?}", j.far_heard);
}

#[test]
fn two_cheaters_just_started_are_in_doubt_and_their_common_neighbour_is_not_blamed() {
    // The corner of a small network: a false place (800) and a relay heard both ways (801)
    // have just started, each contradicted both ways by two honest partners only (too few to
    // be misplaced). Node 5 heard both: two far beaconers, which would strike it, though one
    // false place each explains its links better than its own word.
    let obs = town();
    let mut contradicted = Vec::new();
    for (cheater, honest) in [(800, 5), (800, 6), (801, 5), (801, 7)] {
        contradicted.push((cheater, honest));
        contradicted.push((honest, cheater));
    }
    let j = judge(&obs, &contradicted);
    assert!(j.misplaced.is_empty(), "{:?}", j.misplaced);
    for honest in [5, 6, 7] {
        assert!(
            !j.far_heard.contains_key(&node(honest)),
            "{:?}",
            j.far_heard
        );
        assert!(!j.relayed.contains_key(&node(honest)), "{:?}", j.relayed);
    }
}

#[test]
fn a_witness_in_doubt_still_answers_for_the_beaconers_it_heard_from_afar() {
    // Node 950 reports two town nodes from afar, and they hear it back from afar too (a
    // relay that also transmits): 950 is in doubt, its partners are not, so it answers for
    // both; the honest town nodes do not answer for hearing it.
    let obs = town();
    let mut contradicted = Vec::new();
    for honest in [10, 11] {
        contradicted.push((honest, 950));
        contradicted.push((950, honest));
    }
    let j = judge(&obs, &contradicted);
    assert!(j.misplaced.is_empty(), "{:?}", j.misplaced);
    assert_eq!(j.far_heard.get(&node(950)).map(BTreeSet::len), Some(2));
    assert!(!j.far_heard.contains_key(&node(10)), "{:?}", j.far_heard);
    assert!(!j.far_heard.contains_key(&node(11)), "{:?}", j.far_heard);
}

#[test]
fn a_one_way_contradiction_is_the_witnesss_word() {
    // Node 950 claims, three times, beacons of town nodes that contradict their places; the
    // town nodes never hear it: nobody is misplaced, 950 answers for three beaconers, whose
    // places their partners corroborate (so these count as relayed, per epoch).
    let obs = town();
    let contradicted = [(10, 950), (11, 950), (12, 950)];
    let j = judge(&obs, &contradicted);
    assert!(j.misplaced.is_empty());
    assert_eq!(j.relayed.get(&node(950)).unwrap().len(), 3);
    assert!(j.far_heard.is_empty(), "{:?}", j.far_heard);
    assert!(!j.relayed.contains_key(&node(10)));
    // Without partners to corroborate them, the same beaconers could be liars next to 950:
    // its word, counted per beaconer.
    let j = judge(&[], &contradicted);
    assert_eq!(j.far_heard.get(&node(950)).unwrap().len(), 3);
    assert!(j.relayed.is_empty());
}

#[test]
fn a_relay_is_slow_with_its_partners_and_its_neighbour_is_not() {
    let mut obs = town();
    // Node 800 hears node 55 over the internet (200 ms); 55 hears it on the air.
    obs.push(link(55, 800, 300, 200));
    obs.push(link(800, 55, 300, 1));
    let j = judge(&obs, &[]);
    assert_eq!(
        j.delayed
            .get(&node(800))
            .map(|s| s.iter().copied().collect::<Vec<_>>()),
        Some(vec![node(55)])
    );
    // 55 has one slow partner among many.
    assert!(!j.delayed.contains_key(&node(55)));
}

#[test]
fn a_ring_is_slow_with_every_partner() {
    let mut obs = town();
    let ring = [1200u32, 1201, 1202, 1203];
    for (i, a) in ring.iter().enumerate() {
        for b in &ring[i + 1..] {
            // Each member's beacons reach the others over the internet: 40 ms each way.
            obs.extend(pair(*a, *b, 400, 40));
        }
    }
    let j = judge(&obs, &[]);
    for m in ring {
        assert_eq!(
            j.delayed.get(&node(m)).map(|s| s.len()),
            Some(3),
            "member {m}"
        );
    }
    assert_eq!(j.delayed.len(), 4);
}

#[test]
fn a_node_that_reports_its_partners_loud_has_positive_offsets() {
    let mut obs = town();
    // Node 44 reports every partner 20 dB louder than it is.
    for o in obs.iter_mut().filter(|o| o.rx == node(44)) {
        o.rssi_decidbm += 200;
        o.path_loss_decidb -= 200;
    }
    let j = judge(&obs, &[]);
    let offsets = j.level_offsets.get(&node(44)).unwrap();
    assert!(offsets.len() >= 3);
    let mut v: Vec<i32> = offsets.iter().map(|(_, d)| *d).collect();
    v.sort_unstable();
    assert!(v[v.len() / 2] >= 150, "{v:?}");
    // Its partners see the mirror image: it is no evidence against them.
    let partner = j.level_offsets.get(&node(45)).unwrap();
    let loud: Vec<i32> = partner
        .iter()
        .filter(|(p, _)| *p == node(44))
        .map(|(_, d)| *d)
        .collect();
    assert!(
        loud.iter().all(|d| *d <= 0) && loud.contains(&-200),
        "{loud:?}"
    );
}

#[test]
fn groups_count_connected_nodes() {
    let g = links::groups([(node(1), node(2)), (node(2), node(3)), (node(7), node(8))]);
    assert_eq!(g.get(&node(3)), Some(&(node(1), 3)));
    assert_eq!(g.get(&node(8)), Some(&(node(7), 2)));
    assert!(!g.contains_key(&node(4)));
}

#[test]
fn a_far_one_way_beacon_from_a_corroborated_beaconer_is_relayed() {
    let mut obs = town();
    // Node 5's sniffer hears town node 55, whose place its town partners corroborate, 5 km
    // away; 55 never hears 5.
    obs.push(link(55, 5, 5_000, 1));
    let j = judge(&obs, &[]);
    assert_eq!(j.relayed.get(&node(5)).unwrap().len(), 1);
    assert!(!j.far_heard.contains_key(&node(5)), "{:?}", j.far_heard);
    assert!(!j.relayed.contains_key(&node(55)));
}

#[test]
fn a_far_one_way_beacon_from_an_uncorroborated_beaconer_is_the_witnesss_word_even_late() {
    let mut obs = town();
    // Node 500 has no partner to corroborate its place: it may be a liar standing next to the
    // witness, and it signs its beacons' send time, so a late one says nothing either.
    obs.push(link(500, 5, 5_000, 1));
    obs.push(link(501, 6, 5_000, 900));
    let j = judge(&obs, &[]);
    assert_eq!(j.far_heard.get(&node(5)).unwrap().len(), 1);
    assert_eq!(j.far_heard.get(&node(6)).unwrap().len(), 1);
    assert!(j.relayed.is_empty(), "{:?}", j.relayed);
}

#[test]
fn a_far_link_heard_both_ways_is_not_relayed() {
    let mut obs = town();
    // A far pair heard both ways: one of the two places is false, nobody relayed.
    obs.extend(pair(55, 5, 5_000, 1));
    let j = judge(&obs, &[]);
    assert!(j.relayed.is_empty(), "{:?}", j.relayed);
}

/// A sparse pair 300 m from the town's nodes (so its links are typical of their length),
/// with `forged` added to what node 901 reports of node 900's beacons and `grief` taken
/// off what 900 reports of 901's (tenths of dB).
fn sparse_pair(forged: i16, grief: i16) -> Judgement {
    let mut obs = town();
    let [mut a, mut b] = pair(900, 901, 300, 1);
    // a: 901 heard 900; b: 900 heard 901.
    a.path_loss_decidb -= forged;
    a.rssi_decidbm += forged;
    b.path_loss_decidb += grief;
    b.rssi_decidbm -= grief;
    obs.push(a);
    obs.push(b);
    judge(&obs, &[])
}

fn pair_offset(j: &Judgement, of: u32, with: u32) -> i32 {
    j.pair_offsets[&node(of)]
        .iter()
        .find(|(p, _)| *p == node(with))
        .unwrap()
        .1
}

#[test]
fn a_pair_offset_counts_against_the_node_whose_own_report_is_unusual() {
    // 901 reports 900 20 dB louder than links of that length are heard: its offset counts.
    let j = sparse_pair(200, 0);
    assert_eq!(pair_offset(&j, 901, 900), 200);
    assert_eq!(pair_offset(&j, 900, 901), -200);
    // 900 reports 901 20 dB weaker than links of that length are heard (it under-reports its
    // partner, or 901 claims a gain it does not have): the pair cannot tell which, and 901's
    // offset does not count against it.
    let j = sparse_pair(0, 200);
    assert_eq!(pair_offset(&j, 901, 900), 0);
    assert_eq!(pair_offset(&j, 900, 901), -200);
    // An honest pair: fading only.
    let j = sparse_pair(15, 0);
    assert_eq!(pair_offset(&j, 901, 900), 15);
}
