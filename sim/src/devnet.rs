//! A devnet: the whole network on one machine. One oracle (embedded broker, SQLite, short
//! epochs) and N agents, each the real `wisp-agent` and `wisp-oracle` binaries as processes
//! with their full shells (libp2p, QUIC bandwidth tests, MQTT, outbox, HTTP status), on
//! loopback, their simulated devices placed on a small map and sharing one simulated air
//! ([`crate::air`]), so beacons are witnessed, bandwidth measured and everything paid for real.
//!
//! [`Devnet::start`] writes the configurations, starts the air and the processes and onboards
//! every agent; [`Devnet::poll`] reads the oracle's API into a [`Summary`]; [`Devnet::stop`]
//! stops every process (SIGTERM, then SIGKILL after a grace period). Each process logs to
//! `<data dir>/<name>.log`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::air::{Air, AirStats};

/// Metres between neighbouring hotspots on the devnet's map (a grid): well within 2.4 GHz
/// reach, so each hears its neighbours.
pub const SPACING_M: f64 = 150.0;

/// The map's centre, degrees.
const CENTRE: (f64, f64) = (38.7139, -9.1394);

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

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
}

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    opts: Options,
    procs: Vec<Proc>,
    /// The oracle's API and dashboard.
    pub oracle_http: SocketAddr,
    /// The embedded broker.
    pub broker: SocketAddr,
    /// The shared air.
    pub air: SocketAddr,
    /// The agents.
    pub agents: Vec<AgentInfo>,
    air_stop: Arc<AtomicBool>,
    air_stats: Arc<AirStats>,
    air_thread: Option<std::thread::JoinHandle<()>>,
    paid_seen: BTreeMap<u64, Vec<Reward>>,
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
}

impl Summary {
    /// True when every agent was paid in all three categories and the oracle shows its
    /// measured backhaul.
    pub fn all_paid(&self, agents: &[AgentInfo]) -> bool {
        agents.iter().all(|a| {
            self.totals
                .get(&a.peer_id)
                .is_some_and(|r| r.coverage > 0 && r.backhaul > 0 && r.uptime > 0)
                && self
                    .bandwidth
                    .get(&a.peer_id)
                    .is_some_and(|(d, u)| d.is_some() || u.is_some())
        })
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
            let (down, up) = self.bandwidth.get(&a.peer_id).copied().unwrap_or_default();
            let mbps =
                |b: Option<u64>| b.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6));
            let short = a
                .peer_id
                .get(a.peer_id.len().saturating_sub(8)..)
                .unwrap_or("");
            let _ = writeln!(
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
        }
        s
    }
}

/// A free TCP port on loopback (bound and released: a devnet's own processes take it next).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The place of hotspot `i` of `n`, degrees: a square-ish grid around the centre.
pub fn place(i: u32, n: u32) -> (f64, f64) {
    let cols = f64::from(n).sqrt().ceil().max(1.0);
    let (row, col) = ((f64::from(i) / cols).floor(), f64::from(i) % cols);
    let lat = CENTRE.0 + (row - cols / 2.0) * SPACING_M / M_PER_DEG;
    let lon = CENTRE.1 + (col - cols / 2.0) * SPACING_M / (M_PER_DEG * CENTRE.0.to_radians().cos());
    (lat, lon)
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
                    "{} not found: build the binaries first (cargo build -p wisp-agent -p wisp-oracle -p wisp-sim), or pass --bin-dir",
                    b.display()
                );
            }
        }
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;

        // The air.
        let air_sock = UdpSocket::bind("127.0.0.1:0").context("binding the simulated air")?;
        let air = air_sock.local_addr()?;
        let air_stop = Arc::new(AtomicBool::new(false));
        let air_stats = Arc::new(AirStats::default());
        let air_thread = {
            let (stop, stats, seed) = (air_stop.clone(), air_stats.clone(), opts.seed);
            std::thread::Builder::new()
                .name("air".into())
                .spawn(move || {
                    if let Err(e) = Air::new(seed, stats).serve(&air_sock, &stop) {
                        eprintln!("the simulated air stopped: {e}");
                    }
                })?
        };

        let broker: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let oracle_http: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut net = Devnet {
            opts: opts.clone(),
            procs: Vec::new(),
            oracle_http,
            broker,
            air,
            agents: Vec::new(),
            air_stop,
            air_stats,
            air_thread: Some(air_thread),
            paid_seen: BTreeMap::new(),
        };

        // The oracle.
        let e = f64::from(opts.epoch_s);
        let oracle_dir = opts.data_dir.join("oracle");
        std::fs::create_dir_all(&oracle_dir)?;
        let oracle_cfg = opts.data_dir.join("oracle.toml");
        std::fs::write(
            &oracle_cfg,
            format!(
                "# Written by wisp-sim devnet.\n[oracle]\ndata_dir = {}\n[broker]\nlisten = \"{broker}\"\n\
                 [epoch]\nduration_s = {e}\nheartbeat_interval_s = {}\nsettle_s = 5\nmeasurers_per_prover = {}\n\
                 [http]\nlisten = \"{oracle_http}\"\n[rules]\npermissionless = true\n",
                toml_str(&oracle_dir.to_string_lossy()),
                (e / 6.0).max(5.0),
                opts.nodes.saturating_sub(1).min(3),
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
        for i in 0..opts.nodes {
            let name = format!("agent-{i}");
            let dir = opts.data_dir.join(&name);
            std::fs::create_dir_all(&dir)?;
            let (lat, lon) = place(i, opts.nodes);
            let cfg = opts.data_dir.join(format!("{name}.toml"));
            let boot = bootstrap
                .as_ref()
                .map(|b| format!("bootstrap = [{}]\n", toml_str(b)))
                .unwrap_or_default();
            std::fs::write(
                &cfg,
                format!(
                    "# Written by wisp-sim devnet.\n[node]\ndata_dir = {}\nowner = \"devnet-{i}\"\n\
                     [oracle]\npublic_key = \"{oracle_id}\"\n[mqtt]\nurl = \"mqtt://{broker}\"\n\
                     [http]\nlisten = \"127.0.0.1:0\"\n[location]\nlat = {lat:.7}\nlon = {lon:.7}\n\
                     [device]\nkind = \"sim\"\nair = \"{air}\"\n[heartbeat]\ninterval_s = {}\n\
                     [net]\nlisten = [\"/ip4/127.0.0.1/udp/0/quic-v1\"]\n{boot}kad_server = true\n\
                     [bandwidth]\nmeasurer = true\nlisten = \"127.0.0.1:0\"\nduration_s = 1\nbyte_cap_mib = 64\n",
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
            net.spawn(&name, &agent_bin, &["run", "-c"], &cfg)?;
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
                position: (lat, lon),
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
            say(&format!(
                "{:<9} {}  status http://{status}/status  at {:.5},{:.5}",
                a.name, a.peer_id, a.position.0, a.position.1
            ));
        }
        Ok(net)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.opts.data_dir.join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, bin: &Path, args: &[&str], cfg: &Path) -> Result<()> {
        let log = std::fs::File::create(self.log(name))?;
        let child = Command::new(bin)
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
