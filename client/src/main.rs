//! `wisp-client`: a subscriber's command line.
//!
//! - `key`: creates the subscriber's key file (`<data-dir>/subscriber.key`, PKCS#8 PEM, mode
//!   0600, in a 0700 directory), refusing to overwrite one; prints the peer id.
//! - `id`: prints the subscriber's peer id.
//! - `sign`: signs one usage receipt and prints its envelope in hex, not co-signed (for tests
//!   and scripts; a hotspot opens it with `UsageReceipt::open_for_cosigning`).
//! - `balance`: asks the oracle for the subscriber's balance of data credits.
//! - `carrier`: an offload partner's tool — `carrier key`, `carrier id`, and `carrier report`,
//!   which signs RADIUS accounting as carrier reports and posts them to the oracle
//!   (`carrier_cli.rs`).
//! - `run`: a session with a hotspot over libp2p, pulling traffic through its test endpoint
//!   and signing receipts as the session asks (`run.rs`); exits 1 when the hotspot refuses or
//!   blocks the subscriber.
//!
//! The data directory is `--data-dir`, else `$WISP_CLIENT_DATA_DIR`, else
//! `$XDG_DATA_HOME/wisp-client`, else `~/.local/share/wisp-client`: a subscriber's client runs
//! as its user, not as a service with `/var/lib/wisp` like the agent.
#![allow(clippy::print_stdout)]

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use wisp_client::{BALANCE_RESPONSE_MAX, SubscriberKey, balance_path, parse_balance};
use wisp_protocol::NodeId;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::msg::UsageReceipt;
use wisp_shell::{http_get, keyfile};

use wisp_client::run;

mod carrier_cli;

/// The key file's name in the data directory.
const KEY_FILE: &str = "subscriber.key";

#[derive(Parser, Debug)]
#[command(name = "wisp-client", version, about = "A wisp subscriber's client")]
struct Cli {
    /// The directory of the subscriber's key file (`subscriber.key`); created 0700 if missing.
    /// Default: $XDG_DATA_HOME/wisp-client, else ~/.local/share/wisp-client.
    #[arg(long, global = true, env = "WISP_CLIENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the subscriber's key (refuses to overwrite one) and print its peer id.
    Key,
    /// Print the subscriber's peer id.
    Id,
    /// Sign one usage receipt and print its envelope in hex (not co-signed).
    Sign {
        /// The hotspot's peer id.
        #[arg(long)]
        hotspot: NodeId,
        /// The session id: 16 bytes in hex (32 digits).
        #[arg(long)]
        session: String,
        /// The receipt's sequence number in the session, from 1.
        #[arg(long)]
        seq: u64,
        /// Bytes delivered to the subscriber since the session started.
        #[arg(long)]
        down: u64,
        /// Bytes the subscriber sent since the session started.
        #[arg(long)]
        up: u64,
        /// The current epoch.
        #[arg(long)]
        epoch: u64,
        /// When the receipt is signed, Unix ms. Default: now.
        #[arg(long)]
        signed_ms: Option<u64>,
        /// When the session started, Unix ms, if stated (at most the signing time).
        #[arg(long)]
        start_ms: Option<u64>,
    },
    /// Use a hotspot: pull traffic through its test endpoint over libp2p and sign receipts.
    Run {
        /// The hotspot's multiaddr with `/p2p/<peer id>` (e.g. one line of its `p2p.addr`).
        #[arg(long)]
        hotspot: libp2p::Multiaddr,
        /// The subscriber's key file (default: `subscriber.key` in the data directory).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Bytes to pull down.
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        /// Bytes to send up, spread over the run.
        #[arg(long, default_value_t = 0)]
        up: u64,
        /// Stop after this many seconds, whatever was moved.
        #[arg(long)]
        duration: Option<u64>,
        /// The epoch to state in receipts (default: the hotspot's, from its signed status).
        #[arg(long)]
        epoch: Option<u64>,
        /// Sign a receipt every this many bytes (down and up together).
        #[arg(long, default_value_t = 4 << 20)]
        receipt_every_bytes: u64,
        /// Never sign sooner than this many milliseconds after the last receipt.
        #[arg(long, default_value_t = 1_000)]
        receipt_min_interval_ms: u64,
        /// Pull at most this many KiB per second (default: as fast as the hotspot serves).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        rate_kib_s: Option<u64>,
    },
    /// An offload partner's tool: its key, and RADIUS accounting signed and posted as
    /// carrier reports (its key is `carrier.key` in the data directory).
    #[command(subcommand)]
    Carrier(carrier_cli::CarrierCmd),
    /// Ask the oracle for the subscriber's balance of data credits.
    Balance {
        /// The oracle's API, `http://HOST:PORT`.
        #[arg(long, env = "WISP_ORACLE_URL")]
        oracle: String,
        /// Seconds the whole request may take.
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
        /// Print the balance as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = data_dir(cli.data_dir)?;
    let key_file = dir.join(KEY_FILE);
    match cli.cmd {
        Cmd::Key => {
            keyfile::create_private_dir(&dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut_slice())
                .map_err(|e| anyhow!("the operating system's random source failed: {e}"))?;
            let key = SubscriberKey::from_seed(&seed);
            keyfile::save_new(&key_file, key.node_key()).with_context(|| {
                "the existing key is this subscriber's identity (its balance is held for it): \
                 back it up, or use another --data-dir for a new subscriber"
            })?;
            eprintln!("created {}", key_file.display());
            println!("{}", key.peer_id());
        }
        Cmd::Id => println!("{}", load_key(&key_file)?.peer_id()),
        Cmd::Carrier(cmd) => carrier_cli::run(&dir, cmd)?,
        Cmd::Run {
            hotspot,
            key,
            bytes,
            up,
            duration,
            epoch,
            receipt_every_bytes,
            receipt_min_interval_ms,
            rate_kib_s,
        } => {
            let key = load_key(&key.unwrap_or(key_file))?;
            let args = run::RunArgs {
                hotspot,
                bytes,
                up,
                duration: duration.map(Duration::from_secs),
                epoch,
                receipt_every_bytes: receipt_every_bytes.max(1),
                receipt_min_interval_ms,
                rate_bytes_per_s: rate_kib_s.map(|k| k.saturating_mul(1024)),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let o = rt.block_on(run::run(key, args))?;
            match o.agreed {
                Some((seq, d, u)) => println!(
                    "transferred {} bytes down, {} up; {} receipts signed; co-signed: seq {seq}, \
                     {d} bytes down, {u} up",
                    o.down, o.up, o.receipts
                ),
                None => println!(
                    "transferred {} bytes down, {} up; {} receipts signed; none co-signed",
                    o.down, o.up, o.receipts
                ),
            }
        }
        Cmd::Sign {
            hotspot,
            session,
            seq,
            down,
            up,
            epoch,
            signed_ms,
            start_ms,
        } => {
            let key = load_key(&key_file)?;
            let session: [u8; 16] = hex::decode(session.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--session must be 16 bytes in hex (32 hex digits)")?;
            let receipt = UsageReceipt {
                session: ByteArray(session),
                hotspot,
                subscriber: key.id(),
                epoch,
                seq,
                bytes_down: down,
                bytes_up: up,
                signed_ms: signed_ms.unwrap_or_else(wisp_shell::clock::system_ms),
                start_ms,
            };
            let bytes = key
                .sign_receipt(&receipt)
                .context("not signed; check the arguments against docs/PROTOCOL.md §5.10")?;
            println!("{}", hex::encode(bytes));
        }
        Cmd::Balance {
            oracle,
            timeout_s,
            json,
        } => {
            let key = load_key(&key_file)?;
            let addr = oracle_addr(&oracle)?;
            let path = balance_path(&key.id());
            let limits = http_get::Limits {
                connect: Duration::from_secs(timeout_s.clamp(1, 2)),
                total: Duration::from_secs(timeout_s.max(1)),
                // The body's limit and room for the header.
                max_response: BALANCE_RESPONSE_MAX + 8192,
            };
            let r = http_get::fetch(addr, &path, &limits)
                .with_context(|| format!("cannot read the balance from the oracle at {oracle}"))?;
            match r.status {
                200 => {}
                404 => bail!(
                    "the oracle at {oracle} knows no subscriber {} (no credits granted yet?): {}",
                    key.id(),
                    r.body.trim()
                ),
                s => bail!(
                    "the oracle at {oracle} answered HTTP {s}: {}",
                    r.body.trim()
                ),
            }
            let b = parse_balance(r.body.as_bytes(), &key.id()).with_context(|| {
                format!("the oracle at {oracle} answered GET {path} with something else")
            })?;
            if json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                println!("subscriber  {}", b.subscriber);
                println!("balance_dc  {}", b.balance_dc);
                println!("burned_dc   {}", b.burned_dc);
                println!("pending_dc  {}", b.pending_dc);
            }
        }
    }
    Ok(())
}

/// `--data-dir`, else `$XDG_DATA_HOME/wisp-client`, else `~/.local/share/wisp-client`.
fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d);
    }
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("wisp-client"));
    }
    let home = non_empty("HOME")
        .context("no --data-dir given and neither XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/wisp-client"))
}

fn load_key(path: &Path) -> anyhow::Result<SubscriberKey> {
    match keyfile::load(path) {
        Ok(k) => Ok(k.into()),
        Err(keyfile::KeyFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            bail!(
                "no subscriber key at {}; create one with `wisp-client key` (or give the \
                 --data-dir that holds it)",
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The socket address of `http://HOST[:PORT][/]` (port 80 if none).
fn oracle_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        anyhow!("--oracle {url}: give the oracle's API as http://HOST:PORT (plain HTTP only)")
    })?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        bail!("--oracle {url}: give the API's root, http://HOST:PORT, with no path");
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("--oracle {url}: cannot resolve {with_port}"))?
        .next()
        .with_context(|| format!("--oracle {url}: {with_port} has no address"))
}
