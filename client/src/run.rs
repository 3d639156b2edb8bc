//! `wisp-client run`: a session with a hotspot over libp2p that moves real traffic through
//! its test endpoint (`/wisp/usage-data/1`) and signs receipts on `/wisp/usage/1` as the
//! sans-IO [`Session`] asks. The transport is the agent's own (`wisp_agent::net`: TCP and
//! QUIC, noise, yamux), with the same protocol names and size limits.
//!
//! The epoch comes from the hotspot's signed status (`/wisp/status/1`), checked again every
//! [`EPOCH_REFRESH`]; `--epoch` overrides it. The run stops after `--bytes` down or
//! `--duration`, signs a last receipt for what is left, and fails (exit status 1) when the
//! hotspot blocks it, refuses a receipt or disputes it beyond the client's tolerance.
//! `--rate-kib-s` paces the traffic (a subscriber's demand, not a load test).
//!
//! With the cargo feature `cheats`, [`run_claiming`] runs a client that signs more than it
//! used: a devnet's colluding subscriber, whose receipts a hotspot with no tolerance left
//! co-signs. It burns the subscriber's own credits; the oracle caps what it pays for them.

use std::time::{Duration, Instant};

use crate::{AnswerOutcome, Policy, Session, SubscriberKey};
use anyhow::{Context as _, anyhow, bail};
use libp2p::Multiaddr;
use wisp_agent::net::usage_data::{CHUNK_MAX, DataAnswer};
use wisp_agent::net::{self, NetConfig, NetHandle};
use wisp_protocol::msg::UsageAnswer;
use wisp_protocol::{NodeId, Reason};

/// How often the hotspot's epoch is asked again: a hotspot refuses a receipt more than one
/// epoch away from its own, so this is half the shortest epoch a network runs (20 s, a
/// devnet's).
pub const EPOCH_REFRESH: Duration = Duration::from_secs(10);

/// What `run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The hotspot's address with `/p2p/<peer id>`.
    pub hotspot: Multiaddr,
    /// Bytes to pull down.
    pub bytes: u64,
    /// Bytes to send up (spread over the requests).
    pub up: u64,
    /// Stop after this long, whatever was moved.
    pub duration: Option<Duration>,
    /// The epoch to state, instead of the hotspot's.
    pub epoch: Option<u64>,
    /// Sign a receipt every this many bytes.
    pub receipt_every_bytes: u64,
    /// Never sign sooner than this after the last receipt.
    pub receipt_min_interval_ms: u64,
    /// Pull at most this many bytes per second down (none: as fast as the hotspot serves).
    pub rate_bytes_per_s: Option<u64>,
}

/// What a run moved and what the hotspot co-signed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes received.
    pub down: u64,
    /// Bytes sent.
    pub up: u64,
    /// Receipts signed.
    pub receipts: u64,
    /// The last receipt the hotspot co-signed: its seq, bytes down and up.
    pub agreed: Option<(u64, u64, u64)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn epoch_of(net: &NetHandle, hotspot: libp2p::PeerId) -> anyhow::Result<u64> {
    let s = net
        .status_request(hotspot)
        .await
        .with_context(|| format!("asking {hotspot} for its status (is it a wisp hotspot?)"))?;
    s.report
        .epoch
        .ok_or_else(|| anyhow!("the hotspot knows no epoch yet; try again later or pass --epoch"))
}

/// Runs one session with the hotspot; `Err` says why the hotspot stopped serving.
/// Runs a session with the hotspot until `args.bytes` are down or `args.duration` is over;
/// the receipts state what was counted.
pub async fn run(key: SubscriberKey, args: RunArgs) -> anyhow::Result<Outcome> {
    drive(key, args, 1_000).await
}

/// Like [`run`], but every receipt states `claim_permille` thousandths of what was counted:
/// fault injection for devnets and tests (feature `cheats`).
#[cfg(feature = "cheats")]
pub async fn run_claiming(
    key: SubscriberKey,
    args: RunArgs,
    claim_permille: u64,
) -> anyhow::Result<Outcome> {
    drive(key, args, claim_permille).await
}

/// The smallest request a paced run makes.
const PACED_CHUNK_MIN: u64 = 16 * 1024;

async fn drive(key: SubscriberKey, args: RunArgs, claim_permille: u64) -> anyhow::Result<Outcome> {
    let claim = |n: u64| {
        u64::try_from(u128::from(n) * u128::from(claim_permille) / 1000).unwrap_or(u64::MAX)
    };
    let peer = net::peer_of(&args.hotspot)
        .ok_or_else(|| anyhow!("--hotspot needs /p2p/<peer id> at the end of the address"))?;
    let hot_id = NodeId::from_peer_id(&peer)
        .map_err(|e| anyhow!("the hotspot's peer id is not an Ed25519 key: {e}"))?;
    let cfg = NetConfig {
        // A client dials; it listens on nothing.
        listen: Vec::new(),
        usage: true,
        ..NetConfig::default()
    };
    // No gossip matters to a client: seeds are accepted only from its own key (never).
    let mut n = net::start(key.node_key(), &cfg, key.node_id(), None)
        .map_err(|e| anyhow!("starting libp2p: {e}"))?;
    // Nobody reads the network's events here; drain them so none is reported dropped.
    let mut events = std::mem::replace(&mut n.events, tokio::sync::mpsc::channel(1).1);
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let h = n.handle.clone();
    h.add_address(peer, args.hotspot.clone())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut epoch = match args.epoch {
        Some(e) => e,
        None => epoch_of(&h, peer).await?,
    };
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow!("the random source failed: {e}"))?;
    // Receipts fall due by what they state: a claiming run signs as often as an honest one.
    let every = claim(args.receipt_every_bytes).max(1);
    let d = Policy::default();
    let policy = Policy {
        receipt_every_bytes: every,
        receipt_min_interval_ms: args.receipt_min_interval_ms,
        receipt_every_ms: d.receipt_every_ms.max(args.receipt_min_interval_ms),
        ..d
    };
    let mut session = Session::new(key, hot_id, id, epoch, now_ms(), policy)
        .map_err(|e| anyhow!("starting the session: {e}"))?;
    let started = Instant::now();
    let mut last_epoch_check = Instant::now();
    let mut out = Outcome::default();
    let up_chunk = |out: &Outcome| {
        let left = args.up.saturating_sub(out.up);
        let steps = args.bytes.div_ceil(CHUNK_MAX as u64).max(1);
        usize::try_from(left.min(args.up.div_ceil(steps)).min(CHUNK_MAX as u64)).unwrap_or(0)
    };
    let mut result = Ok(());
    while out.down < args.bytes && args.duration.is_none_or(|d| started.elapsed() < d) {
        // A paced run asks for a quarter of a second's worth at a time, when it is due.
        let chunk = args.rate_bytes_per_s.map_or(CHUNK_MAX as u64, |r| {
            (r / 4).clamp(PACED_CHUNK_MIN, CHUNK_MAX as u64)
        });
        if let Some(rate) = args.rate_bytes_per_s.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(out.down as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let want = u32::try_from((args.bytes - out.down).min(chunk)).unwrap_or(0);
        // An honest client does not run ahead of its receipts: with a receipt's worth unsigned
        // and the next one not allowed yet, it waits for it rather than pull more (the hotspot
        // blocks usage nobody signs for).
        let st = session.status();
        let unsigned = (st.counted.bytes_down + st.counted.bytes_up)
            .saturating_sub(st.signed.bytes_down + st.signed.bytes_up);
        if unsigned >= every
            && let Some(t) = session.poll_timeout()
        {
            tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await;
            exchange(&h, peer, &mut session, &mut out).await?;
        }
        let up = vec![0u8; up_chunk(&out)];
        match h.usage_data_request(peer, want, &up).await {
            Ok(DataAnswer::Served(b)) => {
                out.down += b.len() as u64;
                out.up += up.len() as u64;
            }
            Ok(DataAnswer::Blocked) => {
                result = Err(anyhow!(
                    "the hotspot blocked this subscriber after {} bytes down (it does not \
                     agree with our receipts, or we did not sign for what we used)",
                    out.down
                ));
                break;
            }
            Ok(DataAnswer::BadRequest) => bail!("the hotspot could not read our data request"),
            Err(e) => bail!("the hotspot's test endpoint failed: {e}"),
        }
        if last_epoch_check.elapsed() >= EPOCH_REFRESH && args.epoch.is_none() {
            last_epoch_check = Instant::now();
            if let Ok(e) = epoch_of(&h, peer).await {
                epoch = epoch.max(e);
                session.handle_epoch(epoch);
            }
        }
        session.handle_counters(claim(out.down), claim(out.up), now_ms());
        exchange(&h, peer, &mut session, &mut out).await?;
    }
    // A last receipt for what the periodic ones left out.
    session.handle_close();
    exchange(&h, peer, &mut session, &mut out).await?;
    result.map(|()| out)
}

/// Sends the receipt the session has due, if any, and feeds it the answer.
async fn exchange(
    h: &NetHandle,
    peer: libp2p::PeerId,
    session: &mut Session,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    while let Some(r) = session.poll_receipt(now_ms()) {
        out.receipts += 1;
        let answer = h
            .usage_request(peer, r)
            .await
            .map_err(|e| anyhow!("sending a usage receipt: {e}"))?;
        let outcome = session.handle_answer(answer);
        let st = session.status();
        match answer {
            // The session ignores answers once it is closed: the last receipt's agreement is
            // noted here.
            UsageAnswer::Agreed { seq } if seq == st.seq => {
                out.agreed = Some((seq, st.signed.bytes_down, st.signed.bytes_up));
            }
            UsageAnswer::Refused { reason } => bail!(
                "the hotspot refused receipt {}: {}",
                st.seq,
                Reason::from_code(reason).name()
            ),
            _ => {}
        }
        if let AnswerOutcome::Ended(why) = outcome
            && !matches!(why, crate::EndReason::Closed)
        {
            bail!("the hotspot ended the session: {why:?} (answer {answer:?})");
        }
    }
    Ok(())
}
