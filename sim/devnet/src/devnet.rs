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
//! measurer shaves what it measures). [`Summary::caught`] tells whether each has lost its
//! reward, and why.
//!
//! [`Devnet::start`] writes the configurations, starts the air and the processes and onboards
//! every agent; [`Devnet::poll`] reads the oracle's API into a [`Summary`]; [`Devnet::stop`]
//! stops every process (SIGTERM, then SIGKILL after a grace period). Each process logs to
//! `<data dir>/<name>.log`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::air::{Air, AirStats, Relay};
use wisp_agent::air::Station;

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

/// Largest HTTP response the summary reads from the oracle, bytes.
const MAX_RESPONSE: usize = 4 << 20;

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
    /// every upload it measures (`wisp-sim cheat-agent`): the backhaul pool is shared, so
    /// shaving the others raises its own share.
    LyingMeasurer,
}

/// What a lying measurer signs of what it measured, thousandths.
pub const LIE_PERMILLE: u32 = 100;

impl Cheater {
    /// Every kind, in the order of their names.
    pub const ALL: [Cheater; 4] = [
        Cheater::FakeLocation,
        Cheater::Relay,
        Cheater::Replay,
        Cheater::LyingMeasurer,
    ];

    /// The name `--cheaters` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Cheater::FakeLocation => "fake_location",
            Cheater::Relay => "relay",
            Cheater::Replay => "replay",
            Cheater::LyingMeasurer => "lying_measurer",
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
    air_stop: Arc<AtomicBool>,
    air_stats: Arc<AirStats>,
    air_thread: Option<std::thread::JoinHandle<()>>,
    paid_seen: BTreeMap<u64, Vec<Reward>>,
    /// The network namespace of each process that runs in one, by process name.
    netns: BTreeMap<String, String>,
}

/// One node's reward for one epoch, by category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reward {
    /// Peer id.
    pub peer_id: String,
    /// Coverage.
    pub coverage: u64,
    /// Backhaul.
    pub backhaul: u64,
    /// Uptime.
    pub uptime: u64,
}

/// What the devnet has done so far, from the oracle's API and the air.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Epochs closed.
    pub epochs_closed: usize,
    /// The open epoch, if any.
    pub epoch: Option<u64>,
    /// Proofs stored.
    pub proofs_stored: u64,
    /// Refusals by reason.
    pub rejections: Vec<(String, u64)>,
    /// Witness links counted in the last closed epoch.
    pub witness_links: usize,
    /// Transmissions and deliveries on the air.
    pub air: (u64, u64),
    /// Per node (peer id): rewards summed over the closed epochs.
    pub totals: BTreeMap<String, Reward>,
    /// Per node (peer id): the last measured backhaul, down and up, bits/s.
    pub bandwidth: BTreeMap<String, (Option<u64>, Option<u64>)>,
    /// Per node (peer id): its reward in the last closed epoch, by category.
    pub last_epoch: BTreeMap<String, Reward>,
    /// Per cheater (peer id): the reason codes of its refused proofs (its last 100) and of
    /// what the oracle marked it for, with counts.
    pub cheater_reasons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per node (peer id): the last epoch of its penalty, if it was caught.
    pub penalized_through: BTreeMap<String, u64>,
}

impl Summary {
    /// True when every honest agent was paid in all three categories and the oracle shows its
    /// measured backhaul.
    pub fn all_paid(&self, agents: &[AgentInfo]) -> bool {
        agents.iter().filter(|a| a.cheater.is_none()).all(|a| {
            self.totals
                .get(&a.peer_id)
                .is_some_and(|r| r.coverage > 0 && r.backhaul > 0 && r.uptime > 0)
                && self
                    .bandwidth
                    .get(&a.peer_id)
                    .is_some_and(|(d, u)| d.is_some() || u.is_some())
        })
    }

    /// Whether `a`, a cheater, has lost its reward: it earned nothing in the last closed
    /// epoch (a replayer: no coverage; its backhaul and uptime are real), and the oracle
    /// refused or marked it with a reason its way of cheating explains.
    pub fn caught(&self, a: &AgentInfo) -> bool {
        let Some(c) = a.cheater else {
            return false;
        };
        // A replayer's backhaul and uptime are real; what it cheats for is coverage.
        let last = self.last_epoch.get(&a.peer_id).cloned().unwrap_or_default();
        let cheated_for = match c {
            Cheater::Replay => last.coverage,
            _ => last.coverage + last.backhaul + last.uptime,
        };
        self.epochs_closed > 0
            && cheated_for == 0
            && self
                .cheater_reasons
                .get(&a.peer_id)
                .is_some_and(|r| r.keys().any(|k| c.expected_reasons().contains(&k.as_str())))
    }

    /// True when every cheater has been caught ([`Summary::caught`]).
    pub fn all_caught(&self, agents: &[AgentInfo]) -> bool {
        agents
            .iter()
            .filter(|a| a.cheater.is_some())
            .all(|a| self.caught(a))
    }

    /// The summary as text: progress, refusals, and the rewards table.
    pub fn render(&self, agents: &[AgentInfo], elapsed: Duration) -> String {
        let mut s = String::new();
        let (tx, rx) = self.air;
        let _ = writeln!(
            s,
            "[{:>4} s] epoch {} · {} closed · {} proofs stored · air: {tx} beacons sent, {rx} heard · {} witness links in the last closed epoch",
            elapsed.as_secs(),
            self.epoch.map_or_else(|| "-".into(), |e| e.to_string()),
            self.epochs_closed,
            self.proofs_stored,
            self.witness_links,
        );
        if !self.rejections.is_empty() {
            let list: Vec<String> = self
                .rejections
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(s, "  refused: {}", list.join(", "));
        }
        let _ = writeln!(
            s,
            "  {:<9} {:<14} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "node", "peer", "coverage", "backhaul", "uptime", "down Mb/s", "up Mb/s"
        );
        for a in agents {
            let r = self.totals.get(&a.peer_id).cloned().unwrap_or_default();
            let last = self
                .last_epoch
                .get(&a.peer_id)
                .map_or(0, |r| r.coverage + r.backhaul + r.uptime);
            let (down, up) = self.bandwidth.get(&a.peer_id).copied().unwrap_or_default();
            let mbps =
                |b: Option<u64>| b.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6));
            let short = a
                .peer_id
                .get(a.peer_id.len().saturating_sub(8)..)
                .unwrap_or("");
            let _ = write!(
                s,
                "  {:<9} …{:<13} {:>12} {:>12} {:>12} {:>10} {:>10}",
                a.name,
                short,
                r.coverage,
                r.backhaul,
                r.uptime,
                mbps(down),
                mbps(up)
            );
            if let Some(c) = a.cheater {
                let reasons = self
                    .cheater_reasons
                    .get(&a.peer_id)
                    .map(|m| {
                        let mut v: Vec<(&String, &u64)> = m.iter().collect();
                        v.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
                        v.iter()
                            .take(4)
                            .map(|(k, n)| format!("{k} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let pen = self
                    .penalized_through
                    .get(&a.peer_id)
                    .map(|t| format!("penalized through epoch {t}; "))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "  [{}: {} · last epoch paid {last} · {pen}{}]",
                    c.name(),
                    if self.caught(a) {
                        "caught"
                    } else {
                        "not caught yet"
                    },
                    if reasons.is_empty() {
                        "no refusals yet".into()
                    } else {
                        reasons
                    }
                );
            }
            s.push('\n');
        }
        s
    }
}

/// A free TCP port on `host` (bound and released: a devnet's own processes take it next).
fn free_port(host: Ipv4Addr) -> Result<u16> {
    Ok(TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// The place of hotspot `i` of `n`, degrees: a square-ish grid around the centre.
pub fn place(i: u32, n: u32) -> (f64, f64) {
    let cols = f64::from(n).sqrt().ceil().max(1.0);
    let (row, col) = ((f64::from(i) / cols).floor(), f64::from(i) % cols);
    let lat = CENTRE.0 + (row - cols / 2.0) * SPACING_M / M_PER_DEG;
    let lon = CENTRE.1 + (col - cols / 2.0) * SPACING_M / (M_PER_DEG * CENTRE.0.to_radians().cos());
    (lat, lon)
}

/// `from` moved `north_m` and `east_m`, degrees.
fn offset(from: (f64, f64), north_m: f64, east_m: f64) -> (f64, f64) {
    (
        from.0 + north_m / M_PER_DEG,
        from.1 + east_m / (M_PER_DEG * from.0.to_radians().cos()),
    )
}

/// Degrees as the agent's configuration holds them (7 decimals), and as 1e-7 degrees the way
/// the agent rounds them: a relay finds its cheater's device by this place.
fn config_degrees(p: (f64, f64)) -> (String, (i32, i32)) {
    let text = format!("{:.7},{:.7}", p.0, p.1);
    let e7 = |s: &str| {
        let v: f64 = s.parse().unwrap_or(0.0);
        // Degrees × 1e7 fit an i32.
        #[allow(clippy::cast_possible_truncation)]
        let r = (v * 1e7).round() as i32;
        r
    };
    let (lat, lon) = text.split_once(',').unwrap_or(("0", "0"));
    let at = (e7(lat), e7(lon));
    (text, at)
}

/// One hotspot to start: its name, true place, asserted place and way of cheating.
struct Plan {
    name: String,
    position: (f64, f64),
    asserted: (f64, f64),
    cheater: Option<Cheater>,
}

/// Where everyone is: honest hotspots and forged-location cheaters on the map's grid; relayed
/// and replayed cheaters far east and west; and the relays, posted on the map.
fn plan(opts: &Options) -> (Vec<Plan>, Vec<Relay>) {
    let fakes = opts
        .cheaters
        .iter()
        .filter(|c| matches!(c, Cheater::FakeLocation | Cheater::LyingMeasurer))
        .count();
    let grid = opts.nodes + u32::try_from(fakes).unwrap_or(0);
    let mut out: Vec<Plan> = (0..opts.nodes)
        .map(|i| Plan {
            name: format!("agent-{i}"),
            position: place(i, grid),
            asserted: place(i, grid),
            cheater: None,
        })
        .collect();
    let mut relays = Vec::new();
    let mut on_grid = opts.nodes;
    for (k, c) in opts.cheaters.iter().enumerate() {
        // Distinct places for several cheaters of one kind.
        #[allow(clippy::cast_precision_loss)]
        let step = k as f64 * 200.0;
        let name = format!(
            "{}-{k}",
            match c {
                Cheater::FakeLocation => "fakeloc",
                Cheater::Relay => "relay",
                Cheater::Replay => "replay",
                Cheater::LyingMeasurer => "liar",
            }
        );
        let (position, asserted) = match c {
            Cheater::FakeLocation => {
                let p = place(on_grid, grid);
                on_grid += 1;
                (p, offset(p, FAR_M + step, 0.0))
            }
            Cheater::Relay => {
                let p = offset(CENTRE, step, FAR_M);
                (p, p)
            }
            Cheater::Replay => {
                let p = offset(CENTRE, step, -FAR_M);
                (p, p)
            }
            Cheater::LyingMeasurer => {
                let p = place(on_grid, grid);
                on_grid += 1;
                (p, p)
            }
        };
        if matches!(c, Cheater::Relay | Cheater::Replay) {
            // The post: on the map between hotspots, never on one's place.
            let post = offset(CENTRE, SPACING_M / 3.0 + step / 20.0, SPACING_M / 3.0);
            let (_, post_e7) = config_degrees(post);
            let (_, at) = config_degrees(position);
            relays.push(Relay {
                device_at: at,
                post: Station {
                    lat_e7: post_e7.0,
                    lon_e7: post_e7.1,
                    tx_power_ddbm: 200,
                    gain_ddbi: 30,
                },
                delay: if *c == Cheater::Relay {
                    RELAY_DELAY
                } else {
                    REPLAY_DELAY
                },
                both_ways: *c == Cheater::Relay,
            });
        }
        out.push(Plan {
            name,
            position,
            asserted,
            cheater: Some(*c),
        });
    }
    (out, relays)
}

/// A GET on loopback; the body, if the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(MAX_RESPONSE as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > MAX_RESPONSE {
        bail!("GET {path}: response over {MAX_RESPONSE} bytes");
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: no HTTP header"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(body.to_string())
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

impl Devnet {
    /// Writes the configurations, starts the air, the oracle and the agents, and onboards the
    /// agents. `say` gets progress lines.
    pub fn start(opts: Options, say: &mut dyn FnMut(&str)) -> Result<Devnet> {
        if opts.nodes < 2 {
            bail!("--nodes: a devnet needs at least 2 hotspots");
        }
        if !(20..=3_600).contains(&opts.epoch_s) {
            bail!("--epoch-s: between 20 and 3600 seconds");
        }
        let agent_bin = opts.bin_dir.join("wisp-agent");
        let oracle_bin = opts.bin_dir.join("wisp-oracle");
        for b in [&agent_bin, &oracle_bin] {
            if !b.is_file() {
                bail!(
                    "{} not found: build the binaries first (cargo build -p wisp-agent -p wisp-oracle -p wisp-devnet), or pass --bin-dir",
                    b.display()
                );
            }
        }
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
        let (plans, relays) = plan(&opts);
        let total = u32::try_from(plans.len()).unwrap_or(u32::MAX);

        // The air.
        let host = opts.host;
        let air_sock = UdpSocket::bind((host, 0)).context("binding the simulated air")?;
        let air = air_sock.local_addr()?;
        let air_stop = Arc::new(AtomicBool::new(false));
        let air_stats = Arc::new(AirStats::default());
        let air_thread = {
            let (stop, stats, seed) = (air_stop.clone(), air_stats.clone(), opts.seed);
            std::thread::Builder::new()
                .name("air".into())
                .spawn(move || {
                    if let Err(e) = Air::new(seed, stats)
                        .with_relays(relays)
                        .serve(&air_sock, &stop)
                    {
                        eprintln!("the simulated air stopped: {e}");
                    }
                })?
        };

        let broker: String = match &opts.broker {
            Some(b) => b.clone(),
            None => SocketAddr::from((host, free_port(host)?)).to_string(),
        };
        let oracle_http: SocketAddr = (host, free_port(host)?).into();
        let mut net = Devnet {
            opts: opts.clone(),
            procs: Vec::new(),
            oracle_http,
            broker: broker.clone(),
            air,
            agents: Vec::new(),
            air_stop,
            air_stats,
            air_thread: Some(air_thread),
            paid_seen: BTreeMap::new(),
            netns: plans
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let (ns, _) = opts.agent_netns.get(&i)?;
                    Some((p.name.clone(), ns.clone()))
                })
                .collect(),
        };

        // The oracle.
        let e = f64::from(opts.epoch_s);
        let oracle_dir = opts.data_dir.join("oracle");
        std::fs::create_dir_all(&oracle_dir)?;
        let oracle_cfg = opts.data_dir.join("oracle.toml");
        // A run of its own on shared services: its own MQTT session and database schema.
        let run_tag = format!(
            "{}_{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        let broker_cfg = if opts.broker.is_some() {
            format!("url = \"mqtt://{broker}\"\nclient_id = \"wisp-oracle-devnet-{run_tag}\"\n")
        } else {
            format!("listen = \"{broker}\"\n")
        };
        let storage_cfg = opts
            .postgres
            .as_ref()
            .map(|url| {
                format!(
                    "[storage]\nurl = {}\nschema = \"devnet_{run_tag}\"\n",
                    toml_str(url)
                )
            })
            .unwrap_or_default();
        std::fs::write(
            &oracle_cfg,
            format!(
                "# Written by wisp-devnet.\n[oracle]\ndata_dir = {}\n[broker]\n{broker_cfg}{storage_cfg}\
                 [epoch]\nduration_s = {e}\nheartbeat_interval_s = {}\nsettle_s = 5\nmeasurers_per_prover = {}\n\
                 [http]\nlisten = \"{oracle_http}\"\n[rules]\npermissionless = true\n\
                 # Loopback tests on one shared machine vary two- to fourfold between measurers\n\
                 # of one prover, and a loaded machine delays frames by tens of milliseconds:\n\
                 # the devnet's oracle allows for both.\n\
                 measurer_floor_bps = {MEASURER_FLOOR_BPS}\nmax_round_trip_ms = {MAX_ROUND_TRIP_MS}\n",
                toml_str(&oracle_dir.to_string_lossy()),
                (e / 6.0).max(5.0),
                total.saturating_sub(1).min(3),
            ),
        )?;
        let key = Command::new(&oracle_bin)
            .args(["key", "-c"])
            .arg(&oracle_cfg)
            .stderr(Stdio::null())
            .output()
            .context("running wisp-oracle key")?;
        if !key.status.success() {
            bail!(
                "wisp-oracle key failed: {}",
                String::from_utf8_lossy(&key.stderr)
            );
        }
        let oracle_id = String::from_utf8_lossy(&key.stdout).trim().to_string();
        net.spawn("oracle", &oracle_bin, &["run", "-c"], &oracle_cfg)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(oracle_http, "/healthz").is_err() {
            net.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "the oracle did not become healthy within 30 s (see {})",
                    net.log("oracle").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        say(&format!(
            "oracle {oracle_id}\n  dashboard  http://{oracle_http}/\n  API        http://{oracle_http}/v1/status\n  broker     mqtt://{broker}\n  air        udp://{air}\n  data       {}",
            opts.data_dir.display()
        ));

        // The agents: the first is every other's bootstrap peer.
        let mut bootstrap: Option<String> = None;
        for (i, p) in plans.iter().enumerate() {
            let name = p.name.clone();
            let dir = opts.data_dir.join(&name);
            std::fs::create_dir_all(&dir)?;
            let (lat, lon) = p.asserted;
            let (position, _) = config_degrees(p.position);
            let spoof = if p.cheater == Some(Cheater::FakeLocation) {
                format!("gnss_spoof = \"{}\"\n", config_degrees(p.asserted).0)
            } else {
                String::new()
            };
            let cfg = opts.data_dir.join(format!("{name}.toml"));
            let ip = opts.agent_addr(i);
            let boot = bootstrap
                .as_ref()
                .map(|b| format!("bootstrap = [{}]\n", toml_str(b)))
                .unwrap_or_default();
            std::fs::write(
                &cfg,
                format!(
                    "# Written by wisp-devnet.\n[node]\ndata_dir = {}\nowner = \"devnet-{i}\"\n\
                     [oracle]\npublic_key = \"{oracle_id}\"\n[mqtt]\nurl = \"mqtt://{broker}\"\nkeep_alive_s = 10\n\
                     [http]\nlisten = \"{ip}:0\"\n[location]\nlat = {lat:.7}\nlon = {lon:.7}\n\
                     [device]\nkind = \"sim\"\nair = \"{air}\"\nposition = \"{position}\"\n{spoof}[heartbeat]\ninterval_s = {}\n\
                     [net]\nlisten = [\"/ip4/{ip}/udp/0/quic-v1\"]\n{boot}kad_server = true\n\
                     [bandwidth]\nmeasurer = true\nlisten = \"{ip}:0\"\nduration_s = 1\nbyte_cap_mib = 64\n",
                    toml_str(&dir.to_string_lossy()),
                    (e / 6.0).max(5.0),
                ),
            )?;
            let key = Command::new(&agent_bin)
                .args(["keygen", "-c"])
                .arg(&cfg)
                .stderr(Stdio::null())
                .output()
                .context("running wisp-agent keygen")?;
            if !key.status.success() {
                bail!("wisp-agent keygen failed for {name}");
            }
            let peer_id = String::from_utf8_lossy(&key.stdout).trim().to_string();
            let onboard = Command::new(&agent_bin)
                .args(["onboard", "--wait-s", "30", "-c"])
                .arg(&cfg)
                .output()
                .context("running wisp-agent onboard")?;
            if !onboard.status.success() {
                bail!(
                    "onboarding {name} failed: {}",
                    String::from_utf8_lossy(&onboard.stderr).trim()
                );
            }
            if p.cheater == Some(Cheater::LyingMeasurer) {
                let lie = LIE_PERMILLE.to_string();
                let sim_bin = opts.bin_dir.join("wisp-devnet");
                net.spawn(
                    &name,
                    &sim_bin,
                    &["cheat-agent", "--shave-uploads", &lie, "-c"],
                    &cfg,
                )?;
            } else {
                net.spawn(&name, &agent_bin, &["run", "-c"], &cfg)?;
            }
            if bootstrap.is_none() {
                let addr_file = dir.join("p2p.addr");
                let deadline = Instant::now() + Duration::from_secs(30);
                let first = loop {
                    if let Ok(s) = std::fs::read_to_string(&addr_file)
                        && let Some(l) = s.lines().find(|l| !l.trim().is_empty())
                    {
                        break l.trim().to_string();
                    }
                    net.check_alive()?;
                    if Instant::now() > deadline {
                        bail!(
                            "{name} wrote no p2p address within 30 s (see {})",
                            net.log(&name).display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                bootstrap = Some(if first.contains("/p2p/") {
                    first
                } else {
                    format!("{first}/p2p/{peer_id}")
                });
            }
            net.agents.push(AgentInfo {
                name,
                peer_id,
                data_dir: dir,
                position: p.position,
                cheater: p.cheater,
            });
        }
        for a in net.agents.clone() {
            let deadline = Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Ok(s) = std::fs::read_to_string(a.data_dir.join("http.addr")) {
                    break s.trim().to_string();
                }
                net.check_alive()?;
                if Instant::now() > deadline {
                    bail!("{} wrote no status address within 30 s", a.name);
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let role = a
                .cheater
                .map(|c| format!("  cheats: {}", c.name()))
                .unwrap_or_default();
            say(&format!(
                "{:<9} {}  status http://{status}/status  at {:.5},{:.5}{role}",
                a.name, a.peer_id, a.position.0, a.position.1
            ));
        }
        Ok(net)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.opts.data_dir.join(format!("{name}.log"))
    }

    /// The command that runs `bin` for process `name`: in its agent's network namespace, if
    /// it has one (`ip netns exec` runs the binary in its own place, so the child is the
    /// agent).
    fn command(&self, name: &str, bin: &Path) -> Command {
        match self.netns.get(name) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn spawn(&mut self, name: &str, bin: &Path, args: &[&str], cfg: &Path) -> Result<()> {
        let log = std::fs::File::create(self.log(name))?;
        let child = self
            .command(name, bin)
            .args(args)
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.procs.push(Proc {
            name: name.to_string(),
            child,
        });
        Ok(())
    }

    /// An error naming the first process that exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                let log = self.opts.data_dir.join(format!("{}.log", p.name));
                bail!("{} exited ({status}); see {}", p.name, log.display());
            }
        }
        Ok(())
    }

    /// Reads the oracle's API into a summary (rewards of each closed epoch are read once).
    pub fn poll(&mut self) -> Result<Summary> {
        let mut sum = Summary::default();
        let status: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/status")?)?;
        sum.epoch = status["epoch"].as_u64();
        sum.proofs_stored = status["proofs_stored"].as_u64().unwrap_or(0);
        let epochs: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/epochs")?)?;
        for e in epochs.as_array().into_iter().flatten() {
            if e["state"] != "closed" {
                continue;
            }
            sum.epochs_closed += 1;
            let Some(n) = e["epoch"].as_u64() else {
                continue;
            };
            if !self.paid_seen.contains_key(&n) {
                let body = http_get(self.oracle_http, &format!("/v1/epochs/{n}/rewards"))?;
                let r: serde_json::Value = serde_json::from_str(&body)?;
                let list = r["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| Reward {
                        peer_id: x["peer_id"].as_str().unwrap_or("").to_string(),
                        coverage: x["coverage"].as_u64().unwrap_or(0),
                        backhaul: x["backhaul"].as_u64().unwrap_or(0),
                        uptime: x["uptime"].as_u64().unwrap_or(0),
                    })
                    .collect();
                self.paid_seen.insert(n, list);
            }
        }
        if let Some(list) = self.paid_seen.values().next_back() {
            for r in list {
                sum.last_epoch.insert(r.peer_id.clone(), r.clone());
            }
        }
        for list in self.paid_seen.values() {
            for r in list {
                let t = sum.totals.entry(r.peer_id.clone()).or_default();
                t.peer_id.clone_from(&r.peer_id);
                t.coverage += r.coverage;
                t.backhaul += r.backhaul;
                t.uptime += r.uptime;
            }
        }
        let rej: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/rejections")?)?;
        sum.rejections = rej
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x["reason"].as_str()?.to_string(), x["count"].as_u64()?)))
            .collect();
        let links: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/witness-links")?)?;
        sum.witness_links = links["links"].as_array().map_or(0, Vec::len);
        let nodes: serde_json::Value =
            serde_json::from_str(&http_get(self.oracle_http, "/v1/nodes")?)?;
        for n in nodes.as_array().into_iter().flatten() {
            if let Some(id) = n["peer_id"].as_str() {
                sum.bandwidth.insert(
                    id.to_string(),
                    (n["down_bps"].as_u64(), n["up_bps"].as_u64()),
                );
                if let Some(t) = n["penalized_through"].as_u64() {
                    sum.penalized_through.insert(id.to_string(), t);
                }
            }
        }
        // Each cheater's refusals and marks, by reason.
        for a in self.agents.iter().filter(|a| a.cheater.is_some()) {
            let Ok(body) = http_get(self.oracle_http, &format!("/v1/nodes/{}", a.peer_id)) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let reasons = sum.cheater_reasons.entry(a.peer_id.clone()).or_default();
            for p in v["proofs"].as_array().into_iter().flatten() {
                if let Some(r) = p["reason"].as_str() {
                    *reasons.entry(r.to_string()).or_default() += 1;
                }
            }
            for m in v["node"]["marks"].as_array().into_iter().flatten() {
                if let Some(r) = m["reason"].as_str() {
                    *reasons.entry(r.to_string()).or_default() += 1;
                }
            }
            if sum.penalized_through.contains_key(&a.peer_id) {
                *reasons.entry("penalized".to_string()).or_default() += 1;
            }
        }
        sum.air = (
            self.air_stats.transmissions.load(Ordering::Relaxed),
            self.air_stats.deliveries.load(Ordering::Relaxed),
        );
        Ok(sum)
    }

    /// Stops every process: SIGTERM, then SIGKILL to those still running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for p in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + grace;
        for p in &mut self.procs {
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(None) => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                }
            }
        }
        self.procs.clear();
        self.air_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.air_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if !self.procs.is_empty() || self.air_thread.is_some() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Faults, for end-to-end tests: a process killed with SIGKILL (as a power cut stops it) and
/// started again with the same command, configuration and data directory (as a reboot does).
/// The oracle's embedded broker dies and restarts with the oracle, so killing the oracle is a
/// broker restart too.
impl Devnet {
    /// Where the configurations, data and logs are.
    pub fn data_dir(&self) -> &Path {
        &self.opts.data_dir
    }

    /// The oracle's SQLite database.
    pub fn oracle_db(&self) -> PathBuf {
        self.opts.data_dir.join("oracle").join("oracle.db")
    }

    /// Agent `i`'s outbox database.
    pub fn agent_db(&self, i: usize) -> Result<PathBuf> {
        Ok(self.agent(i)?.data_dir.join("outbox.db"))
    }

    /// The log of process `name` (`oracle`, `agent-<i>`); restarts append to it.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log(name)
    }

    fn agent(&self, i: usize) -> Result<&AgentInfo> {
        self.agents
            .get(i)
            .with_context(|| format!("no agent {i}: the devnet has {}", self.agents.len()))
    }

    /// Whether process `name` is running (started, not killed, not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.procs
            .iter_mut()
            .any(|p| p.name == name && matches!(p.child.try_wait(), Ok(None)))
    }

    /// Kills process `name` with SIGKILL and reaps it.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let at = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("{name} is not running"))?;
        let mut p = self.procs.remove(at);
        // `Child::kill` is SIGKILL on Unix; a child that already exited is only reaped.
        let _ = p.child.kill();
        p.child
            .wait()
            .with_context(|| format!("reaping {name} after SIGKILL"))?;
        Ok(())
    }

    /// Kills agent `i` with SIGKILL.
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        let name = self.agent(i)?.name.clone();
        self.kill(&name)
    }

    /// Kills the oracle (and its embedded broker) with SIGKILL.
    pub fn kill_oracle(&mut self) -> Result<()> {
        self.kill("oracle")
    }

    /// Waits up to `timeout` for process `name` to exit by itself (a crash point, a fatal
    /// error), reaps it and returns its exit status.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let at = self
                .procs
                .iter()
                .position(|p| p.name == name)
                .with_context(|| format!("{name} is not running"))?;
            if let Some(status) = self.procs[at].child.try_wait()? {
                self.procs.remove(at);
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{name} still runs after {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts agent `i` again after [`Devnet::kill_agent`]: the same command, configuration and
    /// data directory, `env` added to its environment (e.g. `LD_PRELOAD` and `FAKETIME` for a
    /// skewed clock). It listens for peers on the address it had (`WISP_NET__LISTEN`), as a
    /// hotspot behind a fixed port forward would: the devnet's agents know each other by the
    /// addresses they first announced. Returns once the agent wrote its status address.
    pub fn restart_agent(&mut self, i: usize, env: &[(&str, &str)]) -> Result<()> {
        let a = self.agent(i)?.clone();
        if self.procs.iter().any(|p| p.name == a.name) {
            bail!("{} is still running: kill it first", a.name);
        }
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let listen: Vec<String> = std::fs::read_to_string(a.data_dir.join("p2p.addr"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().split("/p2p/").next())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if !listen.is_empty() && !env.iter().any(|(k, _)| k == "WISP_NET__LISTEN") {
            env.push(("WISP_NET__LISTEN".into(), listen.join(",")));
        }
        let http_addr = a.data_dir.join("http.addr");
        let _ = std::fs::remove_file(&http_addr);
        let cfg = self.opts.data_dir.join(format!("{}.toml", a.name));
        let bin = self.opts.bin_dir.join("wisp-agent");
        self.respawn(&a.name, &bin, &["run", "-c"], &cfg, &env)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&http_addr)
                .is_ok_and(|s| s.trim().parse::<SocketAddr>().is_ok())
            {
                return Ok(());
            }
            if !self.is_running(&a.name) {
                bail!(
                    "{} exited after its restart; see {}",
                    a.name,
                    self.log(&a.name).display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} wrote no status address within 30 s of its restart",
                    a.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the oracle again after [`Devnet::kill_oracle`] (or a crash): the same command,
    /// configuration, data directory and ports, `env` added to its environment (e.g.
    /// `WISP_ORACLE_CRASH_AT`). Does not wait: see [`Devnet::wait_oracle_healthy`].
    pub fn restart_oracle(&mut self, env: &[(&str, &str)]) -> Result<()> {
        if self.procs.iter().any(|p| p.name == "oracle") {
            bail!("the oracle is still running: kill it first");
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let cfg = self.opts.data_dir.join("oracle.toml");
        let bin = self.opts.bin_dir.join("wisp-oracle");
        self.respawn("oracle", &bin, &["run", "-c"], &cfg, &env)
    }

    /// Waits up to `timeout` for the oracle to answer `/healthz` (connected to its broker).
    pub fn wait_oracle_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while http_get(self.oracle_http, "/healthz").is_err() {
            if !self.is_running("oracle") {
                bail!(
                    "the oracle is not running; see {}",
                    self.log("oracle").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the oracle did not become healthy within {} s; see {}",
                    timeout.as_secs(),
                    self.log("oracle").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Agent `i`'s `/status` document.
    pub fn agent_status(&self, i: usize) -> Result<serde_json::Value> {
        let a = self.agent(i)?;
        let addr: SocketAddr = std::fs::read_to_string(a.data_dir.join("http.addr"))
            .with_context(|| format!("{} has no status address", a.name))?
            .trim()
            .parse()
            .with_context(|| format!("{}'s status address", a.name))?;
        Ok(serde_json::from_str(&http_get(addr, "/status")?)?)
    }

    /// Like `spawn`, but appends to the process's log (after a line saying so) and adds `env`.
    fn respawn(
        &mut self,
        name: &str,
        bin: &Path,
        args: &[&str],
        cfg: &Path,
        env: &[(String, String)],
    ) -> Result<()> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))?;
        let extra: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(log, "--- restarted {}", extra.join(" "))?;
        let child = self
            .command(name, bin)
            .args(args)
            .arg(cfg)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.procs.push(Proc {
            name: name.to_string(),
            child,
        });
        Ok(())
    }
}
