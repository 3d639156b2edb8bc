//! Cheater archetypes: who cheats, how, and the forged values they produce.
//!
//! A cheater runs the same agent core as everyone else; what differs is what goes in and
//! out of it, the way a real cheater modifies their own device: a spoofed GNSS fix, an
//! asserted cell that is not where the radio is, forged RSSI handed to the core, frames relayed
//! over the internet instead of heard over the air, proofs signed with the node's own key
//! outside the core (replays, back-dated heartbeats, fabricated receipts). Nothing here can
//! sign for another node: cheaters only hold their own keys (and their helper identities').
//!
//! Roles are drawn per node from its own random stream, so adding a node does not change
//! anyone else's role.

use crate::rng::{self, Draw, Purpose};

/// What a colluding measurer reports of a prover outside its group, as a share of what it
/// measured.
pub const MEASURER_DEFLATION: f64 = 0.4;

/// What an evasive colluding measurer reports of outsiders: just above the share of the other
/// measurers' figures below which the oracle counts a disagreement.
pub const MEASURER_DEFLATION_EVASIVE: f64 = 0.7;

/// How much stronger a forged RSSI is than the real one, dB, and an evasive forger's: under
/// the oracle's reciprocity bound.
pub const RSSI_INFLATION_DB: i16 = 20;
/// See [`RSSI_INFLATION_DB`].
pub const RSSI_INFLATION_EVASIVE_DB: i16 = 6;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Archetype {
    /// Follows the protocol.
    Honest,
    /// Asserts a far-away cell and spoofs GNSS to match.
    FakeLocation,
    /// A ring witnessing each other's beacons relayed over the internet.
    CollusionRing,
    /// Forges the RSSI of real receptions.
    ForgedRssi,
    /// Witnesses relayed (late) or replayed beacons.
    Relay,
    /// Claims a larger antenna gain than it has.
    InflatedGain,
    /// Many ids in one place.
    SybilFarm,
    /// Fabricates its own bandwidth receipts.
    BandwidthInflation,
    /// Inflates fellow colluders' bandwidth when assigned to measure them, and deflates
    /// everyone else it measures (the backhaul pool is shared, so that raises its group's
    /// share).
    ColludingMeasurer,
    /// Heartbeats without a working hotspot.
    FakeHeartbeat,
}

impl Archetype {
    /// The cheating archetypes, in the order of [`crate::scenario::CheatersCfg::shares`].
    pub const CHEATERS: [Archetype; 9] = [
        Archetype::FakeLocation,
        Archetype::CollusionRing,
        Archetype::ForgedRssi,
        Archetype::Relay,
        Archetype::InflatedGain,
        Archetype::SybilFarm,
        Archetype::BandwidthInflation,
        Archetype::ColludingMeasurer,
        Archetype::FakeHeartbeat,
    ];

    /// Every archetype, honest first.
    pub const ALL: [Archetype; 10] = [
        Archetype::Honest,
        Archetype::FakeLocation,
        Archetype::CollusionRing,
        Archetype::ForgedRssi,
        Archetype::Relay,
        Archetype::InflatedGain,
        Archetype::SybilFarm,
        Archetype::BandwidthInflation,
        Archetype::ColludingMeasurer,
        Archetype::FakeHeartbeat,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Archetype::Honest => "honest",
            Archetype::FakeLocation => "fake_location",
            Archetype::CollusionRing => "collusion_ring",
            Archetype::ForgedRssi => "forged_rssi",
            Archetype::Relay => "relay",
            Archetype::InflatedGain => "inflated_gain",
            Archetype::SybilFarm => "sybil_farm",
            Archetype::BandwidthInflation => "bandwidth_inflation",
            Archetype::ColludingMeasurer => "colluding_measurer",
            Archetype::FakeHeartbeat => "fake_heartbeat",
        }
    }

    /// Whether this is a cheater.
    pub fn cheats(self) -> bool {
        self != Archetype::Honest
    }
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Role {
    /// The archetype.
    pub archetype: Archetype,
    /// The archetype's second variant: constant RSSI (forged RSSI), replays (relay),
    /// back-dated bursts (fake heartbeat).
    pub variant: bool,
    /// The ring or farm the node belongs to.
    pub group: u32,
    /// For a helper identity: the node it serves.
    pub helper_of: Option<u32>,
}

impl Role {
    /// An honest node.
    pub const HONEST: Role = Role {
        archetype: Archetype::Honest,
        variant: false,
        group: 0,
        helper_of: None,
    };
}

/// Groups for an archetype of `share` over `nodes` with `size` members each (at least one).
pub fn group_count(nodes: u32, share: f64, size: u32) -> u32 {
    let expected = f64::from(nodes) * share / f64::from(size.max(1));
    // Bounded by `nodes`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let g = expected.round().max(1.0) as u32;
    g
}

/// Draws node `node`'s role from its own stream: an archetype with the configured shares,
/// then its variant and group.
pub fn assign(seed: u64, node: u32, nodes: u32, cfg: &crate::scenario::CheatersCfg) -> Role {
    let mut r = rng::stream(seed, u64::from(node), Purpose::Role);
    let u = r.uniform();
    let variant = r.chance(0.5);
    let g = r.uniform();
    let shares = cfg.shares();
    let mut acc = 0.0;
    for (arch, share) in Archetype::CHEATERS.iter().zip(shares) {
        acc += share;
        if u < acc {
            let size = match arch {
                Archetype::CollusionRing => cfg.ring_size,
                Archetype::SybilFarm => cfg.farm_size,
                // Colluding measurers form one group: they inflate each other.
                _ => u32::MAX,
            };
            let groups = group_count(nodes, share, size);
            // g < 1, so the product is below `groups`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let group = (g * f64::from(groups)) as u32;
            return Role {
                archetype: *arch,
                variant,
                group,
                helper_of: None,
            };
        }
    }
    Role::HONEST
}

/// Makes rings and farms whole: their members, in index order, fill groups of exactly
/// `ring_size` or `farm_size` (a last group too small to collude joins the one before), so no
/// ring or farm is a lone node. (The draw in [`assign`] only picks who cheats.)
pub fn fill_groups(roles: &mut [Role], cfg: &crate::scenario::CheatersCfg) {
    for (arch, size) in [
        (Archetype::CollusionRing, cfg.ring_size),
        (Archetype::SybilFarm, cfg.farm_size),
    ] {
        let size = size.max(1) as usize;
        let members: Vec<usize> = (0..roles.len())
            .filter(|i| roles[*i].archetype == arch)
            .collect();
        let full = (members.len() / size).max(1);
        for (pos, i) in members.into_iter().enumerate() {
            // At most `full - 1`, which fits: there are fewer groups than roles.
            #[allow(clippy::cast_possible_truncation)]
            let group = (pos / size).min(full - 1) as u32;
            roles[i].group = group;
        }
    }
}

/// A forged RSSI that a rule-aware cheater reports for a link it claims at `claimed_m`: the
/// mean log-distance RSSI there, kept under the oracle's free-space bound (`bound_dbm`) by
/// `slack_db`, with a little noise so that it is not constant.
pub fn plausible_rssi(mean_dbm: f64, bound_dbm: f64, noise: f64, slack_db: f64) -> f64 {
    (mean_dbm + 2.0 * noise).min(bound_dbm - slack_db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::CheatersCfg;

    #[test]
    fn shares_are_respected_and_roles_are_per_node() {
        let cfg = CheatersCfg {
            fake_location: 0.1,
            sybil_farm: 0.1,
            ..CheatersCfg::default()
        };
        let roles: Vec<Role> = (0..5000).map(|i| assign(3, i, 5000, &cfg)).collect();
        let fake = roles
            .iter()
            .filter(|r| r.archetype == Archetype::FakeLocation)
            .count();
        let farm = roles
            .iter()
            .filter(|r| r.archetype == Archetype::SybilFarm)
            .count();
        assert!((400..600).contains(&fake), "{fake}");
        assert!((400..600).contains(&farm), "{farm}");
        // A node's role does not depend on how many nodes come after it (same group count).
        assert_eq!(assign(3, 17, 5000, &cfg), roles[17]);
    }
}
