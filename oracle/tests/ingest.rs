//! Ingest under attack, on the engine as the service runs it (the `Prechecker`, then the
//! `Engine`), without I/O or a clock: whatever anyone publishes on a node's topic, only what the
//! node signed spends its rate-limit allowance or draws an ack to it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use wisp_oracle::engine::{BatchVerifier, Engine, Incoming, Ingested, Prechecker, RateLimiter};
use wisp_oracle::{Registry, RulesConfig};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Band, EpochParams, EpochSeed, Heartbeat, Onboard, Verdict, Versions};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeKey, ProofId, Reason, topics};

const T0: u64 = 1_800_000_000_000;
const INTERVAL_MS: u32 = 1_000;

/// The oracle's ingest: the precheck and the engine, an epoch open from `T0`, `victim`
/// onboarded.
struct Ingest {
    pre: Prechecker<BatchVerifier>,
    engine: Engine,
}

impl Ingest {
    fn new(rate_per_s: f64, burst: f64, victim: &NodeKey) -> Ingest {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let rules = RulesConfig::permissionless().validate().unwrap();
        let mut engine = Engine::new(oracle, Registry::new(rules));
        engine.open_epoch(EpochSeed {
            epoch: 1,
            start_ms: T0,
            duration_ms: 3_600_000,
            seed: [7; 32].into(),
            params: EpochParams {
                heartbeat_interval_ms: INTERVAL_MS,
                ..EpochParams::default()
            },
        });
        let mut ingest = Ingest {
            pre: Prechecker::new(
                RateLimiter::new(rate_per_s, burst, 1_000),
                BatchVerifier::new(),
            ),
            engine,
        };
        let onboard = Envelope::sign(victim, &onboard(T0)).to_bytes();
        let out = ingest.batch(vec![(topics::proofs(&victim.id()), onboard)], T0);
        assert_eq!(out.acks[0].1.verdict, Verdict::Accepted);
        ingest
    }

    /// One batch of `(topic, payload)` publishes, all arrived at `at_ms`.
    fn batch(&mut self, publishes: Vec<(String, Vec<u8>)>, at_ms: u64) -> Ingested {
        let checked = self.pre.check(
            publishes
                .into_iter()
                .map(|(topic, payload)| Incoming {
                    topic,
                    payload,
                    at_ms,
                })
                .collect(),
        );
        self.engine.ingest(checked, |_| None)
    }
}

fn onboard(issued_ms: u64) -> Onboard {
    Onboard {
        owner: "owner".into(),
        cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
        antenna_gain: DeciDb(30),
        antenna_height_dm: 100,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(360),
        }],
        measurer: false,
        issued_ms,
        attestation: None,
    }
}

fn heartbeat(seq: u64, sent_ms: u64) -> Heartbeat {
    Heartbeat {
        epoch: 1,
        seq,
        uptime_s: seq,
        sent_ms,
        fix: None,
        cell: None,
        versions: Versions::new("test", "none"),
        peers: 0,
    }
}

/// Garbage number `n` for `victim`'s topic, and the reason the precheck refuses it for: every
/// kind of thing an attacker without the victim's key can put there.
fn garbage(victim: &NodeKey, stranger: &NodeKey, n: u64) -> (Vec<u8>, Reason) {
    let hb = heartbeat(1_000_000 + n, T0);
    match n % 5 {
        // The victim's heartbeat as it would sign it, with the signature made up: it passes
        // every check before the signature's (it even names the victim as signer).
        0 => {
            let mut bytes = Envelope::sign(victim, &hb).to_bytes();
            let len = bytes.len();
            // A bit of the signature (R or s) flipped; the byte after it counts co-signers.
            bytes[len - 2 - usize::try_from(n % 64).unwrap()] ^= 1;
            (bytes, Reason::BadSignature)
        }
        // Someone else's genuine heartbeat, on the victim's topic.
        1 => (
            Envelope::sign(stranger, &hb).to_bytes(),
            Reason::TopicMismatch,
        ),
        // An envelope cut short.
        2 => {
            let mut bytes = Envelope::sign(stranger, &hb).to_bytes();
            bytes.truncate(bytes.len() - 1 - usize::try_from(n % 60).unwrap());
            (bytes, Reason::Malformed)
        }
        // Larger than any envelope may be.
        3 => {
            let mut big = vec![1u8, Kind::Heartbeat.as_u8()];
            big.resize(300_000, n.to_le_bytes()[0]);
            (big, Reason::Oversize)
        }
        // A stranger's envelope of a kind that is not a proof, relabelled as the victim's.
        _ => {
            let mut env = Envelope::sign(stranger, &hb);
            env.kind = Kind::Ack;
            env.signer = victim.id();
            (env.to_bytes(), Reason::UnexpectedKind)
        }
    }
}

#[test]
fn garbage_on_a_nodes_topic_spends_none_of_its_allowance_and_draws_no_ack() {
    let victim = NodeKey::from_seed(&[2; 32]);
    let stranger = NodeKey::from_seed(&[3; 32]);
    // The service's defaults: 50 proofs/s, bursts of 500.
    let mut oracle = Ingest::new(50.0, 500.0, &victim);
    let topic = topics::proofs(&victim.id());
    // 200 garbage publishes a second for 17 s, in 100 ms batches, and one genuine heartbeat a
    // second among them: before the fix, the garbage spent the victim's allowance in about
    // 3 s and its heartbeats were refused `rate_limited`.
    let mut genuine: Vec<ProofId> = Vec::new();
    let mut sent: BTreeMap<Reason, u64> = BTreeMap::new();
    let mut acked: Vec<(wisp_protocol::NodeId, ProofId, Verdict)> = Vec::new();
    let mut unverified: BTreeMap<Reason, u64> = BTreeMap::new();
    let mut stored = 0;
    let mut n = 0;
    for step in 0..170u64 {
        let at = T0 + 1_000 + step * 100;
        let mut publishes = Vec::new();
        for _ in 0..20 {
            let (bytes, reason) = garbage(&victim, &stranger, n);
            n += 1;
            *sent.entry(reason).or_default() += 1;
            publishes.push((topic.clone(), bytes));
        }
        if step % 10 == 5 {
            let hb = Envelope::sign(&victim, &heartbeat(step / 10 + 1, at)).to_bytes();
            genuine.push(ProofId::of(&hb));
            // In the middle of the batch's garbage.
            publishes.insert(10, (topic.clone(), hb));
        }
        let out = oracle.batch(publishes, at);
        acked.extend(
            out.acks
                .iter()
                .map(|(node, e)| (*node, e.proof_id, e.verdict)),
        );
        for (reason, k) in out.unverified {
            *unverified.entry(reason).or_default() += k;
        }
        stored += out.rows.len();
    }
    assert_eq!(n, 3_400);
    assert_eq!(genuine.len(), 17);
    // Every genuine heartbeat accepted; nothing else acked, to anyone.
    let want: Vec<(wisp_protocol::NodeId, ProofId, Verdict)> = genuine
        .iter()
        .map(|id| (victim.id(), *id, Verdict::Accepted))
        .collect();
    assert_eq!(acked, want);
    assert_eq!(
        stored,
        genuine.len(),
        "only the genuine heartbeats are stored"
    );
    // The garbage is counted, by why it was refused.
    assert_eq!(unverified, sent);
}

#[test]
fn a_nodes_own_flood_is_rate_limited_and_a_refused_proof_is_judged_when_resent() {
    let node = NodeKey::from_seed(&[4; 32]);
    let mut oracle = Ingest::new(1.0, 3.0, &node);
    let topic = topics::proofs(&node.id());
    let at = T0 + 10_000;
    // Five heartbeats at once, signed a second apart: the burst lets three through.
    let hbs: Vec<Vec<u8>> = (1..=5)
        .map(|s| Envelope::sign(&node, &heartbeat(s, at - 5_000 + s * 1_000)).to_bytes())
        .collect();
    let out = oracle.batch(hbs.iter().map(|b| (topic.clone(), b.clone())).collect(), at);
    let verdicts: Vec<Verdict> = out.acks.iter().map(|(_, e)| e.verdict).collect();
    let limited = Verdict::Rejected(Reason::RateLimited);
    let accepted = Verdict::Accepted;
    assert_eq!(verdicts, [accepted, accepted, accepted, limited, limited]);
    assert!(out.acks.iter().all(|(n, _)| *n == node.id()));
    assert!(!limited.is_final());
    // Refused unjudged: not stored, and not remembered as a verdict.
    assert_eq!(out.rows.len(), 3);
    assert_eq!(oracle.engine.known(&ProofId::of(&hbs[3])), None);
    // Resent once the allowance refilled: judged, and accepted.
    let out = oracle.batch(
        hbs[3..]
            .iter()
            .map(|b| (topic.clone(), b.clone()))
            .collect(),
        at + 2_000,
    );
    let verdicts: Vec<Verdict> = out.acks.iter().map(|(_, e)| e.verdict).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted]);
    assert_eq!(out.rows.len(), 2);
}

#[test]
fn proofs_of_keys_that_never_onboarded_are_acked_and_counted_but_not_stored() {
    let victim = NodeKey::from_seed(&[2; 32]);
    let mut ingest = Ingest::new(1_000.0, 10_000.0, &victim);
    // 40 fresh keys, 50 signed heartbeats each: each key's own valid signature, never onboarded.
    let strangers: Vec<NodeKey> = (0..40u8)
        .map(|i| NodeKey::from_seed(&[100 + i; 32]))
        .collect();
    let mut publishes = Vec::new();
    for k in &strangers {
        for seq in 0..50 {
            let hb = heartbeat(seq, T0 + seq * u64::from(INTERVAL_MS));
            publishes.push((topics::proofs(&k.id()), Envelope::sign(k, &hb).to_bytes()));
        }
    }
    // The victim's genuine heartbeat in the middle of the flood.
    let genuine = Envelope::sign(&victim, &heartbeat(0, T0)).to_bytes();
    publishes.insert(1_000, (topics::proofs(&victim.id()), genuine.clone()));
    let out = ingest.batch(publishes.clone(), T0 + 10);
    assert_eq!(out.unknown_nodes, 2_000);
    assert_eq!(out.rows.len(), 1, "only the genuine heartbeat is stored");
    assert_eq!(out.rows[0].id, ProofId::of(&genuine));
    let refused = out
        .acks
        .iter()
        .filter(|(_, a)| a.verdict == Verdict::Rejected(Reason::UnknownNode))
        .count();
    assert_eq!(refused, 2_000, "each is told why, once");
    // Sent again, the same answer: nothing was remembered that a flood could grow.
    let again = ingest.batch(publishes, T0 + 20);
    assert_eq!(again.unknown_nodes, 2_000);
    assert_eq!(again.duplicates, 1, "the genuine one is a duplicate");
    assert!(again.rows.is_empty());
}
