//! The tiny network the usage tests run on.
#![allow(clippy::field_reassign_with_default)]

use wisp_sim::scenario::{PlacementKind, Scenario};

/// 60 hotspots in one town over four hourly epochs, 80 subscribers at their peak, the fair
/// baseline on; the caller adds its cheaters and carriers.
pub(crate) fn tiny_usage(name: &str, seed: u64) -> Scenario {
    let mut sc = Scenario::default();
    sc.name = name.into();
    sc.seed = seed;
    sc.nodes = 60;
    sc.days = 4.0 / 24.0;
    sc.epoch.duration_ms = 3_600_000;
    sc.epoch.slot_count = 20;
    sc.epoch.heartbeat_interval_ms = 600_000;
    sc.epoch.settle_ms = 120_000;
    sc.placement.kind = PlacementKind::Clustered;
    sc.placement.width_km = 3.0;
    sc.placement.height_km = 3.0;
    sc.placement.cities = 1;
    sc.placement.city_sigma_km = 0.4;
    sc.placement.suburb_sigma_km = 1.0;
    sc.radio.max_receivers_per_beacon = 8;
    sc.backhaul.test_every_epochs = 1;
    sc.report.fair_baseline = true;
    sc.usage.subscribers = 80;
    sc.usage.peak_hour = 2.0;
    sc
}
