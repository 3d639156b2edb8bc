//! The oracle as the simulator runs it: the wisp-oracle crate's pure rules
//! ([`Registry`], [`Checker`], [`EpochState`], `rewards::compute`) fed with proofs in arrival
//! order, exactly as the service's ingest does, minus MQTT and SQLite.
//!
//! Arrivals are buffered and judged in batches: signatures are verified in parallel with
//! ed25519 batch verification (`wisp_protocol::envelope::verify_batch`), then each proof is
//! checked and pushed in arrival order with its own arrival time. The rules read no clock, so
//! judging an arrival later with its recorded time gives the same result as judging it at once.
//!
//! With `verify_fraction < 1` only the envelopes whose proof id falls in that fraction have
//! their signatures verified (the rest are decoded unverified). Nothing else changes: every
//! proof in the simulation is signed for real, and no simulated cheater forges a signature
//! (they sign their lies with their own keys), so sampling changes timings, not verdicts.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use wisp_oracle::rewards::{self, EpochRewards};
use wisp_oracle::{Arrival, Checker, EpochOutcome, EpochState, MeasurerPool, Registry, Rules};
use wisp_protocol::envelope::{self, EnvelopeRef, Opened};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{BandwidthReceipt, Beacon, EpochSeed, Heartbeat, Onboard, Witness};
use wisp_protocol::{NodeId, ProofId, Reason};

thread_local! {
    /// Decompressed signer keys of each verification thread (rayon's threads live for the run).
    /// A cache changes no verdict, so results do not depend on which thread checked what.
    static KEYS: std::cell::RefCell<envelope::KeyCache> =
        std::cell::RefCell::new(envelope::KeyCache::new(1 << 17));
}

/// A verdict the oracle reached about one proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The node that submitted (signed) it, by world index.
    pub node: u32,
    /// The node it is about: the prover of a receipt, otherwise the signer.
    pub subject: u32,
    /// What it is.
    pub kind: Kind,
    /// The epoch it belongs to (0 when unknown).
    pub epoch: u64,
    /// `None`: stored and counted so far; `Some`: refused with this reason.
    pub reason: Option<Reason>,
    /// The proof id.
    pub id: ProofId,
}

struct Arrived {
    seq: u64,
    at_ms: u64,
    bytes: Vec<u8>,
}

struct Slot {
    seed: EpochSeed,
    state: EpochState,
    pool: MeasurerPool,
    /// Proofs pushed: id → (node, kind).
    owners: HashMap<ProofId, (u32, Kind)>,
    /// Beacons already opened, by proof id (from beacon proofs and earlier witnesses).
    beacons: HashMap<ProofId, Opened<Beacon>>,
}

/// A closed epoch: the outcome, the rewards and every proof's final verdict.
#[derive(Debug)]
pub struct Closed {
    /// The outcome of `EpochState::close`.
    pub outcome: EpochOutcome,
    /// The rewards.
    pub rewards: EpochRewards,
    /// Verdicts of the close (stateful rules) for pushed proofs: id → (node, kind, reason).
    pub rejected: Vec<(u32, Kind, Reason)>,
    /// Pushed proofs per node that were counted (not rejected at close), by kind.
    pub counted: BTreeMap<u32, [u32; 4]>,
}

/// The oracle's state.
pub struct Oracle {
    registry: Registry,
    ids: HashMap<NodeId, u32>,
    slots: BTreeMap<u64, Slot>,
    closed_upto: Option<u64>,
    buffer: Vec<Arrived>,
    next_seq: u64,
    verify_fraction: f64,
    batch: usize,
    /// Envelopes whose signatures were verified.
    pub verified: u64,
    /// Envelopes decoded without verification (sampling).
    pub unverified: u64,
}

impl std::fmt::Debug for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oracle")
            .field("nodes", &self.registry.len())
            .field("open_epochs", &self.slots.len())
            .finish()
    }
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

fn sampled(id: &ProofId, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    crate::rng::unit(u64::from_le_bytes(b)) < fraction
}

impl Oracle {
    /// An oracle applying `rules`.
    pub fn new(rules: Rules, verify_fraction: f64, batch: usize) -> Oracle {
        Oracle {
            registry: Registry::new(rules),
            ids: HashMap::new(),
            slots: BTreeMap::new(),
            closed_upto: None,
            buffer: Vec::new(),
            next_seq: 0,
            verify_fraction,
            batch: batch.max(1),
            verified: 0,
            unverified: 0,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Onboards signed `Onboard` envelopes of world nodes `0..`, verifying them in parallel
    /// batches. Returns the reason for each refused one.
    pub fn onboard_all(&mut self, envelopes: &[Vec<u8>], now_ms: u64) -> Vec<(u32, Reason)> {
        let results = self.verify(envelopes.iter().map(Vec::as_slice).collect());
        let mut refused = Vec::new();
        for (i, (bytes, ok)) in envelopes.iter().zip(results).enumerate() {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            let opened = ok.and_then(|()| {
                EnvelopeRef::parse(bytes)
                    .and_then(|e| e.decode::<Onboard>())
                    .map_err(|e| e.reason())
            });
            match opened.and_then(|o| self.registry.apply_onboard(&o, now_ms).map(|_| o.signer)) {
                Ok(id) => {
                    self.ids.insert(id, idx);
                }
                Err(r) => refused.push((idx, r)),
            }
        }
        refused
    }

    /// Verifies signatures (or samples) of many envelopes on all cores, in order.
    fn verify(&mut self, all: Vec<&[u8]>) -> Vec<Result<(), Reason>> {
        let fraction = self.verify_fraction;
        let out: Vec<(Result<(), Reason>, bool)> = all
            .par_chunks(256)
            .flat_map_iter(|chunk| {
                let parsed: Vec<Result<EnvelopeRef<'_>, Reason>> = chunk
                    .iter()
                    .map(|b| EnvelopeRef::parse(b).map_err(|e| e.reason()))
                    .collect();
                let to_check: Vec<EnvelopeRef<'_>> = parsed
                    .iter()
                    .filter_map(|p| p.as_ref().ok().copied())
                    .filter(|e| sampled(&e.proof_id(), fraction))
                    .collect();
                let mut results = KEYS
                    .with(|k| envelope::verify_batch_cached(&to_check, &mut k.borrow_mut()))
                    .into_iter();
                parsed
                    .into_iter()
                    .map(|p| match p {
                        Err(r) => (Err(r), true),
                        Ok(e) if sampled(&e.proof_id(), fraction) => (
                            results.next().unwrap_or(Ok(())).map_err(|err| err.reason()),
                            true,
                        ),
                        Ok(_) => (Ok(()), false),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let verified = out.iter().filter(|(_, v)| *v).count() as u64;
        self.verified += verified;
        self.unverified += out.len() as u64 - verified;
        out.into_iter().map(|(r, _)| r).collect()
    }

    /// Opens epoch `seed.epoch` for proofs, with this measurer pool.
    pub fn open_epoch(&mut self, seed: EpochSeed, pool: MeasurerPool) {
        self.slots.insert(
            seed.epoch,
            Slot {
                state: EpochState::new(seed.clone()),
                seed,
                pool,
                owners: HashMap::new(),
                beacons: HashMap::new(),
            },
        );
    }

    /// The pool of an open epoch.
    pub fn pool(&self, epoch: u64) -> Option<&MeasurerPool> {
        self.slots.get(&epoch).map(|s| &s.pool)
    }

    /// A proof arrived at oracle time `at_ms`. Judged at the next flush.
    pub fn arrive(&mut self, bytes: Vec<u8>, at_ms: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.buffer.push(Arrived { seq, at_ms, bytes });
    }

    /// Whether the buffer is full enough to flush.
    pub fn wants_flush(&self) -> bool {
        self.buffer.len() >= self.batch
    }

    /// Judges every buffered arrival, in arrival order. Returns the verdicts of the
    /// stateless checks (accepted or refused); the close gives the rest.
    pub fn flush(&mut self) -> Vec<Verdict> {
        let buffer = std::mem::take(&mut self.buffer);
        let sig = self.verify(buffer.iter().map(|a| a.bytes.as_slice()).collect());
        let mut verdicts = Vec::with_capacity(buffer.len());
        for (a, ok) in buffer.iter().zip(sig) {
            verdicts.push(self.judge(a, ok));
        }
        verdicts
    }

    fn node_of(&self, id: &NodeId) -> u32 {
        self.ids.get(id).copied().unwrap_or(u32::MAX)
    }

    fn judge(&mut self, a: &Arrived, sig: Result<(), Reason>) -> Verdict {
        let id = ProofId::of(&a.bytes);
        let env = match EnvelopeRef::parse(&a.bytes) {
            Ok(e) => e,
            Err(e) => {
                return Verdict {
                    node: u32::MAX,
                    subject: u32::MAX,
                    kind: Kind::Ack,
                    epoch: 0,
                    reason: Some(e.reason()),
                    id,
                };
            }
        };
        let node = self.node_of(&env.signer_id());
        let kind = env.kind;
        let mut verdict = Verdict {
            node,
            subject: node,
            kind,
            epoch: 0,
            reason: None,
            id,
        };
        let arrival = Arrival::new(a.seq, a.at_ms);
        let result: Result<(), Reason> = sig.and_then(|()| match kind {
            Kind::Beacon => {
                let o = env.decode::<Beacon>().map_err(|e| e.reason())?;
                verdict.epoch = o.msg.epoch;
                let (registry, slots, closed) = (&self.registry, &mut self.slots, self.closed_upto);
                let slot = slot_in(slots, closed, o.msg.epoch)?;
                let fact = Checker::new(registry, &slot.seed).beacon(&o, a.at_ms)?;
                slot.state.push_beacon(arrival, &fact)?;
                slot.owners.insert(id, (node, kind));
                slot.beacons.insert(id, o);
                Ok(())
            }
            Kind::Witness => {
                let o = env.decode::<Witness>().map_err(|e| e.reason())?;
                let epoch =
                    wisp_oracle::rules::witness_epoch(&o.msg).ok_or(Reason::BeaconInvalid)?;
                verdict.epoch = epoch;
                let fraction = self.verify_fraction;
                let (registry, slots, closed) = (&self.registry, &mut self.slots, self.closed_upto);
                let slot = slot_in(slots, closed, epoch)?;
                let bid = ProofId::of(&o.msg.beacon);
                if let std::collections::hash_map::Entry::Vacant(v) = slot.beacons.entry(bid) {
                    let opened = if sampled(&bid, fraction) {
                        o.msg.open_beacon()
                    } else {
                        EnvelopeRef::parse(&o.msg.beacon).and_then(|e| e.decode::<Beacon>())
                    }
                    .map_err(|_| Reason::BeaconInvalid)?;
                    v.insert(opened);
                }
                let beacon = slot.beacons.get(&bid).ok_or(Reason::BeaconInvalid)?;
                let fact =
                    Checker::new(registry, &slot.seed).witness_with_beacon(&o, beacon, a.at_ms)?;
                slot.state.push_witness(arrival, &fact)?;
                slot.owners.insert(id, (node, kind));
                Ok(())
            }
            Kind::Heartbeat => {
                let o = env.decode::<Heartbeat>().map_err(|e| e.reason())?;
                verdict.epoch = o.msg.epoch;
                let (registry, slots, closed) =
                    (&mut self.registry, &mut self.slots, self.closed_upto);
                let slot = slot_in(slots, closed, o.msg.epoch)?;
                let fact = Checker::new(registry, &slot.seed).heartbeat(&o, a.at_ms)?;
                slot.state.push_heartbeat(arrival, &fact)?;
                registry.record_heartbeat(&fact);
                slot.owners.insert(id, (node, kind));
                Ok(())
            }
            Kind::BandwidthReceipt => {
                let o = env.decode::<BandwidthReceipt>().map_err(|e| e.reason())?;
                verdict.epoch = o.msg.epoch;
                verdict.subject = self.ids.get(&o.msg.prover).copied().unwrap_or(u32::MAX);
                let (registry, slots, closed) = (&self.registry, &mut self.slots, self.closed_upto);
                let slot = slot_in(slots, closed, o.msg.epoch)?;
                let fact = Checker::new(registry, &slot.seed).receipt(&o, &slot.pool)?;
                slot.state.push_receipt(arrival, &fact)?;
                slot.owners.insert(id, (node, kind));
                Ok(())
            }
            _ => Err(Reason::UnexpectedKind),
        });
        verdict.reason = result.err();
        verdict
    }

    /// Closes epoch `epoch` at oracle time `now_ms` (after flushing), applies it to the
    /// registry and computes its rewards.
    pub fn close(
        &mut self,
        epoch: u64,
        now_ms: u64,
        emission: u64,
    ) -> Option<(Closed, Vec<Verdict>)> {
        let verdicts = self.flush();
        let slot = self.slots.remove(&epoch)?;
        self.closed_upto = Some(self.closed_upto.map_or(epoch, |c| c.max(epoch)));
        // `close` only fails before the settle window ends; the caller schedules it after.
        let outcome = slot.state.close(&self.registry, now_ms).ok()?;
        self.registry.apply_epoch(&outcome);
        let rewards = rewards::compute(&self.registry, &outcome, emission);
        let mut rejected = Vec::with_capacity(outcome.rejections.len());
        let mut counted: BTreeMap<u32, [u32; 4]> = BTreeMap::new();
        let rejected_ids: std::collections::BTreeSet<ProofId> =
            outcome.rejections.iter().map(|(id, _)| *id).collect();
        for (id, reason) in &outcome.rejections {
            if let Some((node, kind)) = slot.owners.get(id) {
                rejected.push((*node, *kind, *reason));
            }
        }
        let mut owned: Vec<(&ProofId, &(u32, Kind))> = slot.owners.iter().collect();
        owned.sort_unstable_by_key(|(id, _)| **id);
        for (id, (node, kind)) in owned {
            if !rejected_ids.contains(id) {
                counted.entry(*node).or_default()[kind_slot(*kind)] += 1;
            }
        }
        Some((
            Closed {
                outcome,
                rewards,
                rejected,
                counted,
            },
            verdicts,
        ))
    }

    /// The world index of a node id.
    pub fn index_of(&self, id: &NodeId) -> Option<u32> {
        self.ids.get(id).copied()
    }
}

fn slot_in(
    slots: &mut BTreeMap<u64, Slot>,
    closed: Option<u64>,
    epoch: u64,
) -> Result<&mut Slot, Reason> {
    match slots.get_mut(&epoch) {
        Some(s) => Ok(s),
        // A proof for an epoch already closed arrived after its settle window.
        None if closed.is_some_and(|c| epoch <= c) => Err(Reason::LateArrival),
        None => Err(Reason::WrongEpoch),
    }
}
