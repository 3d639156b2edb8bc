//! Each cheater archetype alone in a small network: the archetypes the rules can catch are
//! flagged (a tenth of their proofs refused for reasons that point at them) and earn less
//! than honest nodes; for those no rule catches, the test pins down the honest numbers — what
//! they get away with — so that a rule change that closes the gap shows up here.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::field_reassign_with_default
)]

use wisp_sim::cheaters::Archetype;
use wisp_sim::report::{self, ArchetypeRow};
use wisp_sim::scenario::{PlacementKind, Scenario};
use wisp_sim::sim::Sim;

fn scenario(arch: Archetype) -> Scenario {
    let mut sc = Scenario::default();
    sc.name = arch.name().into();
    sc.seed = 5;
    sc.nodes = 90;
    sc.days = 2.0 / 24.0;
    sc.epoch.duration_ms = 1_800_000;
    sc.epoch.slot_count = 30;
    sc.epoch.heartbeat_interval_ms = 600_000;
    sc.epoch.settle_ms = 120_000;
    sc.placement.kind = PlacementKind::Clustered;
    sc.placement.width_km = 5.0;
    sc.placement.height_km = 5.0;
    sc.placement.cities = 1;
    sc.placement.city_sigma_km = 0.5;
    sc.placement.suburb_sigma_km = 1.2;
    sc.radio.max_receivers_per_beacon = 10;
    sc.report.fair_baseline = false;
    let c = &mut sc.cheaters;
    c.ring_size = 4;
    c.farm_size = 4;
    // Accomplices inside this small area, so that they hear beacons to relay.
    c.relay_distance_km = [1.0, 2.5];
    let share = 0.12;
    match arch {
        Archetype::FakeLocation => c.fake_location = share,
        Archetype::CollusionRing => c.collusion_ring = share,
        Archetype::ForgedRssi => c.forged_rssi = share,
        Archetype::Relay => c.relay = share,
        Archetype::InflatedGain => c.inflated_gain = share,
        Archetype::SybilFarm => c.sybil_farm = share,
        Archetype::BandwidthInflation => c.bandwidth_inflation = share,
        Archetype::ColludingMeasurer => c.colluding_measurer = share,
        Archetype::FakeHeartbeat => c.fake_heartbeat = share,
        Archetype::Honest => {}
    }
    sc
}

fn row(arch: Archetype) -> (ArchetypeRow, ArchetypeRow) {
    let sc = scenario(arch);
    let out = Sim::new(&sc, false, false).unwrap().run();
    assert!(
        out.stats.violations.is_empty(),
        "{:?}",
        out.stats.violations
    );
    let r = report::build(&sc, &out, None);
    let get = |name: &str| {
        r.archetypes
            .iter()
            .find(|a| a.archetype == name)
            .unwrap()
            .clone()
    };
    let (c, h) = (get(arch.name()), get("honest"));
    println!(
        "{}: {} ids, flagged {}, recall {:.2}, precision {:.2}, mean vs honest {:.3}, reasons {:?}",
        c.archetype, c.nodes, c.flagged, c.recall, c.precision, c.vs_honest, c.top_reasons
    );
    assert!(c.nodes > 0, "the scenario has {} cheaters", arch.name());
    (c, h)
}

fn caught(arch: Archetype) {
    let (c, _) = row(arch);
    assert!(c.recall >= 0.5, "{}: recall {}", c.archetype, c.recall);
    assert!(
        c.vs_honest < 1.0,
        "{}: earns {} × honest",
        c.archetype,
        c.vs_honest
    );
}

#[test]
fn fake_location_is_caught() {
    caught(Archetype::FakeLocation);
}

/// Partly caught: some proofs refused for `reasons`, and less earned than honest nodes.
fn partly_caught(arch: Archetype, reasons: &[&str]) {
    let (c, _) = row(arch);
    assert!(c.flagged >= 1, "{}: none flagged", c.archetype);
    assert!(
        c.top_reasons
            .iter()
            .any(|(r, n)| reasons.contains(&r.as_str()) && *n > 0),
        "{}: {:?}",
        c.archetype,
        c.top_reasons
    );
    assert!(
        c.vs_honest < 1.0,
        "{}: earns {} × honest",
        c.archetype,
        c.vs_honest
    );
}

#[test]
fn forged_rssi_is_partly_caught() {
    // Too strong only when +20 dB crosses the free-space bound; a constant only after five
    // equal readings in one epoch.
    partly_caught(
        Archetype::ForgedRssi,
        &["rssi_too_strong", "signal_implausible"],
    );
}

#[test]
fn sybil_farm_is_caught() {
    caught(Archetype::SybilFarm);
}

#[test]
fn relay_is_partly_caught() {
    // Relays later than the lag bound are refused; prompt ones with a plausible RSSI pass.
    partly_caught(
        Archetype::Relay,
        &["witness_lag", "rssi_too_strong", "too_far"],
    );
}

#[test]
fn bandwidth_inflation_is_caught() {
    caught(Archetype::BandwidthInflation);
}

#[test]
fn fake_heartbeat_is_caught_or_paid_only_uptime() {
    caught(Archetype::FakeHeartbeat);
}

#[test]
fn collusion_ring_profits() {
    // A ring that forges physically plausible RSSI between plausibly spaced cells passes the
    // per-proof rules; only some members trip the constant-signal rule. It earns more than
    // honest nodes: the gap the README's quality section names.
    let (c, _) = row(Archetype::CollusionRing);
    assert!(c.recall < 0.5, "recall {}", c.recall);
    assert!(c.vs_honest > 1.0, "the ring earns {} × honest", c.vs_honest);
}

#[test]
fn inflated_gain_is_not_caught_by_any_rule() {
    let (c, _) = row(Archetype::InflatedGain);
    assert!(c.recall < 0.5, "recall {}", c.recall);
}

#[test]
fn colluding_measurers_gain_little() {
    // Two distinct measurers and the lower median mean one colluder cannot set a rating.
    let (c, _) = row(Archetype::ColludingMeasurer);
    assert_eq!(c.flagged, 0);
    assert!(c.vs_honest < 1.5, "colluders earn {} × honest", c.vs_honest);
}
