//! Integer reward math: from a closed epoch's facts to per-node amounts that sum exactly to the
//! emission, and the signed manifest's pages, Merkle root and inclusion proofs.
//!
//! 1. **Units per node and pool.**
//!    - Coverage (HIP-15 and HIP-17 style): a beacon with `W` paid witnesses is worth
//!      `T(W) = W` units while `W ≤ N` (the redundancy target) and `T(W) = N + 1 − R^(W−N)`
//!      beyond, so extra witnesses add less and less and the total never exceeds `N + 1`. Each
//!      witness earns `T(W) / W`, the beaconer `T(W) / N` (one unit once `N` nodes hear it;
//!      nothing if nobody did). A node's raw coverage is the sum over its beacon and its
//!      witnesses. Nodes earning coverage are counted per H3 hex at the density resolution;
//!      in a hex with more than `density_target` of them, each keeps `target / count`, so a farm
//!      in one hex earns what `target` nodes would. Last, the location trust multiplier.
//!    - Backhaul (HIP-98 style): per rated direction, the bandwidth tier multiplier of its
//!      median; their sum times the latency multiplier of the median idle RTT.
//!    - Uptime: one unit per eligible node, so equal shares.
//!    - Identities that share a site (they witnessed each other closer than the minimum
//!      distance: [`crate::epoch::NodeFacts::site`]) are paid as one hotspot: each gets its units
//!      divided by their number, and the site counts once towards its hex's density.
//!    - A node the epoch penalized ([`EpochOutcome::penalties`]) has no units in any pool.
//!    - Usage: the data credits burned on the hotspot this epoch
//!      ([`crate::usage::HotspotUsage::burned_dc`]); a penalized hotspot burns none.
//!
//!    Units are fixed-point integers ([`UNIT`] per whole unit); every division rounds down.
//! 2. **Pools.** `backhaul = ⌊E · share_b⌋`, `uptime = ⌊E · share_u⌋`,
//!    `usage = ⌊E · share_usage⌋`, and coverage gets the rest, so the rounding remainders of the
//!    split go to coverage (the network's purpose).
//!    Coverage is then parted ([`split_coverage`]): nodes whose group of paid witness links
//!    holds fewer than `trusted_cluster_min` sites are paid from `isolated_pool_bps` of it —
//!    nobody outside such a group can confirm its coverage, and a ring of identities looks
//!    the same — and the others from the rest. A
//!    pool nobody earned is shared among the pools that have earners in proportion to their
//!    shares, its rounding remainder to the first earning pool in the order coverage,
//!    backhaul, uptime, usage. If nobody earned anything, nothing is paid.
//!
//!    **The usage pool is capped** by what was burned: with `B` credits burned in the epoch,
//!    `p = usage_reward_per_dc` (a credit's value) and `c = usage_payout_cap_bps`, it is
//!    `min(⌊E · share_usage⌋, ⌊B · p · c / 10 000⌋)`, and each hotspot gets
//!    `⌊pool · b_h / B⌋` for the `b_h` credits burned on it — rounded down, not by largest
//!    remainder, so that the bound below holds exactly. What the cap and the rounding leave
//!    goes to the other pools with earners by their shares (remainder to the first, as
//!    above); only when no other pool has earners is it left unpaid ([`Pools::unpaid`]).
//!
//!    **Self-dealing does not pay.** Whoever burns `b_h` credits on a hotspot (its owner as
//!    its own subscriber, say) gets back from the usage pool at most
//!    `⌊pool · b_h / B⌋ ≤ b_h · p · c / 10 000`, which is less than `b_h · p`, the value of
//!    the credits burned, whenever `c < 10 000` (validation refuses more) and `b_h > 0`: usage
//!    rewards are always worth less than the credits that earned them. (The usage is also
//!    refused outright when the subscriber shares the hotspot's owner, `usage_self_dealing`,
//!    but that check only sees owners it can link.)
//! 3. **Allocation** of each pool by largest remainder: each node gets
//!    `⌊pool · units / total⌋`, and the units left over go one each to the nodes with the
//!    largest remainders `pool · units mod total`, ties to the smaller node id. A pool's amounts
//!    therefore sum to the pool exactly, so **an epoch's amounts sum to its emission exactly**.

use std::collections::BTreeMap;

use wisp_protocol::envelope::encode_payload;
use wisp_protocol::geo::Cell;
use wisp_protocol::merkle;
use wisp_protocol::msg::{MANIFEST_PAGE_MAX, RewardEntry, RewardManifest};
use wisp_protocol::units::EpochNo;
use wisp_protocol::{NodeId, bytes::ByteArray};

use crate::config::{BPS, Rules};

use crate::epoch::{EpochOutcome, NodeFacts};
use crate::registry::Registry;
pub use crate::share::allocate;

/// Fixed-point scale of coverage units: one beacon heard by `N` witnesses is `UNIT`.
pub const UNIT: u64 = 1_000_000;

/// `T(W)`: the total witness units of a beacon with `w` paid witnesses (see the module
/// documentation), with redundancy target `n` and decay `decay_bps` per extra witness.
pub fn witness_total_units(w: u16, n: u16, decay_bps: u16) -> u64 {
    let (w, n) = (u64::from(w), u64::from(n.max(1)));
    if w <= n {
        return w * UNIT;
    }
    // R^(W−N) in UNIT fixed point, rounded down at each step; it reaches 0 quickly.
    let mut power = UNIT;
    for _ in 0..(w - n) {
        power = power * u64::from(decay_bps) / u64::from(BPS);
        if power == 0 {
            break;
        }
    }
    n * UNIT + (UNIT - power)
}

/// What each of `w` paid witnesses of one beacon earns: `T(W) / W`.
pub fn witness_units(w: u16, n: u16, decay_bps: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    witness_total_units(w, n, decay_bps) / u64::from(w)
}

/// What a beaconer with `w` paid witnesses earns: `T(W) / N`.
pub fn beacon_units(w: u16, n: u16, decay_bps: u16) -> u64 {
    witness_total_units(w, n, decay_bps) / u64::from(n.max(1))
}

/// One node's units in each pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeUnits {
    /// Coverage units after density and location trust.
    pub coverage: u64,
    /// Coverage units before density and location trust.
    pub coverage_raw: u64,
    /// The density multiplier applied, basis points.
    pub density_bps: u16,
    /// Whether the node's group of paid witness links is smaller than `trusted_cluster_min`:
    /// its coverage is paid from the isolated part of the coverage pool.
    pub isolated: bool,
    /// Backhaul units (tier multipliers × latency basis points).
    pub backhaul: u64,
    /// Uptime units ([`UNIT`] when eligible, else 0).
    pub uptime: u64,
    /// How many identities share the node's site (1 when alone); every unit is divided by it.
    pub site_share: u32,
}

/// The pools of an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pools {
    /// Coverage pool (of nodes in groups of at least `trusted_cluster_min` sites).
    pub coverage: u64,
    /// The part of the coverage pool paid to isolated nodes (`isolated_pool_bps`).
    pub coverage_isolated: u64,
    /// Backhaul pool.
    pub backhaul: u64,
    /// Uptime pool.
    pub uptime: u64,
    /// Usage pool, after its cap: what the hotspots are paid for the credits burned on them.
    pub usage: u64,
    /// What the usage cap left when no other pool had earners: not paid (0 otherwise).
    pub unpaid: u64,
}

impl Pools {
    /// The sum of the pools paid ([`Pools::unpaid`] left out): the emission whenever someone
    /// earned and not only usage did.
    pub fn total(&self) -> u128 {
        u128::from(self.coverage)
            + u128::from(self.coverage_isolated)
            + u128::from(self.backhaul)
            + u128::from(self.uptime)
            + u128::from(self.usage)
    }
}

/// Units for every node with facts, onboarded and not denied, in id order. Nodes with no units
/// at all are left out.
pub fn node_units(registry: &Registry, outcome: &EpochOutcome) -> BTreeMap<NodeId, NodeUnits> {
    let rules = registry.rules();
    let cfg = rules.config();
    let (n, decay) = (cfg.witness_redundancy, cfg.witness_decay_bps);
    let mut out: BTreeMap<NodeId, NodeUnits> = BTreeMap::new();
    let mut hexes: BTreeMap<NodeId, (Cell, NodeId)> = BTreeMap::new();
    for (id, facts) in &outcome.nodes {
        let Some(rec) = registry.get(id) else {
            continue;
        };
        if rules.is_denied(id) || outcome.is_penalized(id) {
            continue;
        }
        let raw = raw_coverage(facts, n, decay);
        let units = NodeUnits {
            coverage: 0,
            coverage_raw: raw,
            density_bps: BPS,
            isolated: facts.group < u32::from(cfg.trusted_cluster_min),
            backhaul: backhaul_units(rules, facts),
            uptime: if facts.uptime_eligible { UNIT } else { 0 },
            site_share: 1,
        };
        if raw > 0 {
            // A site counts once in its hex, however many identities share it.
            let site = facts.site.map_or(*id, |(first, _)| first);
            hexes.insert(*id, (rec.cell.parent(cfg.density_resolution), site));
        }
        if units.coverage_raw > 0 || units.backhaul > 0 || units.uptime > 0 {
            out.insert(*id, units);
        }
    }
    let sites: std::collections::BTreeSet<(Cell, NodeId)> = hexes.values().copied().collect();
    let mut per_hex: BTreeMap<Cell, u64> = BTreeMap::new();
    for (hex, _) in &sites {
        *per_hex.entry(*hex).or_insert(0) += 1;
    }
    for (id, units) in &mut out {
        // Identities sharing a site share one hotspot's units.
        let shared = outcome
            .nodes
            .get(id)
            .and_then(|f| f.site)
            .map_or(1, |(_, n)| u64::from(n.max(1)));
        units.backhaul /= shared;
        units.uptime /= shared;
        units.site_share = u32::try_from(shared).unwrap_or(u32::MAX);
        let Some((hex, _)) = hexes.get(id) else {
            continue;
        };
        let count = per_hex.get(hex).copied().unwrap_or(1).max(1);
        let density = (u64::from(cfg.density_target) * u64::from(BPS) / count).min(u64::from(BPS));
        units.density_bps = u16::try_from(density).unwrap_or(BPS);
        let trust = outcome
            .nodes
            .get(id)
            .map_or(0, |f| u128::from(f.location_trust_bps));
        let scaled = u128::from(units.coverage_raw) * u128::from(density) * trust
            / (u128::from(BPS) * u128::from(BPS));
        units.coverage = u64::try_from(scaled / u128::from(units.site_share)).unwrap_or(u64::MAX);
    }
    out
}

fn raw_coverage(facts: &NodeFacts, n: u16, decay: u16) -> u64 {
    let beacon = if facts.beacon.is_some() {
        beacon_units(facts.beacon_witnesses, n, decay)
    } else {
        0
    };
    facts
        .witnessed
        .iter()
        .map(|w| witness_units(*w, n, decay))
        .fold(beacon, u64::saturating_add)
}

fn backhaul_units(rules: &Rules, facts: &NodeFacts) -> u64 {
    let Some(rtt) = facts.rtt_idle_us else {
        return 0;
    };
    let tiers: u64 = [facts.down, facts.up]
        .iter()
        .flatten()
        .map(|d| u64::from(rules.bandwidth_multiplier(d.median_bps)))
        .sum();
    tiers * u64::from(rules.latency_multiplier_bps(rtt))
}

/// Adds `moved` to the pools among `amounts` that have earners, in proportion to their
/// `shares`, the rounding remainder (and everything, when their shares are all 0) to the first
/// of them. Returns `false`, changing nothing, when none has earners.
fn spread(amounts: &mut [u128], earners: &[bool], shares: &[u16], moved: u128) -> bool {
    let Some(first) = (0..amounts.len()).find(|i| earners[*i]) else {
        return false;
    };
    let share_total: u128 = (0..amounts.len())
        .filter(|i| earners[*i])
        .map(|i| u128::from(shares[i]))
        .sum();
    let mut given = 0u128;
    for i in 0..amounts.len() {
        if earners[i] {
            let add = (moved * u128::from(shares[i]))
                .checked_div(share_total)
                .unwrap_or(0);
            amounts[i] += add;
            given += add;
        }
    }
    amounts[first] += moved - given;
    true
}

/// Splits `emission` into the coverage, backhaul and uptime pools by the configured shares,
/// with nobody earning usage (its share goes to the others): [`split_all_pools`] with
/// `earners = [coverage, backhaul, uptime, false]`.
pub fn split_pools(rules: &Rules, emission: u64, earners: [bool; 3]) -> Pools {
    split_all_pools(rules, emission, [earners[0], earners[1], earners[2], false])
}

/// Splits `emission` into the four pools by the configured shares, then moves the pools
/// without earners (`earners[i]` false, in the order coverage, backhaul, uptime, usage) to
/// those with earners (see the module documentation). With no earners at all, the plain split
/// is returned. The usage pool is not capped here ([`compute`] does it).
pub fn split_all_pools(rules: &Rules, emission: u64, earners: [bool; 4]) -> Pools {
    let cfg = rules.config();
    let e = u128::from(emission);
    let part = |bps: u16| e * u128::from(bps) / u128::from(BPS);
    let backhaul = part(cfg.backhaul_share_bps);
    let uptime = part(cfg.uptime_share_bps);
    let usage = part(cfg.usage_share_bps);
    let mut amounts = [e - backhaul - uptime - usage, backhaul, uptime, usage];
    let shares = [
        cfg.coverage_share_bps,
        cfg.backhaul_share_bps,
        cfg.uptime_share_bps,
        cfg.usage_share_bps,
    ];
    if earners.iter().any(|x| *x) && earners.iter().any(|x| !*x) {
        let mut moved = 0u128;
        for i in 0..4 {
            if !earners[i] {
                moved += amounts[i];
                amounts[i] = 0;
            }
        }
        spread(&mut amounts, &earners, &shares, moved);
    }
    // Each amount is at most the emission, a u64.
    let to_u64 = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    Pools {
        coverage: to_u64(amounts[0]),
        coverage_isolated: 0,
        backhaul: to_u64(amounts[1]),
        uptime: to_u64(amounts[2]),
        usage: to_u64(amounts[3]),
        unpaid: 0,
    }
}

/// Caps the usage pool of `pools` at [`crate::usage::payout_cap`] of the `burned` credits and
/// pays it to the hotspots in `burned` (hotspot, credits burned on it) by
/// `⌊pool · b_h / B⌋`; what the cap and the rounding leave goes to the other pools with
/// earners (`earners`: coverage, backhaul, uptime) by their shares, or is left unpaid.
/// Returns the pools and one amount per hotspot, in input order.
pub fn pay_usage(
    rules: &Rules,
    mut pools: Pools,
    burned: &[(NodeId, u64)],
    earners: [bool; 3],
) -> (Pools, Vec<u64>) {
    if burned.is_empty() {
        // Nobody earns usage: its share already went to the others (or nobody earned at all).
        return (pools, Vec::new());
    }
    let total: u128 = burned.iter().map(|(_, b)| u128::from(*b)).sum();
    let pool = u128::from(pools.usage).min(crate::usage::payout_cap(rules, total));
    let amounts: Vec<u64> = burned
        .iter()
        .map(|(_, b)| {
            let a = (pool * u128::from(*b)).checked_div(total).unwrap_or(0);
            // At most `pool`, a u64.
            u64::try_from(a).unwrap_or(0)
        })
        .collect();
    let paid: u128 = amounts.iter().map(|a| u128::from(*a)).sum();
    let left = u128::from(pools.usage) - paid;
    let cfg = rules.config();
    let mut others = [
        u128::from(pools.coverage),
        u128::from(pools.backhaul),
        u128::from(pools.uptime),
    ];
    let shares = [
        cfg.coverage_share_bps,
        cfg.backhaul_share_bps,
        cfg.uptime_share_bps,
    ];
    let to_u64 = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    if spread(&mut others, &earners, &shares, left) {
        pools.coverage = to_u64(others[0]);
        pools.backhaul = to_u64(others[1]);
        pools.uptime = to_u64(others[2]);
    } else {
        pools.unpaid = to_u64(left);
    }
    pools.usage = to_u64(paid);
    (pools, amounts)
}

/// Parts the coverage pool between nodes in trusted groups and isolated ones: the isolated
/// get `isolated_pool_bps` of it. A part without earners goes to the other; when only the
/// isolated earn coverage, the trusted part goes to the backhaul and uptime pools instead (in
/// proportion to their shares, to those with earners), so that coverage nobody outside a small
/// group can confirm never takes the whole pool.
pub fn split_coverage(
    rules: &Rules,
    mut pools: Pools,
    trusted: bool,
    isolated: bool,
    others: [bool; 2],
) -> Pools {
    let cfg = rules.config();
    let isolated_part = u64::try_from(
        u128::from(pools.coverage) * u128::from(cfg.isolated_pool_bps) / u128::from(BPS),
    )
    .unwrap_or(pools.coverage);
    let trusted_part = pools.coverage - isolated_part;
    match (trusted, isolated) {
        (true, true) => {
            pools.coverage = trusted_part;
            pools.coverage_isolated = isolated_part;
        }
        (false, true) if others.iter().any(|x| *x) => {
            let shares = [cfg.backhaul_share_bps, cfg.uptime_share_bps];
            let total: u128 = (0..2)
                .filter(|i| others[*i])
                .map(|i| u128::from(shares[i]))
                .sum();
            let to_backhaul = if !others[0] {
                0
            } else if !others[1] {
                trusted_part
            } else {
                // At most `trusted_part`: a share of the two over their sum.
                u64::try_from(
                    (u128::from(trusted_part) * u128::from(shares[0]))
                        .checked_div(total)
                        .unwrap_or(0),
                )
                .unwrap_or(trusted_part)
            };
            pools.backhaul += to_backhaul;
            pools.uptime += trusted_part - to_backhaul;
            pools.coverage = 0;
            pools.coverage_isolated = isolated_part;
        }
        (false, true) => {
            pools.coverage_isolated = pools.coverage;
            pools.coverage = 0;
        }
        _ => {}
    }
    pools
}

/// An epoch's rewards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochRewards {
    /// The epoch.
    pub epoch: EpochNo,
    /// The emission the manifest signs, which its entries sum to: the epoch's, less what the
    /// usage pool's cap left unpaid when no other pool had earners to take it
    /// ([`Pools::unpaid`]). Signing the whole emission then would make a manifest whose total
    /// check fails (`wisp-oracle verify-manifest`).
    pub emission: u64,
    /// The pools after moving those without earners.
    pub pools: Pools,
    /// Every node's units (nodes with none left out).
    pub units: BTreeMap<NodeId, NodeUnits>,
    /// Per hotspot paid from the usage pool, what it was paid (its entry's `usage`).
    pub usage: BTreeMap<NodeId, u64>,
    /// Nodes paid something, sorted by node id; the amounts sum to `emission` exactly unless
    /// nobody earned (then it is empty).
    pub entries: Vec<RewardEntry>,
}

/// Computes an epoch's rewards from its closed outcome. Owners are read from the registry at
/// this moment (the owner at epoch close is paid).
pub fn compute(registry: &Registry, outcome: &EpochOutcome, emission: u64) -> EpochRewards {
    let units = node_units(registry, outcome);
    let column = |f: fn(&NodeUnits) -> u64| -> Vec<(NodeId, u64)> {
        units
            .iter()
            .filter(|(_, u)| f(u) > 0)
            .map(|(id, u)| (*id, f(u)))
            .collect()
    };
    let coverage = column(|u| if u.isolated { 0 } else { u.coverage });
    let coverage_isolated = column(|u| if u.isolated { u.coverage } else { 0 });
    let backhaul = column(|u| u.backhaul);
    let uptime = column(|u| u.uptime);
    let rules = registry.rules();
    let burned: Vec<(NodeId, u64)> = outcome
        .usage
        .hotspots
        .iter()
        .filter(|(id, h)| {
            h.burned_dc > 0
                && registry.get(id).is_some()
                && !rules.is_denied(id)
                && !outcome.is_penalized(id)
        })
        .map(|(id, h)| (*id, h.burned_dc))
        .collect();
    let earners = [
        !coverage.is_empty() || !coverage_isolated.is_empty(),
        !backhaul.is_empty(),
        !uptime.is_empty(),
    ];
    let all = split_all_pools(
        rules,
        emission,
        [earners[0], earners[1], earners[2], !burned.is_empty()],
    );
    let (all, usage_paid) = pay_usage(rules, all, &burned, earners);
    let pools = split_coverage(
        rules,
        all,
        !coverage.is_empty(),
        !coverage_isolated.is_empty(),
        [earners[1], earners[2]],
    );
    let usage: BTreeMap<NodeId, u64> = burned
        .iter()
        .zip(usage_paid)
        .filter(|(_, a)| *a > 0)
        .map(|((id, _), a)| (*id, a))
        .collect();
    // Slots: coverage, backhaul, uptime, usage (the entry's columns, docs/PROTOCOL.md §5.8).
    let mut paid: BTreeMap<NodeId, [u64; 4]> = BTreeMap::new();
    for (id, amount) in &usage {
        paid.entry(*id).or_default()[3] += amount;
    }
    // Both parts of the coverage pool pay coverage (slot 0).
    for (slot, pool, list) in [
        (0, pools.coverage, &coverage),
        (0, pools.coverage_isolated, &coverage_isolated),
        (1, pools.backhaul, &backhaul),
        (2, pools.uptime, &uptime),
    ] {
        for ((id, _), amount) in list.iter().zip(allocate(pool, list)) {
            paid.entry(*id).or_default()[slot] += amount;
        }
    }
    let entries = paid
        .into_iter()
        .filter(|(_, a)| a.iter().any(|x| *x > 0))
        .map(|(node, [coverage, backhaul, uptime, usage])| RewardEntry {
            node,
            owner: registry
                .get(&node)
                .map(|r| r.owner.clone())
                .unwrap_or_default(),
            amount: coverage + backhaul + uptime + usage,
            coverage,
            backhaul,
            uptime,
            usage,
        })
        .collect();
    EpochRewards {
        epoch: outcome.epoch,
        emission: emission.saturating_sub(pools.unpaid),
        pools,
        units,
        usage,
        entries,
    }
}

/// A Merkle inclusion proof of one entry in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's index among all entries (sorted by node id).
    pub index: usize,
    /// Sibling hashes from the leaf up.
    pub siblings: Vec<[u8; 32]>,
}

impl InclusionProof {
    /// Whether `entry` is at this proof's index in a manifest of `entry_count` entries with
    /// this `root` (take both from the signed manifest).
    pub fn verify(&self, entry: &RewardEntry, entry_count: u32, root: &[u8; 32]) -> bool {
        usize::try_from(entry_count).is_ok_and(|count| {
            merkle::verify(&entry.leaf(), self.index, count, &self.siblings, root)
        })
    }
}

impl EpochRewards {
    /// The amounts paid, summed (equals the emission whenever someone earned).
    pub fn total_paid(&self) -> u128 {
        self.entries.iter().map(|e| u128::from(e.amount)).sum()
    }

    /// The Merkle leaves of the entries, in order.
    pub fn leaves(&self) -> Vec<[u8; 32]> {
        self.entries.iter().map(RewardEntry::leaf).collect()
    }

    /// The Merkle root over all entries.
    pub fn root(&self) -> [u8; 32] {
        merkle::root(&self.leaves())
    }

    /// The manifest pages to sign and publish: entries sorted by node id,
    /// [`MANIFEST_PAGE_MAX`] per page, every page carrying the same totals and root. An epoch
    /// with no entries has one empty page (root of zero leaves: 32 zero bytes).
    pub fn manifest_pages(&self) -> Vec<RewardManifest> {
        let root = ByteArray(self.root());
        let entry_count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        let chunks: Vec<&[RewardEntry]> = if self.entries.is_empty() {
            vec![&[]]
        } else {
            self.entries.chunks(MANIFEST_PAGE_MAX).collect()
        };
        let page_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        chunks
            .into_iter()
            .zip(0u32..)
            .map(|(chunk, page)| RewardManifest {
                epoch: self.epoch,
                emission: self.emission,
                entry_count,
                root,
                page,
                page_count,
                entries: chunk.to_vec(),
            })
            .collect()
    }

    /// The inclusion proof of `node`'s entry, if it was paid.
    pub fn inclusion_proof(&self, node: &NodeId) -> Option<InclusionProof> {
        let index = self.entries.binary_search_by(|e| e.node.cmp(node)).ok()?;
        let siblings = merkle::proof(&self.leaves(), index)?;
        Some(InclusionProof { index, siblings })
    }

    /// The entry of `node`, if it was paid.
    pub fn entry(&self, node: &NodeId) -> Option<&RewardEntry> {
        self.entries
            .binary_search_by(|e| e.node.cmp(node))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// The canonical bytes of an entry (what its leaf hashes), for storage next to the manifest.
pub fn entry_bytes(entry: &RewardEntry) -> Vec<u8> {
    encode_payload(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hip15_units_by_hand() {
        // N = 4, R = 0.8.
        assert_eq!(witness_total_units(0, 4, 8_000), 0);
        assert_eq!(witness_total_units(3, 4, 8_000), 3 * UNIT);
        assert_eq!(witness_total_units(4, 4, 8_000), 4 * UNIT);
        // W = 5: 4 + 1 − 0.8 = 4.2; W = 6: 4 + 1 − 0.64 = 4.36.
        assert_eq!(witness_total_units(5, 4, 8_000), 4_200_000);
        assert_eq!(witness_total_units(6, 4, 8_000), 4_360_000);
        assert_eq!(witness_total_units(u16::MAX, 4, 8_000), 5 * UNIT);
        assert_eq!(witness_units(6, 4, 8_000), 726_666);
        assert_eq!(beacon_units(2, 4, 8_000), 500_000);
        assert_eq!(beacon_units(6, 4, 8_000), 1_090_000);
        // More witnesses never lower the beacon's total, and lower each witness's share.
        for w in 1..200u16 {
            assert!(witness_total_units(w + 1, 4, 8_000) >= witness_total_units(w, 4, 8_000));
            assert!(witness_units(w + 1, 4, 8_000) <= witness_units(w, 4, 8_000));
        }
    }

    #[test]
    fn largest_remainder_by_hand() {
        let a = NodeId([1; 32]);
        let b = NodeId([2; 32]);
        let c = NodeId([3; 32]);
        // 10 over 1:1:1 → 3.33 each; the one left goes to the smallest id.
        assert_eq!(allocate(10, &[(a, 1), (b, 1), (c, 1)]), vec![4, 3, 3]);
        // 100 over 1:2:3 → 16.67, 33.33, 50: remainders 0.67 and 0.33 → a gets the one.
        assert_eq!(allocate(100, &[(a, 1), (b, 2), (c, 3)]), vec![17, 33, 50]);
        assert_eq!(allocate(7, &[(a, 0), (b, 0)]), vec![0, 0]);
        assert_eq!(
            allocate(u64::MAX, &[(a, u64::MAX), (b, 1)])
                .iter()
                .map(|x| u128::from(*x))
                .sum::<u128>(),
            u128::from(u64::MAX)
        );
    }
}
