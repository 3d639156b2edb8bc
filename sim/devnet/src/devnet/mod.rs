//! A devnet: the whole network on one machine. One oracle (embedded broker, SQLite, short
//! epochs) and N agents, each the real `wisp-agent` and `wisp-oracle` binaries as processes
//! with their full shells (libp2p, QUIC bandwidth tests, MQTT, outbox, HTTP status), on
//! loopback, their simulated devices placed on a small map and sharing one simulated air
//! ([`crate::air`]), so beacons are witnessed, bandwidth measured and everything paid for real.
//!
//! With `cheaters`, some hotspots cheat for real, around the unchanged agent (as cheaters do:
//! the lie is in the hardware or the world, never in the signed software): a forged location
//! (a spoofed GNSS on the map, a place asserted far away), relayed beacons (a relay on the
//! map forwards beacons over the internet to a hotspot far away, and its beacons back), and
//! replayed beacons (a recorder on the map plays them back to a hotspot far away seconds
//! later), and a lying measurer (the real agent daemon, hosted by `wisp-devnet cheat-agent`, whose
//! measurer shaves what it measures), and inflated usage (a hotspot that co-signs whatever its
//! colluding subscriber claims, and a subscriber, `wisp-devnet cheat-client`, that claims
//! [`CLAIM_PERMILLE`] thousandths of what it used). [`Summary::caught`] tells whether each has
//! lost its reward, and why.
//!
//! With `subscribers`, that many subscribers, each the real `wisp-client run` with its own key
//! and a grant of data credits, use the honest hotspots in turn, [`SUBSCRIBER_RATE_KIB_S`]
//! each, and sign receipts for it; their hotspots are paid for usage.
//!
//! [`Devnet::start`] writes the configurations, starts the air and the processes and onboards
//! every agent; [`Devnet::poll`] reads the oracle's API into a [`Summary`]; [`Devnet::stop`]
//! stops every process (SIGTERM, then SIGKILL after a grace period). Each process logs to
//! `<data dir>/<name>.log`.
//!
//! Layout: this file holds the options, the cheaters and the [`Devnet`] handle; `start`
//! places the hotspots, writes the configurations and starts everything ([`Devnet::start`]);
//! `subscribers` grants the subscribers credits and starts their clients;
//! `procs` spawns, stops, kills and restarts the processes; `summary` reads the oracle's API
//! into a [`Summary`] ([`Devnet::poll`]) and renders it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::air::AirStats;

mod procs;
mod start;
mod subscribers;
mod summary;

pub use start::place;
pub use summary::{Reward, Summary, burn_value, http_get, usage_cap};

/// Metres between neighbouring hotspots on the devnet's map (a grid): well within 2.4 GHz
/// reach, so each hears its neighbours.
pub const SPACING_M: f64 = 150.0;

/// The map's centre, degrees.
const CENTRE: (f64, f64) = (38.7139, -9.1394);

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

/// How far from the map the relayed and replayed cheaters are, and where the forged-location
/// cheater claims to be, metres: far beyond any 2.4 GHz link.
pub const FAR_M: f64 = 3_000.0;

/// The relay's delay each way: an internet link across a continent.
pub const RELAY_DELAY: Duration = Duration::from_millis(120);

/// The devnet oracle's `rules.measurer_floor_bps`: a figure below a fifth of the others' is a
/// disagreement (default three quarters). Loopback tests on one busy machine vary two- to
/// fourfold between measurers of one prover.
pub const MEASURER_FLOOR_BPS: u16 = 2_000;

/// The devnet oracle's `rules.max_round_trip_ms` (default 30): frames between processes on
/// one busy machine take tens of milliseconds to be stamped; the relay's round trip is
/// [`RELAY_DELAY`] twice.
pub const MAX_ROUND_TRIP_MS: u32 = 150;

/// The replayer's delay: beacons recorded on the map, played back this much later.
pub const REPLAY_DELAY: Duration = Duration::from_secs(8);

/// What each devnet subscriber pulls through its hotspot, KiB/s: a subscriber's demand, light
/// enough for a dozen processes on one machine.
pub const SUBSCRIBER_RATE_KIB_S: u64 = 128;

/// The data credits granted to each subscriber at the start: years of its demand.
pub const SUBSCRIBER_GRANT_DC: u64 = 10_000_000;

/// What an inflated-usage cheater's subscriber claims of what it used, thousandths:
/// ten-thousandfold, 10 Gbit/s at [`SUBSCRIBER_RATE_KIB_S`], beyond any backhaul its hotspot
/// is rated for on loopback.
pub const CLAIM_PERMILLE: u64 = 10_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Hotspots.
    pub nodes: u32,
    /// Epoch length, seconds.
    pub epoch_s: u32,
    /// Where the configurations, keys, databases and logs go.
    pub data_dir: PathBuf,
    /// Where `wisp-agent` and `wisp-oracle` are.
    pub bin_dir: PathBuf,
    /// Seed of the air's radio draws.
    pub seed: u64,
    /// Hotspots that cheat, one per entry, in addition to the `nodes` honest ones.
    pub cheaters: Vec<Cheater>,
    /// Subscribers (`wisp-client run`), spread over the honest hotspots.
    pub subscribers: u32,
    /// An MQTT broker already running (`host:port`, e.g. Mosquitto) instead of the oracle's
    /// embedded one.
    pub broker: Option<String>,
    /// The oracle's database on PostgreSQL (`postgres://…`) instead of SQLite, in a schema of
    /// the run's own.
    pub postgres: Option<String>,
    /// The address the oracle, its broker, the air and the agents listen on: loopback, or
    /// (for agents in namespaces of their own) an address those namespaces route to.
    pub host: Ipv4Addr,
    /// Agents that run in a network namespace of their own, by index: the namespace's name
    /// and the agent's address in it. The namespaces, their links and their routes to `host`
    /// are the caller's (a partition test cuts and restores the links).
    pub agent_netns: BTreeMap<usize, (String, Ipv4Addr)>,
}

impl Options {
    /// `nodes` honest hotspots with `epoch_s` epochs on loopback, the embedded broker and
    /// SQLite, seed 1.
    pub fn new(nodes: u32, epoch_s: u32, data_dir: PathBuf, bin_dir: PathBuf) -> Self {
        Self {
            nodes,
            epoch_s,
            data_dir,
            bin_dir,
            seed: 1,
            cheaters: Vec::new(),
            subscribers: 0,
            broker: None,
            postgres: None,
            host: Ipv4Addr::LOCALHOST,
            agent_netns: BTreeMap::new(),
        }
    }

    /// The address agent `i` listens on.
    fn agent_addr(&self, i: usize) -> Ipv4Addr {
        self.agent_netns.get(&i).map_or(self.host, |(_, a)| *a)
    }
}

/// A way of cheating a devnet hotspot can run for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cheater {
    /// On the map with the others, it asserts a place [`FAR_M`] north and spoofs its GNSS to
    /// match.
    FakeLocation,
    /// [`FAR_M`] east (truthfully asserted); a relay on the map forwards the map's beacons to
    /// it and its beacons to the map, [`RELAY_DELAY`] each way.
    Relay,
    /// [`FAR_M`] west (truthfully asserted); a recorder on the map plays the map's beacons back
    /// to it [`REPLAY_DELAY`] later.
    Replay,
    /// On the map, honest but for its measurer, which signs [`LIE_PERMILLE`] thousandths of
    /// every upload it measures (`wisp-devnet cheat-agent`): the backhaul pool is shared, so
    /// shaving the others raises its own share.
    LyingMeasurer,
    /// On the map, honest but for usage: its `usage.slack_bytes` co-signs any receipt, and
    /// its colluding subscriber (`wisp-devnet cheat-client`) claims [`CLAIM_PERMILLE`]
    /// thousandths of what it used. The oracle pays at most what the hotspot's backhaul could
    /// carry and at most half the value of the credits burned, so the pair loses what it
    /// burns.
    InflatedCounters,
}

/// What a lying measurer signs of what it measured, thousandths.
pub const LIE_PERMILLE: u32 = 100;

impl Cheater {
    /// Every kind, in the order of their names.
    pub const ALL: [Cheater; 5] = [
        Cheater::FakeLocation,
        Cheater::Relay,
        Cheater::Replay,
        Cheater::LyingMeasurer,
        Cheater::InflatedCounters,
    ];

    /// The name `--cheaters` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Cheater::FakeLocation => "fake_location",
            Cheater::Relay => "relay",
            Cheater::Replay => "replay",
            Cheater::LyingMeasurer => "lying_measurer",
            Cheater::InflatedCounters => "inflated_counters",
        }
    }

    /// The reason codes the oracle refuses or marks this cheater with (any of them shows it
    /// was caught for what it did).
    pub const fn expected_reasons(self) -> &'static [&'static str] {
        match self {
            Cheater::FakeLocation => &[
                "rssi_too_strong",
                "too_far",
                "link_implausible",
                "links_implausible",
                "penalized",
            ],
            Cheater::Relay => &[
                "too_far",
                "link_implausible",
                "links_implausible",
                "links_relayed",
                "witness_lag",
                "rssi_too_strong",
                "penalized",
            ],
            Cheater::Replay => &[
                "witness_lag",
                "witness_replayed",
                "too_far",
                "link_implausible",
            ],
            // Its own mark: a penalty for anything else is not catching what it did.
            Cheater::LyingMeasurer => &["measurer_disagrees"],
            Cheater::InflatedCounters => &["usage_exceeds_backhaul"],
        }
    }

    /// A comma-separated list of names (`fake_location,relay`); `all` is one of each.
    pub fn parse_list(s: &str) -> Result<Vec<Cheater>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                out.extend(Cheater::ALL);
                continue;
            }
            match Cheater::ALL.iter().find(|c| c.name() == name) {
                Some(c) => out.push(*c),
                None => bail!(
                    "--cheaters: unknown `{name}`; expected a comma-separated list of {} (or all)",
                    Cheater::ALL.map(Cheater::name).join(", ")
                ),
            }
        }
        Ok(out)
    }
}

/// One process of the devnet.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
}

/// One agent.
#[derive(Clone, Debug)]
pub struct AgentInfo {
    /// Its name (`agent-<i>`).
    pub name: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its simulated device is, degrees.
    pub position: (f64, f64),
    /// How it cheats, if it does.
    pub cheater: Option<Cheater>,
}

/// One subscriber.
#[derive(Clone, Debug)]
pub struct SubscriberInfo {
    /// Its name (`sub-<k>`), also its process's.
    pub name: String,
    /// Its peer id (its key's).
    pub peer_id: String,
    /// The hotspot it uses, by peer id.
    pub hotspot: String,
    /// Whether it colludes with an inflated-usage cheater.
    pub colluder: bool,
}

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    opts: Options,
    procs: Vec<Proc>,
    /// The oracle's API and dashboard.
    pub oracle_http: SocketAddr,
    /// The broker, `host:port`: the oracle's embedded one, or the one in the options.
    pub broker: String,
    /// The shared air.
    pub air: SocketAddr,
    /// The agents.
    pub agents: Vec<AgentInfo>,
    /// The subscribers.
    pub subscribers: Vec<SubscriberInfo>,
    air_stop: Arc<AtomicBool>,
    air_stats: Arc<AirStats>,
    air_thread: Option<std::thread::JoinHandle<()>>,
    paid_seen: BTreeMap<u64, Vec<Reward>>,
    /// The network namespace of each process that runs in one, by process name.
    netns: BTreeMap<String, String>,
}
