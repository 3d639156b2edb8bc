//! Carrier reports on the wire (kind 14): round trips, domain separation against every other
//! kind (a subscriber's usage receipt included), the carrier's role, the allow-list, field
//! bounds, canonical form and the size limit.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{
    self, Envelope, EnvelopeError, EnvelopeRef, encode_payload, signed_bytes, verify_signature,
};
use wisp_protocol::msg::{CarrierReport, USAGE_BYTES_MAX, UsageReceipt};
use wisp_protocol::{Kind, NodeId, NodeKey, Reason, SubscriberId};

fn key() -> impl Strategy<Value = NodeKey> {
    any::<[u8; 32]>().prop_map(|s| NodeKey::from_seed(&s))
}

/// A valid report with its carrier's key and its hotspot's.
fn report() -> impl Strategy<Value = (CarrierReport, NodeKey, NodeKey)> {
    (
        (key(), key()).prop_filter("distinct keys", |(a, b)| a.id() != b.id()),
        any::<[u8; 16]>(),
        any::<u64>(),
        1u64..=u64::MAX,
        0..=USAGE_BYTES_MAX,
        0..=USAGE_BYTES_MAX,
        any::<u64>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |((c, h), session, epoch, seq, bytes_down, bytes_up, signed_ms, start)| {
                let r = CarrierReport {
                    session: ByteArray(session),
                    hotspot: h.id(),
                    carrier: c.id(),
                    epoch,
                    seq,
                    bytes_down,
                    bytes_up,
                    signed_ms,
                    start_ms: start.map(|s| s.min(signed_ms)),
                };
                (r, c, h)
            },
        )
}

/// The allow-list of one carrier.
fn only(carrier: &NodeKey) -> impl Fn(&NodeId) -> bool {
    let id = carrier.id();
    move |k| *k == id
}

fn open(bytes: &[u8], carrier: &NodeKey) -> Result<CarrierReport, Reason> {
    CarrierReport::open_from(bytes, only(carrier))
        .map(|o| o.msg)
        .map_err(|e| e.reason())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// decode(encode(x)) == x, through the envelope and through JSON; within the kind's limit.
    #[test]
    fn report_round_trips((r, c, _h) in report()) {
        let bytes = Envelope::sign(&c, &r).to_bytes();
        prop_assert!(bytes.len() <= Kind::CarrierReport.max_envelope_len());
        let opened = CarrierReport::open_from(&bytes, only(&c)).unwrap();
        prop_assert_eq!(&opened.msg, &r);
        prop_assert_eq!(opened.signer, c.id());
        prop_assert!(opened.cosigners.is_empty());
        let json = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(serde_json::from_str::<CarrierReport>(&json).unwrap(), r);
    }

    /// A carrier's signature verifies as no other kind, and no other kind's signature over the
    /// same payload bytes verifies as a carrier report; relabelled envelopes are refused.
    #[test]
    fn carrier_signatures_do_not_cross_kinds((r, c, _h) in report()) {
        let bytes = Envelope::sign(&c, &r).to_bytes();
        let env = EnvelopeRef::parse(&bytes).unwrap();
        for other in Kind::ALL {
            let verdict = verify_signature(
                c.id().as_bytes(),
                &signed_bytes(other, env.payload),
                env.signature,
            );
            prop_assert_eq!(verdict.is_ok(), other == Kind::CarrierReport, "as {}", other);
        }
        for other in Kind::ALL.into_iter().filter(|k| *k != Kind::CarrierReport) {
            let mut t = bytes.clone();
            t[1] = other.as_u8();
            match EnvelopeRef::parse(&t).and_then(|e| e.verify()) {
                Err(EnvelopeError::BadSignature { index: 0 } | EnvelopeError::TooLarge { .. }) => {}
                v => prop_assert!(false, "carrier_report as {}: {:?}", other, v),
            }
        }
    }

    /// The carrier's role: signed by the carrier it names and allow-listed, or refused.
    /// Another key signing (even an allow-listed one) is `signer_mismatch`; the named carrier
    /// off the list is `usage_carrier_unknown`; one key as carrier and hotspot is refused.
    #[test]
    fn signatures_do_not_cross_roles((r, c, h) in report(), stranger in key()) {
        prop_assume!(stranger.id() != c.id() && stranger.id() != h.id());
        let signed = |k: &NodeKey, m: &CarrierReport| Envelope::sign(k, m).to_bytes();
        prop_assert_eq!(open(&signed(&c, &r), &c), Ok(r.clone()));
        prop_assert_eq!(open(&signed(&stranger, &r), &stranger), Err(Reason::SignerMismatch));
        prop_assert_eq!(open(&signed(&h, &r), &h), Err(Reason::SignerMismatch));
        prop_assert_eq!(open(&signed(&c, &r), &stranger), Err(Reason::UsageCarrierUnknown));
        let mut named = r.clone();
        named.carrier = stranger.id();
        prop_assert_eq!(open(&signed(&stranger, &named), &c), Err(Reason::UsageCarrierUnknown));
        let mut own = r.clone();
        own.hotspot = c.id();
        prop_assert_eq!(open(&signed(&c, &own), &c), Err(Reason::SignerMismatch));
        // A report carries no co-signature, the hotspot's included.
        let mut env = Envelope::sign(&c, &r);
        env.cosign(&h);
        let cosigned = CarrierReport::open_from(&env.to_bytes(), only(&c));
        prop_assert!(matches!(cosigned, Err(EnvelopeError::Cosigners { .. })), "{:?}", cosigned);
    }

    /// A subscriber's usage receipt and a carrier's report of the same session with the same
    /// counters have different payloads, and the receipt's signatures do not open as a report.
    #[test]
    fn a_usage_receipt_is_never_a_carrier_report((r, c, h) in report()) {
        let receipt = UsageReceipt {
            session: r.session,
            hotspot: r.hotspot,
            subscriber: SubscriberId::of(&c),
            epoch: r.epoch,
            seq: r.seq,
            bytes_down: r.bytes_down,
            bytes_up: r.bytes_up,
            signed_ms: r.signed_ms,
            start_ms: r.start_ms,
        };
        let mut env = Envelope::sign(&c, &receipt);
        env.cosign(&h);
        let mut t = env.to_bytes();
        t[1] = Kind::CarrierReport.as_u8();
        prop_assert!(CarrierReport::open_from(&t, only(&c)).is_err());
        let alone = Envelope::sign(&c, &receipt).to_bytes();
        let mut t = alone.clone();
        t[1] = Kind::CarrierReport.as_u8();
        let relabelled = CarrierReport::open_from(&t, only(&c));
        prop_assert!(
            matches!(relabelled, Err(EnvelopeError::BadSignature { index: 0 })),
            "{:?}",
            relabelled
        );
    }

    /// Any single flipped bit, any strict prefix and any extension is refused.
    #[test]
    fn damaged_reports_are_refused(
        (r, c, _h) in report(),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let bytes = Envelope::sign(&c, &r).to_bytes();
        let mut t = bytes.clone();
        let i = pos.index(t.len());
        t[i] ^= 1 << bit;
        prop_assert!(open(&t, &c).is_err(), "flip at {} bit {}", i, bit);
        for n in 0..bytes.len() {
            prop_assert!(open(&bytes[..n], &c).is_err(), "prefix of {}", n);
        }
        let mut long = bytes.clone();
        long.extend_from_slice(&extra);
        prop_assert!(open(&long, &c).is_err());
    }

    /// A properly signed payload with a trailing byte is not canonical.
    #[test]
    fn trailing_payload_bytes_are_refused((r, c, _h) in report(), extra in any::<u8>()) {
        let mut payload = encode_payload(&r);
        payload.push(extra);
        let tagged = signed_bytes(Kind::CarrierReport, &payload);
        let env = Envelope {
            version: 1,
            kind: Kind::CarrierReport,
            payload,
            signer: c.id(),
            signature: ByteArray(c.sign_raw(&tagged)),
            cosigners: Vec::new(),
        };
        prop_assert_eq!(
            CarrierReport::open_from(&env.to_bytes(), only(&c)).unwrap_err(),
            EnvelopeError::NonCanonical
        );
    }
}

fn sample() -> (CarrierReport, NodeKey, NodeKey) {
    let (c, h) = (NodeKey::from_seed(&[6; 32]), NodeKey::from_seed(&[1; 32]));
    let r = CarrierReport {
        session: ByteArray([0xca; 16]),
        hotspot: h.id(),
        carrier: c.id(),
        epoch: 42,
        seq: 3,
        bytes_down: 104_857_600,
        bytes_up: 10_485_760,
        signed_ms: 1_795_000_060_000,
        start_ms: Some(1_795_000_000_000),
    };
    (r, c, h)
}

#[test]
fn field_bounds_are_checked() {
    let (r, c, _h) = sample();
    let check = |f: &dyn Fn(&mut CarrierReport), want: Result<(), Reason>| {
        let mut m = r.clone();
        f(&mut m);
        let got = open(&Envelope::sign(&c, &m).to_bytes(), &c).map(drop);
        assert_eq!(got, want, "{m:?}");
    };
    let out = Err(Reason::FieldOutOfRange);
    check(&|m| m.seq = 0, out);
    check(&|m| m.seq = 1, Ok(()));
    check(&|m| m.bytes_down = USAGE_BYTES_MAX, Ok(()));
    check(&|m| m.bytes_down = USAGE_BYTES_MAX + 1, out);
    check(&|m| m.bytes_up = USAGE_BYTES_MAX, Ok(()));
    check(&|m| m.bytes_up = USAGE_BYTES_MAX + 1, out);
    check(&|m| m.start_ms = Some(m.signed_ms), Ok(()));
    check(&|m| m.start_ms = Some(m.signed_ms + 1), out);
    check(&|m| m.start_ms = None, Ok(()));
}

/// The largest report the checks allow fits the kind's limit.
#[test]
fn the_worst_case_size_fits_the_limit() {
    let (mut r, c, _h) = sample();
    r.epoch = u64::MAX;
    r.seq = u64::MAX;
    r.bytes_down = USAGE_BYTES_MAX;
    r.bytes_up = USAGE_BYTES_MAX;
    r.signed_ms = u64::MAX;
    r.start_ms = Some(u64::MAX);
    let bytes = Envelope::sign(&c, &r).to_bytes();
    assert!(open(&bytes, &c).is_ok());
    assert!(bytes.len() <= Kind::CarrierReport.max_envelope_len());
    println!("largest carrier_report {} bytes", bytes.len());
}

/// A report is no proof (it never travels on MQTT) and carries no co-signer; its check is
/// what `open` runs.
#[test]
fn kind_and_limits() {
    use wisp_protocol::envelope::Message as _;
    assert_eq!(CarrierReport::KIND, Kind::CarrierReport);
    assert_eq!(Kind::CarrierReport.as_u8(), 14);
    assert_eq!(Kind::CarrierReport.max_cosigners(), 0);
    assert!(!Kind::CarrierReport.is_proof());
    let (r, c, _h) = sample();
    assert_eq!(
        envelope::open::<CarrierReport>(&Envelope::sign(&c, &r).to_bytes())
            .unwrap()
            .msg,
        r
    );
}
