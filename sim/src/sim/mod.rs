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
//! | 11  | `Usage`      | the epoch's subscriber sessions and carrier reports (only with `[usage]`, see [`crate::usage`], [`crate::carrier`]) |
//!
//! Every processed event is recorded in the [`EventLog`], and so is every oracle verdict.
//!
//! Layout: this file holds the state, the event loop and the dispatch ([`Sim::run`]); the
//! handlers live by concern in `setup` (building the world, onboarding), `cores` (starting,
//! stopping, applying a core's outputs), `epoch` (seeds, closes, the invariants), `air`
//! (transmissions and receptions), `delivery` (proofs to the oracle, verdicts), `cheats`
//! (relays, forged readings, replays, back-dating), `bandwidth` (bandwidth test rounds) and
//! `usage` (subscribers' sessions and the usage part of a close) with `carrier` (carriers'
//! reports, forged ones included, and their part of a close).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use wisp_agent_core::core::{Core, Event as CoreEvent};
use wisp_protocol::NodeKey;
use wisp_protocol::units::DeciDb;

use crate::cheaters::Archetype;
use crate::engine::{EventLog, Queue};
use crate::faults::Faults;
use crate::oracle::Oracle;
use crate::scenario::Scenario;
use crate::stats::Stats;
use crate::world::World;

mod air;
mod bandwidth;
mod carrier;
mod cheats;
mod cores;
mod delivery;
mod epoch;
mod setup;
mod usage;

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
    Usage(u64),
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
    /// What the usage model measured (with `[usage]` only).
    pub usage: Option<crate::usage::UsageTally>,
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
    usage: Option<usage::UsageRt>,
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
            usage: self.usage.take().map(|u| u.tally),
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
            Ev::Usage(e) => {
                self.log.record(t, seq, 11, &[e]);
                self.usage_round(e);
            }
        }
    }
}
