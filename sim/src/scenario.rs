//! Scenario files (TOML): what network to build, what happens to it, who cheats.
//!
//! Every key is optional and has the default shown in [`Scenario::default`] and in the README
//! ("Simulator" → "Scenario keys"). Unknown keys are refused, so a typo is an error instead of
//! a silently ignored setting. Command-line flags (`--seed`, `--nodes`, `--days`) override the
//! file.

use serde::{Deserialize, Serialize};
use wisp_oracle_core::RulesConfig;

/// A whole scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Free text shown in the report. Default "".
    pub name: String,
    /// The run's seed. Default 1.
    pub seed: u64,
    /// Hotspots (cheaters included; helper identities of cheaters come on top). Default 200.
    pub nodes: u32,
    /// Simulated days. Default 1.0.
    pub days: f64,
    /// Reward units emitted per epoch. Default 1 000 000 000.
    pub emission_per_epoch: u64,
    /// Epoch parameters (what the oracle puts in each seed).
    pub epoch: EpochCfg,
    /// Where nodes are.
    pub placement: PlacementCfg,
    /// Radio model.
    pub radio: RadioCfg,
    /// Backhaul model and bandwidth tests.
    pub backhaul: BackhaulCfg,
    /// Faults.
    pub faults: FaultsCfg,
    /// Cheaters.
    pub cheaters: CheatersCfg,
    /// The oracle.
    pub oracle: OracleCfg,
    /// What the report computes.
    pub report: ReportCfg,
    /// The usage model (off by default).
    pub usage: crate::usage::UsageCfg,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: String::new(),
            seed: 1,
            nodes: 200,
            days: 1.0,
            emission_per_epoch: 1_000_000_000,
            epoch: EpochCfg::default(),
            placement: PlacementCfg::default(),
            radio: RadioCfg::default(),
            backhaul: BackhaulCfg::default(),
            faults: FaultsCfg::default(),
            cheaters: CheatersCfg::default(),
            oracle: OracleCfg::default(),
            report: ReportCfg::default(),
            usage: crate::usage::UsageCfg::default(),
        }
    }
}

/// Epoch parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpochCfg {
    /// Epoch length. Default 3 600 000 ms (one hour).
    pub duration_ms: u64,
    /// Beacon slots per epoch. Default 60.
    pub slot_count: u32,
    /// Paid witnesses per beacon. Default 14.
    pub witness_limit: u16,
    /// Measurers assigned per prover. Default 3.
    pub measurers_per_prover: u8,
    /// Heartbeat interval. Default 300 000 ms.
    pub heartbeat_interval_ms: u32,
    /// Settle window after the epoch's end. Default 600 000 ms.
    pub settle_ms: u32,
}

impl Default for EpochCfg {
    fn default() -> Self {
        EpochCfg {
            duration_ms: 3_600_000,
            slot_count: 60,
            witness_limit: 14,
            measurers_per_prover: 3,
            heartbeat_interval_ms: 300_000,
            settle_ms: 600_000,
        }
    }
}

/// Placement models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementKind {
    /// Uniform over the area.
    Uniform,
    /// Cities (dense Gaussian cores) with suburbs around them, the rest rural.
    Clustered,
    /// From a CSV file of `lat,lon` lines.
    Csv,
}

/// Where nodes are.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementCfg {
    /// `uniform`, `clustered` or `csv`. Default `clustered`.
    pub kind: PlacementKind,
    /// Centre of the area, degrees. Default 38.72.
    pub center_lat: f64,
    /// Centre of the area, degrees. Default −9.14.
    pub center_lon: f64,
    /// Area width, km. Default 20.
    pub width_km: f64,
    /// Area height, km. Default 20.
    pub height_km: f64,
    /// Clustered: number of cities. Default 2.
    pub cities: u32,
    /// Clustered: standard deviation of a city core, km. Default 1.0.
    pub city_sigma_km: f64,
    /// Clustered: standard deviation of the suburbs around a city, km. Default 4.0.
    pub suburb_sigma_km: f64,
    /// Clustered: share of nodes in city cores. Default 0.5.
    pub city_share: f64,
    /// Clustered: share in suburbs (the rest is uniform, "rural"). Default 0.35.
    pub suburb_share: f64,
    /// CSV file of `lat,lon` (a header line is skipped); used cyclically if shorter than
    /// `nodes`. Default "".
    pub csv: String,
}

impl Default for PlacementCfg {
    fn default() -> Self {
        PlacementCfg {
            kind: PlacementKind::Clustered,
            center_lat: 38.72,
            center_lon: -9.14,
            width_km: 20.0,
            height_km: 20.0,
            cities: 2,
            city_sigma_km: 1.0,
            suburb_sigma_km: 4.0,
            city_share: 0.5,
            suburb_share: 0.35,
            csv: String::new(),
        }
    }
}

/// Radio model.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadioCfg {
    /// Radio profiles nodes are drawn from (`wifi24`, `wifi5`, `wifi6`, `wifi60`). Default
    /// `["wifi24"]`.
    pub profiles: Vec<String>,
    /// Relative weights of `profiles` (same length, or empty for equal). Default `[]`.
    pub weights: Vec<f64>,
    /// At most this many receivers decode one beacon (a random subset of those that hear
    /// it): radios serving clients scan only part of the time. Default 16.
    pub max_receivers_per_beacon: u32,
    /// The agent's own bound on witnesses per epoch (`CoreConfig::max_witnesses_per_epoch`).
    /// Default 512.
    pub max_witnesses_per_epoch: u32,
}

impl Default for RadioCfg {
    fn default() -> Self {
        RadioCfg {
            profiles: vec!["wifi24".into()],
            weights: Vec::new(),
            max_receivers_per_beacon: 16,
            max_witnesses_per_epoch: 512,
        }
    }
}

/// Backhaul model and bandwidth tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackhaulCfg {
    /// Run a round of bandwidth tests every this many epochs (0: never). Default 1.
    pub test_every_epochs: u32,
    /// Share of provers tested in a round. Default 1.0.
    pub tested_share: f64,
    /// Median downlink capacity, Mbit/s (log-normal). Default 200.
    pub down_median_mbps: f64,
    /// Log-normal sigma of capacities (natural log). Default 0.8.
    pub capacity_sigma: f64,
    /// Uplink as a share of downlink. Default 0.3.
    pub up_ratio: f64,
    /// Median access RTT, ms (log-normal, sigma 0.5). Default 20.
    pub rtt_median_ms: f64,
}

impl Default for BackhaulCfg {
    fn default() -> Self {
        BackhaulCfg {
            test_every_epochs: 1,
            tested_share: 1.0,
            down_median_mbps: 200.0,
            capacity_sigma: 0.8,
            up_ratio: 0.3,
            rtt_median_ms: 20.0,
        }
    }
}

/// A window of time, hours from the start of the run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start, hours after the run's start.
    pub start_h: f64,
    /// Length, hours.
    pub hours: f64,
    /// For partitions: the share of nodes cut off (the westernmost ones). Ignored otherwise.
    #[serde(default)]
    pub share: f64,
}

/// Faults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsCfg {
    /// Probability that one delivery attempt of a proof to the oracle is lost (the agent's
    /// outbox resends it). Default 0.0.
    pub loss: f64,
    /// Outbox resend delay after a lost attempt. Default 30 000 ms.
    pub retry_ms: u64,
    /// Standard deviation of node clock offsets. Default 50 ms.
    pub clock_sigma_ms: f64,
    /// Share of nodes with a badly set clock. Default 0.0.
    pub bad_clock_share: f64,
    /// Offset of a badly set clock (sign drawn). Default 30 000 ms.
    pub bad_clock_ms: i64,
    /// Probability that a node is powered off for a whole epoch. Default 0.0.
    pub churn_per_epoch: f64,
    /// Probability per node per day of a crash at a random moment. Default 0.0.
    pub crash_per_day: f64,
    /// Downtime after a crash before the agent restarts. Default 600 000 ms.
    pub restart_after_ms: u64,
    /// Network partitions: the westernmost `share` of nodes cannot reach the oracle (their
    /// outboxes hold proofs until it heals). Default none.
    pub partitions: Vec<Window>,
    /// Oracle and broker downtime: no seed is published and nothing is received (outboxes
    /// hold proofs, seeds are published when it returns). Default none.
    pub oracle_down: Vec<Window>,
}

impl Default for FaultsCfg {
    fn default() -> Self {
        FaultsCfg {
            loss: 0.0,
            retry_ms: 30_000,
            clock_sigma_ms: 50.0,
            bad_clock_share: 0.0,
            bad_clock_ms: 30_000,
            churn_per_epoch: 0.0,
            crash_per_day: 0.0,
            restart_after_ms: 600_000,
            partitions: Vec::new(),
            oracle_down: Vec::new(),
        }
    }
}

/// Cheaters: each archetype is a share of `nodes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheatersCfg {
    /// Asserts a cell far from where it is, and spoofs GNSS to match. Default 0.0.
    pub fake_location: f64,
    /// Rings of nodes in one house, asserting spread-out cells and witnessing each other's
    /// beacons relayed over the internet with plausible forged RSSI. Default 0.0.
    pub collusion_ring: f64,
    /// Forges the RSSI of real receptions: half report it 20 dB too strong, half a constant.
    /// Default 0.0.
    pub forged_rssi: f64,
    /// Witnesses beacons a remote accomplice relays over the internet (some late, some
    /// replays of an earlier epoch's beacons). Default 0.0.
    pub relay: f64,
    /// Onboards and beacons with an antenna gain 12 dB above the real one, and witnesses
    /// relayed far beacons the inflated gain would make plausible. Default 0.0.
    pub inflated_gain: f64,
    /// Sybil farms: many ids on one device in one place. Default 0.0.
    pub sybil_farm: f64,
    /// Fabricates bandwidth receipts for itself, signed by two helper ids it onboarded.
    /// Default 0.0.
    pub bandwidth_inflation: f64,
    /// Measurers that report 2 Gbit/s for fellow colluders they are assigned to. Default 0.0.
    pub colluding_measurer: f64,
    /// Nodes without a working radio that fake heartbeats: half send them live, half send
    /// the whole epoch's back-dated at its end. Default 0.0.
    pub fake_heartbeat: f64,
    /// Members per collusion ring. Default 5.
    pub ring_size: u32,
    /// Cheaters that know the rules and try to stay under them: relays, rings and
    /// inflated-gain accomplices report the time a beacon was on the air, not when it reached
    /// them (no slow round trip); forged RSSI is 6 dB too strong instead of 20; colluding
    /// measurers report 70 % of what they measured of outsiders instead of 40 %. Default
    /// false.
    pub evasive: bool,
    /// Ids per Sybil farm. Default 8.
    pub farm_size: u32,
    /// How far a fake location is from the truth, km (uniform). Default [3, 30].
    pub fake_distance_km: [f64; 2],
    /// How far a relay's accomplice is, km (uniform). Default [3, 20].
    pub relay_distance_km: [f64; 2],
}

impl Default for CheatersCfg {
    fn default() -> Self {
        CheatersCfg {
            fake_location: 0.0,
            collusion_ring: 0.0,
            forged_rssi: 0.0,
            relay: 0.0,
            inflated_gain: 0.0,
            sybil_farm: 0.0,
            bandwidth_inflation: 0.0,
            colluding_measurer: 0.0,
            fake_heartbeat: 0.0,
            ring_size: 5,
            evasive: false,
            farm_size: 8,
            fake_distance_km: [3.0, 30.0],
            relay_distance_km: [3.0, 20.0],
        }
    }
}

impl CheatersCfg {
    /// The archetype shares in [`crate::cheaters::Archetype::CHEATERS`] order.
    pub fn shares(&self) -> [f64; 9] {
        [
            self.fake_location,
            self.collusion_ring,
            self.forged_rssi,
            self.relay,
            self.inflated_gain,
            self.sybil_farm,
            self.bandwidth_inflation,
            self.colluding_measurer,
            self.fake_heartbeat,
        ]
    }
}

/// The oracle.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OracleCfg {
    /// Share of envelopes whose signatures the oracle verifies (by proof id hash). Below 1.0
    /// only for the largest scenarios: every signature is still made for real. Default 1.0.
    pub verify_fraction: f64,
    /// Proofs verified per batch (ed25519 batch verification on all cores). Default 2048.
    pub ingest_batch: usize,
    /// Delay from a node to the oracle (broker hop), ms. Default 200.
    pub delivery_ms: u64,
    /// The rules (`RulesConfig` keys of wisp-oracle). Default: the oracle's defaults with
    /// `permissionless = true` (nodes onboard without a secure element).
    pub rules: RulesConfig,
}

impl Default for OracleCfg {
    fn default() -> Self {
        OracleCfg {
            verify_fraction: 1.0,
            ingest_batch: 2048,
            delivery_ms: 200,
            rules: RulesConfig::permissionless(),
        }
    }
}

/// What the report computes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportCfg {
    /// Run the scenario a second time with every cheater behaving honestly, to measure the
    /// honest nodes' fair reward. Default true.
    pub fair_baseline: bool,
}

impl Default for ReportCfg {
    fn default() -> Self {
        ReportCfg {
            fair_baseline: true,
        }
    }
}

impl Scenario {
    /// Parses a scenario file's text.
    pub fn from_toml(text: &str) -> Result<Scenario, toml::de::Error> {
        toml::from_str(text)
    }

    /// Number of epochs the run covers.
    pub fn epochs(&self) -> u64 {
        let total_ms = self.days.max(0.0) * 86_400_000.0;
        let d = self.epoch.duration_ms.max(1) as f64;
        // A positive count that fits easily: days are bounded by what a run can simulate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (total_ms / d).ceil() as u64;
        n.max(1)
    }
}
