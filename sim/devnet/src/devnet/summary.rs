//! What the devnet has done so far: [`Devnet::poll`] reads the oracle's API (over
//! [`http_get`]) into a [`Summary`], which says whether every honest agent was paid and every
//! cheater caught, and renders as text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
/// A GET on the oracle's API: the body, if the status is 200 (`wisp_shell::http_get::get`,
/// re-exported for the devnet's users).
pub use wisp_shell::http_get::get as http_get;

use super::{AgentInfo, Cheater, Devnet};

/// One node's reward for one epoch, by category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reward {
    /// Peer id.
    pub peer_id: String,
    /// Coverage.
    pub coverage: u64,
    /// Backhaul.
    pub backhaul: u64,
    /// Uptime.
    pub uptime: u64,
    /// Usage (subscribers' co-signed traffic).
    pub usage: u64,
}

/// What the devnet has done so far, from the oracle's API and the air.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Epochs closed.
    pub epochs_closed: usize,
    /// The open epoch, if any.
    pub epoch: Option<u64>,
    /// Proofs stored.
    pub proofs_stored: u64,
    /// Refusals by reason.
    pub rejections: Vec<(String, u64)>,
    /// Witness links counted in the last closed epoch.
    pub witness_links: usize,
    /// Transmissions and deliveries on the air.
    pub air: (u64, u64),
    /// Per node (peer id): rewards summed over the closed epochs.
    pub totals: BTreeMap<String, Reward>,
    /// Per node (peer id): the last measured backhaul, down and up, bits/s.
    pub bandwidth: BTreeMap<String, (Option<u64>, Option<u64>)>,
    /// Per node (peer id): its reward in the last closed epoch, by category.
    pub last_epoch: BTreeMap<String, Reward>,
    /// Per cheater (peer id): the reason codes of its refused proofs (its last 100) and of
    /// what the oracle marked it for, with counts.
    pub cheater_reasons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per node (peer id): the last epoch of its penalty, if it was caught.
    pub penalized_through: BTreeMap<String, u64>,
    /// Per hotspot with a subscriber (peer id): the data credits its subscribers have burned.
    pub burned_dc: BTreeMap<String, u64>,
}

/// The most the usage pool pays for `burned_dc` credits: their value times the payout cap
/// (the oracle's default rules, which the devnet's oracle runs).
pub fn usage_cap(burned_dc: u64) -> u128 {
    let cap = wisp_oracle_core::config::RulesConfig::default().usage_payout_cap_bps;
    burn_value(burned_dc) * u128::from(cap) / 10_000
}

/// What `burned_dc` credits were worth to whoever bought them (the oracle's default rules).
pub fn burn_value(burned_dc: u64) -> u128 {
    let per_dc = wisp_oracle_core::config::RulesConfig::default().usage_reward_per_dc;
    u128::from(burned_dc) * u128::from(per_dc)
}

impl Summary {
    /// True when every honest agent was paid in all three categories (and for usage, if a
    /// subscriber uses it) and the oracle shows its measured backhaul.
    pub fn all_paid(&self, agents: &[AgentInfo]) -> bool {
        agents.iter().filter(|a| a.cheater.is_none()).all(|a| {
            let served = self.burned_dc.contains_key(&a.peer_id);
            self.totals.get(&a.peer_id).is_some_and(|r| {
                r.coverage > 0 && r.backhaul > 0 && r.uptime > 0 && (!served || r.usage > 0)
            }) && self
                .bandwidth
                .get(&a.peer_id)
                .is_some_and(|(d, u)| d.is_some() || u.is_some())
        })
    }

    /// Whether `a`, a cheater, has lost its reward: it earned nothing in the last closed
    /// epoch (a replayer: no coverage; its backhaul and uptime are real), and the oracle
    /// refused or marked it with a reason its way of cheating explains. An inflated-usage
    /// cheater's coverage, backhaul and uptime are real; it is caught when its receipts are
    /// marked and all the usage it was ever paid is at most the payout cap's share of the
    /// credits its colluder burned: the pair lost at least half of what it spent.
    pub fn caught(&self, a: &AgentInfo) -> bool {
        let Some(c) = a.cheater else {
            return false;
        };
        let marked = self
            .cheater_reasons
            .get(&a.peer_id)
            .is_some_and(|r| r.keys().any(|k| c.expected_reasons().contains(&k.as_str())));
        if c == Cheater::InflatedCounters {
            let burned = self.burned_dc.get(&a.peer_id).copied().unwrap_or(0);
            let paid = self.totals.get(&a.peer_id).map_or(0, |r| r.usage);
            return marked && burned > 0 && u128::from(paid) <= usage_cap(burned);
        }
        // A replayer's backhaul and uptime are real; what it cheats for is coverage.
        let last = self.last_epoch.get(&a.peer_id).cloned().unwrap_or_default();
        let cheated_for = match c {
            Cheater::Replay => last.coverage,
            _ => last.coverage + last.backhaul + last.uptime + last.usage,
        };
        self.epochs_closed > 0 && cheated_for == 0 && marked
    }

    /// True when every cheater has been caught ([`Summary::caught`]).
    pub fn all_caught(&self, agents: &[AgentInfo]) -> bool {
        agents
            .iter()
            .filter(|a| a.cheater.is_some())
            .all(|a| self.caught(a))
    }

    /// The summary as text: progress, refusals, and the rewards table.
    pub fn render(&self, agents: &[AgentInfo], elapsed: Duration) -> String {
        let mut s = String::new();
        let (tx, rx) = self.air;
        let _ = writeln!(
            s,
            "[{:>4} s] epoch {} · {} closed · {} proofs stored · air: {tx} beacons sent, {rx} heard · {} witness links in the last closed epoch",
            elapsed.as_secs(),
            self.epoch.map_or_else(|| "-".into(), |e| e.to_string()),
            self.epochs_closed,
            self.proofs_stored,
            self.witness_links,
        );
        if !self.rejections.is_empty() {
            let list: Vec<String> = self
                .rejections
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(s, "  refused: {}", list.join(", "));
        }
        let _ = writeln!(
            s,
            "  {:<9} {:<14} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "node", "peer", "coverage", "backhaul", "uptime", "usage", "down Mb/s", "up Mb/s"
        );
        for a in agents {
            let r = self.totals.get(&a.peer_id).cloned().unwrap_or_default();
            let last = self
                .last_epoch
                .get(&a.peer_id)
                .map_or(0, |r| r.coverage + r.backhaul + r.uptime + r.usage);
            let (down, up) = self.bandwidth.get(&a.peer_id).copied().unwrap_or_default();
            let mbps =
                |b: Option<u64>| b.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6));
            let short = a
                .peer_id
                .get(a.peer_id.len().saturating_sub(8)..)
                .unwrap_or("");
            let _ = write!(
                s,
                "  {:<9} …{:<13} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
                a.name,
                short,
                r.coverage,
                r.backhaul,
                r.uptime,
                r.usage,
                mbps(down),
                mbps(up)
            );
            if let Some(c) = a.cheater {
                let reasons = self
                    .cheater_reasons
                    .get(&a.peer_id)
                    .map(|m| {
                        let mut v: Vec<(&String, &u64)> = m.iter().collect();
                        v.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
                        v.iter()
                            .take(4)
                            .map(|(k, n)| format!("{k} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let burned = self
                    .burned_dc
                    .get(&a.peer_id)
                    .filter(|_| c == Cheater::InflatedCounters)
                    .map(|&b| {
                        format!(
                            "its subscriber burned {b} DC, worth {}, pays back at most {}; ",
                            burn_value(b),
                            usage_cap(b)
                        )
                    })
                    .unwrap_or_default();
                let pen = self
                    .penalized_through
                    .get(&a.peer_id)
                    .map(|t| format!("penalized through epoch {t}; "))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "  [{}: {} · last epoch paid {last} · {burned}{pen}{}]",
                    c.name(),
                    if self.caught(a) {
                        "caught"
                    } else {
                        "not caught yet"
                    },
                    if reasons.is_empty() {
                        "no refusals yet".into()
                    } else {
                        reasons
                    }
                );
            }
            s.push('\n');
        }
        s
    }
}

impl Devnet {
    /// Reads the oracle's API into a summary (rewards of each closed epoch are read once).
    pub fn poll(&mut self) -> Result<Summary> {
        let mut sum = Summary::default();
        let status: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/status")?)?;
        sum.epoch = status["epoch"].as_u64();
        sum.proofs_stored = status["proofs_stored"].as_u64().unwrap_or(0);
        let epochs: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/epochs")?)?;
        for e in epochs.as_array().into_iter().flatten() {
            if e["state"] != "closed" {
                continue;
            }
            sum.epochs_closed += 1;
            let Some(n) = e["epoch"].as_u64() else {
                continue;
            };
            if !self.paid_seen.contains_key(&n) {
                let body = http_get(self.oracle_http, &format!("/v1/epochs/{n}/rewards"))?;
                let r: serde_json::Value = serde_json::from_str(&body)?;
                let list = r["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| Reward {
                        peer_id: x["peer_id"].as_str().unwrap_or("").to_string(),
                        coverage: x["coverage"].as_u64().unwrap_or(0),
                        backhaul: x["backhaul"].as_u64().unwrap_or(0),
                        uptime: x["uptime"].as_u64().unwrap_or(0),
                        usage: x["usage"].as_u64().unwrap_or(0),
                    })
                    .collect();
                self.paid_seen.insert(n, list);
            }
        }
        if let Some(list) = self.paid_seen.values().next_back() {
            for r in list {
                sum.last_epoch.insert(r.peer_id.clone(), r.clone());
            }
        }
        for list in self.paid_seen.values() {
            for r in list {
                let t = sum.totals.entry(r.peer_id.clone()).or_default();
                t.peer_id.clone_from(&r.peer_id);
                t.coverage += r.coverage;
                t.backhaul += r.backhaul;
                t.uptime += r.uptime;
                t.usage += r.usage;
            }
        }
        let rej: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/rejections")?)?;
        sum.rejections = rej
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x["reason"].as_str()?.to_string(), x["count"].as_u64()?)))
            .collect();
        let links: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/witness-links")?)?;
        sum.witness_links = links["links"].as_array().map_or(0, Vec::len);
        let nodes: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/nodes")?)?;
        for n in nodes.as_array().into_iter().flatten() {
            if let Some(id) = n["peer_id"].as_str() {
                sum.bandwidth.insert(
                    id.to_string(),
                    (n["down_bps"].as_u64(), n["up_bps"].as_u64()),
                );
                if let Some(t) = n["penalized_through"].as_u64() {
                    sum.penalized_through.insert(id.to_string(), t);
                }
            }
        }
        // Each cheater's refusals and marks, by reason.
        for a in self.agents.iter().filter(|a| a.cheater.is_some()) {
            let Ok(body) = http_get(self.oracle_http, &format!("/v1/nodes/{}", a.peer_id)) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let reasons = sum.cheater_reasons.entry(a.peer_id.clone()).or_default();
            for p in v["proofs"].as_array().into_iter().flatten() {
                for r in [&p["reason"], &p["flag"]]
                    .into_iter()
                    .filter_map(|r| r.as_str())
                {
                    *reasons.entry(r.to_string()).or_default() += 1;
                }
            }
            for m in v["node"]["marks"].as_array().into_iter().flatten() {
                if let Some(r) = m["reason"].as_str() {
                    *reasons.entry(r.to_string()).or_default() += 1;
                }
            }
            if sum.penalized_through.contains_key(&a.peer_id) {
                *reasons.entry("penalized".to_string()).or_default() += 1;
            }
        }
        // What each hotspot's subscribers have burned.
        for sub in &self.subscribers {
            let body = http_get(
                self.oracle_http,
                &format!("/v1/subscribers/{}", sub.peer_id),
            );
            let burned = body
                .ok()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| v["burned_dc"].as_u64())
                .unwrap_or(0);
            *sum.burned_dc.entry(sub.hotspot.clone()).or_default() += burned;
        }
        sum.air = (
            self.air_stats.transmissions.load(Ordering::Relaxed),
            self.air_stats.deliveries.load(Ordering::Relaxed),
        );
        Ok(sum)
    }
}
