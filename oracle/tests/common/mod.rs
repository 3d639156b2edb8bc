//! Shared test fixture: nodes with real keys on a grid, onboarded with real signed envelopes,
//! and builders for honest proofs that the tests then break one field at a time. Also used by
//! the bench (`benches/rules.rs`).
// Test support: a panic is the right answer to a broken fixture, and the casts convert
// small, known values.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use wisp_oracle::rules::{BeaconFact, HeartbeatFact, ReceiptFact, WitnessFact};
use wisp_oracle::{Arrival, Checker, EpochState, MeasurerPool, Push, Registry, RulesConfig};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope, Message};
use wisp_protocol::geo::Cell;
use wisp_protocol::msg::{
    Band, BandwidthReceipt, Beacon, Direction, EpochParams, EpochSeed, GnssFix, Heartbeat,
    Measurement, Onboard, Outcome, Versions, Witness,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{NodeId, NodeKey, Opened, ProofId, Reason, physics, schedule};

/// The epoch under test starts here (2027-01-15).
pub const START: u64 = 1_800_000_000_000;
/// Its number.
pub const EPOCH: u64 = 7;
/// Grid origin: Notre-Dame de Paris.
pub const ORIGIN: (f64, f64) = (48.8530, 2.3499);
/// Grid spacing.
pub const SPACING_M: f64 = 250.0;
/// WiFi channel 1.
pub const FREQ: u32 = 2_412_000;
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

/// The key of node `i` (deterministic).
pub fn key(i: usize) -> NodeKey {
    let mut s = [0xA5u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    NodeKey::from_seed(&s)
}

/// A point `north_m`, `east_m` from the origin.
pub fn offset(north_m: f64, east_m: f64) -> (f64, f64) {
    let lat = ORIGIN.0 + north_m / M_PER_DEG;
    let lon = ORIGIN.1 + east_m / (M_PER_DEG * lat.to_radians().cos());
    (lat, lon)
}

/// The res-12 cell at a point.
pub fn cell_at(p: (f64, f64)) -> Cell {
    Cell::from_degrees(p.0, p.1, 12).unwrap()
}

/// splitmix64, for deterministic variation.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Signs `msg` with `k` and returns the envelope bytes.
pub fn sign_with<M: Message>(k: &NodeKey, msg: &M) -> Vec<u8> {
    Envelope::sign(k, msg).to_bytes()
}

/// Opens envelope bytes (panics if the envelope rules refuse them).
pub fn open<M: Message>(bytes: &[u8]) -> Opened<M> {
    envelope::open::<M>(bytes).unwrap()
}

/// The epoch seed of the epoch under test.
pub fn epoch_seed(params: EpochParams) -> EpochSeed {
    EpochSeed {
        epoch: EPOCH,
        start_ms: START,
        duration_ms: 3_600_000,
        seed: ByteArray([0x5E; 32]),
        params,
    }
}

/// A plain onboard message.
pub fn onboard_msg(cell: Cell, issued_ms: u64) -> Onboard {
    Onboard {
        owner: "owner-1".into(),
        cell,
        antenna_gain: DeciDb(30),
        antenna_height_dm: 100,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(360),
        }],
        measurer: true,
        issued_ms,
        attestation: None,
    }
}

/// One proof that passed its stateless checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Beacon(BeaconFact),
    Witness(WitnessFact),
    Receipt(ReceiptFact),
    Heartbeat(HeartbeatFact),
}

impl Fact {
    pub fn id(&self) -> ProofId {
        match self {
            Fact::Beacon(f) => f.id,
            Fact::Witness(f) => f.id,
            Fact::Receipt(f) => f.id,
            Fact::Heartbeat(f) => f.id,
        }
    }

    pub fn push(&self, state: &mut EpochState, arrival: Arrival) -> Result<Push, Reason> {
        match self {
            Fact::Beacon(f) => state.push_beacon(arrival, f),
            Fact::Witness(f) => state.push_witness(arrival, f),
            Fact::Receipt(f) => state.push_receipt(arrival, f),
            Fact::Heartbeat(f) => state.push_heartbeat(arrival, f),
        }
    }

    /// The node that signed it.
    pub fn node(&self) -> NodeId {
        match self {
            Fact::Beacon(f) => f.node,
            Fact::Witness(f) => f.witness,
            Fact::Receipt(f) => f.measurer,
            Fact::Heartbeat(f) => f.node,
        }
    }
}

/// Nodes on the ground, a registry and an epoch.
pub struct Fixture {
    pub registry: Registry,
    pub seed: EpochSeed,
    pub keys: Vec<NodeKey>,
    pub ids: Vec<NodeId>,
    pub points: Vec<(f64, f64)>,
}

impl Fixture {
    /// `n` nodes on a grid `cols` wide, all onboarded two days before the epoch.
    pub fn grid(n: usize, cols: usize, cfg: RulesConfig, params: EpochParams) -> Fixture {
        let points = (0..n)
            .map(|i| offset((i / cols) as f64 * SPACING_M, (i % cols) as f64 * SPACING_M))
            .collect();
        Fixture::at(points, cfg, params)
    }

    /// Nodes at these points, all onboarded two days before the epoch.
    pub fn at(points: Vec<(f64, f64)>, cfg: RulesConfig, params: EpochParams) -> Fixture {
        // Onboard everyone (denied nodes too, as if denied later), then apply the real rules.
        let open_cfg = RulesConfig {
            deny: vec![],
            ..cfg.clone()
        };
        let mut registry = Registry::new(open_cfg.validate().unwrap());
        let keys: Vec<NodeKey> = (0..points.len()).map(key).collect();
        let ids = keys.iter().map(NodeKey::id).collect();
        let t = START - 2 * 86_400_000;
        for (k, p) in keys.iter().zip(&points) {
            let bytes = sign_with(k, &onboard_msg(cell_at(*p), t));
            registry.apply_onboard(&open(&bytes), t).unwrap();
        }
        registry.set_rules(cfg.validate().unwrap());
        Fixture {
            registry,
            seed: epoch_seed(params),
            keys,
            ids,
            points,
        }
    }

    pub fn checker(&self) -> Checker<'_> {
        Checker::new(&self.registry, &self.seed)
    }

    pub fn cell(&self, i: usize) -> Cell {
        cell_at(self.points[i])
    }

    pub fn sign<M: Message>(&self, i: usize, msg: &M) -> Vec<u8> {
        sign_with(&self.keys[i], msg)
    }

    /// The middle of node `i`'s beacon slot.
    pub fn slot_mid(&self, i: usize) -> u64 {
        let (a, b) = schedule::beacon_window(&self.seed, &self.ids[i]);
        (a + b) / 2
    }

    /// An honest beacon of node `i`.
    pub fn beacon_msg(&self, i: usize) -> Beacon {
        Beacon {
            epoch: EPOCH,
            nonce: ByteArray(schedule::beacon_nonce(&self.seed.seed.0, &self.ids[i])),
            freq_khz: FREQ,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell: self.cell(i),
            tx_ms: self.slot_mid(i),
        }
    }

    /// The free-space RSSI bound (dBm) between nodes `i` and `j`'s cell centres, for an
    /// honest beacon (20 dBm, 3 dBi each side, 6 dB margin).
    pub fn bound_at_centres(&self, i: usize, j: usize) -> f64 {
        let d = self.cell(i).distance_m(self.cell(j));
        physics::max_rssi_dbm(20.0, 3.0, 3.0, d, f64::from(FREQ) * 1e3, 6.0)
    }

    /// An honest witness by node `j` of `beacon` (its envelope bytes): RSSI 10 to 25 dB below
    /// the free-space bound (walls and foliage), SNR from a −95 dBm noise floor.
    pub fn witness_msg(&self, j: usize, beacon_bytes: &[u8], beacon: &Beacon, i: usize) -> Witness {
        let extra_loss = 10.0 + (mix(((i as u64) << 32) ^ j as u64) % 150) as f64 / 10.0;
        let rssi = (self.bound_at_centres(i, j) - 6.0 - extra_loss).max(-95.0);
        let rssi_decidb = (rssi * 10.0).round() as i16;
        Witness {
            beacon: beacon_bytes.to_vec(),
            rssi: DeciDb(rssi_decidb),
            snr: DeciDb(rssi_decidb + 950),
            freq_khz: beacon.freq_khz,
            rx_ms: beacon.tx_ms + 3,
            cell: self.cell(j),
        }
    }

    /// An honest measured receipt envelope (measurer-signed, prover co-signed).
    pub fn receipt_bytes(
        &self,
        prover: usize,
        measurer: usize,
        dir: Direction,
        median_bps: u64,
    ) -> Vec<u8> {
        let msg = self.receipt_msg(prover, measurer, dir, median_bps);
        self.cosigned(prover, measurer, &msg)
    }

    pub fn receipt_msg(
        &self,
        prover: usize,
        measurer: usize,
        dir: Direction,
        median_bps: u64,
    ) -> BandwidthReceipt {
        let mut test_id = [0u8; 16];
        test_id[..8].copy_from_slice(
            &mix((prover as u64) << 20 ^ (measurer as u64) << 1 ^ dir as u64).to_le_bytes(),
        );
        BandwidthReceipt {
            test_id: ByteArray(test_id),
            epoch: EPOCH,
            prover: self.ids[prover],
            measurer: self.ids[measurer],
            direction: dir,
            outcome: Outcome::Measured(Measurement {
                bytes: median_bps / 8 * 7,
                duration_ms: 8_000,
                median_bps,
                p10_bps: median_bps / 2,
                rtt_idle_us: 18_000,
                rtt_loaded_us: 45_000,
            }),
        }
    }

    pub fn cosigned(&self, prover: usize, measurer: usize, msg: &BandwidthReceipt) -> Vec<u8> {
        let mut env = Envelope::sign(&self.keys[measurer], msg);
        env.cosign(&self.keys[prover]);
        env.to_bytes()
    }

    /// An honest heartbeat with a GNSS fix at the node's own point.
    pub fn heartbeat_msg(&self, i: usize, seq: u64, sent_ms: u64) -> Heartbeat {
        let (lat, lon) = self.points[i];
        Heartbeat {
            epoch: EPOCH,
            seq,
            uptime_s: seq * 300,
            sent_ms,
            fix: Some(GnssFix {
                lat_e7: (lat * 1e7).round() as i32,
                lon_e7: (lon * 1e7).round() as i32,
                alt_mm: 35_000,
                hdop_centi: 90,
                satellites: 9,
                utc_ms: sent_ms,
            }),
            cell: Some(self.cell(i)),
            versions: Versions::new("0.1.0", "sim"),
            peers: 4,
        }
    }
}

/// What an honest epoch looks like.
pub struct HonestOpts {
    /// Nodes within this distance witness each other's beacons.
    pub witness_radius_m: f64,
    /// The measurer pool (node indexes); empty for no receipts.
    pub measurers: Vec<usize>,
    /// Heartbeats per node (every interval from the start).
    pub heartbeats: u64,
}

/// Every honest proof of the epoch for every node of the fixture, checked with real envelopes,
/// with arrival order by arrival time. Heartbeats are recorded in the registry as the service
/// would.
pub fn honest_epoch(fx: &mut Fixture, opts: &HonestOpts) -> Vec<(Arrival, Fact)> {
    let n = fx.ids.len();
    let neighbours = neighbours(fx, opts.witness_radius_m);
    let mut timed: Vec<(u64, Fact)> = Vec::new();
    let beacons: Vec<(Beacon, Vec<u8>)> = (0..n)
        .map(|i| {
            let b = fx.beacon_msg(i);
            let bytes = fx.sign(i, &b);
            (b, bytes)
        })
        .collect();
    {
        let checker = fx.checker();
        for (i, (b, bytes)) in beacons.iter().enumerate() {
            let at = b.tx_ms + 100;
            let fact = checker.beacon(&open(bytes), at).unwrap();
            timed.push((at, Fact::Beacon(fact)));
            for &j in &neighbours[i] {
                let w = fx.witness_msg(j, bytes, b, i);
                let at = w.rx_ms + 200 + (j as u64 % 7);
                let fact = checker
                    .witness(&open(&fx.sign(j, &w)), at)
                    .unwrap_or_else(|r| panic!("honest witness {j} of {i} refused: {r:?}"));
                timed.push((at, Fact::Witness(fact)));
            }
        }
        if !opts.measurers.is_empty() {
            let pool = MeasurerPool::new(opts.measurers.iter().map(|i| fx.ids[*i]));
            let k = usize::from(fx.seed.params.measurers_per_prover);
            let index: std::collections::BTreeMap<NodeId, usize> =
                fx.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            for p in 0..n {
                for m in pool.assigned(&fx.seed.seed.0, &fx.ids[p], k) {
                    let mi = index[&m];
                    for dir in [Direction::Down, Direction::Up] {
                        let rate = 150_000_000 + mix((p * 1000 + mi) as u64) % 900_000_000;
                        let bytes = fx.receipt_bytes(p, mi, dir, rate);
                        let at =
                            START + 1_800_000 + (mix(p as u64 ^ (mi as u64) << 16) % 1_000_000);
                        let fact = checker.receipt(&open(&bytes), &pool).unwrap();
                        timed.push((at, Fact::Receipt(fact)));
                    }
                }
            }
        }
    }
    let interval = u64::from(fx.seed.params.heartbeat_interval_ms);
    for s in 0..opts.heartbeats {
        for i in 0..n {
            let sent = START + s * interval + 1_000 + (i as u64 % 50);
            let bytes = fx.sign(i, &fx.heartbeat_msg(i, s + 1, sent));
            let at = sent + 40;
            let fact = fx.checker().heartbeat(&open(&bytes), at).unwrap();
            fx.registry.record_heartbeat(&fact);
            timed.push((at, Fact::Heartbeat(fact)));
        }
    }
    timed.sort_by_key(|(at, f)| (*at, f.id()));
    timed
        .into_iter()
        .enumerate()
        .map(|(seq, (at, f))| (Arrival::new(seq as u64, at), f))
        .collect()
}

/// For each node, the other nodes whose cell centres lie within `radius_m` of its own, found
/// through a latitude-sorted window so that large fixtures stay fast.
pub fn neighbours(fx: &Fixture, radius_m: f64) -> Vec<Vec<usize>> {
    let centres: Vec<(f64, f64)> = (0..fx.ids.len()).map(|i| fx.cell(i).center()).collect();
    let mut by_lat: Vec<usize> = (0..centres.len()).collect();
    by_lat.sort_by(|a, b| centres[*a].0.total_cmp(&centres[*b].0));
    let dlat = radius_m / M_PER_DEG + 1e-6;
    let mut out = vec![Vec::new(); centres.len()];
    for (k, &i) in by_lat.iter().enumerate() {
        for &j in &by_lat[k + 1..] {
            if centres[j].0 - centres[i].0 > dlat {
                break;
            }
            let d = wisp_protocol::geo::haversine_m(
                centres[i].0,
                centres[i].1,
                centres[j].0,
                centres[j].1,
            );
            if d <= radius_m {
                out[i].push(j);
                out[j].push(i);
            }
        }
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

/// Pushes everything into a fresh state for the fixture's epoch.
pub fn state_of(fx: &Fixture, items: &[(Arrival, Fact)]) -> EpochState {
    let mut state = EpochState::new(fx.seed.clone());
    for (a, f) in items {
        f.push(&mut state, *a).unwrap();
    }
    state
}

/// The earliest time the fixture's epoch can close.
pub fn close_time(fx: &Fixture) -> u64 {
    fx.seed.end_ms() + u64::from(fx.seed.params.settle_ms)
}
