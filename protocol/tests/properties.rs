//! Property tests over every message kind: round trips, tamper detection, domain separation and
//! canonical form.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use proptest::prelude::*;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{
    self, Envelope, EnvelopeError, EnvelopeRef, Message, encode_payload, signed_bytes,
};
use wisp_protocol::msg::*;
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeId, NodeKey, Reason};

fn key() -> impl Strategy<Value = NodeKey> {
    any::<[u8; 32]>().prop_map(|s| NodeKey::from_seed(&s))
}

fn node_id() -> impl Strategy<Value = NodeId> {
    key().prop_map(|k| k.id())
}

fn cell() -> impl Strategy<Value = Cell> {
    (-89.9f64..89.9, -179.9f64..179.9, 0u8..=15)
        .prop_map(|(lat, lon, r)| Cell::from_degrees(lat, lon, r).unwrap())
}

fn db() -> impl Strategy<Value = DeciDb> {
    any::<i16>().prop_map(DeciDb)
}

fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).unwrap()
}

fn versions() -> impl Strategy<Value = Versions> {
    (printable(32), printable(32)).prop_map(|(agent, firmware)| Versions { agent, firmware })
}

fn fix() -> impl Strategy<Value = GnssFix> {
    (
        -900_000_000i32..=900_000_000,
        -1_800_000_000i32..=1_800_000_000,
        any::<i32>(),
        any::<u16>(),
        any::<u8>(),
        any::<u64>(),
    )
        .prop_map(
            |(lat_e7, lon_e7, alt_mm, hdop_centi, satellites, utc_ms)| GnssFix {
                lat_e7,
                lon_e7,
                alt_mm,
                hdop_centi,
                satellites,
                utc_ms,
            },
        )
}

fn beacon() -> impl Strategy<Value = Beacon> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<u16>(),
        db(),
        db(),
        cell(),
        any::<u64>(),
    )
        .prop_map(
            |(epoch, nonce, freq_khz, width_mhz, tx_power, antenna_gain, cell, tx_ms)| Beacon {
                epoch,
                nonce: nonce.into(),
                freq_khz,
                width_mhz,
                tx_power,
                antenna_gain,
                cell,
                tx_ms,
            },
        )
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(fix()),
        proptest::option::of(cell()),
        versions(),
        any::<u16>(),
    )
        .prop_map(
            |(epoch, seq, uptime_s, sent_ms, fix, cell, versions, peers)| Heartbeat {
                epoch,
                seq,
                uptime_s,
                sent_ms,
                fix,
                cell,
                versions,
                peers,
            },
        )
}

fn band() -> impl Strategy<Value = Band> {
    (0u32..u32::MAX, 1u32..1_000_000, db()).prop_map(|(low, width, max_eirp)| Band {
        low_khz: low,
        high_khz: low.saturating_add(width).max(low + 1),
        max_eirp,
    })
}

fn onboard() -> impl Strategy<Value = Onboard> {
    let attestation = (
        "[A-Za-z0-9 ]{1,32}",
        any::<[u8; 9]>(),
        prop::collection::vec(any::<u8>(), 192),
    )
        .prop_map(|(maker, serial, b)| Attestation {
            maker,
            serial: serial.into(),
            device_key: ByteArray(b[..64].try_into().unwrap()),
            device_sig: ByteArray(b[64..128].try_into().unwrap()),
            maker_sig: ByteArray(b[128..].try_into().unwrap()),
        });
    (
        "[A-Za-z0-9._:-]{1,64}",
        cell(),
        (-100i16..=300).prop_map(DeciDb),
        0u16..=5000,
        prop::collection::vec(band(), 1..=8),
        any::<u64>(),
        proptest::option::of(attestation),
        any::<bool>(),
    )
        .prop_map(
            |(
                owner,
                cell,
                antenna_gain,
                antenna_height_dm,
                bands,
                issued_ms,
                attestation,
                measurer,
            )| {
                Onboard {
                    owner,
                    cell,
                    antenna_gain,
                    antenna_height_dm,
                    bands,
                    measurer,
                    issued_ms,
                    attestation,
                }
            },
        )
}

fn epoch_seed() -> impl Strategy<Value = EpochSeed> {
    (
        any::<u64>(),
        0u64..u64::MAX / 2,
        1_000u64..u64::MAX / 4,
        any::<[u8; 32]>(),
        1u32..1000,
        any::<u16>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(epoch, start_ms, duration_ms, seed, slot_count, witness_limit, m, hb, settle)| {
                EpochSeed {
                    epoch,
                    start_ms,
                    duration_ms,
                    seed: seed.into(),
                    params: EpochParams {
                        slot_count,
                        witness_limit,
                        measurers_per_prover: m,
                        heartbeat_interval_ms: hb,
                        settle_ms: settle,
                    },
                }
            },
        )
}

fn ack() -> impl Strategy<Value = Ack> {
    let verdict = prop_oneof![
        Just(Verdict::Accepted),
        prop::sample::select(Reason::ALL.to_vec()).prop_map(Verdict::Rejected),
        any::<u16>().prop_map(|c| Verdict::Rejected(Reason::from_code(c))),
    ];
    (
        node_id(),
        any::<u64>(),
        prop::collection::btree_map(any::<[u8; 32]>(), verdict, 1..=ACK_MAX_ENTRIES),
    )
        .prop_map(|(node, issued_ms, entries)| Ack {
            node,
            issued_ms,
            entries: entries
                .into_iter()
                .map(|(id, verdict)| AckEntry {
                    proof_id: wisp_protocol::ProofId(id.into()),
                    verdict,
                })
                .collect(),
        })
}

fn ack_root() -> impl Strategy<Value = AckRoot> {
    (any::<u64>(), 1..=ACK_BATCH_MAX, any::<[u8; 32]>()).prop_map(|(issued_ms, leaves, root)| {
        AckRoot {
            issued_ms,
            leaves,
            root: ByteArray(root),
        }
    })
}

/// A last bandwidth test as a status report shows it: an `ok` one has a rate.
fn backhaul() -> impl Strategy<Value = BackhaulSummary> {
    let outcome = prop_oneof![
        Just(BackhaulOutcome::Ok),
        Just(BackhaulOutcome::Failed(BwFailure::Timeout)),
        Just(BackhaulOutcome::Failed(BwFailure::Refused)),
        Just(BackhaulOutcome::Incomplete),
    ];
    (
        node_id(),
        any::<u64>(),
        any::<u64>(),
        any::<(u64, u64)>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        outcome,
        any::<[bool; 2]>(),
    )
        .prop_map(
            |(measurer, epoch, measured_ms, (down, up), idle, loaded, outcome, have)| {
                let ok = outcome == BackhaulOutcome::Ok;
                BackhaulSummary {
                    measurer,
                    epoch,
                    measured_ms,
                    down_bps: (ok || have[0]).then_some(down),
                    up_bps: have[1].then_some(up),
                    rtt_idle_us: idle,
                    rtt_loaded_us: loaded,
                    outcome,
                }
            },
        )
}

fn status() -> impl Strategy<Value = StatusReport> {
    (
        (
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            any::<u64>(),
            versions(),
            proptest::option::of(cell()),
            proptest::option::of(fix()),
            any::<u32>(),
            prop::array::uniform5(proptest::option::of(any::<u64>())),
            any::<bool>(),
            any::<u16>(),
            any::<[bool; 3]>(),
            prop::collection::vec(node_id(), 0..=4),
        ),
        proptest::option::of(backhaul()),
    )
        .prop_map(
            |(
                (
                    epoch,
                    sent_ms,
                    uptime_s,
                    versions,
                    cell,
                    fix,
                    depth,
                    times,
                    broker,
                    peers,
                    h,
                    witnessed_by,
                ),
                backhaul,
            )| StatusReport {
                epoch,
                sent_ms,
                uptime_s,
                versions,
                cell,
                fix,
                outbox_depth: depth,
                oldest_unacked_ms: times[0],
                last_ack_ms: times[1],
                last_beacon_ms: times[2],
                last_witness_ms: times[3],
                last_heartbeat_ms: times[4],
                broker_connected: broker,
                peers,
                health: DeviceHealth {
                    gnss_ok: h[0],
                    radio_ok: h[1],
                    secure_element_ok: h[2],
                },
                witnessed_by,
                backhaul,
            },
        )
}

fn manifest() -> impl Strategy<Value = RewardManifest> {
    let entry = (
        node_id(),
        "[A-Za-z0-9]{1,64}",
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(node, owner, c, b, u, g)| RewardEntry {
            node,
            owner,
            amount: u64::from(c) + u64::from(b) + u64::from(u) + u64::from(g),
            coverage: c.into(),
            backhaul: b.into(),
            uptime: u.into(),
            usage: g.into(),
        });
    (
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        0u32..3,
        prop::collection::vec(entry, 1..20),
    )
        .prop_map(|(epoch, emission, root, full_pages, mut entries)| {
            entries.sort_by_key(|e| e.node);
            entries.dedup_by_key(|e| e.node);
            // The last page of a manifest with `full_pages` full pages before it.
            let entry_count = full_pages * MANIFEST_PAGE_MAX as u32 + entries.len() as u32;
            RewardManifest {
                epoch,
                emission,
                entry_count,
                root: root.into(),
                page: full_pages,
                page_count: full_pages + 1,
                entries,
            }
        })
}

/// A signed witness, with the witness key and the beaconer key distinct.
fn witness_env() -> impl Strategy<Value = (Witness, NodeKey)> {
    (
        key(),
        key(),
        beacon(),
        db(),
        db(),
        any::<u32>(),
        any::<u64>(),
        cell(),
    )
        .prop_filter("distinct keys", |(w, b, ..)| w.id() != b.id())
        .prop_map(|(wk, bk, b, rssi, snr, freq_khz, rx_ms, cell)| {
            let beacon = Envelope::sign(&bk, &b).to_bytes();
            (
                Witness {
                    beacon,
                    rssi,
                    snr,
                    freq_khz,
                    rx_ms,
                    cell,
                },
                wk,
            )
        })
}

fn receipt_env() -> impl Strategy<Value = Envelope> {
    let outcome = prop_oneof![
        (
            any::<u64>(),
            1u32..,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(bytes, d, a, b, i, l)| {
                Outcome::Measured(Measurement {
                    bytes,
                    duration_ms: d,
                    median_bps: a.max(b),
                    p10_bps: a.min(b),
                    rtt_idle_us: i,
                    rtt_loaded_us: l,
                })
            }),
        prop::sample::select(vec![
            BwFailure::Refused,
            BwFailure::Timeout,
            BwFailure::BadContent,
            BwFailure::Truncated,
            BwFailure::Transport
        ])
        .prop_map(Outcome::Failed),
    ];
    (
        key(),
        key(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<bool>(),
        outcome,
    )
        .prop_filter("distinct keys", |(m, p, ..)| m.id() != p.id())
        .prop_map(|(m, p, test_id, epoch, up, outcome)| {
            let r = BandwidthReceipt {
                test_id: test_id.into(),
                epoch,
                prover: p.id(),
                measurer: m.id(),
                direction: if up { Direction::Up } else { Direction::Down },
                outcome,
            };
            let mut env = Envelope::sign(&m, &r);
            env.cosign(&p);
            env
        })
}

/// Any signed envelope of any kind, as wire bytes.
fn any_envelope() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (key(), onboard()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        (key(), epoch_seed()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        (key(), beacon()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        witness_env().prop_map(|(w, k)| Envelope::sign(&k, &w).to_bytes()),
        receipt_env().prop_map(|e| e.to_bytes()),
        (key(), heartbeat()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        (key(), ack_root()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        (key(), manifest()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
        (key(), status()).prop_map(|(k, m)| Envelope::sign(&k, &m).to_bytes()),
    ]
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug + Clone>(k: &NodeKey, m: &M) {
    let bytes = Envelope::sign(k, m).to_bytes();
    assert!(
        bytes.len() <= M::KIND.max_envelope_len(),
        "{} bytes for {}",
        bytes.len(),
        M::KIND
    );
    let opened = envelope::open::<M>(&bytes).unwrap();
    assert_eq!(&opened.msg, m);
    assert_eq!(opened.signer, k.id());
    // The JSON form (demo, HTTP) round-trips as well.
    let json = serde_json::to_string(m).unwrap();
    assert_eq!(&serde_json::from_str::<M>(&json).unwrap(), m);
}

/// Opens bytes as whatever kind they claim to be.
fn open_any(bytes: &[u8]) -> Result<(), EnvelopeError> {
    let env = EnvelopeRef::parse(bytes)?;
    env.verify()?;
    match env.kind {
        Kind::Onboard => env.decode::<Onboard>().map(drop),
        Kind::EpochSeed => env.decode::<EpochSeed>().map(drop),
        Kind::Beacon => env.decode::<Beacon>().map(drop),
        Kind::Witness => env.decode::<Witness>().map(drop),
        Kind::BandwidthReceipt => env.decode::<BandwidthReceipt>().map(drop),
        Kind::Heartbeat => env.decode::<Heartbeat>().map(drop),
        Kind::Ack => env.decode::<AckRoot>().map(drop),
        Kind::RewardManifest => env.decode::<RewardManifest>().map(drop),
        Kind::StatusReport => env.decode::<StatusReport>().map(drop),
        Kind::MeasurerSet => env.decode::<MeasurerSet>().map(drop),
        Kind::OracleClock => env.decode::<OracleClock>().map(drop),
        Kind::UsageReceipt => env.decode::<UsageReceipt>().map(drop),
        Kind::CreditGrant => env.decode::<CreditGrant>().map(drop),
        Kind::CarrierReport => env.decode::<CarrierReport>().map(drop),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn onboard_round_trips(k in key(), m in onboard()) { round_trip(&k, &m) }
    #[test]
    fn epoch_seed_round_trips(k in key(), m in epoch_seed()) { round_trip(&k, &m) }
    #[test]
    fn beacon_round_trips(k in key(), m in beacon()) { round_trip(&k, &m) }
    #[test]
    fn heartbeat_round_trips(k in key(), m in heartbeat()) { round_trip(&k, &m) }
    #[test]
    fn ack_root_round_trips(k in key(), m in ack_root()) { round_trip(&k, &m) }
    #[test]
    fn oracle_clock_round_trips(
        k in key(),
        now_ms in any::<u64>(),
        interval_ms in OracleClock::MIN_INTERVAL_MS..=OracleClock::MAX_INTERVAL_MS,
    ) {
        round_trip(&k, &OracleClock { now_ms, interval_ms })
    }

    /// Every sealed ack of a batch opens to its own ack under the signer's root; any one byte
    /// changed, or any byte cut off, and it does not open.
    #[test]
    fn sealed_acks_open_to_themselves_and_nothing_else(
        k in key(),
        acks in prop::collection::vec(ack(), 1..6),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let sealed = seal_acks(&k, 77, &acks);
        prop_assert_eq!(sealed.len(), acks.len());
        for (bytes, ack) in sealed.iter().zip(&acks) {
            let opened = open_sealed_ack(bytes).unwrap();
            prop_assert_eq!(opened.signer, k.id());
            prop_assert_eq!(&opened.ack, ack);
            prop_assert_eq!(opened.root.leaves as usize, acks.len());
            prop_assert_eq!(opened.root.issued_ms, 77);
        }
        let mut bad = sealed[pick.index(sealed.len())].clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(open_sealed_ack(&bad).is_err(), "byte {} changed and it still opened", i);
        let cut = &sealed[pick.index(sealed.len())];
        prop_assert!(open_sealed_ack(&cut[..at.index(cut.len())]).is_err());
    }
    #[test]
    fn manifest_round_trips(k in key(), m in manifest()) { round_trip(&k, &m) }
    #[test]
    fn status_round_trips(k in key(), m in status()) { round_trip(&k, &m) }

    #[test]
    fn witness_round_trips((w, k) in witness_env()) {
        round_trip(&k, &w);
        let inner = w.open_beacon().unwrap();
        prop_assert_ne!(inner.signer, k.id());
    }

    #[test]
    fn receipt_round_trips(env in receipt_env()) {
        let bytes = env.to_bytes();
        let opened = envelope::open::<BandwidthReceipt>(&bytes).unwrap();
        prop_assert_eq!(opened.signer, opened.msg.measurer);
        prop_assert_eq!(opened.cosigners, vec![opened.msg.prover]);
    }

    /// Any single flipped bit anywhere in an envelope makes it fail: in the framing (parse error),
    /// in the payload, the signer or a signature (verification error).
    #[test]
    fn any_bit_flip_is_detected(bytes in any_envelope(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        prop_assert!(open_any(&bytes).is_ok());
        let mut t = bytes.clone();
        let i = pos.index(t.len());
        t[i] ^= 1 << bit;
        prop_assert!(open_any(&t).is_err(), "flip at byte {} bit {} of {} accepted", i, bit, bytes.len());
    }

    /// A signature made for one kind never verifies as another kind over the same payload.
    #[test]
    fn signatures_do_not_cross_kinds(bytes in any_envelope(), other in prop::sample::select(Kind::ALL.to_vec())) {
        let env = EnvelopeRef::parse(&bytes).unwrap();
        prop_assume!(env.kind != other);
        let mut t = bytes.clone();
        t[1] = other.as_u8();
        // Either the framing refuses it (size, co-signers) or the signature fails.
        let verdict = EnvelopeRef::parse(&t).and_then(|e| e.verify());
        match verdict {
            Err(EnvelopeError::BadSignature { index: 0 })
            | Err(EnvelopeError::TooLarge { .. })
            | Err(EnvelopeError::Cosigners { .. }) => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// A payload with trailing bytes, properly signed, is still refused as non-canonical.
    #[test]
    fn trailing_payload_bytes_are_refused(k in key(), m in heartbeat(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let mut payload = encode_payload(&m);
        payload.extend_from_slice(&extra);
        let env = resign(&k, Kind::Heartbeat, payload);
        prop_assert_eq!(envelope::open::<Heartbeat>(&env).unwrap_err(), EnvelopeError::NonCanonical);
    }

    /// An over-long varint (the first field, padded with a redundant continuation byte),
    /// properly signed, is refused as non-canonical although postcard's decoder accepts it.
    #[test]
    fn overlong_varints_are_refused(k in key(), mut m in beacon()) {
        // A 10-byte varint (u64 ≥ 2^63) cannot be padded within postcard's limit.
        m.epoch %= 1 << 56;
        let payload = encode_payload(&m);
        let padded = pad_first_varint(&payload);
        prop_assert_eq!(postcard::from_bytes::<Beacon>(&padded).ok(), Some(m.clone()), "postcard itself accepts it");
        let env = resign(&k, Kind::Beacon, padded);
        prop_assert_eq!(envelope::open::<Beacon>(&env).unwrap_err(), EnvelopeError::NonCanonical);
    }

    /// An over-long payload length in the envelope framing is refused.
    #[test]
    fn overlong_length_prefix_is_refused(k in key(), m in heartbeat()) {
        let bytes = Envelope::sign(&k, &m).to_bytes();
        let padded = [&bytes[..2], &pad_first_varint(&bytes[2..])].concat();
        prop_assert_eq!(EnvelopeRef::parse(&padded).unwrap_err(), EnvelopeError::BadVarint);
    }

    /// The proof id is a function of the exact bytes.
    #[test]
    fn proof_id_is_blake3_of_bytes(bytes in any_envelope()) {
        let env = EnvelopeRef::parse(&bytes).unwrap();
        prop_assert_eq!(*env.proof_id().as_bytes(), *blake3::hash(&bytes).as_bytes());
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = open_any(&bytes);
    }
}

/// Signs arbitrary payload bytes as `kind`, bypassing the encoder.
fn resign(k: &NodeKey, kind: Kind, payload: Vec<u8>) -> Vec<u8> {
    let signature = k.sign_raw(&signed_bytes(kind, &payload));
    Envelope {
        version: 1,
        kind,
        payload,
        signer: k.id(),
        signature: ByteArray(signature),
        cosigners: vec![],
    }
    .to_bytes()
}

/// Re-encodes the varint at the start of `bytes` with one redundant byte (same value).
fn pad_first_varint(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|b| b & 0x80 == 0).unwrap();
    let mut out = bytes[..end].to_vec();
    out.push(bytes[end] | 0x80);
    out.push(0x00);
    out.extend_from_slice(&bytes[end + 1..]);
    out
}

#[test]
fn failed_receipt_may_lack_the_prover_but_a_measured_one_may_not() {
    let m = NodeKey::from_seed(&[1; 32]);
    let p = NodeKey::from_seed(&[2; 32]);
    let mut r = BandwidthReceipt {
        test_id: [0; 16].into(),
        epoch: 1,
        prover: p.id(),
        measurer: m.id(),
        direction: Direction::Down,
        outcome: Outcome::Failed(BwFailure::Refused),
    };
    assert!(envelope::open::<BandwidthReceipt>(&Envelope::sign(&m, &r).to_bytes()).is_ok());
    r.outcome = Outcome::Measured(Measurement {
        bytes: 1,
        duration_ms: 1,
        median_bps: 1,
        p10_bps: 1,
        rtt_idle_us: 1,
        rtt_loaded_us: 1,
    });
    let err = envelope::open::<BandwidthReceipt>(&Envelope::sign(&m, &r).to_bytes()).unwrap_err();
    assert_eq!(err.reason(), Reason::MissingCosignature);
    // Signed by the prover instead of the measurer.
    let err = envelope::open::<BandwidthReceipt>(&Envelope::sign(&p, &r).to_bytes()).unwrap_err();
    assert_eq!(err.reason(), Reason::SignerMismatch);
    // Co-signed by a third party.
    let mut env = Envelope::sign(&m, &r);
    env.cosign(&NodeKey::from_seed(&[3; 32]));
    assert_eq!(
        envelope::open::<BandwidthReceipt>(&env.to_bytes())
            .unwrap_err()
            .reason(),
        Reason::SignerMismatch
    );
    // Co-signed twice by the measurer.
    let mut env = Envelope::sign(&m, &r);
    env.cosign(&m);
    assert_eq!(
        envelope::open::<BandwidthReceipt>(&env.to_bytes()).unwrap_err(),
        EnvelopeError::DuplicateSigner
    );
}

#[test]
fn structural_checks_have_reasons() {
    let k = NodeKey::from_seed(&[1; 32]);
    let c = Cell::from_degrees(1.0, 1.0, 12).unwrap();
    let mut o = Onboard {
        owner: "owner-1".into(),
        cell: c,
        antenna_gain: DeciDb(30),
        antenna_height_dm: 100,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(200),
        }],
        measurer: true,
        issued_ms: 1,
        attestation: None,
    };
    let check = |o: &Onboard| {
        envelope::open::<Onboard>(&Envelope::sign(&k, o).to_bytes())
            .map(drop)
            .map_err(|e| e.reason())
    };
    assert_eq!(check(&o), Ok(()));
    o.owner = "bad owner!".into();
    assert_eq!(check(&o), Err(Reason::BadOwnerAddress));
    o.owner = "x".repeat(65);
    assert_eq!(check(&o), Err(Reason::BadOwnerAddress));
    o.owner = "ok".into();
    o.bands.clear();
    assert_eq!(check(&o), Err(Reason::FieldOutOfRange));
    o.bands = vec![Band {
        low_khz: 5,
        high_khz: 5,
        max_eirp: DeciDb(0),
    }];
    assert_eq!(check(&o), Err(Reason::FieldOutOfRange));
    o.bands = vec![Band {
        low_khz: 5,
        high_khz: 6,
        max_eirp: DeciDb(0),
    }];
    o.antenna_gain = DeciDb(301);
    assert_eq!(check(&o), Err(Reason::FieldOutOfRange));

    // A witness of its own beacon.
    let b = Envelope::sign(
        &k,
        &Beacon {
            epoch: 1,
            nonce: [0; 16].into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell: c,
            tx_ms: 5,
        },
    )
    .to_bytes();
    let w = Witness {
        beacon: b.clone(),
        rssi: DeciDb(-700),
        snr: DeciDb(100),
        freq_khz: 2_412_000,
        rx_ms: 6,
        cell: c,
    };
    let err = envelope::open::<Witness>(&Envelope::sign(&k, &w).to_bytes()).unwrap_err();
    assert_eq!(err.reason(), Reason::SelfWitness);
    // A witness embedding something that is not a beacon.
    let hb_env = Envelope::sign(
        &k,
        &Heartbeat {
            epoch: 1,
            seq: 1,
            uptime_s: 1,
            sent_ms: 1,
            fix: None,
            cell: None,
            versions: Versions::new("a", "b"),
            peers: 0,
        },
    )
    .to_bytes();
    let w2 = Witness {
        beacon: hb_env,
        ..w
    };
    let other = NodeKey::from_seed(&[2; 32]);
    let err = envelope::open::<Witness>(&Envelope::sign(&other, &w2).to_bytes()).unwrap_err();
    assert_eq!(err.reason(), Reason::BeaconInvalid);

    // Ack: empty, duplicate ids.
    let a = Ack {
        node: k.id(),
        issued_ms: 1,
        entries: vec![],
    };
    assert_eq!(a.check().unwrap_err().reason(), Reason::FieldOutOfRange);
    let e = AckEntry {
        proof_id: wisp_protocol::ProofId([1; 32].into()),
        verdict: Verdict::Accepted,
    };
    let a = Ack {
        node: k.id(),
        issued_ms: 1,
        entries: vec![e, e],
    };
    assert_eq!(a.check().unwrap_err().reason(), Reason::FieldOutOfRange);
}

#[test]
fn manifest_pages_must_agree_with_the_entry_count() {
    let k = NodeKey::from_seed(&[1; 32]);
    let entry = |i: u8| RewardEntry {
        node: NodeKey::from_seed(&[i; 32]).id(),
        owner: "o".into(),
        amount: 4,
        coverage: 1,
        backhaul: 1,
        uptime: 1,
        usage: 1,
    };
    let mut entries: Vec<RewardEntry> = (1..=3).map(entry).collect();
    entries.sort_by_key(|e| e.node);
    let m = RewardManifest {
        epoch: 1,
        emission: 9,
        entry_count: 3,
        root: [0; 32].into(),
        page: 0,
        page_count: 1,
        entries,
    };
    let check = |m: &RewardManifest| {
        envelope::open::<RewardManifest>(&Envelope::sign(&k, m).to_bytes())
            .map(drop)
            .map_err(|e| e.reason())
    };
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        check(&RewardManifest {
            page_count: 0,
            ..m.clone()
        }),
        Err(Reason::FieldOutOfRange)
    );
    assert_eq!(
        check(&RewardManifest {
            page_count: 2,
            ..m.clone()
        }),
        Err(Reason::FieldOutOfRange)
    );
    assert_eq!(
        check(&RewardManifest {
            entry_count: 4,
            ..m.clone()
        }),
        Err(Reason::FieldOutOfRange)
    );
    // Page 1 of a 1027-entry manifest holds 3 entries; page 0 of it must hold 1024.
    assert_eq!(
        check(&RewardManifest {
            entry_count: 1030,
            page: 1,
            page_count: 2,
            ..m.clone()
        }),
        Err(Reason::FieldOutOfRange)
    );
    assert_eq!(
        check(&RewardManifest {
            entry_count: 1027,
            page: 1,
            page_count: 2,
            ..m.clone()
        }),
        Ok(())
    );
    assert_eq!(
        check(&RewardManifest {
            entry_count: 1027,
            page: 0,
            page_count: 2,
            ..m.clone()
        }),
        Err(Reason::FieldOutOfRange)
    );
    // An empty manifest is one empty page.
    assert_eq!(
        check(&RewardManifest {
            entry_count: 0,
            entries: vec![],
            ..m.clone()
        }),
        Ok(())
    );
}

#[test]
fn beacon_envelope_fits_a_vendor_ie_with_worst_case_fields() {
    let k = NodeKey::from_seed(&[1; 32]);
    let b = Beacon {
        epoch: u64::MAX,
        nonce: [0xff; 16].into(),
        freq_khz: u32::MAX,
        width_mhz: u16::MAX,
        tx_power: DeciDb(i16::MIN),
        antenna_gain: DeciDb(i16::MIN),
        cell: Cell::from_degrees(-89.0, -179.0, 15).unwrap(),
        tx_ms: u64::MAX,
    };
    let len = Envelope::sign(&k, &b).to_bytes().len();
    assert!(len <= wisp_protocol::kind::MAX_BEACON_LEN, "{len}");
}

/// A status report with every field at its largest, a last bandwidth test included.
fn largest_status() -> StatusReport {
    StatusReport {
        epoch: Some(u64::MAX),
        sent_ms: u64::MAX,
        uptime_s: u64::MAX,
        versions: Versions::new(&"v".repeat(32), &"f".repeat(32)),
        cell: Some(Cell::from_degrees(-89.0, -179.0, 15).unwrap()),
        fix: Some(GnssFix {
            lat_e7: -900_000_000,
            lon_e7: -1_800_000_000,
            alt_mm: i32::MIN,
            hdop_centi: u16::MAX,
            satellites: u8::MAX,
            utc_ms: u64::MAX,
        }),
        outbox_depth: u32::MAX,
        oldest_unacked_ms: Some(u64::MAX),
        last_ack_ms: Some(u64::MAX),
        last_beacon_ms: Some(u64::MAX),
        last_witness_ms: Some(u64::MAX),
        last_heartbeat_ms: Some(u64::MAX),
        broker_connected: true,
        peers: u16::MAX,
        health: DeviceHealth::default(),
        witnessed_by: (0..STATUS_WITNESSES_MAX as u8)
            .map(|i| NodeKey::from_seed(&[i.wrapping_add(100); 32]).id())
            .collect(),
        backhaul: Some(BackhaulSummary {
            measurer: NodeKey::from_seed(&[0xfe; 32]).id(),
            epoch: u64::MAX,
            measured_ms: u64::MAX,
            down_bps: Some(u64::MAX),
            up_bps: Some(u64::MAX),
            rtt_idle_us: Some(u32::MAX),
            rtt_loaded_us: Some(u32::MAX),
            outcome: BackhaulOutcome::Ok,
        }),
    }
}

#[test]
fn the_largest_status_report_fits_its_kind() {
    let k = NodeKey::from_seed(&[1; 32]);
    let bytes = Envelope::sign(&k, &largest_status()).to_bytes();
    assert!(
        bytes.len() <= Kind::StatusReport.max_envelope_len(),
        "{}",
        bytes.len()
    );
    assert!(envelope::open::<StatusReport>(&bytes).is_ok());
}

#[test]
fn a_status_reports_last_bandwidth_test_is_checked() {
    let k = NodeKey::from_seed(&[1; 32]);
    let check = |s: &StatusReport| {
        envelope::open::<StatusReport>(&Envelope::sign(&k, s).to_bytes())
            .map(drop)
            .map_err(|e| e.reason())
    };
    let mut s = largest_status();
    assert_eq!(check(&s), Ok(()));
    let b = s.backhaul.as_mut().unwrap();
    b.up_bps = None;
    assert_eq!(check(&s), Ok(()), "a test of the download only");
    let b = s.backhaul.as_mut().unwrap();
    b.down_bps = None;
    assert_eq!(check(&s), Err(Reason::FieldOutOfRange), "ok without a rate");
    let b = s.backhaul.as_mut().unwrap();
    b.outcome = BackhaulOutcome::Failed(BwFailure::Timeout);
    assert_eq!(check(&s), Ok(()), "a failed test has no rate");
    let b = s.backhaul.as_mut().unwrap();
    b.measurer = k.id();
    assert_eq!(check(&s), Err(Reason::SignerMismatch), "measured itself");
    s.backhaul = None;
    assert_eq!(check(&s), Ok(()));
}
