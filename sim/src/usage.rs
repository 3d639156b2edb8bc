//! The usage model: subscribers with data credits and a demand over the day, their sessions on
//! nearby hotspots, and the usage cheaters.
//!
//! Off by default (`[usage] subscribers = 0`): a scenario without a `[usage]` section runs
//! exactly as before, event-log hash included.
//!
//! **Subscribers.** Each has a home near an honest hotspot (drawn from the run's seed) and a key
//! of its own; the operator grants it `credits_dc` at time zero, through the oracle engine's
//! own `submit_grant`, signed with the oracle's key. Each epoch a subscriber is active with
//! the probability of the hour's demand ([`demand_share`]: a cosine over the day, peaking at
//! `peak_hour`, never below `night_share`) and then uses `peak_mib_per_hour` × the epoch's
//! hours × a draw in [0.5, 1.5), down; up is `up_ratio` of that. It picks one of the `nearby`
//! honest hotspots closest to its home. A hotspot's sessions together carry at most what its
//! backhaul link carries in an epoch: beyond that each is scaled down pro rata.
//!
//! **A session** is one epoch long: the subscriber's side is wisp-client's
//! [`Session`](wisp_client::Session) (pure without its `cli` feature), the hotspot's side the agent
//! core's [`Usage`](wisp_agent_core::usage::Usage) fed the router's counters; the client signs,
//! the hotspot co-signs, and when the client leaves the hotspot's latest co-signed receipt goes
//! to the oracle on the hotspot's proof topic, the same ingest path as every other proof
//! (without the delivery faults).
//!
//! **Usage archetypes** ([`UsageArchetype`]), each on hotspots of its own that serve no
//! honest subscriber: they feed the cores lying inputs (the cores themselves are unchanged).
//! A cheater's **gain** is the usage reward its hotspots were paid less the value
//! (`usage_reward_per_dc` per DC) of the credits its own or colluding subscribers burned: the
//! cheater bought those. Its **fair** reward is what the same hotspot earns in the fair
//! baseline, where its subscriber is an honest customer (someone else's money) with the
//! honest demand on it; for a replaying hotspot, what the hotspot whose receipts it replays
//! earns there (what it would have earned by carrying that traffic itself).
//!
//! **Carriers** (`carriers`, off by default) and their two archetypes are in
//! [`crate::carrier`].

use serde::{Deserialize, Serialize};

/// The `[usage]` section of a scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageCfg {
    /// Honest subscribers. Default 0: the usage model is off.
    pub subscribers: u32,
    /// Data credits the operator grants each subscriber at time zero. Default 1 000 000.
    pub credits_dc: u64,
    /// MiB downloaded per hour at the peak hour by an active subscriber. Default 300.
    pub peak_mib_per_hour: f64,
    /// Hour of the day (simulated time zero is midnight) of the peak. Default 20.
    pub peak_hour: f64,
    /// Share of subscribers active at the quietest hour. Default 0.1.
    pub night_share: f64,
    /// Upload as a share of download. Default 0.1.
    pub up_ratio: f64,
    /// A subscriber picks among this many honest hotspots closest to its home. Default 3.
    pub nearby: u32,
    /// Self-dealers whose subscriber key is their hotspot's owner. Default 0.
    pub self_dealing: u32,
    /// Self-dealers with a subscriber key the oracle cannot link to them. Default 0.
    pub self_dealing_unlinked: u32,
    /// Hotspots signing, with a colluding subscriber, `inflation` × their backhaul. Default 0.
    pub inflated_counters: u32,
    /// Pairs of hotspots sharing one colluding subscriber's session. Default 0.
    pub colluding_subscriber: u32,
    /// Hotspots that send an honest hotspot's co-signed receipts again as their own. Default 0.
    pub replayed_receipt: u32,
    /// How far above its backhaul an inflating hotspot claims. Default 20.
    pub inflation: f64,
    /// Carriers (offload partners) on the oracle's `usage_carriers` allow-list. Default 0: no
    /// carrier, and a scenario runs exactly as before.
    pub carriers: u32,
    /// Share of honest subscribers whose sessions a carrier accounts (and reports) instead of
    /// the subscriber signing receipts; with `carriers = 0` nobody is offloaded. Default 0.3.
    pub carrier_share: f64,
    /// Data credits the operator grants each carrier at time zero. Default 100 000 000.
    pub carrier_credits_dc: u64,
    /// Hotspots signing carrier reports about themselves with a key not on the allow-list.
    /// Default 0.
    pub forged_carrier: u32,
    /// Allow-listed carriers colluding with a hotspot, reporting `inflation` × its backhaul.
    /// Default 0.
    pub inflated_carrier: u32,
}

impl Default for UsageCfg {
    fn default() -> Self {
        UsageCfg {
            subscribers: 0,
            credits_dc: 1_000_000,
            peak_mib_per_hour: 300.0,
            peak_hour: 20.0,
            night_share: 0.1,
            up_ratio: 0.1,
            nearby: 3,
            self_dealing: 0,
            self_dealing_unlinked: 0,
            inflated_counters: 0,
            colluding_subscriber: 0,
            replayed_receipt: 0,
            inflation: 20.0,
            carriers: 0,
            carrier_share: 0.3,
            carrier_credits_dc: 100_000_000,
            forged_carrier: 0,
            inflated_carrier: 0,
        }
    }
}

impl UsageCfg {
    /// Whether the usage model runs.
    pub fn enabled(&self) -> bool {
        self.subscribers > 0 || self.cheaters() > 0
    }

    /// Usage cheater instances.
    pub fn cheaters(&self) -> u32 {
        self.self_dealing
            + self.self_dealing_unlinked
            + self.inflated_counters
            + self.colluding_subscriber
            + self.replayed_receipt
            + self.forged_carrier
            + self.inflated_carrier
    }
}

/// A usage cheater archetype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageArchetype {
    /// The owner's own subscriber key (its hotspot's owner string) burns its own grant on its
    /// own hotspot, claiming the hotspot's whole backhaul.
    SelfDealing,
    /// The same with a subscriber key the oracle cannot link to the owner.
    SelfDealingUnlinked,
    /// Hotspot and colluding subscriber sign `inflation` × the backhaul.
    InflatedCounters,
    /// One colluding subscriber's session claimed on two hotspots of the cheater.
    ColludingSubscriber,
    /// A hotspot sends an honest hotspot's co-signed receipts again, as its own.
    ReplayedReceipt,
    /// A hotspot signs carrier reports of usage on itself with a key not on the allow-list.
    ForgedCarrier,
    /// An allow-listed carrier colluding with a hotspot reports `inflation` × its backhaul.
    InflatedCarrier,
}

impl UsageArchetype {
    /// Every archetype, in report order.
    pub const ALL: [UsageArchetype; 7] = [
        UsageArchetype::SelfDealing,
        UsageArchetype::SelfDealingUnlinked,
        UsageArchetype::InflatedCounters,
        UsageArchetype::ColludingSubscriber,
        UsageArchetype::ReplayedReceipt,
        UsageArchetype::ForgedCarrier,
        UsageArchetype::InflatedCarrier,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            UsageArchetype::SelfDealing => "self_dealing",
            UsageArchetype::SelfDealingUnlinked => "self_dealing_unlinked",
            UsageArchetype::InflatedCounters => "inflated_counters",
            UsageArchetype::ColludingSubscriber => "colluding_subscriber",
            UsageArchetype::ReplayedReceipt => "replayed_receipt",
            UsageArchetype::ForgedCarrier => "forged_carrier",
            UsageArchetype::InflatedCarrier => "inflated_carrier",
        }
    }

    /// How many instances `cfg` asks for.
    pub fn count(self, cfg: &UsageCfg) -> u32 {
        match self {
            UsageArchetype::SelfDealing => cfg.self_dealing,
            UsageArchetype::SelfDealingUnlinked => cfg.self_dealing_unlinked,
            UsageArchetype::InflatedCounters => cfg.inflated_counters,
            UsageArchetype::ColludingSubscriber => cfg.colluding_subscriber,
            UsageArchetype::ReplayedReceipt => cfg.replayed_receipt,
            UsageArchetype::ForgedCarrier => cfg.forged_carrier,
            UsageArchetype::InflatedCarrier => cfg.inflated_carrier,
        }
    }

    /// Hotspots one instance runs.
    pub fn hotspots(self) -> usize {
        match self {
            UsageArchetype::ColludingSubscriber => 2,
            _ => 1,
        }
    }
}

/// The share of subscribers active at `hour` (0–24): `night_share` at the quietest hour, 1 at
/// `peak_hour`, a cosine between.
pub fn demand_share(cfg: &UsageCfg, hour: f64) -> f64 {
    let phase = (hour - cfg.peak_hour) / 24.0 * std::f64::consts::TAU;
    let night = cfg.night_share.clamp(0.0, 1.0);
    night + (1.0 - night) * 0.5 * (1.0 + phase.cos())
}

/// One usage cheater instance: its hotspots (world indices) and, for a replayer, the honest
/// hotspot whose receipts it replays.
#[derive(Clone, Debug, Serialize)]
pub struct Instance {
    /// The archetype.
    pub archetype: UsageArchetype,
    /// Its hotspots.
    pub hotspots: Vec<u32>,
    /// Whose receipts it replays (replayed_receipt only).
    pub source: Option<u32>,
    /// Its subscriber, by index into the run's subscribers (none for a replayer).
    pub subscriber: Option<usize>,
    /// Its colluding carrier, by index into the run's carriers (inflated_carrier only).
    pub carrier: Option<usize>,
}

/// What a run's usage model measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UsageTally {
    /// Usage reward paid per world index.
    pub paid: Vec<u128>,
    /// DC burned per subscriber.
    pub burned: Vec<u128>,
    /// Credits granted, per subscriber.
    pub granted: Vec<u64>,
    /// Whether each subscriber is honest.
    pub honest: Vec<bool>,
    /// Cheater instances (their honest twins in the fair baseline).
    pub instances: Vec<Instance>,
    /// Sessions run, receipts sent, and refused at ingest.
    pub sessions: u64,
    /// Receipts sent to the oracle.
    pub receipts: u64,
    /// Usage receipts refused at ingest, by reason name.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Usage receipts flagged at close, by reason name.
    pub flagged: std::collections::BTreeMap<String, u64>,
    /// Usage pool paid and DC burned over the run.
    pub pool_paid: u128,
    /// DC burned over the run.
    pub burned_dc: u128,
    /// The oracle's value of one DC (`usage_reward_per_dc`).
    pub reward_per_dc: u64,
    /// Per carrier (empty without carriers).
    pub carriers: Vec<crate::carrier::CarrierTally>,
    /// Forged carrier reports and what the oracle answered them.
    pub forged: crate::carrier::ForgedTally,
}

/// One usage archetype's row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct UsageRow {
    /// The archetype's JSON name.
    pub archetype: &'static str,
    /// Instances.
    pub instances: usize,
    /// Usage reward its hotspots were paid.
    pub paid: u128,
    /// Value of the DC its own or colluding subscribers burned.
    pub burned_value: u128,
    /// Paid less burned value.
    pub gain: i128,
    /// The fair reward (see the module documentation).
    pub fair: u128,
    /// Gain ÷ fair (0 when fair is 0 and gain ≤ 0).
    pub vs_fair: f64,
    /// Paid ÷ fair, before the cost of the credits: what the usage pool alone gave it.
    pub paid_vs_fair: f64,
    /// Paid ÷ burned value (self-dealing: what it got back of what it burned).
    pub paid_vs_burned: Option<f64>,
}

/// The usage part of the report.
#[derive(Clone, Debug, Serialize)]
pub struct UsageReport {
    /// Honest subscribers.
    pub subscribers: usize,
    /// Sessions, receipts sent, refusals and flags.
    pub sessions: u64,
    /// Receipts sent.
    pub receipts: u64,
    /// Refused at ingest, by reason.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Flagged at close, by reason.
    pub flagged: std::collections::BTreeMap<String, u64>,
    /// DC burned over the run.
    pub burned_dc: u128,
    /// Usage pool paid over the run.
    pub pool_paid: u128,
    /// Honest hotspots paid usage, and the usage they were paid in total.
    pub honest_hotspots_paid: usize,
    /// Usage paid to honest hotspots.
    pub honest_paid: u128,
    /// Usage paid per honest hotspot paid any (mean).
    pub honest_paid_mean: f64,
    /// Usage paid to the same honest hotspots in the fair baseline (the usage pool is a share
    /// of the emission, so what cheaters are paid from it is not paid to them).
    pub honest_paid_fair: Option<u128>,
    /// Per archetype.
    pub archetypes: Vec<UsageRow>,
    /// Carriers' figures (absent without carriers or forged reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carriers: Option<crate::carrier::CarriersReport>,
}

/// The usage report of a main run and its fair baseline.
pub fn report(main: &UsageTally, fair: Option<&UsageTally>) -> UsageReport {
    let in_instance: std::collections::BTreeSet<u32> = main
        .instances
        .iter()
        .flat_map(|i| i.hotspots.iter().copied())
        .collect();
    let honest: Vec<u128> = main
        .paid
        .iter()
        .enumerate()
        .filter(|(i, p)| **p > 0 && !u32::try_from(*i).is_ok_and(|i| in_instance.contains(&i)))
        .map(|(_, p)| *p)
        .collect();
    let honest_paid: u128 = honest.iter().sum();
    let value = u128::from(main.reward_per_dc);
    let archetypes = UsageArchetype::ALL
        .iter()
        .filter_map(|a| {
            let list: Vec<(usize, &Instance)> = main
                .instances
                .iter()
                .enumerate()
                .filter(|(_, i)| i.archetype == *a)
                .collect();
            if list.is_empty() {
                return None;
            }
            let mut paid = 0u128;
            let mut burned = 0u128;
            let mut fair_sum = 0u128;
            for (k, inst) in &list {
                paid += inst
                    .hotspots
                    .iter()
                    .map(|h| main.paid.get(*h as usize).copied().unwrap_or(0))
                    .sum::<u128>();
                if let Some(s) = inst.subscriber {
                    burned += main.burned.get(s).copied().unwrap_or(0) * value;
                }
                // A colluding carrier's credits are the cheater's money too.
                if let Some(c) = inst.carrier {
                    burned += main.carriers.get(c).map_or(0, |c| c.burned_dc) * value;
                }
                if let Some(f) = fair {
                    let twin = f.instances.get(*k);
                    let who: Vec<u32> = match (inst.source, twin) {
                        (Some(src), _) => vec![src],
                        (None, Some(t)) => t.hotspots.clone(),
                        (None, None) => Vec::new(),
                    };
                    fair_sum += who
                        .iter()
                        .map(|h| f.paid.get(*h as usize).copied().unwrap_or(0))
                        .sum::<u128>();
                }
            }
            let gain = i128::try_from(paid).unwrap_or(i128::MAX)
                - i128::try_from(burned).unwrap_or(i128::MAX);
            let vs_fair = if fair_sum > 0 {
                gain as f64 / fair_sum as f64
            } else if gain > 0 {
                f64::INFINITY
            } else {
                0.0
            };
            let selfish = matches!(
                a,
                UsageArchetype::SelfDealing | UsageArchetype::SelfDealingUnlinked
            );
            Some(UsageRow {
                archetype: a.name(),
                instances: list.len(),
                paid,
                burned_value: burned,
                gain,
                fair: fair_sum,
                vs_fair,
                paid_vs_fair: if fair_sum > 0 {
                    paid as f64 / fair_sum as f64
                } else if paid > 0 {
                    f64::INFINITY
                } else {
                    0.0
                },
                paid_vs_burned: (selfish && burned > 0).then(|| paid as f64 / burned as f64),
            })
        })
        .collect();
    UsageReport {
        subscribers: main.honest.iter().filter(|h| **h).count(),
        sessions: main.sessions,
        receipts: main.receipts,
        refused: main.refused.clone(),
        flagged: main.flagged.clone(),
        burned_dc: main.burned_dc,
        pool_paid: main.pool_paid,
        honest_hotspots_paid: honest.len(),
        honest_paid,
        honest_paid_fair: fair.map(|f| {
            f.paid
                .iter()
                .enumerate()
                .filter(|(i, _)| !u32::try_from(*i).is_ok_and(|i| in_instance.contains(&i)))
                .map(|(_, p)| *p)
                .sum()
        }),
        honest_paid_mean: if honest.is_empty() {
            0.0
        } else {
            honest_paid as f64 / honest.len() as f64
        },
        archetypes,
        carriers: crate::carrier::report(main),
    }
}

/// The usage targets: each archetype's gain ÷ fair at most
/// [`TARGET_VS_FAIR`](crate::report::TARGET_VS_FAIR), and a self-dealer paid less than the value it
/// burned (or nothing, when nothing was burned).
pub fn targets(r: &UsageReport) -> Vec<crate::report::TargetCheck> {
    let limit = crate::report::TARGET_VS_FAIR;
    let mut out = Vec::new();
    for row in &r.archetypes {
        out.push(crate::report::TargetCheck {
            name: format!("usage: {} gain ÷ fair", row.archetype),
            value: row.vs_fair,
            limit,
            met: row.vs_fair <= limit,
        });
        if row.archetype.starts_with("self_dealing") {
            let value = row.paid_vs_burned.unwrap_or(0.0);
            out.push(crate::report::TargetCheck {
                name: format!("usage: {} paid ÷ burned value", row.archetype),
                value,
                limit: 1.0,
                met: row.paid == 0 || row.paid < row.burned_value,
            });
        }
    }
    if let Some(c) = &r.carriers {
        out.extend(crate::carrier::targets(c));
    }
    out
}

impl UsageReport {
    /// The Markdown section.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "\n## Usage\n");
        let _ = writeln!(
            s,
            "{} subscribers, {} sessions, {} receipts sent; {} DC burned, usage pool paid {}; \
             {} honest hotspots paid usage, {:.0} each on average ({} in all; {} in the fair \
             baseline).",
            self.subscribers,
            self.sessions,
            self.receipts,
            self.burned_dc,
            self.pool_paid,
            self.honest_hotspots_paid,
            self.honest_paid_mean,
            self.honest_paid,
            self.honest_paid_fair
                .map_or("no baseline".to_string(), |f| f.to_string())
        );
        let _ = writeln!(
            s,
            "\nRefused at ingest: {:?}; flagged at close: {:?}",
            self.refused, self.flagged
        );
        if !self.archetypes.is_empty() {
            let _ = writeln!(
                s,
                "\n| archetype | instances | paid | burned value | fair | gain ÷ fair | paid ÷ fair | paid ÷ burned |\n|---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for r in &self.archetypes {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {} | {:.3} | {:.3} | {} |",
                    r.archetype,
                    r.instances,
                    r.paid,
                    r.burned_value,
                    r.fair,
                    r.vs_fair,
                    r.paid_vs_fair,
                    r.paid_vs_burned.map_or("–".into(), |x| format!("{x:.3}"))
                );
            }
        }
        if let Some(c) = &self.carriers {
            s.push_str(&c.markdown());
        }
        s
    }
}
