//! Bytes on the wire of every message a hotspot and the oracle exchange over MQTT, with the
//! MQTT 3.1.1 framing around each (the agent's client, rumqttc, speaks 3.1.1).
//!
//! `cargo run -p wisp-protocol --example sizes` signs each message as the agent or the oracle
//! would (realistic field values, the keys of the test vectors), opens it again as the oracle
//! does, and prints a Markdown table: envelope bytes, signatures to verify, and the MQTT
//! `PUBLISH` packet that carries it (fixed header, topic, packet id for QoS 1). docs/SCALE.md
//! uses these figures. Output is deterministic.
#![allow(clippy::print_stdout)]

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope, Message};
use wisp_protocol::msg::{
    Ack, AckEntry, Attestation, Band, BandwidthReceipt, Beacon, CarrierReport, CreditGrant,
    Direction, EpochParams, EpochSeed, GnssFix, Heartbeat, MEASURER_SET_PART_MAX, Measurement,
    MeasurerSet, OracleClock, Outcome, RewardEntry, RewardManifest, UsageReceipt, Verdict,
    Versions, Witness, open_sealed_ack, seal_acks,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId, NodeKey, ProofId, SubscriberId, topics};

/// A PUBLISH packet's length in MQTT 3.1.1: fixed header byte, remaining length (1–4 bytes),
/// topic (2-byte length + name), packet id (QoS 1 and 2 only), payload.
fn publish_len(topic: &str, payload: usize, qos1: bool) -> usize {
    let rest = 2 + topic.len() + if qos1 { 2 } else { 0 } + payload;
    let len_bytes = match rest {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_bytes + rest
}

/// The `PUBACK` a QoS 1 `PUBLISH` is answered with: 2 bytes of header, 2 of packet id.
const PUBACK_LEN: usize = 4;

fn key(n: u8) -> NodeKey {
    NodeKey::from_seed(&[n; 32])
}

fn cell(lat: f64, lon: f64) -> Cell {
    Cell::from_degrees(lat, lon, 12).expect("valid coordinates")
}

fn row(what: &str, bytes: usize, sigs: usize, topic: &str, qos1: bool) {
    let publish = publish_len(topic, bytes, qos1);
    println!(
        "| {what} | {bytes} | {sigs} | `{}` | {publish} | {} |",
        topic.replace(&key(1).id().to_string(), "{peer_id}"),
        publish - bytes
    );
}

/// Signs `msg` (and co-signs it), checks that it opens as the oracle opens it, returns its bytes.
fn signed<M: Message>(signer: &NodeKey, msg: &M, cosigner: Option<&NodeKey>) -> Vec<u8> {
    let mut env = Envelope::sign(signer, msg);
    if let Some(c) = cosigner {
        env.cosign(c);
    }
    let bytes = env.to_bytes();
    if let Err(e) = envelope::open::<M>(&bytes) {
        panic!("a {} does not open: {e}", M::KIND.name());
    }
    bytes
}

fn main() {
    let (node, other, oracle) = (key(1), key(2), key(9));
    let proofs = topics::proofs(&node.id());
    let t0: u64 = 1_795_000_000_000;
    let here = cell(48.8530, 2.3499);
    let fix = GnssFix {
        lat_e7: 488_530_000,
        lon_e7: 23_499_000,
        alt_mm: 35_200,
        hdop_centi: 92,
        satellites: 11,
        utc_ms: t0,
    };

    let beacon = Beacon {
        epoch: 493_055,
        nonce: ByteArray([0x9c; 16]),
        freq_khz: 2_412_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(30),
        cell: here,
        tx_ms: t0 + 1_830_250,
    };
    let beacon_bytes = signed(&node, &beacon, None);
    let witness = Witness {
        beacon: beacon_bytes.clone(),
        rssi: DeciDb(-853),
        snr: DeciDb(124),
        freq_khz: 2_412_000,
        rx_ms: t0 + 1_830_254,
        cell: cell(48.8570, 2.3522),
    };
    let heartbeat = |fix: Option<GnssFix>| Heartbeat {
        epoch: 493_055,
        seq: 104_233,
        uptime_s: 2_592_000,
        sent_ms: t0 + 900_000,
        fix,
        cell: Some(here),
        versions: Versions::new("0.1.0", "openwrt-23.05-mt7621"),
        peers: 12,
    };
    let receipt = |direction| BandwidthReceipt {
        test_id: ByteArray([0x7e; 16]),
        epoch: 493_055,
        prover: node.id(),
        measurer: other.id(),
        direction,
        outcome: Outcome::Measured(Measurement {
            bytes: 62_500_000,
            duration_ms: 5_000,
            median_bps: 104_000_000,
            p10_bps: 96_000_000,
            rtt_idle_us: 12_400,
            rtt_loaded_us: 38_900,
        }),
    };
    let onboard = |attested: bool| wisp_protocol::msg::Onboard {
        owner: "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU".into(),
        cell: here,
        antenna_gain: DeciDb(30),
        antenna_height_dm: 120,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(200),
        }],
        measurer: true,
        issued_ms: t0,
        attestation: attested.then(|| Attestation {
            maker: "AcmeRadio".into(),
            serial: ByteArray([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01]),
            device_key: ByteArray([0x11; 64]),
            device_sig: ByteArray([0x22; 64]),
            maker_sig: ByteArray([0x33; 64]),
        }),
    };

    println!(
        "Proofs, agent → oracle, QoS 1 on `{}`:\n",
        topics::PROOFS_FILTER
    );
    println!(
        "| message | envelope bytes | ed25519 signatures in it | topic | PUBLISH bytes | MQTT overhead |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    row(
        "beacon (over the air, and inside each witness)",
        beacon_bytes.len(),
        1,
        &proofs,
        true,
    );
    row(
        "witness (embeds the beacon)",
        signed(&other, &witness, None).len(),
        2,
        &proofs,
        true,
    );
    row(
        "heartbeat with a GNSS fix",
        signed(&node, &heartbeat(Some(fix)), None).len(),
        1,
        &proofs,
        true,
    );
    row(
        "heartbeat without a fix",
        signed(&node, &heartbeat(None), None).len(),
        1,
        &proofs,
        true,
    );
    let down = signed(&other, &receipt(Direction::Down), Some(&node));
    let up = signed(&other, &receipt(Direction::Up), Some(&node));
    assert_eq!(down.len(), up.len(), "both directions encode alike");
    row(
        "bandwidth receipt, measured, co-signed",
        down.len(),
        2,
        &proofs,
        true,
    );
    row(
        "onboard with attestation",
        signed(&node, &onboard(true), None).len(),
        1,
        &proofs,
        true,
    );
    row(
        "onboard without attestation",
        signed(&node, &onboard(false), None).len(),
        1,
        &proofs,
        true,
    );
    let subscriber = key(3);
    let usage = UsageReceipt {
        session: ByteArray([0x5e; 16]),
        hotspot: node.id(),
        subscriber: SubscriberId::of(&subscriber),
        epoch: 493_055,
        seq: 1_200,
        bytes_down: 2_147_483_648,
        bytes_up: 134_217_728,
        signed_ms: t0 + 1_830_000,
        start_ms: Some(t0),
    };
    row(
        "usage receipt, signed by the subscriber, co-signed by the hotspot",
        signed(&subscriber, &usage, Some(&node)).len(),
        2,
        &proofs,
        true,
    );
    println!(
        "\nEach PUBLISH is answered by a PUBACK of {PUBACK_LEN} bytes (both ways: agent → broker, broker → oracle).\n"
    );

    println!("Oracle → agents:\n");
    println!(
        "| message | envelope bytes | ed25519 signatures in it | topic | PUBLISH bytes | MQTT overhead |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    let acks_topic = topics::acks(&node.id());
    for leaves in [1usize, 16, 256, 4_096, 16_384] {
        for entries in [1usize, 4] {
            let acks: Vec<Ack> = (0..leaves)
                .map(|i| Ack {
                    node: NodeId(*ProofId::of(&(i as u64).to_le_bytes()).as_bytes()),
                    issued_ms: t0 + 1_830_300,
                    entries: (0..entries as u64)
                        .map(|e| AckEntry {
                            proof_id: ProofId::of(&[i as u64, e].map(u64::to_le_bytes).concat()),
                            verdict: Verdict::Accepted,
                        })
                        .collect(),
                })
                .collect();
            let sealed = seal_acks(&oracle, t0 + 1_830_300, &acks);
            let last = sealed.last().expect("one sealed ack per ack");
            if let Err(e) = open_sealed_ack(last) {
                panic!("a sealed ack does not open: {e:?}");
            }
            // A leaf's path is one hash shorter where the tree has no sibling for it.
            let max = sealed.iter().map(Vec::len).max().unwrap_or(0);
            let what = format!(
                "sealed ack of {entries} verdict(s), its root over {leaves} acks (the longest path)"
            );
            row(&what, max, 1, &acks_topic, true);
        }
    }
    let clock = OracleClock {
        now_ms: t0,
        interval_ms: 5_000,
    };
    row(
        "oracle clock (agents subscribe with QoS 0)",
        signed(&oracle, &clock, None).len(),
        1,
        topics::CLOCK,
        false,
    );
    let seed = EpochSeed {
        epoch: 493_055,
        start_ms: t0,
        duration_ms: 3_600_000,
        seed: ByteArray([0x42; 32]),
        params: EpochParams::default(),
    };
    row(
        "epoch seed",
        signed(&oracle, &seed, None).len(),
        1,
        topics::EPOCH,
        true,
    );
    for n in [256usize, MEASURER_SET_PART_MAX] {
        let mut ids: Vec<NodeId> = (0..n as u64)
            .map(|i| NodeId(*ProofId::of(&i.to_le_bytes()).as_bytes()))
            .collect();
        ids.sort();
        let part = &MeasurerSet::split(493_055, &ids).expect("fits")[0];
        let what = format!("measurer set part of {n} ids");
        row(
            &what,
            signed(&oracle, part, None).len(),
            1,
            &topics::measurers(0),
            true,
        );
    }
    let mut entries: Vec<RewardEntry> = (0..1024u64)
        .map(|i| RewardEntry {
            node: NodeId(*ProofId::of(&i.to_be_bytes()).as_bytes()),
            owner: "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU".into(),
            amount: 2_000,
            coverage: 1_600,
            backhaul: 250,
            uptime: 150,
            usage: 0,
        })
        .collect();
    entries.sort_by_key(|e| e.node);
    let page = RewardManifest {
        epoch: 493_055,
        emission: 2_000 * 1_000_000,
        entry_count: 1_000_000,
        root: ByteArray([0x77; 32]),
        page: 0,
        page_count: 977,
        entries,
    };
    row(
        "reward manifest page of 1,024 entries",
        signed(&oracle, &page, None).len(),
        1,
        &topics::rewards(493_055),
        true,
    );
    let grant = CreditGrant {
        grant: ByteArray([0x61; 16]),
        subscriber: SubscriberId::of(&subscriber),
        amount_dc: 1_000_000,
        issued_ms: t0,
        memo: "invoice 2026-0042".into(),
    };
    println!(
        "\nA credit grant (the operator's input to the oracle, not an MQTT message) is {} bytes.",
        signed(&oracle, &grant, None).len()
    );
    let carrier = NodeKey::from_seed(&[0x66; 32]);
    let report = CarrierReport {
        session: ByteArray([0xca; 16]),
        hotspot: node.id(),
        carrier: carrier.id(),
        epoch: 493_055,
        seq: 12,
        bytes_down: 734_003_200,
        bytes_up: 52_428_800,
        signed_ms: t0,
        start_ms: Some(t0 - 3_600_000),
    };
    println!(
        "A carrier's usage report (posted to the oracle's API, not an MQTT message) is {} bytes.",
        signed(&carrier, &report, None).len()
    );
    println!(
        "\nThe PeerId in a topic is {} characters (`{}`).",
        node.id().to_string().len(),
        node.id()
    );
}
