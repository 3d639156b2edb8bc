//! The oracle as the simulator runs it: wisp-oracle's own [`Prechecker`] and [`Engine`] — the
//! service's ingest and epoch close, unchanged — fed every proof that reaches the oracle, as an
//! MQTT publish on the node's proof topic, with the simulated clock as the arrival time.
//!
//! What is the simulator's here is plumbing only: arrivals are buffered and handed to the
//! engine in batches (judged in arrival order with their own arrival times, so batching changes
//! nothing), the buffer is flushed before an epoch opens or closes (so every proof is judged
//! against the epochs open when it arrived), and the verdicts are mapped back to world indices
//! for the report. The one substitution is the [`SignatureCheck`]: batch verification on all
//! cores with rayon, and with `verify_fraction < 1` only the envelopes whose proof id falls in
//! that fraction (every proof in the simulation is signed for real and no simulated cheater
//! forges a signature, so sampling changes timings, not verdicts).
//!
//! With [`Oracle::record`] the oracle keeps its whole input — epoch opens, batches of
//! publishes, closes — so a test can replay it into the service's own code path and compare
//! every verdict and manifest.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use wisp_oracle_core::engine::{
    Engine, Incoming, Prechecker, Proof, RateLimiter, Screened, SignatureCheck,
};
use wisp_oracle_core::rewards::EpochRewards;
use wisp_oracle_core::{EpochOutcome, MeasurerPool, Registry, Rules};
use wisp_protocol::envelope::{self, EnvelopeError, EnvelopeRef};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{EpochSeed, Verdict as Judged};
use wisp_protocol::{NodeId, NodeKey, ProofId, Reason, topics};

thread_local! {
    /// Decompressed signer keys of each verification thread (rayon's threads live for the run).
    /// A cache changes no verdict, so results do not depend on which thread checked what.
    static KEYS: std::cell::RefCell<envelope::KeyCache> =
        std::cell::RefCell::new(envelope::KeyCache::new(wisp_oracle_core::engine::KEY_CACHE));
}

/// The per-node rate limit of the service's defaults (`ingest.rate_per_s`, `ingest.burst`).
const RATE_PER_S: f64 = 50.0;
/// See [`RATE_PER_S`].
const BURST: f64 = 500.0;

/// Batch verification on all cores, of every envelope or of a sample by proof id.
#[derive(Debug)]
pub struct SampledVerifier {
    fraction: f64,
    /// Envelopes whose signatures were verified.
    pub verified: u64,
    /// Envelopes passed without verification (sampling).
    pub unverified: u64,
}

fn sampled(id: &ProofId, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    crate::rng::unit(u64::from_le_bytes(b)) < fraction
}

impl SignatureCheck for SampledVerifier {
    fn check(&mut self, envs: &[EnvelopeRef<'_>]) -> Vec<Result<(), EnvelopeError>> {
        let fraction = self.fraction;
        let out: Vec<(Result<(), EnvelopeError>, bool)> = envs
            .par_chunks(256)
            .flat_map_iter(|chunk| {
                let picked: Vec<bool> = chunk
                    .iter()
                    .map(|e| sampled(&e.proof_id(), fraction))
                    .collect();
                let to_check: Vec<EnvelopeRef<'_>> = chunk
                    .iter()
                    .zip(&picked)
                    .filter(|(_, p)| **p)
                    .map(|(e, _)| *e)
                    .collect();
                let mut results = KEYS
                    .with(|k| envelope::verify_batch_cached(&to_check, &mut k.borrow_mut()))
                    .into_iter();
                picked
                    .into_iter()
                    .map(|p| {
                        if p {
                            (results.next().unwrap_or(Ok(())), true)
                        } else {
                            (Ok(()), false)
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let verified = out.iter().filter(|(_, v)| *v).count() as u64;
        self.verified += verified;
        self.unverified += out.len() as u64 - verified;
        out.into_iter().map(|(r, _)| r).collect()
    }
}

/// What the oracle was given, in order (recorded on request).
#[derive(Clone, Debug)]
pub enum Input {
    /// An epoch opened with this seed.
    Open(EpochSeed),
    /// A batch of publishes reached the engine.
    Batch(Vec<Incoming>),
    /// An epoch closed at this oracle time with this emission.
    Close {
        /// The epoch.
        epoch: u64,
        /// Oracle time, Unix ms.
        at_ms: u64,
        /// Its emission.
        emission: u64,
    },
}

/// One recorded close: the epoch, the refusals of the stateful rules and the signed manifest.
pub type ClosedLog = (u64, Vec<(ProofId, Reason)>, Vec<Vec<u8>>);

/// What the oracle was given and what it answered, in order (recorded on request).
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Its input.
    pub inputs: Vec<Input>,
    /// Every verdict it acked at ingest, in order.
    pub acks: Vec<(ProofId, Judged)>,
    /// Every close: the epoch, the refusals of the stateful rules and the signed manifest.
    pub closes: Vec<ClosedLog>,
}

/// A verdict the oracle reached about one proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The node that submitted it, by world index (`u32::MAX` if unknown).
    pub node: u32,
    /// The node it is about: the prover of a receipt, otherwise the submitter.
    pub subject: u32,
    /// What it is.
    pub kind: Kind,
    /// `None`: accepted so far; `Some`: refused with this reason.
    pub reason: Option<Reason>,
    /// Refused by the precheck, with this reason, before the engine judged it; `reason` is
    /// `None` unless that refusal was acked (a publish that did not verify is dropped without
    /// an ack: nothing says the node sent it).
    pub dropped: Option<Reason>,
    /// The proof id.
    pub id: ProofId,
}

/// A closed epoch: the engine's close and every proof's final verdict, by world index.
#[derive(Debug)]
pub struct Closed {
    /// The outcome of the stateful rules.
    pub outcome: EpochOutcome,
    /// The rewards.
    pub rewards: EpochRewards,
    /// The signed manifest pages.
    pub manifests: Vec<Vec<u8>>,
    /// Proofs refused at close: (node, kind, reason).
    pub rejected: Vec<(u32, Kind, Reason)>,
    /// Proofs per node counted at close (accepted at ingest, not refused at close), by kind
    /// slot ([`kind_slot`]).
    pub counted: BTreeMap<u32, [u32; 4]>,
}

/// Index of a kind in [`Closed::counted`].
pub fn kind_slot(kind: Kind) -> usize {
    match kind {
        Kind::Beacon => 0,
        Kind::Witness => 1,
        Kind::BandwidthReceipt => 2,
        _ => 3,
    }
}

/// The oracle's state.
pub struct Oracle {
    pre: Prechecker<SampledVerifier>,
    engine: Engine,
    ids: HashMap<NodeId, u32>,
    buffer: Vec<Incoming>,
    batch: usize,
    /// Proofs accepted at ingest, per epoch: id → (node, kind).
    accepted: BTreeMap<u64, HashMap<ProofId, (u32, Kind)>>,
    log: Option<Log>,
}

impl std::fmt::Debug for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oracle")
            .field("nodes", &self.engine.registry().len())
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl Oracle {
    /// An oracle signing with `key` and applying `rules`, verifying `verify_fraction` of the
    /// signatures, judging batches of `batch` publishes.
    pub fn new(key: NodeKey, rules: Rules, verify_fraction: f64, batch: usize) -> Oracle {
        Oracle {
            pre: Prechecker::new(
                RateLimiter::new(RATE_PER_S, BURST, 1_000_000),
                SampledVerifier {
                    fraction: verify_fraction,
                    verified: 0,
                    unverified: 0,
                },
            ),
            engine: Engine::new(key, Registry::new(rules)),
            ids: HashMap::new(),
            buffer: Vec::new(),
            batch: batch.max(1),
            accepted: BTreeMap::new(),
            log: None,
        }
    }

    /// Records every input and output from now on ([`Oracle::take_log`]).
    pub fn record(&mut self) {
        self.log = Some(Log::default());
    }

    /// What was recorded.
    pub fn take_log(&mut self) -> Option<Log> {
        self.log.take()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Envelopes verified and passed unverified (sampling).
    pub fn verified(&self) -> (u64, u64) {
        let v = self.pre.verifier();
        (v.verified, v.unverified)
    }

    /// Names world node `idx` (its proofs' verdicts are reported by index).
    pub fn name(&mut self, id: NodeId, idx: u32) {
        self.ids.insert(id, idx);
    }

    /// The world index of a node id.
    pub fn index_of(&self, id: &NodeId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        self.engine.registry()
    }

    /// Opens epoch `seed.epoch` (after judging what arrived before).
    pub fn open_epoch(&mut self, seed: EpochSeed) -> Vec<Verdict> {
        let verdicts = self.flush();
        if let Some(log) = &mut self.log {
            log.inputs.push(Input::Open(seed.clone()));
        }
        self.engine.open_epoch(seed);
        verdicts
    }

    /// The measurer pool of an open epoch.
    pub fn pool(&self, epoch: u64) -> Option<&MeasurerPool> {
        self.engine.measurer_pool(epoch)
    }

    /// A proof from `node` reached the broker's proof topic at oracle time `at_ms`; judged at
    /// the next flush.
    pub fn arrive(&mut self, node: &NodeId, bytes: Vec<u8>, at_ms: u64) {
        self.buffer.push(Incoming {
            topic: topics::proofs(node),
            payload: bytes,
            at_ms,
        });
    }

    /// Whether the buffer is full enough to flush.
    pub fn wants_flush(&self) -> bool {
        self.buffer.len() >= self.batch
    }

    /// Judges every buffered arrival, in arrival order; returns the verdicts of ingest.
    pub fn flush(&mut self) -> Vec<Verdict> {
        if self.buffer.is_empty() {
            return Vec::new();
        }
        let batch = std::mem::take(&mut self.buffer);
        if let Some(log) = &mut self.log {
            log.inputs.push(Input::Batch(batch.clone()));
        }
        let checked = self.pre.check(batch);
        let unknown = u32::MAX;
        let mut judged: Vec<Verdict> = Vec::with_capacity(checked.len());
        for c in &checked {
            let node = c.node.and_then(|n| self.ids.get(&n).copied());
            let dropped = match &c.screened {
                Screened::Refused(r) => Some(*r),
                Screened::Authentic { .. } => None,
            };
            let (kind, subject) = match &c.screened {
                Screened::Authentic { kind, proof } => {
                    let subject = match proof {
                        Ok(Proof::Receipt(r)) => self.ids.get(&r.msg.prover).copied(),
                        _ => node,
                    };
                    (*kind, subject)
                }
                Screened::Refused(_) => (
                    EnvelopeRef::parse(&c.payload).map_or(Kind::Ack, |e| e.kind),
                    node,
                ),
            };
            judged.push(Verdict {
                node: node.unwrap_or(unknown),
                subject: subject.unwrap_or(unknown),
                kind,
                reason: None,
                dropped,
                id: c.id,
            });
        }
        let out = self.engine.ingest(checked, |_| None);
        if let Some(log) = &mut self.log {
            log.acks
                .extend(out.acks.iter().map(|(_, a)| (a.proof_id, a.verdict)));
        }
        let verdicts: HashMap<ProofId, Judged> = out
            .acks
            .iter()
            .map(|(_, a)| (a.proof_id, a.verdict))
            .collect();
        for row in &out.rows {
            if let (Judged::Accepted, Some(epoch)) = (row.verdict, row.epoch) {
                let node = self.ids.get(&row.node).copied().unwrap_or(unknown);
                self.accepted
                    .entry(epoch)
                    .or_default()
                    .insert(row.id, (node, row.kind));
            }
        }
        for v in &mut judged {
            if let Some(Judged::Rejected(r)) = verdicts.get(&v.id) {
                v.reason = Some(*r);
            }
        }
        judged
    }

    /// The operator's grant of data credits (a signed [`CreditGrant`] envelope) at oracle time
    /// `at_ms`, through the engine's own `submit_grant`. Not recorded in [`Log`].
    ///
    /// [`CreditGrant`]: wisp_protocol::msg::CreditGrant
    pub fn submit_grant(&mut self, envelope: Vec<u8>, at_ms: u64) -> anyhow::Result<Judged> {
        let (verdict, _) = self
            .engine
            .submit_grant(envelope, at_ms)
            .map_err(|r| anyhow::anyhow!("grant refused: {}", r.name()))?;
        Ok(verdict)
    }

    /// A carrier's usage report (a signed [`CarrierReport`] envelope) posted at oracle time
    /// `at_ms`, through the engine's own `submit_carrier`, the entry point of the service's
    /// `POST /v1/usage/carrier`. Flush first (the buffer's verdicts are the caller's to
    /// record), so that it is judged after what arrived before. `Err`: refused at the
    /// door (not signed by the carrier it names, or a carrier off the allow-list). Not
    /// recorded in [`Log`] (a [`Log`] replays MQTT publishes, and reports never come that way).
    ///
    /// [`CarrierReport`]: wisp_protocol::msg::CarrierReport
    pub fn submit_carrier(&mut self, envelope: Vec<u8>, at_ms: u64) -> Result<Judged, Reason> {
        debug_assert!(self.buffer.is_empty(), "flush before a carrier report");
        let (verdict, _, _) = self.engine.submit_carrier(envelope, at_ms, None)?;
        Ok(verdict)
    }

    /// Closes epoch `epoch` at oracle time `now_ms` (after judging what arrived before).
    pub fn close(
        &mut self,
        epoch: u64,
        now_ms: u64,
        emission: u64,
    ) -> (Option<Closed>, Vec<Verdict>) {
        let verdicts = self.flush();
        if let Some(log) = &mut self.log {
            log.inputs.push(Input::Close {
                epoch,
                at_ms: now_ms,
                emission,
            });
        }
        let Some(c) = self.engine.close(epoch, now_ms, emission) else {
            return (None, verdicts);
        };
        self.engine.finish_close(epoch, &c.outcome);
        if let Some(log) = &mut self.log {
            log.closes
                .push((epoch, c.outcome.rejections.clone(), c.manifests.clone()));
        }
        let owners = self.accepted.remove(&epoch).unwrap_or_default();
        let rejected_ids: std::collections::BTreeSet<ProofId> =
            c.outcome.rejections.iter().map(|(id, _)| *id).collect();
        let rejected = c
            .outcome
            .rejections
            .iter()
            .filter_map(|(id, reason)| owners.get(id).map(|(n, k)| (*n, *k, *reason)))
            .collect();
        let mut owned: Vec<(&ProofId, &(u32, Kind))> = owners.iter().collect();
        owned.sort_unstable_by_key(|(id, _)| **id);
        let mut counted: BTreeMap<u32, [u32; 4]> = BTreeMap::new();
        for (id, (node, kind)) in owned {
            if !rejected_ids.contains(id) {
                counted.entry(*node).or_default()[kind_slot(*kind)] += 1;
            }
        }
        (
            Some(Closed {
                outcome: c.outcome,
                rewards: c.rewards,
                manifests: c.manifests,
                rejected,
                counted,
            }),
            verdicts,
        )
    }
}
