//! `wisp-oracle`: the rewards oracle service, and the operator's commands that read a running
//! one's API or check its signed manifests offline ([`cli`]).
#![allow(clippy::print_stdout)]

mod cli;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use wisp_oracle::service;
use wisp_oracle::settings::{RawSettings, Settings};
use wisp_oracle::store::crash;

#[derive(Parser, Debug)]
#[command(
    name = "wisp-oracle",
    version,
    about = "wisp rewards oracle: verifies proofs, rejects cheaters, pays each epoch"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Configuration file (TOML); `WISP_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, short = 'c', env = "WISP_ORACLE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `oracle.data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use this broker (mqtt://host:port or mqtts://host:port) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Overrides `http.listen`.
    #[arg(long)]
    http_listen: Option<String>,
}

/// Where the operator commands find a running oracle's HTTP API.
#[derive(Args, Debug, Clone)]
struct ApiArgs {
    /// The oracle's HTTP API, http://host:port. Default: the address a running oracle wrote to
    /// `<data_dir>/http.addr`.
    #[arg(long)]
    api: Option<String>,
    /// Configuration file (TOML) giving `oracle.data_dir`, as `run` reads it.
    #[arg(long, short = 'c', env = "WISP_ORACLE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `oracle.data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the oracle (embedded broker unless --broker is given).
    Run(Common),
    /// Create the oracle key if there is none and print its peer id (agents pin it).
    Key(Common),
    /// Validate the configuration.
    Check(Common),
    /// List the hotspots: peer id, status, cell, owner, last heartbeat, trust, latest reward.
    ///
    /// STATUS is `penalized` (caught cheating, its penalty not over), `marked` (caught within
    /// the strike window), `silent` (no heartbeat yet) or `ok`. The reward is the last closed
    /// epoch's.
    Nodes {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`/v1/nodes`) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// One hotspot: place, trust, recent proofs with their verdicts, rewards per epoch.
    Node {
        /// The node's peer id.
        peer_id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`/v1/nodes/{peer_id}`).
        #[arg(long)]
        json: bool,
    },
    /// One epoch: its emission, the rewards by node and category, its manifest pages.
    Epoch {
        /// The epoch number.
        epoch: u64,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`/v1/epochs/{epoch}/rewards`).
        #[arg(long)]
        json: bool,
        /// Write each signed manifest page to this directory as
        /// `epoch-<n>-page-<p>.manifest`, for `verify-manifest`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Data credits: grant a subscriber credits (signed with the oracle key of the data
    /// directory), or only sign a grant.
    Credit {
        #[command(subcommand)]
        cmd: CreditCmd,
    },
    /// Check saved reward manifest pages offline: the oracle's signature on the raw bytes,
    /// then the entries, the total and the Merkle root. Give every page of the epoch.
    VerifyManifest {
        /// Manifest page files (the envelope bytes as published; see `epoch --out`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The oracle's peer id (`wisp-oracle key` prints it; agents pin it).
        #[arg(long, value_name = "PEER_ID")]
        oracle: String,
    },
}

#[derive(Subcommand, Debug)]
enum CreditCmd {
    /// Sign a grant and post it to the running oracle (`POST /v1/credits`). The grant has a
    /// fresh random id: running this twice grants twice.
    Grant {
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Sign a grant and print its envelope in hex, without posting it (post the bytes to
    /// `/v1/credits` later; the oracle applies a grant once, however often it is posted).
    Sign {
        #[command(flatten)]
        grant: GrantArgs,
        /// Configuration file (TOML) giving `oracle.data_dir`, as `run` reads it.
        #[arg(long, short = 'c', env = "WISP_ORACLE_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `oracle.data_dir` (where the oracle key is).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// What a credit grant says.
#[derive(Args, Debug, Clone)]
struct GrantArgs {
    /// The subscriber's peer id (its client's key).
    subscriber: String,
    /// Data credits to grant, at least 1.
    amount_dc: u64,
    /// A note for the ledger (an invoice number): at most 64 characters of printable ASCII.
    #[arg(long, default_value = "")]
    memo: String,
}

/// Runs an operator command (no runtime: each is a few blocking requests or file reads);
/// `None` for the daemon's commands.
fn operator(cmd: &Cmd) -> Option<anyhow::Result<String>> {
    let locate = |a: &ApiArgs| {
        cli::Api::locate(a.api.as_deref(), || {
            let c = Common {
                config: a.config.clone(),
                data_dir: a.data_dir.clone(),
                broker: None,
                http_listen: None,
            };
            Ok(settings(&c)?.data_dir)
        })
    };
    Some(match cmd {
        Cmd::Run(_) | Cmd::Key(_) | Cmd::Check(_) => return None,
        Cmd::Nodes { api, json } => locate(api).and_then(|a| cli::nodes(&a, *json)),
        Cmd::Node { peer_id, api, json } => locate(api).and_then(|a| cli::node(&a, peer_id, *json)),
        Cmd::Epoch {
            epoch,
            api,
            json,
            out,
        } => locate(api).and_then(|a| cli::epoch(&a, *epoch, *json, out.as_deref())),
        Cmd::VerifyManifest { files, oracle } => cli::verify::verify(files, oracle),
        Cmd::Credit { cmd } => credit(cmd),
    })
}

/// `wisp-oracle credit …`: the key comes from the data directory `run` would use.
fn credit(cmd: &CreditCmd) -> anyhow::Result<String> {
    let settings_of = |config: &Option<PathBuf>, data_dir: &Option<PathBuf>| {
        settings(&Common {
            config: config.clone(),
            data_dir: data_dir.clone(),
            broker: None,
            http_listen: None,
        })
    };
    match cmd {
        CreditCmd::Grant { grant, api, json } => {
            let s = settings_of(&api.config, &api.data_dir)?;
            let a = cli::Api::locate(api.api.as_deref(), || Ok(s.data_dir.clone()))?;
            let g = grant;
            cli::credit::grant(&a, &s.key_file, &g.subscriber, g.amount_dc, &g.memo, *json)
        }
        CreditCmd::Sign {
            grant,
            config,
            data_dir,
        } => {
            let s = settings_of(config, data_dir)?;
            cli::credit::sign_only(&s.key_file, &grant.subscriber, grant.amount_dc, &grant.memo)
        }
    }
}

fn settings(c: &Common) -> anyhow::Result<Settings> {
    let mut raw = RawSettings::load(c.config.as_deref(), std::env::vars())?;
    if let Some(d) = &c.data_dir {
        raw.oracle.data_dir = Some(d.clone());
    }
    if let Some(b) = &c.broker {
        raw.broker.url = Some(b.clone());
    }
    if let Some(h) = &c.http_listen {
        raw.http.listen = Some(h.clone());
    }
    Ok(raw.resolve()?)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(result) = operator(&cli.cmd) {
        return match result {
            Ok(text) => {
                use std::io::Write as _;
                // A closed pipe (`| head`) is not worth a panic; nothing else can be said.
                let mut out = std::io::stdout().lock();
                match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    Ok(()) => std::process::ExitCode::SUCCESS,
                    Err(_) => std::process::ExitCode::FAILURE,
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Run(c) => {
            let s = settings(&c)?;
            // Read once: the crash points are armed before anything runs.
            let crash_at = std::env::var(crash::ENV).ok();
            crash::arm(crash_at.as_deref())?;
            wisp_shell::logging::init(&s.log_level, s.log_json);
            service::run(s, async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            })
            .await
        }
        Cmd::Key(c) => {
            let s = settings(&c)?;
            let key = service::load_key(&s.key_file).context("the oracle key")?;
            println!("{}", key.id());
            Ok(())
        }
        Cmd::Check(c) => {
            let s = settings(&c)?;
            // The key as `run` would load it: one `run` refuses fails the check too (also a
            // symlink to nothing, which `run` cannot create a key through).
            if s.key_file.symlink_metadata().is_ok() {
                wisp_shell::keyfile::load(&s.key_file)
                    .context("the oracle key file (`run` would refuse it too)")?;
            }
            println!(
                "configuration OK: data_dir {}, broker {:?}, epochs of {} ms, http {}",
                s.data_dir.display(),
                s.broker,
                s.epoch_ms,
                s.http_listen
            );
            Ok(())
        }
        Cmd::Nodes { .. }
        | Cmd::Node { .. }
        | Cmd::Epoch { .. }
        | Cmd::VerifyManifest { .. }
        | Cmd::Credit { .. } => {
            unreachable!("operator commands run in `operator`, without the runtime")
        }
    }
}
