//! Fuzz harnesses for wisp-protocol's decoders, shared by the targets in `fuzz_targets/` and
//! the seed generator in `examples/gen_seeds.rs`.
//!
//! Each harness takes untrusted bytes, runs a decoder on them and asserts properties that must
//! hold for *every* input, not only for inputs the encoder produced:
//!
//! - [`fuzz_envelope`]: framing, verification and decoding as the claimed kind never panic; the
//!   framing is canonical (rebuilding the owned [`Envelope`] from the parsed parts gives back
//!   the input); batch verification gives the single verdict, error included.
//! - [`fuzz_payload`]: when [`decode_canonical`] accepts a payload, re-encoding gives back the
//!   input (one message, one byte form), the structural checks do not panic, and the JSON form
//!   round-trips.
//! - [`fuzz_witness_beacon`]: the beacon bytes embedded in a witness, as the oracle opens them.
//! - [`fuzz_sealed_ack`]: a sealed ack as an agent opens it.
//!
//! [`samples`] holds realistic, valid messages of every kind for the seed corpora.

use std::fmt::Debug;

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{
    self, Cosignature, Envelope, EnvelopeError, EnvelopeRef, Message, decode_canonical,
    encode_payload,
};
use wisp_protocol::msg::{
    AckRoot, BandwidthReceipt, Beacon, CarrierReport, CreditGrant, EpochSeed, Heartbeat,
    MeasurerSet, Onboard, OracleClock, RewardManifest, StatusReport, UsageReceipt, Witness,
};
use wisp_protocol::{Kind, NodeId, NodeKey, ProofId};

/// Opens bytes as whatever kind they claim to be: parse, verification, canonical decode
/// and structural checks (the same helper as in `tests/properties.rs`).
pub fn open_any(bytes: &[u8]) -> Result<(), EnvelopeError> {
    let env = EnvelopeRef::parse(bytes)?;
    env.verify()?;
    decode_as_claimed(&env)
}

/// Decodes a parsed envelope's payload as its claimed kind (no signature check).
fn decode_as_claimed(env: &EnvelopeRef<'_>) -> Result<(), EnvelopeError> {
    match env.kind {
        Kind::Onboard => env.decode::<Onboard>().map(drop),
        Kind::EpochSeed => env.decode::<EpochSeed>().map(drop),
        Kind::Beacon => env.decode::<Beacon>().map(drop),
        Kind::Witness => env
            .decode::<Witness>()
            .and_then(|w| w.msg.open_beacon())
            .map(drop),
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

/// The `envelope` target.
pub fn fuzz_envelope(data: &[u8]) {
    let opened = open_any(data);
    let Ok(env) = EnvelopeRef::parse(data) else {
        assert!(opened.is_err(), "open_any accepted bytes that do not parse");
        return;
    };

    // The framing has one byte form: the owned envelope rebuilt from the parts is the input.
    let rebuilt = Envelope {
        version: wisp_protocol::VERSION,
        kind: env.kind,
        payload: env.payload.to_vec(),
        signer: env.signer_id(),
        signature: ByteArray(*env.signature),
        cosigners: env
            .signatures()
            .skip(1)
            .map(|(k, s)| Cosignature {
                signer: NodeId(*k),
                signature: ByteArray(*s),
            })
            .collect(),
    };
    assert_eq!(rebuilt.to_bytes(), data, "framing is not canonical");
    assert_eq!(env.proof_id(), ProofId::of(data));
    assert!(
        data.len() <= env.kind.max_envelope_len(),
        "parse ignored the {} size limit",
        env.kind
    );

    // One signature rule: the batch gives the single verdict, error included.
    let single = env.verify();
    assert_eq!(
        envelope::verify_batch(&[env]),
        vec![single.clone()],
        "batch and single verification disagree"
    );

    // A fuzzer almost never produces a valid signature, so decode the payload regardless, to
    // reach the decoders through the envelope too. It must not panic, whatever the signatures.
    let decoded = decode_as_claimed(&env);
    if single.is_ok() {
        assert_eq!(decoded, opened, "open_any disagrees with verify + decode");
    }
}

/// A payload target: canonical decode, then the properties every accepted payload must have.
/// `roles` picks the signer and co-signers for the structural checks (for a receipt, its
/// measurer and prover, so the checks get past the role rules).
pub fn fuzz_payload<M>(data: &[u8], roles: impl FnOnce(&M) -> (NodeId, Vec<NodeId>))
where
    M: Message + PartialEq + Debug,
{
    let Ok(msg) = decode_canonical::<M>(data) else {
        return;
    };
    assert_eq!(
        encode_payload(&msg),
        data,
        "decode_canonical accepted a non-canonical {}",
        M::KIND
    );

    let (signer, cosigners) = roles(&msg);
    let _ = msg.check(&signer, &cosigners);

    let json = serde_json::to_string(&msg).unwrap_or_else(|e| panic!("{} to JSON: {e}", M::KIND));
    let back: M =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{} from JSON {json}: {e}", M::KIND));
    assert_eq!(back, msg, "JSON round trip changed the {}", M::KIND);
}

/// The `ack` target: a sealed ack ([`wisp_protocol::msg::open_sealed_ack`]) never panics; when
/// it opens, the ack passes its checks and its canonical bytes end the input.
pub fn fuzz_sealed_ack(data: &[u8]) {
    let Ok(opened) = wisp_protocol::msg::open_sealed_ack(data) else {
        return;
    };
    assert!(
        opened.ack.check().is_ok(),
        "an opened ack breaks its checks"
    );
    assert!(
        data.ends_with(&encode_payload(&opened.ack)),
        "an opened ack is not the canonical tail of its bytes"
    );
}

/// A signer for payload checks that is nobody in particular.
pub fn outsider() -> NodeId {
    NodeId([0x5a; 32])
}

/// The `witness_beacon` target: `data` is the beacon envelope a witness embeds.
pub fn fuzz_witness_beacon(data: &[u8]) {
    let w = Witness {
        beacon: data.to_vec(),
        rssi: wisp_protocol::units::DeciDb(-700),
        snr: wisp_protocol::units::DeciDb(100),
        freq_khz: 2_412_000,
        rx_ms: 1_790_000_000_000,
        cell: samples::cell(),
    };
    let checked = w.check(&outsider(), &[]);
    let opened = w.open_beacon();
    if opened.is_ok() {
        // A beacon that opens is one the structural check lets through (bar a self-witness,
        // which the outsider signer is not).
        assert_eq!(
            checked,
            Ok(()),
            "beacon opens but the witness check refuses it"
        );
    }
}

/// Realistic, valid messages of every kind, signed with fixed keys (the seed corpora).
pub mod samples {
    use wisp_protocol::Cell;
    use wisp_protocol::msg::*;
    use wisp_protocol::reason::Reason;
    use wisp_protocol::units::DeciDb;

    use super::*;

    /// The fixed key number `n`.
    pub fn key(n: u8) -> NodeKey {
        NodeKey::from_seed(&[n; 32])
    }

    /// A resolution-12 cell in Paris.
    pub fn cell() -> Cell {
        Cell::from_degrees(48.8530, 2.3499, 12).unwrap_or_else(|e| unreachable!("valid cell: {e}"))
    }

    /// A GNSS fix near the cell.
    pub fn fix() -> GnssFix {
        GnssFix {
            lat_e7: 488_530_000,
            lon_e7: 23_499_000,
            alt_mm: 35_200,
            hdop_centi: 92,
            satellites: 11,
            utc_ms: 1_790_000_000_000,
        }
    }

    /// An onboard, with or without a secure-element attestation.
    pub fn onboard(attested: bool) -> Onboard {
        Onboard {
            owner: "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU".into(),
            cell: cell(),
            antenna_gain: DeciDb(55),
            antenna_height_dm: 120,
            bands: vec![
                Band {
                    low_khz: 2_400_000,
                    high_khz: 2_483_500,
                    max_eirp: DeciDb(200),
                },
                Band {
                    low_khz: 5_150_000,
                    high_khz: 5_350_000,
                    max_eirp: DeciDb(230),
                },
            ],
            measurer: true,
            issued_ms: 1_790_000_000_000,
            attestation: attested.then(|| Attestation {
                maker: "AcmeRadio".into(),
                serial: ByteArray([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01]),
                device_key: ByteArray([0x11; 64]),
                device_sig: ByteArray([0x22; 64]),
                maker_sig: ByteArray([0x33; 64]),
            }),
        }
    }

    /// An epoch seed with the default parameters.
    pub fn epoch_seed(epoch: u64) -> EpochSeed {
        EpochSeed {
            epoch,
            start_ms: 1_790_000_000_000 + epoch * 3_600_000,
            duration_ms: 3_600_000,
            seed: ByteArray([0x42; 32]),
            params: EpochParams::default(),
        }
    }

    /// A beacon on 5 GHz.
    pub fn beacon(epoch: u64) -> Beacon {
        Beacon {
            epoch,
            nonce: ByteArray([0x9c; 16]),
            freq_khz: 5_180_000,
            width_mhz: 80,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(55),
            cell: cell(),
            tx_ms: 1_790_000_030_000,
        }
    }

    /// A witness of `beaconer`'s beacon.
    pub fn witness(beaconer: &NodeKey) -> Witness {
        Witness {
            beacon: Envelope::sign(beaconer, &beacon(7)).to_bytes(),
            rssi: DeciDb(-853),
            snr: DeciDb(124),
            freq_khz: 5_180_000,
            rx_ms: 1_790_000_030_004,
            cell: Cell::from_degrees(48.8570, 2.3522, 12)
                .unwrap_or_else(|e| unreachable!("valid cell: {e}")),
        }
    }

    /// A receipt: measured (to be co-signed by the prover) or failed.
    pub fn receipt(measurer: &NodeKey, prover: &NodeKey, measured: bool) -> BandwidthReceipt {
        BandwidthReceipt {
            test_id: ByteArray([0x7e; 16]),
            epoch: 7,
            prover: prover.id(),
            measurer: measurer.id(),
            direction: Direction::Down,
            outcome: if measured {
                Outcome::Measured(Measurement {
                    bytes: 187_500_000,
                    duration_ms: 15_000,
                    median_bps: 100_000_000,
                    p10_bps: 91_000_000,
                    rtt_idle_us: 12_400,
                    rtt_loaded_us: 38_900,
                })
            } else {
                Outcome::Failed(BwFailure::Timeout)
            },
        }
    }

    /// A heartbeat, with or without a GNSS fix.
    pub fn heartbeat(seq: u64, with_fix: bool) -> Heartbeat {
        Heartbeat {
            epoch: 7,
            seq,
            uptime_s: 86_400 + seq * 300,
            sent_ms: 1_790_000_000_000 + seq * 300_000,
            fix: with_fix.then(fix),
            cell: Some(cell()),
            versions: Versions::new("0.1.0", "openwrt-23.05-mt7621"),
            peers: 12,
        }
    }

    /// A signed ack root over `leaves` acks.
    pub fn ack_root(leaves: u32) -> AckRoot {
        AckRoot {
            issued_ms: 1_790_000_100_000,
            leaves,
            root: ByteArray(distinct_id(leaves as usize)),
        }
    }

    /// An ack of `n` proofs, every fourth rejected.
    pub fn ack(node: NodeId, n: usize) -> Ack {
        Ack {
            node,
            issued_ms: 1_790_000_100_000,
            entries: (0..n)
                .map(|i| AckEntry {
                    proof_id: ProofId(ByteArray(distinct_id(i))),
                    verdict: if i % 4 == 3 {
                        Verdict::Rejected(Reason::BadSignature)
                    } else {
                        Verdict::Accepted
                    },
                })
                .collect(),
        }
    }

    /// Distinct 32-byte ids without a hash dependency.
    fn distinct_id(i: usize) -> [u8; 32] {
        let mut b = [0xa5u8; 32];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b
    }

    /// A status report that lists `witnesses` witnesses; with any, it also shows a last
    /// bandwidth test (whose upload failed).
    pub fn status(witnesses: u8) -> StatusReport {
        StatusReport {
            epoch: Some(7),
            sent_ms: 1_790_000_200_000,
            uptime_s: 86_400,
            versions: Versions::new("0.1.0", "openwrt-23.05-mt7621"),
            cell: Some(cell()),
            fix: Some(fix()),
            outbox_depth: 3,
            oldest_unacked_ms: Some(1_790_000_000_000),
            last_ack_ms: Some(1_790_000_100_000),
            last_beacon_ms: Some(1_790_000_030_000),
            last_witness_ms: Some(1_790_000_031_000),
            last_heartbeat_ms: None,
            broker_connected: true,
            peers: 12,
            health: DeviceHealth {
                gnss_ok: true,
                radio_ok: true,
                secure_element_ok: false,
            },
            witnessed_by: (0..witnesses).map(|i| key(100 + i).id()).collect(),
            backhaul: (witnesses > 0).then(|| BackhaulSummary {
                measurer: key(3).id(),
                epoch: 7,
                measured_ms: 1_790_000_090_000,
                down_bps: Some(94_000_000),
                up_bps: None,
                rtt_idle_us: Some(12_400),
                rtt_loaded_us: Some(41_000),
                outcome: BackhaulOutcome::Failed(BwFailure::Timeout),
            }),
        }
    }

    /// A usage receipt of `subscriber`'s session with `hotspot` (to be co-signed by the
    /// hotspot), with or without a start time.
    pub fn usage_receipt(subscriber: &NodeKey, hotspot: &NodeKey, started: bool) -> UsageReceipt {
        UsageReceipt {
            session: ByteArray([0x5e; 16]),
            hotspot: hotspot.id(),
            subscriber: wisp_protocol::SubscriberId::of(subscriber),
            epoch: 7,
            seq: 12,
            bytes_down: 52_428_800,
            bytes_up: 3_145_728,
            signed_ms: 1_790_000_060_000,
            start_ms: started.then_some(1_790_000_000_000),
        }
    }

    /// A report by `carrier` of a session on `hotspot`, with or without a start time.
    pub fn carrier_report(carrier: &NodeKey, hotspot: &NodeKey, started: bool) -> CarrierReport {
        CarrierReport {
            session: ByteArray([0xca; 16]),
            hotspot: hotspot.id(),
            carrier: carrier.id(),
            epoch: 7,
            seq: 3,
            bytes_down: 104_857_600,
            bytes_up: 10_485_760,
            signed_ms: 1_790_000_060_000,
            start_ms: started.then_some(1_790_000_000_000),
        }
    }

    /// A grant of one million data credits to `subscriber`.
    pub fn credit_grant(subscriber: &NodeKey, memo: &str) -> CreditGrant {
        CreditGrant {
            grant: ByteArray([0x61; 16]),
            subscriber: wisp_protocol::SubscriberId::of(subscriber),
            amount_dc: 1_000_000,
            issued_ms: 1_790_000_000_000,
            memo: memo.into(),
        }
    }

    /// One manifest page of `n` entries, sorted by node id.
    pub fn manifest(n: usize) -> RewardManifest {
        let mut entries: Vec<RewardEntry> = (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                id[8..].fill(0x3c);
                RewardEntry {
                    node: NodeId(id),
                    owner: format!("owner{i:040}"),
                    amount: 1_000 + 400 + 400 + 200,
                    coverage: 1_000,
                    backhaul: 400,
                    uptime: 400,
                    usage: 200,
                }
            })
            .collect();
        entries.sort_by_key(|e| e.node);
        RewardManifest {
            epoch: 7,
            emission: 2_000 * n as u64,
            entry_count: u32::try_from(n).unwrap_or(u32::MAX),
            root: ByteArray([0x77; 32]),
            page: 0,
            page_count: 1,
            entries,
        }
    }
}
