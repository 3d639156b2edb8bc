//! Table-driven tests of the stateless rules: one `check` helper per rule family, an honest
//! case that passes, and a minimal case for every reason code, all with real keys and real
//! signed envelopes opened by `envelope::open`.

// Helpers of a test panic on a broken fixture; casts convert small, known values.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use wisp_oracle::rules::{GnssEvidence, HeartbeatFact, MeasurerPool, link_range_m};
use wisp_oracle::{Checker, RulesConfig};
use wisp_protocol::msg::{
    BandwidthReceipt, Beacon, BwFailure, Direction, EpochParams, Heartbeat,
    MAX_WIRE_OVERHEAD_PERMILLE, Outcome, Witness,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Opened, Reason, envelope, physics, schedule};

const SKEW: u64 = 2_000;
const UNKNOWN: usize = 99;
const DENIED: usize = 5;

/// Node 0 at the origin; 1 is 200 m north; 2 stands on node 0's spot; 3 is 100 km north;
/// 4 is 120 m east; 5 (denied) 300 m south. Node 99 never onboarded.
fn fixture_with(params: EpochParams) -> Fixture {
    let cfg = RulesConfig {
        deny: vec![key(DENIED).id()],
        ..RulesConfig::permissionless()
    };
    let points = vec![
        offset(0.0, 0.0),
        offset(200.0, 0.0),
        offset(0.0, 0.0),
        offset(100_000.0, 0.0),
        offset(0.0, 120.0),
        offset(-300.0, 0.0),
    ];
    let fx = Fixture::at(points, cfg, params);
    assert!(fx.registry.get(&key(DENIED).id()).is_some());
    fx
}

fn fixture() -> Fixture {
    fixture_with(EpochParams::default())
}

// ---------------------------------------------------------------- beacons

struct BeaconCase {
    name: &'static str,
    signer: usize,
    edit: fn(&Fixture, &mut Beacon),
    /// Oracle time; `None` is the end of the epoch.
    now: Option<fn(&Fixture) -> u64>,
    want: Result<(), Reason>,
}

fn check_beacon(fx: &Fixture, case: &BeaconCase) {
    let mut b = if case.signer < fx.ids.len() {
        fx.beacon_msg(case.signer)
    } else {
        let mut b = fx.beacon_msg(0);
        b.nonce.0 = schedule::beacon_nonce(&fx.seed.seed.0, &key(case.signer).id());
        b
    };
    (case.edit)(fx, &mut b);
    let now = case.now.map_or(fx.seed.end_ms(), |f| f(fx));
    let opened = open::<Beacon>(&sign_with(&key(case.signer), &b));
    let got = fx.checker().beacon(&opened, now);
    match (&got, &case.want) {
        (Ok(fact), Ok(())) => {
            assert_eq!(fact.id, opened.id, "{}", case.name);
            assert_eq!(fact.node, key(case.signer).id(), "{}", case.name);
            assert_eq!(fact.tx_ms, b.tx_ms, "{}", case.name);
        }
        (Err(r), Err(w)) => assert_eq!(r, w, "{}", case.name),
        _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
    }
}

fn window(fx: &Fixture) -> (u64, u64) {
    schedule::beacon_window(&fx.seed, &fx.ids[0])
}

#[test]
fn beacon_rules() {
    let fx = fixture();
    let cases = [
        BeaconCase {
            name: "honest",
            signer: 0,
            edit: |_, _| {},
            now: None,
            want: Ok(()),
        },
        BeaconCase {
            name: "unknown node",
            signer: UNKNOWN,
            edit: |_, _| {},
            now: None,
            want: Err(Reason::UnknownNode),
        },
        BeaconCase {
            name: "denied node",
            signer: DENIED,
            edit: |_, _| {},
            now: None,
            want: Err(Reason::Denied),
        },
        BeaconCase {
            name: "another epoch",
            signer: 0,
            edit: |_, b| b.epoch = EPOCH + 1,
            now: None,
            want: Err(Reason::WrongEpoch),
        },
        BeaconCase {
            name: "nonce with a flipped bit",
            signer: 0,
            edit: |_, b| b.nonce.0[15] ^= 1,
            now: None,
            want: Err(Reason::BeaconBadNonce),
        },
        BeaconCase {
            name: "another node's nonce",
            signer: 0,
            edit: |fx, b| b.nonce.0 = schedule::beacon_nonce(&fx.seed.seed.0, &fx.ids[1]),
            now: None,
            want: Err(Reason::BeaconBadNonce),
        },
        BeaconCase {
            name: "slot start minus skew is in",
            signer: 0,
            edit: |fx, b| b.tx_ms = window(fx).0 - SKEW,
            now: None,
            want: Ok(()),
        },
        BeaconCase {
            name: "before the slot beyond the skew",
            signer: 0,
            edit: |fx, b| b.tx_ms = window(fx).0 - SKEW - 1,
            now: None,
            want: Err(Reason::BeaconWrongSlot),
        },
        BeaconCase {
            name: "last ms of the widened slot is in",
            signer: 0,
            edit: |fx, b| b.tx_ms = window(fx).1 + SKEW - 1,
            now: None,
            want: Ok(()),
        },
        BeaconCase {
            name: "after the slot beyond the skew",
            signer: 0,
            edit: |fx, b| b.tx_ms = window(fx).1 + SKEW,
            now: None,
            want: Err(Reason::BeaconWrongSlot),
        },
        BeaconCase {
            name: "5 GHz, only 2.4 GHz declared",
            signer: 0,
            edit: |_, b| b.freq_khz = 5_180_000,
            now: None,
            want: Err(Reason::BeaconUndeclaredBand),
        },
        BeaconCase {
            name: "another cell",
            signer: 0,
            edit: |fx, b| b.cell = fx.cell(1),
            now: None,
            want: Err(Reason::BeaconCellMismatch),
        },
        BeaconCase {
            name: "reported before it was sent",
            signer: 0,
            edit: |_, _| {},
            now: Some(|fx| fx.slot_mid(0) - SKEW - 1),
            want: Err(Reason::TimestampOutOfWindow),
        },
        BeaconCase {
            name: "reported within the skew of sending",
            signer: 0,
            edit: |_, _| {},
            now: Some(|fx| fx.slot_mid(0) - SKEW),
            want: Ok(()),
        },
    ];
    for case in &cases {
        check_beacon(&fx, case);
    }
}

// ---------------------------------------------------------------- witnesses

struct WitnessCase {
    name: &'static str,
    beaconer: usize,
    witness: usize,
    edit_beacon: fn(&Fixture, &mut Beacon),
    edit_witness: fn(&Fixture, &mut Witness),
    /// Replaces the beacon bytes embedded in the witness (after signing).
    edit_bytes: fn(&mut Vec<u8>),
    now: Option<fn(&Fixture) -> u64>,
    want: Result<(), Reason>,
}

const W: WitnessCase = WitnessCase {
    name: "honest",
    beaconer: 0,
    witness: 1,
    edit_beacon: |_, _| {},
    edit_witness: |_, _| {},
    edit_bytes: |_| {},
    now: None,
    want: Ok(()),
};

/// The shortest distance between two fixture nodes' cells, as the checker sees it.
fn d_min(fx: &Fixture, a: usize, b: usize) -> f64 {
    let pa = fx.registry.get(&fx.ids[a]).unwrap().position;
    let pb = fx.registry.get(&fx.ids[b]).unwrap().position;
    pa.min_distance_m(&pb)
}

/// The checker's RSSI bound from node 0 to node 1 in decidBm (20 dBm, 3 dBi each, 6 dB).
fn bound_0_1(fx: &Fixture) -> f64 {
    physics::max_rssi_dbm(20.0, 3.0, 3.0, d_min(fx, 0, 1), f64::from(FREQ) * 1e3, 6.0)
}

fn check_witness(fx: &Fixture, case: &WitnessCase) {
    let mut b = fx.beacon_msg(case.beaconer.min(fx.ids.len() - 1));
    if case.beaconer >= fx.ids.len() {
        b.nonce.0 = schedule::beacon_nonce(&fx.seed.seed.0, &key(case.beaconer).id());
    }
    (case.edit_beacon)(fx, &mut b);
    let mut beacon_bytes = sign_with(&key(case.beaconer), &b);
    (case.edit_bytes)(&mut beacon_bytes);
    let wi = case.witness.min(fx.ids.len() - 1);
    let mut w = fx.witness_msg(wi, &beacon_bytes, &b, case.beaconer.min(fx.ids.len() - 1));
    w.cell = if case.witness < fx.ids.len() {
        fx.cell(case.witness)
    } else {
        fx.cell(1)
    };
    (case.edit_witness)(fx, &mut w);
    let now = case.now.map_or(fx.seed.end_ms(), |f| f(fx));
    let opened = open::<Witness>(&sign_with(&key(case.witness), &w));
    let got = fx.checker().witness(&opened, now);
    match (&got, &case.want) {
        (Ok(fact), Ok(())) => {
            assert_eq!(fact.id, opened.id, "{}", case.name);
            assert_eq!(fact.witness, key(case.witness).id(), "{}", case.name);
            assert_eq!(fact.beaconer, key(case.beaconer).id(), "{}", case.name);
            assert_eq!(
                fact.beacon_id,
                wisp_protocol::ProofId::of(&beacon_bytes),
                "{}",
                case.name
            );
            assert_eq!(fact.rssi, w.rssi, "{}", case.name);
        }
        (Err(r), Err(want)) => assert_eq!(r, want, "{}", case.name),
        _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
    }
    // The split API (beacon opened by the caller) agrees whenever the beacon opens.
    if let Ok(beacon) = envelope::open::<Beacon>(&w.beacon) {
        let split = fx.checker().witness_with_beacon(&opened, &beacon, now);
        assert_eq!(split, got, "{}: witness_with_beacon disagrees", case.name);
    }
}

#[test]
fn witness_rules() {
    let fx = fixture();
    let cases = [
        W,
        WitnessCase {
            name: "honest, another neighbour",
            witness: 4,
            ..W
        },
        WitnessCase {
            name: "unknown witness",
            witness: UNKNOWN,
            want: Err(Reason::UnknownNode),
            ..W
        },
        WitnessCase {
            name: "denied witness",
            witness: DENIED,
            want: Err(Reason::Denied),
            ..W
        },
        WitnessCase {
            name: "beacon signature broken",
            edit_bytes: |bytes| {
                let n = bytes.len();
                bytes[n - 10] ^= 0x01;
            },
            want: Err(Reason::BeaconInvalid),
            ..W
        },
        WitnessCase {
            name: "beacon with a bad nonce",
            edit_beacon: |_, b| b.nonce.0[0] ^= 1,
            want: Err(Reason::BeaconInvalid),
            ..W
        },
        WitnessCase {
            name: "beacon outside its slot",
            edit_beacon: |fx, b| b.tx_ms = window(fx).1 + SKEW,
            want: Err(Reason::BeaconInvalid),
            ..W
        },
        WitnessCase {
            name: "beacon from an unknown node",
            beaconer: UNKNOWN,
            want: Err(Reason::BeaconInvalid),
            ..W
        },
        WitnessCase {
            name: "beacon from a denied node",
            beaconer: DENIED,
            witness: 0,
            want: Err(Reason::BeaconInvalid),
            ..W
        },
        WitnessCase {
            name: "witness claims another cell",
            edit_witness: |fx, w| w.cell = fx.cell(4),
            want: Err(Reason::WitnessCellMismatch),
            ..W
        },
        WitnessCase {
            name: "frequency within tolerance",
            edit_witness: |_, w| w.freq_khz = FREQ + 1_000,
            ..W
        },
        WitnessCase {
            name: "neighbouring channel",
            edit_witness: |_, w| w.freq_khz = FREQ + 5_000,
            want: Err(Reason::FrequencyMismatch),
            ..W
        },
        WitnessCase {
            name: "just beyond the tolerance",
            edit_witness: |_, w| w.freq_khz = FREQ - 1_001,
            want: Err(Reason::FrequencyMismatch),
            ..W
        },
        WitnessCase {
            name: "lag at the limit",
            edit_witness: |fx, w| w.rx_ms = fx.slot_mid(0) + 2_000,
            ..W
        },
        WitnessCase {
            name: "lag beyond the limit",
            edit_witness: |fx, w| w.rx_ms = fx.slot_mid(0) + 2_001,
            want: Err(Reason::WitnessLag),
            ..W
        },
        WitnessCase {
            name: "received long before it was sent",
            edit_witness: |fx, w| w.rx_ms = fx.slot_mid(0) - 2_001,
            want: Err(Reason::WitnessLag),
            ..W
        },
        WitnessCase {
            name: "reported before it was received",
            now: Some(|fx| fx.slot_mid(0) + 3 - SKEW - 1),
            want: Err(Reason::TimestampOutOfWindow),
            ..W
        },
        WitnessCase {
            name: "RSSI above -10 dBm",
            edit_witness: |_, w| w.rssi = DeciDb(-90),
            want: Err(Reason::SignalImplausible),
            ..W
        },
        WitnessCase {
            name: "RSSI below any receiver's sensitivity",
            edit_witness: |_, w| {
                w.rssi = DeciDb(-1_001);
                w.snr = DeciDb(50);
            },
            want: Err(Reason::SignalImplausible),
            ..W
        },
        WitnessCase {
            name: "SNR above 60 dB",
            edit_witness: |_, w| {
                w.rssi = DeciDb(-300);
                w.snr = DeciDb(601);
            },
            want: Err(Reason::SignalImplausible),
            ..W
        },
        WitnessCase {
            name: "SNR above what thermal noise allows at that RSSI",
            // −90 dBm over a −114 dBm floor (1 MHz) is 24 dB, 30 dB with the margin.
            edit_witness: |_, w| {
                w.rssi = DeciDb(-900);
                w.snr = DeciDb(301);
            },
            want: Err(Reason::SignalImplausible),
            ..W
        },
        WitnessCase {
            name: "SNR at the thermal bound",
            edit_witness: |_, w| {
                w.rssi = DeciDb(-900);
                w.snr = DeciDb(300);
            },
            ..W
        },
        WitnessCase {
            name: "same spot (Sybil farm)",
            witness: 2,
            edit_witness: |_, w| {
                w.rssi = DeciDb(-600);
                w.snr = DeciDb(300);
            },
            want: Err(Reason::TooClose),
            ..W
        },
        WitnessCase {
            name: "100 km away",
            witness: 3,
            edit_witness: |_, w| {
                w.rssi = DeciDb(-990);
                w.snr = DeciDb(20);
            },
            want: Err(Reason::TooFar),
            ..W
        },
        WitnessCase {
            name: "RSSI 0.1 dB above the free-space bound",
            edit_witness: |fx, w| {
                w.rssi = DeciDb((bound_0_1(fx) * 10.0).floor() as i16 + 1);
                w.snr = DeciDb(400);
            },
            want: Err(Reason::RssiTooStrong),
            ..W
        },
        WitnessCase {
            name: "RSSI at the free-space bound",
            edit_witness: |fx, w| {
                w.rssi = DeciDb((bound_0_1(fx) * 10.0).floor() as i16);
                w.snr = DeciDb(400);
            },
            ..W
        },
        WitnessCase {
            name: "inflated antenna gain is capped by the onboarded gain",
            // Claims 20 dBi instead of 3; the RSSI is plausible only with the claim.
            edit_beacon: |_, b| b.antenna_gain = DeciDb(200),
            edit_witness: |fx, w| {
                w.rssi = DeciDb((bound_0_1(fx) * 10.0) as i16 + 50);
                w.snr = DeciDb(400);
            },
            want: Err(Reason::RssiTooStrong),
            ..W
        },
        WitnessCase {
            name: "inflated power is capped by the band's EIRP",
            // 40 dBm + 3 dBi claimed; the band allows 36 dBm EIRP, i.e. 33 dBm conducted.
            edit_beacon: |_, b| b.tx_power = DeciDb(400),
            edit_witness: |fx, w| {
                w.rssi = DeciDb((bound_0_1(fx) * 10.0) as i16 + 140);
                w.snr = DeciDb(400);
            },
            want: Err(Reason::RssiTooStrong),
            ..W
        },
        WitnessCase {
            name: "the EIRP cap still allows what the band allows",
            edit_beacon: |_, b| b.tx_power = DeciDb(400),
            edit_witness: |fx, w| {
                w.rssi = DeciDb((bound_0_1(fx) * 10.0) as i16 + 120);
                w.snr = DeciDb(400);
            },
            ..W
        },
    ];
    for case in &cases {
        check_witness(&fx, case);
    }
}

#[test]
fn too_far_is_derived_from_the_link_budget() {
    // 20 dBm + 3 dBi, 3 dBi, 6 dB margin, −100 dBm floor at 2.412 GHz: about 39.4 km.
    let range = link_range_m(23.0, 3.0, 2.412e9, 6.0, -100.0);
    assert!((range - 39_400.0).abs() < 200.0, "{range}");
    // A node 30 km away with a weak but decodable signal passes; the rule is not a constant.
    let cfg = RulesConfig::permissionless();
    let fx = Fixture::at(
        vec![
            offset(0.0, 0.0),
            offset(30_000.0, 0.0),
            offset(45_000.0, 0.0),
        ],
        cfg,
        EpochParams::default(),
    );
    let b = fx.beacon_msg(0);
    let bytes = fx.sign(0, &b);
    for (j, want) in [(1, Ok(())), (2, Err(Reason::TooFar))] {
        let mut w = fx.witness_msg(j, &bytes, &b, 0);
        w.rssi = DeciDb(-995);
        w.snr = DeciDb(50);
        let got = fx
            .checker()
            .witness(&open(&fx.sign(j, &w)), fx.seed.end_ms())
            .map(|_| ());
        assert_eq!(got, want, "witness {j}");
    }
}

#[test]
fn self_witness_is_refused_by_the_envelope_and_the_checker() {
    let fx = fixture();
    let b = fx.beacon_msg(0);
    let bytes = fx.sign(0, &b);
    let w = fx.witness_msg(0, &bytes, &b, 0);
    let err = envelope::open::<Witness>(&fx.sign(0, &w)).unwrap_err();
    assert_eq!(err.reason(), Reason::SelfWitness);
    // A caller that builds the opened witness by hand still meets the rule.
    let forged = Opened {
        msg: w,
        signer: fx.ids[0],
        cosigners: vec![],
        id: wisp_protocol::ProofId::of(b"forged"),
    };
    assert_eq!(
        fx.checker().witness(&forged, fx.seed.end_ms()),
        Err(Reason::SelfWitness)
    );
}

#[test]
fn witness_with_a_mismatched_beacon_is_invalid() {
    let fx = fixture();
    let b = fx.beacon_msg(0);
    let bytes = fx.sign(0, &b);
    let w = open::<Witness>(&fx.sign(1, &fx.witness_msg(1, &bytes, &b, 0)));
    let other = open::<Beacon>(&fx.sign(4, &fx.beacon_msg(4)));
    assert_eq!(
        fx.checker()
            .witness_with_beacon(&w, &other, fx.seed.end_ms()),
        Err(Reason::BeaconInvalid)
    );
}

// ---------------------------------------------------------------- receipts

struct ReceiptCase {
    name: &'static str,
    prover: usize,
    measurer: usize,
    edit: fn(&mut BandwidthReceipt),
    /// Measurer signature only (no prover co-signature).
    alone: bool,
    want: Result<(), Reason>,
}

const R: ReceiptCase = ReceiptCase {
    name: "honest",
    prover: 0,
    measurer: 1,
    edit: |_| {},
    alone: false,
    want: Ok(()),
};

fn measured(r: &mut BandwidthReceipt) -> &mut wisp_protocol::msg::Measurement {
    match &mut r.outcome {
        Outcome::Measured(m) => m,
        Outcome::Failed(_) => unreachable!(),
    }
}

fn check_receipt(fx: &Fixture, pool: &MeasurerPool, case: &ReceiptCase) {
    let mut r = fx.receipt_msg(0, 1, Direction::Down, 300_000_000);
    r.prover = key(case.prover).id();
    r.measurer = key(case.measurer).id();
    (case.edit)(&mut r);
    let mut env = wisp_protocol::Envelope::sign(&key(case.measurer), &r);
    if !case.alone {
        env.cosign(&key(case.prover));
    }
    let opened = open::<BandwidthReceipt>(&env.to_bytes());
    let got = fx.checker().receipt(&opened, pool);
    match (&got, &case.want) {
        (Ok(fact), Ok(())) => {
            assert_eq!(fact.prover, r.prover, "{}", case.name);
            assert_eq!(fact.measurer, r.measurer, "{}", case.name);
            assert_eq!(fact.direction, r.direction, "{}", case.name);
        }
        (Err(e), Err(w)) => assert_eq!(e, w, "{}", case.name),
        _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
    }
}

/// The fewest verified bytes a test may carry for a window of `window_ms` at `median_bps`:
/// rates are IP-layer rates, at most `MAX_WIRE_OVERHEAD_PERMILLE` ‰ of the payload rate.
fn min_bytes(median_bps: u64, window_ms: u64) -> u64 {
    (median_bps * window_ms).div_ceil(8 * MAX_WIRE_OVERHEAD_PERMILLE)
}

#[test]
fn receipt_rules() {
    // Every eligible candidate is assigned (k = 255), so the cases isolate one rule each; the
    // rendezvous itself is tested below.
    let fx = fixture_with(EpochParams {
        measurers_per_prover: 255,
        ..EpochParams::default()
    });
    let pool = MeasurerPool::new([0, 1, 2, 3, DENIED, UNKNOWN].map(|i| key(i).id()));
    let cases = [
        R,
        ReceiptCase {
            name: "honest upload",
            edit: |r| r.direction = Direction::Up,
            ..R
        },
        ReceiptCase {
            name: "unknown prover",
            prover: UNKNOWN,
            want: Err(Reason::UnknownNode),
            ..R
        },
        ReceiptCase {
            name: "unknown measurer",
            measurer: UNKNOWN,
            want: Err(Reason::UnknownNode),
            ..R
        },
        ReceiptCase {
            name: "denied measurer",
            measurer: DENIED,
            want: Err(Reason::Denied),
            ..R
        },
        ReceiptCase {
            name: "another epoch",
            edit: |r| r.epoch = EPOCH - 1,
            want: Err(Reason::WrongEpoch),
            ..R
        },
        ReceiptCase {
            name: "measurer not in the pool",
            measurer: 4,
            want: Err(Reason::WrongMeasurer),
            ..R
        },
        ReceiptCase {
            name: "failed test",
            edit: |r| r.outcome = Outcome::Failed(BwFailure::Timeout),
            alone: true,
            want: Err(Reason::TestFailed),
            ..R
        },
        ReceiptCase {
            name: "above the 10 Gbit/s cap",
            edit: |r| {
                let m = measured(r);
                m.median_bps = 10_000_000_001;
                m.p10_bps = 1;
                m.bytes = 100_000_000_000;
            },
            want: Err(Reason::ImplausibleThroughput),
            ..R
        },
        ReceiptCase {
            name: "median needs more bits than one window received",
            edit: |r| {
                let m = measured(r);
                m.bytes = min_bytes(m.median_bps, 1_000) - 1;
            },
            want: Err(Reason::ImplausibleThroughput),
            ..R
        },
        ReceiptCase {
            name: "median exactly one window of the bytes, with the most wire overhead",
            edit: |r| {
                let m = measured(r);
                m.bytes = min_bytes(m.median_bps, 1_000);
            },
            ..R
        },
        ReceiptCase {
            name: "sub-second test scales the window",
            edit: |r| {
                let m = measured(r);
                m.duration_ms = 500;
                m.bytes = min_bytes(m.median_bps, 500);
            },
            ..R
        },
        ReceiptCase {
            // 5 whole bins and a slow last one: the median is the rate of the 500 ms of bins.
            name: "sub-second test counts whole 100 ms bins",
            edit: |r| {
                let m = measured(r);
                m.duration_ms = 590;
                m.bytes = min_bytes(m.median_bps, 500);
            },
            ..R
        },
        ReceiptCase {
            name: "sub-second test with too few bytes for its whole bins",
            edit: |r| {
                let m = measured(r);
                m.duration_ms = 590;
                m.bytes = min_bytes(m.median_bps, 500) - 1;
            },
            want: Err(Reason::ImplausibleThroughput),
            ..R
        },
        ReceiptCase {
            name: "test shorter than one bin: its duration",
            edit: |r| {
                let m = measured(r);
                m.duration_ms = 60;
                m.bytes = min_bytes(m.median_bps, 60) - 1;
            },
            want: Err(Reason::ImplausibleThroughput),
            ..R
        },
        ReceiptCase {
            name: "sub-second test with too few bytes",
            edit: |r| {
                let m = measured(r);
                m.duration_ms = 500;
                m.bytes = min_bytes(m.median_bps, 500) - 1;
            },
            want: Err(Reason::ImplausibleThroughput),
            ..R
        },
        ReceiptCase {
            // 100 km less the two cell radii needs ≥ 667 µs at c.
            name: "RTT faster than light over 100 km",
            measurer: 3,
            edit: |r| {
                let m = measured(r);
                m.rtt_idle_us = 650;
                m.rtt_loaded_us = 900;
            },
            want: Err(Reason::SpeedOfLight),
            ..R
        },
        ReceiptCase {
            name: "loaded RTT faster than light",
            measurer: 3,
            edit: |r| {
                let m = measured(r);
                m.rtt_idle_us = 900;
                m.rtt_loaded_us = 650;
            },
            want: Err(Reason::SpeedOfLight),
            ..R
        },
        ReceiptCase {
            name: "RTT just above light's over 100 km (a microwave link)",
            measurer: 3,
            edit: |r| {
                let m = measured(r);
                m.rtt_idle_us = 667;
                m.rtt_loaded_us = 700;
            },
            ..R
        },
    ];
    for case in &cases {
        check_receipt(&fx, &pool, case);
    }
}

#[test]
fn only_assigned_measurers_pass() {
    let fx = Fixture::grid(24, 6, RulesConfig::permissionless(), EpochParams::default());
    let pool = MeasurerPool::new(fx.ids.iter().copied());
    let k = usize::from(fx.seed.params.measurers_per_prover);
    let assigned = pool.assigned(&fx.seed.seed.0, &fx.ids[0], k);
    assert_eq!(assigned.len(), 3);
    for (m, id) in fx.ids.iter().enumerate().skip(1) {
        let bytes = fx.receipt_bytes(0, m, Direction::Down, 200_000_000);
        let got = fx.checker().receipt(&open(&bytes), &pool).map(|_| ());
        let want = if assigned.contains(id) {
            Ok(())
        } else {
            Err(Reason::WrongMeasurer)
        };
        assert_eq!(got, want, "measurer {m}");
    }
}

#[test]
fn is_assigned_matches_the_protocol_assignment() {
    let ids: Vec<_> = (0..40).map(|i| key(i).id()).collect();
    for s in 0..20u8 {
        let seed = [s; 32];
        // Pools of varying size, with duplicates, and provers inside and outside them.
        let pool = MeasurerPool::new(
            ids.iter()
                .take(5 + usize::from(s))
                .chain(ids.iter().take(3))
                .copied(),
        );
        for k in [0usize, 1, 3, 7, 100] {
            for prover in ids.iter().step_by(7) {
                let assigned =
                    schedule::assign_measurers(&seed, prover, &ids[..5 + usize::from(s)], k);
                for m in &ids {
                    assert_eq!(
                        pool.is_assigned(&seed, prover, m, k),
                        assigned.contains(m),
                        "seed {s} k {k}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- heartbeats

struct HeartbeatCase {
    name: &'static str,
    signer: usize,
    /// Heartbeats accepted before, `(seq, sent_ms)` relative to `T0` (in any order).
    prior: &'static [(u64, i64)],
    edit: fn(&Fixture, &mut Heartbeat),
    /// Oracle time relative to `sent_ms`.
    delay_ms: i64,
    want: Result<Option<Reason>, Reason>,
    gnss: Option<GnssEvidence>,
}

const T0: u64 = START + 1_200_000;
const HB: HeartbeatCase = HeartbeatCase {
    name: "honest",
    signer: 0,
    prior: &[],
    edit: |_, _| {},
    delay_ms: 100,
    want: Ok(None),
    gnss: Some(GnssEvidence::Within {
        distance_m: 0,
        trust_bps: 10_000,
    }),
};

fn move_fix(h: &mut Heartbeat, north_m: f64) {
    let (lat, lon) = offset(north_m, 0.0);
    let fix = h.fix.as_mut().unwrap();
    fix.lat_e7 = (lat * 1e7).round() as i32;
    fix.lon_e7 = (lon * 1e7).round() as i32;
}

fn check_heartbeat(case: &HeartbeatCase) {
    let mut fx = fixture();
    for &(seq, at) in case.prior {
        fx.registry.record_heartbeat(&HeartbeatFact {
            id: wisp_protocol::ProofId::of(&seq.to_le_bytes()),
            node: fx.ids[case.signer.min(fx.ids.len() - 1)],
            epoch: EPOCH,
            seq,
            sent_ms: T0.saturating_add_signed(at),
            asserted_ms: 0,
            gnss: GnssEvidence::NoFix,
        });
    }
    let mut h = fx.heartbeat_msg(case.signer.min(fx.ids.len() - 1), 10, T0);
    (case.edit)(&fx, &mut h);
    let opened = open::<Heartbeat>(&sign_with(&key(case.signer), &h));
    let got = fx
        .checker()
        .heartbeat(&opened, h.sent_ms.saturating_add_signed(case.delay_ms));
    match (&got, &case.want) {
        (Ok(fact), Ok(finding)) => {
            assert_eq!(fact.finding(), *finding, "{}", case.name);
            assert_eq!(fact.seq, h.seq, "{}", case.name);
            if let Some(g) = case.gnss {
                assert_eq!(fact.gnss, g, "{}", case.name);
            }
        }
        (Err(e), Err(w)) => assert_eq!(e, w, "{}", case.name),
        _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
    }
}

/// The heartbeat interval of the fixture's epoch (`EpochParams::default()`).
const I: i64 = 300_000;

#[test]
fn heartbeat_rules() {
    assert_eq!(EpochParams::default().heartbeat_interval_ms, I as u32);
    let cases = [
        HB,
        HeartbeatCase {
            name: "unknown node",
            signer: UNKNOWN,
            want: Err(Reason::UnknownNode),
            ..HB
        },
        HeartbeatCase {
            name: "denied node",
            signer: DENIED,
            want: Err(Reason::Denied),
            ..HB
        },
        HeartbeatCase {
            name: "another epoch",
            edit: |_, h| h.epoch = EPOCH + 1,
            want: Err(Reason::WrongEpoch),
            ..HB
        },
        HeartbeatCase {
            name: "signed before the epoch",
            edit: |_, h| h.sent_ms = START - SKEW - 1,
            want: Err(Reason::TimestampOutOfWindow),
            ..HB
        },
        HeartbeatCase {
            name: "signed within the skew before the epoch",
            edit: |_, h| h.sent_ms = START - SKEW,
            ..HB
        },
        HeartbeatCase {
            name: "signed after the epoch",
            edit: |_, h| h.sent_ms = START + 3_600_000 + SKEW,
            want: Err(Reason::TimestampOutOfWindow),
            ..HB
        },
        HeartbeatCase {
            name: "dated in the oracle's future",
            delay_ms: -(SKEW as i64) - 1,
            want: Err(Reason::TimestampOutOfWindow),
            ..HB
        },
        HeartbeatCase {
            name: "back-dated beyond the delay bound",
            delay_ms: 900_001,
            want: Err(Reason::TimestampOutOfWindow),
            ..HB
        },
        HeartbeatCase {
            name: "delivered late by the outbox, within the bound",
            delay_ms: 900_000,
            ..HB
        },
        HeartbeatCase {
            name: "same seq again",
            prior: &[(10, -I)],
            want: Err(Reason::HeartbeatReplay),
            ..HB
        },
        HeartbeatCase {
            name: "same seq again, signed at another time, among others",
            prior: &[(9, -2 * I), (10, -I), (11, I)],
            edit: |_, h| h.sent_ms += 1,
            want: Err(Reason::HeartbeatReplay),
            ..HB
        },
        HeartbeatCase {
            name: "next seq, a full interval later",
            prior: &[(9, -I)],
            ..HB
        },
        HeartbeatCase {
            name: "half an interval after the last",
            prior: &[(9, -I / 2)],
            ..HB
        },
        HeartbeatCase {
            name: "less than half an interval after the last",
            prior: &[(9, -I / 2 + 1)],
            want: Err(Reason::HeartbeatTooFrequent),
            ..HB
        },
        // A backlog resent after an outage or a restart arrives in any order.
        HeartbeatCase {
            name: "a later seq arrived first: an earlier one, an interval before it",
            prior: &[(11, I), (12, 2 * I)],
            ..HB
        },
        HeartbeatCase {
            name: "a gap filled late, between its neighbours",
            prior: &[(8, -2 * I), (9, -I), (11, I), (12, 2 * I)],
            ..HB
        },
        HeartbeatCase {
            name: "half an interval before the next accepted one",
            prior: &[(11, I / 2)],
            ..HB
        },
        HeartbeatCase {
            name: "less than half an interval before the next accepted one",
            prior: &[(9, -I), (11, I / 2 - 1)],
            want: Err(Reason::HeartbeatTooFrequent),
            ..HB
        },
        HeartbeatCase {
            name: "squeezed between two accepted heartbeats, not the latest",
            prior: &[(9, -I / 4), (11, I), (12, 2 * I)],
            want: Err(Reason::HeartbeatTooFrequent),
            ..HB
        },
        HeartbeatCase {
            name: "fix 500 m away: reduced trust",
            edit: |_, h| move_fix(h, 500.0),
            gnss: None,
            ..HB
        },
        HeartbeatCase {
            name: "fix 5 km away: GNSS mismatch, still accepted",
            edit: |_, h| move_fix(h, 5_000.0),
            want: Ok(Some(Reason::GnssMismatch)),
            gnss: None,
            ..HB
        },
        HeartbeatCase {
            name: "fix from two satellites is no fix",
            edit: |_, h| {
                move_fix(h, 5_000.0);
                h.fix.as_mut().unwrap().satellites = 2;
            },
            gnss: Some(GnssEvidence::NoFix),
            ..HB
        },
        HeartbeatCase {
            name: "no fix",
            edit: |_, h| h.fix = None,
            gnss: Some(GnssEvidence::NoFix),
            ..HB
        },
    ];
    for case in &cases {
        check_heartbeat(case);
    }
}

#[test]
fn trust_bands_by_distance() {
    let fx = fixture();
    for (north, want) in [(100.0, Some(10_000)), (500.0, Some(2_500)), (5_000.0, None)] {
        let mut h = fx.heartbeat_msg(0, 1, T0);
        move_fix(&mut h, north);
        let fact = fx
            .checker()
            .heartbeat(&open(&fx.sign(0, &h)), T0 + 10)
            .unwrap();
        let got = match fact.gnss {
            GnssEvidence::Within { trust_bps, .. } => Some(trust_bps),
            GnssEvidence::Mismatch { .. } => None,
            GnssEvidence::NoFix => panic!("a fix was sent"),
        };
        assert_eq!(got, want, "{north} m");
    }
}

#[test]
fn witness_epoch_reads_the_embedded_beacon() {
    let fx = fixture();
    let b = fx.beacon_msg(0);
    let bytes = fx.sign(0, &b);
    let w = fx.witness_msg(1, &bytes, &b, 0);
    assert_eq!(wisp_oracle::rules::witness_epoch(&w), Some(EPOCH));
    let mut broken = w.clone();
    broken.beacon = vec![1, 2, 3];
    assert_eq!(wisp_oracle::rules::witness_epoch(&broken), None);
    // The checker is Copy and cheap: one per epoch.
    let c: Checker<'_> = fx.checker();
    assert_eq!(c.seed().epoch, EPOCH);
}

/// The dashboard's witness links: one per distinct (beaconer, witness) pair, capped.
#[test]
fn witness_links_are_distinct_pairs_and_capped() {
    use wisp_oracle::http::links_of;
    let fx = Fixture::grid(4, 2, RulesConfig::permissionless(), EpochParams::default());
    let b0 = fx.beacon_msg(0);
    let b0_bytes = fx.sign(0, &b0);
    let b1 = fx.beacon_msg(1);
    let b1_bytes = fx.sign(1, &b1);
    let w = |j: usize, bytes: &[u8], b: &wisp_protocol::msg::Beacon, i: usize| {
        fx.sign(j, &fx.witness_msg(j, bytes, b, i))
    };
    let envs = vec![
        w(1, &b0_bytes, &b0, 0),
        w(2, &b0_bytes, &b0, 0),
        w(2, &b0_bytes, &b0, 0),
        w(3, &b1_bytes, &b1, 1),
        b"not an envelope".to_vec(),
    ];
    let (links, truncated) = links_of(&envs, 10);
    let mut want = vec![
        (fx.ids[0], fx.ids[1]),
        (fx.ids[0], fx.ids[2]),
        (fx.ids[1], fx.ids[3]),
    ];
    want.sort();
    assert_eq!((links, truncated), (want, false));
    let (links, truncated) = links_of(&envs, 2);
    assert_eq!((links.len(), truncated), (2, true));
}
