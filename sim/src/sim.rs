//! The run: builds the world, onboards every node, then drives epochs through the event
//! queue — the oracle signs each epoch's seed, every agent core beacons in its slot, receivers'
//! cores witness what the radio model lets them hear, proofs travel through faults to the
//! oracle's rules, and each epoch closes into rewards.
//!
//! Event kinds and what they do:
//!
//! | tag | event        | effect |
//! |-----|--------------|--------|
//! | 1   | `EpochStart` | oracle signs the seed (delayed while it is down), churn, crashes |
//! | 2   | `Seed`       | a core receives the seed (and a GNSS fix) |
//! | 3   | `Wake`       | a core's timer: heartbeat, beacon |
//! | 4   | `Rx`         | a core receives a frame (over the air, or relayed by a cheater) |
//! | 5   | `Deliver`    | a proof reaches the oracle (or is lost, held by a partition or downtime) |
//! | 6   | `Close`      | the oracle closes an epoch: rules, rewards, invariants |
//! | 7   | `Bandwidth`  | a round of bandwidth tests with the rendezvous measurers |
//! | 8/9 | `Crash`/`Restart` | an agent dies and comes back with its persisted sequence number |
//! | 10  | `Backdate`   | a fake-heartbeat cheater sends a whole epoch's back-dated heartbeats |
//!
//! Every processed event is recorded in the [`EventLog`], and so is every oracle verdict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;
use wisp_agent_core::core::{Core, CoreConfig, Event as CoreEvent, Ignored, RadioParams};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{
    Band, Direction, EpochParams, EpochSeed, Heartbeat, Onboard, Versions, Witness,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{NodeKey, physics};

use crate::backhaul;
use crate::cheaters::{self, Archetype};
use crate::engine::{EventLog, Queue};
use crate::faults::Faults;
use crate::oracle::{Closed, Oracle, Verdict};
use crate::radio;
use crate::rng;
use crate::scenario::Scenario;
use crate::stats::{EpochStats, Stats};
use crate::world::{self, World};

/// Unix time (ms) of simulated time zero.
pub const T0_MS: u64 = 1_800_000_000_000;

/// Frames a replaying cheater keeps for the next epoch.
const CAPTURE_CAP: usize = 16;

/// Receptions due within this window of the first one form one parallel batch. Every output
/// of a reception is scheduled at least the broker delay later, far beyond the window.
const RX_BATCH_WINDOW_US: u64 = 1_000;

/// Largest reception batch.
const RX_BATCH_MAX: usize = 64;

/// The simulated oracle's key for a run's seed.
pub fn oracle_key(seed: u64) -> NodeKey {
    NodeKey::from_seed(
        blake3::Hasher::new_derive_key("wisp-sim oracle key")
            .update(&seed.to_le_bytes())
            .finalize()
            .as_bytes(),
    )
}

/// A core's outputs after one input.
#[derive(Debug, Default)]
struct Outputs {
    frames: Vec<Arc<[u8]>>,
    proofs: Vec<Vec<u8>>,
    events: Vec<CoreEvent>,
    timeout: Option<u64>,
}

fn drain(core: &mut Core) -> Outputs {
    let mut out = Outputs::default();
    while let Some(f) = core.poll_transmit() {
        out.frames.push(f.payload.into());
    }
    while let Some(p) = core.poll_proof() {
        out.proofs.push(p.bytes);
    }
    while let Some(e) = core.poll_event() {
        out.events.push(e);
    }
    out.timeout = core.poll_timeout();
    out
}

/// One reception of a parallel batch.
struct RxJob {
    t: u64,
    node: u32,
    frame: Arc<[u8]>,
    rssi: i16,
    snr: i16,
    freq: u32,
    local: u64,
    rx_ms: u64,
    core: Core,
    out: Outputs,
}

#[derive(Debug)]
enum Ev {
    EpochStart(u64),
    Seed(u32),
    Wake(u32, u32),
    Rx {
        node: u32,
        frame: Arc<[u8]>,
        rssi: i16,
        snr: i16,
        freq: u32,
        forged: bool,
        /// How long before delivery the frame was on the air, ms, when the receiver reports
        /// the air time (an evasive relay); 0 otherwise.
        backdate_ms: u64,
    },
    Deliver(u32),
    Close(u64),
    Bandwidth(u64),
    Crash(u32),
    Restart(u32),
    Backdate(u32, u64),
}

#[derive(Debug, Default)]
struct NodeRt {
    core: Option<Core>,
    /// Whether the node runs a core at all (not a helper id, not a back-dating faker).
    has_core: bool,
    powered: bool,
    crashed: bool,
    wake_gen: u32,
    wake_at: Option<u64>,
    hb_seq: u64,
    /// When the stopped core last signed a heartbeat and last beaconed (the agent persists
    /// both, and a restarted core resumes from them).
    hb_ms: Option<u64>,
    beacon_ms: Option<u64>,
    captured: Vec<Arc<[u8]>>,
}

#[derive(Debug)]
struct Pending {
    node: u32,
    bytes: Vec<u8>,
    nonce: u64,
    attempt: u32,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The tally.
    pub stats: Stats,
    /// The event-log hash.
    pub hash: String,
    /// Events processed.
    pub events: u64,
    /// Wall time of the event loop (world building and onboarding excluded).
    pub wall: Duration,
    /// Simulated hours.
    pub sim_hours: f64,
    /// Per identity: archetype, whether it is sparse (at most 2 likely hearers), res-8 hex.
    pub nodes: Vec<(Archetype, bool, u64)>,
    /// Per identity: its node id.
    pub ids: Vec<wisp_protocol::NodeId>,
    /// Hotspots (identities below this index).
    pub hotspots: u32,
    /// Signatures the oracle verified and decoded unverified.
    pub verified: (u64, u64),
    /// The oracle's input and answers, when [`Sim::recording`] asked for them.
    pub oracle_log: Option<crate::oracle::Log>,
}

/// The simulation of one scenario.
pub struct Sim<'a> {
    sc: &'a Scenario,
    world: World,
    q: Queue<Ev>,
    log: EventLog,
    oracle: Oracle,
    oracle_key: NodeKey,
    rt: Vec<NodeRt>,
    faults: Faults,
    seed_bytes: Option<Vec<u8>>,
    current: Option<u64>,
    stats: Stats,
    groups: BTreeMap<(Archetype, u32), Vec<u32>>,
    sniffers_of: Vec<Vec<(u32, f32)>>,
    pending: Vec<Option<Pending>>,
    free: Vec<u32>,
    nonce: u64,
    epochs: u64,
    dur_us: u64,
    progress: Option<indicatif::ProgressBar>,
}

impl std::fmt::Debug for Sim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.world.nodes.len())
            .field("now_us", &self.q.now_us())
            .finish()
    }
}

fn deci(db: f64) -> DeciDb {
    // Radio levels are tens of dB.
    #[allow(clippy::cast_possible_truncation)]
    let v = (db * 10.0).round().clamp(-32_000.0, 32_000.0) as i16;
    DeciDb(v)
}

fn whole_db(db: f64) -> i16 {
    #[allow(clippy::cast_possible_truncation)]
    let v = db.round().clamp(-300.0, 300.0) as i16;
    v
}

impl<'a> Sim<'a> {
    /// Builds the world (honest-only for the fair baseline) and onboards every node.
    pub fn new(sc: &'a Scenario, honest_only: bool, progress: bool) -> Result<Sim<'a>> {
        Sim::build(sc, honest_only, progress, false)
    }

    /// [`Sim::new`], recording everything the oracle is given and answers, onboarding
    /// included ([`RunOutput::oracle_log`]).
    pub fn recording(sc: &'a Scenario, honest_only: bool) -> Result<Sim<'a>> {
        Sim::build(sc, honest_only, false, true)
    }

    fn build(sc: &'a Scenario, honest_only: bool, progress: bool, record: bool) -> Result<Sim<'a>> {
        let world = World::build(sc, honest_only)?;
        let rules = sc
            .oracle
            .rules
            .validate()
            .context("oracle.rules: invalid rules")?;
        let oracle_key = oracle_key(sc.seed);
        let mut oracle = Oracle::new(
            oracle_key.clone(),
            rules,
            sc.oracle.verify_fraction,
            sc.oracle.ingest_batch,
        );
        if record {
            oracle.record();
        }
        // Onboarding: every identity signs an Onboard and publishes it at time zero.
        let onboards: Vec<Vec<u8>> = world
            .nodes
            .par_iter()
            .map(|n| {
                let p = &world.profiles[n.profile];
                let msg = Onboard {
                    owner: format!("owner-{}", n.idx),
                    cell: n.cell,
                    antenna_gain: deci(n.declared_gain_dbi),
                    antenna_height_dm: 100,
                    bands: vec![Band {
                        low_khz: p.band.0,
                        high_khz: p.band.1,
                        max_eirp: deci(p.band.2),
                    }],
                    measurer: true,
                    issued_ms: T0_MS,
                    attestation: None,
                };
                Envelope::sign(&n.key, &msg).to_bytes()
            })
            .collect();
        for (n, bytes) in world.nodes.iter().zip(&onboards) {
            oracle.name(n.id, n.idx);
            oracle.arrive(&n.id, bytes.clone(), T0_MS);
        }
        let refused: Vec<(u32, wisp_protocol::Reason)> = oracle
            .flush()
            .into_iter()
            .filter_map(|v| v.reason.map(|r| (v.node, r)))
            .collect();
        anyhow::ensure!(
            refused.is_empty(),
            "onboarding refused {} nodes (first: {:?})",
            refused.len(),
            refused.first()
        );
        let mut stats = Stats::new(world.nodes.len());
        stats.signatures += onboards.len() as u64;
        let xs: Vec<f64> = world.nodes.iter().map(|n| n.phys.x).collect();
        let faults = Faults::new(&sc.faults, sc.seed, &xs);
        let mut groups: BTreeMap<(Archetype, u32), Vec<u32>> = BTreeMap::new();
        for n in &world.nodes {
            if matches!(
                n.role.archetype,
                Archetype::CollusionRing | Archetype::ColludingMeasurer
            ) {
                groups
                    .entry((n.role.archetype, n.role.group))
                    .or_default()
                    .push(n.idx);
            }
        }
        let mut sniffers_of: Vec<Vec<(u32, f32)>> = vec![Vec::new(); world.nodes.len()];
        for (j, list) in world.sniffed.iter().enumerate() {
            for (tx, mean) in list {
                sniffers_of[*tx as usize].push((u32::try_from(j).unwrap_or(u32::MAX), *mean));
            }
        }
        let dur_us = sc.epoch.duration_ms.max(1) * 1000;
        let epochs = sc.epochs();
        let mut sim = Sim {
            sc,
            q: Queue::new(),
            log: EventLog::new(),
            oracle,
            oracle_key,
            rt: Vec::new(),
            faults,
            seed_bytes: None,
            current: None,
            stats,
            groups,
            sniffers_of,
            pending: Vec::new(),
            free: Vec::new(),
            nonce: 0,
            epochs,
            dur_us,
            progress: None,
            world,
        };
        sim.rt = (0..sim.world.nodes.len())
            .map(|_| NodeRt::default())
            .collect();
        for i in 0..sim.world.nodes.len() {
            let n = &sim.world.nodes[i];
            let has_core = n.role.helper_of.is_none()
                && !(n.role.archetype == Archetype::FakeHeartbeat && n.role.variant);
            sim.rt[i].has_core = has_core;
            sim.rt[i].powered = true;
            if has_core {
                sim.start_core(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        if progress {
            let pb = indicatif::ProgressBar::new(epochs);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} epoch {pos}/{len} {elapsed_precise} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            sim.progress = Some(pb);
        }
        Ok(sim)
    }

    fn local_ms(&self, node: u32) -> u64 {
        self.local_ms_at(node, self.q.now_us())
    }

    fn local_ms_at(&self, node: u32, t_us: u64) -> u64 {
        let t = i64::try_from(T0_MS + t_us / 1000).unwrap_or(i64::MAX);
        u64::try_from(t + self.world.nodes[node as usize].clock_skew_ms).unwrap_or(0)
    }

    fn sim_us_of_local(&self, node: u32, local_ms: u64) -> u64 {
        let skew = self.world.nodes[node as usize].clock_skew_ms;
        let true_ms = i64::try_from(local_ms).unwrap_or(i64::MAX) - skew;
        let rel = true_ms - i64::try_from(T0_MS).unwrap_or(0);
        u64::try_from(rel.max(0)).unwrap_or(0) * 1000
    }

    fn start_core(&mut self, node: u32) {
        let n = &self.world.nodes[node as usize];
        let p = &self.world.profiles[n.profile];
        let mut cfg = CoreConfig::new(Some(n.cell), Versions::new("wisp-sim", "sim"));
        cfg.radio = RadioParams {
            freq_khz: p.freq_khz,
            width_mhz: p.width_mhz,
            tx_power: deci(p.tx_power_dbm),
            antenna_gain: deci(n.declared_gain_dbi),
        };
        cfg.heartbeat_interval_ms = u64::from(self.sc.epoch.heartbeat_interval_ms);
        cfg.max_witnesses_per_epoch = self.sc.radio.max_witnesses_per_epoch as usize;
        let now = self.local_ms(node);
        let rt = &mut self.rt[node as usize];
        let mut core = Core::new(n.key.clone(), cfg, self.oracle_key.id(), now, rt.hb_seq);
        if let Some(ms) = rt.hb_ms {
            core.resume_heartbeats(ms, now);
        }
        if let Some(ms) = rt.beacon_ms {
            core.resume_beacon(ms);
        }
        rt.core = Some(core);
        rt.wake_at = None;
        rt.wake_gen += 1;
    }

    fn stop_core(&mut self, node: u32) {
        let rt = &mut self.rt[node as usize];
        if let Some(c) = rt.core.take() {
            rt.hb_seq = c.heartbeat_seq();
            let a = c.activity();
            rt.hb_ms = a.last_heartbeat_ms.or(rt.hb_ms);
            rt.beacon_ms = a.last_beacon_ms.or(rt.beacon_ms);
        }
        rt.wake_at = None;
        rt.wake_gen += 1;
    }

    /// Runs to the end. Returns what was measured.
    pub fn run(mut self) -> RunOutput {
        let started = Instant::now();
        self.q.schedule(0, Ev::EpochStart(0));
        // The run ends when the last epoch has closed: cores always have a next timer.
        let end_us =
            self.epochs * self.dur_us + u64::from(self.sc.epoch.settle_ms) * 1000 + 60_000_000;
        while let Some((t, seq, ev)) = self.q.pop() {
            if t > end_us {
                break;
            }
            if let Ev::Rx { node, .. } = &ev {
                let mut nodes = vec![*node];
                let mut batch = vec![(t, seq, ev)];
                while batch.len() < RX_BATCH_MAX {
                    match self.q.peek() {
                        Some((t2, Ev::Rx { node, .. }))
                            if t2 <= t + RX_BATCH_WINDOW_US && !nodes.contains(node) =>
                        {
                            nodes.push(*node);
                        }
                        _ => break,
                    }
                    if let Some(e) = self.q.pop() {
                        batch.push(e);
                    }
                }
                if batch.len() == 1 {
                    if let Some((t, seq, ev)) = batch.pop() {
                        self.step(t, seq, ev);
                    }
                } else {
                    self.rx_batch(batch);
                }
                continue;
            }
            self.step(t, seq, ev);
        }
        if let Some(pb) = &self.progress {
            pb.finish_and_clear();
        }
        let nodes = self
            .world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let p = &self.world.profiles[n.profile];
                let hearers = self.world.neighbours[i]
                    .iter()
                    .filter(|(_, m)| f64::from(*m) >= p.sensitivity_dbm)
                    .count();
                (n.role.archetype, hearers <= 2, n.cell.parent(8).as_u64())
            })
            .collect();
        RunOutput {
            hash: self.log.hex(),
            events: self.q.processed(),
            wall: started.elapsed(),
            // The simulated period: every epoch, start to end.
            sim_hours: (self.epochs * self.dur_us) as f64 / 3.6e9,
            hotspots: self.world.hotspots,
            verified: self.oracle.verified(),
            oracle_log: self.oracle.take_log(),
            stats: self.stats,
            ids: self.world.nodes.iter().map(|n| n.id).collect(),
            nodes,
        }
    }

    fn step(&mut self, t: u64, seq: u64, ev: Ev) {
        match ev {
            Ev::EpochStart(e) => {
                self.log.record(t, seq, 1, &[e]);
                self.epoch_start(e);
            }
            Ev::Seed(n) => {
                self.log.record(t, seq, 2, &[u64::from(n)]);
                self.seed_node(n);
            }
            Ev::Wake(n, g) => {
                self.log.record(t, seq, 3, &[u64::from(n), u64::from(g)]);
                let local = self.local_ms(n);
                let rt = &mut self.rt[n as usize];
                if rt.wake_gen == g
                    && let Some(core) = rt.core.as_mut()
                {
                    rt.wake_at = None;
                    core.handle_timeout(local);
                    self.pump(n);
                }
            }
            Ev::Rx {
                node,
                frame,
                rssi,
                snr,
                freq,
                forged,
                backdate_ms,
            } => {
                self.record_rx(t, seq, node, &frame, rssi, snr, freq, forged);
                self.receive(node, &frame, rssi, snr, freq, forged, backdate_ms);
            }
            Ev::Deliver(slot) => {
                self.log.record(t, seq, 5, &[u64::from(slot)]);
                self.deliver(slot);
            }
            Ev::Close(e) => {
                self.log.record(t, seq, 6, &[e]);
                if let Some(until) = self.faults.oracle_down_until(t) {
                    self.q.schedule(until, Ev::Close(e));
                } else {
                    self.close(e);
                }
            }
            Ev::Bandwidth(e) => {
                self.log.record(t, seq, 7, &[e]);
                self.bandwidth(e);
            }
            Ev::Crash(n) => {
                self.log.record(t, seq, 8, &[u64::from(n)]);
                if self.rt[n as usize].core.is_some() {
                    self.stop_core(n);
                    self.rt[n as usize].crashed = true;
                    self.stats.core_event("crash");
                    let at = t + self.faults.restart_after_us();
                    self.q.schedule(at, Ev::Restart(n));
                }
            }
            Ev::Restart(n) => {
                self.log.record(t, seq, 9, &[u64::from(n)]);
                let rt = &mut self.rt[n as usize];
                rt.crashed = false;
                if rt.powered && rt.has_core && rt.core.is_none() {
                    self.start_core(n);
                    // The broker keeps the seed retained: a restarted agent gets it at once.
                    self.seed_node(n);
                }
            }
            Ev::Backdate(n, e) => {
                self.log.record(t, seq, 10, &[u64::from(n), e]);
                self.backdate(n, e);
            }
        }
    }

    fn epoch_start(&mut self, e: u64) {
        let now = self.q.now_us();
        if let Some(until) = self.faults.oracle_down_until(now) {
            self.stats.core_event("seed_delayed_oracle_down");
            self.q.schedule(until, Ev::EpochStart(e));
            return;
        }
        let start_ms = T0_MS + e * self.sc.epoch.duration_ms;
        let ec = &self.sc.epoch;
        let seed = EpochSeed {
            epoch: e,
            start_ms,
            duration_ms: ec.duration_ms,
            seed: (*blake3::Hasher::new_derive_key("wisp-sim epoch seed")
                .update(&self.sc.seed.to_le_bytes())
                .update(&e.to_le_bytes())
                .finalize()
                .as_bytes())
            .into(),
            params: EpochParams {
                slot_count: ec.slot_count,
                witness_limit: ec.witness_limit,
                measurers_per_prover: ec.measurers_per_prover,
                heartbeat_interval_ms: ec.heartbeat_interval_ms,
                settle_ms: ec.settle_ms,
            },
        };
        self.seed_bytes = Some(Envelope::sign(&self.oracle_key, &seed).to_bytes());
        self.stats.signatures += 1;
        let verdicts = self.oracle.open_epoch(seed);
        self.record_verdicts(&verdicts);
        self.current = Some(e);
        let epoch_start_us = e * self.dur_us;
        for i in 0..self.rt.len() {
            let node = u32::try_from(i).unwrap_or(u32::MAX);
            let churned = self.faults.churned(node, e);
            let rt = &mut self.rt[i];
            rt.powered = !churned;
            if !rt.has_core {
                if self.world.nodes[i].role.archetype == Archetype::FakeHeartbeat && !churned {
                    let at = epoch_start_us + self.dur_us.saturating_sub(60_000_000);
                    self.q.schedule(at, Ev::Backdate(node, e));
                }
                continue;
            }
            if churned {
                if rt.core.is_some() {
                    self.stop_core(node);
                    self.stats.core_event("churn_off");
                }
                continue;
            }
            if rt.core.is_none() && !rt.crashed {
                self.start_core(node);
            }
            if self.rt[i].core.is_some() {
                let jitter = rng::hash_u64(
                    self.sc.seed,
                    rng::Purpose::Delivery,
                    &[9, u64::from(node), e],
                ) % 500_000;
                self.q.schedule(
                    now + self.sc.oracle.delivery_ms * 1000 + jitter,
                    Ev::Seed(node),
                );
            }
            if let Some(off) = self.faults.crash_in(node, e, self.dur_us) {
                self.q.schedule(epoch_start_us + off, Ev::Crash(node));
            }
        }
        let settle_us = u64::from(self.sc.epoch.settle_ms) * 1000;
        self.q.schedule(
            epoch_start_us + self.dur_us + settle_us + 1000,
            Ev::Close(e),
        );
        let every = u64::from(self.sc.backhaul.test_every_epochs);
        if every > 0 && e.is_multiple_of(every) {
            self.q
                .schedule(epoch_start_us + self.dur_us / 2, Ev::Bandwidth(e));
        }
        if e + 1 < self.epochs {
            self.q
                .schedule((e + 1) * self.dur_us, Ev::EpochStart(e + 1));
        }
        if let Some(pb) = &self.progress {
            pb.set_position(e + 1);
        }
    }

    fn spoofs_gnss(&self, node: u32) -> bool {
        matches!(
            self.world.nodes[node as usize].role.archetype,
            Archetype::FakeLocation | Archetype::CollusionRing | Archetype::FakeHeartbeat
        )
    }

    fn seed_node(&mut self, n: u32) {
        let Some(bytes) = self.seed_bytes.clone() else {
            return;
        };
        let local = self.local_ms(n);
        let e = self.current.unwrap_or(0);
        let spec = &self.world.nodes[n as usize];
        let at = if self.spoofs_gnss(n) {
            spec.asserted
        } else {
            spec.phys
        };
        let fix = world::fix_at(self.sc.seed, n, e, &at, &self.world.proj, local);
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        if core.handle_seed(&bytes, local).is_err() {
            self.stats.core_event("seed_refused");
        }
        core.handle_fix(fix);
        self.pump(n);
        // A replaying cheater now witnesses last epoch's captured beacons itself.
        let captured = std::mem::take(&mut self.rt[n as usize].captured);
        for frame in captured {
            self.replay(n, &frame);
        }
    }

    fn pump(&mut self, n: u32) {
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        let out = drain(core);
        self.apply(n, out, self.q.now_us());
    }

    /// Applies a core's outputs as of time `t_us`.
    fn apply(&mut self, n: u32, out: Outputs, t_us: u64) {
        for e in out.events {
            let name = match e {
                CoreEvent::NewEpoch { .. } => continue,
                CoreEvent::ClockSkew { .. } => "clock_skew_warning",
                CoreEvent::BeaconMissed { .. } => "beacon_missed",
                CoreEvent::OutputDropped => "output_dropped",
                CoreEvent::Ignored(why) => match why {
                    Ignored::Invalid(_) => "ignored_invalid",
                    Ignored::Own => "ignored_own",
                    Ignored::WrongEpoch => "ignored_wrong_epoch",
                    Ignored::BadNonce => "ignored_bad_nonce",
                    Ignored::WrongSlot => "ignored_wrong_slot",
                    Ignored::BadRxTime => "ignored_bad_rx_time",
                    Ignored::Duplicate => "ignored_duplicate",
                    Ignored::Budget => "ignored_budget",
                    Ignored::NoLocation => "ignored_no_location",
                    Ignored::NoBeacon => "ignored_no_beacon",
                },
            };
            self.stats.core_event(name);
        }
        self.stats.signatures += out.proofs.len() as u64;
        for f in out.frames {
            self.transmit(n, f);
        }
        for p in out.proofs {
            self.send_at(n, p, t_us);
        }
        if let Some(t) = out.timeout {
            let at = self.sim_us_of_local(n, t);
            let rt = &mut self.rt[n as usize];
            if rt.wake_at != Some(t) {
                rt.wake_gen += 1;
                rt.wake_at = Some(t);
                let g = rt.wake_gen;
                self.q.schedule(at, Ev::Wake(n, g));
            }
        }
    }

    /// Receptions due within [`RX_BATCH_WINDOW_US`] of each other at distinct nodes run on
    /// all cores: each core is independent, and their outputs are applied in event order, so
    /// the result does not depend on the number of threads.
    fn rx_batch(&mut self, batch: Vec<(u64, u64, Ev)>) {
        let mut jobs: Vec<RxJob> = Vec::with_capacity(batch.len());
        for (t, seq, ev) in batch {
            let Ev::Rx {
                node,
                frame,
                rssi,
                snr,
                freq,
                forged,
                backdate_ms,
            } = ev
            else {
                continue;
            };
            self.record_rx(t, seq, node, &frame, rssi, snr, freq, forged);
            let (rssi, snr) = self.alter(node, rssi, snr, forged);
            let local = self.local_ms_at(node, t);
            let rx_ms = local.saturating_sub(backdate_ms);
            if let Some(core) = self.rt[node as usize].core.take() {
                jobs.push(RxJob {
                    t,
                    node,
                    frame,
                    rssi,
                    snr,
                    freq,
                    local,
                    rx_ms,
                    core,
                    out: Outputs::default(),
                });
            }
        }
        jobs.par_iter_mut().for_each(|j| {
            let _ = j.core.handle_radio_frame(
                &j.frame,
                DeciDb(j.rssi.saturating_mul(10)),
                DeciDb(j.snr.saturating_mul(10)),
                j.freq,
                j.rx_ms,
                j.local,
            );
            j.out = drain(&mut j.core);
        });
        for j in jobs {
            self.rt[j.node as usize].core = Some(j.core);
            self.apply(j.node, j.out, j.t);
        }
    }

    fn send(&mut self, n: u32, bytes: Vec<u8>) {
        self.send_at(n, bytes, self.q.now_us());
    }

    fn send_at(&mut self, n: u32, bytes: Vec<u8>, t_us: u64) {
        self.nonce += 1;
        let p = Pending {
            node: n,
            bytes,
            nonce: self.nonce,
            attempt: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.pending[s as usize] = Some(p);
                s
            }
            None => {
                self.pending.push(Some(p));
                u32::try_from(self.pending.len() - 1).unwrap_or(u32::MAX)
            }
        };
        // Half the access RTT plus the broker hop.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let half_rtt = (self.world.nodes[n as usize].link.rtt_us / 2.0) as u64;
        let at = t_us + self.sc.oracle.delivery_ms * 1000 + half_rtt;
        self.q.schedule(at, Ev::Deliver(slot));
    }

    fn deliver(&mut self, slot: u32) {
        let now = self.q.now_us();
        let Some(p) = self.pending[slot as usize].as_mut() else {
            return;
        };
        let x = self.world.nodes[p.node as usize].phys.x;
        let hold = self
            .faults
            .oracle_down_until(now)
            .into_iter()
            .chain(self.faults.partitioned_until(x, now))
            .max();
        if let Some(until) = hold {
            self.q.schedule(until + 1, Ev::Deliver(slot));
            return;
        }
        if self.faults.lost(p.node, p.nonce, p.attempt) {
            p.attempt += 1;
            self.stats.lost += 1;
            self.q
                .schedule(now + self.faults.retry_us(), Ev::Deliver(slot));
            return;
        }
        let Some(p) = self.pending[slot as usize].take() else {
            return;
        };
        self.free.push(slot);
        self.stats.delivered += 1;
        let id = self.world.nodes[p.node as usize].id;
        self.oracle.arrive(&id, p.bytes, T0_MS + now / 1000);
        if self.oracle.wants_flush() {
            let verdicts = self.oracle.flush();
            self.record_verdicts(&verdicts);
        }
    }

    fn record_verdicts(&mut self, verdicts: &[Verdict]) {
        for v in verdicts {
            self.log.record_bytes(v.id.as_bytes());
            self.log
                .record_bytes(&v.reason.map_or(0, |r| r.code()).to_le_bytes());
            if let Some(r) = v.reason {
                // A refused receipt counts against its prover too: it is about the prover.
                let mut who = vec![v.node];
                if v.subject != v.node {
                    who.push(v.subject);
                }
                for n in who {
                    let arch = self
                        .world
                        .nodes
                        .get(n as usize)
                        .map_or(Archetype::Honest, |x| x.role.archetype);
                    self.stats.reject(n, arch, v.kind, r);
                }
            }
        }
    }

    /// A frame leaves node `n`'s radio (or, for a ring, its internet relay).
    fn transmit(&mut self, n: u32, frame: Arc<[u8]>) {
        let now = self.q.now_us();
        let e = self.current.unwrap_or(0);
        let seed = self.sc.seed;
        let spec = &self.world.nodes[n as usize];
        let (on_air, role, phys) = (spec.radio_on_air, spec.role, spec.phys);
        let p = self.world.profiles[spec.profile].clone();
        let cap = self.sc.radio.max_receivers_per_beacon as usize;
        let mut heard: Vec<(u64, u32, i16, i16)> = Vec::new();
        if on_air {
            for (rx, mean) in &self.world.neighbours[n as usize] {
                if self.rt[*rx as usize].core.is_none() {
                    continue;
                }
                let rssi = f64::from(*mean) + p.fading_sigma_db * radio::fading(seed, e, n, *rx);
                let Some((reported, snr)) = p.decode(rssi) else {
                    continue;
                };
                let rank = radio::mix(seed ^ radio::mix(e ^ (u64::from(n) << 32) ^ u64::from(*rx)));
                heard.push((rank, *rx, whole_db(reported), whole_db(snr)));
            }
            if heard.len() > cap {
                heard.select_nth_unstable(cap);
                heard.truncate(cap);
            }
            heard.sort_unstable_by_key(|h| h.1);
            for (_, rx, rssi, snr) in heard {
                let d = phys.dist(&self.world.nodes[rx as usize].phys);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let delay = (d / physics::VACUUM_M_PER_US).ceil().max(1.0) as u64;
                self.stats.receptions += 1;
                self.q.schedule(
                    now + delay,
                    Ev::Rx {
                        node: rx,
                        frame: frame.clone(),
                        rssi,
                        snr,
                        freq: p.freq_khz,
                        forged: false,
                        backdate_ms: 0,
                    },
                );
            }
            // Remote accomplices' receivers.
            let sniffers = self.sniffers_of[n as usize].clone();
            for (j, mean) in sniffers {
                if self.rt[j as usize].core.is_none() {
                    continue;
                }
                let rssi = f64::from(mean)
                    + p.fading_sigma_db * radio::fading(seed, e, n, j | 0x8000_0000);
                if rssi < p.sensitivity_dbm || rssi - p.noise_dbm() < p.snr_min_db {
                    continue;
                }
                self.relay_to(n, j, &frame);
            }
        } else if role.archetype == Archetype::CollusionRing {
            let mates = self
                .groups
                .get(&(Archetype::CollusionRing, role.group))
                .cloned()
                .unwrap_or_default();
            for j in mates {
                if j != n && self.rt[j as usize].core.is_some() {
                    self.relay_to(n, j, &frame);
                }
            }
        }
    }

    /// The RSSI cheater `j` claims for a beacon of `tx`, plausible for their asserted cells.
    fn forged_rssi(&self, tx: u32, j: u32) -> (i16, i16) {
        let t = &self.world.nodes[tx as usize];
        let me = &self.world.nodes[j as usize];
        let p = &self.world.profiles[t.profile];
        let claimed = t.asserted.dist(&me.asserted);
        let e = self.current.unwrap_or(0);
        let noise = rng::hash_normal(
            self.sc.seed,
            rng::Purpose::Cheat,
            &[u64::from(tx), u64::from(j), e],
        );
        let mean =
            p.tx_power_dbm + t.declared_gain_dbi + me.declared_gain_dbi - p.path_loss_db(claimed);
        // The oracle's bound uses the nearest the two cells can be (about 25 m closer).
        let bound = physics::max_rssi_dbm(
            p.tx_power_dbm,
            t.declared_gain_dbi,
            me.declared_gain_dbi,
            (claimed - 25.0).max(0.0),
            p.freq_hz(),
            6.0,
        );
        let rssi =
            cheaters::plausible_rssi(mean, bound, noise, 2.0).clamp(-99.0, radio::RSSI_MAX_DBM);
        let snr = (rssi - p.noise_dbm()).clamp(p.snr_min_db, radio::SNR_MAX_DB);
        (whole_db(rssi), whole_db(snr))
    }

    fn relay_to(&mut self, tx: u32, j: u32, frame: &Arc<[u8]>) {
        let role = self.world.nodes[j as usize].role;
        let e = self.current.unwrap_or(0);
        let u = rng::unit(rng::hash_u64(
            self.sc.seed,
            rng::Purpose::Cheat,
            &[7, u64::from(tx), u64::from(j), e],
        ));
        let delay_us = match role.archetype {
            // Relayed over the internet; some arrive too late for the lag rule.
            Archetype::Relay => {
                if role.variant {
                    if self.rt[j as usize].captured.len() < CAPTURE_CAP {
                        self.rt[j as usize].captured.push(frame.clone());
                    }
                    return;
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let d = (50_000.0 + u * 3_000_000.0) as u64;
                d
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Archetype::InflatedGain => (30_000.0 + u * 170_000.0) as u64,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            _ => (20_000.0 + u * 60_000.0) as u64,
        };
        let (rssi, snr) = self.forged_rssi(tx, j);
        let freq = self.world.profiles[self.world.nodes[tx as usize].profile].freq_khz;
        self.stats.relayed += 1;
        self.q.schedule(
            self.q.now_us() + delay_us,
            Ev::Rx {
                node: j,
                frame: frame.clone(),
                rssi,
                snr,
                freq,
                forged: true,
                backdate_ms: if self.sc.cheaters.evasive {
                    delay_us / 1_000
                } else {
                    0
                },
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn record_rx(
        &mut self,
        t: u64,
        seq: u64,
        node: u32,
        frame: &[u8],
        rssi: i16,
        snr: i16,
        freq: u32,
        forged: bool,
    ) {
        self.log.record(
            t,
            seq,
            4,
            &[
                u64::from(node),
                u64::from(rssi.cast_unsigned()),
                u64::from(snr.cast_unsigned()),
                u64::from(freq),
                u64::from(forged),
            ],
        );
        // The tail of the envelope is its signature: it names the frame.
        self.log
            .record_bytes(&frame[frame.len().saturating_sub(16)..]);
    }

    /// What a cheater's modified driver hands its core instead of the real reading.
    fn alter(&self, n: u32, rssi: i16, snr: i16, forged: bool) -> (i16, i16) {
        if forged {
            return (rssi, snr);
        }
        let role = self.world.nodes[n as usize].role;
        match role.archetype {
            Archetype::ForgedRssi if role.variant => (-65, 25),
            Archetype::ForgedRssi if self.sc.cheaters.evasive => (
                rssi.saturating_add(cheaters::RSSI_INFLATION_EVASIVE_DB),
                snr,
            ),
            Archetype::ForgedRssi => (rssi.saturating_add(cheaters::RSSI_INFLATION_DB), snr),
            Archetype::InflatedGain => {
                #[allow(clippy::cast_possible_truncation)]
                let g = world::GAIN_INFLATION_DB as i16;
                (rssi.saturating_add(g), snr)
            }
            _ => (rssi, snr),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        n: u32,
        frame: &[u8],
        rssi: i16,
        snr: i16,
        freq: u32,
        forged: bool,
        backdate_ms: u64,
    ) {
        let (rssi, snr) = self.alter(n, rssi, snr, forged);
        let local = self.local_ms(n);
        let rx_ms = local.saturating_sub(backdate_ms);
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        let _ = core.handle_radio_frame(
            frame,
            DeciDb(rssi.saturating_mul(10)),
            DeciDb(snr.saturating_mul(10)),
            freq,
            rx_ms,
            local,
        );
        self.pump(n);
    }

    /// A replaying cheater signs a witness of an old beacon itself (the core would refuse it).
    fn replay(&mut self, n: u32, frame: &[u8]) {
        let spec = &self.world.nodes[n as usize];
        let Ok(opened) = wisp_protocol::envelope::open::<wisp_protocol::msg::Beacon>(frame) else {
            return;
        };
        let Some(tx) = self.oracle.index_of(&opened.signer) else {
            return;
        };
        let (rssi, snr) = self.forged_rssi(tx, n);
        let w = Witness {
            beacon: frame.to_vec(),
            rssi: DeciDb(rssi * 10),
            snr: DeciDb(snr * 10),
            freq_khz: opened.msg.freq_khz,
            rx_ms: self.local_ms(n),
            cell: spec.cell,
        };
        let bytes = Envelope::sign(&spec.key, &w).to_bytes();
        self.stats.signatures += 1;
        self.send(n, bytes);
    }

    /// A fake-heartbeat cheater sends heartbeats for the whole epoch, back-dated.
    fn backdate(&mut self, n: u32, e: u64) {
        let spec = &self.world.nodes[n as usize];
        let interval = u64::from(self.sc.epoch.heartbeat_interval_ms).max(1);
        let start = T0_MS + e * self.sc.epoch.duration_ms;
        let count = self.sc.epoch.duration_ms.div_ceil(interval);
        let mut out = Vec::new();
        for k in 0..count {
            let sent = start + k * interval + 1_000;
            if sent > self.local_ms(n) {
                break;
            }
            self.rt[n as usize].hb_seq += 1;
            let hb = Heartbeat {
                epoch: e,
                seq: self.rt[n as usize].hb_seq,
                uptime_s: (sent - T0_MS) / 1000,
                sent_ms: sent,
                fix: Some(world::fix_at(
                    self.sc.seed,
                    n,
                    e,
                    &spec.asserted,
                    &self.world.proj,
                    sent,
                )),
                cell: Some(spec.cell),
                versions: Versions::new("wisp-sim", "sim"),
                peers: 3,
            };
            out.push(Envelope::sign(&spec.key, &hb).to_bytes());
        }
        self.stats.signatures += out.len() as u64;
        for b in out {
            self.send(n, b);
        }
    }

    fn bandwidth(&mut self, e: u64) {
        let Some(pool) = self.oracle.pool(e).cloned() else {
            return;
        };
        let seed = {
            let h = blake3::Hasher::new_derive_key("wisp-sim epoch seed")
                .update(&self.sc.seed.to_le_bytes())
                .update(&e.to_le_bytes())
                .finalize();
            *h.as_bytes()
        };
        let k = usize::from(self.sc.epoch.measurers_per_prover);
        let (world_ref, rt_ref) = (&self.world, &self.rt);
        let can_test = |i: usize| {
            let n = &world_ref.nodes[i];
            rt_ref[i].core.is_some()
                && n.role.archetype != Archetype::FakeHeartbeat
                && n.role.helper_of.is_none()
        };
        let provers: Vec<u32> = (0..self.world.nodes.len())
            .filter(|i| can_test(*i))
            .filter(|i| {
                rng::unit(rng::hash_u64(
                    self.sc.seed,
                    rng::Purpose::Backhaul,
                    &[e, *i as u64],
                )) < self.sc.backhaul.tested_share
            })
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        let world = &self.world;
        let oracle = &self.oracle;
        let sc_seed = self.sc.seed;
        // Assignment and signing on all cores; results in prover order.
        let receipts: Vec<(u32, Vec<u8>)> = provers
            .par_iter()
            .flat_map_iter(|&p| {
                let prover = &world.nodes[p as usize];
                let mut out = Vec::new();
                for m_id in pool.assigned(&seed, &prover.id, k) {
                    let Some(m) = oracle.index_of(&m_id) else {
                        continue;
                    };
                    if !can_test(m as usize) {
                        continue;
                    }
                    let measurer = &world.nodes[m as usize];
                    let d = prover.phys.dist(&measurer.phys);
                    for dir in [Direction::Down, Direction::Up] {
                        let noise = rng::hash_normal(
                            sc_seed,
                            rng::Purpose::Backhaul,
                            &[
                                e,
                                u64::from(p),
                                u64::from(m),
                                u64::from(dir == Direction::Up),
                            ],
                        );
                        let mut meas =
                            backhaul::measure(&prover.link, &measurer.link, dir, d, noise);
                        if measurer.role.archetype == Archetype::ColludingMeasurer {
                            meas = if prover.role.archetype == Archetype::ColludingMeasurer {
                                // A fellow: as fast as the tiers pay.
                                backhaul::to_measurement(
                                    2e9,
                                    2e9 / 8.0 * 9.5,
                                    f64::from(meas.rtt_idle_us),
                                )
                            } else {
                                // Anyone else: slower than measured, so the colluders' share
                                // of the backhaul pool grows.
                                backhaul::scaled(
                                    &meas,
                                    if self.sc.cheaters.evasive {
                                        cheaters::MEASURER_DEFLATION_EVASIVE
                                    } else {
                                        cheaters::MEASURER_DEFLATION
                                    },
                                )
                            };
                        }
                        let tid = backhaul::test_id(e, &prover.id, &measurer.id, dir);
                        out.push((
                            m,
                            backhaul::receipt(e, tid, &prover.key, &measurer.key, dir, meas),
                        ));
                    }
                }
                if prover.role.archetype == Archetype::BandwidthInflation {
                    // Receipts from its own helper identities, claiming a fast link.
                    for h in world.nodes.iter().filter(|h| h.role.helper_of == Some(p)) {
                        for (dir, bps) in [(Direction::Down, 1.5e9), (Direction::Up, 6e8)] {
                            let meas = backhaul::to_measurement(bps, bps / 8.0 * 9.5, 8_000.0);
                            let tid = backhaul::test_id(e, &prover.id, &h.id, dir);
                            out.push((
                                h.idx,
                                backhaul::receipt(e, tid, &prover.key, &h.key, dir, meas),
                            ));
                        }
                    }
                }
                out
            })
            .collect();
        self.stats.signatures += 2 * receipts.len() as u64;
        for (m, bytes) in receipts {
            self.send(m, bytes);
        }
    }

    fn close(&mut self, e: u64) {
        let now_ms = T0_MS + self.q.now_us() / 1000;
        let emission = self.sc.emission_per_epoch;
        let (closed, verdicts) = self.oracle.close(e, now_ms, emission);
        self.record_verdicts(&verdicts);
        let Some(closed) = closed else {
            self.stats
                .violations
                .push(format!("epoch {e}: could not close"));
            return;
        };
        self.account(e, &closed);
    }

    fn account(&mut self, e: u64, c: &Closed) {
        let emission = c.rewards.emission;
        let paid = c.rewards.total_paid();
        if !c.rewards.entries.is_empty() && paid != u128::from(emission) {
            self.stats
                .violations
                .push(format!("epoch {e}: paid {paid} != emission {emission}"));
        }
        let rejected: std::collections::BTreeSet<_> =
            c.outcome.rejections.iter().map(|(id, _)| *id).collect();
        for (node, facts) in &c.outcome.nodes {
            if let Some(b) = facts.beacon
                && rejected.contains(&b)
            {
                self.stats
                    .violations
                    .push(format!("epoch {e}: a rejected beacon counted for {node}"));
            }
        }
        let mut by_arch = vec![0u128; Archetype::ALL.len()];
        let mut rejected_count = 0u64;
        for (node, kind, reason) in &c.rejected {
            let arch = self
                .world
                .nodes
                .get(*node as usize)
                .map_or(Archetype::Honest, |n| n.role.archetype);
            self.stats.reject(*node, arch, *kind, *reason);
            self.log.record_bytes(&reason.code().to_le_bytes());
            rejected_count += 1;
        }
        for (node, counts) in &c.counted {
            if let Some(s) = self.stats.nodes.get_mut(*node as usize) {
                s.counted += counts.iter().sum::<u32>();
            }
        }
        for (id, u) in &c.rewards.units {
            if let Some(i) = self.oracle.index_of(id) {
                let arch = self.world.nodes[i as usize].role.archetype;
                if u.coverage_raw > 0 && u.isolated {
                    self.stats
                        .notice(i, arch, wisp_protocol::Reason::IsolatedCluster);
                }
                if u.site_share > 1 {
                    self.stats.notice(i, arch, wisp_protocol::Reason::CoLocated);
                }
            }
        }
        for (id, reason) in &c.outcome.penalties {
            if let Some(i) = self.oracle.index_of(id) {
                let arch = self.world.nodes[i as usize].role.archetype;
                self.stats.penalize(i, arch, *reason);
                self.log.record_bytes(&reason.code().to_le_bytes());
            }
        }
        for entry in &c.rewards.entries {
            let Some(i) = self.oracle.index_of(&entry.node) else {
                self.stats
                    .violations
                    .push(format!("epoch {e}: paid an unknown node"));
                continue;
            };
            let counted = c.counted.get(&i).copied().unwrap_or_default();
            // No reward without a counted proof of its kind: coverage needs a counted beacon
            // or witness, uptime a counted heartbeat, backhaul a counted receipt about it.
            let backhaul_ok = c
                .outcome
                .nodes
                .get(&entry.node)
                .is_some_and(|f| f.down.is_some() || f.up.is_some());
            if (entry.coverage > 0 && counted[0] + counted[1] == 0)
                || (entry.uptime > 0 && counted[3] == 0)
                || (entry.backhaul > 0 && !backhaul_ok)
            {
                self.stats
                    .violations
                    .push(format!("epoch {e}: node {i} paid without a counted proof"));
            }
            let arch = self.world.nodes[i as usize].role.archetype;
            let slot = Archetype::ALL.iter().position(|a| *a == arch).unwrap_or(0);
            by_arch[slot] += u128::from(entry.amount);
            let s = &mut self.stats.nodes[i as usize];
            s.reward += u128::from(entry.amount);
            s.coverage += u128::from(entry.coverage);
            s.backhaul += u128::from(entry.backhaul);
            s.uptime += u128::from(entry.uptime);
            if entry.coverage > 0 {
                s.coverage_epochs += 1;
            }
            self.log.record_bytes(entry.node.as_bytes());
            self.log.record_bytes(&entry.amount.to_le_bytes());
        }
        self.stats.epochs.push(EpochStats {
            epoch: e,
            emission,
            paid,
            by_archetype: by_arch,
            paid_nodes: u32::try_from(c.rewards.entries.len()).unwrap_or(u32::MAX),
            rejected: rejected_count,
            bands: c
                .outcome
                .bands
                .iter()
                .map(|(b, m)| (*b, m.reach_m, m.floor_decidbm))
                .collect(),
            penalized: u32::try_from(c.outcome.penalties.len()).unwrap_or(u32::MAX),
        });
    }
}
