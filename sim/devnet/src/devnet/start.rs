//! Starting a devnet: where each hotspot, cheater and relay is ([`place`] and the plan), the
//! configurations written, the air, the oracle and the agents started, the agents onboarded.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::{
    AgentInfo, CENTRE, Cheater, Devnet, FAR_M, LIE_PERMILLE, M_PER_DEG, MAX_ROUND_TRIP_MS,
    MEASURER_FLOOR_BPS, Options, RELAY_DELAY, REPLAY_DELAY, SPACING_M, http_get,
};
use crate::air::{Air, AirStats, Relay};
use wisp_agent::air::Station;

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
        .filter(|c| {
            matches!(
                c,
                Cheater::FakeLocation | Cheater::LyingMeasurer | Cheater::InflatedCounters
            )
        })
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
                Cheater::InflatedCounters => "inflate",
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
            Cheater::LyingMeasurer | Cheater::InflatedCounters => {
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
            subscribers: Vec::new(),
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
            // Every hotspot serves subscribers; an inflater co-signs whatever they claim.
            let usage = if p.cheater == Some(Cheater::InflatedCounters) {
                "[usage]\nenabled = true\nslack_bytes = 1099511627776\ngrace_bytes = 1099511627776\n"
            } else {
                "[usage]\nenabled = true\n"
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
                     [bandwidth]\nmeasurer = true\nlisten = \"{ip}:0\"\nduration_s = 1\nbyte_cap_mib = 64\n{usage}",
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
        net.start_subscribers(&oracle_cfg, say)?;
        Ok(net)
    }
}
