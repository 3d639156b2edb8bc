//! Proof of usage through the engine: every ingest rule and reason code, grants, burns at
//! close, replay identity, and the usage pool's bounds.

use proptest::prelude::*;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Band, EpochParams, Onboard};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey, topics};

use wisp_protocol::msg::{CreditGrant, EpochSeed, UsageReceipt};
use wisp_protocol::{NodeId, ProofId, Reason, SubscriberId};

use crate::config::Rules;
use crate::config::RulesConfig;
use crate::engine::{BatchVerifier, Closed, Engine, Incoming, Prechecker, RateLimiter, Row};
use crate::registry::Registry;
use crate::rewards::{self, Pools};
use crate::usage::*;
use wisp_protocol::msg::Verdict;

// Carriers' reports, on this module's world.
mod carrier;

const START: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

fn key(tag: u8, i: u64) -> NodeKey {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    NodeKey::from_seed(&s)
}

fn seed(epoch: u64) -> EpochSeed {
    EpochSeed {
        epoch,
        start_ms: START + (epoch - 1) * HOUR,
        duration_ms: HOUR,
        seed: ByteArray([u8::try_from(epoch).unwrap(); 32]),
        params: EpochParams::default(),
    }
}

/// A step as the store records it, for the replay.
#[derive(Clone, Debug)]
enum Step {
    Row(Row),
    Open(EpochSeed),
    Close(u64, u64, u64),
}

/// Hotspots `h0`–`h2` (owners `owner-0`, `owner-1`, and the PeerId of subscriber 2), a
/// node with subscriber 3's key and owner `owner-0`, subscribers 0–3 granted 1 000 DC each,
/// subscriber 4 granted nothing; epoch 1 open, the clock in its middle.
struct World {
    engine: Engine,
    pre: Prechecker<BatchVerifier>,
    log: Vec<Step>,
    rules: Rules,
    now: u64,
}

fn hot(i: u64) -> NodeKey {
    key(0x11, i)
}

fn sub(i: u64) -> NodeKey {
    key(0x22, i)
}

fn oracle() -> NodeKey {
    key(0x33, 0)
}

fn onboard(owner: String, i: u64) -> Onboard {
    Onboard {
        owner,
        cell: Cell::from_degrees(52.0 + f64::from(u32::try_from(i).unwrap()) * 0.01, 13.0, 12)
            .unwrap(),
        antenna_gain: DeciDb(30),
        antenna_height_dm: 100,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(360),
        }],
        measurer: false,
        issued_ms: START - 86_400_000,
        attestation: None,
    }
}

impl World {
    fn new(cfg: RulesConfig) -> World {
        let rules = cfg.validate().unwrap();
        let mut w = World {
            engine: Engine::new(oracle(), Registry::new(rules.clone())),
            pre: Prechecker::new(
                RateLimiter::new(1_000.0, 1_000.0, 1_000),
                BatchVerifier::new(),
            ),
            log: Vec::new(),
            rules,
            now: START - 86_400_000,
        };
        let owners = [
            "owner-0".to_string(),
            "owner-1".to_string(),
            sub(2).id().to_string(),
        ];
        for (i, owner) in owners.into_iter().enumerate() {
            let k = hot(i as u64);
            let bytes = Envelope::sign(&k, &onboard(owner, i as u64)).to_bytes();
            assert_eq!(w.send(k.id(), bytes), Verdict::Accepted);
        }
        let bytes = Envelope::sign(&sub(3), &onboard("owner-0".into(), 7)).to_bytes();
        assert_eq!(w.send(sub(3).id(), bytes), Verdict::Accepted);
        for s in 0..4 {
            let (v, _) = w.grant(s, 1_000, u8::try_from(s).unwrap()).unwrap();
            assert_eq!(v, Verdict::Accepted);
        }
        w.open(1);
        w.now = START + HOUR / 2;
        w
    }

    fn open(&mut self, epoch: u64) {
        self.engine.open_epoch(seed(epoch));
        self.log.push(Step::Open(seed(epoch)));
    }

    /// Publishes on `topic_node`'s proofs topic; the verdict (acked or refused unverified).
    fn send(&mut self, topic_node: NodeId, bytes: Vec<u8>) -> Verdict {
        let checked = self.pre.check(vec![Incoming {
            topic: topics::proofs(&topic_node),
            payload: bytes,
            at_ms: self.now,
        }]);
        let out = self.engine.ingest(checked, |_| None);
        for row in &out.rows {
            self.log.push(Step::Row(row.clone()));
        }
        if let Some((r, _)) = out.unverified.iter().next() {
            return Verdict::Rejected(*r);
        }
        out.acks[0].1.verdict
    }

    fn grant_bytes(&self, s: u64, amount_dc: u64, id: u8) -> Vec<u8> {
        let g = CreditGrant {
            grant: ByteArray([id; 16]),
            subscriber: SubscriberId::of(&sub(s)),
            amount_dc,
            issued_ms: self.now,
            memo: "test".into(),
        };
        Envelope::sign(&oracle(), &g).to_bytes()
    }

    fn grant(&mut self, s: u64, amount_dc: u64, id: u8) -> Result<(Verdict, bool), Reason> {
        let bytes = self.grant_bytes(s, amount_dc, id);
        self.submit(bytes)
    }

    fn submit(&mut self, bytes: Vec<u8>) -> Result<(Verdict, bool), Reason> {
        let (v, row) = self.engine.submit_grant(bytes, self.now)?;
        let stored = row.is_some();
        if let Some(row) = row {
            self.log.push(Step::Row(row));
        }
        Ok((v, stored))
    }

    /// Subscriber `s`'s receipt for `session` at `h`, co-signed by `h`.
    fn receipt(&self, s: u64, h: u64, session: u8, epoch: u64, seq: u64, down: u64) -> Vec<u8> {
        receipt_at(s, h, session, epoch, seq, down, self.now)
    }

    fn balance(&self, s: u64) -> Balance {
        self.engine.balance(&SubscriberId::of(&sub(s))).unwrap()
    }

    fn close(&mut self, epoch: u64, emission: u64) -> Closed {
        let at = seed(epoch).end_ms() + 600_000;
        let c = self.engine.close(epoch, at, emission).unwrap();
        self.engine.finish_close(epoch, &c.outcome);
        self.log.push(Step::Close(epoch, at, emission));
        c
    }

    /// The engine rebuilt from the log, as a restart or a follower does.
    fn replayed(&self) -> Engine {
        let mut e = Engine::new(oracle(), Registry::new(self.rules.clone()));
        for step in &self.log {
            match step {
                Step::Row(r) => e.replay(r),
                Step::Open(s) => e.open_epoch(s.clone()),
                Step::Close(epoch, at, emission) => {
                    let c = e.close(*epoch, *at, *emission).unwrap();
                    e.finish_close(*epoch, &c.outcome);
                }
            }
        }
        e
    }
}

fn receipt_at(s: u64, h: u64, session: u8, epoch: u64, seq: u64, down: u64, at: u64) -> Vec<u8> {
    let r = UsageReceipt {
        session: ByteArray([session; 16]),
        hotspot: hot(h).id(),
        subscriber: SubscriberId::of(&sub(s)),
        epoch,
        seq,
        bytes_down: down,
        bytes_up: 0,
        signed_ms: at,
        start_ms: None,
    };
    let mut env = Envelope::sign(&sub(s), &r);
    env.cosign(&hot(h));
    env.to_bytes()
}

/// One ingest case: a world where subscriber 0's session 0xA at `h0` is at seq 5, 100 bytes
/// down; `tweak` may change the rules; `case` gives the topic's node and the bytes.
fn check(
    name: &str,
    tweak: fn(&mut RulesConfig),
    case: impl FnOnce(&World) -> (NodeId, Vec<u8>),
    want: Verdict,
) {
    let mut cfg = RulesConfig::permissionless();
    tweak(&mut cfg);
    let mut w = World::new(cfg);
    let first = w.receipt(0, 0, 0xA, 1, 5, 100);
    assert_eq!(
        w.send(hot(0).id(), first),
        Verdict::Accepted,
        "{name}: setup"
    );
    let (topic, bytes) = case(&w);
    assert_eq!(w.send(topic, bytes), want, "{name}");
}

fn rejected(r: Reason) -> Verdict {
    Verdict::Rejected(r)
}

#[test]
fn ingest_rules_one_case_each() {
    let none: fn(&mut RulesConfig) = |_| {};
    let h0 = hot(0).id();
    check(
        "next receipt",
        none,
        |w| (h0, w.receipt(0, 0, 0xA, 1, 6, 200)),
        Verdict::Accepted,
    );
    check(
        "new session, other hotspot",
        none,
        |w| (hot(1).id(), w.receipt(0, 1, 0xB, 1, 1, 10)),
        Verdict::Accepted,
    );
    check(
        "same seq again",
        none,
        |w| (h0, w.receipt(0, 0, 0xA, 1, 5, 200)),
        rejected(Reason::UsageStaleSeq),
    );
    check(
        "older seq",
        none,
        |w| (h0, w.receipt(0, 0, 0xA, 1, 4, 50)),
        rejected(Reason::UsageStaleSeq),
    );
    check(
        "counter went back",
        none,
        |w| (h0, w.receipt(0, 0, 0xA, 1, 7, 99)),
        rejected(Reason::UsageCountersDecreased),
    );
    check(
        "session replayed to a second hotspot",
        none,
        |w| (hot(1).id(), w.receipt(0, 1, 0xA, 1, 9, 500)),
        rejected(Reason::UsageSessionConflict),
    );
    check(
        "session reused by a colluding subscriber",
        none,
        |w| (h0, w.receipt(1, 0, 0xA, 1, 9, 500)),
        rejected(Reason::UsageSessionConflict),
    );
    check(
        "subscriber is the hotspot's owner key",
        none,
        |w| (hot(2).id(), w.receipt(2, 2, 0xC, 1, 1, 10)),
        rejected(Reason::UsageSelfDealing),
    );
    check(
        "subscriber is a node of the hotspot's owner",
        none,
        |w| (h0, w.receipt(3, 0, 0xC, 1, 1, 10)),
        rejected(Reason::UsageSelfDealing),
    );
    check(
        "subscriber never granted credits",
        none,
        |w| (h0, w.receipt(4, 0, 0xC, 1, 1, 10)),
        rejected(Reason::UsageNoCredit),
    );
    check(
        "a subscriber's sessions are capped",
        |c| c.usage_sessions_per_subscriber = 1,
        |w| (h0, w.receipt(0, 0, 0xC, 1, 1, 10)),
        rejected(Reason::UsageSessionLimit),
    );
    check(
        "epoch not open",
        none,
        |w| (h0, w.receipt(0, 0, 0xC, 2, 1, 10)),
        rejected(Reason::WrongEpoch),
    );
    check(
        "signed before the epoch",
        none,
        |_| (h0, receipt_at(0, 0, 0xC, 1, 1, 10, START - 60_000)),
        rejected(Reason::TimestampOutOfWindow),
    );
    check(
        "signed in the oracle's future",
        none,
        |w| (h0, receipt_at(0, 0, 0xC, 1, 1, 10, w.now + 60_000)),
        rejected(Reason::TimestampOutOfWindow),
    );
    check(
        "hotspot never onboarded",
        none,
        |w| (hot(9).id(), w.receipt(0, 9, 0xC, 1, 1, 10)),
        rejected(Reason::UnknownNode),
    );
    check(
        "hotspot denied",
        |c| c.deny = vec![hot(9).id()],
        |w| (hot(9).id(), w.receipt(0, 9, 0xC, 1, 1, 10)),
        rejected(Reason::Denied),
    );
    check(
        "topic of another hotspot",
        none,
        |w| (hot(1).id(), w.receipt(0, 0, 0xC, 1, 1, 10)),
        rejected(Reason::TopicMismatch),
    );
    check(
        "topic of the subscriber (the signer)",
        none,
        |w| (sub(0).id(), w.receipt(0, 0, 0xC, 1, 1, 10)),
        rejected(Reason::TopicMismatch),
    );
    check(
        "a credit grant on a proofs topic",
        none,
        |w| (hot(0).id(), w.grant_bytes(0, 5, 0xEE)),
        rejected(Reason::UnexpectedKind),
    );
}

#[test]
fn a_receipt_after_the_settle_window_is_late_and_never_counted() {
    let mut w = World::new(RulesConfig::permissionless());
    w.now = seed(1).end_ms() + 600_001;
    let r = w.receipt_with_time(0, 0xA, 1, 1_048_576, START + 1_000);
    assert_eq!(w.send(hot(0).id(), r), rejected(Reason::LateArrival));
    assert!(w.engine.ledger().session(&[0xA; 16]).is_none());
}

impl World {
    fn receipt_with_time(&self, s: u64, session: u8, seq: u64, down: u64, at: u64) -> Vec<u8> {
        receipt_at(s, 0, session, 1, seq, down, at)
    }
}

#[test]
fn a_grant_credits_once_and_only_from_the_oracle() {
    let mut w = World::new(RulesConfig::permissionless());
    assert_eq!(w.grant(4, 50, 0x40), Ok((Verdict::Accepted, true)));
    // The same envelope again: its verdict, nothing to store.
    let again = w.grant_bytes(4, 50, 0x40);
    assert_eq!(w.submit(again), Ok((Verdict::Accepted, false)));
    // Another envelope with the same grant id: stored as refused, not credited.
    assert_eq!(
        w.grant(4, 60, 0x40),
        Ok((rejected(Reason::UsageGrantReused), true))
    );
    assert_eq!(w.balance(4).balance_dc, 50);
    // Signed by another key: refused, nothing stored.
    let g = CreditGrant {
        grant: ByteArray([0x41; 16]),
        subscriber: SubscriberId::of(&sub(4)),
        amount_dc: 10,
        issued_ms: w.now,
        memo: String::new(),
    };
    let forged = Envelope::sign(&hot(0), &g).to_bytes();
    assert_eq!(w.submit(forged), Err(Reason::SignerMismatch));
    assert_eq!(w.balance(4).balance_dc, 50);
    assert!(w.engine.balance(&SubscriberId::of(&sub(9))).is_none());
    assert_eq!(
        w.replayed().balance(&SubscriberId::of(&sub(4))),
        Some(w.balance(4))
    );
}

#[test]
fn usage_burns_at_close_across_epochs_and_pays_the_hotspot() {
    let mut w = World::new(RulesConfig::permissionless());
    let mib = MIB;
    for (seq, down) in [(1, 3 * mib), (2, 10 * mib)] {
        let r = w.receipt(0, 0, 0xA, 1, seq, down);
        assert_eq!(w.send(hot(0).id(), r), Verdict::Accepted);
    }
    assert_eq!(
        w.balance(0),
        Balance {
            balance_dc: 1_000,
            burned_dc: 0,
            pending_dc: 10
        }
    );
    w.open(2);
    let c = w.close(1, 1_000_000);
    assert_eq!(c.outcome.usage.burns[&SubscriberId::of(&sub(0))], 10);
    assert_eq!(c.outcome.usage.hotspots[&hot(0).id()].burned_dc, 10);
    // Pool: min(100 000, 10 DC × 1 000 × 50 %) = 5 000; nobody else earned, so the rest is
    // unpaid.
    assert_eq!(c.rewards.usage[&hot(0).id()], 5_000);
    assert_eq!(c.rewards.pools.usage, 5_000);
    assert_eq!(c.rewards.pools.unpaid, 995_000);
    let e = c.rewards.entry(&hot(0).id()).unwrap();
    // Usage pay has its own column; the backhaul column holds the backhaul pool's alone.
    assert_eq!((e.amount, e.usage, e.backhaul), (5_000, 5_000, 0));
    // The manifest signs what was paid, so its entries still sum to its emission.
    assert_eq!(c.rewards.emission, 5_000);
    assert_eq!(
        c.rewards.entries.iter().map(|e| e.amount).sum::<u64>(),
        5_000
    );
    assert_eq!(
        w.balance(0),
        Balance {
            balance_dc: 990,
            burned_dc: 10,
            pending_dc: 0
        }
    );
    // Epoch 2 pays only what the session added since.
    w.now = seed(2).start_ms + 1_000;
    let r = w.receipt(0, 0, 0xA, 2, 3, 15 * mib);
    assert_eq!(w.send(hot(0).id(), r), Verdict::Accepted);
    w.open(3);
    let c = w.close(2, 1_000_000);
    assert_eq!(c.outcome.usage.burns[&SubscriberId::of(&sub(0))], 5);
    assert_eq!(w.balance(0).balance_dc, 985);
    assert_eq!(w.replayed().ledger(), w.engine.ledger());
}

#[test]
fn bytes_beyond_the_backhaul_are_not_paid() {
    // 8 000 bit/s for an hour carries 3 600 000 bytes a direction.
    let mut w = World::new(RulesConfig {
        usage_default_backhaul_bps: 8_000,
        ..RulesConfig::permissionless()
    });
    let a = w.receipt(0, 0, 0xA, 1, 1, 6 * MIB);
    let b = w.receipt(1, 0, 0xB, 1, 1, 2 * MIB);
    assert_eq!(w.send(hot(0).id(), a), Verdict::Accepted);
    assert_eq!(w.send(hot(0).id(), b), Verdict::Accepted);
    w.open(2);
    let c = w.close(1, 1_000_000);
    let h = c.outcome.usage.hotspots[&hot(0).id()];
    assert_eq!(h.bytes, 8 * MIB);
    assert!(h.paid_bytes <= 3_600_000, "{h:?}");
    // 3/4 and 1/4 of 3 600 000 bytes: 2 and 0 DC.
    assert_eq!(h.burned_dc, 2);
    let flags: Vec<Reason> = c.outcome.flagged.iter().map(|(_, r)| *r).collect();
    assert_eq!(flags, [Reason::UsageExceedsBackhaul; 2]);
}

#[test]
fn a_short_balance_pays_pro_rata_and_never_goes_below_zero() {
    let mut w = World::new(RulesConfig::permissionless());
    assert_eq!(w.grant(4, 5, 0x50), Ok((Verdict::Accepted, true)));
    let a = w.receipt(4, 0, 0xA, 1, 1, 6 * MIB);
    let b = w.receipt(4, 1, 0xB, 1, 1, 4 * MIB);
    assert_eq!(w.send(hot(0).id(), a), Verdict::Accepted);
    assert_eq!(w.send(hot(1).id(), b), Verdict::Accepted);
    assert_eq!(w.balance(4).pending_dc, 5);
    w.open(2);
    let c = w.close(1, 1_000_000);
    // 10 DC due, 5 held: 3 and 2.
    assert_eq!(c.outcome.usage.hotspots[&hot(0).id()].burned_dc, 3);
    assert_eq!(c.outcome.usage.hotspots[&hot(1).id()].burned_dc, 2);
    let flags: Vec<Reason> = c.outcome.flagged.iter().map(|(_, r)| *r).collect();
    assert_eq!(flags, [Reason::UsageCreditShort; 2]);
    assert_eq!(
        w.balance(4),
        Balance {
            balance_dc: 0,
            burned_dc: 5,
            pending_dc: 0
        }
    );
    // Spent: further receipts are refused until a top-up.
    w.now = seed(2).start_ms + 1_000;
    let r = w.receipt(4, 0, 0xA, 2, 2, 7 * MIB);
    assert_eq!(w.send(hot(0).id(), r), rejected(Reason::UsageNoCredit));
}

#[test]
fn a_hotspot_that_earns_nothing_burns_nothing() {
    let rules = Rules::permissionless();
    let mut ledger = Ledger::new();
    let g = CreditGrant {
        grant: ByteArray([1; 16]),
        subscriber: SubscriberId::of(&sub(0)),
        amount_dc: 100,
        issued_ms: START,
        memo: String::new(),
    };
    let bytes = Envelope::sign(&oracle(), &g).to_bytes();
    let opened = wisp_protocol::envelope::open::<CreditGrant>(&bytes).unwrap();
    ledger.apply_grant(&opened, &oracle().id()).unwrap();
    let fact = |h: u64, session: u8| UsageFact {
        id: ProofId::of(&[session]),
        session: [session; 16],
        subscriber: SubscriberId::of(&sub(0)),
        hotspot: hot(h).id(),
        epoch: 1,
        seq: 1,
        bytes_down: 10 * MIB,
        bytes_up: 0,
    };
    let counted = [fact(0, 1), fact(1, 2)];
    let penalized = hot(0).id();
    let earns = |h: &NodeId| {
        if *h == penalized {
            Err(Reason::Penalized)
        } else {
            Ok(())
        }
    };
    let (out, flags) = settle(&counted, &ledger, |_| (None, None), earns, &rules, HOUR);
    assert_eq!(out.burns[&SubscriberId::of(&sub(0))], 10);
    assert!(!out.hotspots.contains_key(&penalized));
    assert_eq!(out.hotspots[&hot(1).id()].burned_dc, 10);
    assert_eq!(flags, vec![(counted[0].id, Reason::Penalized)]);
    // Both sessions' totals are counted, paid or not.
    assert_eq!(out.counted.len(), 2);
}

#[test]
fn replay_from_the_rows_rebuilds_the_ledger() {
    let mut w = World::new(RulesConfig::permissionless());
    let mut expected_refusals = 0;
    for i in 0..12u64 {
        let s = i % 3;
        let h = [0, 1, 0][usize::try_from(i % 3).unwrap()];
        let session = 0x80 + u8::try_from(s).unwrap();
        let r = w.receipt(s, h, session, 1, i + 1, (i + 1) * MIB);
        if w.send(hot(h).id(), r) != Verdict::Accepted {
            expected_refusals += 1;
        }
    }
    // A replayed receipt refused as stale is stored too, and replays the same.
    let stale = w.receipt(0, 0, 0x80, 1, 2, MIB + 1);
    assert_eq!(w.send(hot(0).id(), stale), rejected(Reason::UsageStaleSeq));
    assert_eq!(expected_refusals, 0);
    w.grant(2, 7, 0x77).unwrap();
    w.open(2);
    w.close(1, 1_000_000);
    let back = w.replayed();
    assert_eq!(back.ledger(), w.engine.ledger());
    for s in 0..5 {
        let id = SubscriberId::of(&sub(s));
        assert_eq!(back.balance(&id), w.engine.balance(&id), "subscriber {s}");
    }
}

proptest! {
    /// Usage rewards never reach the value of the credits burned for them, and all pools,
    /// with what the cap left unpaid, sum to the emission exactly.
    #[test]
    fn self_dealing_never_pays_and_pools_sum_exactly(
        emission in any::<u64>(),
        shares in (0u16..=10_000, 0u16..=10_000, 0u16..=10_000),
        per_dc in 0u64..1_000_000_000,
        cap in 0u16..10_000,
        burned in prop::collection::vec(0u64..u64::from(u32::MAX), 0..8),
        mask in 0u8..16,
    ) {
        let mut s = [shares.0, shares.1, shares.2];
        s.sort_unstable();
        let rules = RulesConfig {
            coverage_share_bps: s[0],
            backhaul_share_bps: s[1] - s[0],
            uptime_share_bps: s[2] - s[1],
            usage_share_bps: 10_000 - s[2],
            usage_reward_per_dc: per_dc,
            usage_payout_cap_bps: cap,
            ..RulesConfig::permissionless()
        }
        .validate()
        .unwrap();
        let burned: Vec<(NodeId, u64)> = burned
            .iter()
            .enumerate()
            .map(|(i, b)| (NodeId([u8::try_from(i).unwrap(); 32]), *b))
            .filter(|(_, b)| *b > 0)
            .collect();
        let earners = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0];
        let all = rewards::split_all_pools(
            &rules,
            emission,
            [earners[0], earners[1], earners[2], !burned.is_empty()],
        );
        let (pools, paid): (Pools, Vec<u64>) = rewards::pay_usage(&rules, all, &burned, earners);
        let pools = rewards::split_coverage(&rules, pools, earners[0], false, [earners[1], earners[2]]);
        prop_assert_eq!(pools.total() + u128::from(pools.unpaid), u128::from(emission));
        if earners.iter().any(|e| *e) {
            prop_assert_eq!(pools.unpaid, 0);
        }
        if !burned.is_empty() {
            // With nobody earning at all, the pools are the plain split and nothing is paid.
            prop_assert_eq!(paid.iter().map(|a| u128::from(*a)).sum::<u128>(), u128::from(pools.usage));
        }
        for ((_, b), a) in burned.iter().zip(&paid) {
            let value = u128::from(*b) * u128::from(per_dc);
            prop_assert!(u128::from(*a) * 10_000 <= value * u128::from(cap));
            prop_assert!(value == 0 || u128::from(*a) < value);
        }
    }
}

#[test]
fn receipts_spend_the_hotspots_allowance_not_the_subscribers() {
    let mut w = World::new(RulesConfig::permissionless());
    // An allowance of one proof: the hotspot's second receipt waits, whoever signed it.
    w.pre = Prechecker::new(RateLimiter::new(0.001, 1.0, 16), BatchVerifier::new());
    let a = w.receipt(0, 0, 0xA, 1, 1, 10);
    let b = w.receipt(1, 0, 0xB, 1, 1, 10);
    let c = w.receipt(1, 1, 0xC, 1, 1, 10);
    assert_eq!(w.send(hot(0).id(), a), Verdict::Accepted);
    assert_eq!(w.send(hot(0).id(), b), rejected(Reason::RateLimited));
    // Subscriber 1 signed both; hotspot 1 has its own allowance.
    assert_eq!(w.send(hot(1).id(), c), Verdict::Accepted);
}
