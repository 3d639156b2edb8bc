//! Proof of usage, the hotspot's side: agreement and its tolerance, disputes, refusals with
//! their reason codes, one co-signed receipt per session per epoch, the bound on sessions, and
//! the decisions to block and serve. Time is explicit; nothing sleeps.
#![allow(clippy::unwrap_used)]

use wisp_agent_core::usage::{BlockWhy, ClientRef, Decision, Usage, UsageConfig};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{Heartbeat, UsageAnswer, UsageReceipt, Versions};
use wisp_protocol::{Kind, NodeId, NodeKey, Reason, SubscriberId};

const EPOCH: u64 = 7;
const T0: u64 = 1_795_000_000_000;

fn key(n: u8) -> NodeKey {
    NodeKey::from_seed(&[n; 32])
}

/// The hotspot under test.
fn hot() -> NodeKey {
    key(1)
}

/// A subscriber (its client's key).
fn sub(n: u8) -> NodeKey {
    key(10 + n)
}

fn client(n: u8) -> ClientRef {
    SubscriberId::of(&sub(n))
}

/// 1 % and 1000 bytes of tolerance, 100 kB or 10 s of grace, three sessions.
fn cfg() -> UsageConfig {
    UsageConfig {
        tolerance_bps: 100,
        slack_bytes: 1_000,
        grace_bytes: 100_000,
        grace_ms: 10_000,
        max_sessions: 3,
    }
}

fn usage() -> Usage {
    let mut u = Usage::new(hot(), cfg());
    u.handle_epoch(EPOCH, T0);
    u
}

/// A receipt of subscriber `n`'s session `session`, as its client signs it.
struct R {
    signer: NodeKey,
    msg: UsageReceipt,
}

fn receipt(n: u8, session: u8, seq: u64, down: u64, up: u64) -> R {
    R {
        signer: sub(n),
        msg: UsageReceipt {
            session: ByteArray([session; 16]),
            hotspot: hot().id(),
            subscriber: client(n),
            epoch: EPOCH,
            seq,
            bytes_down: down,
            bytes_up: up,
            signed_ms: T0,
            start_ms: Some(T0 - 60_000),
        },
    }
}

impl R {
    fn bytes(&self) -> Vec<u8> {
        Envelope::sign(&self.signer, &self.msg).to_bytes()
    }
}

fn send(u: &mut Usage, n: u8, r: &R, now_ms: u64) -> UsageAnswer {
    u.handle_receipt(&r.bytes(), client(n), now_ms, EPOCH)
}

fn proofs(u: &mut Usage) -> Vec<UsageReceipt> {
    std::iter::from_fn(|| u.poll_proof())
        .map(|p| {
            assert_eq!(p.kind, Kind::UsageReceipt);
            assert!(p.bytes.len() <= Kind::UsageReceipt.max_envelope_len());
            let opened = envelope::open::<UsageReceipt>(&p.bytes).unwrap();
            assert_eq!(opened.id, p.id);
            assert_eq!(opened.cosigners, vec![hot().id()]);
            opened.msg
        })
        .collect()
}

fn decisions(u: &mut Usage) -> Vec<Decision> {
    std::iter::from_fn(|| u.poll_decision()).collect()
}

#[test]
fn an_agreed_receipt_is_cosigned_and_opens_with_both_signatures() {
    let mut u = usage();
    u.handle_counters(client(1), 1_000_000, 200_000, T0);
    let r = receipt(1, 1, 1, 1_009_000, 199_500);
    assert_eq!(send(&mut u, 1, &r, T0 + 1), UsageAnswer::Agreed { seq: 1 });
    assert_eq!(
        proofs(&mut u),
        vec![],
        "nothing goes out before the epoch ends"
    );
    u.handle_epoch(EPOCH + 1, T0 + 2);
    let p = u.poll_proof().unwrap();
    let opened = envelope::open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(opened.signer, *client(1).key());
    assert_eq!(opened.cosigners, vec![hot().id()]);
    assert_eq!(opened.msg, r.msg);
    assert_eq!(p.created_ms, T0 + 1);
    assert!(u.poll_proof().is_none());
    assert_eq!(decisions(&mut u), vec![]);
    assert_eq!(u.stats().agreed, 1);
}

/// The hotspot counted `own` (down, up); the client claims `claim`.
fn check(name: &str, own: (u64, u64), claim: (u64, u64), agreed: bool) {
    let mut u = usage();
    u.handle_counters(client(1), own.0, own.1, T0);
    let got = send(&mut u, 1, &receipt(1, 1, 1, claim.0, claim.1), T0);
    let want = if agreed {
        UsageAnswer::Agreed { seq: 1 }
    } else {
        UsageAnswer::Disputed {
            seq: 1,
            bytes_down: own.0,
            bytes_up: own.1,
        }
    };
    assert_eq!(got, want, "{name}");
    u.handle_epoch(EPOCH + 1, T0 + 1);
    assert_eq!(
        proofs(&mut u).len(),
        usize::from(agreed),
        "{name}: co-signed"
    );
}

#[test]
fn claims_within_the_tolerance_are_agreed_and_others_disputed() {
    // Tolerance: 1 % of the hotspot's own count plus 1000 bytes, per direction.
    let own = (1_000_000, 100_000);
    for (name, claim, agreed) in [
        ("exact", own, true),
        ("over by the tolerance", (1_011_000, 102_000), true),
        ("under by the tolerance", (989_000, 98_000), true),
        ("over by one byte more", (1_011_001, 100_000), false),
        ("under by one byte more", (988_999, 100_000), false),
        ("up over", (1_000_000, 102_001), false),
        ("up under", (1_000_000, 97_999), false),
        ("far over", (5_000_000, 100_000), false),
        ("nothing", (0, 0), false),
    ] {
        check(name, own, claim, agreed);
    }
    // Little traffic: the absolute slack decides.
    check("none counted, within slack", (0, 0), (1_000, 1_000), true);
    check("none counted, beyond slack", (0, 0), (1_001, 0), false);
}

#[test]
fn a_receipt_from_a_peer_without_counters_is_disputed_with_zeros_and_changes_nothing() {
    let mut u = usage();
    let answer = send(&mut u, 1, &receipt(1, 1, 1, 500, 0), T0);
    assert_eq!(
        answer,
        UsageAnswer::Disputed {
            seq: 1,
            bytes_down: 0,
            bytes_up: 0
        }
    );
    assert_eq!(u.sessions(), 0);
    assert_eq!(decisions(&mut u), vec![]);
}

/// What a refusal looks like: the reason's code, the client blocked, nothing co-signed.
fn check_refused(name: &str, bytes: &[u8], from: u8, reason: Reason) {
    let mut u = usage();
    u.handle_counters(client(from), 10_000, 1_000, T0);
    let got = u.handle_receipt(bytes, client(from), T0 + 1, EPOCH);
    assert_eq!(
        got,
        UsageAnswer::Refused {
            reason: reason.code()
        },
        "{name}"
    );
    assert_eq!(
        decisions(&mut u),
        vec![Decision::Block(client(from), BlockWhy::Refused(reason))],
        "{name}"
    );
    u.handle_epoch(EPOCH + 1, T0 + 2);
    assert_eq!(proofs(&mut u), vec![], "{name}");
}

#[test]
fn unacceptable_receipts_are_refused_with_their_reason() {
    let ok = receipt(1, 1, 1, 10_000, 1_000);
    let mut other_hotspot = receipt(1, 1, 1, 10_000, 1_000);
    other_hotspot.msg.hotspot = key(2).id();
    // The hotspot's key signs as if it were the subscriber.
    let swapped = R {
        signer: hot(),
        msg: ok.msg.clone(),
    };
    // One key in both roles.
    let mut itself = receipt(1, 1, 1, 10_000, 1_000);
    itself.msg.subscriber = SubscriberId(hot().id());
    itself.signer = hot();
    let mut cosigned = Envelope::sign(&sub(1), &ok.msg);
    cosigned.cosign(&hot());
    let mut tampered = ok.bytes();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    let mut stale = receipt(1, 1, 1, 10_000, 1_000);
    stale.msg.epoch = EPOCH - 2;
    let heartbeat = Envelope::sign(
        &sub(1),
        &Heartbeat {
            epoch: EPOCH,
            seq: 1,
            uptime_s: 1,
            sent_ms: T0,
            fix: None,
            cell: None,
            versions: Versions::new("0.1.0", "sim"),
            peers: 0,
        },
    );
    let cases: [(&str, Vec<u8>, u8, Reason); 9] = [
        (
            "another hotspot",
            other_hotspot.bytes(),
            1,
            Reason::UsageRoleMismatch,
        ),
        (
            "sent by another peer",
            ok.bytes(),
            2,
            Reason::UsageRoleMismatch,
        ),
        (
            "roles swapped",
            swapped.bytes(),
            1,
            Reason::UsageRoleMismatch,
        ),
        (
            "hotspot as subscriber",
            itself.bytes(),
            1,
            Reason::UsageRoleMismatch,
        ),
        (
            "already co-signed",
            cosigned.to_bytes(),
            1,
            Reason::Malformed,
        ),
        ("bad signature", tampered, 1, Reason::BadSignature),
        ("two epochs old", stale.bytes(), 1, Reason::WrongEpoch),
        (
            "not a receipt",
            heartbeat.to_bytes(),
            1,
            Reason::UnexpectedKind,
        ),
        ("oversize", vec![1; 513], 1, Reason::Oversize),
    ];
    for (name, bytes, from, reason) in cases {
        check_refused(name, &bytes, from, reason);
    }
}

#[test]
fn a_sequence_that_does_not_rise_or_totals_that_fall_are_refused() {
    for (name, second, reason) in [
        (
            "seq back",
            receipt(1, 1, 4, 20_000, 2_000),
            Reason::UsageStaleSeq,
        ),
        (
            "seq again",
            receipt(1, 1, 5, 20_000, 2_000),
            Reason::UsageStaleSeq,
        ),
        (
            "down falls",
            receipt(1, 1, 6, 9_000, 1_000),
            Reason::UsageCountersDecreased,
        ),
        (
            "up falls",
            receipt(1, 1, 6, 10_000, 900),
            Reason::UsageCountersDecreased,
        ),
    ] {
        let mut u = usage();
        u.handle_counters(client(1), 10_000, 1_000, T0);
        let first = receipt(1, 1, 5, 10_000, 1_000);
        assert_eq!(send(&mut u, 1, &first, T0), UsageAnswer::Agreed { seq: 5 });
        u.handle_counters(client(1), 20_000, 2_000, T0 + 1);
        assert_eq!(
            send(&mut u, 1, &second, T0 + 2),
            UsageAnswer::Refused {
                reason: reason.code()
            },
            "{name}"
        );
        // The session ends: its last agreed receipt goes out now, and it is served no more.
        assert_eq!(proofs(&mut u), vec![first.msg.clone()], "{name}");
        assert_eq!(
            decisions(&mut u),
            vec![Decision::Block(client(1), BlockWhy::Refused(reason))],
            "{name}"
        );
        let again = receipt(1, 1, 9, 20_000, 2_000);
        assert_eq!(
            send(&mut u, 1, &again, T0 + 3),
            UsageAnswer::Refused {
                reason: Reason::Denied.code()
            },
            "{name}: an ended session stays ended"
        );
    }
}

#[test]
fn a_refused_client_is_served_again_once_a_new_session_covers_its_usage() {
    let mut u = usage();
    u.handle_counters(client(1), 10_000, 1_000, T0);
    let mut wrong = receipt(1, 1, 1, 10_000, 1_000);
    wrong.msg.hotspot = key(2).id();
    send(&mut u, 1, &wrong, T0);
    assert!(u.is_blocked(&client(1)));
    // A new session that covers the usage so far.
    assert_eq!(
        send(&mut u, 1, &receipt(1, 2, 1, 10_000, 1_000), T0 + 1),
        UsageAnswer::Agreed { seq: 1 }
    );
    assert!(!u.is_blocked(&client(1)));
    // Blocked and served again before the driver looked: nothing changed for the router.
    assert_eq!(decisions(&mut u), vec![]);
}

#[test]
fn an_under_claim_is_disputed_and_blocks_after_the_grace() {
    let mut u = usage();
    u.handle_counters(client(1), 50_000, 0, T0);
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 1, 10_000, 0), T0),
        UsageAnswer::Disputed {
            seq: 1,
            bytes_down: 50_000,
            bytes_up: 0
        }
    );
    assert_eq!(decisions(&mut u), vec![]);
    // 50 kB uncovered since T0, below the byte grace: the time grace runs out at T0 + 10 s.
    assert_eq!(u.poll_timeout(), Some(T0 + 10_000));
    u.handle_timeout(T0 + 9_999);
    assert_eq!(decisions(&mut u), vec![]);
    u.handle_timeout(T0 + 10_000);
    assert_eq!(
        decisions(&mut u),
        vec![Decision::Block(
            client(1),
            BlockWhy::Unsigned {
                bytes: 50_000,
                since_ms: T0
            }
        )]
    );
    assert_eq!(u.poll_timeout(), None, "a blocked client has no deadline");
    // A receipt that covers the usage serves it again.
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 2, 50_000, 0), T0 + 11_000),
        UsageAnswer::Agreed { seq: 2 }
    );
    assert_eq!(decisions(&mut u), vec![Decision::Serve(client(1))]);
    assert_eq!(u.stats().blocks, 1);
}

#[test]
fn usage_beyond_the_byte_grace_blocks_at_once() {
    let mut u = usage();
    u.handle_counters(client(1), 0, 0, T0);
    u.handle_counters(client(1), 100_000, 1, T0 + 1);
    assert_eq!(
        decisions(&mut u),
        vec![Decision::Block(
            client(1),
            BlockWhy::Uncovered { bytes: 100_001 }
        )]
    );
}

#[test]
fn a_subscriber_that_stops_signing_is_blocked_after_grace_ms() {
    let mut u = usage();
    let mut down = 0;
    let mut seq = 0;
    // Signing every second, as the traffic grows: served.
    for s in 0..5 {
        let now = T0 + s * 1_000;
        down += 10_000;
        seq += 1;
        u.handle_counters(client(1), down, 0, now);
        assert_eq!(
            send(&mut u, 1, &receipt(1, 1, seq, down, 0), now),
            UsageAnswer::Agreed { seq }
        );
    }
    let last_signed = T0 + 4_000;
    assert_eq!(u.poll_timeout(), None);
    // Traffic goes on, receipts stop.
    for s in 5..20 {
        down += 5_000;
        u.handle_counters(client(1), down, 0, T0 + s * 1_000);
        if let Some(at) = u.poll_timeout() {
            assert_eq!(at, last_signed + 10_000, "covered when it last signed");
        }
    }
    let ds = decisions(&mut u);
    assert_eq!(ds.len(), 1);
    assert!(
        matches!(ds[0], Decision::Block(c, BlockWhy::Unsigned { since_ms, .. }) if c == client(1) && since_ms == last_signed),
        "{ds:?}"
    );
    // Its last agreed receipt still goes to the oracle at the epoch's end.
    u.handle_epoch(EPOCH + 1, T0 + 30_000);
    assert_eq!(proofs(&mut u)[0].seq, 5);
}

#[test]
fn each_session_sends_its_latest_receipt_once_per_epoch_and_nothing_when_nothing_is_new() {
    let mut u = usage();
    for n in 1..=2 {
        u.handle_counters(client(n), 10_000, 1_000, T0);
        for seq in 1..=3 {
            let r = receipt(n, n, seq, 10_000, 1_000);
            assert_eq!(send(&mut u, n, &r, T0 + seq), UsageAnswer::Agreed { seq });
        }
    }
    u.handle_epoch(EPOCH + 1, T0 + 10);
    let sent = proofs(&mut u);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.seq == 3));
    u.handle_epoch(EPOCH + 1, T0 + 11);
    u.handle_epoch(EPOCH, T0 + 11);
    assert_eq!(
        proofs(&mut u),
        vec![],
        "the same epoch again, or an older one"
    );
    u.handle_epoch(EPOCH + 2, T0 + 12);
    assert_eq!(proofs(&mut u), vec![], "nothing new since");
    // Only client 1 signs again.
    u.handle_counters(client(1), 20_000, 2_000, T0 + 13);
    let mut r = receipt(1, 1, 4, 20_000, 2_000);
    r.msg.epoch = EPOCH + 2;
    assert_eq!(
        u.handle_receipt(&r.bytes(), client(1), T0 + 14, EPOCH + 2),
        UsageAnswer::Agreed { seq: 4 }
    );
    // A receipt in a newer epoch moves the epoch on first: the old epoch's state is flushed.
    let mut r5 = receipt(1, 1, 5, 20_000, 2_000);
    r5.msg.epoch = EPOCH + 3;
    assert_eq!(
        u.handle_receipt(&r5.bytes(), client(1), T0 + 15, EPOCH + 3),
        UsageAnswer::Agreed { seq: 5 }
    );
    let sent = proofs(&mut u);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].subscriber, sent[0].seq), (client(1), 4));
    u.handle_epoch(EPOCH + 4, T0 + 16);
    assert_eq!(
        proofs(&mut u).iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(u.stats().receipts_sent, 4);
}

#[test]
fn a_new_session_ends_the_old_one_and_inherits_its_uncovered_usage() {
    let mut u = usage();
    u.handle_counters(client(1), 10_000, 0, T0);
    let a = receipt(1, 1, 1, 10_000, 0);
    assert_eq!(send(&mut u, 1, &a, T0), UsageAnswer::Agreed { seq: 1 });
    // Later than the lag a receipt may have.
    let t = T0 + 5_000;
    u.handle_counters(client(1), 50_000, 0, t);
    // Session 2 starts where session 1's agreed totals end: 40 kB are its to sign.
    assert_eq!(
        send(&mut u, 1, &receipt(1, 2, 1, 5_000, 0), t),
        UsageAnswer::Disputed {
            seq: 1,
            bytes_down: 40_000,
            bytes_up: 0
        }
    );
    // Session 1 ended with the first receipt of session 2: its receipt went out then.
    assert_eq!(proofs(&mut u), vec![a.msg]);
    assert_eq!(
        send(&mut u, 1, &receipt(1, 2, 2, 40_000, 0), t + 1),
        UsageAnswer::Agreed { seq: 2 }
    );
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 2, 50_000, 0), t + 2),
        UsageAnswer::Refused {
            reason: Reason::Denied.code()
        },
        "session 1 is over"
    );
}

#[test]
fn counters_that_start_afresh_carry_over() {
    let mut u = usage();
    u.handle_counters(client(1), 30_000, 3_000, T0);
    // The router restarted its counters.
    u.handle_counters(client(1), 10_000, 1_000, T0 + 1);
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 1, 40_000, 4_000), T0 + 2),
        UsageAnswer::Agreed { seq: 1 }
    );
}

#[test]
fn sessions_are_bounded_and_the_one_idle_longest_is_evicted() {
    let mut u = usage();
    // Client 1 is blocked and has an agreed receipt not sent yet.
    u.handle_counters(client(1), 10_000, 0, T0);
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 1, 10_000, 0), T0),
        UsageAnswer::Agreed { seq: 1 }
    );
    u.handle_counters(client(1), 200_000, 0, T0 + 1);
    assert!(u.is_blocked(&client(1)));
    assert_eq!(decisions(&mut u).len(), 1);
    u.handle_counters(client(2), 1, 0, T0 + 2);
    u.handle_counters(client(3), 1, 0, T0 + 3);
    // Client 2 is active again; client 1 has been idle longest.
    u.handle_counters(client(2), 2, 0, T0 + 4);
    u.handle_counters(client(4), 1, 0, T0 + 5);
    assert_eq!(u.sessions(), 3);
    assert_eq!(u.own_counts(&client(1)), None);
    assert!(u.own_counts(&client(2)).is_some());
    assert_eq!(u.stats().evicted, 1);
    // Its session ended: the receipt goes out; the router is told to drop its block.
    assert_eq!(proofs(&mut u).len(), 1);
    assert_eq!(decisions(&mut u), vec![Decision::Serve(client(1))]);
}

#[test]
fn a_client_that_leaves_sends_its_receipt_and_is_released() {
    let mut u = usage();
    u.handle_counters(client(1), 10_000, 0, T0);
    send(&mut u, 1, &receipt(1, 1, 1, 10_000, 0), T0);
    u.handle_client_gone(&client(1), T0 + 1);
    assert_eq!(proofs(&mut u).len(), 1);
    assert_eq!(decisions(&mut u), vec![], "it was served: nothing to undo");
    assert_eq!(u.sessions(), 0);
}

/// A client that leaves with unsigned usage above the slack and comes back keeps its grace:
/// blocked `grace_ms` after it was last covered, not `grace_ms` after it came back. Without
/// the carried time it would be served again each time it reconnected.
#[test]
fn a_client_that_comes_back_keeps_the_grace_it_had_used() {
    let mut u = usage();
    u.handle_counters(client(1), 10_000, 0, T0);
    assert_eq!(
        send(&mut u, 1, &receipt(1, 1, 1, 10_000, 0), T0),
        UsageAnswer::Agreed { seq: 1 }
    );
    // 5 kB more, unsigned (above the 1 kB slack), then it leaves at T0 + 6 s.
    u.handle_counters(client(1), 15_000, 0, T0 + 1_000);
    let covered = u.covered_since(&client(1)).unwrap();
    assert_eq!(covered, T0, "last covered when it signed");
    u.handle_client_gone(&client(1), T0 + 6_000);
    assert_eq!(u.covered_since(&client(1)), None);
    // Back at T0 + 8 s with those 5 kB to answer for: served until T0 + 10 s.
    let owed = wisp_agent_core::usage::Counts { down: 5_000, up: 0 };
    u.handle_return(client(1), owed, covered, T0 + 8_000);
    assert!(!u.is_blocked(&client(1)));
    assert_eq!(u.poll_timeout(), Some(T0 + 10_000));
    u.handle_timeout(T0 + 9_999);
    assert!(!u.is_blocked(&client(1)));
    u.handle_timeout(T0 + 10_000);
    assert!(
        matches!(decisions(&mut u)[..], [Decision::Block(c, BlockWhy::Unsigned { since_ms, .. })] if c == client(1) && since_ms == T0)
    );

    // One that comes back covered (nothing above the slack) starts its grace afresh, and a
    // time from the future is taken as now.
    u.handle_return(client(2), Default::default(), T0 + 60_000, T0 + 20_000);
    assert_eq!(u.covered_since(&client(2)), Some(T0 + 20_000));
    u.handle_return(client(3), owed, T0 + 60_000, T0 + 20_000);
    assert_eq!(u.covered_since(&client(3)), Some(T0 + 20_000));
    // Given to a client still tracked, the time is not taken: its own stands.
    u.handle_return(client(3), owed, T0, T0 + 21_000);
    assert_eq!(u.covered_since(&client(3)), Some(T0 + 20_000));
    assert!(!u.is_blocked(&client(3)));
}

#[test]
fn the_cosignature_is_by_the_hotspot_key_only() {
    let mut u = usage();
    u.handle_counters(client(1), 10_000, 0, T0);
    send(&mut u, 1, &receipt(1, 1, 1, 10_000, 0), T0);
    u.handle_epoch(EPOCH + 1, T0 + 1);
    let p = u.poll_proof().unwrap();
    let env = envelope::EnvelopeRef::parse(&p.bytes).unwrap();
    assert!(
        env.sent_by(&hot().id()),
        "published on the hotspot's own topic"
    );
    assert!(!env.sent_by(client(1).key()));
    let _: NodeId = env.signer_id();
}

#[test]
fn a_receipt_may_lag_the_counters_by_what_flowed_in_the_last_two_seconds() {
    let mut u = usage();
    // 1 MB a second; the driver reads the counters each second and as a receipt arrives.
    for s in 0..=10 {
        u.handle_counters(client(1), s * 1_000_000, 0, T0 + s * 1_000);
    }
    let now = T0 + 10_500;
    u.handle_counters(client(1), 10_500_000, 0, now);
    // Reports of the last 2 s: at 9 s (9 MB), 10 s and now. Tolerance at 9 MB: 91 kB.
    for (seq, claim, agreed) in [
        (1, 8_900_000, false),
        (2, 8_910_000, true),
        (3, 10_500_000, true),
        (4, 10_606_000, true),
        (5, 10_606_001, false),
    ] {
        let got = send(&mut u, 1, &receipt(1, 1, seq, claim, 0), now);
        assert_eq!(
            matches!(got, UsageAnswer::Agreed { .. }),
            agreed,
            "{claim}: {got:?}"
        );
    }
}

#[test]
fn a_client_that_signs_at_its_pace_is_never_blocked_however_fast_it_goes() {
    // The defaults: 64 MiB of grace, 2 % and 1 MiB of tolerance.
    let mut u = Usage::new(hot(), UsageConfig::default());
    u.handle_epoch(EPOCH, T0);
    // 10 MB/s, far above the slack, for a minute; the receipt signed each second arrives
    // 100 ms later, when the hotspot has counted 1 MB more.
    let mut seq = 0;
    for s in 1..=60u64 {
        let t = T0 + s * 1_000;
        let signed = s * 10_000_000;
        u.handle_counters(client(1), signed, 0, t);
        u.handle_counters(client(1), signed + 1_000_000, 0, t + 100);
        seq += 1;
        assert_eq!(
            send(&mut u, 1, &receipt(1, 1, seq, signed, 0), t + 100),
            UsageAnswer::Agreed { seq },
            "second {s}"
        );
        u.handle_timeout(t + 500);
    }
    assert_eq!(decisions(&mut u), vec![]);
    assert_eq!(u.stats().blocks, 0);
}
