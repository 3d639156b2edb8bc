#![allow(clippy::unwrap_used)]

use wisp_protocol::envelope::{self, EnvelopeRef, encode_payload};
use wisp_protocol::msg::{USAGE_ANSWER_MAX, USAGE_REQUEST_MAX, UsageAnswer, UsageReceipt};
use wisp_protocol::{NodeKey, Reason};

use super::*;

const T0: UnixMs = 1_800_000_000_000;
const MIB: u64 = 1 << 20;

fn hotspot() -> NodeKey {
    NodeKey::from_seed(&[9; 32])
}

fn session(policy: Policy) -> Session {
    let key = SubscriberKey::from_seed(&[1; 32]);
    Session::new(key, hotspot().id(), [0x5e; 16], 7, T0, policy).unwrap()
}

/// The hotspot's view of a receipt: it opens for co-signing; co-signed, it is a complete
/// receipt that `envelope::open` accepts. Returns the receipt.
fn cosign(bytes: &[u8]) -> UsageReceipt {
    assert!(bytes.len() <= USAGE_REQUEST_MAX, "{} bytes", bytes.len());
    let half = UsageReceipt::open_for_cosigning(bytes).unwrap();
    assert!(
        envelope::open::<UsageReceipt>(bytes).is_err(),
        "not valid before co-signing"
    );
    // The co-signature goes where the empty co-signer list was (its count, the last byte).
    let hot = hotspot();
    let env = EnvelopeRef::parse(bytes).unwrap();
    assert_eq!(bytes.last(), Some(&0));
    let mut full = bytes[..bytes.len() - 1].to_vec();
    full.push(1);
    full.extend_from_slice(&hot.id().0);
    full.extend_from_slice(&hot.sign_raw(&env.signed_message()));
    let opened = envelope::open::<UsageReceipt>(&full).unwrap();
    assert_eq!(opened.msg, half.msg);
    assert_eq!(opened.cosigners, vec![hot.id()]);
    opened.msg
}

fn totals(r: &UsageReceipt) -> (u64, u64) {
    (r.bytes_down, r.bytes_up)
}

#[test]
fn new_refuses_its_own_key_as_hotspot_and_bad_policies() {
    let key = SubscriberKey::from_seed(&[1; 32]);
    let own = key.node_id();
    let e = Session::new(key.clone(), own, [0; 16], 0, T0, Policy::default()).unwrap_err();
    assert_eq!(e, SessionError::HotspotIsSubscriber);
    let d = Policy::default();
    for bad in [
        Policy {
            receipt_every_bytes: 0,
            ..d
        },
        Policy {
            receipt_every_ms: 0,
            ..d
        },
        Policy {
            receipt_min_interval_ms: d.receipt_every_ms + 1,
            ..d
        },
        Policy {
            tolerance_permille: 1001,
            ..d
        },
    ] {
        let e = Session::new(key.clone(), hotspot().id(), [0; 16], 0, T0, bad).unwrap_err();
        assert!(matches!(e, SessionError::Policy(_)), "{bad:?}");
    }
}

#[test]
fn nothing_is_signed_while_nothing_is_counted() {
    let mut s = session(Policy::default());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_receipt(T0 + 3_600_000), None);
    // The same counts again are no change either.
    s.handle_counters(0, 0, T0 + 10);
    assert_eq!(s.poll_receipt(T0 + 3_600_000), None);
    s.handle_counters(100, 0, T0 + 20);
    assert!(s.poll_receipt(T0 + 20 + 10_000).is_some());
    s.handle_counters(100, 0, T0 + 30_000);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_receipt(T0 + 3_600_000), None);
    assert_eq!(s.status().seq, 1);
}

#[test]
fn cadence_by_bytes_with_the_minimum_interval() {
    let mut s = session(Policy::default());
    s.handle_counters(3 * MIB, MIB - 1, T0 + 100);
    assert_eq!(
        s.poll_timeout(),
        Some(T0 + 100 + 10_000),
        "one byte short of 4 MiB"
    );
    s.handle_counters(3 * MIB, MIB, T0 + 150);
    assert_eq!(
        s.poll_timeout(),
        Some(0),
        "due at once: the first receipt has no floor"
    );
    let r = cosign(&s.poll_receipt(T0 + 150).unwrap());
    assert_eq!((r.seq, totals(&r)), (1, (3 * MIB, MIB)));
    assert_eq!((r.signed_ms, r.start_ms, r.epoch), (T0 + 150, Some(T0), 7));
    assert_eq!(r.session.0, [0x5e; 16]);

    // 4 MiB more 200 ms later: due, but not before 1 s after the last receipt.
    s.handle_counters(7 * MIB, MIB, T0 + 350);
    assert_eq!(s.poll_timeout(), Some(T0 + 150 + 1_000));
    assert_eq!(s.poll_receipt(T0 + 1_149), None);
    let r = cosign(&s.poll_receipt(T0 + 1_150).unwrap());
    assert_eq!((r.seq, totals(&r)), (2, (7 * MIB, MIB)));
}

#[test]
fn cadence_by_time_counts_from_the_first_byte_since_the_last_receipt() {
    let mut s = session(Policy::default());
    s.handle_counters(10, 0, T0 + 5_000);
    s.handle_counters(20, 3, T0 + 9_000);
    assert_eq!(s.poll_timeout(), Some(T0 + 15_000));
    assert_eq!(s.poll_receipt(T0 + 14_999), None);
    let r = cosign(&s.poll_receipt(T0 + 15_000).unwrap());
    assert_eq!((r.seq, totals(&r)), (1, (20, 3)));
    // Idle for a minute, then one byte: 10 s after it.
    s.handle_counters(21, 3, T0 + 75_000);
    assert_eq!(s.poll_timeout(), Some(T0 + 85_000));
    let r = cosign(&s.poll_receipt(T0 + 85_000).unwrap());
    assert_eq!((r.seq, totals(&r)), (2, (21, 3)));
}

#[test]
fn seq_increases_and_totals_are_cumulative_and_never_go_back() {
    let mut s = session(Policy::default());
    let (mut down, mut up, mut now) = (0u64, 0u64, T0);
    let mut last = (0, (0, 0));
    for i in 1..=40u64 {
        down += i * 300_000;
        up += 1_000 * (i % 3);
        now += 700 * i;
        s.handle_counters(down, up, now);
        // A counter that went back (a driver's reset) changes nothing.
        s.handle_counters(down / 2, 0, now);
        if let Some(b) = s.poll_receipt(now) {
            let r = cosign(&b);
            assert_eq!(r.seq, last.0 + 1);
            assert_eq!(totals(&r), (down, up), "cumulative: the counts so far");
            assert!(totals(&r).0 >= last.1.0 && totals(&r).1 >= last.1.1);
            last = (r.seq, totals(&r));
        }
    }
    assert!(last.0 > 5, "{last:?}");
    assert_eq!(
        s.status().counted,
        Totals {
            bytes_down: down,
            bytes_up: up
        }
    );
}

#[test]
fn agreed_answers_are_recorded_and_unknown_ones_ignored() {
    let mut s = session(Policy::default());
    s.handle_counters(5 * MIB, 0, T0);
    s.poll_receipt(T0).unwrap();
    s.handle_counters(10 * MIB, 0, T0 + 2_000);
    s.poll_receipt(T0 + 2_000).unwrap();
    let two = Totals {
        bytes_down: 10 * MIB,
        bytes_up: 0,
    };
    assert_eq!(
        s.handle_answer(UsageAnswer::Agreed { seq: 2 }),
        AnswerOutcome::Agreed {
            seq: 2,
            totals: two
        }
    );
    // A late answer to receipt 1 does not move the agreed receipt back.
    assert!(matches!(
        s.handle_answer(UsageAnswer::Agreed { seq: 1 }),
        AnswerOutcome::Agreed { seq: 1, .. }
    ));
    assert_eq!(
        s.status().agreed,
        Some(Agreed {
            seq: 2,
            totals: two
        })
    );
    for seq in [0, 3, u64::MAX] {
        assert_eq!(
            s.handle_answer(UsageAnswer::Agreed { seq }),
            AnswerOutcome::Ignored
        );
        let d = UsageAnswer::Disputed {
            seq,
            bytes_down: 1,
            bytes_up: 1,
        };
        assert_eq!(s.handle_answer(d), AnswerOutcome::Ignored);
    }
    // A dispute of a receipt older than the one agreed is stale.
    let d = UsageAnswer::Disputed {
        seq: 1,
        bytes_down: 1,
        bytes_up: 0,
    };
    assert_eq!(s.handle_answer(d), AnswerOutcome::Ignored);
    assert_eq!(s.status().state, SessionState::Active);
}

#[test]
fn a_dispute_within_tolerance_is_adopted_and_signed_again() {
    let mut s = session(Policy::default());
    s.handle_counters(8 * MIB, 100_000, T0);
    s.poll_receipt(T0).unwrap();
    // The hotspot counted 0.5 % more down and 1 000 bytes less up.
    let (hd, hu) = (8 * MIB + 8 * MIB / 200, 99_000);
    let a = s.handle_answer(UsageAnswer::Disputed {
        seq: 1,
        bytes_down: hd,
        bytes_up: hu,
    });
    assert!(matches!(a, AnswerOutcome::Adopted { seq: 1, .. }), "{a:?}");
    assert_eq!(
        s.poll_timeout(),
        Some(T0 + 1_000),
        "again once the interval allows"
    );
    let r = cosign(&s.poll_receipt(T0 + 1_000).unwrap());
    assert_eq!((r.seq, totals(&r)), (2, (hd, hu)));
    assert!(matches!(
        s.handle_answer(UsageAnswer::Agreed { seq: 2 }),
        AnswerOutcome::Agreed { .. }
    ));
    // Later receipts keep the adopted difference.
    s.handle_counters(12 * MIB, 100_000, T0 + 5_000);
    let r = cosign(&s.poll_receipt(T0 + 5_000).unwrap());
    assert_eq!(totals(&r), (12 * MIB + 8 * MIB / 200, 99_000));
    assert_eq!(s.status().disputes, 1);
}

#[test]
fn a_dispute_beyond_tolerance_ends_the_session() {
    let mut s = session(Policy::default());
    s.handle_counters(100 * MIB, 0, T0);
    s.poll_receipt(T0).unwrap();
    // 1 % of 100 MiB is the tolerance: one byte more is too much.
    let tol = Policy::default().tolerance(100 * MIB);
    assert_eq!(tol, 100 * MIB / 100);
    let a = s.handle_answer(UsageAnswer::Disputed {
        seq: 1,
        bytes_down: 100 * MIB + tol + 1,
        bytes_up: 0,
    });
    assert!(
        matches!(
            a,
            AnswerOutcome::Ended(EndReason::DisputeBeyondTolerance { seq: 1, .. })
        ),
        "{a:?}"
    );
    s.handle_counters(200 * MIB, 0, T0 + 60_000);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_receipt(T0 + 60_000), None);
    assert_eq!(
        s.handle_answer(UsageAnswer::Agreed { seq: 1 }),
        AnswerOutcome::Ignored
    );
}

#[test]
fn refused_ends_the_session() {
    let mut s = session(Policy::default());
    s.handle_counters(1, 1, T0);
    s.poll_receipt(T0 + 10_000).unwrap();
    let code = Reason::UsageRoleMismatch.code();
    let a = s.handle_answer(UsageAnswer::Refused { reason: code });
    assert_eq!(
        a,
        AnswerOutcome::Ended(EndReason::Refused(Reason::UsageRoleMismatch))
    );
    assert_eq!(
        s.status().state,
        SessionState::Ended(EndReason::Refused(Reason::UsageRoleMismatch))
    );
    s.handle_counters(MIB * 100, 0, T0 + 20_000);
    assert_eq!(s.poll_receipt(T0 + 60_000), None);
}

#[test]
fn disputes_in_a_row_are_bounded() {
    let mut s = session(Policy {
        max_disputes: 2,
        ..Policy::default()
    });
    let mut now = T0;
    for seq in 1..=3u64 {
        s.handle_counters(seq * 5 * MIB, 0, now);
        s.poll_receipt(now).unwrap();
        let a = s.handle_answer(UsageAnswer::Disputed {
            seq,
            bytes_down: seq * 5 * MIB - 10,
            bytes_up: 0,
        });
        if seq < 3 {
            assert!(matches!(a, AnswerOutcome::Adopted { .. }), "{a:?}");
        } else {
            assert_eq!(a, AnswerOutcome::Ended(EndReason::TooManyDisputes));
        }
        now += 2_000;
    }
}

/// The honesty invariant against a hotspot that always claims as much as it can: every receipt
/// states at most the client's own count plus the tolerance, in each direction.
#[test]
fn the_client_never_signs_above_its_own_count_plus_tolerance() {
    let policy = Policy {
        max_disputes: u32::MAX,
        ..Policy::default()
    };
    let mut s = session(policy);
    let (mut down, mut up, mut now) = (0u64, 0u64, T0);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut signed = 0;
    for _ in 0..2_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        down += rng % (3 * MIB);
        up += (rng >> 20) % 100_000;
        now += rng % 4_000;
        s.handle_counters(down, up, now);
        if let Some(b) = s.poll_receipt(now) {
            let r = cosign(&b);
            signed += 1;
            assert!(r.bytes_down <= down + policy.tolerance(down), "{r:?}");
            assert!(r.bytes_up <= up + policy.tolerance(up), "{r:?}");
            // The hotspot claims the most it may, or far more every fifth time.
            let greedy = |own: u64| {
                own + policy.tolerance(own) + if r.seq.is_multiple_of(5) { 1 << 40 } else { 0 }
            };
            let a = s.handle_answer(UsageAnswer::Disputed {
                seq: r.seq,
                bytes_down: greedy(down),
                bytes_up: greedy(up),
            });
            if r.seq.is_multiple_of(5) {
                assert!(matches!(a, AnswerOutcome::Ended(_)));
                break;
            }
        }
    }
    assert!(signed >= 5, "{signed}");
}

#[test]
fn answer_bytes_are_bounded_and_canonical() {
    let mut s = session(Policy::default());
    s.handle_counters(1, 0, T0);
    s.poll_receipt(T0 + 10_000).unwrap();
    let e = s
        .handle_answer_bytes(&[0; USAGE_ANSWER_MAX + 1])
        .unwrap_err();
    assert!(matches!(e, AnswerError::TooLarge { .. }), "{e}");
    for bad in [&[][..], &[9][..], &[0, 0x81, 0x00][..], &[0, 1, 0][..]] {
        let e = s.handle_answer_bytes(bad).unwrap_err();
        assert!(matches!(e, AnswerError::Decode(_)), "{bad:?}: {e}");
    }
    let biggest = UsageAnswer::Disputed {
        seq: u64::MAX,
        bytes_down: u64::MAX,
        bytes_up: u64::MAX,
    };
    assert!(encode_payload(&biggest).len() <= USAGE_ANSWER_MAX);
    let ok = encode_payload(&UsageAnswer::Agreed { seq: 1 });
    assert!(matches!(
        s.handle_answer_bytes(&ok),
        Ok(AnswerOutcome::Agreed { seq: 1, .. })
    ));
}

#[test]
fn epochs_only_move_forward_and_close_signs_the_rest() {
    let mut s = session(Policy::default());
    s.handle_epoch(9);
    s.handle_epoch(8);
    s.handle_counters(10, 10, T0);
    let r = cosign(&s.poll_receipt(T0 + 10_000).unwrap());
    assert_eq!(r.epoch, 9);
    s.handle_counters(20, 10, T0 + 10_100);
    s.handle_close();
    assert_eq!(s.poll_timeout(), Some(0), "the last receipt is due at once");
    let r = cosign(&s.poll_receipt(T0 + 10_100).unwrap());
    assert_eq!((r.seq, totals(&r)), (2, (20, 10)));
    assert_eq!(s.status().state, SessionState::Ended(EndReason::Closed));
    assert_eq!(s.poll_receipt(T0 + 99_000), None);
    // Nothing new since the last receipt: closing ends at once.
    let mut s = session(Policy::default());
    s.handle_close();
    assert_eq!(s.status().state, SessionState::Ended(EndReason::Closed));
}

#[test]
fn a_clock_before_the_start_omits_the_start() {
    let mut s = session(Policy::default());
    s.handle_counters(1, 0, T0 - 50_000);
    let r = cosign(&s.poll_receipt(T0 - 40_000).unwrap());
    assert_eq!(r.start_ms, None);
}

#[test]
fn an_adopted_lower_count_never_goes_below_what_the_hotspot_co_signed() {
    let mut s = session(Policy::default());
    s.handle_counters(10 * MIB, 1_000, T0);
    s.poll_receipt(T0).unwrap();
    s.handle_answer(UsageAnswer::Agreed { seq: 1 });
    s.handle_counters(20 * MIB, 2_000, T0 + 2_000);
    s.poll_receipt(T0 + 2_000).unwrap();
    // The hotspot counted far less down than the client (and than it co-signed in receipt 1),
    // and a little less up.
    let d = UsageAnswer::Disputed {
        seq: 2,
        bytes_down: 5 * MIB,
        bytes_up: 1_900,
    };
    assert!(matches!(s.handle_answer(d), AnswerOutcome::Adopted { .. }));
    let r = cosign(&s.poll_receipt(T0 + 3_000).unwrap());
    assert_eq!(
        (r.seq, totals(&r)),
        (3, (10 * MIB, 1_900)),
        "floored at receipt 1's down"
    );
}
