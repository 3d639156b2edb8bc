//! Costs of the protocol's hot paths: ed25519 signing and verification (single, batched, and a
//! failed batch bisected),
//! signing and opening an envelope of every kind with a realistic message, and the proof id.
//!
//! ```text
//! cargo bench -p wisp-protocol --bench protocol -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The bench profile (root Cargo.toml) is release with opt-level 3 and thin LTO, not the
//! size-optimised release profile the routers ship.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope, EnvelopeRef, Message};
use wisp_protocol::msg::*;
use wisp_protocol::reason::Reason;
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId, NodeKey, ProofId};

fn key(n: u8) -> NodeKey {
    NodeKey::from_seed(&[n; 32])
}

fn cell() -> Cell {
    Cell::from_degrees(48.8530, 2.3499, 12).expect("valid coordinates")
}

fn fix() -> GnssFix {
    GnssFix {
        lat_e7: 488_530_000,
        lon_e7: 23_499_000,
        alt_mm: 35_200,
        hdop_centi: 92,
        satellites: 11,
        utc_ms: 1_790_000_000_000,
    }
}

fn heartbeat(seq: u64) -> Heartbeat {
    Heartbeat {
        epoch: 7,
        seq,
        uptime_s: 86_400 + seq * 300,
        sent_ms: 1_790_000_000_000 + seq * 300_000,
        fix: Some(fix()),
        cell: Some(cell()),
        versions: Versions::new("0.1.0", "openwrt-23.05-mt7621"),
        peers: 12,
    }
}

fn beacon() -> Beacon {
    Beacon {
        epoch: 7,
        nonce: ByteArray([0x9c; 16]),
        freq_khz: 5_180_000,
        width_mhz: 80,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(55),
        cell: cell(),
        tx_ms: 1_790_000_030_000,
    }
}

fn witness(beaconer: &NodeKey) -> Witness {
    Witness {
        beacon: Envelope::sign(beaconer, &beacon()).to_bytes(),
        rssi: DeciDb(-853),
        snr: DeciDb(124),
        freq_khz: 5_180_000,
        rx_ms: 1_790_000_030_004,
        cell: Cell::from_degrees(48.8570, 2.3522, 12).expect("valid coordinates"),
    }
}

fn receipt(measurer: &NodeKey, prover: &NodeKey) -> BandwidthReceipt {
    BandwidthReceipt {
        test_id: ByteArray([0x7e; 16]),
        epoch: 7,
        prover: prover.id(),
        measurer: measurer.id(),
        direction: Direction::Down,
        outcome: Outcome::Measured(Measurement {
            bytes: 187_500_000,
            duration_ms: 15_000,
            median_bps: 100_000_000,
            p10_bps: 91_000_000,
            rtt_idle_us: 12_400,
            rtt_loaded_us: 38_900,
        }),
    }
}

fn ack(node: NodeId) -> Ack {
    Ack {
        node,
        issued_ms: 1_790_000_100_000,
        entries: (0..ACK_MAX_ENTRIES as u64)
            .map(|i| AckEntry {
                proof_id: ProofId::of(&i.to_le_bytes()),
                verdict: if i % 4 == 3 {
                    Verdict::Rejected(Reason::BadSignature)
                } else {
                    Verdict::Accepted
                },
            })
            .collect(),
    }
}

fn onboard() -> Onboard {
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
        attestation: Some(Attestation {
            maker: "AcmeRadio".into(),
            serial: ByteArray([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01]),
            device_key: ByteArray([0x11; 64]),
            device_sig: ByteArray([0x22; 64]),
            maker_sig: ByteArray([0x33; 64]),
        }),
    }
}

fn status() -> StatusReport {
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
        last_heartbeat_ms: Some(1_790_000_000_000),
        broker_connected: true,
        peers: 12,
        health: DeviceHealth {
            gnss_ok: true,
            radio_ok: true,
            secure_element_ok: true,
        },
        witnessed_by: (0..8).map(|i| key(100 + i).id()).collect(),
        backhaul: Some(BackhaulSummary {
            measurer: key(3).id(),
            epoch: 7,
            measured_ms: 1_790_000_090_000,
            down_bps: Some(94_000_000),
            up_bps: Some(38_500_000),
            rtt_idle_us: Some(12_400),
            rtt_loaded_us: Some(41_000),
            outcome: BackhaulOutcome::Ok,
        }),
    }
}

/// A full page: [`MANIFEST_PAGE_MAX`] entries with 44-character base58-like owners.
fn manifest() -> RewardManifest {
    let mut entries: Vec<RewardEntry> = (0..MANIFEST_PAGE_MAX as u64)
        .map(|i| RewardEntry {
            node: NodeId(*ProofId::of(&i.to_be_bytes()).as_bytes()),
            owner: format!("{:044}", i * 7_919),
            amount: 1_250_000 + i,
            coverage: 800_000 + i,
            backhaul: 250_000,
            uptime: 150_000,
            usage: 50_000,
        })
        .collect();
    entries.sort_by_key(|e| e.node);
    RewardManifest {
        epoch: 7,
        emission: entries.iter().map(|e| e.amount).sum(),
        entry_count: 5_000,
        root: ByteArray([0x77; 32]),
        page: 0,
        page_count: 5,
        entries,
    }
}

fn epoch_seed() -> EpochSeed {
    EpochSeed {
        epoch: 7,
        start_ms: 1_790_000_000_000,
        duration_ms: 3_600_000,
        seed: ByteArray([0x42; 32]),
        params: EpochParams::default(),
    }
}

fn ed25519(c: &mut Criterion) {
    let k = key(1);
    let msg = [0xabu8; 100];
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_raw_100B", |b| b.iter(|| k.sign_raw(black_box(&msg))));
    let hb = Envelope::sign(&k, &heartbeat(1)).to_bytes();
    let env = EnvelopeRef::parse(&hb).expect("heartbeat parses");
    g.bench_function("verify_heartbeat", |b| {
        b.iter(|| black_box(env).verify().expect("heartbeat verifies"))
    });
    // ed25519-dalek's `verify_strict`, the single check before the one rule, for comparison.
    let msg = env.signed_message();
    let vk = env.signer_id().verifying_key().expect("a valid key");
    let sig = ed25519_dalek::Signature::from_bytes(env.signature);
    g.bench_function("dalek_verify_strict_heartbeat", |b| {
        b.iter(|| {
            black_box(&vk)
                .verify_strict(black_box(&msg), &sig)
                .expect("heartbeat verifies")
        })
    });
    g.finish();
}

/// A failed batch of 1024 heartbeats (each by its own key) with 1 or 8 bad signatures, which
/// pass every precheck and fail only the equation. `bisect` is `verify_batch` as it is: the
/// failed batch is split in halves down to a few signatures. `one_by_one` is the fallback it
/// replaced: the same prechecks and batch equation (timed as `verify_batch` of an all-genuine
/// batch of the same size, which costs the same), then every envelope checked alone.
fn batch_failures(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_failures");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    let n = 1024usize;
    let good: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let seed: [u8; 32] = *ProofId::of(&i.to_le_bytes()).as_bytes();
            Envelope::sign(&NodeKey::from_seed(&seed), &heartbeat(i as u64)).to_bytes()
        })
        .collect();
    let good_refs: Vec<EnvelopeRef<'_>> = good
        .iter()
        .map(|b| EnvelopeRef::parse(b).expect("heartbeat parses"))
        .collect();
    for bad in [0usize, 1, 8] {
        let mut all = good.clone();
        // Spread out, as an attacker's or a broken node's signatures would be.
        let at: Vec<usize> = (0..bad).map(|j| (j * n / bad.max(1) + 37) % n).collect();
        for &i in &at {
            let len = all[i].len();
            all[i][len - 33] ^= 0x04;
        }
        let refs: Vec<EnvelopeRef<'_>> = all
            .iter()
            .map(|b| EnvelopeRef::parse(b).expect("heartbeat parses"))
            .collect();
        let verdicts = envelope::verify_batch(&refs);
        assert_eq!(verdicts.iter().filter(|r| r.is_err()).count(), bad);
        assert!(at.iter().all(|&i| verdicts[i].is_err()));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("bisect", bad), &refs, |b, refs| {
            b.iter(|| envelope::verify_batch(black_box(refs)))
        });
        g.bench_with_input(BenchmarkId::new("one_by_one", bad), &refs, |b, refs| {
            b.iter(|| {
                let batch = envelope::verify_batch(black_box(&good_refs));
                let singles: Vec<_> = refs.iter().map(EnvelopeRef::verify).collect();
                (batch, singles)
            })
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_batch");
    // One iteration of 1024 takes tens of milliseconds: flat sampling keeps the run short.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for n in [64usize, 1024] {
        let envs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let seed: [u8; 32] = *ProofId::of(&i.to_le_bytes()).as_bytes();
                Envelope::sign(&NodeKey::from_seed(&seed), &heartbeat(i as u64)).to_bytes()
            })
            .collect();
        let refs: Vec<EnvelopeRef<'_>> = envs
            .iter()
            .map(|b| EnvelopeRef::parse(b).expect("heartbeat parses"))
            .collect();
        assert!(envelope::verify_batch(&refs).iter().all(Result::is_ok));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("heartbeats", n), &refs, |b, refs| {
            b.iter(|| envelope::verify_batch(black_box(refs)))
        });
    }
    g.finish();
}

/// Sign + to_bytes, and open, of one message kind.
fn kind<M: Message + PartialEq>(
    c: &mut Criterion,
    name: &str,
    k: &NodeKey,
    m: &M,
    cosigner: Option<&NodeKey>,
) {
    let sign = |m: &M| {
        let mut env = Envelope::sign(k, m);
        if let Some(p) = cosigner {
            env.cosign(p);
        }
        env.to_bytes()
    };
    let bytes = sign(m);
    let opened =
        envelope::open::<M>(&bytes).unwrap_or_else(|e| panic!("{name} does not open: {e}"));
    assert!(opened.msg == *m, "{name} round trip");
    let mut g = c.benchmark_group(format!("envelope/{name}"));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(BenchmarkId::new("sign_to_bytes", bytes.len()), |b| {
        b.iter(|| sign(black_box(m)))
    });
    g.bench_function(BenchmarkId::new("open", bytes.len()), |b| {
        b.iter(|| envelope::open::<M>(black_box(&bytes)).expect("opens"))
    });
    g.finish();
}

fn kinds(c: &mut Criterion) {
    let (node, other, oracle) = (key(1), key(2), key(9));
    kind(c, "beacon", &node, &beacon(), None);
    kind(c, "witness", &other, &witness(&node), None);
    kind(
        c,
        "bandwidth_receipt",
        &other,
        &receipt(&other, &node),
        Some(&node),
    );
    kind(c, "heartbeat", &node, &heartbeat(1), None);
    kind(c, "onboard_attested", &node, &onboard(), None);
    kind(c, "status_report", &node, &status(), None);
    kind(c, "reward_manifest_1024", &oracle, &manifest(), None);
    kind(c, "epoch_seed", &oracle, &epoch_seed(), None);
}

/// Sealing a batch of acks (one signature, a Merkle tree) and opening one of them, as the
/// oracle and an agent do.
fn sealed_acks(c: &mut Criterion) {
    let oracle = key(9);
    let mut g = c.benchmark_group("sealed_ack");
    for (n, entries) in [(1usize, ACK_MAX_ENTRIES), (2_000, 1)] {
        let acks: Vec<Ack> = (0..n)
            .map(|i| {
                let mut a = ack(key(u8::try_from(i % 250).expect("< 250")).id());
                a.entries.truncate(entries);
                a.entries[0].proof_id = ProofId::of(&(i as u64).to_le_bytes());
                a
            })
            .collect();
        let sealed = seal_acks(&oracle, 1, &acks);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("seal", format!("{n}x{entries}")), |b| {
            b.iter(|| seal_acks(&oracle, 1, black_box(&acks)))
        });
        let one = &sealed[n / 2];
        g.throughput(Throughput::Bytes(one.len() as u64));
        g.bench_function(BenchmarkId::new("open", format!("{n}x{entries}")), |b| {
            b.iter(|| open_sealed_ack(black_box(one)).expect("opens"))
        });
    }
    g.finish();
}

/// A valid heartbeat envelope of exactly 200 bytes (the version strings pad it).
fn envelope_of_200_bytes() -> Vec<u8> {
    let k = key(1);
    let mut hb = heartbeat(1);
    hb.versions = Versions::new("", "");
    let pad = 200 - Envelope::sign(&k, &hb).to_bytes().len();
    hb.versions = Versions::new(&"a".repeat(pad / 2), &"f".repeat(pad - pad / 2));
    let bytes = Envelope::sign(&k, &hb).to_bytes();
    assert_eq!(bytes.len(), 200);
    envelope::open::<Heartbeat>(&bytes).expect("a valid heartbeat");
    bytes
}

fn proof_id(c: &mut Criterion) {
    let bytes = envelope_of_200_bytes();
    let mut g = c.benchmark_group("proof_id");
    g.throughput(Throughput::Bytes(200));
    g.bench_function("blake3_200B", |b| b.iter(|| ProofId::of(black_box(&bytes))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = ed25519, batch, batch_failures, kinds, sealed_acks, proof_id
}
criterion_main!(benches);
