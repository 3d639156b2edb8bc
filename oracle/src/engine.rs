//! The oracle's ingest and epoch logic, without I/O: raw MQTT publishes in, rows to store and
//! acks to send out. The service persists the rows (one transaction per batch) **before** it
//! publishes the acks, and the same engine replays the stored rows after a restart, so the
//! state after a crash is exactly the state before it.
//!
//! Per publish, in order (cheapest refusal first): the topic names a node → that node's rate
//! limit → size limit and envelope framing → the kind is a proof → the signer is the topic's
//! node → dedupe by proof id (a duplicate gets its original verdict again) → signatures, in one
//! batch verification per batch → canonical decode → stateless checks ([`Checker`]) → queued in
//! its epoch's [`EpochState`]. Proofs whose signature verified are stored with their verdict
//! (rejections too, for the node's history); the rest are only counted.

use std::collections::{BTreeMap, HashMap, VecDeque};

use wisp_protocol::envelope::{self, EnvelopeRef, Opened};
use wisp_protocol::kind::{Kind, MAX_ENVELOPE_LEN};
use wisp_protocol::msg::{
    AckEntry, BandwidthReceipt, Beacon, EpochSeed, Heartbeat, Onboard, Verdict, Witness,
};
use wisp_protocol::{NodeId, NodeKey, ProofId, Reason, topics};

use crate::epoch::{Arrival, EpochOutcome, EpochState, Push};
use crate::registry::{Change, Registry};
use crate::rewards::{self, EpochRewards};
use crate::rules::{Candidates, Checker, MeasurerCache, MeasurerPool, witness_epoch};

/// One MQTT publish as received.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Oracle time of arrival.
    pub at_ms: u64,
}

/// A proof to store: authentic (its signatures verified), with its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Arrival order, unique and increasing.
    pub seq: u64,
    /// The proof id.
    pub id: ProofId,
    /// The signer.
    pub node: NodeId,
    /// The kind.
    pub kind: Kind,
    /// The epoch it belongs to, for kinds that carry one.
    pub epoch: Option<u64>,
    /// Arrival time.
    pub received_ms: u64,
    /// Accepted (queued for the epoch) or rejected with a reason.
    pub verdict: Verdict,
    /// The envelope bytes.
    pub envelope: Vec<u8>,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Rows to commit before any ack is sent.
    pub rows: Vec<Row>,
    /// Verdicts to ack, per node.
    pub acks: Vec<(NodeId, AckEntry)>,
    /// Verdicts by reason (`None` = accepted), for metrics; duplicates are counted apart.
    pub verdicts: BTreeMap<Option<Reason>, u64>,
    /// Publishes that were duplicates of a stored proof.
    pub duplicates: u64,
    /// Publishes on a topic that names no node (dropped without an ack).
    pub bad_topic: u64,
}

/// A closed epoch, ready to store and publish.
#[derive(Debug)]
pub struct Closed {
    /// The stateful rules' outcome.
    pub outcome: EpochOutcome,
    /// The rewards.
    pub rewards: EpochRewards,
    /// Signed manifest pages (envelope bytes), in page order.
    pub manifests: Vec<Vec<u8>>,
}

/// Per-node token bucket rate limit.
#[derive(Debug)]
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    buckets: HashMap<NodeId, (f64, u64)>,
    order: VecDeque<NodeId>,
    max_nodes: usize,
}

impl RateLimiter {
    /// `rate_per_s` sustained, `burst` at once, tracking at most `max_nodes` nodes (the least
    /// recently added are forgotten, which only ever gives them a fresh bucket).
    pub fn new(rate_per_s: f64, burst: f64, max_nodes: usize) -> Self {
        Self {
            rate_per_s,
            burst,
            buckets: HashMap::new(),
            order: VecDeque::new(),
            max_nodes,
        }
    }

    /// Takes one token for `node` at `now_ms`.
    pub fn allow(&mut self, node: &NodeId, now_ms: u64) -> bool {
        if !self.buckets.contains_key(node) {
            if self.buckets.len() >= self.max_nodes
                && let Some(old) = self.order.pop_front()
            {
                self.buckets.remove(&old);
            }
            self.order.push_back(*node);
            self.buckets.insert(*node, (self.burst, now_ms));
        }
        let Some((tokens, last)) = self.buckets.get_mut(node) else {
            return true;
        };
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.rate_per_s).min(self.burst);
        *last = now_ms.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The oracle's state.
#[derive(Debug)]
pub struct Engine {
    key: NodeKey,
    registry: Registry,
    open: BTreeMap<u64, EpochState>,
    seen: HashMap<ProofId, Verdict>,
    epoch_ids: BTreeMap<u64, Vec<ProofId>>,
    next_seq: u64,
    /// Every node whose last onboard declared the measurer role: the measurer pool of the
    /// next epoch to open.
    candidates: Candidates,
    /// Per open epoch: its measurer pool, fixed when it opened, and the assignments judged.
    measurers: BTreeMap<u64, MeasurerCache>,
}

/// Most signer keys kept decompressed per verification thread (about 200 bytes each).
const KEY_CACHE: usize = 1 << 17;

/// A publish after the checks that need none of the engine's state, in their order: the
/// topic names a node → rate limit → size → framing → proof kind → the signer is the topic's
/// node (a bandwidth receipt's co-signer too: the prover outboxes its copy) → every signature.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The node the topic names (`None`: dropped without an ack).
    pub node: Option<NodeId>,
    /// Oracle time of arrival.
    pub at_ms: u64,
    /// BLAKE3 of the payload.
    pub id: ProofId,
    /// Why it was refused before the rules (never stored), if it was.
    pub refused: Option<Reason>,
    /// The envelope bytes.
    pub payload: Vec<u8>,
}

/// The stateless stage of ingest: rate limits and signatures, with the signer keys kept
/// decompressed. It runs on a thread of its own, ahead of the engine, so a batch's signatures
/// are checked while the one before it is judged and committed.
#[derive(Debug)]
pub struct Prechecker {
    limiter: RateLimiter,
    /// One cache per verification thread (each thread checks the signers of one parity of
    /// the first key byte, so the two hold different keys).
    keys: [envelope::KeyCache; 2],
}

impl Prechecker {
    /// A prechecker with this rate limit.
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limiter,
            keys: [
                envelope::KeyCache::new(KEY_CACHE),
                envelope::KeyCache::new(KEY_CACHE),
            ],
        }
    }

    /// Checks a batch; the signatures of all that pass the cheap checks in one batch
    /// verification on two threads. Rate limiting comes first, so a flood costs no signature
    /// checks.
    pub fn check(&mut self, batch: Vec<Incoming>) -> Vec<Checked> {
        let mut out: Vec<Checked> = batch
            .into_iter()
            .map(|msg| Checked {
                node: topics::proofs_node(&msg.topic),
                at_ms: msg.at_ms,
                id: ProofId::of(&msg.payload),
                refused: None,
                payload: msg.payload,
            })
            .collect();
        let mut refusals: Vec<(usize, Reason)> = Vec::new();
        let mut to_verify: Vec<usize> = Vec::new();
        let mut envs: Vec<EnvelopeRef<'_>> = Vec::with_capacity(out.len());
        for (i, c) in out.iter().enumerate() {
            let Some(node) = c.node else { continue };
            match self.cheap_checks(&node, c.at_ms, &c.payload) {
                Ok(env) => {
                    to_verify.push(i);
                    envs.push(env);
                }
                Err(reason) => refusals.push((i, reason)),
            }
        }
        let verified = verify_parallel(&envs, &mut self.keys);
        refusals.extend(
            to_verify
                .into_iter()
                .zip(verified)
                .filter_map(|(i, ok)| ok.err().map(|e| (i, e.reason()))),
        );
        for (i, reason) in refusals {
            out[i].refused = Some(reason);
        }
        out
    }

    /// The checks before the signatures; the parsed envelope if they pass.
    fn cheap_checks<'a>(
        &mut self,
        node: &NodeId,
        at_ms: u64,
        payload: &'a [u8],
    ) -> Result<EnvelopeRef<'a>, Reason> {
        if !self.limiter.allow(node, at_ms) {
            return Err(Reason::RateLimited);
        }
        if payload.len() > MAX_ENVELOPE_LEN {
            return Err(Reason::Oversize);
        }
        let env = EnvelopeRef::parse(payload).map_err(|e| e.reason())?;
        if !env.kind.is_proof() {
            return Err(Reason::UnexpectedKind);
        }
        let signed_by_node = env.signer == node.as_bytes()
            || (env.kind == Kind::BandwidthReceipt && env.cosigner_ids().contains(node));
        if !signed_by_node {
            return Err(Reason::TopicMismatch);
        }
        Ok(env)
    }
}

/// Acks and counts a publish refused before the rules (never stored).
fn refuse(out: &mut Ingested, node: NodeId, id: ProofId, reason: Reason) {
    out.acks.push((
        node,
        AckEntry {
            proof_id: id,
            verdict: Verdict::Rejected(reason),
        },
    ));
    *out.verdicts.entry(Some(reason)).or_default() += 1;
}

impl Engine {
    /// An engine signing with `key`, judging with `registry`'s rules.
    pub fn new(key: NodeKey, registry: Registry) -> Self {
        let mut candidates = Candidates::new();
        for n in registry.iter().filter(|n| n.measurer) {
            candidates.add(n.id);
        }
        Self {
            candidates,
            measurers: BTreeMap::new(),
            key,
            registry,
            open: BTreeMap::new(),
            seen: HashMap::new(),
            epoch_ids: BTreeMap::new(),
            next_seq: 1,
        }
    }

    /// The node registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The oracle's key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// Open epochs (current and settling).
    pub fn open_epochs(&self) -> impl Iterator<Item = (&u64, &EpochState)> {
        self.open.iter()
    }

    /// The next arrival sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Opens an epoch: proofs naming it are accepted from now on. Its measurer pool is every
    /// node whose last onboard so far declared the measurer role ([`Engine::measurer_pool`]);
    /// nodes onboarding (or turning the role on or off) later do so from the next epoch on.
    pub fn open_epoch(&mut self, seed: EpochSeed) {
        let epoch = seed.epoch;
        if self.open.contains_key(&epoch) {
            return;
        }
        self.open.insert(epoch, EpochState::new(seed));
        let pool = self.candidates.snapshot();
        self.measurers.insert(epoch, MeasurerCache::new(pool));
    }

    /// The measurer pool of an open epoch: what the oracle publishes as its `measurer_set`.
    pub fn measurer_pool(&self, epoch: u64) -> Option<&MeasurerPool> {
        self.measurers.get(&epoch).map(MeasurerCache::pool)
    }

    /// Epochs whose settle window has passed at `now_ms`.
    pub fn closable(&self, now_ms: u64) -> Vec<u64> {
        self.open
            .iter()
            .filter(|(_, s)| now_ms >= s.closes_at())
            .map(|(e, _)| *e)
            .collect()
    }

    /// A publish that is a duplicate of a known proof, with its stored verdict.
    pub fn known(&self, id: &ProofId) -> Option<Verdict> {
        self.seen.get(id).copied()
    }

    /// Judges a batch of prechecked publishes ([`Prechecker::check`]). Nothing here is
    /// durable: the caller stores `rows` and only then sends `acks`. `stored_verdict` answers
    /// for proofs the engine no longer holds in memory (those of closed epochs), from the store.
    pub fn ingest(
        &mut self,
        batch: &[Checked],
        mut stored_verdict: impl FnMut(&ProofId) -> Option<Verdict>,
    ) -> Ingested {
        let mut out = Ingested::default();
        let mut in_batch: HashMap<ProofId, NodeId> = HashMap::new();
        // Copies of a proof already in this batch sent by another node (a receipt's measurer
        // and prover both send it): acked with the first copy's verdict.
        let mut copies: Vec<(NodeId, ProofId)> = Vec::new();
        for c in batch {
            let Some(node) = c.node else {
                out.bad_topic += 1;
                continue;
            };
            let id = c.id;
            let env = match (&c.refused, EnvelopeRef::parse(&c.payload)) {
                (None, Ok(env)) => env,
                (Some(reason), _) => {
                    refuse(&mut out, node, id, *reason);
                    continue;
                }
                (None, Err(e)) => {
                    refuse(&mut out, node, id, e.reason());
                    continue;
                }
            };
            if let Some(v) = self.seen.get(&id).copied() {
                out.acks.push((
                    node,
                    AckEntry {
                        proof_id: id,
                        verdict: v,
                    },
                ));
                out.duplicates += 1;
                continue;
            }
            if let Some(first) = in_batch.get(&id) {
                // The same proof twice in one batch: judged once; the first copy's verdict
                // answers every copy.
                if *first != node {
                    copies.push((node, id));
                }
                out.duplicates += 1;
                continue;
            }
            in_batch.insert(id, node);
            // Proofs of closed epochs left memory: one judged `wrong_epoch` may be a resend of
            // a stored proof, which gets its stored verdict again. Asking the store only here
            // keeps the lookup off the path of every new proof.
            let seq = self.next_seq;
            let (epoch, verdict) = match self.judge(&env, Arrival::new(seq, c.at_ms)) {
                (e, Verdict::Rejected(Reason::WrongEpoch)) => match stored_verdict(&id) {
                    Some(v) => {
                        out.acks.push((
                            node,
                            AckEntry {
                                proof_id: id,
                                verdict: v,
                            },
                        ));
                        out.duplicates += 1;
                        continue;
                    }
                    None => (e, Verdict::Rejected(Reason::WrongEpoch)),
                },
                judged => judged,
            };
            self.next_seq += 1;
            self.remember(id, epoch, verdict);
            *out.verdicts
                .entry(match verdict {
                    Verdict::Accepted => None,
                    Verdict::Rejected(r) => Some(r),
                })
                .or_default() += 1;
            out.acks.push((
                node,
                AckEntry {
                    proof_id: id,
                    verdict,
                },
            ));
            out.rows.push(Row {
                seq,
                id,
                node,
                kind: env.kind,
                epoch,
                received_ms: c.at_ms,
                verdict,
                envelope: c.payload.clone(),
            });
        }
        if !copies.is_empty() {
            let verdicts: HashMap<ProofId, Verdict> = out
                .acks
                .iter()
                .map(|(_, e)| (e.proof_id, e.verdict))
                .collect();
            for (node, id) in copies {
                if let Some(verdict) = verdicts.get(&id).copied() {
                    out.acks.push((
                        node,
                        AckEntry {
                            proof_id: id,
                            verdict,
                        },
                    ));
                }
            }
        }
        out
    }

    /// Replays a stored row after a restart (its signatures verified when it arrived).
    pub fn replay(&mut self, row: &Row) {
        self.next_seq = self.next_seq.max(row.seq + 1);
        let verdict = match EnvelopeRef::parse(&row.envelope) {
            Ok(env) if row.verdict == Verdict::Accepted => {
                self.judge(&env, Arrival::new(row.seq, row.received_ms)).1
            }
            _ => row.verdict,
        };
        debug_assert_eq!(verdict, row.verdict, "replay diverged for {}", row.id);
        self.remember(row.id, row.epoch, row.verdict);
    }

    fn remember(&mut self, id: ProofId, epoch: Option<u64>, verdict: Verdict) {
        // Proofs of open epochs (and those naming none, like onboarding) stay in memory for
        // dedupe; older ones are answered from the store.
        match epoch {
            Some(e) if self.open.contains_key(&e) => {
                self.seen.insert(id, verdict);
                self.epoch_ids.entry(e).or_default().push(id);
            }
            Some(_) => {}
            None => {
                self.seen.insert(id, verdict);
            }
        }
    }

    /// Decodes and checks one authentic envelope, queueing it in its epoch.
    fn judge(&mut self, env: &EnvelopeRef<'_>, arrival: Arrival) -> (Option<u64>, Verdict) {
        let now = arrival.at_ms;
        let verdict = |r: Result<Push, Reason>| match r {
            Ok(Push::Queued | Push::Duplicate) => Verdict::Accepted,
            Ok(Push::Late) => Verdict::Rejected(Reason::LateArrival),
            Err(reason) => Verdict::Rejected(reason),
        };
        match env.kind {
            Kind::Onboard => {
                let r = decode::<Onboard>(env).and_then(|o| {
                    self.registry.apply_onboard(&o, now).map(|change| {
                        if change != Change::Unchanged {
                            self.candidates.set(o.signer, o.msg.measurer);
                        }
                    })
                });
                (
                    None,
                    r.map_or_else(Verdict::Rejected, |()| Verdict::Accepted),
                )
            }
            Kind::Beacon => {
                let b = match decode::<Beacon>(env) {
                    Ok(opened) => opened,
                    Err(reason) => return (None, Verdict::Rejected(reason)),
                };
                let epoch = b.msg.epoch;
                let Some(state) = self.open.get_mut(&epoch) else {
                    return (Some(epoch), Verdict::Rejected(Reason::WrongEpoch));
                };
                let checker = Checker::new(&self.registry, state.seed());
                let r = checker
                    .beacon(&b, now)
                    .and_then(|f| state.push_beacon(arrival, &f));
                (Some(epoch), verdict(r))
            }
            Kind::Witness => {
                let w = match decode::<Witness>(env) {
                    Ok(opened) => opened,
                    Err(reason) => return (None, Verdict::Rejected(reason)),
                };
                let Some(epoch) = witness_epoch(&w.msg) else {
                    return (None, Verdict::Rejected(Reason::BeaconInvalid));
                };
                let Some(state) = self.open.get_mut(&epoch) else {
                    return (Some(epoch), Verdict::Rejected(Reason::WrongEpoch));
                };
                let checker = Checker::new(&self.registry, state.seed());
                let r = checker
                    .witness(&w, now)
                    .and_then(|f| state.push_witness(arrival, &f));
                (Some(epoch), verdict(r))
            }
            Kind::BandwidthReceipt => {
                let r = match decode::<BandwidthReceipt>(env) {
                    Ok(opened) => opened,
                    Err(reason) => return (None, Verdict::Rejected(reason)),
                };
                let epoch = r.msg.epoch;
                let Some(state) = self.open.get_mut(&epoch) else {
                    return (Some(epoch), Verdict::Rejected(Reason::WrongEpoch));
                };
                let checker = Checker::new(&self.registry, state.seed());
                let Some(measurers) = self.measurers.get_mut(&epoch) else {
                    return (Some(epoch), Verdict::Rejected(Reason::WrongEpoch));
                };
                let res = checker
                    .receipt_with(&r, |seed, prover, measurer, k| {
                        measurers.is_assigned(seed, prover, measurer, k)
                    })
                    .and_then(|f| state.push_receipt(arrival, &f));
                (Some(epoch), verdict(res))
            }
            Kind::Heartbeat => {
                let h = match decode::<Heartbeat>(env) {
                    Ok(opened) => opened,
                    Err(reason) => return (None, Verdict::Rejected(reason)),
                };
                let epoch = h.msg.epoch;
                let Some(state) = self.open.get_mut(&epoch) else {
                    return (Some(epoch), Verdict::Rejected(Reason::WrongEpoch));
                };
                let checker = Checker::new(&self.registry, state.seed());
                let fact = checker.heartbeat(&h, now);
                let r = match fact {
                    Ok(f) => {
                        let pushed = state.push_heartbeat(arrival, &f);
                        if pushed.is_ok() {
                            self.registry.record_heartbeat(&f);
                        }
                        pushed
                    }
                    Err(e) => Err(e),
                };
                (Some(epoch), verdict(r))
            }
            _ => (None, Verdict::Rejected(Reason::UnexpectedKind)),
        }
    }

    /// Closes an epoch whose settle window passed: the stateful rules, the rewards and the
    /// signed manifest pages. The engine forgets nothing yet: call [`Engine::finish_close`]
    /// once the result is durably stored.
    pub fn close(&self, epoch: u64, now_ms: u64, emission: u64) -> Option<Closed> {
        let state = self.open.get(&epoch)?;
        let outcome = state.close(&self.registry, now_ms).ok()?;
        let rewards = rewards::compute(&self.registry, &outcome, emission);
        let manifests = rewards
            .manifest_pages()
            .iter()
            .map(|page| wisp_protocol::envelope::Envelope::sign(&self.key, page).to_bytes())
            .collect();
        Some(Closed {
            outcome,
            rewards,
            manifests,
        })
    }

    /// Applies a stored close: location trust and history move on, the epoch's proofs leave
    /// memory (duplicates of them are answered from the store).
    pub fn finish_close(&mut self, epoch: u64, outcome: &EpochOutcome) {
        self.registry.apply_epoch(outcome);
        self.open.remove(&epoch);
        self.measurers.remove(&epoch);
        for id in self.epoch_ids.remove(&epoch).unwrap_or_default() {
            self.seen.remove(&id);
        }
    }
}

fn decode<M: envelope::Message>(env: &EnvelopeRef<'_>) -> Result<Opened<M>, Reason> {
    env.decode::<M>().map_err(|e| e.reason())
}

/// Batch-verifies signatures on up to two threads (this machine class has two cores), split by
/// the parity of the signer's first key byte so that each thread's key cache sees its own half
/// of the signers.
fn verify_parallel(
    envs: &[EnvelopeRef<'_>],
    keys: &mut [envelope::KeyCache; 2],
) -> Vec<Result<(), envelope::EnvelopeError>> {
    const MIN_SPLIT: usize = 64;
    if envs.len() < MIN_SPLIT {
        return envelope::verify_batch_cached(envs, &mut keys[0]);
    }
    let (mut left, mut right): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for (i, e) in envs.iter().enumerate() {
        if e.signer[0] & 1 == 0 {
            left.push(i);
        } else {
            right.push(i);
        }
    }
    let a: Vec<EnvelopeRef<'_>> = left.iter().map(|&i| envs[i]).collect();
    let b: Vec<EnvelopeRef<'_>> = right.iter().map(|&i| envs[i]).collect();
    let [ka, kb] = keys;
    let (ra, rb) = std::thread::scope(|s| {
        let h = s.spawn(|| envelope::verify_batch_cached(&b, kb));
        let ra = envelope::verify_batch_cached(&a, ka);
        let rb = h
            .join()
            .unwrap_or_else(|_| b.iter().map(|e| e.verify()).collect());
        (ra, rb)
    });
    let mut out: Vec<Result<(), envelope::EnvelopeError>> = vec![Ok(()); envs.len()];
    for (i, r) in left.into_iter().zip(ra).chain(right.into_iter().zip(rb)) {
        out[i] = r;
    }
    out
}
