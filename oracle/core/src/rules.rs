//! Stateless per-proof checks.
//!
//! A [`Checker`] judges one opened proof against the registry and one epoch's seed and returns
//! either a compact *fact* (what the epoch close and the reward math need, nothing more) or the
//! [`Reason`] it is refused. Nothing here mutates state; the rules that need several proofs
//! (duplicates, limits, reciprocity) run at epoch close in [`crate::epoch`].
//!
//! Every physical rule is an upper bound that an honest node always meets: distances are taken
//! at their most favourable for the node (the two cells' radii are subtracted, or added for the
//! minimum-distance rule), gains and powers at their claimed values capped by what the node
//! onboarded, and signal speed is the speed of light in vacuum.
//!
//! The checks follow the order of their cost: registry look-ups and integer comparisons first,
//! then hashes, then floating-point physics, and the embedded beacon's signature only in
//! [`Checker::witness`] (callers that verify beacons in batches or cache them by proof id use
//! [`Checker::witness_with_beacon`]).

use wisp_protocol::envelope::{self, EnvelopeRef};
use wisp_protocol::msg::{
    BandwidthReceipt, Beacon, EpochSeed, Heartbeat, MAX_WIRE_OVERHEAD_PERMILLE, Outcome, Witness,
    rate_span_ms,
};
use wisp_protocol::units::{DeciDb, EpochNo, UnixMs};
use wisp_protocol::{NodeId, Opened, ProofId, Reason, physics, schedule};

pub use crate::facts::{BeaconFact, GnssEvidence, HeartbeatFact, ReceiptFact, WitnessFact};
use crate::registry::{NodeRecord, Registry};

/// Thermal noise density at room temperature, dBm per hertz (kT at 290 K).
const THERMAL_NOISE_DBM_PER_HZ: f64 = -174.0;

/// The narrowest bandwidth any wisp radio measures noise in, Hz (802.11ah's 1 MHz channels).
/// The SNR bound uses it whatever the beacon's width: a narrower noise bandwidth means a lower
/// noise floor and so a *higher* possible SNR, which keeps the bound on the node's side.
const NARROWEST_NOISE_BANDWIDTH_HZ: f64 = 1e6;

/// The nodes eligible to measure others this epoch, sorted and without duplicates, with the
/// rendezvous assignment of `docs/PROTOCOL.md` §6.3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasurerPool {
    eligible: Vec<NodeId>,
}

impl MeasurerPool {
    /// A pool of these candidates (order and duplicates do not matter).
    pub fn new(candidates: impl IntoIterator<Item = NodeId>) -> MeasurerPool {
        let mut eligible: Vec<NodeId> = candidates.into_iter().collect();
        eligible.sort_unstable();
        eligible.dedup();
        MeasurerPool { eligible }
    }

    /// At most `max` of the candidates (all of them when `max` is 0 or not smaller than the
    /// pool), drawn by `seed`: those with the lowest `schedule::pool_rank(seed, id)`. A
    /// large network caps its measurer set so that judging a receipt costs a bounded number
    /// of hashes, and the seed makes the draw unpredictable before the epoch opens.
    pub fn drawn(self, seed: &[u8; 32], max: usize) -> MeasurerPool {
        if max == 0 || self.eligible.len() <= max {
            return self;
        }
        let mut ranked: Vec<(u64, NodeId)> = self
            .eligible
            .into_iter()
            .map(|id| (pool_rank(seed, &id), id))
            .collect();
        ranked.select_nth_unstable(max);
        ranked.truncate(max);
        MeasurerPool::new(ranked.into_iter().map(|(_, id)| id))
    }

    /// The candidates, sorted.
    pub fn eligible(&self) -> &[NodeId] {
        &self.eligible
    }

    /// The `k` measurers of `prover` ([`schedule::assign_measurers`]).
    pub fn assigned(&self, seed: &[u8; 32], prover: &NodeId, k: usize) -> Vec<NodeId> {
        schedule::assign_measurers(seed, prover, &self.eligible, k)
    }

    /// Whether `measurer` is among the `k` assigned to `prover`: it is eligible, not the prover,
    /// and fewer than `k` other candidates outrank it (higher score, or equal score and smaller
    /// id). Same answer as [`MeasurerPool::assigned`] without sorting or allocating, and it
    /// stops as soon as `k` candidates outrank it; an assigned measurer still costs one hash
    /// per candidate.
    pub fn is_assigned(
        &self,
        seed: &[u8; 32],
        prover: &NodeId,
        measurer: &NodeId,
        k: usize,
    ) -> bool {
        if k == 0 || measurer == prover || self.eligible.binary_search(measurer).is_err() {
            return false;
        }
        let mine = schedule::measurer_score(seed, prover, measurer);
        let mut outranked_by = 0usize;
        for c in &self.eligible {
            if c == prover || c == measurer {
                continue;
            }
            let s = schedule::measurer_score(seed, prover, c);
            if s > mine || (s == mine && c < measurer) {
                outranked_by += 1;
                if outranked_by >= k {
                    return false;
                }
            }
        }
        true
    }
}

/// The rank of a candidate in an epoch's draw of its measurer set (lowest first): BLAKE3 with
/// its own derive-key context over the epoch seed and the node id, so it is unpredictable
/// before the seed and unrelated to the rendezvous scores.
pub fn pool_rank(seed: &[u8; 32], node: &NodeId) -> u64 {
    let h = blake3::Hasher::new_derive_key("wisp/v1 oracle measurer set draw")
        .update(seed)
        .update(node.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// `k` and the top `k` candidates as (score, id), best first.
type TopMeasurers = (usize, Vec<(u64, NodeId)>);

/// Every node that may measure from the next epoch on (onboarded with the measurer role). Kept
/// sorted lazily: nodes added or removed since the last snapshot are merged in one pass when
/// an epoch opens, so a replay of n onboards costs O(n log n), not O(n²).
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    members: std::collections::HashSet<NodeId>,
    sorted: Vec<NodeId>,
    pending: Vec<NodeId>,
    removed: bool,
}

impl Candidates {
    /// No candidates.
    pub fn new() -> Candidates {
        Candidates::default()
    }

    /// Adds a candidate (a newly onboarded node); a known one changes nothing.
    pub fn add(&mut self, node: NodeId) {
        if self.members.insert(node) {
            self.pending.push(node);
        }
    }

    /// Adds `node` when `measurer`, removes it otherwise (its onboard turned the role off).
    pub fn set(&mut self, node: NodeId, measurer: bool) {
        if measurer {
            self.add(node);
        } else if self.members.remove(&node) {
            self.removed = true;
        }
    }

    /// How many candidates there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The pool of an epoch opening now: every candidate so far, sorted.
    pub fn snapshot(&mut self) -> MeasurerPool {
        if !self.pending.is_empty() {
            self.sorted.append(&mut self.pending);
            self.sorted.sort_unstable();
        }
        if std::mem::take(&mut self.removed) {
            // A node removed and added again may sit in `sorted` twice.
            let members = &self.members;
            self.sorted.retain(|n| members.contains(n));
            self.sorted.dedup();
        }
        MeasurerPool {
            eligible: self.sorted.clone(),
        }
    }
}

/// One epoch's measurer assignments for a service that judges many receipts: the pool fixed
/// when the epoch opened (the `measurer_set` it published), and each prover's assignment
/// computed once — one score per candidate, O(n) — then answered from memory. The answers are
/// those of [`schedule::assign_measurers`] over that pool.
#[derive(Clone, Debug, Default)]
pub struct MeasurerCache {
    pool: MeasurerPool,
    /// Per (seed, prover): the top candidates by (score desc, id asc), at most `k` of them.
    assigned: std::collections::HashMap<([u8; 32], NodeId), TopMeasurers>,
}

impl MeasurerCache {
    /// The assignments over `pool`.
    pub fn new(pool: MeasurerPool) -> MeasurerCache {
        MeasurerCache {
            pool,
            assigned: std::collections::HashMap::new(),
        }
    }

    /// The pool, sorted.
    pub fn pool(&self) -> &MeasurerPool {
        &self.pool
    }

    /// Whether `measurer` is among the `k` assigned to `prover` under `seed`.
    pub fn is_assigned(
        &mut self,
        seed: &[u8; 32],
        prover: &NodeId,
        measurer: &NodeId,
        k: usize,
    ) -> bool {
        let pool = &self.pool;
        let (kept, top) = self.assigned.entry((*seed, *prover)).or_insert_with(|| {
            // The order of `schedule::assign_measurers` (score desc, then id asc), kept for the
            // best k only: one score per candidate and no sort of the whole pool.
            let mut top: Vec<(u64, NodeId)> = Vec::with_capacity(k + 1);
            for c in pool.eligible() {
                if c == prover {
                    continue;
                }
                let score = schedule::measurer_score(seed, prover, c);
                let pos = top.partition_point(|(s, id)| *s > score || (*s == score && id < c));
                if pos < k {
                    top.insert(pos, (score, *c));
                    top.truncate(k);
                }
            }
            (k, top)
        });
        if *kept != k {
            // `k` is a parameter of the seed's epoch, so this does not happen in the service;
            // answer correctly anyway.
            return pool.is_assigned(seed, prover, measurer, k);
        }
        top.iter().any(|(_, id)| id == measurer)
    }
}

/// Whether a refusal is evidence of cheating: the node signed something an honest agent never
/// signs (a level no radio reports, its own beacon as a witness, a beacon heard long after it
/// was sent, a measured receipt with a measurer the seed did not assign or a throughput the
/// test could not carry). Enough of them in an epoch penalize the node.
pub fn is_evidence(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::SignalImplausible
            | Reason::SelfWitness
            | Reason::WitnessReplayed
            | Reason::WrongMeasurer
            | Reason::ImplausibleThroughput
    )
}

/// Whether a witness refusal says the link contradicts the two asserted places (one of the two
/// nodes lies, which the epoch's links decide: [`crate::links`]).
pub fn is_contradiction(reason: Reason) -> bool {
    matches!(reason, Reason::RssiTooStrong | Reason::TooFar)
}

/// The epoch a witness's embedded beacon names, read without verifying anything: for routing a
/// witness to the right epoch's checker. `None` if the bytes are not a beacon envelope.
pub fn witness_epoch(witness: &Witness) -> Option<EpochNo> {
    let env = EnvelopeRef::parse(&witness.beacon).ok()?;
    envelope::decode_canonical::<Beacon>(env.payload)
        .ok()
        .map(|b| b.epoch)
}

/// The farthest a receiver can be from a transmitter and still hear it, by the link budget:
/// the distance `d` at which the free-space RSSI bound
/// `eirp + rx_gain − FSPL(d, f) + margin` falls to `floor`, i.e.
/// `FSPL(d) = L = eirp + rx_gain + margin − floor`, `d = c / (4π f) · 10^(L / 20)`.
/// Real paths lose more than free space, so nothing beyond this is heard.
pub fn link_range_m(
    eirp_dbm: f64,
    rx_gain_dbi: f64,
    freq_hz: f64,
    margin_db: f64,
    floor_dbm: f64,
) -> f64 {
    let budget_db = eirp_dbm + rx_gain_dbi + margin_db - floor_dbm;
    physics::SPEED_OF_LIGHT_M_S / (4.0 * core::f64::consts::PI * freq_hz)
        * 10f64.powf(budget_db / 20.0)
}

/// Judges proofs of one epoch against the registry. Cheap to build; build one per epoch (or
/// per batch) and share it.
#[derive(Clone, Copy, Debug)]
pub struct Checker<'a> {
    registry: &'a Registry,
    seed: &'a EpochSeed,
}

impl<'a> Checker<'a> {
    /// A checker for the epoch `seed` describes.
    pub fn new(registry: &'a Registry, seed: &'a EpochSeed) -> Checker<'a> {
        Checker { registry, seed }
    }

    /// The epoch's seed.
    pub fn seed(&self) -> &EpochSeed {
        self.seed
    }

    /// The onboarded, not denied node: `unknown_node` or `denied` otherwise.
    fn node(&self, id: &NodeId) -> Result<&'a NodeRecord, Reason> {
        Checker::known(self.registry, id)
    }

    /// The first rule of every proof: its node is onboarded (`unknown_node`) and not denied
    /// (`denied`).
    pub fn known<'r>(registry: &'r Registry, id: &NodeId) -> Result<&'r NodeRecord, Reason> {
        if registry.rules().is_denied(id) {
            return Err(Reason::Denied);
        }
        registry.get(id).ok_or(Reason::UnknownNode)
    }

    /// A beacon, as submitted by its beaconer.
    ///
    /// Rules, in order: the signer is onboarded (`unknown_node`) and not denied (`denied`);
    /// then [the beacon rules](Self::beacon_rules); and `tx_ms` is not more than the clock skew
    /// ahead of the oracle's clock (`timestamp_out_of_window`: a beacon reported before it was
    /// sent was not sent over the air).
    pub fn beacon(&self, beacon: &Opened<Beacon>, now_ms: UnixMs) -> Result<BeaconFact, Reason> {
        let node = self.node(&beacon.signer)?;
        self.beacon_rules(node, &beacon.msg)?;
        if beacon.msg.tx_ms > now_ms.saturating_add(self.registry.rules().config().clock_skew_ms) {
            return Err(Reason::TimestampOutOfWindow);
        }
        Ok(BeaconFact {
            id: beacon.id,
            node: beacon.signer,
            epoch: beacon.msg.epoch,
            tx_ms: beacon.msg.tx_ms,
        })
    }

    /// The rules a beacon must meet, for itself and inside a witness:
    ///
    /// - its epoch is this checker's (`wrong_epoch`);
    /// - `nonce = schedule::beacon_nonce(seed, node)` (`beacon_bad_nonce`): it was made after
    ///   the seed was published, by this node;
    /// - `tx_ms` lies in the node's slot `schedule::beacon_window(seed, node)` widened by the
    ///   clock skew on both sides (`beacon_wrong_slot`);
    /// - `freq_khz` lies in one of the node's declared bands (`beacon_undeclared_band`);
    /// - `cell` is the node's asserted cell (`beacon_cell_mismatch`).
    pub fn beacon_rules(&self, node: &NodeRecord, beacon: &Beacon) -> Result<(), Reason> {
        if beacon.epoch != self.seed.epoch {
            return Err(Reason::WrongEpoch);
        }
        if beacon.nonce.0 != schedule::beacon_nonce(&self.seed.seed.0, &node.id) {
            return Err(Reason::BeaconBadNonce);
        }
        let skew = self.registry.rules().config().clock_skew_ms;
        let (start, end) = schedule::beacon_window(self.seed, &node.id);
        if beacon.tx_ms < start.saturating_sub(skew) || beacon.tx_ms >= end.saturating_add(skew) {
            return Err(Reason::BeaconWrongSlot);
        }
        if node.band_for(beacon.freq_khz).is_none() {
            return Err(Reason::BeaconUndeclaredBand);
        }
        if beacon.cell != node.cell {
            return Err(Reason::BeaconCellMismatch);
        }
        Ok(())
    }

    /// A witness, opening (and so verifying the signature of) its embedded beacon. The witness
    /// envelope itself must already be opened.
    ///
    /// See [`Checker::witness_with_beacon`] for the rules.
    pub fn witness(
        &self,
        witness: &Opened<Witness>,
        now_ms: UnixMs,
    ) -> Result<WitnessFact, Reason> {
        // The cheap look-up first: an unknown witness costs no signature check.
        self.node(&witness.signer)?;
        let beacon = witness
            .msg
            .open_beacon()
            .map_err(|_| Reason::BeaconInvalid)?;
        self.witness_with_beacon(witness, &beacon, now_ms)
    }

    /// A witness whose embedded beacon the caller already opened with `envelope::open` (or
    /// verified in a batch and decoded): `beacon` must be opened from exactly
    /// `witness.msg.beacon`, which is checked by its proof id (`beacon_invalid` otherwise).
    ///
    /// Rules, in order:
    /// - the witness is onboarded and not denied (`unknown_node`, `denied`);
    /// - the beaconer is onboarded and not denied, and the beacon meets
    ///   [the beacon rules](Self::beacon_rules) (`beacon_invalid` for any of those);
    /// - the witness is not the beaconer (`self_witness`);
    /// - the witness's `cell` is its asserted cell (`witness_cell_mismatch`);
    /// - `|freq_witness − freq_beacon| ≤ freq_tolerance_khz`, and the beacon's frequency lies
    ///   in one of the witness's own declared bands (`frequency_mismatch`);
    /// - `rx_ms` is not more than the clock skew ahead of the oracle (`timestamp_out_of_window`);
    ///   `|rx_ms − tx_ms| ≤ replay_lag_ms` (`witness_replayed`: a beacon heard that long after it
    ///   was sent was replayed) and `≤ max_witness_lag_ms` (`witness_lag`);
    /// - the signal is plausible at all (`signal_implausible`): `floor ≤ RSSI ≤ max_rssi`,
    ///   `SNR ≤ max_snr`, and `SNR ≤ RSSI − N₀ + margin` where `N₀ = −174 dBm/Hz + 10·log10(1 MHz)`
    ///   is the thermal noise of the narrowest channel (no receiver's noise floor is lower);
    /// - with `d_max = d_centres + r_b + r_w` (the farthest the two nodes can be apart),
    ///   `d_max ≥ min_witness_distance_m` (`too_close`);
    /// - with `d_min = max(0, d_centres − r_b − r_w)` (the nearest they can be), and
    ///   `EIRP = min(tx_power + G_tx, band.max_eirp)` where `G_tx = min(claimed gain, onboarded
    ///   gain)`: `d_min ≤ link_range_m(EIRP, G_rx, f, margin, floor)` (`too_far`: even free
    ///   space could not carry the signal above the sensitivity floor);
    /// - `RSSI ≤ EIRP + G_rx − FSPL(d_min, f) + margin` (`rssi_too_strong`: stronger than free
    ///   space allows at that distance, `FSPL = 20·log10(4π·d·f/c)`), with `G_rx` the witness's
    ///   onboarded gain.
    pub fn witness_with_beacon(
        &self,
        witness: &Opened<Witness>,
        beacon: &Opened<Beacon>,
        now_ms: UnixMs,
    ) -> Result<WitnessFact, Reason> {
        let cfg = self.registry.rules().config();
        let wnode = self.node(&witness.signer)?;
        let w = &witness.msg;
        let b = &beacon.msg;
        let beacon_id = ProofId::of(&w.beacon);
        if beacon_id != beacon.id {
            return Err(Reason::BeaconInvalid);
        }
        let bnode = self
            .node(&beacon.signer)
            .map_err(|_| Reason::BeaconInvalid)?;
        self.beacon_rules(bnode, b)
            .map_err(|_| Reason::BeaconInvalid)?;
        if witness.signer == beacon.signer {
            return Err(Reason::SelfWitness);
        }
        if w.cell != wnode.cell {
            return Err(Reason::WitnessCellMismatch);
        }
        // It heard on the beacon's frequency, in a band its own radio declared.
        if w.freq_khz.abs_diff(b.freq_khz) > cfg.freq_tolerance_khz
            || wnode.band_for(b.freq_khz).is_none()
        {
            return Err(Reason::FrequencyMismatch);
        }
        if w.rx_ms > now_ms.saturating_add(cfg.clock_skew_ms) {
            return Err(Reason::TimestampOutOfWindow);
        }
        let lag = w.rx_ms.abs_diff(b.tx_ms);
        if lag > cfg.replay_lag_ms {
            return Err(Reason::WitnessReplayed);
        }
        if lag > cfg.max_witness_lag_ms {
            return Err(Reason::WitnessLag);
        }
        let rssi = w.rssi.db();
        let snr = w.snr.db();
        let margin = f64::from(cfg.rssi_margin_decidb) / 10.0;
        let floor = f64::from(cfg.sensitivity_floor_decidbm) / 10.0;
        let noise_floor = THERMAL_NOISE_DBM_PER_HZ + 10.0 * NARROWEST_NOISE_BANDWIDTH_HZ.log10();
        if w.rssi.0 < cfg.sensitivity_floor_decidbm
            || w.rssi.0 > cfg.max_rssi_decidbm
            || w.snr.0 > cfg.max_snr_decidb
            || snr > rssi - noise_floor + margin
        {
            return Err(Reason::SignalImplausible);
        }
        let centre = bnode.position.centre_distance_m(&wnode.position);
        let radii = bnode.position.radius_m + wnode.position.radius_m;
        if centre + radii < f64::from(cfg.min_witness_distance_m) {
            return Err(Reason::TooClose);
        }
        let d_min = (centre - radii).max(0.0);
        // The band exists: beacon_rules checked it.
        let band = bnode
            .band_for(b.freq_khz)
            .ok_or(Reason::BeaconUndeclaredBand)?;
        let tx_gain = b.antenna_gain.min(bnode.antenna_gain).db();
        let tx_power = b.tx_power.db().min(band.max_eirp.db() - tx_gain);
        let rx_gain = wnode.antenna_gain.db();
        let freq_hz = f64::from(b.freq_khz) * 1e3;
        if d_min > link_range_m(tx_power + tx_gain, rx_gain, freq_hz, margin, floor) {
            return Err(Reason::TooFar);
        }
        if rssi > physics::max_rssi_dbm(tx_power, tx_gain, rx_gain, d_min, freq_hz, margin) {
            return Err(Reason::RssiTooStrong);
        }
        Ok(WitnessFact {
            id: witness.id,
            witness: witness.signer,
            beacon_id,
            beaconer: beacon.signer,
            epoch: b.epoch,
            rssi: w.rssi,
            distance_m: saturating_u32(centre),
            band: crate::links::band_class(b.freq_khz),
            path_loss: deci_db(tx_power + tx_gain + rx_gain - rssi),
            // Bounded by `replay_lag_ms` above.
            lag_ms: i32::try_from(i128::from(w.rx_ms) - i128::from(b.tx_ms)).unwrap_or(i32::MAX),
        })
    }

    /// A bandwidth receipt (measurer-signed, prover co-signed when measured; the envelope rules
    /// already hold).
    ///
    /// Rules, in order:
    /// - prover and measurer are onboarded and not denied (`unknown_node`, `denied`);
    /// - its epoch is this checker's (`wrong_epoch`);
    /// - the measurer is one of the `measurers_per_prover` the seed assigns to the prover over
    ///   `pool` (`wrong_measurer`), so a prover cannot pick a friendly measurer;
    /// - the test succeeded (`test_failed`: recorded, not paid);
    /// - `median ≤ max_throughput_bps` and `median · span ≤ 8 · bytes` times the wire overhead
    ///   (`implausible_throughput`), with `span` = [`rate_span_ms`]`(duration)`: the median is
    ///   over 1 s windows after a warm-up of unknown length, so only one full window is certain
    ///   (for a test shorter than a window, its whole 100 ms bins): its bits, at least the
    ///   median's worth, are among the bytes counted. Comparing with `8 · bytes / duration`
    ///   instead would reject every honest test whose warm-up ran below the median rate, and
    ///   `min(duration, 1 s)` every sub-second test whose unfinished last bin ran slow;
    /// - `min(rtt_idle, rtt_loaded) ≥ 2 · d_min / v` with `d_min` the nearest the two asserted
    ///   cells can be and `v = rtt_signal_m_per_us` (`speed_of_light`): a reply faster than
    ///   light over the claimed distance means one of the places is false.
    pub fn receipt(
        &self,
        receipt: &Opened<BandwidthReceipt>,
        pool: &MeasurerPool,
    ) -> Result<ReceiptFact, Reason> {
        self.receipt_with(receipt, |seed, prover, measurer, k| {
            pool.is_assigned(seed, prover, measurer, k)
        })
    }

    /// [`Checker::receipt`] with the measurer assignment answered by `is_assigned(seed, prover,
    /// measurer, k)`, which must agree with [`MeasurerPool::is_assigned`] (the service answers
    /// from a [`MeasurerCache`]).
    pub fn receipt_with(
        &self,
        receipt: &Opened<BandwidthReceipt>,
        is_assigned: impl FnOnce(&[u8; 32], &NodeId, &NodeId, usize) -> bool,
    ) -> Result<ReceiptFact, Reason> {
        let cfg = self.registry.rules().config();
        let r = &receipt.msg;
        let prover = self.node(&r.prover)?;
        let measurer = self.node(&r.measurer)?;
        if r.epoch != self.seed.epoch {
            return Err(Reason::WrongEpoch);
        }
        let k = usize::from(self.seed.params.measurers_per_prover);
        if !is_assigned(&self.seed.seed.0, &r.prover, &r.measurer, k) {
            return Err(Reason::WrongMeasurer);
        }
        let m = match &r.outcome {
            Outcome::Failed(_) => return Err(Reason::TestFailed),
            Outcome::Measured(m) => m,
        };
        let window_ms = u128::from(rate_span_ms(m.duration_ms));
        // One window cannot carry more than the whole test (rates are IP-layer rates, at most
        // MAX_WIRE_OVERHEAD_PERMILLE / 1000 of the payload rate).
        if m.median_bps > cfg.max_throughput_bps
            || u128::from(m.median_bps) * window_ms * 1_000
                > u128::from(m.bytes) * 8 * 1_000 * u128::from(MAX_WIRE_OVERHEAD_PERMILLE)
        {
            return Err(Reason::ImplausibleThroughput);
        }
        let d_min = prover.position.min_distance_m(&measurer.position);
        let fastest = m.rtt_idle_us.min(m.rtt_loaded_us);
        if f64::from(fastest) < physics::min_rtt_us(d_min, cfg.rtt_signal_m_per_us) {
            return Err(Reason::SpeedOfLight);
        }
        Ok(ReceiptFact {
            id: receipt.id,
            epoch: r.epoch,
            prover: r.prover,
            measurer: r.measurer,
            direction: r.direction,
            median_bps: m.median_bps,
            rtt_idle_us: m.rtt_idle_us,
        })
    }

    /// A heartbeat at oracle time `now_ms`. After it is accepted, the caller records it with
    /// [`Registry::record_heartbeat`] (the replay and rate rules read that).
    ///
    /// Rules, in order:
    /// - the node is onboarded and not denied (`unknown_node`, `denied`);
    /// - its epoch is this checker's (`wrong_epoch`);
    /// - `sent_ms` lies in the epoch widened by the clock skew, is not more than the skew ahead
    ///   of `now_ms`, and not more than `heartbeat_max_delay_ms` behind it
    ///   (`timestamp_out_of_window`);
    /// - `seq` was not accepted before from this node (`heartbeat_replay`): not in an open
    ///   epoch, and above the latest of the closed epochs. A number below one already accepted
    ///   is fine: a backlog resent after an outage or a restart may arrive in any order;
    /// - `sent_ms` is at least half a heartbeat interval from the nearest accepted heartbeats
    ///   signed before and after it (`heartbeat_too_frequent`). Spacing is measured on the
    ///   node's signing times, not on arrival, because the agent's outbox rightly resends queued
    ///   heartbeats in a burst after an outage; the delay bound above stops back-dating, and
    ///   comparing with both neighbours (not only the latest) means no order of arrival lets two
    ///   heartbeats signed too close together both count.
    ///
    /// A GNSS fix (from at least `min_fix_satellites`) is compared with the asserted cell: the
    /// shortest distance from the cell to the fix picks a trust band, and beyond the last band
    /// the fact carries [`GnssEvidence::Mismatch`] (see [`HeartbeatFact::finding`]). The
    /// heartbeat is accepted either way.
    pub fn heartbeat(
        &self,
        heartbeat: &Opened<Heartbeat>,
        now_ms: UnixMs,
    ) -> Result<HeartbeatFact, Reason> {
        let rules = self.registry.rules();
        let cfg = rules.config();
        let node = self.node(&heartbeat.signer)?;
        let hb = &heartbeat.msg;
        if hb.epoch != self.seed.epoch {
            return Err(Reason::WrongEpoch);
        }
        let skew = cfg.clock_skew_ms;
        if hb.sent_ms < self.seed.start_ms.saturating_sub(skew)
            || hb.sent_ms >= self.seed.end_ms().saturating_add(skew)
            || hb.sent_ms > now_ms.saturating_add(skew)
            || now_ms > hb.sent_ms.saturating_add(cfg.heartbeat_max_delay_ms)
        {
            return Err(Reason::TimestampOutOfWindow);
        }
        if node.heartbeats.is_replay(hb.seq) {
            return Err(Reason::HeartbeatReplay);
        }
        let half = u64::from(self.seed.params.heartbeat_interval_ms / 2);
        let (before, after) = node.heartbeats.neighbours(hb.sent_ms);
        if before.is_some_and(|b| hb.sent_ms < b.sent_ms.saturating_add(half))
            || after.is_some_and(|a| a.sent_ms < hb.sent_ms.saturating_add(half))
        {
            return Err(Reason::HeartbeatTooFrequent);
        }
        let gnss = match &hb.fix {
            Some(fix) if fix.satellites >= cfg.min_fix_satellites => {
                let d = node
                    .position
                    .min_distance_to_m(f64::from(fix.lat_e7) / 1e7, f64::from(fix.lon_e7) / 1e7);
                match rules.trust_for_distance(d) {
                    Some(trust_bps) => GnssEvidence::Within {
                        distance_m: saturating_u32(d),
                        trust_bps,
                    },
                    None => GnssEvidence::Mismatch {
                        distance_m: saturating_u32(d),
                    },
                }
            }
            _ => GnssEvidence::NoFix,
        };
        Ok(HeartbeatFact {
            id: heartbeat.id,
            node: heartbeat.signer,
            epoch: hb.epoch,
            seq: hb.seq,
            sent_ms: hb.sent_ms,
            asserted_ms: node.asserted_ms,
            gnss,
        })
    }
}

/// Tenths of a dB, rounded and saturating.
fn deci_db(db: f64) -> DeciDb {
    // `as` from f64 saturates, which bounds absurd values without wrapping.
    #[allow(clippy::cast_possible_truncation)]
    let v = (db * 10.0).round() as i16;
    DeciDb(v)
}

/// Whole metres, saturating (a distance is never negative and never above 2³² m on Earth).
fn saturating_u32(x: f64) -> u32 {
    // `as` from f64 saturates and maps NaN to 0, which is what we want here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = x.round() as u32;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_range_inverts_the_rssi_bound() {
        // 20 dBm EIRP, 3 dBi rx, 6 dB margin, floor −95 dBm at 2.4 GHz.
        let d = link_range_m(20.0, 3.0, 2.4e9, 6.0, -95.0);
        let at = physics::max_rssi_dbm(20.0, 0.0, 3.0, d, 2.4e9, 6.0);
        assert!((at - -95.0).abs() < 1e-9, "{at}");
        // Budget 124 dB: 20·log10(d) = 124 − 20·log10(4π·2.4e9/c) = 124 − 40.05 → d ≈ 15.75 km.
        assert!((d - 15_754.0).abs() < 20.0, "{d}");
    }
}
