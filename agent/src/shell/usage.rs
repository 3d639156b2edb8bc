//! The usage driver: the task that drives the core's sans-IO [`Usage`] (proof of usage, the
//! hotspot's side), spawned by the daemon with `usage.enabled`.
//!
//! Each turn, in the core's call order:
//! 1. inputs: the epoch from the daemon's seeds ([`UsageIo::epoch`], a watch channel) goes to
//!    [`Usage::handle_epoch`]; the counters of every client are read every
//!    `usage.counters_interval_ms` and **just before each receipt** is judged, and go to
//!    [`Usage::handle_counters`]; each receipt from `/wisp/usage/1` goes to
//!    [`Usage::handle_receipt`] and its answer back to the client; [`Usage::handle_timeout`]
//!    once [`Usage::poll_timeout`] is due;
//! 2. outputs: every co-signed receipt from [`Usage::poll_proof`] goes to the daemon
//!    ([`UsageIo::proofs`]), which stages it in the outbox like every proof; every
//!    [`Decision`] from [`Usage::poll_decision`] is applied to the test endpoint (a blocked
//!    peer gets no more bytes) and handed to the enforcement hook;
//! 3. it sleeps until the next counter read, the core's timeout or the next input.
//!
//! **Clients that leave.** When a peer's last libp2p connection closes
//! ([`UsageIo::left`]; and, in case that signal was dropped, a client no longer counted by the
//! endpoint or no longer connected at a periodic counter read) its session ends at once
//! ([`Usage::handle_client_gone`]): its latest agreed receipt goes out and a block is lifted.
//! A router goes on counting an address after its client's connection closed, so with
//! `command` counters the driver keeps, per client that left, the router's counts then and
//! what it had not signed for; if it comes back, the core is given its counts since then plus
//! that, as if its session had been replaced (a reconnection neither sheds unsigned usage nor
//! is charged again for what it signed), and the grace for its unsigned usage runs on from
//! when it was last covered (a reconnection does not restart it).
//!
//! **Counters** (`usage.counters`): `endpoint` reads what the agent's own test endpoint
//! (`/wisp/usage-data/1`) served each peer; `command` runs a program that prints one line
//! `<ip-or-mac> <down> <up>` per client (cumulative bytes) and maps each address to the peer
//! whose libp2p connection comes from it (a MAC through the kernel's ARP table,
//! `/proc/net/arp`). The program's output is bounded ([`COMMAND_OUTPUT_MAX`], [`COMMAND_TIMEOUT`]);
//! a bad line is logged and counted (`wisp_usage_counter_errors_total{why="bad_line"}`) and
//! the others are used; an address two peers share is left out.
//!
//! **The hook** (`usage.hook`) runs as `<hook> block|serve <peer id> <address or -> <reason>`,
//! one decision at a time, in a task of its own, so a slow hook never holds receipts up. A
//! failing hook (a non-zero exit, no start, over [`HOOK_TIMEOUT`]) is logged with its status
//! and counted; its call is retried before the next decision's (the latest per client). The
//! decision itself stays in the core, which blocks and serves whatever the hook does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use wisp_agent_core::usage::{Counts, Decision, Usage, UsageStats};
use wisp_protocol::msg::UsageAnswer;
use wisp_protocol::{NodeId, NodeKey, Reason, SubscriberId};

use crate::config::{CounterSource, UsageSettings};
use crate::core::Proof;
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, WhyLabel};
use crate::net::usage::UsageRequest;
use crate::net::usage_data::Endpoint;
use crate::net::{NetHandle, Network, ip_of};
use crate::wallclock::wall_ms;

mod counters;
use counters::run_counters;
pub use counters::{
    COMMAND_OUTPUT_MAX, COMMAND_TIMEOUT, ClientAddr, CounterError, CounterLine, parse_arp,
    parse_counters,
};

/// How long a hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Decisions waiting for the hook; beyond it one is dropped and counted (the core keeps it).
const HOOK_QUEUE: usize = 256;
/// Co-signed receipts waiting for the daemon (the driver waits when it is full).
const PROOF_QUEUE: usize = 64;

/// The driver's clock, ms since the Unix epoch: [`Clock::wall`] in the daemon. Tests give
/// their own to step time (real sockets rule out paused tokio time).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The daemon's wall clock ([`wall_ms`]: the oracle's time).
    pub fn wall() -> Self {
        Self(Arc::new(wall_ms))
    }

    /// A clock reading `f`. The driver reads it once at the start of each turn, and for each
    /// receipt and epoch.
    pub fn new(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The time now, ms.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// What the driver talks to. Made by [`UsageIo::new`].
#[derive(Debug)]
pub struct UsageIo {
    /// Receipts from `/wisp/usage/1` ([`crate::net::Network::usage`]).
    pub requests: mpsc::Receiver<UsageRequest>,
    /// Peers whose last connection closed ([`crate::net::Network::usage_left`]).
    pub left: mpsc::Receiver<PeerId>,
    /// The network, for the peers' remote addresses (`command` counters).
    pub net: NetHandle,
    /// The test endpoint ([`crate::net::Network::usage_data`]).
    pub endpoint: Option<Arc<Endpoint>>,
    /// The current epoch, from the daemon's seeds (`None` before the first).
    pub epoch: watch::Receiver<Option<u64>>,
    /// Co-signed receipts, for the daemon to stage in the outbox.
    pub proofs: mpsc::Sender<Proof>,
    /// Metrics (`wisp_usage_*`).
    pub metrics: Arc<Metrics>,
    /// The time ([`Clock::wall`]).
    pub clock: Clock,
}

/// The daemon's ends of a driver's [`UsageIo`].
#[derive(Debug)]
pub struct UsageLink {
    /// The current epoch: the daemon sends each new one.
    pub epoch: watch::Sender<Option<u64>>,
    /// Co-signed receipts, for the daemon to stage in the outbox.
    pub proofs: mpsc::Receiver<Proof>,
}

impl UsageIo {
    /// The driver's side of `net` (started with [`crate::net::NetConfig::usage`]): its usage
    /// receipts and leaving peers are taken out of it (it keeps closed channels), the handle
    /// and endpoint are shared. `epoch` is the current epoch, if any; the clock is the wall
    /// clock. Returns the daemon's ends too.
    pub fn new(net: &mut Network, epoch: Option<u64>, metrics: Arc<Metrics>) -> (Self, UsageLink) {
        let (epoch_tx, epoch_rx) = watch::channel(epoch);
        let (proofs_tx, proofs_rx) = mpsc::channel(PROOF_QUEUE);
        let io = UsageIo {
            requests: std::mem::replace(&mut net.usage, mpsc::channel(1).1),
            left: std::mem::replace(&mut net.usage_left, mpsc::channel(1).1),
            net: net.handle.clone(),
            endpoint: net.usage_data.clone(),
            epoch: epoch_rx,
            proofs: proofs_tx,
            metrics,
            clock: Clock::wall(),
        };
        let link = UsageLink {
            epoch: epoch_tx,
            proofs: proofs_rx,
        };
        (io, link)
    }
}

/// One call of the enforcement hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    /// `block` or `serve`.
    pub action: &'static str,
    /// The client's peer id.
    pub peer: String,
    /// Its IP, or `-` when unknown.
    pub address: String,
    /// Why (`uncovered`, `unsigned`, `refused:<reason>`, `agreed`).
    pub reason: String,
}

/// A client's cumulative bytes down and up.
type ClientCounts = (SubscriberId, u64, u64);

/// What the driver knows of a client.
struct Known {
    peer: PeerId,
    /// The remote address of its connection, when known.
    remote: Option<Multiaddr>,
    /// The counter program's last counts for it (`command` counters), as the router gave them.
    raw: Option<Counts>,
}

/// A `command` client that left: the router's counts for it then, what it had not signed
/// for, and since when (the core's [`Usage::covered_since`]). If it comes back, the core is
/// given `unsigned` plus what the router counted since, and its grace runs on from
/// `covered_ms` ([`Usage::handle_return`]).
#[derive(Clone, Copy)]
struct Carry {
    router: Counts,
    unsigned: Counts,
    covered_ms: u64,
}

struct Driver {
    usage: Usage,
    cfg: UsageSettings,
    io: UsageIo,
    hook: Option<mpsc::Sender<HookCall>>,
    /// Each client's peer and remote address, learned from its receipts and connections
    /// (bounded by the core's `max_sessions`, twice).
    peers: BTreeMap<SubscriberId, Known>,
    /// `command` clients that left (bounded as `peers`).
    carried: BTreeMap<SubscriberId, Carry>,
    stats: UsageStats,
}

/// Runs the driver for the hotspot `key` with `cfg` until the network's receipt channel
/// closes or the daemon drops its end of [`UsageIo::proofs`]. The hook runs in a task of its
/// own, which ends with the driver.
pub async fn run(key: NodeKey, cfg: UsageSettings, io: UsageIo) {
    let hook = cfg.hook.clone().map(|h| {
        let (tx, rx) = mpsc::channel(HOOK_QUEUE);
        tokio::spawn(run_hook(h, rx, io.metrics.clone()));
        tx
    });
    let d = Driver {
        usage: Usage::new(key, cfg.policy.clone()),
        cfg,
        io,
        hook,
        peers: BTreeMap::new(),
        carried: BTreeMap::new(),
        stats: UsageStats::default(),
    };
    d.run().await;
}

impl Driver {
    async fn run(mut self) {
        let mut next_read = self.io.clock.now();
        let (mut epoch_open, mut left_open) = (true, true);
        if let Some(e) = *self.io.epoch.borrow_and_update() {
            self.usage.handle_epoch(e, self.io.clock.now());
        }
        loop {
            let now = self.io.clock.now();
            if now >= next_read {
                self.read_counters(None, now).await;
                next_read = now + self.cfg.counters_interval_ms;
            }
            if self.usage.poll_timeout().is_some_and(|t| t <= now) {
                self.usage.handle_timeout(now);
            }
            if !self.drain().await {
                return;
            }
            let mut wake = next_read;
            if let Some(t) = self.usage.poll_timeout() {
                wake = wake.min(t);
            }
            let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now)));
            tokio::select! {
                r = self.io.requests.recv() => match r {
                    Some(r) => self.on_receipt(r).await,
                    None => break,
                },
                c = self.io.epoch.changed(), if epoch_open => match c {
                    Ok(()) => {
                        if let Some(e) = *self.io.epoch.borrow_and_update() {
                            self.usage.handle_epoch(e, self.io.clock.now());
                        }
                    }
                    Err(_) => epoch_open = false,
                },
                p = self.io.left.recv(), if left_open => match p {
                    Some(p) => self.on_left(p).await,
                    None => left_open = false,
                },
                () = sleep => {}
            }
        }
        debug!("usage driver stopped: the network is gone");
    }

    /// Judges one receipt, with the client's counters read just before.
    async fn on_receipt(&mut self, r: UsageRequest) {
        let now = self.io.clock.now();
        self.learn(r.subscriber, r.peer, r.remote.clone());
        let Some(epoch) = *self.io.epoch.borrow() else {
            warn!(peer = %r.peer, "usage receipt before the first epoch seed: refused");
            self.count_answer(&UsageAnswer::Refused {
                reason: Reason::WrongEpoch.code(),
            });
            let _ = r.answer(&UsageAnswer::Refused {
                reason: Reason::WrongEpoch.code(),
            });
            return;
        };
        self.read_counters(Some(r.subscriber), now).await;
        let answer = self.usage.handle_receipt(&r.body, r.subscriber, now, epoch);
        self.count_answer(&answer);
        debug!(peer = %r.peer, ?answer, "answered a usage receipt");
        let peer = r.peer;
        if let Err(e) = r.answer(&answer) {
            warn!(%peer, "usage answer not sent: {e}");
        }
    }

    fn count_answer(&self, a: &UsageAnswer) {
        let m = &self.io.metrics;
        let outcome = match a {
            UsageAnswer::Agreed { .. } => "agreed",
            UsageAnswer::Disputed { .. } => "disputed",
            UsageAnswer::Refused { reason } => {
                let reason = Reason::from_code(*reason).name();
                m.usage_refused.get_or_create(&ReasonLabel { reason }).inc();
                "refused"
            }
        };
        m.usage_receipts
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn learn(&mut self, sub: SubscriberId, peer: PeerId, remote: Option<Multiaddr>) {
        let cap = self.cfg.policy.max_sessions.saturating_mul(2);
        if !self.peers.contains_key(&sub) && self.peers.len() >= cap {
            // Forget a client the core no longer tracks, else any.
            let gone = self
                .peers
                .keys()
                .find(|s| self.usage.own_counts(s).is_none())
                .or_else(|| self.peers.keys().next())
                .copied();
            if let Some(g) = gone {
                self.peers.remove(&g);
            }
        }
        let e = self.peers.entry(sub).or_insert(Known {
            peer,
            remote: None,
            raw: None,
        });
        e.peer = peer;
        if remote.is_some() {
            e.remote = remote;
        }
    }

    /// `peer`'s last connection closed: the client left, unless it is connected again.
    async fn on_left(&mut self, peer: PeerId) {
        let Ok(id) = NodeId::from_peer_id(&peer) else {
            return;
        };
        let s = SubscriberId(id);
        if self.peers.get(&s).is_none_or(|k| k.peer != peer) {
            return;
        }
        let remotes = self.io.net.remote_addrs().await.unwrap_or_default();
        if !remotes.iter().any(|(p, _)| *p == peer) {
            let now = self.io.clock.now();
            self.client_gone(s, now);
        }
    }

    /// `s` left: its session ends (its receipt, if new, goes out; a block is lifted, while its
    /// address is still known). With `command` counters, what it had not signed for is kept.
    fn client_gone(&mut self, s: SubscriberId, now: u64) {
        if let (Some(router), Some(unsigned), Some(covered_ms)) = (
            self.peers.get(&s).and_then(|k| k.raw),
            self.usage.unsigned_counts(&s),
            self.usage.covered_since(&s),
        ) {
            let cap = self.cfg.policy.max_sessions.saturating_mul(2);
            if !self.carried.contains_key(&s) && self.carried.len() >= cap {
                // Forget a client that is not back, else any.
                let gone = self
                    .carried
                    .keys()
                    .find(|c| self.usage.own_counts(c).is_none())
                    .or_else(|| self.carried.keys().next())
                    .copied();
                if let Some(g) = gone {
                    self.carried.remove(&g);
                }
            }
            self.carried.insert(
                s,
                Carry {
                    router,
                    unsigned,
                    covered_ms,
                },
            );
        }
        debug!(peer = %s.0.to_peer_id(), "usage client left: its session ends");
        self.usage.handle_client_gone(&s, now);
        while let Some(d) = self.usage.poll_decision() {
            self.apply(d);
        }
        self.peers.remove(&s);
    }

    /// The counts to give the core for `s`, whose router counts are `raw`: for a client that
    /// left and came back, what it had not signed for plus what the router counted since.
    fn carry_over(&mut self, s: SubscriberId, raw: Counts) -> Counts {
        let Some(c) = self.carried.get_mut(&s) else {
            return raw;
        };
        if raw.down < c.router.down || raw.up < c.router.up {
            // The router counts afresh (the client re-associated).
            if self.usage.own_counts(&s).is_some() {
                // Back already: the core takes the drop as a restart and carries its count.
                self.carried.remove(&s);
                return raw;
            }
            c.router = Counts::default();
        }
        Counts {
            down: c
                .unsigned
                .down
                .saturating_add(raw.down.saturating_sub(c.router.down)),
            up: c
                .unsigned
                .up
                .saturating_add(raw.up.saturating_sub(c.router.up)),
        }
    }

    /// Reads the counters and reports them: only `only`'s, for a receipt, or everyone's.
    async fn read_counters(&mut self, only: Option<SubscriberId>, now: u64) {
        let counts: Vec<ClientCounts> = match &self.cfg.counters {
            CounterSource::Endpoint => {
                let Some(e) = &self.io.endpoint else { return };
                e.snapshot()
                    .into_iter()
                    .filter_map(|(p, d, u)| {
                        let s = SubscriberId(NodeId::from_peer_id(&p).ok()?);
                        Some((s, d, u))
                    })
                    .filter(|(s, ..)| only.is_none_or(|o| o == *s))
                    .collect()
            }
            CounterSource::Command(program) => {
                // Run afresh for every receipt too: the hotspot must not judge a receipt
                // against counts older than the client's (an earlier run's counts, at
                // 100 Mbit/s half a second old, are megabytes short: an honest receipt would be
                // disputed). A client signs at most once a second.
                let program = program.clone();
                let (counts, connected) = self.read_command(&program).await;
                if only.is_none()
                    && let Some(connected) = connected
                {
                    // A client with no connection left has left (its leaving, signalled on
                    // `left`, may have been dropped).
                    let gone: Vec<SubscriberId> = self
                        .peers
                        .iter()
                        .filter(|(_, k)| !connected.contains(&k.peer))
                        .map(|(s, _)| *s)
                        .collect();
                    for s in gone {
                        self.client_gone(s, now);
                    }
                }
                counts
                    .into_iter()
                    .filter(|(s, ..)| only.is_none_or(|o| o == *s))
                    .collect()
            }
        };
        // The endpoint forgets a peer when its last connection closes: a client it no longer
        // counts has left (its leaving, signalled on `left`, may have been dropped).
        if only.is_none() && matches!(self.cfg.counters, CounterSource::Endpoint) {
            let gone: Vec<SubscriberId> = self
                .peers
                .keys()
                .filter(|k| !counts.iter().any(|(s, ..)| s == *k))
                .copied()
                .collect();
            for s in gone {
                self.client_gone(s, now);
            }
        }
        let mut new = false;
        for (s, d, u) in counts {
            match self.carried.get(&s) {
                // Back after it left: its grace runs on from when it was last covered.
                Some(c) if self.usage.own_counts(&s).is_none() => {
                    let counts = Counts { down: d, up: u };
                    self.usage.handle_return(s, counts, c.covered_ms, now);
                }
                _ => self.usage.handle_counters(s, d, u, now),
            }
            if !self.peers.contains_key(&s) {
                self.learn(s, s.0.to_peer_id(), None);
                new = true;
            }
        }
        if new {
            // The hook is given each client's address: ask the network for the new ones'.
            for (p, a) in self.io.net.remote_addrs().await.unwrap_or_default() {
                if let Ok(id) = NodeId::from_peer_id(&p)
                    && let Some(e) = self.peers.get_mut(&SubscriberId(id))
                    && e.remote.is_none()
                {
                    e.remote = Some(a);
                }
            }
        }
    }

    /// Runs the counter program and maps its lines to clients (for one that left and came
    /// back, [`Driver::carry_over`]). Returns the counts and the connected peers (`None`
    /// when the network did not say).
    async fn read_command(&mut self, program: &Path) -> (Vec<ClientCounts>, Option<Vec<PeerId>>) {
        let m = self.io.metrics.clone();
        let err = |why: &'static str| {
            m.usage_counter_errors
                .get_or_create(&WhyLabel { why })
                .inc()
        };
        let text = match run_counters(program).await {
            Ok(t) => t,
            Err(e) => {
                warn!("usage counters not read: {e}");
                err(match e {
                    CounterError::Timeout(_) => "timeout",
                    CounterError::TooLong(_) => "too_long",
                    CounterError::Status(..) => "exit_status",
                    CounterError::Run(..) => "run",
                });
                return (Vec::new(), None);
            }
        };
        let (lines, bad) = parse_counters(&text);
        for (n, why) in &bad {
            warn!(program = %program.display(), line = n, "bad usage counter line: {why}");
            err("bad_line");
        }
        let remotes = self.io.net.remote_addrs().await.ok();
        let connected = remotes
            .as_ref()
            .map(|r| r.iter().map(|(p, _)| *p).collect());
        let remotes = remotes.unwrap_or_default();
        let mut by_ip: HashMap<IpAddr, Option<PeerId>> = HashMap::new();
        for (p, a) in &remotes {
            if let Some(ip) = ip_of(a) {
                by_ip
                    .entry(ip)
                    .and_modify(|e| {
                        if *e != Some(*p) {
                            *e = None;
                        }
                    })
                    .or_insert(Some(*p));
            }
        }
        let arp = if lines.iter().any(|(a, ..)| matches!(a, ClientAddr::Mac(_))) {
            // A small procfs file: read on the blocking pool like every file.
            let t = tokio::task::spawn_blocking(|| std::fs::read_to_string("/proc/net/arp"))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            parse_arp(&t)
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        for (addr, d, u) in lines {
            let ip = match addr {
                ClientAddr::Ip(ip) => Some(ip),
                ClientAddr::Mac(mac) => arp.iter().find(|(m, _)| *m == mac).map(|(_, ip)| *ip),
            };
            let Some(Some(peer)) = ip.and_then(|ip| by_ip.get(&ip)) else {
                continue;
            };
            if let Ok(id) = NodeId::from_peer_id(peer) {
                let remote = remotes
                    .iter()
                    .find(|(p, _)| p == peer)
                    .map(|(_, a)| a.clone());
                let s = SubscriberId(id);
                self.learn(s, *peer, remote);
                let raw = Counts { down: d, up: u };
                if let Some(k) = self.peers.get_mut(&s) {
                    k.raw = Some(raw);
                }
                let c = self.carry_over(s, raw);
                out.push((s, c.down, c.up));
            }
        }
        (out, connected)
    }

    /// Hands the core's outputs on; false when the daemon is gone.
    async fn drain(&mut self) -> bool {
        while let Some(p) = self.usage.poll_proof() {
            if self.io.proofs.send(p).await.is_err() {
                return false;
            }
        }
        while let Some(d) = self.usage.poll_decision() {
            self.apply(d);
        }
        let s = self.usage.stats();
        let m = &self.io.metrics;
        m.usage_sessions_evicted
            .inc_by(s.evicted.saturating_sub(self.stats.evicted));
        m.usage_receipts_sent
            .inc_by(s.receipts_sent.saturating_sub(self.stats.receipts_sent));
        m.usage_sessions
            .set(i64::try_from(self.usage.sessions()).unwrap_or(i64::MAX));
        self.stats = s;
        true
    }

    fn apply(&mut self, d: Decision) {
        let (action, sub, reason) = match d {
            Decision::Block(s, why) => {
                self.io
                    .metrics
                    .usage_blocks
                    .get_or_create(&WhyLabel { why: why.name() })
                    .inc();
                let reason = match why {
                    wisp_agent_core::usage::BlockWhy::Refused(r) => {
                        format!("refused:{}", r.name())
                    }
                    w => w.name().to_string(),
                };
                ("block", s, reason)
            }
            Decision::Serve(s) => ("serve", s, "agreed".to_string()),
        };
        let (peer, remote) = match self.peers.get(&sub) {
            Some(k) => (k.peer, k.remote.clone()),
            None => (sub.0.to_peer_id(), None),
        };
        if let Some(e) = &self.io.endpoint {
            e.set_blocked(peer, action == "block");
        }
        let peer = peer.to_string();
        let address = remote
            .as_ref()
            .and_then(ip_of)
            .map_or_else(|| "-".to_string(), |ip| ip.to_string());
        info!(action, peer, address, reason, "usage decision");
        let call = HookCall {
            action,
            peer,
            address,
            reason,
        };
        if let Some(h) = &self.hook
            && h.try_send(call).is_err()
        {
            warn!("the usage hook is behind: a decision was not handed to it");
            self.io
                .metrics
                .usage_hook_runs
                .get_or_create(&OutcomeLabel { outcome: "dropped" })
                .inc();
        }
    }
}

/// Runs the hook for each decision in turn; failed calls are retried (the latest per client)
/// before the next decision's.
async fn run_hook(hook: PathBuf, mut rx: mpsc::Receiver<HookCall>, metrics: Arc<Metrics>) {
    let mut failed: BTreeMap<String, HookCall> = BTreeMap::new();
    while let Some(call) = rx.recv().await {
        failed.remove(&call.peer);
        let mut todo: Vec<HookCall> = std::mem::take(&mut failed).into_values().collect();
        todo.push(call);
        for c in todo {
            let outcome = match run_hook_once(&hook, &c).await {
                Ok(()) => "ok",
                Err(e) => {
                    warn!(
                        hook = %hook.display(),
                        action = c.action,
                        peer = c.peer,
                        "usage hook failed ({e}); retried with the next decision"
                    );
                    if failed.len() < HOOK_QUEUE {
                        failed.insert(c.peer.clone(), c);
                    }
                    "failed"
                }
            };
            metrics
                .usage_hook_runs
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
        }
    }
}

async fn run_hook_once(hook: &Path, c: &HookCall) -> Result<(), String> {
    let mut child = tokio::process::Command::new(hook)
        .args([c.action, &c.peer, &c.address, &c.reason])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("not started: {e}"))?;
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
        Err(_) => Err(format!("ran over {HOOK_TIMEOUT:?}, killed")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("exit status {s}")),
    }
}
