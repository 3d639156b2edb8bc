//! The bandwidth test over a real network, without libp2p: the accuracy benchmark
//! (`bench/bandwidth.sh`) runs `serve` in one network namespace and `measure` in another.
//!
//! The `/wisp/bw/1` bodies travel over a plain TCP connection here (a 4-byte length and the
//! body each way), standing in for libp2p request-response; everything after the negotiation is
//! the same code the daemon runs. Keys and the epoch are fixed test values: the measurer
//! (seed 2) is the prover's (seed 1) only assigned measurer in epoch 1.
//!
//! ```text
//! bwtest serve   --listen 10.77.0.2:7000
//! bwtest measure --prover 10.77.0.2:7000 --bind 10.77.0.1:0 --duration-ms 6000 --json
//! ```
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wisp_agent::bandwidth::negotiate::MAX_BODY;
use wisp_agent::bandwidth::{
    BwConfig, Cheat, Directions, EpochView, Measurer, NegotiateError, Negotiator, Prover,
};
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::msg::{Direction, Outcome};

#[derive(Parser)]
#[command(about = "wisp bandwidth test over a real address (benchmark tool)")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dirs {
    Down,
    Up,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheatArg {
    Garbage,
    Replay,
    Truncate,
}

#[derive(Subcommand)]
enum Mode {
    /// The prover: answers negotiations on --listen (TCP) and runs the accepted tests.
    Serve {
        /// TCP address for the negotiation.
        #[arg(long)]
        listen: SocketAddr,
        /// Cheat on uploads after 1 MiB (to see the failure receipts).
        #[arg(long)]
        cheat: Option<CheatArg>,
        /// Largest byte cap accepted per direction.
        #[arg(long, default_value_t = 1 << 30)]
        max_bytes: u64,
    },
    /// The measurer: negotiates with --prover, runs the test, prints the figures.
    Measure {
        /// The prover's negotiation address.
        #[arg(long)]
        prover: SocketAddr,
        /// Where the measurer's QUIC endpoint binds (its IP is what the prover connects to).
        #[arg(long)]
        bind: SocketAddr,
        /// Time cap per direction, ms (at most 8000).
        #[arg(long, default_value_t = 6000)]
        duration_ms: u64,
        /// Byte cap per direction.
        #[arg(long, default_value_t = 1 << 30)]
        byte_cap: u64,
        /// Which directions.
        #[arg(long, value_enum, default_value = "both")]
        directions: Dirs,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn prover_key() -> NodeKey {
    NodeKey::from_seed(&[1; 32])
}

fn measurer_key() -> NodeKey {
    NodeKey::from_seed(&[2; 32])
}

fn epoch_view() -> EpochView {
    EpochView {
        epoch: 1,
        seed: [0; 32],
        eligible: vec![prover_key().id(), measurer_key().id()],
        measurers_per_prover: 1,
    }
}

async fn read_body(s: &mut TcpStream) -> Result<Vec<u8>> {
    let len = usize::try_from(s.read_u32().await?)?;
    if len > MAX_BODY {
        bail!("body of {len} bytes exceeds {MAX_BODY}");
    }
    let mut b = vec![0; len];
    s.read_exact(&mut b).await?;
    Ok(b)
}

async fn write_body(s: &mut TcpStream, b: &[u8]) -> Result<()> {
    s.write_u32(u32::try_from(b.len())?).await?;
    s.write_all(b).await?;
    Ok(())
}

/// `/wisp/bw/1` over one TCP connection per request.
struct TcpNegotiator(SocketAddr);

impl Negotiator for TcpNegotiator {
    async fn request(&self, _peer: NodeId, body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        let go = async {
            let mut s = TcpStream::connect(self.0).await?;
            write_body(&mut s, &body).await?;
            read_body(&mut s).await
        };
        go.await
            .map_err(|e| NegotiateError::unreachable(format!("{e:#}")))
    }
}

async fn serve(listen: SocketAddr, cheat: Option<CheatArg>, max_bytes: u64) -> Result<()> {
    let cfg = BwConfig {
        byte_cap: max_bytes,
        ..BwConfig::default()
    };
    let mut prover = Prover::new(prover_key(), cfg, "0.0.0.0:0".parse()?);
    if let Some(c) = cheat {
        let after = 1 << 20;
        prover = prover.with_cheat(match c {
            CheatArg::Garbage => Cheat::Garbage { after },
            CheatArg::Replay => Cheat::Replay { after },
            CheatArg::Truncate => Cheat::Truncate { after },
        });
    }
    let prover = Arc::new(prover);
    let l = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the negotiation listener on {listen}"))?;
    println!("serving on {listen}");
    loop {
        let (mut s, peer) = l.accept().await?;
        let body = match read_body(&mut s).await {
            Ok(b) => b,
            Err(e) => {
                println!("{peer}: {e:#}");
                continue;
            }
        };
        let (resp, job) = prover.handle_request(measurer_key().id(), &body, &epoch_view());
        write_body(&mut s, &resp).await?;
        if let Some(job) = job {
            let r = prover.run(job).await;
            println!(
                "test {}: {} receipts co-signed{}",
                hex(&r.test_id),
                r.receipts.len(),
                r.error
                    .map(|e| format!(", ended early: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn measure(
    prover: SocketAddr,
    bind: SocketAddr,
    duration_ms: u64,
    byte_cap: u64,
    dirs: Dirs,
    json: bool,
) -> Result<()> {
    let cfg = BwConfig {
        duration: Duration::from_millis(duration_ms),
        byte_cap,
        ..BwConfig::default()
    };
    cfg.validate()
        .context("check --duration-ms and --byte-cap")?;
    let m = Measurer::new(measurer_key(), cfg, bind, None);
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let directions = match dirs {
        Dirs::Down => Directions::Down,
        Dirs::Up => Directions::Up,
        Dirs::Both => Directions::Both,
    };
    let started = std::time::Instant::now();
    let r = m
        .measure(
            &TcpNegotiator(prover),
            prover_key().id(),
            1,
            directions,
            &mut rng,
        )
        .await;
    let wall_ms = started.elapsed().as_millis();
    let sockets = r.sockets.unwrap_or_default();
    for (env, d) in r.receipts.iter().zip(directions.list()) {
        let opened =
            wisp_protocol::envelope::open::<wisp_protocol::msg::BandwidthReceipt>(&env.to_bytes())
                .context("a receipt did not verify")?;
        let detail = r.details.iter().find(|x| x.direction == *d);
        let dir = match d {
            Direction::Down => "down",
            Direction::Up => "up",
        };
        let end = detail.map(|x| format!("{:?}", x.end)).unwrap_or_default();
        let wire_permille = detail.map_or(1_000, |x| x.wire_permille);
        let (median, p10, bytes, dur, idle, loaded, outcome) = match opened.msg.outcome {
            Outcome::Measured(m) => (
                m.median_bps,
                m.p10_bps,
                m.bytes,
                m.duration_ms,
                m.rtt_idle_us,
                m.rtt_loaded_us,
                "measured".to_string(),
            ),
            Outcome::Failed(f) => (0, 0, 0, 0, 0, 0, format!("failed:{f:?}")),
        };
        if json {
            println!(
                "{{\"direction\":\"{dir}\",\"outcome\":\"{outcome}\",\"end\":\"{end}\",\"median_bps\":{median},\"p10_bps\":{p10},\"bytes\":{bytes},\"duration_ms\":{dur},\"rtt_idle_us\":{idle},\"rtt_loaded_us\":{loaded},\"wire_permille\":{wire_permille},\"cosigned\":{},\"wire_bytes\":{},\"wall_ms\":{wall_ms},\"so_rcvbuf\":{},\"so_sndbuf\":{}}}",
                opened.cosigners.len() == 1,
                r.wire_bytes,
                sockets.recv,
                sockets.send
            );
        } else {
            println!(
                "{dir}: {outcome} ({end}) median {:.2} Mbit/s, p10 {:.2} Mbit/s, {bytes} bytes in {dur} ms, RTT idle {idle} µs loaded {loaded} µs, IP/payload {wire_permille}‰, co-signed: {}",
                median as f64 / 1e6,
                p10 as f64 / 1e6,
                opened.cosigners.len() == 1
            );
        }
    }
    if !json {
        println!(
            "refusal: {:?}; {} bytes on the wire; {wall_ms} ms; SO_RCVBUF {} SO_SNDBUF {} (requested {})",
            r.refusal, r.wire_bytes, sockets.recv, sockets.send, sockets.requested
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        match args.mode {
            Mode::Serve {
                listen,
                cheat,
                max_bytes,
            } => serve(listen, cheat, max_bytes).await,
            Mode::Measure {
                prover,
                bind,
                duration_ms,
                byte_cap,
                directions,
                json,
            } => measure(prover, bind, duration_ms, byte_cap, directions, json).await,
        }
    })
}
