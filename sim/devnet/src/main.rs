//! `wisp-devnet`: an oracle and real agents on loopback, their simulated devices on one shared
//! simulated air, with a live summary; and the agent daemon with a fault injected, for the
//! devnet's lying measurer.
//!
//! ```text
//! wisp-devnet run [--nodes N] [--epoch-s S] [--cheaters LIST] [--subscribers N]
//!                 [--data-dir DIR] [--for-s S] [--until-paid]
//! wisp-devnet cheat-agent -c <agent.toml> --shave-uploads PERMILLE
//! wisp-devnet cheat-client --key <subscriber.key> --hotspot ADDR --claim-permille PERMILLE
//! ```

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wisp-devnet",
    version,
    about = "A devnet of real wisp agents and an oracle on one machine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a devnet: an oracle and N real agents on loopback, their simulated devices on one
    /// shared simulated air, with a live summary. Ctrl-C stops everything.
    Run {
        /// Hotspots (real `wisp-agent` processes).
        #[arg(long, default_value_t = 8)]
        nodes: u32,
        /// Epoch length, seconds.
        #[arg(long, default_value_t = 30)]
        epoch_s: u32,
        /// Keep configurations, keys, databases and logs here (default: a new directory under
        /// the system's temporary directory, removed at the end).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where `wisp-agent` and `wisp-oracle` are (default: next to this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Seed of the air's radio draws.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        for_s: Option<u64>,
        /// Stop as soon as every honest node has been paid for coverage, backhaul and uptime
        /// and its measured backhaul is shown, and every cheater has lost its reward; exit
        /// non-zero if that has not happened when --for-s runs out.
        #[arg(long)]
        until_paid: bool,
        /// Seconds between summaries.
        #[arg(long, default_value_t = 10)]
        every_s: u64,
        /// Hotspots that cheat for real, in addition to --nodes: a comma-separated list of
        /// fake_location (a spoofed GNSS, a place asserted 3 km away), relay (3 km away, its
        /// beacons relayed to and from the map over the internet), replay (3 km away, the
        /// map's beacons recorded and played back to it), lying_measurer (signs a tenth of the
        /// uploads it measures), inflated_counters (co-signs a colluding subscriber's
        /// ten-thousandfold claims), or `all`. With --until-paid, the run also waits until every
        /// cheater has lost its reward.
        #[arg(long, value_name = "LIST", default_value = "")]
        cheaters: String,
        /// Subscribers (real `wisp-client run` processes, each with its own key and a grant of
        /// data credits), on the honest hotspots in turn. With --until-paid, the run also
        /// waits until every hotspot with a subscriber has been paid for usage.
        #[arg(long, default_value_t = 2)]
        subscribers: u32,
        /// An MQTT broker already running, HOST:PORT (e.g. Mosquitto), instead of the oracle's
        /// embedded one.
        #[arg(long, value_name = "HOST:PORT")]
        broker: Option<String>,
        /// The oracle's database on PostgreSQL (postgres://…) instead of SQLite; the run
        /// creates a schema of its own (devnet_<pid>_<time>) and leaves it for inspection.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// Run the real agent daemon (as `wisp-agent run -c FILE`) with a fault injected: a
    /// devnet's lying measurer. For devnets and tests, never for a real network.
    CheatAgent {
        /// The agent's configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The measurer signs this many thousandths of every upload it measures.
        #[arg(long, value_name = "PERMILLE")]
        shave_uploads: u32,
    },
    /// Run a subscriber's client (as `wisp-client run`) that claims more than it used: a
    /// devnet's colluding subscriber. For devnets and tests, never for a real network.
    CheatClient {
        /// The subscriber's key file.
        #[arg(long)]
        key: PathBuf,
        /// The hotspot's multiaddr with `/p2p/<peer id>`.
        #[arg(long)]
        hotspot: String,
        /// Receipts state this many thousandths of what was used.
        #[arg(long, value_name = "PERMILLE")]
        claim_permille: u64,
        /// Pull at most this many KiB per second.
        #[arg(long, default_value_t = 128)]
        rate_kib_s: u64,
        /// Sign a receipt every this many bytes (of what was used).
        #[arg(long, default_value_t = 1 << 20)]
        receipt_every_bytes: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            nodes,
            epoch_s,
            data_dir,
            bin_dir,
            seed,
            for_s,
            until_paid,
            every_s,
            cheaters,
            subscribers,
            broker,
            postgres,
        } => devnet(
            nodes,
            epoch_s,
            data_dir,
            bin_dir,
            seed,
            (for_s, until_paid, every_s),
            (&cheaters, subscribers),
            broker,
            postgres,
        ),
        Cmd::CheatAgent {
            config,
            shave_uploads,
        } => cheat_agent(&config, shave_uploads),
        Cmd::CheatClient {
            key,
            hotspot,
            claim_permille,
            rate_kib_s,
            receipt_every_bytes,
        } => cheat_client(
            &key,
            &hotspot,
            claim_permille,
            rate_kib_s,
            receipt_every_bytes,
        ),
    }
}

/// A subscriber's client, claiming `claim_permille` thousandths of what it uses, until it is
/// stopped or the hotspot ends the session.
#[allow(clippy::print_stdout)]
fn cheat_client(
    key: &std::path::Path,
    hotspot: &str,
    claim_permille: u64,
    rate_kib_s: u64,
    receipt_every_bytes: u64,
) -> Result<()> {
    use wisp_client::run::{RunArgs, run_claiming};
    let key = wisp_shell::keyfile::load(key)?;
    let args = RunArgs {
        hotspot: hotspot
            .parse()
            .with_context(|| format!("--hotspot {hotspot}"))?,
        bytes: u64::MAX,
        up: 0,
        duration: None,
        epoch: None,
        receipt_every_bytes: receipt_every_bytes.max(1),
        receipt_min_interval_ms: 1_000,
        rate_bytes_per_s: Some(rate_kib_s.max(1).saturating_mul(1024)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run_claiming(key.into(), args, claim_permille))?;
    println!("{out:?}");
    Ok(())
}

// The devnet's summary is its output.
/// The agent daemon with faults: configuration, logs, key and device as `wisp-agent run`.
fn cheat_agent(config: &std::path::Path, shave_uploads: u32) -> Result<()> {
    use wisp_agent::shell::{self, Faults};
    let cfg = wisp_agent::config::RawConfig::load(Some(config), std::env::vars())?.resolve()?;
    wisp_shell::logging::init(
        &cfg.log_level,
        matches!(cfg.log_format, wisp_agent::config::LogFormat::Json),
    );
    let key = shell::load_key(&cfg.key_file)?;
    let device = wisp_agent::device::open(&cfg, &key)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        shell::run_with(
            cfg,
            device,
            stop,
            Faults {
                shave_uploads_permille: Some(shave_uploads),
            },
        )
        .await
    })
}

#[allow(clippy::too_many_arguments, clippy::print_stdout)]
fn devnet(
    nodes: u32,
    epoch_s: u32,
    data_dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    seed: u64,
    (for_s, until_paid, every_s): (Option<u64>, bool, u64),
    (cheaters, subscribers): (&str, u32),
    broker: Option<String>,
    postgres: Option<String>,
) -> Result<()> {
    use std::time::{Duration, Instant};
    use wisp_devnet::devnet::{Cheater, Devnet, Options};

    let cheaters = Cheater::parse_list(cheaters)?;
    if until_paid && for_s.is_none() {
        bail!("--until-paid needs --for-s (how long to wait)");
    }
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .to_path_buf(),
    };
    let (data_dir, temporary) = match data_dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("wisp-devnet-{}", std::process::id())),
            true,
        ),
    };
    let started = Instant::now();
    let opts = Options {
        seed,
        cheaters,
        subscribers,
        broker,
        postgres,
        ..Options::new(nodes, epoch_s, data_dir.clone(), bin_dir)
    };
    let mut out = std::io::stdout();
    let mut say = |s: &str| {
        let _ = writeln!(out, "{s}");
    };
    let mut net = Devnet::start(opts, &mut say)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result: Result<bool> = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop_at = for_s.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        let mut tick = tokio::time::interval(Duration::from_secs(every_s.max(1)));
        loop {
            let deadline = async {
                match stop_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(false),
                _ = term.recv() => return Ok(false),
                () = deadline => return Ok(false),
                _ = tick.tick() => {
                    net.check_alive()?;
                    match net.poll() {
                        Ok(sum) => {
                            println!("{}", sum.render(&net.agents, started.elapsed()));
                            if until_paid
                                && sum.all_paid(&net.agents)
                                && sum.all_caught(&net.agents)
                            {
                                return Ok(true);
                            }
                        }
                        Err(e) => eprintln!("summary unavailable: {e:#}"),
                    }
                }
            }
        }
    });
    // The last word: the final summary, then everything stopped.
    let last = net.poll();
    net.stop(Duration::from_secs(10));
    if let Ok(sum) = &last {
        println!("final, after {} s:", started.elapsed().as_secs());
        println!("{}", sum.render(&net.agents, started.elapsed()));
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    } else {
        println!("state kept in {}", data_dir.display());
    }
    let paid = result?;
    if until_paid && !paid {
        bail!(
            "not every honest node was paid for coverage, backhaul, uptime and (with a subscriber) usage, or not every cheater lost its reward, in time"
        );
    }
    Ok(())
}
