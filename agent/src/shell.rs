//! The daemon: a tokio shell around the sans-IO [`Core`] and [`Outbox`].
//!
//! One task owns the core and the outbox (which holds the proofs, staged and committed, with
//! their bytes); a second task polls the MQTT event loop and forwards what matters over a
//! bounded channel; SQLite commits run on the blocking pool. The loop, each turn:
//!
//! 1. waits for the earliest deadline (core, outbox with its commit window, status), an MQTT
//!    event or a network event;
//! 2. feeds the core (timeouts, seeds, acks, radio frames, GNSS fixes, gossiped witnesses);
//! 3. stages newly signed proofs in the outbox, and writes the commit it hands out: **every
//!    proof is on disk before any of it is published**; proofs acked with a final verdict are
//!    deleted by the same kind of commit (a transient one, `rate_limited`, leaves the proof to
//!    be resent); the shell logs and counts the evictions and refusals the commit reports;
//! 4. publishes what the outbox says is due (new proofs, resends) while connected;
//! 5. refreshes the status and the metrics.
//!
//! The libp2p swarm runs in its own task ([`crate::net`]). The daemon gossips every witness it
//! signs (besides outboxing it for the oracle) and every new seed it got over MQTT; it records
//! gossiped witnesses of its own beacon in the core; it answers `/wisp/status/1` with a signed
//! report.
//!
//! Proof of backhaul ([`crate::backhaul`] decides, [`crate::bandwidth`] measures): the daemon
//! assembles the epoch's measurer set from MQTT, invites its assigned measurers over
//! `/wisp/bw/1`, answers invitations (queueing tests for a measurer task that runs them one at
//! a time) and measurers' requests (each accepted test runs in a task of its own), and puts
//! every receipt those tasks hand back into the outbox like any other proof. Every test
//! that ends gets one INFO line (peer, role, directions, Mbit/s, RTTs, outcome); the latest
//! one as prover (whichever measurer ran it) is kept for `/status`, the `wisp_backhaul_*`
//! gauges and the signed status report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{
    AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{
    BackhaulOutcome, BackhaulSummary, BandwidthReceipt, DeviceHealth, Outcome, StatusReport,
    Verdict, Versions,
};
use wisp_protocol::units::EpochNo;
use wisp_protocol::{Kind, NodeId, NodeKey, ProofId, keyfile, topics};
use wisp_shell::broker_health::{BrokerHealth, REPORT_EVERY_MS};

use crate::VERSION;
use crate::backhaul::{self, Backhaul, SetError};
use crate::bandwidth::{
    Directions, EpochView, InviteAnswer, InviteRefusal, Measurer, NegotiateError, Negotiator,
    Prover, RefuseReason,
};
use crate::clock::ClockSync;
use crate::config::{Config, MqttConfig};
use crate::core::{Core, CoreConfig, Event, Ignored, Proof};
use crate::device::DeviceIo;
use crate::metrics::{DirectionLabel, KindLabel, Metrics, ReasonLabel, RttLabel, WhyLabel};
use crate::net::{self, NetEvent, NetHandle, Topic};
use crate::outbox::{Commit, Full, Outbox};
use crate::status::{BackhaulStatus, Shared, Status};
use crate::store::{Row, Store};
use crate::wallclock::{self, system_ms, wall_ms};

const SEED_BLOB: &str = "epoch_seed";
/// The interval of the oracle's clock, once seen (u32 LE): a restart holds signing until the
/// next live one.
const CLOCK_BLOB: &str = "oracle_clock_interval";
/// Meta key: when the last heartbeat was signed (Unix ms), committed with the batch carrying it.
const HEARTBEAT_MS: &str = "heartbeat_ms";
/// Store meta key: when this node last beaconed, Unix ms (0: never).
const BEACON_MS: &str = "beacon_ms";
const MEASURER_SET_BLOB: &str = "measurer_set";

/// Loads the node key, creating it on first start (and its directory, 0700, if missing).
pub fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        keyfile::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let (key, created) = keyfile::load_or_create(path, &mut rng)?;
    if created {
        info!(peer_id = %key.id(), path = %path.display(), "created a new node key");
    }
    Ok(key)
}

/// The agent's database file in the data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox.db")
}

/// The file where a running agent writes its libp2p listen addresses (one multiaddr with
/// `/p2p/<peer id>` a line), for operators and tests.
pub fn p2p_addr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("p2p.addr")
}

/// The file where a running agent writes its status server's address.
pub fn http_addr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("http.addr")
}

enum Incoming {
    Connected,
    Disconnected(String),
    Publish {
        topic: String,
        payload: Vec<u8>,
        /// The broker's retained copy, delivered on subscribing (not a live message).
        retain: bool,
    },
}

/// MQTT options for this node: persistent session, TLS from the config, and the last will on
/// the status topic when given. The login is the node's own (username = peer id, password =
/// its login token for the network of `oracle`, [`wisp_protocol::login`]) unless the config
/// names other credentials.
pub fn mqtt_options(
    cfg: &MqttConfig,
    key: &NodeKey,
    oracle: &NodeId,
    will: Option<Vec<u8>>,
) -> anyhow::Result<MqttOptions> {
    let id = key.id();
    // A stable client id with a persistent session: the broker keeps our subscriptions and
    // queued acks while we are away.
    let mut o = MqttOptions::new(format!("wisp-agent-{id}"), cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    o.set_clean_session(false);
    o.set_request_channel_capacity(64);
    o.set_inflight(64);
    // Acks are at most 8 KiB; a seed well under 1 KiB. Proofs are at most 64 KiB.
    // Incoming: a measurer-set part is the largest oracle message (132 KiB and its topic).
    o.set_max_packet_size(Kind::MeasurerSet.max_envelope_len() + 1024, 64 * 1024);
    if let Some(will) = will {
        o.set_last_will(LastWill::new(
            topics::status(&id),
            will,
            QoS::AtLeastOnce,
            true,
        ));
    }
    match &cfg.credentials {
        Some((u, p)) => o.set_credentials(u.clone(), p.clone()),
        None => o.set_credentials(id.to_string(), wisp_protocol::login::password(key, oracle)),
    };
    if cfg.tls {
        let transport = match &cfg.ca_file {
            Some(f) => {
                let ca = std::fs::read(f)
                    .with_context(|| format!("reading mqtt.ca_file {}", f.display()))?;
                Transport::tls_with_config(TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                })
            }
            None => Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// A connection error as an operator can act on it: a refused login says what to check.
fn refusal_hint(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        rumqttc::ConnectionError::ConnectionRefused(
            Code::BadUserNamePassword | Code::NotAuthorized,
        ) => format!(
            "{e}: the broker refused this node's login (without mqtt.username the agent logs in as its node, with a password made for the pinned oracle key: is that key this network's? with mqtt.username: are the credentials right?)"
        ),
        rumqttc::ConnectionError::ConnectionRefused(Code::BadClientId) => format!(
            "{e}: the broker refused the client id wisp-agent-<peer id> (a broker that reserves client ids for logged-in nodes wants this node's own login)"
        ),
        _ => e.to_string(),
    }
}

/// The broker as configured, `mqtt://host:port` or `mqtts://host:port`.
pub fn broker_url(cfg: &MqttConfig) -> String {
    let scheme = if cfg.tls { "mqtts" } else { "mqtt" };
    format!("{scheme}://{}:{}", cfg.host, cfg.port)
}

fn offline_status(key: &NodeKey) -> Vec<u8> {
    serde_json::json!({ "peer_id": key.id().to_string(), "state": "offline" })
        .to_string()
        .into_bytes()
}

/// The daemon's state.
struct Daemon {
    cfg: Config,
    key: NodeKey,
    core: Core,
    outbox: Outbox,
    store: Arc<Mutex<Store>>,
    client: AsyncClient,
    connected: bool,
    /// What operators are told about the broker (WARN lines, `/readyz`).
    broker: BrokerHealth,
    device: Box<dyn DeviceIo>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    next_status_ms: u64,
    net: Option<NetHandle>,
    p2p_listen: Vec<String>,
    p2p_peers: usize,
    /// Proof of backhaul, when the network runs and `bandwidth.enabled`.
    bw: Option<BwIo>,
    /// What the bandwidth tasks hand back (kept here so the channel never closes).
    receipts_tx: mpsc::Sender<BwDone>,
    /// The latest bandwidth test of this node as prover, since the start.
    last_backhaul: Option<BackhaulStatus>,
    /// The bandwidth tasks (measurer queue, invitations, prover runs); aborted on drop.
    bw_tasks: tokio::task::JoinSet<()>,
    /// The oracle's time.
    clock: ClockSync,
}

/// The daemon's proof-of-backhaul parts.
struct BwIo {
    state: Backhaul,
    prover: Arc<Prover>,
    /// Accepted invitations, to the measurer task (absent when not a measurer).
    queue: Option<mpsc::Sender<QueuedTest>>,
}

/// What a bandwidth task hands the daemon when its test ends.
#[derive(Debug)]
struct BwDone {
    /// The receipts, for the outbox.
    receipts: Vec<Envelope>,
    /// A test of this node as prover: how it went.
    proved: Option<BackhaulStatus>,
}

/// `/wisp/bw/1` over the libp2p network: the measurer's requests, the prover's invitations.
struct NetNegotiator(NetHandle);

impl Negotiator for NetNegotiator {
    async fn request(&self, peer: NodeId, body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        self.0
            .bw_request(peer.to_peer_id(), body)
            .await
            .map_err(|e| match e {
                net::NetError::Timeout(_) => NegotiateError::Timeout,
                other => NegotiateError::Unreachable(other.to_string()),
            })
    }

    async fn public_ip(&self) -> Option<std::net::IpAddr> {
        self.0.public_ip().await
    }
}

/// Runs the queued tests one at a time (tests in parallel would share, and so understate, the
/// measurer's own link) and hands the receipts back.
/// A prover that answers `busy` (another of its measurers is testing it) or never answers the
/// invitation (a lost connection, a timeout: it may have restarted), or a test this measurer
/// could not run for a reason of its own (its endpoint, its address: no receipt is signed
/// then, the prover is not to blame), is tried again this many times, [`BUSY_RETRY`] apart;
/// the receipts of the attempts before the last are not kept.
const BUSY_ATTEMPTS: u32 = 4;
const BUSY_RETRY: Duration = Duration::from_secs(15);

/// A test waiting in the measurer's queue: the prover, the epoch, the attempt, and when the
/// epoch ends (Unix ms).
type QueuedTest = (NodeId, EpochNo, u32, u64);

/// A queued test starts only this long before its epoch ends, at the latest: both directions
/// and a few seconds to connect and co-sign. A test that straddles the epoch's end is refused
/// by a prover that has moved on, or its receipts arrive late.
fn test_margin(cfg: &crate::bandwidth::BwConfig) -> Duration {
    cfg.duration * 2 + Duration::from_secs(3)
}

#[allow(clippy::too_many_arguments)]
async fn measure_queue(
    margin: Duration,
    measurer: Measurer,
    me: NodeId,
    negotiator: NetNegotiator,
    requeue: mpsc::WeakSender<QueuedTest>,
    mut queue: mpsc::Receiver<QueuedTest>,
    receipts: mpsc::Sender<BwDone>,
    metrics: Arc<Metrics>,
) {
    while let Some((prover, epoch, attempt, end_ms)) = queue.recv().await {
        let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
        if wall_ms().saturating_add(margin_ms) >= end_ms {
            // Nothing signed: the epoch ends before the test could.
            info!(%prover, epoch, "bandwidth test not started: its epoch ends before it could finish");
            metrics
                .bw_tests
                .get_or_create(&WhyLabel {
                    why: "epoch_ending",
                })
                .inc();
            continue;
        }
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let report = measurer
            .measure(&negotiator, prover, epoch, Directions::Both, &mut rng)
            .await;
        if let Some(error) = &report.local_error {
            // Logged at warn by the measurer; nothing was signed.
            metrics
                .bw_tests
                .get_or_create(&WhyLabel {
                    why: "measurer_error",
                })
                .inc();
            if attempt + 1 >= BUSY_ATTEMPTS {
                warn!(%prover, epoch, %error, "bandwidth test not run after {BUSY_ATTEMPTS} attempts: giving up on this prover this epoch");
                continue;
            }
        }
        // A busy prover, a measurer not ready, or a prover that never answered (restarted, its
        // old connection dead): tried again later, and the failure signed only at the last
        // attempt.
        let retry = report.local_error.is_some()
            || report.refusal == Some(RefuseReason::Busy)
            || report.unanswered;
        if retry && attempt + 1 < BUSY_ATTEMPTS {
            debug!(%prover, epoch, attempt, "prover busy, unanswered, or measurer not ready: trying again later");
            let requeue = requeue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(BUSY_RETRY).await;
                let Some(requeue) = requeue.upgrade() else {
                    return; // the daemon stopped
                };
                if requeue
                    .try_send((prover, epoch, attempt + 1, end_ms))
                    .is_err()
                {
                    warn!(%prover, epoch, "measurer queue full: a test is not retried");
                }
            });
            continue;
        }
        // Our own receipts, just signed: decode the payloads, no need to verify again.
        let decoded = decode_receipts(&report.receipts);
        let passed = decoded
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Measured(_)))
            .count();
        let why = if report.refusal.is_some() {
            "measured_refused"
        } else if passed == report.receipts.len() && passed > 0 {
            "measured"
        } else {
            "measured_failed"
        };
        let summary = backhaul::summarize(me, epoch, wall_ms(), Directions::Both.list(), &decoded);
        let refusal = report
            .refusal
            .map(|r| format!("the prover answered {}", r.name()));
        log_test_end(
            "measurer",
            prover,
            Directions::Both,
            &summary,
            refusal.as_deref(),
        );
        metrics.bw_tests.get_or_create(&WhyLabel { why }).inc();
        let done = BwDone {
            receipts: report.receipts,
            proved: None,
        };
        if receipts.send(done).await.is_err() {
            return;
        }
    }
}

/// The payloads of receipt envelopes this node signed or co-signed (not verified again).
fn decode_receipts(receipts: &[Envelope]) -> Vec<BandwidthReceipt> {
    receipts
        .iter()
        .filter_map(|e| wisp_protocol::envelope::decode_canonical(&e.payload).ok())
        .collect()
}

/// A rate for the log: Mbit/s with one decimal, `-` when not measured.
struct Mbps(Option<u64>);

impl std::fmt::Display for Mbps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(bps) => write!(f, "{:.1}", bps as f64 / 1e6),
            None => f.write_str("-"),
        }
    }
}

/// A round-trip time for the log: ms with one decimal, `-` when not measured.
struct Millis(Option<u32>);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(us) => write!(f, "{:.1}", f64::from(us) / 1e3),
            None => f.write_str("-"),
        }
    }
}

/// The one INFO line a finished bandwidth test gets, on either side: the other party, this
/// node's role, the directions, the figures and the outcome (`ok`, or the failure and, when
/// known, more about it).
fn log_test_end(
    role: &'static str,
    peer: NodeId,
    directions: Directions,
    s: &BackhaulSummary,
    detail: Option<&str>,
) {
    let name = backhaul::outcome_name(s.outcome);
    let outcome = match detail {
        Some(d) => format!("{name}: {d}"),
        None => name.to_string(),
    };
    info!(
        %peer,
        role,
        epoch = s.epoch,
        directions = directions.name(),
        down_mbps = %Mbps(s.down_bps),
        up_mbps = %Mbps(s.up_bps),
        rtt_idle_ms = %Millis(s.rtt_idle_us),
        rtt_loaded_ms = %Millis(s.rtt_loaded_us),
        %outcome,
        "bandwidth test ended"
    );
}

/// How inviting one measurer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Invited {
    /// The measurer queued the test.
    Queued,
    /// The measurer declined, and said why.
    Declined(InviteRefusal),
    /// No answer that settles it after every attempt; the last attempt's reason.
    Failed(String),
}

/// Attempts at inviting one measurer, 10 s × the attempt number apart.
const INVITE_ATTEMPTS: u32 = 3;

/// Invites `measurer` for `epoch`, trying a busy, not yet ready or unreachable one again a few
/// times, with `pause` (a sleep, in the daemon) between the attempts; no attempt starts after
/// `budget` (the rest of the epoch) has been spent pausing.
async fn invite<F: std::future::Future<Output = ()>>(
    negotiator: &impl Negotiator,
    measurer: NodeId,
    epoch: EpochNo,
    budget: Duration,
    mut pause: impl FnMut(Duration) -> F,
) -> Invited {
    let mut paused = Duration::ZERO;
    let body = Backhaul::invite_body(epoch);
    let mut why = String::new();
    for attempt in 1..=INVITE_ATTEMPTS {
        why = match negotiator.request(measurer, body.clone()).await {
            Ok(answer) => match crate::bandwidth::negotiate::decode_body::<InviteAnswer>(&answer) {
                Some(InviteAnswer::Queued) => return Invited::Queued,
                Some(InviteAnswer::Refused(InviteRefusal::Busy)) => {
                    "the measurer is busy (its test queue is full)".to_string()
                }
                Some(InviteAnswer::Refused(InviteRefusal::NotYet)) => {
                    "the measurer has not got this epoch yet".to_string()
                }
                Some(InviteAnswer::Refused(r)) => return Invited::Declined(r),
                None if answer.is_empty() => {
                    "the measurer takes no bandwidth tests (bandwidth.enabled = false)".to_string()
                }
                None => "the measurer's answer was unreadable".to_string(),
            },
            Err(e) => e.to_string(),
        };
        debug!(%measurer, epoch, attempt, "bandwidth test invitation: {why}");
        if attempt < INVITE_ATTEMPTS {
            let wait = Duration::from_secs(10 * u64::from(attempt));
            paused += wait;
            if paused >= budget {
                why.push_str("; the epoch ended before another attempt");
                break;
            }
            pause(wait).await;
        }
    }
    Invited::Failed(why)
}

/// Invites one measurer after `after`, and logs and counts how that ended.
async fn send_invite(
    net: NetHandle,
    measurer: NodeId,
    epoch: EpochNo,
    after: Duration,
    budget: Duration,
    metrics: Arc<Metrics>,
) {
    tokio::time::sleep(after).await;
    let why = match invite(
        &NetNegotiator(net),
        measurer,
        epoch,
        budget,
        tokio::time::sleep,
    )
    .await
    {
        Invited::Queued => {
            info!(%measurer, epoch, "bandwidth test: invitation queued");
            "queued"
        }
        Invited::Declined(reason) => {
            info!(%measurer, epoch, ?reason, "bandwidth test: invitation declined");
            "declined"
        }
        Invited::Failed(reason) => {
            warn!(%measurer, epoch, attempts = INVITE_ATTEMPTS, "bandwidth test: the measurer could not be invited: {reason}");
            "failed"
        }
    };
    metrics.bw_invites.get_or_create(&WhyLabel { why }).inc();
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    device: Box<dyn DeviceIo>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(cfg, device, shutdown, Faults::default()).await
}

/// Fault injection for a devnet's cheaters and for tests: what the daemon does against the
/// protocol. Nothing in `wisp-agent`'s command line or configuration sets any of it; the
/// default is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The measurer signs this many thousandths of every upload it measures
    /// ([`Measurer::with_shaved_uploads`]).
    pub shave_uploads_permille: Option<u32>,
}

/// [`run`], with `faults` injected.
pub async fn run_with(
    cfg: Config,
    device: Box<dyn DeviceIo>,
    shutdown: impl std::future::Future<Output = ()>,
    faults: Faults,
) -> anyhow::Result<()> {
    // TLS to the broker uses rustls with the ring provider. Installed explicitly, because a
    // second provider compiled into the binary (libp2p brings aws-lc) would otherwise make
    // rustls refuse to pick one. A second install is an error we ignore.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Owner only: the key, the outbox and the addresses this process listens on.
    keyfile::create_private_dir(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    let key = load_key(&cfg.key_file)?;
    let store = Store::open(&store_path(&cfg.data_dir))
        .with_context(|| format!("opening the outbox database in {}", cfg.data_dir.display()))?;
    let heartbeat_seq = store.meta("heartbeat_seq")?;
    // When the last heartbeat was signed (0: never, or stored by an older agent).
    let heartbeat_ms = store.meta(HEARTBEAT_MS)?;
    let beacon_ms = store.meta(BEACON_MS)?;
    let saved_seed = store.blob(SEED_BLOB)?;
    let clock_interval = store
        .blob(CLOCK_BLOB)?
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map(u32::from_le_bytes);
    let saved_set = store.blob(MEASURER_SET_BLOB)?;
    let rows = store.load()?;
    let now = wall_ms();

    let metrics = Arc::new(Metrics::new(VERSION));
    let shared = Shared::new(metrics.clone());
    let listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding the status server to {} (http.listen)",
                cfg.http_listen
            )
        })?;
    let http_addr = listener.local_addr()?;
    let (net, mut net_events, p2p_listen) = if cfg.net.enabled {
        let n = net::start(&key, &cfg.net, cfg.oracle, Some(metrics.clone())).with_context(
            || "starting the libp2p network (check net.listen; set net.enabled = false to run without it)",
        )?;
        let listen = wait_for_listeners(&n.handle, cfg.net.listen.len()).await;
        let _ = std::fs::remove_file(p2p_addr_path(&cfg.data_dir));
        std::fs::write(p2p_addr_path(&cfg.data_dir), listen.join("\n") + "\n")?;
        (Some(n.handle), Some(n.events), listen)
    } else {
        (None, None, Vec::new())
    };
    std::fs::write(http_addr_path(&cfg.data_dir), http_addr.to_string())?;
    let router = crate::status::router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!("status server stopped: {e}");
        }
    });

    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random: {e}"))?;
    let mut outbox = Outbox::new(cfg.outbox.clone(), u64::from_le_bytes(seed))
        .with_commit_interval(cfg.commit_interval_ms);
    for (row, bytes) in rows {
        let proof = Proof {
            id: row.id,
            kind: row.kind,
            bytes,
            created_ms: row.created_ms,
        };
        outbox.restore(row.seq, proof, now);
    }
    // Not connected yet: nothing is sent until the broker's ConnAck.
    outbox.disconnected();
    let firmware = device.firmware_version();
    let mut core_cfg = CoreConfig::new(cfg.cell, Versions::new(VERSION, &firmware));
    core_cfg.radio = cfg.radio;
    core_cfg.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
    let mut core = Core::new(key.clone(), core_cfg, cfg.oracle, now, heartbeat_seq);
    if heartbeat_ms > 0 {
        // A restart must not heartbeat sooner than the interval allows after the last one.
        core.resume_heartbeats(heartbeat_ms, now);
    }
    if beacon_ms > 0 {
        // Nor beacon twice in one epoch, nor stop witnessing in the epoch it beaconed in.
        core.resume_beacon(beacon_ms);
    }
    // Resume the last epoch at once: a broker need not re-send the retained seed to a client
    // resuming its session (rumqttd does not), and a restart must not stop the heartbeats.
    if let Some(bytes) = saved_seed
        && let Err(e) = core.resume_seed(&bytes, now)
    {
        warn!("ignoring the saved epoch seed: {e}");
    }

    let (client, mut eventloop) = AsyncClient::new(
        mqtt_options(&cfg.mqtt, &key, &cfg.oracle, Some(offline_status(&key)))?,
        64,
    );
    let (tx, mut rx) = mpsc::channel::<Incoming>(256);
    let mqtt_task = tokio::spawn(async move {
        let mut backoff_ms = 500u64;
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    backoff_ms = 500;
                    if tx.send(Incoming::Connected).await.is_err() {
                        return;
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let msg = Incoming::Publish {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    if tx
                        .send(Incoming::Disconnected(refusal_hint(&e)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Back off with jitter so a fleet does not reconnect in lockstep.
                    let jitter = wall_ms() % (backoff_ms / 2 + 1);
                    tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
                    backoff_ms = (backoff_ms * 2).min(30_000);
                }
            }
        }
    });

    info!(
        peer_id = %key.id(),
        oracle = %cfg.oracle,
        broker = %broker_url(&cfg.mqtt),
        status = %http_addr,
        pending = outbox.len(),
        heartbeat_seq,
        "wisp-agent started"
    );

    let (receipts_tx, mut receipts_rx) = mpsc::channel::<BwDone>(64);
    // Every bandwidth task lives in this set, so none outlives the daemon (they hold the
    // network's handle, which keeps the swarm running).
    let mut bw_tasks = tokio::task::JoinSet::new();
    let bw = match &net {
        Some(n) if cfg.bandwidth.enabled => {
            let b = &cfg.bandwidth;
            let prover = Arc::new(Prover::new(
                key.clone(),
                b.test,
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ));
            let queue = b.measurer.then(|| {
                let (tx, rx) = mpsc::channel(backhaul::MAX_QUEUED);
                let mut m = Measurer::new(key.clone(), b.test, b.listen, b.advertise);
                if let Some(k) = faults.shave_uploads_permille {
                    tracing::warn!(permille = k, "fault injected: this measurer shaves uploads");
                    m = m.with_shaved_uploads(k);
                }
                bw_tasks.spawn(measure_queue(
                    test_margin(&b.test),
                    m,
                    key.id(),
                    NetNegotiator(n.clone()),
                    tx.downgrade(),
                    rx,
                    receipts_tx.clone(),
                    metrics.clone(),
                ));
                tx
            });
            let mut state = Backhaul::new(key.id(), cfg.oracle, b.measurer);
            if let Some(seed) = core.epoch() {
                state.on_seed(seed, now, random_u64());
            }
            for part in saved_set
                .as_deref()
                .map(backhaul::unpack)
                .unwrap_or_default()
            {
                let _ = state.on_measurer_set(&part, now, random_u64());
            }
            Some(BwIo {
                state,
                prover,
                queue,
            })
        }
        _ => None,
    };

    let mut d = Daemon {
        key,
        core,
        outbox,
        store: Arc::new(Mutex::new(store)),
        client,
        connected: false,
        broker: BrokerHealth::new(broker_url(&cfg.mqtt), REPORT_EVERY_MS),
        device,
        metrics,
        shared,
        next_status_ms: now,
        cfg,
        net,
        p2p_listen,
        p2p_peers: 0,
        bw,
        receipts_tx,
        last_backhaul: None,
        bw_tasks,
        clock: ClockSync::new(clock_interval, system_ms()),
    };

    tokio::pin!(shutdown);
    loop {
        let now = wall_ms();
        let deadline = d.next_deadline(now);
        let sleep = tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now)));
        tokio::select! {
            () = &mut shutdown => break,
            () = sleep => {}
            msg = rx.recv() => match msg {
                Some(m) => d.on_mqtt(m).await,
                None => anyhow::bail!("the MQTT task stopped"),
            },
            Some(ev) = next_net_event(&mut net_events) => d.on_net(ev).await,
            Some(done) = receipts_rx.recv() => d.on_bw_done(done),
        }
        d.turn().await?;
    }

    info!("shutting down: committing the outbox and publishing the offline status");
    d.bw_tasks.shutdown().await;
    while let Ok(done) = receipts_rx.try_recv() {
        d.on_bw_done(done);
    }
    d.collect(wall_ms());
    d.commit(true).await?;
    if d.connected {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            d.client.publish(
                topics::status(&d.key.id()),
                QoS::AtLeastOnce,
                true,
                offline_status(&d.key),
            ),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), d.client.disconnect()).await;
        // Give the event loop a moment to put the offline status and the disconnect on the wire.
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
    }
    info!(pending = d.outbox.len(), "stopped");
    Ok(())
}

impl Daemon {
    fn next_deadline(&self, now: u64) -> u64 {
        // Turn at least once a second: device polling, status, /healthz.
        let mut t = now + 1_000;
        // While the clock holds signing, the core is not driven: its due timers would spin.
        let core = if self.clock.holding(system_ms()) {
            None
        } else {
            self.core.poll_timeout()
        };
        // The outbox's: its commit window, and its sends and resends while connected.
        for c in [
            core,
            self.outbox.poll_timeout(),
            Some(self.next_status_ms),
            self.bw.as_ref().and_then(|b| b.state.invite_at()),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(c);
        }
        t.max(now)
    }

    async fn on_mqtt(&mut self, m: Incoming) {
        let now = wall_ms();
        match m {
            Incoming::Connected => {
                match self.broker.handle_connected() {
                    Some(line) => info!("{line}"),
                    None => info!(broker = %self.broker.url(), "connected to the broker"),
                }
                self.connected = true;
                self.clock.on_connected(system_ms());
                self.metrics.mqtt_connected.set(1);
                self.metrics.mqtt_connections.inc();
                let id = self.key.id();
                // The clock first, so that its retained copy (which holds signing until a live
                // one comes) arrives before the retained seed; at most once, so that a broker
                // never queues stale ones for a session that was away.
                for (t, qos) in [
                    (topics::CLOCK.to_string(), QoS::AtMostOnce),
                    (topics::acks(&id), QoS::AtLeastOnce),
                    (topics::EPOCH.to_string(), QoS::AtLeastOnce),
                    (topics::MEASURERS_FILTER.to_string(), QoS::AtLeastOnce),
                ] {
                    if let Err(e) = self.client.subscribe(t.clone(), qos).await {
                        warn!("subscribing to {t}: {e}");
                    }
                }
                // Whatever was in flight may have been dropped with the old connection.
                self.outbox.reconnected(now);
                self.next_status_ms = now;
            }
            Incoming::Disconnected(why) => {
                // Every failed attempt comes here; at most one line per 30 s is logged.
                match self.broker.handle_failure(&why, now) {
                    Some(line) => warn!("{line}"),
                    None => debug!(broker = %self.broker.url(), "broker unreachable: {why}"),
                }
                self.connected = false;
                self.outbox.disconnected();
                self.metrics.mqtt_connected.set(0);
            }
            Incoming::Publish {
                topic,
                payload,
                retain,
            } => {
                if topic == topics::CLOCK {
                    self.on_clock(&payload, retain).await;
                } else if topic == topics::EPOCH {
                    self.on_seed(payload, true, now).await;
                } else if topic.starts_with("wisp/v1/measurers/") {
                    self.on_measurer_set(payload, now).await;
                } else if topic == topics::acks(&self.key.id()) {
                    match self.core.handle_ack(&payload, now) {
                        Ok(entries) => self.apply_ack(entries, now),
                        Err(e) => {
                            warn!("refused an ack: {e}");
                            self.metrics
                                .oracle_messages_refused
                                .get_or_create(&WhyLabel { why: "ack" })
                                .inc();
                        }
                    }
                } else {
                    debug!("unexpected topic {topic}");
                }
            }
        }
    }

    /// The oracle's signed clock: sets the offset every timestamp is taken with.
    async fn on_clock(&mut self, payload: &[u8], retain: bool) {
        if payload.is_empty() {
            return;
        }
        let msg = match self.core.open_clock(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("refused an oracle clock: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel { why: "clock" })
                    .inc();
                return;
            }
        };
        let up = self.clock.on_clock(&msg, retain, system_ms());
        let offset = self.clock.offset_ms();
        wallclock::set_offset_ms(offset);
        self.metrics.clock_offset.set(offset as f64 / 1000.0);
        if let Some(old) = up.offset_changed {
            // Timers set on the old clock move with it.
            let delta = offset - old;
            self.core.clock_stepped(delta);
            self.outbox.clock_stepped(delta);
            self.next_status_ms = self.next_status_ms.saturating_add_signed(delta);
            if let Some(bw) = &mut self.bw {
                bw.state.clock_stepped(delta);
            }
        }
        if up.report {
            if offset == 0 {
                info!("the local clock agrees with the oracle's again; no correction");
            } else {
                warn!(
                    offset_ms = offset,
                    "the local clock is {:.1} s {} the oracle's; every timestamp is corrected by it (check NTP)",
                    offset.unsigned_abs() as f64 / 1000.0,
                    if offset < 0 { "ahead of" } else { "behind" }
                );
            }
        }
        if up.interval_changed {
            let blob = msg.interval_ms.to_le_bytes().to_vec();
            if !save_blob(self.store.clone(), CLOCK_BLOB, blob).await {
                warn!("could not save the oracle's clock interval");
            }
        }
    }

    /// An epoch seed from the broker or from gossip. A new one is saved (so a restart resumes
    /// the epoch) and, when it came from the broker, gossiped to peers that lack a broker.
    async fn on_seed(&mut self, payload: Vec<u8>, from_broker: bool, now: u64) {
        match self.core.handle_seed(&payload, now) {
            Ok(true) => {
                if let (Some(bw), Some(seed)) = (&mut self.bw, self.core.epoch()) {
                    bw.state.on_seed(seed, now, random_u64());
                }
                if from_broker && let Some(n) = &self.net {
                    let _ = n.try_publish(Topic::Seed, payload.clone());
                }
                if !save_blob(self.store.clone(), SEED_BLOB, payload).await {
                    warn!(
                        "could not save the epoch seed; a restart will wait for the broker's copy"
                    );
                }
            }
            Ok(false) => debug!("ignored an old epoch seed"),
            Err(e) => {
                warn!("refused an epoch seed: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel { why: "seed" })
                    .inc();
            }
        }
    }

    async fn on_net(&mut self, ev: NetEvent) {
        let now = wall_ms();
        match ev {
            NetEvent::Witness {
                bytes, beaconer, ..
            } => {
                if beaconer != self.key.id() {
                    return;
                }
                match self.core.handle_peer_witness(&bytes) {
                    Ok(()) => {
                        self.metrics.own_beacon_witnesses.inc();
                        // Show it at once rather than at the next status refresh.
                        self.refresh_gauges(now);
                    }
                    Err(why) => debug!(?why, "gossiped witness of our beacon not recorded"),
                }
            }
            NetEvent::Seed { bytes } => self.on_seed(bytes, false, now).await,
            NetEvent::StatusRequest { peer, responder } => {
                let body = self.status_response(now);
                match responder.try_respond(body) {
                    Ok(()) => {
                        debug!(%peer, "served a status report");
                        self.metrics.status_queries_served.inc();
                    }
                    Err(e) => warn!(%peer, "status report not sent: {e}"),
                }
            }
            NetEvent::BwRequest {
                peer,
                body,
                responder,
            } => {
                let (answer, why) = self.on_bw_request(peer, &body);
                debug!(%peer, why, "answered a bandwidth-test message");
                self.metrics
                    .bw_requests
                    .get_or_create(&WhyLabel { why })
                    .inc();
                if let Err(e) = responder.try_respond(answer) {
                    debug!(%peer, "bandwidth answer not sent: {e}");
                }
            }
            NetEvent::Peers(n) => {
                self.p2p_peers = n;
                self.core.handle_peers(u16::try_from(n).unwrap_or(u16::MAX));
                self.metrics
                    .p2p_peers
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// A `/wisp/bw/1` body from `peer`: an invitation (we measure it) or a measurer's request
    /// (we are measured). Returns the answer and a label for the metrics.
    fn on_bw_request(&mut self, peer: libp2p::PeerId, body: &[u8]) -> (Vec<u8>, &'static str) {
        let Ok(from) = NodeId::from_peer_id(&peer) else {
            return (Vec::new(), "not_a_node");
        };
        let Some(bw) = &mut self.bw else {
            // `bandwidth.enabled = false`: an empty body says no.
            return (Vec::new(), "disabled");
        };
        if Backhaul::is_invite(body) {
            let answer = match bw.state.on_invite(from, body) {
                Ok(epoch) => match bw.queue.as_ref().map(|q| {
                    let end = bw.state.epoch_end(epoch).unwrap_or(u64::MAX);
                    q.try_send((from, epoch, 0, end))
                }) {
                    Some(Ok(())) => InviteAnswer::Queued,
                    _ => {
                        bw.state.forget(&from);
                        InviteAnswer::Refused(InviteRefusal::Busy)
                    }
                },
                Err(r) => InviteAnswer::Refused(r),
            };
            let why = match answer {
                InviteAnswer::Queued => "invite_queued",
                InviteAnswer::Refused(_) => "invite_refused",
            };
            return (crate::bandwidth::negotiate::encode_body(&answer), why);
        }
        // Without the epoch's view every request is refused (wrong epoch), co-signed as usual.
        let none = EpochView {
            epoch: EpochNo::MAX,
            seed: [0; 32],
            eligible: Vec::new(),
            measurers_per_prover: 0,
        };
        let view = bw.state.view().unwrap_or(&none);
        let (answer, job) = bw.prover.handle_request(from, body, view);
        let Some(job) = job else {
            return (answer, "request_refused");
        };
        let prover = bw.prover.clone();
        let receipts = self.receipts_tx.clone();
        let metrics = self.metrics.clone();
        let (epoch, directions) = (job.request().epoch, job.request().directions);
        self.bw_tasks.spawn(async move {
            let report = prover.run(job).await;
            let why = if report.error.is_some() {
                "proved_error"
            } else {
                "proved"
            };
            let summary = backhaul::summarize(
                from,
                epoch,
                wall_ms(),
                directions.list(),
                &decode_receipts(&report.receipts),
            );
            log_test_end(
                "prover",
                from,
                directions,
                &summary,
                report.error.as_deref(),
            );
            metrics.bw_tests.get_or_create(&WhyLabel { why }).inc();
            let done = BwDone {
                receipts: report.receipts,
                proved: Some(BackhaulStatus {
                    summary,
                    error: report.error,
                }),
            };
            let _ = receipts.send(done).await;
        });
        (answer, "request_accepted")
    }

    /// A `wisp/v1/measurers/{part}` payload. A completed set is saved, so that a restart
    /// mid-epoch does not wait for a broker that does not re-send retained messages.
    async fn on_measurer_set(&mut self, payload: Vec<u8>, now: u64) {
        let Some(bw) = &mut self.bw else { return };
        if payload.is_empty() {
            // A cleared retained part.
            return;
        }
        match bw.state.on_measurer_set(&payload, now, random_u64()) {
            Ok(Some(parts)) => {
                if let Some(v) = bw.state.view() {
                    info!(
                        epoch = v.epoch,
                        nodes = v.eligible.len(),
                        "measurer set received"
                    );
                }
                let blob = backhaul::pack(&parts);
                if !save_blob(self.store.clone(), MEASURER_SET_BLOB, blob).await {
                    warn!("could not save the measurer set");
                }
            }
            Ok(None) => {}
            Err(SetError::Old) => debug!("ignored a measurer-set part of an older epoch"),
            Err(e) => {
                warn!("refused a measurer-set part: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel {
                        why: "measurer_set",
                    })
                    .inc();
            }
        }
    }

    /// Invites this epoch's measurers when it is time (each in a task of its own).
    fn send_invites(&mut self, now: u64) {
        let (Some(bw), Some(net)) = (&mut self.bw, &self.net) else {
            return;
        };
        let Some((epoch, measurers)) = bw.state.poll_invites(now) else {
            return;
        };
        info!(
            epoch,
            measurers = measurers.len(),
            "inviting this epoch's measurers"
        );
        // One at a time, roughly: a prover runs one test at a time and answers `busy` to the
        // others, so the invitations are spread by about one test's length.
        let gap = self.cfg.bandwidth.test.duration * 2 + Duration::from_secs(5);
        // Retries stop with the epoch: an invitation for an ended epoch is declined.
        let left = bw.state.epoch_end(epoch).map_or(Duration::MAX, |end| {
            Duration::from_millis(end.saturating_sub(now))
        });
        for (i, m) in measurers.into_iter().enumerate() {
            let after = gap * u32::try_from(i).unwrap_or(u32::MAX);
            self.bw_tasks.spawn(send_invite(
                net.clone(),
                m,
                epoch,
                after,
                left.saturating_sub(after),
                self.metrics.clone(),
            ));
        }
    }

    /// A bandwidth test ended: its receipts are staged in the outbox, committed and sent like
    /// any proof; a test of this node as prover becomes the one `/status` shows.
    fn on_bw_done(&mut self, done: BwDone) {
        let now = wall_ms();
        if let Some(proved) = done.proved {
            self.show_backhaul(&proved.summary);
            self.last_backhaul = Some(proved);
            self.refresh_gauges(now);
            // And on the retained MQTT status at this turn, not up to 30 s later.
            self.next_status_ms = now;
        }
        for env in done.receipts {
            let bytes = env.to_bytes();
            self.metrics
                .proofs_signed
                .get_or_create(&KindLabel {
                    kind: Kind::BandwidthReceipt.name(),
                })
                .inc();
            self.stage(
                Proof {
                    id: ProofId::of(&bytes),
                    kind: Kind::BandwidthReceipt,
                    bytes,
                    created_ms: now,
                },
                now,
            );
        }
    }

    /// Stages a signed proof in the outbox, for the next commit.
    fn stage(&mut self, proof: Proof, now: u64) {
        let (id, kind) = (proof.id, proof.kind);
        if !self.outbox.stage(proof, now) {
            debug!(proof = %id, %kind, "signed a proof the outbox already holds");
        }
    }

    /// Sets the `wisp_backhaul_*` gauges to a test of this node as prover (a direction without
    /// a figure reads 0).
    fn show_backhaul(&self, s: &BackhaulSummary) {
        let m = &self.metrics;
        for (direction, bps) in [("down", s.down_bps), ("up", s.up_bps)] {
            m.backhaul_rate
                .get_or_create(&DirectionLabel { direction })
                .set(bps.map_or(0.0, |b| b as f64 / 8.0));
        }
        for (rtt, us) in [("idle", s.rtt_idle_us), ("loaded", s.rtt_loaded_us)] {
            m.backhaul_rtt
                .get_or_create(&RttLabel { rtt })
                .set(us.map_or(0.0, |u| f64::from(u) / 1e6));
        }
        m.backhaul_ok
            .set(i64::from(s.outcome == BackhaulOutcome::Ok));
        m.backhaul_last_test
            .set(i64::try_from(s.measured_ms / 1000).unwrap_or(i64::MAX));
    }

    /// The `/wisp/status/1` answer: a freshly signed report and the witnesses of our beacon,
    /// as an anonymous peer may see them (no GNSS fix, the cell at
    /// `net.status_cell_resolution`; [`net::status::for_anonymous_peer`]).
    fn status_response(&self, now: u64) -> Vec<u8> {
        let a = self.core.activity();
        let h = self.device.health();
        let mut report = StatusReport {
            epoch: self.core.epoch().map(|e| e.epoch),
            sent_ms: now,
            uptime_s: self.core.uptime_s(now),
            versions: Versions::new(VERSION, &self.device.firmware_version()),
            cell: self.core.cell(),
            fix: self.core.fix(),
            outbox_depth: u32::try_from(self.outbox.len()).unwrap_or(u32::MAX),
            oldest_unacked_ms: self.outbox.oldest_created_ms(),
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            broker_connected: self.connected,
            peers: u16::try_from(self.p2p_peers).unwrap_or(u16::MAX),
            health: DeviceHealth {
                gnss_ok: h.gnss_ok,
                radio_ok: h.radio_ok,
                secure_element_ok: h.secure_element_ok,
            },
            witnessed_by: self.core.witnessed_by().iter().map(|w| w.witness).collect(),
            backhaul: self.last_backhaul.as_ref().map(|b| b.summary),
        };
        let mut envelopes: Vec<Vec<u8>> = self
            .core
            .witnessed_by()
            .iter()
            .map(|w| w.envelope.clone())
            .collect();
        net::status::for_anonymous_peer(
            &mut report,
            &mut envelopes,
            self.cfg.net.status_cell_resolution,
        );
        net::status::encode_response(self.core.sign(&report).to_bytes(), &envelopes)
    }

    fn apply_ack(&mut self, entries: Vec<wisp_protocol::msg::AckEntry>, now: u64) {
        for e in entries {
            if let Verdict::Rejected(reason) = e.verdict
                && reason.is_transient()
            {
                // Not judged now (`rate_limited`): the proof stays in the outbox, in flight, and
                // goes out again when its resend timer fires, as if no ack had come: the ack
                // timeout, doubling with each attempt. Only a final verdict deletes it.
                if let Some(entry) = self.outbox.get(&e.proof_id) {
                    debug!(proof = %e.proof_id, kind = %entry.kind, %reason, "the oracle did not judge a proof yet; it will be resent");
                    self.metrics
                        .proofs_deferred
                        .get_or_create(&ReasonLabel {
                            reason: reason.name(),
                        })
                        .inc();
                }
                continue;
            }
            // Out of the outbox at once; deleted from the store by the next commit.
            let Some(kind) = self.outbox.stage_deletion(&e.proof_id, now) else {
                // Already acked (a duplicate ack after a resend), or never ours.
                continue;
            };
            match e.verdict {
                Verdict::Accepted => {
                    self.metrics.proofs_accepted.inc();
                }
                Verdict::Rejected(reason) => {
                    warn!(proof = %e.proof_id, %kind, %reason, "the oracle rejected a proof: {}", reason.describe());
                    self.metrics
                        .proofs_rejected
                        .get_or_create(&ReasonLabel {
                            reason: reason.name(),
                        })
                        .inc();
                }
            }
        }
    }

    /// Feeds the core with time and device input and collects its outputs.
    fn collect(&mut self, now: u64) {
        if self.clock.holding(system_ms()) {
            // The oracle publishes a clock and none has come since the start: nothing
            // time-stamped is signed until it does (for at most two intervals).
            while self.device.poll_received().is_some() {
                self.metrics
                    .radio_frames_ignored
                    .get_or_create(&WhyLabel {
                        why: "clock_unsynced",
                    })
                    .inc();
            }
            return;
        }
        while let Some(fix) = self.device.poll_fix() {
            self.core.handle_fix(fix);
        }
        while let Some(f) = self.device.poll_received() {
            let _ = self
                .core
                .handle_radio_frame(&f.payload, f.rssi, f.snr, f.freq_khz, f.rx_ms, now);
        }
        self.core.handle_timeout(now);
        while let Some(frame) = self.core.poll_transmit() {
            match self.device.transmit(&frame) {
                Ok(()) => {
                    self.metrics.beacons_transmitted.inc();
                }
                Err(e) => warn!("beacon not transmitted: {e}"),
            }
        }
        while let Some(p) = self.core.poll_proof() {
            // Witnesses are also gossiped, so the beaconer and monitors see who heard whom.
            if p.kind == Kind::Witness
                && let Some(n) = &self.net
                && let Err(e) = n.try_publish(Topic::Poc, p.bytes.clone())
            {
                warn!("witness not gossiped: {e}");
            }
            self.metrics
                .proofs_signed
                .get_or_create(&KindLabel {
                    kind: p.kind.name(),
                })
                .inc();
            self.stage(p, now);
        }
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::NewEpoch {
                    epoch,
                    beacon_at_ms,
                } => {
                    info!(epoch, ?beacon_at_ms, "new epoch");
                    self.metrics
                        .epoch
                        .set(i64::try_from(epoch).unwrap_or(i64::MAX));
                }
                Event::ClockSkew { skew_ms } => {
                    warn!(
                        skew_ms,
                        "the local clock disagrees with the oracle's epoch start; check NTP"
                    );
                    self.metrics.clock_skew_warnings.inc();
                }
                Event::Ignored(why) => {
                    debug!(?why, "radio frame not witnessed");
                    self.metrics
                        .radio_frames_ignored
                        .get_or_create(&WhyLabel {
                            why: ignored_name(why),
                        })
                        .inc();
                }
                Event::BeaconMissed { epoch } => info!(
                    epoch,
                    "no beacon this epoch (no location, or started after the slot)"
                ),
                Event::OutputDropped => {
                    error!("the daemon fell behind the core; an output was dropped")
                }
            }
        }
    }

    /// Writes what the outbox hands out (new proofs, deletions, the heartbeat counter) in one
    /// durable transaction, and reports the result back to it.
    async fn commit(&mut self, force: bool) -> anyhow::Result<()> {
        let now = wall_ms();
        let Some(Commit {
            writes,
            deletions,
            evicted,
            refused,
        }) = self.outbox.poll_commit(now, force)
        else {
            return Ok(());
        };
        for (id, kind) in evicted {
            warn!(proof = %id, %kind, "outbox full: evicted");
            self.metrics
                .outbox_evicted
                .get_or_create(&KindLabel { kind: kind.name() })
                .inc();
        }
        for (_, kind) in refused {
            error!(%kind, "{Full}: proof dropped");
            self.metrics.outbox_refused.inc();
        }
        let hb = self.core.heartbeat_seq();
        let hb_ms = self.core.activity().last_heartbeat_ms.unwrap_or(0);
        let beacon_ms = self.core.activity().last_beacon_ms.unwrap_or(0);
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let rows: Vec<(Row, &[u8])> = writes
                .iter()
                .map(|w| {
                    let row = Row {
                        seq: w.seq,
                        id: w.id,
                        kind: w.kind,
                        created_ms: w.created_ms,
                        len: w.bytes.len(),
                    };
                    (row, w.bytes.as_slice())
                })
                .collect();
            store
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))
                .and_then(|mut s| {
                    s.commit(
                        &rows,
                        &deletions,
                        &[
                            ("heartbeat_seq", hb),
                            (HEARTBEAT_MS, hb_ms),
                            (BEACON_MS, beacon_ms),
                        ],
                    )
                    .map_err(anyhow::Error::from)
                })
        })
        .await?;
        if let Err(e) = r {
            // Nothing was written: the outbox stages it all again, deletions too.
            self.outbox.handle_commit_failed(now);
            error!("outbox commit failed, retrying in 1 s: {e:#}");
            return Ok(());
        }
        self.metrics.outbox_commits.inc();
        self.metrics
            .outbox_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        // Committed: now due for sending.
        self.outbox.handle_committed(now);
        Ok(())
    }

    fn publish_due(&mut self, now: u64) {
        // The outbox sends nothing while disconnected.
        let topic = topics::proofs(&self.key.id());
        while let Some(e) = self.outbox.poll_send(now) {
            let (id, bytes) = (e.id, e.envelope().to_vec());
            match self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes)
            {
                Ok(()) => {
                    if self.outbox.mark_sent(&id, now) > 1 {
                        self.metrics.proofs_resent.inc();
                    }
                    self.metrics.proofs_published.inc();
                }
                // The client's request queue is full: the rest waits for the next turn.
                Err(_) => break,
            }
        }
    }

    async fn turn(&mut self) -> anyhow::Result<()> {
        let now = wall_ms();
        self.shared.tick();
        self.collect(now);
        // Reap finished bandwidth tasks (a panic in one is logged, not propagated).
        while let Some(done) = self.bw_tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                error!("a bandwidth task panicked: {e}");
            }
        }
        self.send_invites(now);
        self.commit(false).await?;
        self.publish_due(now);
        let acked_recently = self.outbox.is_empty()
            || self
                .core
                .activity()
                .last_ack_ms
                .is_some_and(|t| now.saturating_sub(t) < 3 * self.cfg.outbox.ack_timeout_ms);
        self.device
            .set_health(match (self.connected, acked_recently) {
                (false, _) => crate::device::Health::Offline,
                (true, false) => crate::device::Health::Degraded,
                (true, true) => crate::device::Health::Online,
            });
        if now >= self.next_status_ms {
            self.refresh_status(now).await;
            self.next_status_ms = now + 30_000;
        }
        self.refresh_gauges(now);
        Ok(())
    }

    fn refresh_gauges(&self, now: u64) {
        let m = &self.metrics;
        m.outbox_entries
            .set(i64::try_from(self.outbox.len()).unwrap_or(i64::MAX));
        m.outbox_bytes
            .set(i64::try_from(self.outbox.bytes()).unwrap_or(i64::MAX));
        m.outbox_in_flight
            .set(i64::try_from(self.outbox.in_flight()).unwrap_or(i64::MAX));
        m.outbox_oldest_age_seconds.set(
            self.outbox
                .oldest_created_ms()
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
        );
        m.uptime_seconds
            .set(i64::try_from(self.core.uptime_s(now)).unwrap_or(i64::MAX));
        let a = self.core.activity();
        let status = Status {
            peer_id: self.key.id().to_string(),
            oracle: self.cfg.oracle.to_string(),
            agent_version: VERSION.into(),
            firmware_version: self.device.firmware_version(),
            uptime_s: self.core.uptime_s(now),
            clock_offset_ms: self.clock.offset_ms(),
            epoch: self.core.epoch().map(|e| e.epoch),
            cell: self.core.cell().map(|c| c.to_string()),
            fix: self.core.fix(),
            outbox_depth: self.outbox.len(),
            outbox_bytes: self.outbox.bytes(),
            outbox_in_flight: self.outbox.in_flight(),
            oldest_unacked_age_s: self
                .outbox
                .oldest_created_ms()
                .map(|t| now.saturating_sub(t) as f64 / 1000.0),
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            heartbeat_seq: self.core.heartbeat_seq(),
            broker_connected: self.connected,
            broker: format!("{}:{}", self.cfg.mqtt.host, self.cfg.mqtt.port),
            broker_error: self.broker.reason(),
            device: self.device.health(),
            p2p_peers: self.p2p_peers,
            p2p_listen: self.p2p_listen.clone(),
            witnessed_by: self
                .core
                .witnessed_by()
                .iter()
                .map(|w| {
                    net::status::WitnessView::new(&w.witness, w.rssi, w.snr, w.freq_khz, w.rx_ms)
                })
                .collect(),
            backhaul: self.last_backhaul.clone(),
        };
        if let Ok(mut s) = self.shared.status.write() {
            *s = status;
        }
    }

    async fn refresh_status(&mut self, now: u64) {
        self.refresh_gauges(now);
        if !self.connected {
            return;
        }
        // The retained status is for whoever the broker lets read it, not only this node's
        // operator: no GNSS fix, and the cell as coarse as in the `/wisp/status/1` answer.
        let mut snapshot = self.shared.snapshot();
        snapshot.fix = None;
        snapshot.cell = self
            .core
            .cell()
            .map(|c| c.parent(self.cfg.net.status_cell_resolution).to_string());
        let mut doc = serde_json::to_value(snapshot).unwrap_or_default();
        if let Some(o) = doc.as_object_mut() {
            o.insert("state".into(), "online".into());
        }
        let _ = self.client.try_publish(
            topics::status(&self.key.id()),
            QoS::AtLeastOnce,
            true,
            doc.to_string().into_bytes(),
        );
    }
}

async fn next_net_event(
    rx: &mut Option<tokio::sync::mpsc::Receiver<NetEvent>>,
) -> Option<NetEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The listen addresses with `/p2p/<peer id>`, once every configured listener is up (at
/// most ~2 s; a wildcard listener may report several addresses).
async fn wait_for_listeners(net: &NetHandle, configured: usize) -> Vec<String> {
    let me = net.local_peer_id();
    for _ in 0..100 {
        if let Ok(addrs) = net.listen_addrs().await
            && !addrs.is_empty()
            && addrs.len() >= configured
        {
            return addrs
                .into_iter()
                .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me)).to_string())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    warn!("the libp2p listeners are not up after 2 s");
    Vec::new()
}

/// Saves a named blob (on the blocking pool); whether it was saved.
async fn save_blob(store: Arc<Mutex<Store>>, name: &'static str, bytes: Vec<u8>) -> bool {
    let saved = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
            .set_blob(name, &bytes)?;
        anyhow::Ok(())
    })
    .await;
    matches!(saved, Ok(Ok(())))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Spreads invitations only: without OS randomness every node invites at the epoch start.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn ignored_name(i: Ignored) -> &'static str {
    match i {
        Ignored::Invalid(_) => "invalid",
        Ignored::Own => "own",
        Ignored::WrongEpoch => "wrong_epoch",
        Ignored::BadNonce => "bad_nonce",
        Ignored::WrongSlot => "wrong_slot",
        Ignored::BadRxTime => "bad_rx_time",
        Ignored::Duplicate => "duplicate",
        Ignored::Budget => "budget",
        Ignored::NoLocation => "no_location",
        Ignored::NoBeacon => "no_beacon",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::bandwidth::negotiate::encode_body;

    #[test]
    fn a_refused_login_says_what_to_check() {
        use rumqttc::{ConnectReturnCode as Code, ConnectionError};
        let login = refusal_hint(&ConnectionError::ConnectionRefused(
            Code::BadUserNamePassword,
        ));
        assert!(login.contains("refused this node's login"), "{login}");
        assert!(login.contains("pinned oracle key"), "{login}");
        let id = refusal_hint(&ConnectionError::ConnectionRefused(Code::BadClientId));
        assert!(id.contains("client id"), "{id}");
        let other = refusal_hint(&ConnectionError::RequestsDone);
        assert!(!other.contains("login"), "{other}");
    }

    /// Answers the invitations with scripted results, in order, and counts them.
    struct Scripted(StdMutex<Vec<Result<Vec<u8>, NegotiateError>>>);

    impl Scripted {
        fn new(answers: Vec<Result<Vec<u8>, NegotiateError>>) -> Self {
            Self(StdMutex::new(answers))
        }

        fn left(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl Negotiator for Scripted {
        async fn request(&self, _peer: NodeId, _body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
            self.0.lock().unwrap().remove(0)
        }
    }

    fn busy() -> Result<Vec<u8>, NegotiateError> {
        Ok(encode_body(&InviteAnswer::Refused(InviteRefusal::Busy)))
    }

    #[tokio::test]
    async fn a_failed_invitation_says_why() {
        let measurer = NodeKey::from_seed(&[2; 32]).id();
        let unreachable = || {
            Err(NegotiateError::Unreachable(
                "dialling 12D3KooW… failed: Connection refused (os error 111)".into(),
            ))
        };
        // (answers, outcome)
        let cases = [
            (
                vec![busy(), unreachable(), unreachable()],
                Invited::Failed(
                    "dialling 12D3KooW… failed: Connection refused (os error 111)".into(),
                ),
            ),
            (
                vec![unreachable(), busy(), busy()],
                Invited::Failed("the measurer is busy (its test queue is full)".into()),
            ),
            (
                vec![Err(NegotiateError::Timeout); 3],
                Invited::Failed("no answer in time".into()),
            ),
            (
                vec![Ok(Vec::new()); 3],
                Invited::Failed(
                    "the measurer takes no bandwidth tests (bandwidth.enabled = false)".into(),
                ),
            ),
            (
                vec![Ok(vec![0xff]); 3],
                Invited::Failed("the measurer's answer was unreadable".into()),
            ),
            (
                vec![busy(), Ok(encode_body(&InviteAnswer::Queued))],
                Invited::Queued,
            ),
            (
                vec![Ok(encode_body(&InviteAnswer::Refused(
                    InviteRefusal::NotAssigned,
                )))],
                Invited::Declined(InviteRefusal::NotAssigned),
            ),
        ];
        for (i, (answers, want)) in cases.into_iter().enumerate() {
            let tries = answers.len() as u64;
            let n = Scripted::new(answers);
            let mut pauses = Vec::new();
            let got = invite(&n, measurer, 5, Duration::MAX, |d| {
                pauses.push(d);
                std::future::ready(())
            })
            .await;
            assert_eq!(got, want, "case {i}");
            assert_eq!(n.left(), 0, "case {i}: every scripted answer was asked for");
            // 10 s after the first attempt, 20 s after the second; none after the last.
            let want_pauses: Vec<Duration> =
                (1..tries).map(|a| Duration::from_secs(10 * a)).collect();
            assert_eq!(pauses, want_pauses, "case {i}");
        }
        // A measurer that has not got the epoch yet is asked again, until the epoch's end:
        // 15 s left allow the 10 s pause, not the 20 s one.
        let not_yet = || Ok(encode_body(&InviteAnswer::Refused(InviteRefusal::NotYet)));
        let n = Scripted::new(vec![not_yet(), not_yet()]);
        let mut pauses = Vec::new();
        let got = invite(&n, measurer, 5, Duration::from_secs(15), |d| {
            pauses.push(d);
            std::future::ready(())
        })
        .await;
        assert_eq!(
            got,
            Invited::Failed(
                "the measurer has not got this epoch yet; the epoch ended before another attempt"
                    .into()
            )
        );
        assert_eq!((n.left(), pauses), (0, vec![Duration::from_secs(10)]));
    }
}
