//! Carriers in the run: their keys on the allow-list and their grants at time zero, each
//! epoch's carrier reports (honest, inflated and forged) through the engine's own
//! `submit_carrier`, and the carriers' part of each close. See [`crate::carrier`].

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{CarrierReport, CreditGrant, Verdict as Judged};
use wisp_protocol::{NodeKey, ProofId, Reason, SubscriberId};

use super::usage::{Planned, Sub, UsageRt, id16, pick};
use super::{Sim, T0_MS};
use crate::carrier::{CarrierTally, INTERIM_REPORTS};
use crate::oracle::{Closed, Oracle};
use crate::rng::{self, Purpose};
use crate::scenario::Scenario;
use crate::usage::{UsageArchetype, UsageCfg};

/// What a carrier put into one epoch: its accepted reports' ids, and per hotspot the bytes
/// every session carried and those each carrier reported (for the attribution of its pay).
#[derive(Debug, Default)]
struct Carried {
    ids: BTreeMap<ProofId, usize>,
    on: BTreeMap<u32, (u128, BTreeMap<usize, u128>)>,
}

/// The carriers of a run: honest ones first (`[usage] carriers`), then one per
/// `inflated_carrier` instance.
#[derive(Debug, Default)]
pub(super) struct CarrierRt {
    keys: Vec<(NodeKey, Option<usize>)>,
    epochs: BTreeMap<u64, Carried>,
}

fn key_of(context: &str, seed: u64, i: u64) -> NodeKey {
    NodeKey::from_seed(
        blake3::Hasher::new_derive_key(context)
            .update(&seed.to_le_bytes())
            .update(&i.to_le_bytes())
            .finalize()
            .as_bytes(),
    )
}

/// `part`/`of` of `n` (rounding down).
fn share(n: u64, part: u64, of: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(part) / u128::from(of.max(1))).unwrap_or(u64::MAX)
}

impl CarrierRt {
    /// The honest carriers, and which honest subscribers (all of `subs` so far) each accounts.
    pub(super) fn plan(cfg: &UsageCfg, seed: u64, subs: &mut [Sub]) -> CarrierRt {
        let keys: Vec<(NodeKey, Option<usize>)> = (0..cfg.carriers)
            .map(|c| (key_of("wisp-sim carrier key", seed, u64::from(c)), None))
            .collect();
        if !keys.is_empty() {
            let all: Vec<usize> = (0..keys.len()).collect();
            for (i, s) in subs.iter_mut().enumerate() {
                let parts = [0x90, i as u64];
                if rng::unit(rng::hash_u64(seed, Purpose::Cheat, &parts)) < cfg.carrier_share {
                    let draw = rng::hash_u64(seed, Purpose::Cheat, &[0x91, i as u64]);
                    s.carrier = Some(pick(&all, draw));
                }
            }
        }
        CarrierRt {
            keys,
            epochs: BTreeMap::new(),
        }
    }

    /// A carrier of its own for `inflated_carrier` instance `n`; returns its index.
    pub(super) fn colluding(&mut self, seed: u64, n: usize) -> usize {
        let key = key_of("wisp-sim carrier key", seed, 1_000_000 + n as u64);
        self.keys.push((key, Some(n)));
        self.keys.len() - 1
    }

    /// The allow-list entries of the rules: every carrier's key as a PeerId string.
    pub(super) fn allow_list(&self) -> Vec<String> {
        self.keys.iter().map(|(k, _)| k.id().to_string()).collect()
    }

    /// The empty tallies, each carrier granted `granted_dc`, with the subscribers of `subs`
    /// it accounts.
    pub(super) fn tallies(&self, granted_dc: u64, subs: &[Sub]) -> Vec<CarrierTally> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, (k, instance))| CarrierTally {
                key: k.id().to_string(),
                instance: *instance,
                subscribers: subs.iter().filter(|s| s.carrier == Some(i)).count() as u64,
                granted_dc,
                ..CarrierTally::default()
            })
            .collect()
    }

    /// The operator grants every carrier `carrier_credits_dc`, through the engine's own
    /// `submit_grant`, signed with the oracle's key.
    pub(super) fn grant(
        &self,
        sc: &Scenario,
        oracle: &mut Oracle,
        key: &NodeKey,
    ) -> anyhow::Result<()> {
        for (i, (k, _)) in self.keys.iter().enumerate() {
            let grant = CreditGrant {
                grant: ByteArray(id16(sc.seed, &[4, i as u64])),
                subscriber: SubscriberId::of(k),
                amount_dc: sc.usage.carrier_credits_dc,
                issued_ms: T0_MS,
                memo: String::from("wisp-sim carrier"),
            };
            let verdict = oracle.submit_grant(Envelope::sign(key, &grant).to_bytes(), T0_MS)?;
            anyhow::ensure!(
                verdict == Judged::Accepted,
                "carrier {i}'s grant refused: {verdict:?}"
            );
        }
        Ok(())
    }

    /// Notes epoch `e`'s bytes per hotspot: of every session (`sessions`, signed by their
    /// subscribers, and `carried`) and of each carrier's.
    pub(super) fn note(&mut self, e: u64, sessions: &[Planned], carried: &[Planned], subs: &[Sub]) {
        if self.keys.is_empty() {
            return;
        }
        let epoch = self.epochs.entry(e).or_default();
        for (h, si, _, (d, up)) in sessions.iter().chain(carried) {
            let bytes = u128::from(*d) + u128::from(*up);
            let entry = epoch.on.entry(*h).or_default();
            entry.0 += bytes;
            if let Some(c) = subs[*si].carrier {
                *entry.1.entry(c).or_default() += bytes;
            }
        }
    }
}

/// One report of `session` by `signer`, naming `carrier` (the signer, but for a forgery).
struct Report<'a> {
    signer: &'a NodeKey,
    carrier: wisp_protocol::NodeId,
    hotspot: wisp_protocol::NodeId,
    session: [u8; 16],
    epoch: u64,
    t_ms: u64,
}

impl Report<'_> {
    /// Report `seq` of [`INTERIM_REPORTS`]: the counters at `seq`/n of the session's `bytes`.
    fn sign(&self, seq: u64, bytes: (u64, u64)) -> Vec<u8> {
        let r = CarrierReport {
            session: ByteArray(self.session),
            hotspot: self.hotspot,
            carrier: self.carrier,
            epoch: self.epoch,
            seq,
            bytes_down: share(bytes.0, seq, INTERIM_REPORTS),
            bytes_up: share(bytes.1, seq, INTERIM_REPORTS),
            signed_ms: self.t_ms,
            start_ms: None,
        };
        Envelope::sign(self.signer, &r).to_bytes()
    }
}

fn bump(map: &mut BTreeMap<String, u64>, reason: Reason) {
    *map.entry(reason.name().to_string()).or_insert(0) += 1;
}

impl Sim<'_> {
    /// Epoch `e`'s carrier reports, after the subscribers' receipts were judged: each carried
    /// session (hotspot, subscriber, session id, bytes) reported by its subscriber's carrier,
    /// and each forged one (hotspot, cheater instance, session id, bytes) by its forger.
    pub(super) fn carrier_round(
        &mut self,
        u: &mut UsageRt,
        e: u64,
        t_ms: u64,
        carried: Vec<Planned>,
        forged: Vec<Planned>,
    ) {
        for (h, si, sid, bytes) in carried {
            let Some(c) = u.subs[si].carrier else {
                continue;
            };
            let (key, _) = &u.carriers.keys[c];
            let report = Report {
                signer: key,
                carrier: key.id(),
                hotspot: self.world.nodes[h as usize].id,
                session: sid,
                epoch: e,
                t_ms,
            };
            u.tally.sessions += 1;
            u.tally.carriers[c].sessions += 1;
            for seq in 1..=INTERIM_REPORTS {
                let bytes = report.sign(seq, bytes);
                let id = ProofId::of(&bytes);
                let t = &mut u.tally.carriers[c];
                t.reports += 1;
                let verdict = self.oracle.submit_carrier(bytes, t_ms);
                self.log.record_bytes(id.as_bytes());
                match verdict {
                    Ok(Judged::Accepted) => {
                        t.accepted += 1;
                        self.log.record_bytes(&0u16.to_le_bytes());
                        u.carriers.epochs.entry(e).or_default().ids.insert(id, c);
                    }
                    Ok(Judged::Rejected(r)) | Err(r) => {
                        bump(&mut t.refused, r);
                        self.log.record_bytes(&r.code().to_le_bytes());
                    }
                }
            }
        }
        if forged.is_empty() {
            return;
        }
        // Forgeries: at the carrier door, then on the hotspot's proof topic.
        let mut mqtt = Vec::new();
        for (h, n, sid, bytes) in forged {
            let node = &self.world.nodes[h as usize];
            let own = key_of("wisp-sim forged carrier key", self.sc.seed, n as u64);
            let listed = u.carriers.keys.first().map(|(k, _)| k.id());
            // The forgeries take turns by the instance's rank among the forgers.
            let rank = u.tally.instances[..n]
                .iter()
                .filter(|i| i.archetype == UsageArchetype::ForgedCarrier)
                .count();
            let (signer, carrier) = match (rank % 3, listed) {
                (1, _) => (&node.key, node.id),
                (2, Some(listed)) => (&own, listed),
                _ => (&own, own.id()),
            };
            let report = Report {
                signer,
                carrier,
                hotspot: node.id,
                session: sid,
                epoch: e,
                t_ms,
            };
            for seq in 1..=INTERIM_REPORTS {
                let bytes = report.sign(seq, bytes);
                let f = &mut u.tally.forged;
                f.reports += 1;
                let verdict = self.oracle.submit_carrier(bytes.clone(), t_ms);
                self.log.record_bytes(ProofId::of(&bytes).as_bytes());
                match verdict {
                    Ok(Judged::Accepted) => {
                        f.accepted += 1;
                        self.log.record_bytes(&0u16.to_le_bytes());
                    }
                    Ok(Judged::Rejected(r)) | Err(r) => {
                        bump(&mut f.door, r);
                        self.log.record_bytes(&r.code().to_le_bytes());
                    }
                }
                mqtt.push((node.id, bytes));
            }
        }
        for (id, bytes) in mqtt {
            self.oracle.arrive(&id, bytes, t_ms);
        }
        let verdicts = self.oracle.flush();
        for v in &verdicts {
            if v.kind == Kind::CarrierReport {
                match v.reason.or(v.dropped) {
                    Some(r) => bump(&mut u.tally.forged.mqtt, r),
                    None => u.tally.forged.accepted += 1,
                }
            }
        }
        self.record_verdicts(&verdicts);
    }

    /// The carriers' part of epoch `e`'s close: their burns, their reports flagged, and the
    /// usage paid to honest hotspots attributed to them.
    pub(super) fn carrier_close(&mut self, e: u64, c: &Closed) {
        let Some(u) = self.usage.as_mut() else {
            return;
        };
        if u.carriers.keys.is_empty() {
            return;
        }
        let epoch = u.carriers.epochs.remove(&e).unwrap_or_default();
        for (i, (k, _)) in u.carriers.keys.iter().enumerate() {
            let b = c
                .outcome
                .usage
                .burns
                .get(&SubscriberId::of(k))
                .copied()
                .unwrap_or(0);
            u.tally.carriers[i].burned_dc += u128::from(b);
            self.log.record_bytes(&b.to_le_bytes());
        }
        for (id, reason) in c.outcome.rejections.iter().chain(&c.outcome.flagged) {
            if let Some(i) = epoch.ids.get(id) {
                bump(&mut u.tally.carriers[*i].flagged, *reason);
            }
        }
        let cheaters: BTreeSet<u32> = u
            .tally
            .instances
            .iter()
            .flat_map(|i| i.hotspots.iter().copied())
            .collect();
        for (h, (total, per)) in &epoch.on {
            if cheaters.contains(h) || *total == 0 {
                continue;
            }
            let id = self.world.nodes[*h as usize].id;
            let paid = u128::from(c.rewards.usage.get(&id).copied().unwrap_or(0));
            for (i, bytes) in per {
                u.tally.carriers[*i].paid_honest += paid * bytes / total;
            }
        }
    }
}
