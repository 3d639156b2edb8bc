//! What a run measures: per-node rewards and verdicts, per-epoch totals, invariant checks.
//! Everything is kept in vectors indexed by node or epoch and in `BTreeMap`s, so the report is
//! independent of any hash-map order.

use std::collections::BTreeMap;

use wisp_protocol::Reason;
use wisp_protocol::kind::Kind;

use crate::cheaters::Archetype;

/// One node's tally.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Reward over the run.
    pub reward: u128,
    /// Coverage part of it.
    pub coverage: u128,
    /// Backhaul part of it.
    pub backhaul: u128,
    /// Uptime part of it.
    pub uptime: u128,
    /// Usage part of it (the usage pool: data credits burned for traffic it carried).
    pub usage: u128,
    /// Proofs refused, by reason.
    pub rejected: BTreeMap<Reason, u32>,
    /// Proofs counted at close.
    pub counted: u32,
    /// Epochs in which it earned coverage.
    pub coverage_epochs: u32,
    /// Epochs in which the oracle penalized it, by the reason it was caught for (`penalized`
    /// for the epochs of a penalty after the one it was caught in).
    pub penalties: BTreeMap<Reason, u32>,
    /// Epochs in which its pay was reduced without a penalty (`isolated_cluster`,
    /// `co_located`), by reason.
    pub notices: BTreeMap<Reason, u32>,
}

/// One epoch's totals.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EpochStats {
    /// The epoch.
    pub epoch: u64,
    /// The emission.
    pub emission: u64,
    /// Amounts paid (sum of the manifest).
    pub paid: u128,
    /// Paid per archetype, in [`Archetype::ALL`] order.
    pub by_archetype: Vec<u128>,
    /// Nodes paid.
    pub paid_nodes: u32,
    /// Proofs refused (stateless and at close).
    pub rejected: u64,
    /// What the oracle measured of each band after the epoch: (band class, reach in metres,
    /// floor in tenths of dBm).
    pub bands: Vec<(u8, Option<u32>, Option<i16>)>,
    /// Nodes penalized in the epoch.
    pub penalized: u32,
}

/// The run's tally.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per node, by world index.
    pub nodes: Vec<NodeStats>,
    /// Per closed epoch.
    pub epochs: Vec<EpochStats>,
    /// Invariant violations (each a sentence); empty on a correct run.
    pub violations: Vec<String>,
    /// Core events by kind (ignored frames, clock warnings, missed beacons…).
    pub core_events: BTreeMap<String, u64>,
    /// Signatures made (cores, cheaters, measurers, provers, oracle).
    pub signatures: u64,
    /// Proofs delivered to the oracle.
    pub delivered: u64,
    /// Delivery attempts lost (and resent).
    pub lost: u64,
    /// Beacon receptions delivered to cores (over the air).
    pub receptions: u64,
    /// Frames relayed to cheaters over the internet.
    pub relayed: u64,
    /// Refusals by reason, over all nodes.
    pub reasons: BTreeMap<Reason, u64>,
    /// Refusals by (archetype, kind, reason).
    pub by_archetype: BTreeMap<(Archetype, u8, Reason), u64>,
    /// Node-epochs penalized, by (archetype, reason).
    pub penalties: BTreeMap<(Archetype, Reason), u64>,
    /// Node-epochs with pay reduced without a penalty, by (archetype, reason).
    pub notices: BTreeMap<(Archetype, Reason), u64>,
}

impl Stats {
    /// A tally for `n` identities.
    pub fn new(n: usize) -> Stats {
        Stats {
            nodes: vec![NodeStats::default(); n],
            ..Stats::default()
        }
    }

    /// Records a refusal.
    pub fn reject(&mut self, node: u32, arch: Archetype, kind: Kind, reason: Reason) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            *n.rejected.entry(reason).or_insert(0) += 1;
        }
        *self.reasons.entry(reason).or_insert(0) += 1;
        *self
            .by_archetype
            .entry((arch, kind.as_u8(), reason))
            .or_insert(0) += 1;
    }

    /// Records that the oracle penalized `node` for an epoch.
    pub fn penalize(&mut self, node: u32, arch: Archetype, reason: Reason) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            *n.penalties.entry(reason).or_insert(0) += 1;
        }
        *self.penalties.entry((arch, reason)).or_insert(0) += 1;
    }

    /// Records that the oracle reduced `node`'s pay for an epoch without penalizing it.
    pub fn notice(&mut self, node: u32, arch: Archetype, reason: Reason) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            *n.notices.entry(reason).or_insert(0) += 1;
        }
        *self.notices.entry((arch, reason)).or_insert(0) += 1;
    }

    /// Counts a core event.
    pub fn core_event(&mut self, name: &str) {
        *self.core_events.entry(name.to_string()).or_insert(0) += 1;
    }
}
