//! `wisp-sim`: run a scenario and print its report.
//!
//! ```text
//! wisp-sim run <scenario.toml> [--seed N] [--nodes N] [--days N] [--json] [--svg-dir DIR]
//!              [--no-baseline] [--check-targets] [--nodes-csv FILE]
//! wisp-sim devnet [--nodes N] [--epoch-s S] [--cheaters LIST] [--data-dir DIR] [--for-s S]
//!                [--until-paid]
//! wisp-sim cheat-agent -c <agent.toml> --shave-uploads PERMILLE
//! ```
//!
//! The Markdown report (or JSON with `--json`) goes to stdout, the progress bar to stderr
//! (only when stderr is a terminal). The exit status is non-zero when an invariant was
//! violated, or with `--check-targets` when a target of the report was missed, so CI can run a
//! scenario and trust the result.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wisp-sim",
    version,
    about = "Deterministic simulator of wisp hotspot networks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a scenario file.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the number of hotspots.
        #[arg(long)]
        nodes: Option<u32>,
        /// Override the simulated days.
        #[arg(long)]
        days: Option<f64>,
        /// Print the report as JSON instead of Markdown.
        #[arg(long)]
        json: bool,
        /// Write SVG plots into this directory.
        #[arg(long)]
        svg_dir: Option<PathBuf>,
        /// Skip the honest-only baseline run (no fair-reward figures).
        #[arg(long)]
        no_baseline: bool,
        /// Exit non-zero when a target of the report is not met (see the report's "Targets").
        #[arg(long)]
        check_targets: bool,
        /// With --check-targets: a target (by its name's first word, e.g. an archetype) that
        /// is reported but does not fail the run; printed on stderr when it is not met.
        #[arg(long, value_name = "NAME")]
        known_gap: Vec<String>,
        /// Write one CSV line per identity (archetype, rewards, fair reward, verdicts) here.
        #[arg(long)]
        nodes_csv: Option<PathBuf>,
    },
    /// Run a devnet: an oracle and N real agents on loopback, their simulated devices on one
    /// shared simulated air, with a live summary. Ctrl-C stops everything.
    Devnet {
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
        /// map's beacons recorded and played back to it), or `all`. With --until-paid, the run
        /// also waits until every cheater has lost its reward.
        #[arg(long, value_name = "LIST", default_value = "")]
        cheaters: String,
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Devnet {
            nodes,
            epoch_s,
            data_dir,
            bin_dir,
            seed,
            for_s,
            until_paid,
            every_s,
            cheaters,
            broker,
            postgres,
        } => devnet(
            nodes,
            epoch_s,
            data_dir,
            bin_dir,
            seed,
            (for_s, until_paid, every_s),
            &cheaters,
            broker,
            postgres,
        ),
        Cmd::CheatAgent {
            config,
            shave_uploads,
        } => cheat_agent(&config, shave_uploads),
        Cmd::Run {
            scenario,
            seed,
            nodes,
            days,
            json,
            svg_dir,
            no_baseline,
            check_targets,
            known_gap,
            nodes_csv,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("reading scenario {}", scenario.display()))?;
            let mut sc = wisp_sim::scenario::Scenario::from_toml(&text)
                .with_context(|| format!("parsing scenario {}", scenario.display()))?;
            if let Some(s) = seed {
                sc.seed = s;
            }
            if let Some(n) = nodes {
                sc.nodes = n;
            }
            if let Some(d) = days {
                sc.days = d;
            }
            if no_baseline {
                sc.report.fair_baseline = false;
            }
            let progress = std::io::stderr().is_terminal();
            if check_targets && !sc.report.fair_baseline {
                bail!("--check-targets needs the fair baseline (drop --no-baseline)");
            }
            let (main, fair, report) = wisp_sim::run(&sc, progress)?;
            if let Some(path) = nodes_csv {
                std::fs::write(&path, wisp_sim::report::nodes_csv(&main, fair.as_ref()))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
                writeln!(out).context("writing stdout")?;
            } else {
                write!(out, "{}", report.markdown()).context("writing stdout")?;
            }
            if let Some(dir) = svg_dir {
                let files = wisp_sim::plot::write_all(&report, &dir)?;
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            if !report.invariants_ok() {
                bail!(
                    "{} invariant violations (see the report)",
                    report.violations.len()
                );
            }
            let (known, missed): (Vec<_>, Vec<_>) =
                report.targets_missed().into_iter().partition(|t| {
                    let first = t.name.split_whitespace().next().unwrap_or_default();
                    known_gap.iter().any(|g| g == first)
                });
            for t in &known {
                eprintln!(
                    "known gap, not met: {} = {:.4} (limit {})",
                    t.name, t.value, t.limit
                );
            }
            if check_targets && !missed.is_empty() {
                let names: Vec<&str> = missed.iter().map(|t| t.name.as_str()).collect();
                bail!("targets not met: {}", names.join("; "));
            }
            Ok(())
        }
    }
}

// The devnet's summary is its output.
/// The agent daemon with faults: configuration, logs, key and device as `wisp-agent run`.
fn cheat_agent(config: &std::path::Path, shave_uploads: u32) -> Result<()> {
    use wisp_agent::shell::{self, Faults};
    let cfg = wisp_agent::config::RawConfig::load(Some(config), std::env::vars())?.resolve()?;
    wisp_agent::logging::init(&cfg);
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
    cheaters: &str,
    broker: Option<String>,
    postgres: Option<String>,
) -> Result<()> {
    use std::time::{Duration, Instant};
    use wisp_sim::devnet::{Cheater, Devnet, Options};

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
            "not every honest node was paid for coverage, backhaul and uptime, or not every cheater lost its reward, in time"
        );
    }
    Ok(())
}
