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
use wisp_agent_core::usage::{Decision, Usage, UsageStats};
use wisp_protocol::msg::UsageAnswer;
use wisp_protocol::{NodeId, NodeKey, Reason, SubscriberId};

use crate::config::{CounterSource, UsageSettings};
use crate::core::Proof;
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, WhyLabel};
use crate::net::usage::UsageRequest;
use crate::net::usage_data::Endpoint;
use crate::net::{NetHandle, ip_of};
use crate::wallclock::wall_ms;

/// The most bytes a counter program may print.
pub const COMMAND_OUTPUT_MAX: usize = 64 * 1024;
/// How long a counter program may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Decisions waiting for the hook; beyond it one is dropped and counted (the core keeps it).
const HOOK_QUEUE: usize = 256;

/// What the driver talks to.
#[derive(Debug)]
pub struct UsageIo {
    /// Receipts from `/wisp/usage/1` ([`crate::net::Network::usage`]).
    pub requests: mpsc::Receiver<UsageRequest>,
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

/// Why a counter read failed.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The program did not start or its output could not be read.
    #[error("running {0}: {1}")]
    Run(PathBuf, std::io::Error),
    /// It ran over [`COMMAND_TIMEOUT`].
    #[error("{0} ran over {COMMAND_TIMEOUT:?}; it was killed")]
    Timeout(PathBuf),
    /// It printed more than [`COMMAND_OUTPUT_MAX`] bytes.
    #[error("{0} printed more than {COMMAND_OUTPUT_MAX} bytes")]
    TooLong(PathBuf),
    /// It failed.
    #[error("{0} exited with {1}")]
    Status(PathBuf, std::process::ExitStatus),
}

/// A client address in a counter line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientAddr {
    /// An IP address.
    Ip(IpAddr),
    /// A MAC address.
    Mac([u8; 6]),
}

/// A counter line: the client's address, its cumulative bytes down and up.
pub type CounterLine = (ClientAddr, u64, u64);

/// Parses a counter program's output: one line `<ip-or-mac> <down> <up>` per client; blank
/// lines and `#` comments are skipped. Returns the good lines and, for each bad one, its
/// number and why.
pub fn parse_counters(text: &str) -> (Vec<CounterLine>, Vec<(usize, String)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [a, d, u] => parse_addr(a)
                .ok_or_else(|| format!("`{a}` is neither an IP nor a MAC address"))
                .and_then(|a| {
                    let n = |s: &str| {
                        s.parse::<u64>()
                            .map_err(|_| format!("`{s}` is not a byte count"))
                    };
                    Ok((a, n(d)?, n(u)?))
                }),
            _ => Err(format!("{} fields, expected 3", f.len())),
        };
        match parsed {
            Ok(g) => good.push(g),
            Err(why) => bad.push((i + 1, why)),
        }
    }
    (good, bad)
}

fn parse_addr(s: &str) -> Option<ClientAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ClientAddr::Ip(ip));
    }
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(ClientAddr::Mac(mac))
}

/// The kernel's ARP table (`/proc/net/arp`): each MAC with its IP.
pub fn parse_arp(text: &str) -> Vec<([u8; 6], IpAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip = f.first()?.parse().ok()?;
            match parse_addr(f.get(3)?)? {
                ClientAddr::Mac(m) if m != [0; 6] => Some((m, ip)),
                _ => None,
            }
        })
        .collect()
}

/// Runs the counter program, bounded in time and output.
async fn run_counters(program: &Path) -> Result<String, CounterError> {
    use tokio::io::AsyncReadExt as _;
    let mut child = tokio::process::Command::new(program)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CounterError::Run(program.into(), e))?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| CounterError::Run(program.into(), std::io::ErrorKind::BrokenPipe.into()))?;
    let read = async {
        let mut buf = Vec::new();
        (&mut out)
            .take(COMMAND_OUTPUT_MAX as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        let status = child.wait().await?;
        std::io::Result::Ok((buf, status))
    };
    let (buf, status) = tokio::time::timeout(COMMAND_TIMEOUT, read)
        .await
        .map_err(|_| CounterError::Timeout(program.into()))?
        .map_err(|e| CounterError::Run(program.into(), e))?;
    if buf.len() > COMMAND_OUTPUT_MAX {
        return Err(CounterError::TooLong(program.into()));
    }
    if !status.success() {
        return Err(CounterError::Status(program.into(), status));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A client's cumulative bytes down and up.
type ClientCounts = (SubscriberId, u64, u64);

struct Driver {
    usage: Usage,
    cfg: UsageSettings,
    io: UsageIo,
    hook: Option<mpsc::Sender<HookCall>>,
    /// Each client's peer and remote address, learned from its receipts and connections
    /// (bounded by the core's `max_sessions`, twice).
    peers: BTreeMap<SubscriberId, (PeerId, Option<Multiaddr>)>,
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
        stats: UsageStats::default(),
    };
    d.run().await;
}

impl Driver {
    async fn run(mut self) {
        let mut next_read = wall_ms();
        let mut epoch_open = true;
        if let Some(e) = *self.io.epoch.borrow_and_update() {
            self.usage.handle_epoch(e, wall_ms());
        }
        loop {
            let now = wall_ms();
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
                            self.usage.handle_epoch(e, wall_ms());
                        }
                    }
                    Err(_) => epoch_open = false,
                },
                () = sleep => {}
            }
        }
        debug!("usage driver stopped: the network is gone");
    }

    /// Judges one receipt, with the client's counters read just before.
    async fn on_receipt(&mut self, r: UsageRequest) {
        let now = wall_ms();
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
        let e = self.peers.entry(sub).or_insert((peer, None));
        e.0 = peer;
        if remote.is_some() {
            e.1 = remote;
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
                self.read_command(&program)
                    .await
                    .into_iter()
                    .filter(|(s, ..)| only.is_none_or(|o| o == *s))
                    .collect()
            }
        };
        // The endpoint forgets a peer when its last connection closes: a client it no longer
        // counts has left, and its session ends (its receipt, if new, is sent).
        if only.is_none() && matches!(self.cfg.counters, CounterSource::Endpoint) {
            let gone: Vec<SubscriberId> = self
                .peers
                .keys()
                .filter(|k| !counts.iter().any(|(s, ..)| s == *k))
                .copied()
                .collect();
            for s in &gone {
                self.usage.handle_client_gone(s, now);
            }
            // Applied while their addresses are still known (a blocked client that left is
            // served again: the hook lifts its rule).
            while let Some(d) = self.usage.poll_decision() {
                self.apply(d);
            }
            for s in &gone {
                self.peers.remove(s);
            }
        }
        let mut new = false;
        for (s, d, u) in counts {
            self.usage.handle_counters(s, d, u, now);
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
                    && e.1.is_none()
                {
                    e.1 = Some(a);
                }
            }
        }
    }

    /// Runs the counter program and maps its lines to clients.
    async fn read_command(&mut self, program: &Path) -> Vec<ClientCounts> {
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
                return Vec::new();
            }
        };
        let (lines, bad) = parse_counters(&text);
        for (n, why) in &bad {
            warn!(program = %program.display(), line = n, "bad usage counter line: {why}");
            err("bad_line");
        }
        let remotes = self.io.net.remote_addrs().await.unwrap_or_default();
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
                self.learn(SubscriberId(id), *peer, remote);
                out.push((SubscriberId(id), d, u));
            }
        }
        out
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
            Some((p, r)) => (*p, r.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_lines_good_and_bad() {
        let (good, bad) = parse_counters(
            "# addr down up\n10.0.0.2 100 20\n\naa:bb:cc:dd:ee:0f 5 6\nfe80::1 1 2\n\
             10.0.0.3 x 1\n10.0.0.4 1\nnot-an-addr 1 2\n10.0.0.5 1 2 3\n",
        );
        assert_eq!(
            good,
            vec![
                (ClientAddr::Ip("10.0.0.2".parse().unwrap()), 100, 20),
                (ClientAddr::Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]), 5, 6),
                (ClientAddr::Ip("fe80::1".parse().unwrap()), 1, 2),
            ]
        );
        let lines: Vec<usize> = bad.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![6, 7, 8, 9], "{bad:?}");
        assert!(bad[0].1.contains("`x` is not a byte count"), "{bad:?}");
    }

    #[test]
    fn arp_table() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.168.1.20     0x1         0x2         aa:bb:cc:dd:ee:ff     *        wlan0\n\
                 192.168.1.21     0x1         0x0         00:00:00:00:00:00     *        wlan0\n";
        assert_eq!(
            parse_arp(t),
            vec![(
                [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                "192.168.1.20".parse().unwrap()
            )]
        );
    }
}
