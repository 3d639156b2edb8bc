//! Stage 1 of ingest, [`Prechecker::check`]: the checks that need none of the engine's state
//! — framing, signatures, rate limits and decoding (the parent module documents the order and
//! why only authentic envelopes are rate limited or acked).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use wisp_protocol::envelope::{self, EnvelopeError, EnvelopeRef, Opened};
use wisp_protocol::kind::{Kind, MAX_ENVELOPE_LEN};
use wisp_protocol::msg::Beacon;
use wisp_protocol::{NodeId, ProofId, Reason, topics};

use super::{Incoming, Proof};

/// Per-node token bucket rate limit, charged only for envelopes whose signatures verified
/// (see the module documentation).
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
        self.take(node, now_ms).is_ok()
    }

    /// Takes one token for `node` at `now_ms`: `Err` is how long until one is there (nothing
    /// taken; at least 1 ms, at most a day). A clock that goes back refills nothing.
    pub fn take(&mut self, node: &NodeId, now_ms: u64) -> Result<(), Duration> {
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
            return Ok(());
        };
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.rate_per_s).min(self.burst);
        *last = now_ms.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - *tokens) / self.rate_per_s;
            Err(Duration::from_secs_f64(wait_s.clamp(0.001, 86_400.0)))
        }
    }

    /// Nodes holding a bucket (at most `max_nodes`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no node holds a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Checks the signatures of many envelopes at once. Each result must be what
/// [`EnvelopeRef::verify`] says of that envelope (batch verification falls back to it when a
/// batch fails, so a verdict never depends on its batch). The service checks on threads of its
/// own; the simulator may check a sample (`verify_fraction`), which changes no verdict because
/// no simulated node forges another's signature.
pub trait SignatureCheck {
    /// One result per envelope, in order.
    fn check(&mut self, envs: &[EnvelopeRef<'_>]) -> Vec<Result<(), EnvelopeError>>;
}

/// Batch verification on the calling thread, with the signer keys kept decompressed.
#[derive(Debug)]
pub struct BatchVerifier {
    keys: envelope::KeyCache,
}

/// Most signer keys kept decompressed per verifying thread (about 200 bytes each).
pub const KEY_CACHE: usize = 1 << 17;

impl BatchVerifier {
    /// A verifier keeping up to [`KEY_CACHE`] keys.
    pub fn new() -> Self {
        Self {
            keys: envelope::KeyCache::new(KEY_CACHE),
        }
    }
}

impl Default for BatchVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SignatureCheck for BatchVerifier {
    fn check(&mut self, envs: &[EnvelopeRef<'_>]) -> Vec<Result<(), EnvelopeError>> {
        envelope::verify_batch_cached(envs, &mut self.keys)
    }
}

/// Where a publish stands after the precheck.
// Nearly every publish is authentic: boxing the large variant would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Screened {
    /// Refused, never stored. `rate_limited` is the one refusal of an authentic envelope (its
    /// signatures verified, its node sent faster than its allowance): acked, so the node backs
    /// off and resends. Every other reason refuses an envelope whose signatures did not verify
    /// or were never checked (size, framing, kind, topic): counted, never acked.
    Refused(Reason),
    /// Authentic (every signature verified): stored with its verdict; `Err` when it does not
    /// decode.
    Authentic {
        /// The envelope's kind.
        kind: Kind,
        /// The proof, or why it does not decode.
        proof: Result<Proof, Reason>,
    },
}

/// A publish after the checks that need none of the engine's state (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct Checked {
    /// The node the topic names (`None`: dropped without an ack).
    pub node: Option<NodeId>,
    /// Oracle time of arrival.
    pub at_ms: u64,
    /// BLAKE3 of the payload.
    pub id: ProofId,
    /// What the precheck found.
    pub screened: Screened,
    /// The envelope bytes.
    pub payload: Vec<u8>,
}

/// Beacons opened from witnesses, by proof id, so each distinct beacon is verified once however
/// many witnesses carry it. Bounded: emptied when full.
const BEACON_CACHE: usize = 1 << 16;

/// Proof topics read into node ids, so a node's topic is decoded from base58 once, not on every
/// proof. Bounded: emptied when full (a network larger than this decodes as before).
const TOPIC_CACHE: usize = 1 << 17;

/// The stateless stage of ingest: signatures (with `V`), rate limits and decoding. The service
/// runs it on a thread of its own, ahead of the engine, so a batch's signatures are checked
/// while the one before it is judged and committed.
#[derive(Debug)]
pub struct Prechecker<V> {
    limiter: RateLimiter,
    verifier: V,
    beacons: HashMap<ProofId, Opened<Beacon>>,
    topics: HashMap<String, NodeId>,
}

impl<V: SignatureCheck> Prechecker<V> {
    /// A prechecker with this rate limit and signature check.
    pub fn new(limiter: RateLimiter, verifier: V) -> Self {
        Self {
            limiter,
            verifier,
            beacons: HashMap::new(),
            topics: HashMap::new(),
        }
    }

    /// The node a proof topic names, or `None` for any other topic ([`topics::proofs_node`],
    /// remembered).
    fn topic_node(&mut self, topic: &str) -> Option<NodeId> {
        if let Some(node) = self.topics.get(topic) {
            return Some(*node);
        }
        let node = topics::proofs_node(topic)?;
        if self.topics.len() >= TOPIC_CACHE {
            self.topics.clear();
        }
        self.topics.insert(topic.to_owned(), node);
        Some(node)
    }

    /// The signature check.
    pub fn verifier(&self) -> &V {
        &self.verifier
    }

    /// The signature check, to change (a service that prechecks publishes from two sources
    /// with one rate limit).
    pub fn verifier_mut(&mut self) -> &mut V {
        &mut self.verifier
    }

    /// Checks a batch: the signatures of all that pass the cheap checks in one batch, then the
    /// rate limit of each authentic one's node, in arrival order, then the embedded beacons of
    /// the witnesses among them in a second batch. Nothing that failed to verify touches a
    /// node's rate limit.
    pub fn check(&mut self, batch: Vec<Incoming>) -> Vec<Checked> {
        let mut out: Vec<Checked> = batch
            .into_iter()
            .map(|msg| Checked {
                node: self.topic_node(&msg.topic),
                at_ms: msg.at_ms,
                id: ProofId::of(&msg.payload),
                screened: Screened::Refused(Reason::Malformed),
                payload: msg.payload,
            })
            .collect();
        // Envelopes whose signatures to check, by index into `out`.
        let mut to_verify: Vec<usize> = Vec::new();
        let mut refusals: Vec<(usize, Reason)> = Vec::new();
        let mut envs: Vec<EnvelopeRef<'_>> = Vec::with_capacity(out.len());
        for (i, c) in out.iter().enumerate() {
            let Some(node) = c.node else { continue };
            match cheap_checks(&node, &c.payload) {
                Ok(env) => {
                    to_verify.push(i);
                    envs.push(env);
                }
                Err(reason) => refusals.push((i, reason)),
            }
        }
        let verified = self.verifier.check(&envs);
        // Decode what verified; a witness's beacon waits for the second batch unless cached.
        let mut decoded: Vec<(usize, Screened)> = Vec::with_capacity(envs.len());
        let mut pending_beacons: Vec<usize> = Vec::new();
        let cache = &self.beacons;
        for ((i, env), ok) in to_verify.iter().zip(&envs).zip(verified) {
            let screened = match ok {
                Err(e) => Screened::Refused(e.reason()),
                // Authentic, so its node (the topic's, which signed it) answers for it.
                Ok(())
                    if out[*i]
                        .node
                        .is_some_and(|node| !self.limiter.allow(&node, out[*i].at_ms)) =>
                {
                    Screened::Refused(Reason::RateLimited)
                }
                Ok(()) => {
                    let mut wants_beacon = false;
                    let proof = Proof::decode(env, |b| {
                        let hit = cache.get(&ProofId::of(b)).cloned();
                        wants_beacon = hit.is_none();
                        hit
                    });
                    if wants_beacon && proof.is_ok() {
                        pending_beacons.push(decoded.len());
                    }
                    Screened::Authentic {
                        kind: env.kind,
                        proof,
                    }
                }
            };
            decoded.push((*i, screened));
        }
        drop(envs);
        self.open_beacons(&mut decoded, &pending_beacons);
        for (i, screened) in decoded {
            out[i].screened = screened;
        }
        for (i, reason) in refusals {
            out[i].screened = Screened::Refused(reason);
        }
        out
    }

    /// Verifies (in one batch) and decodes the embedded beacons of the witnesses at `pending`
    /// in `decoded`, each distinct beacon once, and remembers them.
    fn open_beacons(&mut self, decoded: &mut [(usize, Screened)], pending: &[usize]) {
        let beacon_bytes = |s: &Screened| match s {
            Screened::Authentic {
                proof: Ok(Proof::Witness(w, None)),
                ..
            } => Some(w.msg.beacon.clone()),
            _ => None,
        };
        // Distinct beacons, in first-seen order.
        let mut distinct: Vec<(ProofId, Vec<u8>)> = Vec::new();
        let mut index: HashMap<ProofId, usize> = HashMap::new();
        for &p in pending {
            if let Some(bytes) = beacon_bytes(&decoded[p].1) {
                let id = ProofId::of(&bytes);
                if let std::collections::hash_map::Entry::Vacant(v) = index.entry(id) {
                    v.insert(distinct.len());
                    distinct.push((id, bytes));
                }
            }
        }
        let parsed: Vec<Option<EnvelopeRef<'_>>> = distinct
            .iter()
            .map(|(_, b)| {
                EnvelopeRef::parse(b)
                    .ok()
                    .filter(|e| e.kind == Kind::Beacon)
            })
            .collect();
        let envs: Vec<EnvelopeRef<'_>> = parsed.iter().flatten().copied().collect();
        let mut results = self.verifier.check(&envs).into_iter();
        let opened: Vec<Option<Opened<Beacon>>> = parsed
            .iter()
            .map(|p| {
                let env = p.as_ref()?;
                results.next()?.ok()?;
                env.decode::<Beacon>().ok()
            })
            .collect();
        if self.beacons.len() + distinct.len() > BEACON_CACHE {
            self.beacons.clear();
        }
        for ((id, _), b) in distinct.iter().zip(&opened) {
            if let Some(b) = b {
                self.beacons.insert(*id, b.clone());
            }
        }
        for &p in pending {
            if let Screened::Authentic {
                proof: Ok(Proof::Witness(w, beacon)),
                ..
            } = &mut decoded[p].1
            {
                let id = ProofId::of(&w.msg.beacon);
                *beacon = index.get(&id).and_then(|k| opened[*k].clone());
            }
        }
    }
}

/// The checks before the signatures, none of them cryptographic; the parsed envelope if they
/// pass. A refusal here says nothing about the topic's node (anyone may have published it).
fn cheap_checks<'a>(node: &NodeId, payload: &'a [u8]) -> Result<EnvelopeRef<'a>, Reason> {
    if payload.len() > MAX_ENVELOPE_LEN {
        return Err(Reason::Oversize);
    }
    let env = EnvelopeRef::parse(payload).map_err(|e| e.reason())?;
    if !env.kind.is_proof() {
        return Err(Reason::UnexpectedKind);
    }
    // The signer; a bandwidth receipt's co-signer too; a usage receipt's co-signer only (the
    // hotspot: its signer is a subscriber, who has no topic).
    if !env.sent_by(node) {
        return Err(Reason::TopicMismatch);
    }
    Ok(env)
}
