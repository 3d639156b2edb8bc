//! The report: what a run (and its fair baseline) says about the rules, as Markdown or JSON.
//!
//! Definitions (also in docs/SIMULATION.md, "What the rules catch (measured)"):
//!
//! - **Share of emission**: an archetype's rewards over the run divided by the total emitted.
//! - **Flagged**: a node is flagged when the oracle penalized it for cheating it caught (the
//!   reasons of `wisp_oracle_core::epoch::EpochOutcome::penalties`, in the reasons' column counted
//!   per node and epoch), or when at least a tenth of its proofs (and at least one) were
//!   refused for a reason that points at the node itself. Refusals that honest nodes
//!   meet through congestion or others' faults are not evidence: `late_arrival`,
//!   `witness_limit`, `beacon_not_found`, `duplicate_witness`, `no_reciprocity`,
//!   `wrong_epoch`, `duplicate_measurer`, `test_failed`, `link_implausible` (a link implicates
//!   both ends), `penalized`, `isolated_cluster`, `co_located`.
//! - **Recall** of an archetype: its flagged nodes over its nodes. **Precision**: its flagged
//!   nodes over those plus the honest nodes flagged for the same reasons.
//! - **Fair reward** of an honest node: its reward in the same scenario run again with every
//!   cheater behaving honestly (same seed, same positions and radios; each cheater asserts
//!   where it is, keeps its radio on air, and signs only what its core produces). An honest
//!   node **loses half** when its reward is below half its fair reward. **Sparse** nodes have
//!   at most two neighbours whose mean signal reaches their sensitivity. A cheater's fair
//!   reward is its own reward in that run (a helper identity, which does not exist there, has
//!   none).
//! - **vs fair** of an archetype: its identities' rewards over their fair rewards (sums). The
//!   **excess** of an identity is what it got above its fair reward (0 if less); an
//!   archetype's excess and the total over all cheaters are given as shares of the emission.
//! - **Targets** (checked by `wisp-sim run --check-targets`): every cheating archetype at most
//!   [`TARGET_VS_FAIR`] of its fair reward, the cheaters' total excess at most
//!   [`TARGET_EXCESS_SHARE`] of the emission, at most [`TARGET_LOST_HALF`] of the honest nodes
//!   losing half of their fair reward, and the honest nodes together at least
//!   [`TARGET_HONEST_VS_FAIR`] of their fair total.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use wisp_protocol::Reason;

use crate::cheaters::Archetype;
use crate::scenario::Scenario;
use crate::sim::RunOutput;
use crate::stats::EpochStats;

/// Reasons that are not evidence against the node that sent the proof.
pub const BENIGN: [Reason; 12] = [
    Reason::LateArrival,
    Reason::WitnessLimit,
    Reason::BeaconNotFound,
    Reason::DuplicateWitness,
    Reason::NoReciprocity,
    Reason::WrongEpoch,
    Reason::DuplicateMeasurer,
    Reason::TestFailed,
    // A link implicates both ends; the node-level reasons say which one lied.
    Reason::LinkImplausible,
    Reason::Penalized,
    Reason::IsolatedCluster,
    Reason::CoLocated,
];

/// Most an archetype may earn, as a share of its fair reward: cheating costs at least half.
pub const TARGET_VS_FAIR: f64 = 0.5;
/// Most the cheaters together may earn above their fair rewards, as a share of the emission.
pub const TARGET_EXCESS_SHARE: f64 = 0.005;
/// Most honest nodes (share) that may lose more than half of their fair reward.
pub const TARGET_LOST_HALF: f64 = 0.01;
/// Least the honest nodes together must earn, as a share of their fair total.
pub const TARGET_HONEST_VS_FAIR: f64 = 0.98;

/// One archetype's row.
#[derive(Clone, Debug, Serialize)]
pub struct ArchetypeRow {
    /// The archetype.
    pub archetype: &'static str,
    /// Identities (helpers included).
    pub nodes: u32,
    /// Rewards over the run.
    pub reward: u128,
    /// Mean reward per identity.
    pub mean_reward: f64,
    /// Mean reward relative to the honest mean.
    pub vs_honest: f64,
    /// Share of the total emission.
    pub share_of_emission: f64,
    /// Fair rewards of its identities (0 without a baseline).
    pub fair_reward: u128,
    /// Rewards over fair rewards (absent without a baseline).
    pub vs_fair: Option<f64>,
    /// Rewards above fair, summed over its identities, as a share of the emission (absent
    /// without a baseline).
    pub excess_share: Option<f64>,
    /// Flagged identities.
    pub flagged: u32,
    /// Recall.
    pub recall: f64,
    /// Precision (see the module documentation).
    pub precision: f64,
    /// Most frequent refusal reasons (non-benign first), with counts.
    pub top_reasons: Vec<(String, u64)>,
}

/// Honest nodes against their fair reward.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Fairness {
    /// Honest nodes with a fair reward above zero.
    pub compared: u32,
    /// Of those, how many got less than half of it.
    pub lost_half: u32,
    /// `lost_half / compared`.
    pub lost_half_share: f64,
    /// Sparse honest nodes compared.
    pub sparse_compared: u32,
    /// Sparse honest nodes that lost half.
    pub sparse_lost_half: u32,
    /// Honest nodes flagged (false positives), all and sparse.
    pub flagged: u32,
    /// Sparse honest nodes flagged.
    pub sparse_flagged: u32,
    /// Honest nodes' total reward over their total fair reward.
    pub honest_vs_fair: f64,
    /// Cheaters' rewards above their fair rewards (each identity's excess, summed), as a share
    /// of the emission.
    pub excess_share: f64,
    /// Cheaters' total reward over their total fair reward.
    pub cheaters_vs_fair: f64,
}

/// One target and whether the run met it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The limit.
    pub limit: f64,
    /// Whether the value is within the limit.
    pub met: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Hotspots.
    pub hotspots: u32,
    /// Identities (hotspots and helper identities).
    pub identities: u32,
    /// Simulated hours.
    pub sim_hours: f64,
    /// Epochs closed.
    pub epochs: usize,
    /// Event-log hash.
    pub hash: String,
    /// Events processed.
    pub events: u64,
    /// Wall seconds of the main run.
    pub wall_s: f64,
    /// Events per wall second.
    pub events_per_s: f64,
    /// Simulated hours per wall second.
    pub sim_hours_per_s: f64,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_mib: f64,
    /// Signatures made.
    pub signatures: u64,
    /// Envelopes the oracle verified / decoded unverified (sampling).
    pub verified: u64,
    /// Envelopes decoded without verification.
    pub unverified: u64,
    /// Proofs delivered; delivery attempts lost.
    pub delivered: u64,
    /// Delivery attempts lost and resent.
    pub lost: u64,
    /// Over-the-air receptions and internet relays by cheaters.
    pub receptions: u64,
    /// Frames relayed by cheaters.
    pub relayed: u64,
    /// Total emitted and total paid.
    pub emitted: u128,
    /// Total paid.
    pub paid: u128,
    /// Cheaters' share of the emission.
    pub cheater_share: f64,
    /// Per archetype, honest first.
    pub archetypes: Vec<ArchetypeRow>,
    /// Honest nodes against their fair reward (absent without a baseline).
    pub fairness: Option<Fairness>,
    /// The targets, checked against this run (empty without a baseline).
    pub targets: Vec<TargetCheck>,
    /// The usage model's figures (with `[usage]` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::UsageReport>,
    /// Coverage: res-8 hexes with an honest hotspot, and those where one earned coverage.
    pub coverage_hexes: (u32, u32),
    /// Share of hotspots that earned coverage in at least one epoch.
    pub coverage_nodes_share: f64,
    /// Refusals by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Core events by kind.
    pub core_events: BTreeMap<String, u64>,
    /// Invariant violations (empty when every epoch paid exactly its emission and no refused
    /// proof was paid).
    pub violations: Vec<String>,
    /// Per epoch.
    pub per_epoch: Vec<EpochStats>,
}

/// Peak resident set size of this process, MiB (VmHWM from /proc/self/status).
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Whether a node is flagged: the oracle penalized it for something it did (not only for an
/// earlier epoch), or enough of its proofs were refused for reasons that point at it.
fn node_flagged(n: &crate::stats::NodeStats) -> bool {
    n.penalties.keys().any(|r| *r != Reason::Penalized) || flagged(&n.rejected, n.counted)
}

fn flagged(rejected: &BTreeMap<Reason, u32>, counted: u32) -> bool {
    let bad: u32 = rejected
        .iter()
        .filter(|(r, _)| !BENIGN.contains(r))
        .map(|(_, c)| *c)
        .sum();
    let all: u32 = rejected.values().sum::<u32>() + counted;
    bad >= 1 && bad * 10 >= all
}

/// Identity `i`'s reward in the fair baseline (0 for an identity the baseline does not have).
fn fair_of(fair: &RunOutput, i: usize) -> u128 {
    fair.stats.nodes.get(i).map_or(0, |n| n.reward)
}

/// One line per identity, as CSV with a header: index, peer id, archetype, sparse, reward and its
/// coverage, backhaul, uptime and usage parts, fair reward (empty without a baseline), proofs
/// counted and refused, flagged, the epochs penalized by reason and the refusals by reason
/// (both as `reason:count`, spaces between).
pub fn nodes_csv(run: &RunOutput, fair: Option<&RunOutput>) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "idx,peer_id,archetype,sparse,reward,coverage,backhaul,uptime,usage,fair,counted,refused,flagged,penalties,refusals\n",
    );
    for (i, (n, (arch, sparse, _))) in run.stats.nodes.iter().zip(&run.nodes).enumerate() {
        let refused: u32 = n.rejected.values().sum();
        let _ = writeln!(
            s,
            "{i},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            run.ids.get(i).map_or(String::new(), ToString::to_string),
            arch.name(),
            u8::from(*sparse),
            n.reward,
            n.coverage,
            n.backhaul,
            n.uptime,
            n.usage,
            fair.map_or(String::new(), |f| fair_of(f, i).to_string()),
            n.counted,
            refused,
            u8::from(node_flagged(n)),
            n.penalties
                .iter()
                .map(|(r, c)| format!("{}:{c}", r.name()))
                .collect::<Vec<_>>()
                .join(" "),
            n.rejected
                .iter()
                .map(|(r, c)| format!("{}:{c}", r.name()))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    s
}

/// The targets (see the module documentation) for these rows and fairness figures.
fn targets(rows: &[ArchetypeRow], f: &Fairness) -> Vec<TargetCheck> {
    let mut out: Vec<TargetCheck> = rows
        .iter()
        .filter(|r| r.archetype != "honest" && r.nodes > 0)
        .filter_map(|r| {
            let v = r.vs_fair?;
            Some(TargetCheck {
                name: format!("{} reward ÷ fair", r.archetype),
                value: v,
                limit: TARGET_VS_FAIR,
                met: v <= TARGET_VS_FAIR,
            })
        })
        .collect();
    out.push(TargetCheck {
        name: "cheaters' excess ÷ emission".into(),
        value: f.excess_share,
        limit: TARGET_EXCESS_SHARE,
        met: f.excess_share <= TARGET_EXCESS_SHARE,
    });
    out.push(TargetCheck {
        name: "honest nodes losing half ÷ honest nodes".into(),
        value: f.lost_half_share,
        limit: TARGET_LOST_HALF,
        met: f.lost_half_share <= TARGET_LOST_HALF,
    });
    out.push(TargetCheck {
        name: "honest total ÷ fair (at least)".into(),
        value: f.honest_vs_fair,
        limit: TARGET_HONEST_VS_FAIR,
        met: f.honest_vs_fair >= TARGET_HONEST_VS_FAIR,
    });
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Builds the report of `run`, with `fair` the honest-only baseline if one was run.
pub fn build(sc: &Scenario, run: &RunOutput, fair: Option<&RunOutput>) -> Report {
    let st = &run.stats;
    let emitted: u128 = st.epochs.iter().map(|e| u128::from(e.emission)).sum();
    let paid: u128 = st.epochs.iter().map(|e| e.paid).sum();
    let honest_nodes: Vec<usize> = (0..run.nodes.len())
        .filter(|i| run.nodes[*i].0 == Archetype::Honest)
        .collect();
    let honest_mean = ratio(
        honest_nodes
            .iter()
            .map(|i| st.nodes[*i].reward as f64)
            .sum(),
        honest_nodes.len() as f64,
    );
    let is_flagged: Vec<bool> = st.nodes.iter().map(node_flagged).collect();
    let mut rows = Vec::new();
    let mut cheater_reward = 0u128;
    let (mut cheater_fair, mut cheater_excess) = (0u128, 0u128);
    for arch in Archetype::ALL {
        let members: Vec<usize> = (0..run.nodes.len())
            .filter(|i| run.nodes[*i].0 == arch)
            .collect();
        let reward: u128 = members.iter().map(|i| st.nodes[*i].reward).sum();
        if arch.cheats() {
            cheater_reward += reward;
        }
        let flagged_n = members.iter().filter(|i| is_flagged[**i]).count();
        let mut reasons: BTreeMap<Reason, u64> = BTreeMap::new();
        for ((a, _, r), c) in &st.by_archetype {
            if *a == arch {
                *reasons.entry(*r).or_insert(0) += c;
            }
        }
        for ((a, r), c) in st.penalties.iter().chain(&st.notices) {
            if *a == arch {
                *reasons.entry(*r).or_insert(0) += c;
            }
        }
        let bad_reasons: BTreeSet<Reason> = reasons
            .keys()
            .filter(|r| !BENIGN.contains(r))
            .copied()
            .collect();
        let honest_same = if arch.cheats() {
            honest_nodes
                .iter()
                .filter(|i| {
                    is_flagged[**i]
                        && st.nodes[**i]
                            .rejected
                            .keys()
                            .chain(st.nodes[**i].penalties.keys())
                            .any(|r| bad_reasons.contains(r))
                })
                .count()
        } else {
            0
        };
        let mut top: Vec<(String, u64)> = reasons
            .iter()
            .map(|(r, c)| (r.name().to_string(), *c))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(4);
        let mean = ratio(reward as f64, members.len() as f64);
        let (fair_reward, excess) = fair.map_or((0, 0), |f| {
            members.iter().fold((0u128, 0u128), |(fr, ex), i| {
                let fair_i = fair_of(f, *i);
                (fr + fair_i, ex + st.nodes[*i].reward.saturating_sub(fair_i))
            })
        });
        if arch.cheats() {
            cheater_fair += fair_reward;
            cheater_excess += excess;
        }
        rows.push(ArchetypeRow {
            archetype: arch.name(),
            nodes: u32::try_from(members.len()).unwrap_or(u32::MAX),
            reward,
            mean_reward: mean,
            vs_honest: ratio(mean, honest_mean),
            share_of_emission: ratio(reward as f64, emitted as f64),
            fair_reward,
            vs_fair: fair.map(|_| ratio(reward as f64, fair_reward as f64)),
            excess_share: fair.map(|_| ratio(excess as f64, emitted as f64)),
            flagged: u32::try_from(flagged_n).unwrap_or(u32::MAX),
            recall: ratio(flagged_n as f64, members.len() as f64),
            precision: if arch.cheats() {
                ratio(flagged_n as f64, (flagged_n + honest_same) as f64)
            } else {
                0.0
            },
            top_reasons: top,
        });
    }
    let fairness = fair.map(|f| {
        let mut out = Fairness::default();
        let (mut got, mut fair_total) = (0.0, 0.0);
        for &i in &honest_nodes {
            let Some(fs) = f.stats.nodes.get(i) else {
                continue;
            };
            let sparse = run.nodes[i].1;
            if is_flagged[i] {
                out.flagged += 1;
                if sparse {
                    out.sparse_flagged += 1;
                }
            }
            if fs.reward == 0 {
                continue;
            }
            got += st.nodes[i].reward as f64;
            fair_total += fs.reward as f64;
            out.compared += 1;
            let lost = st.nodes[i].reward * 2 < fs.reward;
            if lost {
                out.lost_half += 1;
            }
            if sparse {
                out.sparse_compared += 1;
                if lost {
                    out.sparse_lost_half += 1;
                }
            }
        }
        out.lost_half_share = ratio(f64::from(out.lost_half), f64::from(out.compared));
        out.honest_vs_fair = ratio(got, fair_total);
        out.excess_share = ratio(cheater_excess as f64, emitted as f64);
        out.cheaters_vs_fair = ratio(cheater_reward as f64, cheater_fair as f64);
        out
    });
    let mut targets = fairness
        .as_ref()
        .map(|f| targets(&rows, f))
        .unwrap_or_default();
    let usage = run
        .usage
        .as_ref()
        .map(|u| crate::usage::report(u, fair.and_then(|f| f.usage.as_ref())));
    if let (Some(u), Some(_)) = (&usage, fair) {
        targets.extend(crate::usage::targets(u));
    }
    let honest_hexes: BTreeSet<u64> = honest_nodes.iter().map(|i| run.nodes[*i].2).collect();
    let earning_hexes: BTreeSet<u64> = honest_nodes
        .iter()
        .filter(|i| st.nodes[**i].coverage_epochs > 0)
        .map(|i| run.nodes[*i].2)
        .collect();
    let hot = run.hotspots as usize;
    let earning_nodes = (0..hot.min(st.nodes.len()))
        .filter(|i| st.nodes[*i].coverage_epochs > 0)
        .count();
    let wall = run.wall.as_secs_f64().max(1e-9);
    Report {
        scenario: sc.name.clone(),
        seed: sc.seed,
        hotspots: run.hotspots,
        identities: u32::try_from(run.nodes.len()).unwrap_or(u32::MAX),
        sim_hours: run.sim_hours,
        epochs: st.epochs.len(),
        hash: run.hash.clone(),
        events: run.events,
        wall_s: wall,
        events_per_s: run.events as f64 / wall,
        sim_hours_per_s: run.sim_hours / wall,
        peak_mib: peak_mib(),
        signatures: st.signatures,
        verified: run.verified.0,
        unverified: run.verified.1,
        delivered: st.delivered,
        lost: st.lost,
        receptions: st.receptions,
        relayed: st.relayed,
        emitted,
        paid,
        cheater_share: ratio(cheater_reward as f64, emitted as f64),
        archetypes: rows,
        fairness,
        targets,
        usage,
        coverage_hexes: (
            u32::try_from(honest_hexes.len()).unwrap_or(u32::MAX),
            u32::try_from(earning_hexes.len()).unwrap_or(u32::MAX),
        ),
        coverage_nodes_share: ratio(earning_nodes as f64, hot as f64),
        reasons: st
            .reasons
            .iter()
            .map(|(r, c)| (r.name().to_string(), *c))
            .collect(),
        core_events: st.core_events.clone(),
        violations: st.violations.clone(),
        per_epoch: st.epochs.clone(),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

impl Report {
    /// Whether the invariants held.
    pub fn invariants_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The targets not met (empty when all are, or without a baseline).
    pub fn targets_missed(&self) -> Vec<&TargetCheck> {
        self.targets.iter().filter(|t| !t.met).collect()
    }

    /// The Markdown rendering.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# wisp-sim report: {}\n",
            if self.scenario.is_empty() {
                "(unnamed)"
            } else {
                &self.scenario
            }
        );
        let _ = writeln!(
            s,
            "- seed {}, {} hotspots ({} identities), {:.1} simulated hours, {} epochs",
            self.seed, self.hotspots, self.identities, self.sim_hours, self.epochs
        );
        let _ = writeln!(s, "- event-log hash `{}`", self.hash);
        let _ = writeln!(
            s,
            "- invariants: {}",
            if self.invariants_ok() {
                "hold (every epoch paid exactly its emission; no refused proof paid)".to_string()
            } else {
                format!("VIOLATED ({})", self.violations.len())
            }
        );
        let _ = writeln!(
            s,
            "- cheaters' share of emission: **{}**",
            pct(self.cheater_share)
        );
        if let Some(f) = &self.fairness {
            let _ = writeln!(
                s,
                "- honest nodes losing more than half of their fair reward: **{} / {} ({})**; sparse: {} / {}; honest total vs fair: {:.3}",
                f.lost_half,
                f.compared,
                pct(f.lost_half_share),
                f.sparse_lost_half,
                f.sparse_compared,
                f.honest_vs_fair
            );
            let _ = writeln!(
                s,
                "- honest nodes flagged (false positives): {} (sparse: {})",
                f.flagged, f.sparse_flagged
            );
            let _ = writeln!(
                s,
                "- cheaters vs their fair reward: **{:.3}**; their excess over fair: **{}** of the emission",
                f.cheaters_vs_fair,
                pct(f.excess_share)
            );
        }
        let _ = writeln!(
            s,
            "- coverage: {} of {} res-8 hexes with an honest hotspot earned coverage; {} of hotspots earned coverage at least once",
            self.coverage_hexes.1,
            self.coverage_hexes.0,
            pct(self.coverage_nodes_share)
        );
        if let Some(u) = &self.usage {
            s.push_str(&u.markdown());
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s, "\n## Targets\n");
            let _ = writeln!(s, "| target | value | limit | met |\n|---|---:|---:|---|");
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {:.4} | {} | {} |",
                    t.name,
                    t.value,
                    t.limit,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        let _ = writeln!(s, "\n## Rewards and detection per archetype\n");
        let _ = writeln!(
            s,
            "| archetype | ids | share of emission | vs fair | excess (of emission) | mean vs honest | flagged | recall | precision | top refusal reasons |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &self.archetypes {
            if r.nodes == 0 {
                continue;
            }
            let reasons: Vec<String> = r
                .top_reasons
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} |",
                r.archetype,
                r.nodes,
                pct(r.share_of_emission),
                r.vs_fair.map_or("–".into(), |v| format!("{v:.3}")),
                r.excess_share.map_or("–".into(), pct),
                r.vs_honest,
                r.flagged,
                if r.archetype == "honest" {
                    "–".into()
                } else {
                    pct(r.recall)
                },
                if r.archetype == "honest" {
                    "–".into()
                } else {
                    pct(r.precision)
                },
                reasons.join(", ")
            );
        }
        let _ = writeln!(s, "\n## Performance\n");
        let _ = writeln!(s, "| figure | value |\n|---|---:|");
        let _ = writeln!(s, "| wall time | {:.2} s |", self.wall_s);
        let _ = writeln!(s, "| events | {} |", self.events);
        let _ = writeln!(s, "| events / s | {:.0} |", self.events_per_s);
        let _ = writeln!(
            s,
            "| simulated hours / wall second | {:.2} |",
            self.sim_hours_per_s
        );
        let _ = writeln!(s, "| peak memory (VmHWM) | {:.1} MiB |", self.peak_mib);
        let _ = writeln!(s, "| signatures made | {} |", self.signatures);
        let _ = writeln!(
            s,
            "| envelopes verified / unverified (sampled) | {} / {} |",
            self.verified, self.unverified
        );
        let _ = writeln!(
            s,
            "| proofs delivered / attempts lost | {} / {} |",
            self.delivered, self.lost
        );
        let _ = writeln!(
            s,
            "| receptions over the air / cheater relays | {} / {} |",
            self.receptions, self.relayed
        );
        let _ = writeln!(s, "\n## Refusals by reason\n");
        for (r, c) in &self.reasons {
            let _ = writeln!(s, "- {r}: {c}");
        }
        let _ = writeln!(s, "\n## Agent core events\n");
        for (r, c) in &self.core_events {
            let _ = writeln!(s, "- {r}: {c}");
        }
        if !self.violations.is_empty() {
            let _ = writeln!(s, "\n## Invariant violations\n");
            for v in self.violations.iter().take(20) {
                let _ = writeln!(s, "- {v}");
            }
        }
        s
    }
}
