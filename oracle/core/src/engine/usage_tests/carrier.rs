//! Carriers' usage reports through the engine: the door (allow-list, signer, kind), every
//! ingest rule and reason code as for receipts, and the close burning the carrier's credits
//! and paying the hotspot from the same pool under the same caps.

use super::*;
use wisp_protocol::msg::CarrierReport;

/// Carrier `i`'s key.
fn car(i: u64) -> NodeKey {
    key(0x44, i)
}

fn account(k: &NodeKey) -> SubscriberId {
    SubscriberId::of(k)
}

/// The allow-list of the carrier tests: carriers 0 and 1, and the keys of subscribers 2 (the
/// owner of `h2`) and 3 (a node of `h0`'s owner) as carriers, for self-dealing.
fn carriers(cfg: &mut RulesConfig) {
    cfg.usage_carriers = [car(0), car(1), sub(2), sub(3)]
        .iter()
        .map(|k| k.id().to_string())
        .collect();
}

fn report_at(
    c: &NodeKey,
    h: u64,
    session: u8,
    epoch: u64,
    seq: u64,
    down: u64,
    at: u64,
) -> Vec<u8> {
    let r = CarrierReport {
        session: ByteArray([session; 16]),
        hotspot: hot(h).id(),
        carrier: c.id(),
        epoch,
        seq,
        bytes_down: down,
        bytes_up: 0,
        signed_ms: at,
        start_ms: None,
    };
    Envelope::sign(c, &r).to_bytes()
}

impl World {
    /// The world of the usage tests with the carriers allow-listed and carrier 0 granted
    /// 1 000 DC (carrier 1 nothing; subscribers 2 and 3 hold their 1 000 DC already).
    fn with_carriers(tweak: fn(&mut RulesConfig)) -> World {
        let mut cfg = RulesConfig::permissionless();
        carriers(&mut cfg);
        tweak(&mut cfg);
        World::with_carriers_in(cfg)
    }

    /// The same world with the rules of `cfg` as they are.
    fn with_carriers_in(cfg: RulesConfig) -> World {
        let mut w = World::new(cfg);
        w.grant_to(&car(0), 1_000, 0xC0);
        w
    }

    fn grant_to(&mut self, k: &NodeKey, amount_dc: u64, id: u8) {
        let g = CreditGrant {
            grant: ByteArray([id; 16]),
            subscriber: account(k),
            amount_dc,
            issued_ms: self.now,
            memo: String::new(),
        };
        let bytes = Envelope::sign(&oracle(), &g).to_bytes();
        assert_eq!(self.submit(bytes), Ok((Verdict::Accepted, true)));
    }

    fn report(&self, c: &NodeKey, h: u64, session: u8, epoch: u64, seq: u64, down: u64) -> Vec<u8> {
        report_at(c, h, session, epoch, seq, down, self.now)
    }

    /// Posts a report: its verdict and whether a row was stored, or why it was refused at
    /// the door.
    fn post(&mut self, bytes: Vec<u8>) -> Result<(Verdict, bool), Reason> {
        let id = ProofId::of(&bytes);
        let stored = self.log.iter().find_map(|s| match s {
            Step::Row(r) if r.id == id => Some(r.verdict),
            _ => None,
        });
        let (v, row, _) = self.engine.submit_carrier(bytes, self.now, stored)?;
        let new = row.is_some();
        if let Some(row) = row {
            self.log.push(Step::Row(row));
        }
        Ok((v, new))
    }

    fn carrier_balance(&self, k: &NodeKey) -> Balance {
        self.engine.balance(&account(k)).unwrap()
    }
}

/// One case: carrier 0's session 0xA at `h0` is at seq 5, 100 bytes down; `tweak` may change
/// the rules; `case` posts something and gives the answer.
fn check(
    name: &str,
    tweak: fn(&mut RulesConfig),
    case: impl FnOnce(&mut World) -> Result<Verdict, Reason>,
    want: Result<Verdict, Reason>,
) {
    let mut w = World::with_carriers(tweak);
    let first = w.report(&car(0), 0, 0xA, 1, 5, 100);
    assert_eq!(
        w.post(first),
        Ok((Verdict::Accepted, true)),
        "{name}: setup"
    );
    assert_eq!(case(&mut w), want, "{name}");
}

fn post(w: &mut World, bytes: Vec<u8>) -> Result<Verdict, Reason> {
    w.post(bytes).map(|(v, _)| v)
}

#[test]
fn carrier_rules_one_case_each() {
    let none: fn(&mut RulesConfig) = |_| {};
    let ok = Ok(Verdict::Accepted);
    let no = |r| Ok(rejected(r));
    let c0 = car(0);
    check(
        "next report",
        none,
        |w| post(w, w.report(&car(0), 0, 0xA, 1, 6, 200)),
        ok,
    );
    check(
        "new session, other hotspot",
        none,
        |w| post(w, w.report(&car(0), 1, 0xB, 1, 1, 10)),
        ok,
    );
    check(
        "same seq again",
        none,
        |w| post(w, w.report(&car(0), 0, 0xA, 1, 5, 200)),
        no(Reason::UsageStaleSeq),
    );
    check(
        "older seq",
        none,
        |w| post(w, w.report(&car(0), 0, 0xA, 1, 4, 50)),
        no(Reason::UsageStaleSeq),
    );
    check(
        "counter went back",
        none,
        |w| post(w, w.report(&car(0), 0, 0xA, 1, 7, 99)),
        no(Reason::UsageCountersDecreased),
    );
    check(
        "session replayed to a second hotspot",
        none,
        |w| post(w, w.report(&car(0), 1, 0xA, 1, 9, 500)),
        no(Reason::UsageSessionConflict),
    );
    check(
        "session reused by another carrier",
        |c| c.usage_carriers.truncate(2),
        |w| {
            w.grant_to(&car(1), 10, 0xC1);
            post(w, w.report(&car(1), 0, 0xA, 1, 9, 500))
        },
        no(Reason::UsageSessionConflict),
    );
    check(
        "a carrier's session reused by a subscriber",
        none,
        |w| {
            let r = w.receipt(0, 0, 0xA, 1, 9, 500);
            Ok(w.send(hot(0).id(), r))
        },
        no(Reason::UsageSessionConflict),
    );
    check(
        "a subscriber's session reused by a carrier",
        none,
        |w| {
            let r = w.receipt(0, 0, 0xB, 1, 1, 10);
            assert_eq!(w.send(hot(0).id(), r), Verdict::Accepted);
            post(w, w.report(&car(0), 0, 0xB, 1, 2, 20))
        },
        no(Reason::UsageSessionConflict),
    );
    check(
        "carrier is the hotspot's owner key",
        none,
        |w| post(w, w.report(&sub(2), 2, 0xC, 1, 1, 10)),
        no(Reason::UsageSelfDealing),
    );
    check(
        "carrier is a node of the hotspot's owner",
        none,
        |w| post(w, w.report(&sub(3), 0, 0xC, 1, 1, 10)),
        no(Reason::UsageSelfDealing),
    );
    check(
        "carrier never granted credits",
        none,
        |w| post(w, w.report(&car(1), 0, 0xC, 1, 1, 10)),
        no(Reason::UsageNoCredit),
    );
    check(
        "a carrier's sessions are capped",
        |c| c.usage_sessions_per_carrier = 1,
        |w| post(w, w.report(&car(0), 0, 0xC, 1, 1, 10)),
        no(Reason::UsageSessionLimit),
    );
    check(
        "the subscribers' cap is not the carriers'",
        |c| c.usage_sessions_per_subscriber = 1,
        |w| post(w, w.report(&car(0), 0, 0xC, 1, 1, 10)),
        ok,
    );
    check(
        "epoch not open",
        none,
        |w| post(w, w.report(&car(0), 0, 0xC, 2, 1, 10)),
        no(Reason::WrongEpoch),
    );
    check(
        "signed before the epoch",
        none,
        |w| post(w, report_at(&car(0), 0, 0xC, 1, 1, 10, START - 60_000)),
        no(Reason::TimestampOutOfWindow),
    );
    check(
        "signed in the oracle's future",
        none,
        |w| post(w, report_at(&car(0), 0, 0xC, 1, 1, 10, w.now + 60_000)),
        no(Reason::TimestampOutOfWindow),
    );
    check(
        "hotspot never onboarded",
        none,
        |w| post(w, w.report(&car(0), 9, 0xC, 1, 1, 10)),
        no(Reason::UnknownNode),
    );
    check(
        "hotspot denied",
        |c| c.deny = vec![hot(9).id()],
        |w| post(w, w.report(&car(0), 9, 0xC, 1, 1, 10)),
        no(Reason::Denied),
    );
    // Refused at the door: nothing stored.
    check(
        "a key off the allow-list",
        none,
        |w| post(w, w.report(&car(7), 0, 0xC, 1, 1, 10)),
        Err(Reason::UsageCarrierUnknown),
    );
    check(
        "a carrier taken off the allow-list",
        |c| drop(c.usage_carriers.remove(1)),
        |w| post(w, w.report(&car(1), 0, 0xC, 1, 1, 10)),
        Err(Reason::UsageCarrierUnknown),
    );
    check(
        "signed by another allow-listed carrier than the one named",
        none,
        |w| {
            let mut r = wisp_protocol::envelope::open::<CarrierReport>(&w.report(
                &car(0),
                0,
                0xC,
                1,
                1,
                10,
            ))
            .unwrap()
            .msg;
            r.seq = 2;
            post(w, Envelope::sign(&car(1), &r).to_bytes())
        },
        Err(Reason::SignerMismatch),
    );
    check(
        "a subscriber's receipt posted as a report",
        none,
        |w| post(w, w.receipt(0, 0, 0xC, 1, 1, 10)),
        Err(Reason::UnexpectedKind),
    );
    check(
        "a report on a proofs topic (MQTT)",
        none,
        |w| Ok(w.send(hot(0).id(), w.report(&c0, 0, 0xC, 1, 1, 10))),
        no(Reason::UnexpectedKind),
    );
}

#[test]
fn a_report_is_judged_once_and_a_late_resend_gets_its_stored_verdict() {
    let mut w = World::with_carriers(|_| {});
    let r = w.report(&car(0), 0, 0xA, 1, 1, MIB);
    assert_eq!(w.post(r.clone()), Ok((Verdict::Accepted, true)));
    // The same bytes again: the verdict, nothing stored.
    assert_eq!(w.post(r.clone()), Ok((Verdict::Accepted, false)));
    let stale = w.report(&car(0), 0, 0xA, 1, 1, 2 * MIB);
    assert_eq!(
        w.post(stale.clone()),
        Ok((rejected(Reason::UsageStaleSeq), true))
    );
    w.open(2);
    w.close(1, 1_000_000);
    // Forgotten by the engine at the close: answered from the store.
    assert_eq!(w.post(r), Ok((Verdict::Accepted, false)));
    assert_eq!(w.post(stale), Ok((rejected(Reason::UsageStaleSeq), false)));
    // New bytes of the closed epoch are late, and stored as such.
    let late = w.report(&car(0), 0, 0xA, 1, 2, 2 * MIB);
    assert_eq!(w.post(late), Ok((rejected(Reason::LateArrival), true)));
}

#[test]
fn a_carrier_pays_like_a_subscriber_and_the_hotspot_is_paid_from_the_usage_pool() {
    let mut w = World::with_carriers(|_| {});
    // Carrier 0 reports 10 MiB on h0 (two reports, the later counted); subscriber 0 uses
    // 6 MiB on h0 too.
    for (seq, down) in [(1, 3 * MIB), (2, 10 * MIB)] {
        let r = w.report(&car(0), 0, 0xA, 1, seq, down);
        assert_eq!(w.post(r), Ok((Verdict::Accepted, true)));
    }
    let r = w.receipt(0, 0, 0xB, 1, 1, 6 * MIB);
    assert_eq!(w.send(hot(0).id(), r), Verdict::Accepted);
    assert_eq!(w.carrier_balance(&car(0)).pending_dc, 10);
    w.open(2);
    let c = w.close(1, 1_000_000);
    assert_eq!(c.outcome.usage.burns[&account(&car(0))], 10);
    assert_eq!(c.outcome.usage.burns[&account(&sub(0))], 6);
    assert_eq!(c.outcome.usage.hotspots[&hot(0).id()].burned_dc, 16);
    // The pool is capped at half the value of the 16 DC burned: 16 × 1 000 × 50 % = 8 000.
    assert_eq!(c.rewards.usage[&hot(0).id()], 8_000);
    assert_eq!(c.rewards.pools.usage, 8_000);
    assert_eq!(
        u128::from(c.rewards.pools.usage),
        payout_cap(&w.rules, 16),
        "the payout cap of the DC burned"
    );
    assert_eq!(
        c.rewards.pools.total() + u128::from(c.rewards.pools.unpaid),
        1_000_000,
        "the pools sum to the emission exactly"
    );
    assert_eq!(
        w.carrier_balance(&car(0)),
        Balance {
            balance_dc: 990,
            burned_dc: 10,
            pending_dc: 0
        }
    );
    // The next epoch pays only what the session added since.
    w.now = seed(2).start_ms + 1_000;
    let r = w.report(&car(0), 0, 0xA, 2, 3, 15 * MIB);
    assert_eq!(w.post(r), Ok((Verdict::Accepted, true)));
    w.open(3);
    let c = w.close(2, 1_000_000);
    assert_eq!(c.outcome.usage.burns[&account(&car(0))], 5);
    let back = w.replayed();
    assert_eq!(back.ledger(), w.engine.ledger());
    assert_eq!(
        back.balance(&account(&car(0))),
        Some(w.carrier_balance(&car(0)))
    );
}

#[test]
fn the_backhaul_cap_and_a_short_balance_hold_for_carriers() {
    // 8 000 bit/s for an hour carries 3 600 000 bytes a direction, shared by the carrier's
    // session and the subscriber's on h0.
    let mut w = World::with_carriers(|c| c.usage_default_backhaul_bps = 8_000);
    let a = w.report(&car(0), 0, 0xA, 1, 1, 6 * MIB);
    assert_eq!(w.post(a), Ok((Verdict::Accepted, true)));
    let b = w.receipt(1, 0, 0xB, 1, 1, 2 * MIB);
    assert_eq!(w.send(hot(0).id(), b), Verdict::Accepted);
    // Carrier 1 holds 1 DC and owes 3 (4 MiB on h1, of which 3 600 000 bytes are paid): it
    // pays 1, never going below zero.
    w.grant_to(&car(1), 1, 0xC1);
    let c1 = w.report(&car(1), 1, 0xC, 1, 1, 4 * MIB);
    assert_eq!(w.post(c1), Ok((Verdict::Accepted, true)));
    w.open(2);
    let c = w.close(1, 1_000_000);
    let h = c.outcome.usage.hotspots[&hot(0).id()];
    assert_eq!(h.bytes, 8 * MIB);
    assert!(h.paid_bytes <= 3_600_000, "{h:?}");
    // 3/4 and 1/4 of 3 600 000 bytes: 2 and 0 DC.
    assert_eq!(h.burned_dc, 2);
    let mut flags: Vec<Reason> = c.outcome.flagged.iter().map(|(_, r)| *r).collect();
    flags.sort_unstable();
    assert_eq!(
        flags,
        [
            Reason::UsageExceedsBackhaul,
            Reason::UsageExceedsBackhaul,
            Reason::UsageExceedsBackhaul,
            Reason::UsageCreditShort
        ]
    );
    assert_eq!(
        w.carrier_balance(&car(1)),
        Balance {
            balance_dc: 0,
            burned_dc: 1,
            pending_dc: 0
        }
    );
    // Spent: its next report is refused until a top-up.
    w.now = seed(2).start_ms + 1_000;
    let r = w.report(&car(1), 1, 0xC, 2, 2, 5 * MIB);
    assert_eq!(w.post(r), Ok((rejected(Reason::UsageNoCredit), true)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Receipts and carrier reports mixed on three hotspots, with a carrier short of credits:
    /// every payer burns at most what it held (never below zero), the hotspots are paid from
    /// the usage pool at most the payout cap of all the DC burned, the pools and what they left unpaid sum to the
    /// emission exactly, and a replay of the rows gives the same ledger.
    #[test]
    fn mixed_receipts_and_reports_keep_the_sums_exact(
        claims in prop::collection::vec((any::<bool>(), 0u64..2, 0u64..3, 0u64..(64 * MIB)), 1..8),
        short_dc in 1u64..50,
        emission in 0u64..u64::from(u32::MAX),
        backhaul_bps in 8_000u64..100_000_000,
    ) {
        let mut cfg = RulesConfig {
            usage_default_backhaul_bps: backhaul_bps,
            ..RulesConfig::permissionless()
        };
        carriers(&mut cfg);
        let mut w = World::with_carriers_in(cfg);
        w.grant_to(&car(1), short_dc, 0xC1);
        let payers: Vec<SubscriberId> = [car(0), car(1), sub(0), sub(1)].iter().map(account).collect();
        let before: Vec<u64> = payers.iter().map(|p| w.engine.balance(p).unwrap().balance_dc).collect();
        for (i, (by_carrier, payer, h, down)) in claims.iter().enumerate() {
            let session = 0x60 + u8::try_from(i).unwrap();
            let verdict = if *by_carrier {
                let r = w.report(&car(*payer), *h, session, 1, 1, *down);
                w.post(r).unwrap().0
            } else {
                let r = w.receipt(*payer, *h, session, 1, 1, *down);
                w.send(hot(*h).id(), r)
            };
            prop_assert_eq!(verdict, Verdict::Accepted);
        }
        w.open(2);
        let c = w.close(1, emission);
        let mut burned_total = 0u128;
        for (p, b0) in payers.iter().zip(&before) {
            let burned = c.outcome.usage.burns.get(p).copied().unwrap_or(0);
            prop_assert!(burned <= *b0, "{:?} burned {} of {}", p, burned, b0);
            prop_assert_eq!(w.engine.balance(p).unwrap().balance_dc, b0 - burned);
            burned_total += u128::from(burned);
        }
        let on_hotspots: u128 = c.outcome.usage.hotspots.values().map(|h| u128::from(h.burned_dc)).sum();
        prop_assert_eq!(on_hotspots, burned_total);
        let paid: u128 = c.rewards.usage.values().map(|a| u128::from(*a)).sum();
        prop_assert!(paid <= payout_cap(&w.rules, burned_total), "{} paid for {} DC", paid, burned_total);
        prop_assert_eq!(
            c.rewards.pools.total() + u128::from(c.rewards.pools.unpaid),
            u128::from(emission)
        );
        let back = w.replayed();
        prop_assert_eq!(back.ledger(), w.engine.ledger());
    }
}

/// The allow-list is consulted when a report arrives, not when its row is replayed: a carrier
/// taken off the list after a restart keeps what it reported, and the replay does not diverge.
#[test]
fn a_replay_without_the_carrier_on_the_list_keeps_its_reports() {
    let mut w = World::with_carriers(|_| {});
    let r = w.report(&car(0), 0, 0xA, 1, 1, 4 * MIB);
    assert_eq!(w.post(r), Ok((Verdict::Accepted, true)));
    let rules = RulesConfig::permissionless().validate().unwrap();
    assert!(!rules.is_carrier(&car(0).id()));
    w.rules = rules;
    let back = w.replayed();
    assert_eq!(back.ledger(), w.engine.ledger());
    assert_eq!(back.balance(&account(&car(0))).unwrap().pending_dc, 4);
    // A new report of the carrier is refused by the engine with those rules.
    let mut back = back;
    let next = w.report(&car(0), 0, 0xA, 1, 2, 5 * MIB);
    assert_eq!(
        back.submit_carrier(next, w.now, None).map(|(v, ..)| v),
        Err(Reason::UsageCarrierUnknown)
    );
}
