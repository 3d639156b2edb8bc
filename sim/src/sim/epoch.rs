//! Epochs: the oracle signs each seed and the cores get it with a GNSS fix (events 1 and 2),
//! churn, crashes, back-dating and bandwidth rounds are scheduled, and each closed epoch
//! (event 6) is checked against the invariants and tallied.

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{EpochParams, EpochSeed};

use super::{Ev, Sim, T0_MS};
use crate::cheaters::Archetype;
use crate::oracle::Closed;
use crate::rng;
use crate::stats::EpochStats;
use crate::world;

impl Sim<'_> {
    pub(super) fn epoch_start(&mut self, e: u64) {
        let now = self.q.now_us();
        if let Some(until) = self.faults.oracle_down_until(now) {
            self.stats.core_event("seed_delayed_oracle_down");
            self.q.schedule(until, Ev::EpochStart(e));
            return;
        }
        let start_ms = T0_MS + e * self.sc.epoch.duration_ms;
        let ec = &self.sc.epoch;
        let seed = EpochSeed {
            epoch: e,
            start_ms,
            duration_ms: ec.duration_ms,
            seed: (*blake3::Hasher::new_derive_key("wisp-sim epoch seed")
                .update(&self.sc.seed.to_le_bytes())
                .update(&e.to_le_bytes())
                .finalize()
                .as_bytes())
            .into(),
            params: EpochParams {
                slot_count: ec.slot_count,
                witness_limit: ec.witness_limit,
                measurers_per_prover: ec.measurers_per_prover,
                heartbeat_interval_ms: ec.heartbeat_interval_ms,
                settle_ms: ec.settle_ms,
            },
        };
        self.seed_bytes = Some(Envelope::sign(&self.oracle_key, &seed).to_bytes());
        self.stats.signatures += 1;
        let verdicts = self.oracle.open_epoch(seed);
        self.record_verdicts(&verdicts);
        self.current = Some(e);
        let epoch_start_us = e * self.dur_us;
        for i in 0..self.rt.len() {
            let node = u32::try_from(i).unwrap_or(u32::MAX);
            let churned = self.faults.churned(node, e);
            let rt = &mut self.rt[i];
            rt.powered = !churned;
            if !rt.has_core {
                if self.world.nodes[i].role.archetype == Archetype::FakeHeartbeat && !churned {
                    let at = epoch_start_us + self.dur_us.saturating_sub(60_000_000);
                    self.q.schedule(at, Ev::Backdate(node, e));
                }
                continue;
            }
            if churned {
                if rt.core.is_some() {
                    self.stop_core(node);
                    self.stats.core_event("churn_off");
                }
                continue;
            }
            if rt.core.is_none() && !rt.crashed {
                self.start_core(node);
            }
            if self.rt[i].core.is_some() {
                let jitter = rng::hash_u64(
                    self.sc.seed,
                    rng::Purpose::Delivery,
                    &[9, u64::from(node), e],
                ) % 500_000;
                self.q.schedule(
                    now + self.sc.oracle.delivery_ms * 1000 + jitter,
                    Ev::Seed(node),
                );
            }
            if let Some(off) = self.faults.crash_in(node, e, self.dur_us) {
                self.q.schedule(epoch_start_us + off, Ev::Crash(node));
            }
        }
        let settle_us = u64::from(self.sc.epoch.settle_ms) * 1000;
        self.q.schedule(
            epoch_start_us + self.dur_us + settle_us + 1000,
            Ev::Close(e),
        );
        let every = u64::from(self.sc.backhaul.test_every_epochs);
        if every > 0 && e.is_multiple_of(every) {
            self.q
                .schedule(epoch_start_us + self.dur_us / 2, Ev::Bandwidth(e));
        }
        if self.usage.is_some() {
            let at = epoch_start_us + self.dur_us * 3 / 5;
            self.q.schedule(at, Ev::Usage(e));
        }
        if e + 1 < self.epochs {
            self.q
                .schedule((e + 1) * self.dur_us, Ev::EpochStart(e + 1));
        }
        if let Some(pb) = &self.progress {
            pb.set_position(e + 1);
        }
    }

    fn spoofs_gnss(&self, node: u32) -> bool {
        matches!(
            self.world.nodes[node as usize].role.archetype,
            Archetype::FakeLocation | Archetype::CollusionRing | Archetype::FakeHeartbeat
        )
    }

    pub(super) fn seed_node(&mut self, n: u32) {
        let Some(bytes) = self.seed_bytes.clone() else {
            return;
        };
        let local = self.local_ms(n);
        let e = self.current.unwrap_or(0);
        let spec = &self.world.nodes[n as usize];
        let at = if self.spoofs_gnss(n) {
            spec.asserted
        } else {
            spec.phys
        };
        let fix = world::fix_at(self.sc.seed, n, e, &at, &self.world.proj, local);
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        if core.handle_seed(&bytes, local).is_err() {
            self.stats.core_event("seed_refused");
        }
        core.handle_fix(fix);
        self.pump(n);
        // A replaying cheater now witnesses last epoch's captured beacons itself.
        let captured = std::mem::take(&mut self.rt[n as usize].captured);
        for frame in captured {
            self.replay(n, &frame);
        }
    }

    pub(super) fn close(&mut self, e: u64) {
        let now_ms = T0_MS + self.q.now_us() / 1000;
        let emission = self.sc.emission_per_epoch;
        let (closed, verdicts) = self.oracle.close(e, now_ms, emission);
        self.record_verdicts(&verdicts);
        let Some(closed) = closed else {
            self.stats
                .violations
                .push(format!("epoch {e}: could not close"));
            return;
        };
        self.account(e, &closed);
        self.usage_close(e, &closed);
    }

    fn account(&mut self, e: u64, c: &Closed) {
        let emission = c.rewards.emission;
        let paid = c.rewards.total_paid();
        if !c.rewards.entries.is_empty() && paid != u128::from(emission) {
            self.stats
                .violations
                .push(format!("epoch {e}: paid {paid} != emission {emission}"));
        }
        let rejected: std::collections::BTreeSet<_> =
            c.outcome.rejections.iter().map(|(id, _)| *id).collect();
        for (node, facts) in &c.outcome.nodes {
            if let Some(b) = facts.beacon
                && rejected.contains(&b)
            {
                self.stats
                    .violations
                    .push(format!("epoch {e}: a rejected beacon counted for {node}"));
            }
        }
        let mut by_arch = vec![0u128; Archetype::ALL.len()];
        let mut rejected_count = 0u64;
        for (node, kind, reason) in &c.rejected {
            let arch = self
                .world
                .nodes
                .get(*node as usize)
                .map_or(Archetype::Honest, |n| n.role.archetype);
            self.stats.reject(*node, arch, *kind, *reason);
            self.log.record_bytes(&reason.code().to_le_bytes());
            rejected_count += 1;
        }
        for (node, counts) in &c.counted {
            if let Some(s) = self.stats.nodes.get_mut(*node as usize) {
                s.counted += counts.iter().sum::<u32>();
            }
        }
        for (id, u) in &c.rewards.units {
            if let Some(i) = self.oracle.index_of(id) {
                let arch = self.world.nodes[i as usize].role.archetype;
                if u.coverage_raw > 0 && u.isolated {
                    self.stats
                        .notice(i, arch, wisp_protocol::Reason::IsolatedCluster);
                }
                if u.site_share > 1 {
                    self.stats.notice(i, arch, wisp_protocol::Reason::CoLocated);
                }
            }
        }
        for (id, reason) in &c.outcome.penalties {
            if let Some(i) = self.oracle.index_of(id) {
                let arch = self.world.nodes[i as usize].role.archetype;
                self.stats.penalize(i, arch, *reason);
                self.log.record_bytes(&reason.code().to_le_bytes());
            }
        }
        for entry in &c.rewards.entries {
            let Some(i) = self.oracle.index_of(&entry.node) else {
                self.stats
                    .violations
                    .push(format!("epoch {e}: paid an unknown node"));
                continue;
            };
            let counted = c.counted.get(&i).copied().unwrap_or_default();
            // No reward without a counted proof of its kind: coverage needs a counted beacon
            // or witness, uptime a counted heartbeat, backhaul a counted receipt about it,
            // usage credits burned for its sessions.
            let backhaul_ok = c
                .outcome
                .nodes
                .get(&entry.node)
                .is_some_and(|f| f.down.is_some() || f.up.is_some());
            let usage_ok = c
                .outcome
                .usage
                .hotspots
                .get(&entry.node)
                .is_some_and(|h| h.burned_dc > 0);
            if (entry.coverage > 0 && counted[0] + counted[1] == 0)
                || (entry.uptime > 0 && counted[3] == 0)
                || (entry.backhaul > 0 && !backhaul_ok)
                || (entry.usage > 0 && !usage_ok)
            {
                self.stats
                    .violations
                    .push(format!("epoch {e}: node {i} paid without a counted proof"));
            }
            let arch = self.world.nodes[i as usize].role.archetype;
            let slot = Archetype::ALL.iter().position(|a| *a == arch).unwrap_or(0);
            by_arch[slot] += u128::from(entry.amount);
            let s = &mut self.stats.nodes[i as usize];
            s.reward += u128::from(entry.amount);
            s.coverage += u128::from(entry.coverage);
            s.backhaul += u128::from(entry.backhaul);
            s.uptime += u128::from(entry.uptime);
            s.usage += u128::from(entry.usage);
            if entry.coverage > 0 {
                s.coverage_epochs += 1;
            }
            self.log.record_bytes(entry.node.as_bytes());
            self.log.record_bytes(&entry.amount.to_le_bytes());
        }
        self.stats.epochs.push(EpochStats {
            epoch: e,
            emission,
            paid,
            by_archetype: by_arch,
            paid_nodes: u32::try_from(c.rewards.entries.len()).unwrap_or(u32::MAX),
            rejected: rejected_count,
            bands: c
                .outcome
                .bands
                .iter()
                .map(|(b, m)| (*b, m.reach_m, m.floor_decidbm))
                .collect(),
            penalized: u32::try_from(c.outcome.penalties.len()).unwrap_or(u32::MAX),
        });
    }
}
