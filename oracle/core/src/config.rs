//! The oracle's rule parameters: raw configuration ([`RulesConfig`], deserialized from TOML)
//! and its validated form ([`Rules`]), in two stages so that every mistake is reported once,
//! at start-up, with the key that caused it.
//!
//! Every key has a default that is safe for a production network: thresholds err on the side
//! of honest nodes (a rule must never reject a proof an honest device can produce), and the
//! network is permissioned (attestation required) unless the operator says otherwise. Radio
//! levels are in tenths of a decibel (`*_decidb`, `*_decidbm`) like on the wire, shares and
//! multipliers in basis points (`*_bps`, 10 000 = 100 %), times in milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use wisp_protocol::msg::MAKER_MAX;
use wisp_protocol::{NodeId, physics};

/// Basis points in one whole: 10 000 bps = 100 %.
pub const BPS: u16 = 10_000;

/// One band of the location trust table: a GNSS fix at most `max_distance_m` from the asserted
/// cell earns `multiplier_bps` on coverage rewards (HIP-119 style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBand {
    /// Upper distance of the band, metres (inclusive).
    pub max_distance_m: u32,
    /// Coverage multiplier for fixes in the band, basis points.
    pub multiplier_bps: u16,
}

/// One bandwidth tier: a median throughput of at least `min_bps` earns `multiplier` units
/// (HIP-98 style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthTier {
    /// Lowest median throughput of the tier, bits per second.
    pub min_bps: u64,
    /// Units earned per direction in this tier.
    pub multiplier: u32,
}

/// One latency tier: a median idle round-trip time of at most `max_rtt_ms` keeps
/// `multiplier_bps` of the backhaul units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTier {
    /// Highest idle RTT of the tier, milliseconds (inclusive).
    pub max_rtt_ms: u32,
    /// Multiplier in the tier, basis points.
    pub multiplier_bps: u16,
}

/// The rule parameters as an operator writes them (TOML). Every key is optional; the default
/// of each is given in its documentation. Call [`RulesConfig::validate`] to get [`Rules`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    // ---- time ----
    /// Clock skew tolerated around every slot and epoch boundary, and for timestamps "in the
    /// future" relative to the oracle's clock. Default 2 000 ms: agents discipline their clocks
    /// (NTP or GNSS) far better than that, and a beacon slot is a minute long.
    pub clock_skew_ms: u64,
    /// Longest accepted time from a beacon's `tx_ms` to a witness's `rx_ms` (either sign, since
    /// both are node clocks). Default 2 000 ms: radio propagation takes microseconds, so the
    /// lag is clock difference plus scan-report delay.
    pub max_witness_lag_ms: u64,
    /// A heartbeat signed longer ago than this when it arrives is refused
    /// (`timestamp_out_of_window`). Default 900 000 ms (three default heartbeat intervals):
    /// enough for an agent's outbox to drain after a short outage, short enough that a node
    /// cannot come online at the end of an epoch with back-dated heartbeats for the whole of it.
    pub heartbeat_max_delay_ms: u64,

    // ---- radio ----
    /// Largest difference between the beacon's declared frequency and the frequency a witness
    /// heard it on. Default 1 000 kHz: nl80211 reports whole MHz, and WiFi channels are at
    /// least 5 MHz apart, so a neighbouring channel never passes.
    pub freq_tolerance_khz: u32,
    /// Witnesses closer to the beaconer than this (even at the farthest two points of their
    /// cells) are refused as `too_close`. Default 30 m: two nodes in one spot witnessing each
    /// other is the signature of a Sybil farm, and honest neighbours are rarely that close.
    pub min_witness_distance_m: u32,
    /// Margin added to the free-space RSSI bound, tenths of dB. Default 60 (6 dB): two-ray
    /// multipath can add up to +6 dB over free space, plus calibration error.
    pub rssi_margin_decidb: i16,
    /// The weakest signal any supported receiver decodes, tenths of dBm. Default −1 000
    /// (−100 dBm): 802.11b at 1 Mbit/s in the best chipsets reaches about −98 dBm at 20 MHz, so
    /// no honest receiver reports less. The largest plausible link distance is derived from it
    /// (`too_far`), and an RSSI below it is `signal_implausible`.
    pub sensitivity_floor_decidbm: i16,
    /// An RSSI above this is `signal_implausible`, tenths of dBm. Default −100 (−10 dBm):
    /// receivers saturate around −20 dBm, and 30 m (the minimum distance) costs 70 dB at
    /// 2.4 GHz.
    pub max_rssi_decidbm: i16,
    /// An SNR above this is `signal_implausible`, tenths of dB. Default 600 (60 dB): the
    /// thermal noise floor of a 20 MHz channel is −101 dBm, and RSSI is capped near −10 dBm.
    pub max_snr_decidb: i16,
    /// When a node's latest readings (this epoch's and earlier epochs', at least two beaconers)
    /// number at least this many and all carry exactly the same RSSI, its witnesses of the
    /// epoch are `signal_implausible` (a forged constant), each a mark of evidence. Default 5:
    /// distinct links at distinct distances, with fading from epoch to epoch, give distinct
    /// readings; five equal whole-dB readings of two links by chance are rarer than one in a
    /// million.
    pub constant_rssi_witnesses: u16,

    /// A witness whose receive time is this far from the beacon's send time (either sign)
    /// reports a beacon it cannot have heard then: `witness_replayed`, evidence of cheating
    /// (between `max_witness_lag_ms` and this it is `witness_lag`, which a badly set clock can
    /// cause). Default 600 000 ms: no clock that passes the other time checks is ten minutes
    /// off, and a replayed beacon is at least a slot old.
    pub replay_lag_ms: u64,

    // ---- links judged together at epoch close ----
    /// A node whose implausible links (farther than three times the band's reach, or refused
    /// as `rssi_too_strong` or `too_far`) are with at least this many distinct partners, and
    /// with at least a third of its partners, is `links_implausible`: its location is false.
    /// Honest nodes next to it have one such partner among many. Default 3.
    pub link_min_partners: u16,
    /// A node that claims to have heard at least this many distinct beaconers over implausible
    /// links that no false location explains (beaconers that are misplaced or penalized
    /// do not count), within `strike_window_epochs`, is `links_implausible` too: it relays
    /// beacons from afar. Honest radios do not reach that far; the honest neighbour of a liar
    /// the rules could not pin down hears the one liar. Default 2.
    pub link_strikes: u16,
    /// Reciprocal links compare a node's reports with its partners': for each partner heard
    /// both ways, the path loss of the partner's reports of this node minus that of this
    /// node's reports of the partner. Gains and distance cancel, so honest radios differ by
    /// fading only; a median above this (tenths of dB) over at least
    /// `asymmetry_min_partners` partners is `rssi_inconsistent` for the epoch (inflated RSSI or
    /// antenna gain), a mark that counts like evidence (`evidence_min`). Default 100 (10 dB:
    /// with 3 dB of fading each way one honest pair in a hundred differs by that much, the
    /// median of three about once in 4 000 node-epochs, and two such epochs in a window almost
    /// never).
    pub max_link_asymmetry_decidb: i16,
    /// Partners heard both ways that the asymmetry rule needs. Default 3.
    pub asymmetry_min_partners: u16,
    /// For a pair heard both ways in an epoch, the two witnesses' lags (receive time minus the
    /// beacon's send time) add up to twice the propagation time, whatever the two clocks say:
    /// microseconds. A node with a partner whose lags add up to more than this is
    /// `links_relayed` for the epoch (a mark, counted like evidence). Default 30 ms: radios
    /// time-stamp their receptions to a millisecond or so, and clocks drift far less than that
    /// between two beacon slots; a beacon relayed over the internet both ways takes tens of
    /// milliseconds.
    pub max_round_trip_ms: u32,

    // ---- standing ----
    /// Marks of what only a dishonest node produces — refusals as `signal_implausible` (at
    /// ingest, or at close: below the band's floor, or constant), `self_witness`,
    /// `witness_replayed`, a measured `wrong_measurer` or `implausible_throughput` receipt, and
    /// epochs of `rssi_inconsistent` or `links_relayed` — within `strike_window_epochs` before
    /// the node is penalized for them. Default 2.
    pub evidence_min: u16,
    /// The window of epochs over which `link_strikes`, `evidence_min` and `measurer_strikes`
    /// are counted. Default 24.
    pub strike_window_epochs: u16,
    /// A penalized node earns nothing in the epoch it was caught and in this many epochs
    /// after (and measures nobody meanwhile). Default 24.
    pub penalty_epochs: u16,
    /// Nodes in a connected group of the epoch's paid witness links of fewer sites than this
    /// are paid coverage from `isolated_pool_bps` of the coverage pool: nobody outside such a
    /// group hears it, so it cannot be told from a ring of identities that witness each other
    /// from one place. Default 8.
    pub trusted_cluster_min: u16,
    /// Share of the coverage pool paid to nodes in groups smaller than
    /// `trusted_cluster_min`, basis points; the rest pays the others, or, when only isolated
    /// groups earn coverage, goes to the backhaul and uptime pools. Default 1 000.
    pub isolated_pool_bps: u16,
    /// A measurer's figure below this share of what the prover's other measurers saw (capped
    /// by the measurer's own rated capacity in that direction) is a disagreement. Default
    /// 7 500.
    pub measurer_floor_bps: u16,
    /// Disagreements within `strike_window_epochs` that make a measurer `measurer_disagrees`.
    /// Default 2.
    pub measurer_strikes: u16,

    // ---- onboarding and location ----
    /// Minimum time between two location assertions of one node. Default 86 400 000 ms (one
    /// day): moving a hotspot is rare, and a node hopping between places is spoofing.
    pub reassert_min_interval_ms: u64,
    /// Location trust bands by GNSS-fix distance from the asserted cell, nearest first.
    /// Default ≤ 150 m → 10 000 bps, ≤ 1 000 m → 2 500 bps; farther → 0 and `gnss_mismatch`
    /// (HIP-119 style).
    pub location_trust: Vec<TrustBand>,
    /// Location trust of a node with no GNSS fix since its (re-)assertion. Default 0: an
    /// unverified location earns no coverage. Devnets without GNSS may set 10 000.
    pub unverified_location_bps: u16,
    /// Fixes from fewer satellites than this are treated as no fix at all. Default 3: a 2-D
    /// position needs three satellites, so fewer means the receiver has no position.
    pub min_fix_satellites: u8,
    /// Whether nodes may onboard without a secure-element attestation. Default false.
    pub permissionless: bool,
    /// Trusted makers: name → P-256 public key, SEC1 bytes in hex (compressed or
    /// uncompressed). Default none.
    pub makers: BTreeMap<String, String>,
    /// Node ids (PeerId strings) whose proofs and onboarding are refused (`denied`).
    pub deny: Vec<NodeId>,

    // ---- backhaul ----
    /// Signal speed for the RTT distance bound, metres per microsecond. Default
    /// [`physics::VACUUM_M_PER_US`] (c): microwave and free-space links travel at nearly c, so
    /// any slower speed (fibre's 200 m/µs) would accuse honest nodes on such links of lying.
    pub rtt_signal_m_per_us: f64,
    /// The highest median throughput a receipt may claim. Default 10 Gbit/s: no hotspot
    /// uplink in the fleet is faster.
    pub max_throughput_bps: u64,
    /// Distinct measurers a direction needs before it is paid. Default 2: one colluding
    /// measurer can then never set a prover's tier alone.
    pub backhaul_min_measurers: u8,
    /// Most nodes in an epoch's measurer set; 0 (the default) takes every node that declared
    /// the measurer role. When there are more, the set is that many of them drawn by the epoch
    /// seed. Judging a receipt costs one hash per member of the set, so a network of many
    /// thousands of nodes caps it (a few hundred measurers test thousands of provers).
    pub measurer_set_max: u16,
    /// Bandwidth tiers, fastest first. Default ≥ 1 Gbit/s ×4, ≥ 500 Mbit/s ×3,
    /// ≥ 100 Mbit/s ×2, ≥ 25 Mbit/s ×1; slower earns nothing.
    pub bandwidth_tiers: Vec<BandwidthTier>,
    /// Latency tiers, fastest first. Default ≤ 50 ms → 10 000 bps, ≤ 100 ms → 7 500 bps.
    pub latency_tiers: Vec<LatencyTier>,
    /// Latency multiplier beyond the last tier. Default 5 000 bps.
    pub latency_floor_bps: u16,

    // ---- rewards ----
    /// Share of each epoch's emission for coverage (beacons and witnesses). Default 5 500.
    pub coverage_share_bps: u16,
    /// Share for backhaul (bandwidth receipts). Default 2 500.
    pub backhaul_share_bps: u16,
    /// Share for uptime (heartbeats). Default 1 000.
    pub uptime_share_bps: u16,
    /// Share for usage (subscribers' data credits burned on a hotspot). Default 1 000. The four
    /// shares must sum to 10 000. The usage pool is also capped by what was burned
    /// (`usage_payout_cap_bps`); what the cap leaves goes to the other pools by their shares.
    pub usage_share_bps: u16,
    /// Share of the expected heartbeats a node needs for uptime rewards. Default 5 000.
    pub uptime_min_share_bps: u16,
    /// Witnesses per beacon at full reward (N of HIP-15). Default 4.
    pub witness_redundancy: u16,
    /// Decay of each witness beyond N (R of HIP-15), basis points. Default 8 000 (0.8).
    pub witness_decay_bps: u16,
    /// H3 resolution of the density hexes (HIP-17 style). Default 8 (about 0.74 km²).
    pub density_resolution: u8,
    /// Earning nodes a density hex pays in full; more share that many nodes' worth. Default 4.
    pub density_target: u16,

    // ---- usage (proof of usage, data credits) ----
    /// Data credits burned per MiB (2^20 bytes, both directions summed) a subscriber uses.
    /// Default 1.
    pub usage_dc_per_mib: u64,
    /// The token value of one data credit, in the token's smallest unit: what a subscriber (or
    /// the operator) pays for one DC. The usage pool pays at most `burned DC × this ×
    /// usage_payout_cap_bps`. Default 1 000.
    pub usage_reward_per_dc: u64,
    /// The most of the value of the DC burned on a hotspot that the usage pool pays back,
    /// basis points. Default 5 000; below 10 000, burning one's own credits on one's own
    /// hotspot always loses value (`rewards`), so 10 000 is refused.
    pub usage_payout_cap_bps: u16,
    /// The backhaul assumed, per direction, for a hotspot without a verified rating of that
    /// direction this epoch, bits per second: the most its sessions are paid for. Default
    /// 10 Mbit/s, small on purpose, so that unverified hotspots cannot claim much.
    pub usage_default_backhaul_bps: u64,
    /// Most sessions the oracle keeps per subscriber; a new one beyond is `usage_session_limit`.
    /// Default 64.
    pub usage_sessions_per_subscriber: u16,
    /// Epochs a session is kept after its last accepted receipt; then it is forgotten. Default
    /// 24. A receipt of a forgotten session counts its totals again, which only the subscriber
    /// who signed it can cause and pays for.
    pub usage_session_retention_epochs: u32,
    /// Offload partners (carriers, roaming federations) whose signed `carrier_report`s of
    /// their sessions on hotspots are accepted (docs/PROTOCOL.md §5.12): their keys as PeerId
    /// strings. A report by any other key is `usage_carrier_unknown`. A carrier pays from its
    /// own balance of data credits, granted like a subscriber's. Default none.
    pub usage_carriers: Vec<String>,
    /// Most sessions the oracle keeps per carrier (a carrier accounts many subscribers'
    /// sessions, so its limit is apart from `usage_sessions_per_subscriber`); a new one beyond
    /// is `usage_session_limit`. Default 16 384.
    pub usage_sessions_per_carrier: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            clock_skew_ms: 2_000,
            max_witness_lag_ms: 2_000,
            heartbeat_max_delay_ms: 900_000,
            freq_tolerance_khz: 1_000,
            min_witness_distance_m: 30,
            rssi_margin_decidb: 60,
            sensitivity_floor_decidbm: -1_000,
            max_rssi_decidbm: -100,
            max_snr_decidb: 600,
            constant_rssi_witnesses: 5,
            replay_lag_ms: 600_000,
            link_min_partners: 3,
            link_strikes: 2,
            max_link_asymmetry_decidb: 100,
            asymmetry_min_partners: 3,
            max_round_trip_ms: 30,
            evidence_min: 2,
            strike_window_epochs: 24,
            penalty_epochs: 24,
            trusted_cluster_min: 8,
            isolated_pool_bps: 1_000,
            measurer_floor_bps: 7_500,
            measurer_strikes: 2,
            reassert_min_interval_ms: 86_400_000,
            location_trust: vec![
                TrustBand {
                    max_distance_m: 150,
                    multiplier_bps: 10_000,
                },
                TrustBand {
                    max_distance_m: 1_000,
                    multiplier_bps: 2_500,
                },
            ],
            unverified_location_bps: 0,
            min_fix_satellites: 3,
            permissionless: false,
            makers: BTreeMap::new(),
            deny: Vec::new(),
            rtt_signal_m_per_us: physics::VACUUM_M_PER_US,
            max_throughput_bps: 10_000_000_000,
            backhaul_min_measurers: 2,
            measurer_set_max: 0,
            bandwidth_tiers: vec![
                BandwidthTier {
                    min_bps: 1_000_000_000,
                    multiplier: 4,
                },
                BandwidthTier {
                    min_bps: 500_000_000,
                    multiplier: 3,
                },
                BandwidthTier {
                    min_bps: 100_000_000,
                    multiplier: 2,
                },
                BandwidthTier {
                    min_bps: 25_000_000,
                    multiplier: 1,
                },
            ],
            latency_tiers: vec![
                LatencyTier {
                    max_rtt_ms: 50,
                    multiplier_bps: 10_000,
                },
                LatencyTier {
                    max_rtt_ms: 100,
                    multiplier_bps: 7_500,
                },
            ],
            latency_floor_bps: 5_000,
            coverage_share_bps: 5_500,
            backhaul_share_bps: 2_500,
            uptime_share_bps: 1_000,
            usage_share_bps: 1_000,
            uptime_min_share_bps: 5_000,
            witness_redundancy: 4,
            witness_decay_bps: 8_000,
            density_resolution: 8,
            density_target: 4,
            usage_dc_per_mib: 1,
            usage_reward_per_dc: 1_000,
            usage_payout_cap_bps: 5_000,
            usage_default_backhaul_bps: 10_000_000,
            usage_sessions_per_subscriber: 64,
            usage_session_retention_epochs: 24,
            usage_carriers: Vec::new(),
            usage_sessions_per_carrier: 16_384,
        }
    }
}

/// A configuration mistake, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The four pool shares do not add up to the whole emission.
    #[error(
        "coverage_share_bps + backhaul_share_bps + uptime_share_bps + usage_share_bps = {sum}, must be 10000"
    )]
    SharesSum {
        /// The sum found.
        sum: u32,
    },
    /// A basis-point value above 10 000.
    #[error("{key} = {value} is above 10000 bps (100 %)")]
    BpsTooLarge {
        /// The key.
        key: &'static str,
        /// Its value.
        value: u16,
    },
    /// A value outside its allowed range.
    #[error("{key} = {value}: {why}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// Its value, printed.
        value: String,
        /// The allowed range.
        why: &'static str,
    },
    /// A table that must have entries is empty.
    #[error("{key} must have at least one entry")]
    EmptyTable {
        /// The key.
        key: &'static str,
    },
    /// A table is not in the order its lookup relies on.
    #[error("{key} must be ordered {order}")]
    TableOrder {
        /// The key.
        key: &'static str,
        /// The order required.
        order: &'static str,
    },
    /// A maker name the protocol cannot carry.
    #[error("maker name {0:?} must be 1-32 printable ASCII characters")]
    MakerName(String),
    /// A maker key that is not a P-256 public key.
    #[error("makers.{maker}: {why}")]
    MakerKey {
        /// The maker.
        maker: String,
        /// What is wrong.
        why: String,
    },
    /// Attestation is required but no maker is trusted, so no node could ever join.
    #[error(
        "permissionless = false but no makers are trusted: no node could onboard; add [makers] or set permissionless = true"
    )]
    NoWayToOnboard,
    /// An entry of `usage_carriers` that is not a key, or is listed twice.
    #[error("usage_carriers: {key:?} {why}")]
    CarrierKey {
        /// The entry as written.
        key: String,
        /// What is wrong.
        why: String,
    },
}

impl RulesConfig {
    /// The defaults with `permissionless = true`: for devnets, the simulator and tests.
    pub fn permissionless() -> Self {
        Self {
            permissionless: true,
            ..Self::default()
        }
    }

    /// Checks every key and resolves the maker keys and the deny list.
    pub fn validate(&self) -> Result<Rules, ConfigError> {
        let shares = u32::from(self.coverage_share_bps)
            + u32::from(self.backhaul_share_bps)
            + u32::from(self.uptime_share_bps)
            + u32::from(self.usage_share_bps);
        if shares != u32::from(BPS) {
            return Err(ConfigError::SharesSum { sum: shares });
        }
        for (key, value) in [
            ("unverified_location_bps", self.unverified_location_bps),
            ("latency_floor_bps", self.latency_floor_bps),
            ("uptime_min_share_bps", self.uptime_min_share_bps),
            ("witness_decay_bps", self.witness_decay_bps),
            ("isolated_pool_bps", self.isolated_pool_bps),
            ("measurer_floor_bps", self.measurer_floor_bps),
        ] {
            check_bps(key, value)?;
        }
        if self.usage_payout_cap_bps >= BPS {
            return Err(out_of_range(
                "usage_payout_cap_bps",
                self.usage_payout_cap_bps,
                "must be below 10000 (at 100 % burning one's own credits would pay)",
            ));
        }
        positive("usage_dc_per_mib", self.usage_dc_per_mib)?;
        positive(
            "usage_default_backhaul_bps",
            self.usage_default_backhaul_bps,
        )?;
        positive(
            "usage_sessions_per_subscriber",
            u64::from(self.usage_sessions_per_subscriber),
        )?;
        positive(
            "usage_session_retention_epochs",
            u64::from(self.usage_session_retention_epochs),
        )?;
        positive(
            "usage_sessions_per_carrier",
            u64::from(self.usage_sessions_per_carrier),
        )?;
        check_bps("usage_share_bps", self.usage_share_bps)?;
        for band in &self.location_trust {
            check_bps("location_trust.multiplier_bps", band.multiplier_bps)?;
        }
        for tier in &self.latency_tiers {
            check_bps("latency_tiers.multiplier_bps", tier.multiplier_bps)?;
        }
        positive("witness_redundancy", u64::from(self.witness_redundancy))?;
        positive("density_target", u64::from(self.density_target))?;
        positive(
            "backhaul_min_measurers",
            u64::from(self.backhaul_min_measurers),
        )?;
        positive("max_throughput_bps", self.max_throughput_bps)?;
        if self.constant_rssi_witnesses < 2 {
            return Err(out_of_range(
                "constant_rssi_witnesses",
                self.constant_rssi_witnesses,
                "must be at least 2 (one reading is always equal to itself)",
            ));
        }
        if self.replay_lag_ms <= self.max_witness_lag_ms {
            return Err(out_of_range(
                "replay_lag_ms",
                self.replay_lag_ms,
                "must be above max_witness_lag_ms",
            ));
        }
        if self.max_link_asymmetry_decidb <= 0 {
            return Err(out_of_range(
                "max_link_asymmetry_decidb",
                self.max_link_asymmetry_decidb,
                "must be positive (fading alone makes reciprocal readings differ)",
            ));
        }
        positive("link_min_partners", u64::from(self.link_min_partners))?;
        positive("link_strikes", u64::from(self.link_strikes))?;
        positive("strike_window_epochs", u64::from(self.strike_window_epochs))?;
        positive(
            "asymmetry_min_partners",
            u64::from(self.asymmetry_min_partners),
        )?;
        positive("evidence_min", u64::from(self.evidence_min))?;
        positive("measurer_strikes", u64::from(self.measurer_strikes))?;
        if self.rssi_margin_decidb < 0 {
            return Err(out_of_range(
                "rssi_margin_decidb",
                self.rssi_margin_decidb,
                "must not be negative (a negative margin rejects honest readings)",
            ));
        }
        if self.sensitivity_floor_decidbm >= self.max_rssi_decidbm {
            return Err(out_of_range(
                "sensitivity_floor_decidbm",
                self.sensitivity_floor_decidbm,
                "must be below max_rssi_decidbm",
            ));
        }
        if self.density_resolution > 15 {
            return Err(out_of_range(
                "density_resolution",
                self.density_resolution,
                "H3 resolutions are 0..=15",
            ));
        }
        // Slower than light in vacuum is allowed (stricter); faster is physically meaningless
        // and most likely a unit mistake (m/ms for m/µs).
        if !(self.rtt_signal_m_per_us >= 1.0
            && self.rtt_signal_m_per_us <= physics::VACUUM_M_PER_US)
        {
            return Err(out_of_range(
                "rtt_signal_m_per_us",
                self.rtt_signal_m_per_us,
                "must be between 1 and 299.792458 (metres per microsecond)",
            ));
        }
        if self.location_trust.is_empty() {
            return Err(ConfigError::EmptyTable {
                key: "location_trust",
            });
        }
        if !self.location_trust.windows(2).all(|w| {
            w[0].max_distance_m < w[1].max_distance_m && w[0].multiplier_bps >= w[1].multiplier_bps
        }) {
            return Err(ConfigError::TableOrder {
                key: "location_trust",
                order: "by increasing max_distance_m with non-increasing multipliers",
            });
        }
        if self.bandwidth_tiers.is_empty() {
            return Err(ConfigError::EmptyTable {
                key: "bandwidth_tiers",
            });
        }
        if !self
            .bandwidth_tiers
            .windows(2)
            .all(|w| w[0].min_bps > w[1].min_bps && w[0].multiplier >= w[1].multiplier)
        {
            return Err(ConfigError::TableOrder {
                key: "bandwidth_tiers",
                order: "by decreasing min_bps with non-increasing multipliers",
            });
        }
        if !self.latency_tiers.windows(2).all(|w| {
            w[0].max_rtt_ms < w[1].max_rtt_ms && w[0].multiplier_bps >= w[1].multiplier_bps
        }) || self
            .latency_tiers
            .last()
            .is_some_and(|t| t.multiplier_bps < self.latency_floor_bps)
        {
            return Err(ConfigError::TableOrder {
                key: "latency_tiers",
                order: "by increasing max_rtt_ms with non-increasing multipliers, all at least latency_floor_bps",
            });
        }
        let mut makers = BTreeMap::new();
        for (name, key_hex) in &self.makers {
            if name.is_empty()
                || name.len() > MAKER_MAX
                || !name.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(ConfigError::MakerName(name.clone()));
            }
            let bytes = hex::decode(key_hex.trim()).map_err(|e| ConfigError::MakerKey {
                maker: name.clone(),
                why: format!("not hex: {e}"),
            })?;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| {
                ConfigError::MakerKey {
                    maker: name.clone(),
                    why: "not a P-256 SEC1 public key".into(),
                }
            })?;
            makers.insert(name.clone(), key);
        }
        if !self.permissionless && makers.is_empty() {
            return Err(ConfigError::NoWayToOnboard);
        }
        let mut carriers = BTreeSet::new();
        for key in &self.usage_carriers {
            let id = key
                .trim()
                .parse::<NodeId>()
                .map_err(|e| ConfigError::CarrierKey {
                    key: key.clone(),
                    why: format!("is not an Ed25519 PeerId: {e}"),
                })?;
            if !carriers.insert(id) {
                return Err(ConfigError::CarrierKey {
                    key: key.clone(),
                    why: "is listed twice".into(),
                });
            }
        }
        Ok(Rules {
            config: self.clone(),
            makers,
            deny: self.deny.iter().copied().collect(),
            carriers,
        })
    }
}

fn check_bps(key: &'static str, value: u16) -> Result<(), ConfigError> {
    if value > BPS {
        return Err(ConfigError::BpsTooLarge { key, value });
    }
    Ok(())
}

fn positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(out_of_range(key, value, "must be at least 1"));
    }
    Ok(())
}

fn out_of_range(key: &'static str, value: impl ToString, why: &'static str) -> ConfigError {
    ConfigError::OutOfRange {
        key,
        value: value.to_string(),
        why,
    }
}

/// Validated rules: the configuration plus the resolved maker keys and deny set. Built only by
/// [`RulesConfig::validate`], so every value in it is in range.
#[derive(Clone, Debug)]
pub struct Rules {
    config: RulesConfig,
    makers: BTreeMap<String, p256::ecdsa::VerifyingKey>,
    deny: BTreeSet<NodeId>,
    carriers: BTreeSet<NodeId>,
}

impl Rules {
    /// The default rules with `permissionless = true` (devnets, the simulator, tests).
    pub fn permissionless() -> Rules {
        RulesConfig::permissionless()
            .validate()
            .unwrap_or_else(|e| unreachable!("the permissionless defaults are valid: {e}"))
    }

    /// The configuration these rules were resolved from.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// The trusted P-256 key of `maker`, if any.
    pub fn maker_key(&self, maker: &str) -> Option<&p256::ecdsa::VerifyingKey> {
        self.makers.get(maker)
    }

    /// Whether `key` is on the allow-list of carriers (`usage_carriers`).
    pub fn is_carrier(&self, key: &NodeId) -> bool {
        self.carriers.contains(key)
    }

    /// Whether `node` is on the deny list.
    pub fn is_denied(&self, node: &NodeId) -> bool {
        self.deny.contains(node)
    }

    /// The location trust multiplier of a fix `distance_m` from the asserted cell, or `None`
    /// when it lies beyond the last band (a GNSS mismatch).
    pub fn trust_for_distance(&self, distance_m: f64) -> Option<u16> {
        self.config
            .location_trust
            .iter()
            .find(|b| distance_m <= f64::from(b.max_distance_m))
            .map(|b| b.multiplier_bps)
    }

    /// The bandwidth tier multiplier of a median throughput (0 below the slowest tier).
    pub fn bandwidth_multiplier(&self, median_bps: u64) -> u32 {
        self.config
            .bandwidth_tiers
            .iter()
            .find(|t| median_bps >= t.min_bps)
            .map_or(0, |t| t.multiplier)
    }

    /// The latency multiplier (basis points) of a median idle RTT in microseconds.
    pub fn latency_multiplier_bps(&self, rtt_us: u32) -> u16 {
        self.config
            .latency_tiers
            .iter()
            .find(|t| u64::from(rtt_us) <= u64::from(t.max_rtt_ms) * 1_000)
            .map_or(self.config.latency_floor_bps, |t| t.multiplier_bps)
    }
}

#[cfg(test)]
mod tests;
