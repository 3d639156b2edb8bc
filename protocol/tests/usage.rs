//! Proof of usage on the wire: usage receipts (subscriber signs, hotspot co-signs) and credit
//! grants. Round trips, domain separation against every other kind, the two roles, a receipt
//! with one signature, field bounds, canonical form and size limits.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{
    self, Cosignature, Envelope, EnvelopeError, EnvelopeRef, Message, encode_payload, signed_bytes,
    verify_signature,
};
use wisp_protocol::msg::{
    BandwidthReceipt, CREDIT_MEMO_MAX, CreditGrant, Direction, Heartbeat, Measurement, Outcome,
    USAGE_BYTES_MAX, UsageReceipt, Versions,
};
use wisp_protocol::{Kind, NodeId, NodeKey, Reason, SubscriberId, topics};

fn key() -> impl Strategy<Value = NodeKey> {
    any::<[u8; 32]>().prop_map(|s| NodeKey::from_seed(&s))
}

/// Two distinct keys: (subscriber, hotspot).
fn two_keys() -> impl Strategy<Value = (NodeKey, NodeKey)> {
    (key(), key()).prop_filter("distinct keys", |(a, b)| a.id() != b.id())
}

fn receipt_for(sub: &NodeKey, hot: &NodeKey) -> impl Strategy<Value = UsageReceipt> + use<> {
    let (subscriber, hotspot) = (SubscriberId::of(sub), hot.id());
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        1u64..=u64::MAX,
        0..=USAGE_BYTES_MAX,
        0..=USAGE_BYTES_MAX,
        any::<u64>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            move |(session, epoch, seq, bytes_down, bytes_up, signed_ms, start)| UsageReceipt {
                session: ByteArray(session),
                hotspot,
                subscriber,
                epoch,
                seq,
                bytes_down,
                bytes_up,
                signed_ms,
                start_ms: start.map(|s| s.min(signed_ms)),
            },
        )
}

/// A valid receipt with its two keys.
fn receipt() -> impl Strategy<Value = (UsageReceipt, NodeKey, NodeKey)> {
    two_keys()
        .prop_flat_map(|(s, h)| receipt_for(&s, &h).prop_map(move |r| (r, s.clone(), h.clone())))
}

fn grant() -> impl Strategy<Value = (CreditGrant, NodeKey)> {
    (
        two_keys(),
        any::<[u8; 16]>(),
        1u64..=u64::MAX,
        any::<u64>(),
        proptest::string::string_regex(&format!("[ -~]{{0,{CREDIT_MEMO_MAX}}}")).unwrap(),
    )
        .prop_map(|((operator, sub), grant, amount_dc, issued_ms, memo)| {
            let g = CreditGrant {
                grant: ByteArray(grant),
                subscriber: SubscriberId::of(&sub),
                amount_dc,
                issued_ms,
                memo,
            };
            (g, operator)
        })
}

/// Subscriber signs, hotspot co-signs: the one valid form.
fn dual(r: &UsageReceipt, sub: &NodeKey, hot: &NodeKey) -> Vec<u8> {
    let mut env = Envelope::sign(sub, r);
    env.cosign(hot);
    env.to_bytes()
}

fn other_envelopes() -> Vec<Vec<u8>> {
    let (m, p) = (NodeKey::from_seed(&[4; 32]), NodeKey::from_seed(&[5; 32]));
    let hb = Heartbeat {
        epoch: 7,
        seq: 1,
        uptime_s: 60,
        sent_ms: 1_795_000_000_000,
        fix: None,
        cell: None,
        versions: Versions::new("0.1.0", "sim"),
        peers: 3,
    };
    let r = BandwidthReceipt {
        test_id: ByteArray([0x7e; 16]),
        epoch: 7,
        prover: p.id(),
        measurer: m.id(),
        direction: Direction::Down,
        outcome: Outcome::Measured(Measurement {
            bytes: 1_000_000,
            duration_ms: 1_000,
            median_bps: 8_000_000,
            p10_bps: 7_000_000,
            rtt_idle_us: 10_000,
            rtt_loaded_us: 20_000,
        }),
    };
    let mut bw = Envelope::sign(&m, &r);
    bw.cosign(&p);
    vec![Envelope::sign(&p, &hb).to_bytes(), bw.to_bytes()]
}

/// Every kind's reading of the same signed bytes: only `kind` may verify.
fn assert_only_verifies_as(kind: Kind, payload: &[u8], signer: &NodeId, sig: &[u8; 64]) {
    for other in Kind::ALL {
        let verdict = verify_signature(signer.as_bytes(), &signed_bytes(other, payload), sig);
        assert_eq!(
            verdict.is_ok(),
            other == kind,
            "{kind} signature as {other}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// decode(encode(x)) == x, through the envelope and through JSON; within the kind's limit.
    #[test]
    fn receipt_round_trips((r, s, h) in receipt()) {
        let bytes = dual(&r, &s, &h);
        prop_assert!(bytes.len() <= Kind::UsageReceipt.max_envelope_len());
        let opened = envelope::open::<UsageReceipt>(&bytes).unwrap();
        prop_assert_eq!(&opened.msg, &r);
        prop_assert_eq!(opened.signer, s.id());
        prop_assert_eq!(opened.cosigners, vec![h.id()]);
        let json = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(serde_json::from_str::<UsageReceipt>(&json).unwrap(), r);
        // The hotspot publishes it on its own proofs topic, never the subscriber's.
        let env = EnvelopeRef::parse(&bytes).unwrap();
        prop_assert!(env.sent_by(&h.id()));
        prop_assert!(!env.sent_by(&s.id()));
    }

    #[test]
    fn grant_round_trips((g, op) in grant()) {
        let bytes = Envelope::sign(&op, &g).to_bytes();
        prop_assert!(bytes.len() <= Kind::CreditGrant.max_envelope_len());
        let opened = CreditGrant::open_from(&bytes, &op.id()).unwrap();
        prop_assert_eq!(&opened.msg, &g);
        let json = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(serde_json::from_str::<CreditGrant>(&json).unwrap(), g);
    }

    /// Neither signature of a usage receipt, nor a grant's, verifies as any other kind; relabelled
    /// envelopes are refused by the framing or the signature check.
    #[test]
    fn usage_signatures_do_not_cross_kinds((r, s, h) in receipt(), (g, op) in grant()) {
        let bytes = dual(&r, &s, &h);
        let env = EnvelopeRef::parse(&bytes).unwrap();
        for (k, sig) in env.signatures() {
            assert_only_verifies_as(Kind::UsageReceipt, env.payload, &NodeId(*k), sig);
        }
        let gb = Envelope::sign(&op, &g).to_bytes();
        let genv = EnvelopeRef::parse(&gb).unwrap();
        assert_only_verifies_as(Kind::CreditGrant, genv.payload, &op.id(), genv.signature);
        for (orig, bytes) in [(Kind::UsageReceipt, &bytes), (Kind::CreditGrant, &gb)] {
            for other in Kind::ALL.into_iter().filter(|k| *k != orig) {
                let mut t = bytes.clone();
                t[1] = other.as_u8();
                match EnvelopeRef::parse(&t).and_then(|e| e.verify()) {
                    Err(EnvelopeError::BadSignature { index: 0 })
                    | Err(EnvelopeError::TooLarge { .. })
                    | Err(EnvelopeError::Cosigners { .. }) => {}
                    v => prop_assert!(false, "{} as {}: {:?}", orig, other, v),
                }
            }
        }
    }

    /// Swapping the roles (the hotspot signs, the subscriber co-signs) leaves two valid
    /// signatures and is still refused; so are keys the receipt does not name.
    #[test]
    fn signatures_do_not_cross_roles((r, s, h) in receipt(), stranger in key()) {
        prop_assume!(stranger.id() != s.id() && stranger.id() != h.id());
        let role = |signer: &NodeKey, cosigner: Option<&NodeKey>| {
            let mut env = Envelope::sign(signer, &r);
            if let Some(c) = cosigner {
                env.cosign(c);
            }
            let bytes = env.to_bytes();
            EnvelopeRef::parse(&bytes).unwrap().verify().unwrap();
            envelope::open::<UsageReceipt>(&bytes).map_err(|e| e.reason())
        };
        prop_assert_eq!(role(&h, Some(&s)), Err(Reason::UsageRoleMismatch));
        prop_assert_eq!(role(&stranger, Some(&h)), Err(Reason::UsageRoleMismatch));
        prop_assert_eq!(role(&s, Some(&stranger)), Err(Reason::UsageRoleMismatch));
        prop_assert_eq!(role(&h, None), Err(Reason::UsageRoleMismatch));
        // One key in both roles.
        let mut own = r.clone();
        own.hotspot = s.id();
        let bytes = Envelope::sign(&s, &own).to_bytes();
        prop_assert_eq!(envelope::open::<UsageReceipt>(&bytes).map_err(|e| e.reason()), Err(Reason::UsageRoleMismatch));
        // A signature moved from one position to the other no longer verifies: positions
        // share the signed bytes, but a moved signature is by the wrong key for its slot.
        let mut env = Envelope::sign(&s, &r);
        env.cosign(&h);
        let sigs = (env.signature, env.cosigners[0].signature);
        env.signature = sigs.1;
        env.cosigners[0] = Cosignature { signer: h.id(), signature: sigs.0 };
        let moved = envelope::open::<UsageReceipt>(&env.to_bytes());
        prop_assert!(matches!(moved, Err(EnvelopeError::BadSignature { index: 0 })), "{:?}", moved);
    }

    /// A receipt with the subscriber's signature only is refused by `open`, and is exactly what
    /// the hotspot's pre-co-signing view accepts.
    #[test]
    fn a_receipt_with_one_signature_is_refused((r, s, h) in receipt()) {
        let half = Envelope::sign(&s, &r).to_bytes();
        prop_assert_eq!(
            envelope::open::<UsageReceipt>(&half).map_err(|e| e.reason()),
            Err(Reason::UsageMissingCosignature)
        );
        prop_assert_eq!(UsageReceipt::open_for_cosigning(&half).unwrap().msg, r.clone());
        prop_assert!(UsageReceipt::open_for_cosigning(&dual(&r, &s, &h)).is_err());
    }

    /// Every strict prefix and every extension of a valid receipt is refused.
    #[test]
    fn truncated_and_extended_receipts_are_refused((r, s, h) in receipt(), extra in prop::collection::vec(any::<u8>(), 1..300)) {
        let bytes = dual(&r, &s, &h);
        for n in 0..bytes.len() {
            prop_assert!(envelope::open::<UsageReceipt>(&bytes[..n]).is_err(), "prefix of {} bytes", n);
        }
        let mut long = bytes.clone();
        long.extend_from_slice(&extra);
        prop_assert!(envelope::open::<UsageReceipt>(&long).is_err());
    }

    /// Any single flipped bit anywhere in a co-signed receipt or a grant makes it fail.
    #[test]
    fn any_bit_flip_is_detected((r, s, h) in receipt(), (g, op) in grant(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = dual(&r, &s, &h);
        let mut t = bytes.clone();
        let i = pos.index(t.len());
        t[i] ^= 1 << bit;
        prop_assert!(envelope::open::<UsageReceipt>(&t).is_err(), "receipt flip at {} bit {}", i, bit);
        let gb = Envelope::sign(&op, &g).to_bytes();
        let mut t = gb.clone();
        let i = pos.index(t.len());
        t[i] ^= 1 << bit;
        prop_assert!(CreditGrant::open_from(&t, &op.id()).is_err(), "grant flip at {} bit {}", i, bit);
    }

    /// The broker's ACL and the proofs topic rule agree: the one node a usage receipt may come
    /// from (its hotspot) may publish on its own proofs topic, and a subscriber logged in as a
    /// node could publish only on its own topic, where the receipt is refused.
    #[test]
    fn topics_agree_with_the_roles((r, s, h) in receipt()) {
        let bytes = dual(&r, &s, &h);
        let env = EnvelopeRef::parse(&bytes).unwrap();
        for k in [&s, &h] {
            let topic = topics::proofs(&k.id());
            prop_assert!(topics::may_publish(&topics::Client::Node(k.id()), &topic));
            prop_assert_eq!(topics::proofs_node(&topic), Some(k.id()));
            prop_assert_eq!(env.sent_by(&k.id()), k.id() == h.id());
        }
        prop_assert!(!topics::may_publish(&topics::Client::Node(s.id()), &topics::proofs(&h.id())));
    }

    /// A properly signed payload with a trailing byte is not canonical.
    #[test]
    fn trailing_payload_bytes_are_refused((r, s, h) in receipt(), extra in any::<u8>()) {
        let mut payload = encode_payload(&r);
        payload.push(extra);
        let tagged = signed_bytes(Kind::UsageReceipt, &payload);
        let env = Envelope {
            version: 1,
            kind: Kind::UsageReceipt,
            payload,
            signer: s.id(),
            signature: ByteArray(s.sign_raw(&tagged)),
            cosigners: vec![Cosignature { signer: h.id(), signature: ByteArray(h.sign_raw(&tagged)) }],
        };
        prop_assert_eq!(envelope::open::<UsageReceipt>(&env.to_bytes()).unwrap_err(), EnvelopeError::NonCanonical);
    }
}

fn sample() -> (UsageReceipt, NodeKey, NodeKey) {
    let (s, h) = (NodeKey::from_seed(&[3; 32]), NodeKey::from_seed(&[1; 32]));
    let r = UsageReceipt {
        session: ByteArray([0x5e; 16]),
        hotspot: h.id(),
        subscriber: SubscriberId::of(&s),
        epoch: 42,
        seq: 7,
        bytes_down: 52_428_800,
        bytes_up: 3_145_728,
        signed_ms: 1_795_000_060_000,
        start_ms: Some(1_795_000_000_000),
    };
    (r, s, h)
}

#[test]
fn field_bounds_are_checked() {
    let (r, s, h) = sample();
    let check = |f: &dyn Fn(&mut UsageReceipt), ok: bool| {
        let mut m = r.clone();
        f(&mut m);
        let got = envelope::open::<UsageReceipt>(&dual(&m, &s, &h)).map_err(|e| e.reason());
        let want = if ok {
            Ok(())
        } else {
            Err(Reason::FieldOutOfRange)
        };
        assert_eq!(got.map(drop), want, "{m:?}");
    };
    check(&|m| m.seq = 0, false);
    check(&|m| m.seq = 1, true);
    check(&|m| m.bytes_down = USAGE_BYTES_MAX, true);
    check(&|m| m.bytes_down = USAGE_BYTES_MAX + 1, false);
    check(&|m| m.bytes_up = USAGE_BYTES_MAX + 1, false);
    check(&|m| m.start_ms = Some(m.signed_ms), true);
    check(&|m| m.start_ms = Some(m.signed_ms + 1), false);
    check(&|m| m.start_ms = None, true);
}

#[test]
fn grants_are_checked() {
    let (op, sub) = (NodeKey::from_seed(&[9; 32]), NodeKey::from_seed(&[3; 32]));
    let g = CreditGrant {
        grant: ByteArray([0x61; 16]),
        subscriber: SubscriberId::of(&sub),
        amount_dc: 1_000_000,
        issued_ms: 1_795_000_000_000,
        memo: "devnet".into(),
    };
    let reason = |g: &CreditGrant, signer: &NodeKey| {
        CreditGrant::open_from(&Envelope::sign(signer, g).to_bytes(), &op.id())
            .map(drop)
            .map_err(|e| e.reason())
    };
    assert_eq!(reason(&g, &op), Ok(()));
    // Signed by anyone but the operator, the subscriber included.
    assert_eq!(reason(&g, &sub), Err(Reason::SignerMismatch));
    assert_eq!(
        reason(&g, &NodeKey::from_seed(&[8; 32])),
        Err(Reason::SignerMismatch)
    );
    let bad = |f: &dyn Fn(&mut CreditGrant)| {
        let mut m = g.clone();
        f(&mut m);
        reason(&m, &op)
    };
    assert_eq!(bad(&|m| m.amount_dc = 0), Err(Reason::FieldOutOfRange));
    assert_eq!(
        bad(&|m| m.memo = "x".repeat(CREDIT_MEMO_MAX)),
        Ok(()),
        "the longest memo"
    );
    assert_eq!(
        bad(&|m| m.memo = "x".repeat(CREDIT_MEMO_MAX + 1)),
        Err(Reason::FieldOutOfRange)
    );
    assert_eq!(
        bad(&|m| m.memo = "tab\there".into()),
        Err(Reason::FieldOutOfRange)
    );
    // A grant has no co-signers.
    let mut env = Envelope::sign(&op, &g);
    env.cosign(&sub);
    assert!(matches!(
        envelope::open::<CreditGrant>(&env.to_bytes()),
        Err(EnvelopeError::Cosigners { .. })
    ));
}

/// The largest receipt and grant the checks allow fit their kinds' limits.
#[test]
fn worst_case_sizes_fit_their_limits() {
    let (mut r, s, h) = sample();
    r.epoch = u64::MAX;
    r.seq = u64::MAX;
    r.bytes_down = USAGE_BYTES_MAX;
    r.bytes_up = USAGE_BYTES_MAX;
    r.signed_ms = u64::MAX;
    r.start_ms = Some(u64::MAX);
    let bytes = dual(&r, &s, &h);
    assert!(envelope::open::<UsageReceipt>(&bytes).is_ok());
    assert!(bytes.len() <= Kind::UsageReceipt.max_envelope_len());
    let op = NodeKey::from_seed(&[9; 32]);
    let g = CreditGrant {
        grant: ByteArray([0xff; 16]),
        subscriber: SubscriberId::of(&s),
        amount_dc: u64::MAX,
        issued_ms: u64::MAX,
        memo: "~".repeat(CREDIT_MEMO_MAX),
    };
    let gb = Envelope::sign(&op, &g).to_bytes();
    assert!(CreditGrant::open_from(&gb, &op.id()).is_ok());
    assert!(gb.len() <= Kind::CreditGrant.max_envelope_len());
    println!(
        "largest usage_receipt {} bytes, credit_grant {} bytes",
        bytes.len(),
        gb.len()
    );
}

/// Other kinds' envelopes relabelled as usage receipts or grants never verify.
#[test]
fn other_kinds_do_not_verify_as_usage() {
    for bytes in other_envelopes() {
        for kind in [Kind::UsageReceipt, Kind::CreditGrant] {
            let mut t = bytes.clone();
            t[1] = kind.as_u8();
            let verdict = EnvelopeRef::parse(&t).and_then(|e| e.verify());
            assert!(
                matches!(
                    verdict,
                    Err(EnvelopeError::BadSignature { index: 0 } | EnvelopeError::Cosigners { .. })
                ),
                "{verdict:?}"
            );
        }
    }
}

/// Each new kind's structural check is what `open` runs (the trait is the one entry point).
#[test]
fn kinds_and_cosigner_limits() {
    assert_eq!(UsageReceipt::KIND, Kind::UsageReceipt);
    assert_eq!(CreditGrant::KIND, Kind::CreditGrant);
    assert_eq!(Kind::UsageReceipt.max_cosigners(), 1);
    assert_eq!(Kind::CreditGrant.max_cosigners(), 0);
    // A receipt is its hotspot's proof; a grant never travels on the proofs topic.
    assert!(Kind::UsageReceipt.is_proof() && !Kind::CreditGrant.is_proof());
}
