//! Determinism and invariants of whole runs: same seed → same event-log hash, a different
//! seed → a different one, adding a node leaves every other node's draws alone, and every
//! epoch pays exactly its emission without paying a refused proof.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::field_reassign_with_default
)]

use wisp_sim::cheaters::Archetype;
use wisp_sim::scenario::{PlacementKind, Scenario, Window};
use wisp_sim::sim::Sim;
use wisp_sim::world::World;

/// A small scenario that runs in about a second in a debug build.
fn small(nodes: u32) -> Scenario {
    let mut sc = Scenario::default();
    sc.name = "test".into();
    sc.seed = 11;
    sc.nodes = nodes;
    sc.days = 2.0 / 24.0;
    sc.epoch.duration_ms = 1_800_000;
    sc.epoch.slot_count = 30;
    sc.epoch.heartbeat_interval_ms = 600_000;
    sc.epoch.settle_ms = 120_000;
    sc.placement.kind = PlacementKind::Clustered;
    sc.placement.width_km = 4.0;
    sc.placement.height_km = 4.0;
    sc.placement.cities = 1;
    sc.placement.city_sigma_km = 0.5;
    sc.placement.suburb_sigma_km = 1.2;
    sc.radio.max_receivers_per_beacon = 10;
    sc.report.fair_baseline = false;
    sc
}

fn with_faults_and_cheaters(mut sc: Scenario) -> Scenario {
    sc.faults.loss = 0.05;
    sc.faults.churn_per_epoch = 0.05;
    sc.faults.crash_per_day = 2.0;
    sc.faults.restart_after_ms = 120_000;
    sc.faults.bad_clock_share = 0.05;
    sc.faults.partitions = vec![Window {
        start_h: 0.5,
        hours: 0.2,
        share: 0.2,
    }];
    sc.faults.oracle_down = vec![Window {
        start_h: 1.0,
        hours: 0.05,
        share: 0.0,
    }];
    let c = &mut sc.cheaters;
    c.fake_location = 0.02;
    c.collusion_ring = 0.03;
    c.forged_rssi = 0.02;
    c.relay = 0.02;
    c.inflated_gain = 0.02;
    c.sybil_farm = 0.03;
    c.bandwidth_inflation = 0.02;
    c.colluding_measurer = 0.02;
    c.fake_heartbeat = 0.02;
    c.ring_size = 3;
    c.farm_size = 3;
    sc
}

#[test]
fn same_seed_same_hash_different_seed_different_hash() {
    let sc = with_faults_and_cheaters(small(70));
    let a = Sim::new(&sc, false, false).unwrap().run();
    let b = Sim::new(&sc, false, false).unwrap().run();
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.events, b.events);
    assert!(a.events > 1000, "a run processes many events: {}", a.events);
    let mut other = sc.clone();
    other.seed += 1;
    let c = Sim::new(&other, false, false).unwrap().run();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn invariants_hold_under_faults_and_cheaters() {
    let sc = with_faults_and_cheaters(small(70));
    let out = Sim::new(&sc, false, false).unwrap().run();
    assert!(
        out.stats.violations.is_empty(),
        "{:?}",
        out.stats.violations
    );
    assert_eq!(out.stats.epochs.len() as u64, sc.epochs());
    for e in &out.stats.epochs {
        // Every epoch has earners here, so every epoch pays exactly its emission.
        assert_eq!(e.paid, u128::from(e.emission), "epoch {}", e.epoch);
        assert_eq!(e.by_archetype.iter().sum::<u128>(), e.paid);
    }
    // The faults happened.
    assert!(out.stats.lost > 0);
    assert!(out.stats.core_events.get("crash").copied().unwrap_or(0) > 0);
}

#[test]
fn adding_a_node_changes_no_other_nodes_draws() {
    let sc = with_faults_and_cheaters(small(60));
    let mut bigger = sc.clone();
    bigger.nodes += 1;
    let a = World::build(&sc, false).unwrap();
    let b = World::build(&bigger, false).unwrap();
    let mut compared = 0;
    for (x, y) in a.nodes.iter().zip(&b.nodes).take(sc.nodes as usize) {
        if x.role.archetype != Archetype::Honest {
            // Group sizes (rings, farms) depend on the number of nodes; honest nodes do not.
            continue;
        }
        assert_eq!(x.id, y.id);
        assert_eq!(x.role, y.role);
        assert_eq!(x.phys, y.phys);
        assert_eq!(x.cell, y.cell);
        assert_eq!(x.link, y.link);
        assert_eq!(x.clock_skew_ms, y.clock_skew_ms);
        assert_eq!(x.profile, y.profile);
        compared += 1;
    }
    assert!(compared > 40);
    // Links between existing honest nodes keep their shadowing.
    let i = a
        .nodes
        .iter()
        .position(|n| {
            n.role.archetype == Archetype::Honest && !a.neighbours[n.idx as usize].is_empty()
        })
        .unwrap();
    for (rx, mean) in &a.neighbours[i] {
        if a.nodes[*rx as usize].role.archetype == Archetype::Honest {
            assert!(b.neighbours[i].contains(&(*rx, *mean)));
        }
    }
}
