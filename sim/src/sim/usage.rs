//! The usage model in the run (event 11, `Usage`): subscribers' grants at time zero, one round
//! of sessions per epoch through wisp-client's `Session` and the agent core's `Usage`, the
//! cheaters' lying inputs, and the usage part of each close. See [`crate::usage`]; carriers'
//! reports are in `carrier.rs` ([`crate::carrier`]).

use std::collections::BTreeMap;

use wisp_agent_core::usage::{Usage, UsageConfig};
use wisp_client::SubscriberKey;
use wisp_client::session::{Policy, Session};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::CreditGrant;
use wisp_protocol::{NodeId, SubscriberId};

use super::carrier::CarrierRt;
use super::{Sim, T0_MS};
use crate::cheaters::Archetype;
use crate::oracle::{Closed, Oracle};
use crate::rng::{self, Purpose};
use crate::scenario::Scenario;
use crate::usage::{Instance, UsageArchetype, UsageTally, demand_share};
use crate::world::World;

/// One subscriber.
#[derive(Debug)]
pub(super) struct Sub {
    key: SubscriberKey,
    id: SubscriberId,
    /// Hotspots it may use, nearest first.
    nearby: Vec<u32>,
    /// The cheater instance it belongs to.
    instance: Option<usize>,
    /// The carrier that accounts its sessions (offloaded), by index into the run's carriers.
    pub(super) carrier: Option<usize>,
}

/// The usage model's state in a run.
#[derive(Debug)]
pub(super) struct UsageRt {
    pub(super) subs: Vec<Sub>,
    by_id: BTreeMap<SubscriberId, usize>,
    cores: BTreeMap<u32, Usage>,
    pub(super) tally: UsageTally,
    /// Whether the cheaters cheat (not in the fair baseline).
    pub(super) cheat: bool,
    /// The carriers (empty without them).
    pub(super) carriers: CarrierRt,
}

fn key_of(seed: u64, i: u64) -> SubscriberKey {
    SubscriberKey::from_seed(
        blake3::Hasher::new_derive_key("wisp-sim subscriber key")
            .update(&seed.to_le_bytes())
            .update(&i.to_le_bytes())
            .finalize()
            .as_bytes(),
    )
}

/// `list[draw mod len]` (the list is not empty).
pub(super) fn pick<T: Copy>(list: &[T], draw: u64) -> T {
    list[usize::try_from(draw % list.len() as u64).unwrap_or(0)]
}

/// A non-negative byte count as an integer (saturating).
fn whole(bytes: f64) -> u64 {
    // Byte counts are far below 2^53 and never negative here; `as` saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = bytes.max(0.0) as u64;
    v
}

/// One session of an epoch's round: hotspot, subscriber index, session id, and the bytes
/// (down, up) both the router and the client count.
pub(super) type Planned = (u32, usize, [u8; 16], (u64, u64));

pub(super) fn id16(seed: u64, parts: &[u64]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("wisp-sim usage id");
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(&p.to_le_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Plans the usage model: who subscribes, near which hotspots, and which hotspots the usage
/// cheaters run. Returns the state and the owner strings that differ from the default (a
/// linked self-dealer's hotspot is owned by its subscriber key, in the main run only).
pub(super) fn plan(
    sc: &Scenario,
    world: &World,
    honest_only: bool,
) -> (UsageRt, BTreeMap<u32, String>) {
    let cfg = &sc.usage;
    let seed = sc.seed;
    // Instance hotspots by hash order among all hotspots, so the fair baseline (where every
    // hotspot is honest) picks the same ones.
    let mut order: Vec<u32> = (0..world.hotspots)
        .filter(|i| world.nodes[*i as usize].role.helper_of.is_none())
        .collect();
    order.sort_by_key(|i| rng::hash_u64(seed, Purpose::Cheat, &[0x75, u64::from(*i)]));
    let mut next = order.into_iter();
    let mut instances: Vec<Instance> = Vec::new();
    for a in UsageArchetype::ALL {
        for _ in 0..a.count(cfg) {
            let hotspots: Vec<u32> = next.by_ref().take(a.hotspots()).collect();
            instances.push(Instance {
                archetype: a,
                hotspots,
                source: None,
                subscriber: None,
                carrier: None,
            });
        }
    }
    let pool: Vec<u32> = next
        .filter(|i| world.nodes[*i as usize].role.archetype == Archetype::Honest)
        .collect();
    let mut subs: Vec<Sub> = Vec::new();
    let k = (cfg.nearby.max(1) as usize).min(pool.len());
    for i in 0..cfg.subscribers {
        if pool.is_empty() {
            break;
        }
        let home = pick(
            &pool,
            rng::hash_u64(seed, Purpose::Cheat, &[0x76, u64::from(i)]),
        );
        let at = &world.nodes[home as usize].phys;
        let mut near: Vec<(f64, u32)> = pool
            .iter()
            .map(|h| {
                let p = &world.nodes[*h as usize].phys;
                ((p.x - at.x).hypot(p.y - at.y), *h)
            })
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let key = key_of(seed, u64::from(i));
        subs.push(Sub {
            id: key.id(),
            key,
            nearby: near.into_iter().take(k).map(|x| x.1).collect(),
            instance: None,
            carrier: None,
        });
    }
    let mut carriers = CarrierRt::plan(cfg, seed, &mut subs);
    let mut owners = BTreeMap::new();
    for (n, inst) in instances.iter_mut().enumerate() {
        if inst.archetype == UsageArchetype::ReplayedReceipt {
            let draw = rng::hash_u64(seed, Purpose::Cheat, &[0x77, n as u64]);
            inst.source = (!pool.is_empty()).then(|| pick(&pool, draw));
            continue;
        }
        let key = key_of(seed, 1_000_000 + n as u64);
        if inst.archetype == UsageArchetype::SelfDealing
            && !honest_only
            && let Some(h) = inst.hotspots.first()
        {
            owners.insert(*h, key.peer_id());
        }
        inst.subscriber = Some(subs.len());
        if inst.archetype == UsageArchetype::InflatedCarrier {
            inst.carrier = Some(carriers.colluding(seed, n));
        }
        subs.push(Sub {
            id: key.id(),
            key,
            nearby: inst.hotspots.clone(),
            instance: Some(n),
            carrier: inst.carrier,
        });
    }
    let by_id = subs.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let tally = UsageTally {
        paid: vec![0; world.nodes.len()],
        burned: vec![0; subs.len()],
        granted: vec![cfg.credits_dc; subs.len()],
        honest: subs.iter().map(|s| s.instance.is_none()).collect(),
        instances,
        reward_per_dc: sc.oracle.rules.usage_reward_per_dc,
        carriers: carriers.tallies(cfg.carrier_credits_dc, &subs),
        ..UsageTally::default()
    };
    (
        UsageRt {
            subs,
            by_id,
            cores: BTreeMap::new(),
            tally,
            cheat: !honest_only,
            carriers,
        },
        owners,
    )
}

impl UsageRt {
    /// The operator grants every subscriber its credits, through the engine's own
    /// `submit_grant`, signed with the oracle's key.
    pub(super) fn grant(
        &self,
        sc: &Scenario,
        oracle: &mut Oracle,
        key: &wisp_protocol::NodeKey,
    ) -> anyhow::Result<()> {
        for (i, s) in self.subs.iter().enumerate() {
            let grant = CreditGrant {
                grant: ByteArray(id16(sc.seed, &[1, i as u64])),
                subscriber: s.id,
                amount_dc: sc.usage.credits_dc,
                issued_ms: T0_MS,
                memo: String::from("wisp-sim"),
            };
            let bytes = Envelope::sign(key, &grant).to_bytes();
            let verdict = oracle.submit_grant(bytes, T0_MS)?;
            anyhow::ensure!(
                verdict == wisp_protocol::msg::Verdict::Accepted,
                "grant {i} refused: {verdict:?}"
            );
        }
        self.carriers.grant(sc, oracle, key)
    }
}

/// One session's exchange: the hotspot's router and the subscriber's client both counted
/// `bytes` (down, up); they sign and co-sign until the client has nothing more to sign, then
/// the client leaves. Returns the hotspot's proofs.
fn exchange(
    core: &mut Usage,
    sub: &Sub,
    hotspot: NodeId,
    session: [u8; 16],
    epoch: u64,
    t_ms: u64,
    bytes: (u64, u64),
) -> Vec<Vec<u8>> {
    core.handle_epoch(epoch, t_ms);
    core.handle_counters(sub.id, bytes.0, bytes.1, t_ms);
    if let Ok(mut s) = Session::new(
        sub.key.clone(),
        hotspot,
        session,
        epoch,
        t_ms,
        Policy::default(),
    ) {
        s.handle_counters(bytes.0, bytes.1, t_ms);
        // A few rounds at most: a receipt, and one more after a dispute the client adopts.
        for _ in 0..4 {
            let Some(at) = s.poll_timeout() else { break };
            let at = at.max(t_ms);
            let Some(r) = s.poll_receipt(at) else { break };
            let answer = core.handle_receipt(&r, sub.id, at, epoch);
            s.handle_answer(answer);
        }
    }
    core.handle_client_gone(&sub.id, t_ms + 60_000);
    while core.poll_decision().is_some() {}
    let mut out = Vec::new();
    while let Some(p) = core.poll_proof() {
        out.push(p.bytes);
    }
    out
}

impl Sim<'_> {
    /// Bytes a hotspot's link carries in one epoch, (down, up).
    fn link_bytes(&self, h: u32) -> (u64, u64) {
        let l = &self.world.nodes[h as usize].link;
        let s = self.sc.epoch.duration_ms as f64 / 1000.0;
        (whole(l.down_bps * s / 8.0), whole(l.up_bps * s / 8.0))
    }

    fn serving(&self, h: u32) -> bool {
        self.rt[h as usize].core.is_some()
    }

    /// Event 11: this epoch's sessions.
    pub(super) fn usage_round(&mut self, e: u64) {
        let Some(mut u) = self.usage.take() else {
            return;
        };
        let cfg = &self.sc.usage;
        let seed = self.sc.seed;
        let t_ms = T0_MS + self.q.now_us() / 1000;
        let dur_ms = self.sc.epoch.duration_ms;
        let hour = ((e * dur_ms + dur_ms / 2) as f64 / 3.6e6) % 24.0;
        let share = demand_share(cfg, hour);
        let mib = cfg.peak_mib_per_hour * dur_ms as f64 / 3.6e6;
        // Honest demand: (subscriber, hotspot, down, up), then capped per hotspot.
        let mut demand: BTreeMap<u32, Vec<(usize, f64, f64)>> = BTreeMap::new();
        for (i, s) in u.subs.iter().enumerate() {
            let cheats = s.instance.is_some() && u.cheat;
            let replayer = s.nearby.is_empty();
            if cheats || replayer {
                continue;
            }
            let parts = [i as u64, e];
            if rng::unit(rng::hash_u64(
                seed,
                Purpose::Cheat,
                &[0x80, parts[0], parts[1]],
            )) >= share
            {
                continue;
            }
            let open: Vec<u32> = s
                .nearby
                .iter()
                .copied()
                .filter(|h| self.serving(*h))
                .collect();
            if open.is_empty() {
                continue;
            }
            let draw = rng::hash_u64(seed, Purpose::Cheat, &[0x81, parts[0], parts[1]]);
            let h = pick(&open, draw);
            let f = 0.5
                + rng::unit(rng::hash_u64(
                    seed,
                    Purpose::Cheat,
                    &[0x82, parts[0], parts[1]],
                ));
            let down = mib * f * (1u64 << 20) as f64;
            demand
                .entry(h)
                .or_default()
                .push((i, down, down * cfg.up_ratio));
        }
        let mut sessions: Vec<Planned> = Vec::new();
        for (h, list) in demand {
            let (cap_d, cap_u) = self.link_bytes(h);
            let sum_d: f64 = list.iter().map(|x| x.1).sum();
            let sum_u: f64 = list.iter().map(|x| x.2).sum();
            let kd = (cap_d as f64 / sum_d.max(1.0)).min(1.0);
            let ku = (cap_u as f64 / sum_u.max(1.0)).min(1.0);
            for (i, d, up) in list {
                let b = (whole(d * kd), whole(up * ku));
                let sid = id16(seed, &[2, i as u64, e]);
                sessions.push((h, i, sid, b));
            }
        }
        // The cheaters, each on its own hotspots; a forger's sessions are its forged reports.
        let mut forged: Vec<Planned> = Vec::new();
        if u.cheat {
            for (n, inst) in u.tally.instances.iter().enumerate() {
                let Some(si) = inst.subscriber else { continue };
                let sid = id16(seed, &[3, n as u64, e]);
                for h in &inst.hotspots {
                    if !self.serving(*h) {
                        continue;
                    }
                    let (d, up) = self.link_bytes(*h);
                    let b = if matches!(
                        inst.archetype,
                        UsageArchetype::InflatedCounters | UsageArchetype::InflatedCarrier
                    ) {
                        (
                            whole(d as f64 * cfg.inflation),
                            whole(up as f64 * cfg.inflation),
                        )
                    } else {
                        (d, up)
                    };
                    if inst.archetype == UsageArchetype::ForgedCarrier {
                        forged.push((*h, n, sid, b));
                    } else {
                        sessions.push((*h, si, sid, b));
                    }
                }
            }
        }
        // Offloaded subscribers' sessions (an inflating carrier's too) are their carriers' to
        // report.
        let (carried, sessions): (Vec<Planned>, Vec<Planned>) = sessions
            .into_iter()
            .partition(|p| u.subs[p.1].carrier.is_some());
        u.carriers.note(e, &sessions, &carried, &u.subs);
        let mut sent: Vec<(u32, Vec<u8>)> = Vec::new();
        for (h, si, sid, bytes) in sessions {
            let node = &self.world.nodes[h as usize];
            let core = u
                .cores
                .entry(h)
                .or_insert_with(|| Usage::new(node.key.clone(), UsageConfig::default()));
            u.tally.sessions += 1;
            for p in exchange(core, &u.subs[si], node.id, sid, e, t_ms, bytes) {
                sent.push((h, p));
            }
        }
        // Replayers send the source's co-signed receipts again on their own topic.
        if u.cheat {
            let mut again = Vec::new();
            for inst in &u.tally.instances {
                if let (Some(src), Some(h)) = (inst.source, inst.hotspots.first()) {
                    again.extend(
                        sent.iter()
                            .filter(|(s, _)| *s == src)
                            .map(|(_, p)| (*h, p.clone())),
                    );
                }
            }
            sent.extend(again);
        }
        for (h, bytes) in sent {
            u.tally.receipts += 1;
            let id = self.world.nodes[h as usize].id;
            self.oracle.arrive(&id, bytes, t_ms);
        }
        let verdicts = self.oracle.flush();
        for v in &verdicts {
            if v.kind == Kind::UsageReceipt
                && let Some(r) = v.reason
            {
                *u.tally.refused.entry(r.name().to_string()).or_insert(0) += 1;
            }
        }
        self.record_verdicts(&verdicts);
        self.carrier_round(&mut u, e, t_ms, carried, forged);
        self.usage = Some(u);
    }

    /// The usage part of a close: the tally and the invariants (the usage pool is what its
    /// hotspots were paid, at most the payout cap of what was burned).
    pub(super) fn usage_close(&mut self, e: u64, c: &Closed) {
        let Some(u) = self.usage.as_mut() else {
            return;
        };
        let mut paid = 0u128;
        for (id, amount) in &c.rewards.usage {
            paid += u128::from(*amount);
            if let Some(i) = self.oracle.index_of(id) {
                u.tally.paid[i as usize] += u128::from(*amount);
            }
        }
        for (sub, b) in &c.outcome.usage.burns {
            if let Some(i) = u.by_id.get(sub) {
                u.tally.burned[*i] += u128::from(*b);
            }
        }
        let burned = c.outcome.usage.burned_dc();
        u.tally.pool_paid += paid;
        u.tally.burned_dc += burned;
        for (_, reason) in c.outcome.rejections.iter().chain(&c.outcome.flagged) {
            if reason.name().starts_with("usage_") {
                *u.tally
                    .flagged
                    .entry(reason.name().to_string())
                    .or_insert(0) += 1;
            }
        }
        let cap = wisp_oracle_core::usage::payout_cap(self.oracle.registry().rules(), burned);
        if paid != u128::from(c.rewards.pools.usage) || paid > cap {
            self.stats.violations.push(format!(
                "epoch {e}: usage paid {paid}, pool {}, cap {cap}",
                c.rewards.pools.usage
            ));
        }
        self.log.record_bytes(&paid.to_le_bytes());
        self.log.record_bytes(&burned.to_le_bytes());
        self.carrier_close(e, c);
    }
}
