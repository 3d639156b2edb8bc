//! The oracle's ingest and epoch logic, without I/O: raw MQTT publishes in, rows to store and
//! acks to send out. The service persists the rows (one transaction per batch) **before** it
//! publishes the acks, and the same engine replays the stored rows after a restart, so the
//! state after a crash is exactly the state before it. The simulator drives this same engine
//! (with its own clock and a sampling [`SignatureCheck`]), so its verdicts are the service's.
//!
//! Two stages, in order:
//!
//! 1. [`Prechecker::check`] — the checks that need none of the engine's state, cheapest
//!    refusal first: the topic names a node → size limit and envelope framing → the kind is a
//!    proof → the topic's node sent it (`EnvelopeRef::sent_by`: its signer; a bandwidth
//!    receipt's co-signer too; a usage receipt's co-signer only, the hotspot, since its signer
//!    is a subscriber without a topic) → every signature, in one batch
//!    ([`SignatureCheck`]) → that node's rate limit → canonical decode → a witness's embedded
//!    beacon: its signature in a second batch (each distinct beacon once; a bounded cache
//!    remembers the beacons already opened) and its decode. Each publish comes out
//!    [`Screened`]: refused before its signatures verified (counted, never acked, never
//!    stored), rate limited (authentic, acked `rate_limited` so its node backs off and resends,
//!    never stored), or authentic and decoded once, here, for good.
//! 2. [`Engine::ingest`] — dedupe by proof id (a duplicate gets its original verdict again) →
//!    the epoch it names is open (`wrong_epoch`), or closed (`late_arrival`, unless the store
//!    holds it: a resend) → stateless checks ([`Checker`]; for a usage receipt the ledger's,
//!    [`Ledger::check`]) → queued in its epoch's [`EpochState`]. The operator's credit grants
//!    take another door, [`Engine::submit_grant`], and the same rows; so do allow-listed carriers' usage reports, [`Engine::submit_carrier`], judged by the ledger's rules for receipts. Authentic proofs are stored with their verdict (rejections too, for the
//!    node's history); nothing here verifies a signature or parses the same bytes twice.
//!
//! **Only an envelope whose signatures verified, (co-)signed by the topic's node, is rate limited
//! or acked.** Anyone who can publish on a node's topic can put anything there; if garbage
//! spent the node's allowance, or drew acks to its topic, the node would pay for it (its
//! genuine proofs refused `rate_limited`). So whatever did not verify is dropped without an ack
//! and counted by reason ([`Ingested::unverified`]), and the allowance is charged only for
//! what the node signed.
//!
//! The price is that garbage which passes the cheap checks (it parses, its kind is a proof, it
//! names the topic's node as signer) costs a signature check, where the rate limit used to
//! refuse it first; and one bad signature sends its batch to the one-by-one re-check. What
//! bounds that cost is global, not per node: the cheap checks refuse everything else without
//! any cryptography, and the pipeline's bounded queues and batch size slow a flood down to what
//! the verifying threads can check. A per-topic budget of unverified publishes was considered
//! and left out: a flood could spend it as easily as the allowance, silencing the node it
//! targets (its genuine proofs dropped unheard until the flood stops), and it bounds nothing
//! against a flood spread over made-up topics. Keeping other publishers off a node's topic is
//! the broker's job (authentication and ACLs), not the ingest's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wisp_protocol::envelope::{self, EnvelopeRef, Opened};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{
    AckEntry, BandwidthReceipt, Beacon, CarrierReport, CreditGrant, EpochSeed, Heartbeat, Onboard,
    UsageReceipt, Verdict, Witness,
};
use wisp_protocol::{NodeId, NodeKey, ProofId, Reason, SubscriberId};

use crate::epoch::{Arrival, EpochOutcome, EpochState, Push};
use crate::registry::{Change, Registry};
use crate::rewards::{self, EpochRewards};
use crate::rules::{Candidates, Checker, MeasurerCache, MeasurerPool};
use crate::usage::{Balance, Claim, Ledger};

mod carrier;
mod precheck;
// Proof of usage through the engine (here, not under `usage`, which the engine uses).
#[cfg(test)]
mod usage_tests;

pub use precheck::{
    BatchVerifier, Checked, KEY_CACHE, Prechecker, RateLimiter, Screened, SignatureCheck,
};

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
    /// The node that sent it: the topic's node (the signer, a bandwidth receipt's co-signer,
    /// a usage receipt's hotspot), the oracle's own key for a credit grant, the carrier for a
    /// carrier report.
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
    /// Publishes refused before their signatures verified, by reason: dropped without an ack,
    /// since nothing says the topic's node sent them.
    pub unverified: BTreeMap<Reason, u64>,
    /// Authentic proofs signed by keys that never onboarded: acked `unknown_node` and
    /// counted, never stored or remembered (anyone can make keys, so storing what they sign
    /// would let anyone grow the database and every restart's replay; the verdict depends on
    /// nothing but the registry, so a resend gets it again).
    pub unknown_nodes: u64,
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

/// An authentic proof, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A node joins or updates its record.
    Onboard(Opened<Onboard>),
    /// A beacon, as its beaconer reports it.
    Beacon(Opened<Beacon>),
    /// A witness, with its embedded beacon opened (`None`: the beacon's signature or encoding
    /// is invalid, so the witness is `beacon_invalid` once the witness itself is known).
    Witness(Opened<Witness>, Option<Opened<Beacon>>),
    /// A bandwidth receipt.
    Receipt(Opened<BandwidthReceipt>),
    /// A heartbeat.
    Heartbeat(Opened<Heartbeat>),
    /// A subscriber's usage receipt, co-signed by the hotspot that sent it.
    Usage(Opened<UsageReceipt>),
    /// The operator's grant of data credits ([`Engine::submit_grant`]; never from MQTT).
    Grant(Opened<CreditGrant>),
    /// An allow-listed carrier's usage report ([`Engine::submit_carrier`]; never from MQTT).
    Carrier(Opened<CarrierReport>),
}

impl Proof {
    /// Decodes an envelope whose signatures verified, and the embedded beacon of a witness when
    /// `beacon` does not already hold it (`open_beacon` verifies and decodes one).
    fn decode(
        env: &EnvelopeRef<'_>,
        open_beacon: impl FnOnce(&[u8]) -> Option<Opened<Beacon>>,
    ) -> Result<Proof, Reason> {
        fn d<M: envelope::Message>(env: &EnvelopeRef<'_>) -> Result<Opened<M>, Reason> {
            env.decode::<M>().map_err(|e| e.reason())
        }
        Ok(match env.kind {
            Kind::Onboard => Proof::Onboard(d(env)?),
            Kind::Beacon => Proof::Beacon(d(env)?),
            Kind::Witness => {
                let w: Opened<Witness> = d(env)?;
                let beacon = open_beacon(&w.msg.beacon);
                Proof::Witness(w, beacon)
            }
            Kind::BandwidthReceipt => Proof::Receipt(d(env)?),
            Kind::Heartbeat => Proof::Heartbeat(d(env)?),
            Kind::UsageReceipt => Proof::Usage(d(env)?),
            // Only stored grants reach this: the precheck refuses the kind on a proofs topic
            // (`Kind::is_proof`), and `Engine::submit_grant` checks the signer.
            Kind::CreditGrant => Proof::Grant(d(env)?),
            // Likewise: only stored reports, which `Engine::submit_carrier` let in.
            Kind::CarrierReport => Proof::Carrier(d(env)?),
            _ => return Err(Reason::UnexpectedKind),
        })
    }

    /// Decodes a stored envelope whose signatures (the embedded beacon's too) verified when it
    /// arrived: for the replay after a restart, which must not depend on verifying again.
    pub fn decode_stored(bytes: &[u8]) -> Result<Proof, Reason> {
        let env = EnvelopeRef::parse(bytes).map_err(|e| e.reason())?;
        Proof::decode(&env, |beacon| {
            EnvelopeRef::parse(beacon)
                .and_then(|b| b.decode::<Beacon>())
                .ok()
        })
    }
}

/// The open epoch `epoch`, or why a proof naming it is refused: `late_arrival` once it closed,
/// `wrong_epoch` when it never opened (or not yet).
fn epoch_state<'a>(
    open: &'a mut BTreeMap<u64, EpochState>,
    closed: &BTreeSet<u64>,
    epoch: u64,
) -> Result<&'a mut EpochState, Reason> {
    if closed.contains(&epoch) {
        return Err(Reason::LateArrival);
    }
    open.get_mut(&epoch).ok_or(Reason::WrongEpoch)
}

/// Notes, in the open epoch a refused proof belongs to, what its refusal says about nodes:
/// evidence of cheating ([`crate::rules::is_evidence`]) against whoever signed it, a link that
/// contradicts two asserted places ([`crate::rules::is_contradiction`]), or two identities at
/// one site (`too_close`). The close weighs these ([`EpochState::close`]).
fn note_refusal(open: &mut BTreeMap<u64, EpochState>, proof: &Proof, epoch: u64, reason: Reason) {
    let Some(state) = open.get_mut(&epoch) else {
        return;
    };
    match proof {
        Proof::Witness(w, Some(beacon)) => {
            if crate::rules::is_contradiction(reason) {
                state.push_contradiction(w.id, beacon.signer, w.signer);
            } else if reason == Reason::TooClose {
                state.push_colocated(w.id, beacon.signer, w.signer);
            } else if crate::rules::is_evidence(reason) {
                state.push_evidence(w.id, w.signer, reason);
            }
        }
        Proof::Receipt(r) if crate::rules::is_evidence(reason) => {
            // Only a figure both signed says anything about both: a refusal the prover
            // co-signed is an honest prover's answer to a measurer it did not expect.
            if matches!(r.msg.outcome, wisp_protocol::msg::Outcome::Measured(_)) {
                state.push_evidence(r.id, r.msg.measurer, reason);
                if r.cosigners.contains(&r.msg.prover) {
                    state.push_evidence(r.id, r.msg.prover, reason);
                }
            }
        }
        _ => {}
    }
}

/// Judges a usage claim (a subscriber's receipt or a carrier's report) in its open epoch:
/// the ledger's rules, then the epoch keeps it as its session's latest.
fn judge_claim(
    ledger: &mut Ledger,
    registry: &Registry,
    open: &mut BTreeMap<u64, EpochState>,
    closed: &BTreeSet<u64>,
    claim: &Claim,
    arrival: Arrival,
) -> Result<Push, Reason> {
    let state = epoch_state(open, closed, claim.epoch)?;
    let fact = ledger.check_claim(registry, state.seed(), claim, arrival.at_ms)?;
    let pushed = state.push_usage(arrival, &fact)?;
    if pushed == Push::Queued {
        ledger.accept(&fact);
    }
    Ok(pushed)
}

/// Acks and counts an authentic publish refused before the rules (never stored).
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

/// The oracle's state.
#[derive(Debug)]
pub struct Engine {
    key: NodeKey,
    registry: Registry,
    open: BTreeMap<u64, EpochState>,
    /// Epochs closed so far: a proof naming one is late, not of an unknown epoch.
    closed: BTreeSet<u64>,
    seen: HashMap<ProofId, Verdict>,
    epoch_ids: BTreeMap<u64, Vec<ProofId>>,
    next_seq: u64,
    /// Every node whose last onboard declared the measurer role: the measurer pool of the
    /// next epoch to open.
    candidates: Candidates,
    /// Per open epoch: its measurer pool, fixed when it opened, and the assignments judged.
    measurers: BTreeMap<u64, MeasurerCache>,
    /// Subscribers' data credits and usage sessions.
    ledger: Ledger,
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
            closed: BTreeSet::new(),
            seen: HashMap::new(),
            epoch_ids: BTreeMap::new(),
            next_seq: 1,
            ledger: Ledger::new(),
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

    /// The ledger of data credits and usage sessions.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// A subscriber's data credits, for the API: `None` when it was never granted any.
    pub fn balance(&self, subscriber: &SubscriberId) -> Option<Balance> {
        self.ledger.balance(subscriber, self.registry.rules())
    }

    /// Submits the operator's grant of data credits (the envelope bytes of a
    /// [`CreditGrant`], from the admin interface; grants never come from MQTT, where the
    /// precheck refuses them as `unexpected_kind`), arriving at oracle time `at_ms`.
    ///
    /// `Err` when the envelope does not open as a grant signed by this oracle's key (nothing
    /// changed, nothing to store). Otherwise its verdict, with the row to store when it is new
    /// (`None`: the same envelope was submitted before, and the verdict is the one it got).
    /// Accepted: the subscriber's balance grew by `amount_dc`; `usage_grant_reused`: another
    /// envelope with this grant id was applied, nothing changed. Like a proof's, the row is
    /// stored with its arrival number and replayed after a restart ([`Engine::replay`]), so a
    /// grant survives restarts and credits once.
    pub fn submit_grant(
        &mut self,
        envelope: Vec<u8>,
        at_ms: u64,
    ) -> Result<(Verdict, Option<Row>), Reason> {
        let opened = CreditGrant::open_from(&envelope, &self.key.id()).map_err(|e| e.reason())?;
        if let Some(v) = self.seen.get(&opened.id).copied() {
            return Ok((v, None));
        }
        let seq = self.next_seq;
        let id = opened.id;
        let (epoch, verdict) = self.judge(&Proof::Grant(opened), Arrival::new(seq, at_ms));
        self.next_seq += 1;
        self.remember(id, epoch, verdict);
        Ok((
            verdict,
            Some(Row {
                seq,
                id,
                node: self.key.id(),
                kind: Kind::CreditGrant,
                epoch,
                received_ms: at_ms,
                verdict,
                envelope,
            }),
        ))
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
    /// node whose last onboard so far declared the measurer role, or, when the rules cap the
    /// set (`measurer_set_max`), that many of them drawn by the epoch seed
    /// ([`Engine::measurer_pool`]); nodes onboarding (or turning the role on or off) later do
    /// so from the next epoch on.
    pub fn open_epoch(&mut self, seed: EpochSeed) {
        let epoch = seed.epoch;
        if self.open.contains_key(&epoch) || self.closed.contains(&epoch) {
            return;
        }
        let max = usize::from(self.registry.rules().config().measurer_set_max);
        // A node serving a penalty measures nobody.
        let registry = &self.registry;
        let pool = MeasurerPool::new(
            self.candidates
                .snapshot()
                .eligible()
                .iter()
                .copied()
                .filter(|n| !registry.is_penalized(n, epoch)),
        )
        .drawn(&seed.seed.0, max);
        self.open.insert(epoch, EpochState::new(seed));
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

    /// The earliest time an open epoch's settle window passes ([`Engine::closable`] is empty
    /// before it); `None` with no epoch open.
    pub fn next_close_at(&self) -> Option<u64> {
        self.open.values().map(EpochState::closes_at).min()
    }

    /// A publish that is a duplicate of a known proof, with its stored verdict.
    pub fn known(&self, id: &ProofId) -> Option<Verdict> {
        self.seen.get(id).copied()
    }

    /// Judges a batch of prechecked publishes ([`Prechecker::check`]), in order. Nothing here
    /// is durable: the caller stores `rows` and only then sends `acks`. `stored_verdict`
    /// answers for proofs the engine no longer holds in memory (those of closed epochs), from
    /// the store.
    pub fn ingest(
        &mut self,
        batch: Vec<Checked>,
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
            let (kind, proof) = match c.screened {
                Screened::Refused(Reason::RateLimited) => {
                    // Not judged, so not remembered: the resend is judged afresh.
                    refuse(&mut out, node, id, Reason::RateLimited);
                    continue;
                }
                Screened::Refused(reason) => {
                    *out.unverified.entry(reason).or_default() += 1;
                    continue;
                }
                Screened::Authentic { kind, proof } => (kind, proof),
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
            let seq = self.next_seq;
            let (epoch, verdict) = match &proof {
                Err(reason) => (None, Verdict::Rejected(*reason)),
                Ok(p) => self.judge(p, Arrival::new(seq, c.at_ms)),
            };
            if verdict == Verdict::Rejected(Reason::UnknownNode) {
                // Neither stored nor remembered, and no arrival number spent (see
                // [`Ingested::unknown_nodes`]).
                refuse(&mut out, node, id, Reason::UnknownNode);
                out.unknown_nodes += 1;
                continue;
            }
            // Proofs of closed epochs left memory: one judged `late_arrival` may be a resend of
            // a stored proof, which gets its stored verdict again. Asking the store only here
            // keeps the lookup off the path of every new proof.
            if verdict == Verdict::Rejected(Reason::LateArrival)
                && epoch.is_some_and(|e| self.closed.contains(&e))
                && let Some(v) = stored_verdict(&id)
            {
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
            self.next_seq += 1;
            if let (Ok(p), Some(e), Verdict::Rejected(r)) = (&proof, epoch, verdict) {
                note_refusal(&mut self.open, p, e, r);
            }
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
                kind,
                epoch,
                received_ms: c.at_ms,
                verdict,
                envelope: c.payload,
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
        let verdict = match (Proof::decode_stored(&row.envelope), row.verdict) {
            (Ok(proof), Verdict::Accepted) => {
                self.judge(&proof, Arrival::new(row.seq, row.received_ms)).1
            }
            (Ok(proof), Verdict::Rejected(r)) => {
                if let Some(e) = row.epoch {
                    note_refusal(&mut self.open, &proof, e, r);
                }
                row.verdict
            }
            (Err(_), v) => v,
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

    /// Checks one authentic proof, queueing it in its epoch.
    fn judge(&mut self, proof: &Proof, arrival: Arrival) -> (Option<u64>, Verdict) {
        let now = arrival.at_ms;
        let (registry, open, closed) = (&mut self.registry, &mut self.open, &self.closed);
        let verdict = |r: Result<Push, Reason>| match r {
            Ok(Push::Queued | Push::Duplicate) => Verdict::Accepted,
            Ok(Push::Late) => Verdict::Rejected(Reason::LateArrival),
            Err(reason) => Verdict::Rejected(reason),
        };
        let (epoch, result) = match proof {
            Proof::Onboard(o) => {
                let r = registry.apply_onboard(o, now).map(|change| {
                    if change != Change::Unchanged {
                        self.candidates.set(o.signer, o.msg.measurer);
                    }
                    Push::Queued
                });
                (None, r)
            }
            Proof::Beacon(b) => {
                let epoch = b.msg.epoch;
                let r = epoch_state(open, closed, epoch).and_then(|state| {
                    let fact = Checker::new(registry, state.seed()).beacon(b, now)?;
                    state.push_beacon(arrival, &fact)
                });
                (Some(epoch), r)
            }
            Proof::Witness(w, beacon) => {
                let Some(beacon) = beacon else {
                    // Nothing about the beacon can be believed, not even its epoch.
                    let r = Checker::known(registry, &w.signer).and(Err(Reason::BeaconInvalid));
                    return (None, verdict(r));
                };
                let epoch = beacon.msg.epoch;
                let r = epoch_state(open, closed, epoch).and_then(|state| {
                    let fact =
                        Checker::new(registry, state.seed()).witness_with_beacon(w, beacon, now)?;
                    state.push_witness(arrival, &fact)
                });
                (Some(epoch), r)
            }
            Proof::Receipt(r) => {
                let epoch = r.msg.epoch;
                let measurers = self.measurers.get_mut(&epoch);
                let res = epoch_state(open, closed, epoch).and_then(|state| {
                    // Opened together with the epoch.
                    let measurers = measurers.ok_or(Reason::WrongEpoch)?;
                    let fact = Checker::new(registry, state.seed()).receipt_with(
                        r,
                        |seed, prover, measurer, k| {
                            measurers.is_assigned(seed, prover, measurer, k)
                        },
                    )?;
                    state.push_receipt(arrival, &fact)
                });
                (Some(epoch), res)
            }
            Proof::Heartbeat(h) => {
                let epoch = h.msg.epoch;
                let r = epoch_state(open, closed, epoch).and_then(|state| {
                    let fact = Checker::new(registry, state.seed()).heartbeat(h, now)?;
                    let pushed = state.push_heartbeat(arrival, &fact)?;
                    registry.record_heartbeat(&fact);
                    Ok(pushed)
                });
                (Some(epoch), r)
            }
            // A subscriber's receipt and a carrier's report: one rule set, one path.
            Proof::Usage(u) => {
                let claim = Claim::of_receipt(u);
                let r = judge_claim(&mut self.ledger, registry, open, closed, &claim, arrival);
                (Some(claim.epoch), r)
            }
            Proof::Carrier(c) => {
                let claim = Claim::of_carrier(c);
                let r = judge_claim(&mut self.ledger, registry, open, closed, &claim, arrival);
                (Some(claim.epoch), r)
            }
            Proof::Grant(g) => {
                let r = self
                    .ledger
                    .apply_grant(g, &self.key.id())
                    .map(|()| Push::Queued);
                (None, r)
            }
        };
        (epoch, verdict(result))
    }

    /// Closes an epoch whose settle window passed: the stateful rules, the rewards and the
    /// signed manifest pages. The engine forgets nothing yet: call [`Engine::finish_close`]
    /// once the result is durably stored.
    pub fn close(&self, epoch: u64, now_ms: u64, emission: u64) -> Option<Closed> {
        let state = self.open.get(&epoch)?;
        let outcome = state
            .close_with(&self.registry, &self.ledger, now_ms)
            .ok()?;
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

    /// Applies a stored close: location trust and history move on, the usage is burned from
    /// the subscribers' credits, the epoch's proofs leave memory (duplicates of them are
    /// answered from the store, later ones are late).
    pub fn finish_close(&mut self, epoch: u64, outcome: &EpochOutcome) {
        self.registry.apply_epoch(outcome);
        self.ledger
            .apply_close(epoch, &outcome.usage, self.registry.rules());
        self.open.remove(&epoch);
        self.measurers.remove(&epoch);
        self.closed.insert(epoch);
        for id in self.epoch_ids.remove(&epoch).unwrap_or_default() {
            self.seen.remove(&id);
        }
    }
}
