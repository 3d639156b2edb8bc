//! Proof of usage, the hotspot's side: check a subscriber's cumulative usage receipts against
//! the hotspot's own per-client counters, co-sign the ones it agrees with, send one receipt per
//! session per epoch to the oracle, and decide whom to stop serving (PROTOCOL.md §5.10).
//!
//! [`Usage`] is sans-IO like the rest of this crate: the driver reports the router's counters
//! and the receipts that arrive on [`USAGE_PROTOCOL`](wisp_protocol::msg::USAGE_PROTOCOL), and
//! polls what to answer, what to send and whom to block. It never runs the hook that blocks a
//! client; it only decides.
//!
//! **Keys.** A client is a [`ClientRef`], the subscriber's key: the libp2p identity its client
//! talks to the hotspot with. The router counts traffic per client address (nl80211 station
//! statistics per MAC, or nftables counters per IP); the driver maps that address to the peer
//! id of the libp2p connection coming from it, and reports counters under that id. A client
//! exists here once the driver reported counters for it; receipts from a peer without counters
//! are answered `Disputed` with zeros and change nothing, so a remote peer cannot fill the
//! table.
//!
//! **Accounting.** The driver's counters for a client are cumulative from when the router
//! started counting it (its association). A client has at most one session at a time; the
//! hotspot's totals for the session are its counters less the session's base. The first
//! session's base is zero (it covers everything counted), and a session that replaces another
//! starts where the other's last agreed totals end, so usage nobody signed for carries over to
//! the next session and a client cannot shed it by starting a new one.
//!
//! **Agreement.** With `tol(x) = x × tolerance_bps / 10 000 + slack_bytes`, a receipt is agreed
//! when, in each direction, its total is at most `own + tol(own)`, `own` the hotspot's total
//! now, and at least `lagged − tol(lagged)`, `lagged` its total as of the earliest counter
//! report of the last [`LAG_MS`] (the receipt was signed before it arrived). So the hotspot
//! never co-signs more than it counted plus the tolerance. Only agreed receipts are co-signed;
//! the latest per session is kept. The driver should report fresh counters just before it
//! hands over a receipt.
//!
//! **One receipt per session per epoch.** At each epoch change ([`Usage::handle_epoch`]), and
//! when a session ends (replaced, refused, its client gone or evicted), the latest agreed
//! receipt of the session goes to [`Usage::poll_proof`] if it was not sent already: a session
//! with nothing new since its last receipt sends nothing. The receipts are cumulative, so the
//! oracle pays each epoch the increase over the session's previous receipt.
//!
//! **Decisions.** A client's *uncovered* usage is what the hotspot counted in the current
//! session since it last agreed to a receipt (both directions together; everything, before
//! the first). It is blocked when that exceeds `grace_bytes`, when it has stayed above
//! `slack_bytes` for `grace_ms` (a client that stops signing, or keeps signing less than it
//! used), or when one of its receipts is refused (its session ends). A blocked client is served
//! again once a receipt is agreed (after a refusal, in a new session).
//! Decisions are transitions: a new client is served (the router's default) until it is
//! blocked, and a blocked client that is forgotten (gone, evicted) is announced `Serve` so the
//! router holds no rule for a client this state no longer knows.
//!
//! **Bounds.** At most `max_sessions` clients (each with at most one session). When a new
//! client does not fit, the one idle longest is evicted (its session ends and its receipt, if
//! any, is sent): a hotspot serves whoever is there now. The queues of proofs and of released
//! clients hold at most `2 × max_sessions` entries; beyond that the oldest is dropped and
//! counted ([`UsageStats::dropped`]), which only happens when the driver stops draining.
//!
//! Call order, each turn of the driver:
//! 1. inputs: [`Usage::handle_epoch`] when the epoch changes (before the receipts of the new
//!    epoch; [`Usage::handle_receipt`] also advances it), [`Usage::handle_counters`] as the
//!    router's counters are read ([`Usage::handle_return`] for a client back after it left),
//!    [`Usage::handle_receipt`] for each receipt (send back its answer),
//!    [`Usage::handle_client_gone`] when a client leaves, and [`Usage::handle_timeout`] once
//!    [`Usage::poll_timeout`] is due;
//! 2. outputs: [`Usage::poll_proof`] into the outbox (staged like every proof) and
//!    [`Usage::poll_decision`] to the enforcement hook, each until `None`;
//! 3. sleep until [`Usage::poll_timeout`] or the next input.

use std::collections::{BTreeMap, VecDeque};

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{Envelope, EnvelopeRef};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{USAGE_REQUEST_MAX, UsageAnswer, UsageReceipt};
use wisp_protocol::{NodeId, NodeKey, ProofId, Reason};

use crate::core::Proof;

mod types;
pub use types::{BlockWhy, ClientRef, Counts, Decision};

/// Default of [`UsageConfig::tolerance_bps`]: 2 %. Both ends count IP bytes, but not at the
/// same instant and not the same retransmissions; a few percent covers that and gives a
/// cheater at most as much.
pub const DEFAULT_TOLERANCE_BPS: u32 = 200;
/// Default of [`UsageConfig::slack_bytes`]: 1 MiB, about what a 100 Mbit/s link carries
/// between the client signing a receipt and the hotspot reading it (~80 ms), and the
/// association's own traffic (DHCP, ARP) before the session starts.
pub const DEFAULT_SLACK_BYTES: u64 = 1 << 20;
/// Default of [`UsageConfig::grace_bytes`]: 64 MiB counted since the last agreed receipt
/// blocks at once. A client signs at most once a second (wisp-client's default
/// `receipt_min_interval_ms`), so this serves about 500 Mbit/s.
pub const DEFAULT_GRACE_BYTES: u64 = 64 << 20;
/// How far back a receipt may lag the hotspot's counters: a client signs, the receipt travels,
/// and the driver reads the counters when it arrives, so an honest receipt is below the
/// hotspot's current count by what flowed meanwhile. A receipt is agreed down to the count the
/// driver reported this long before (its earliest report within it), less the tolerance; a
/// client can so leave out at most this long's traffic, which its next cumulative receipt
/// carries (and the next session inherits).
pub const LAG_MS: u64 = 2_000;
/// Counter reports kept per client for [`LAG_MS`].
pub const LAG_SAMPLES: usize = 8;
/// Default of [`UsageConfig::grace_ms`]: 60 s above the slack without an agreed receipt blocks.
pub const DEFAULT_GRACE_MS: u64 = 60_000;
/// Default of [`UsageConfig::max_sessions`]: more clients than a home or street hotspot
/// associates at once.
pub const DEFAULT_MAX_SESSIONS: usize = 256;

/// The hotspot's usage policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// Relative tolerance of the agreement, basis points of the hotspot's own count
    /// (default [`DEFAULT_TOLERANCE_BPS`]).
    pub tolerance_bps: u32,
    /// Absolute tolerance of the agreement in bytes per direction, and the uncovered usage a
    /// client may carry indefinitely (default [`DEFAULT_SLACK_BYTES`]).
    pub slack_bytes: u64,
    /// Uncovered usage beyond this blocks at once (default [`DEFAULT_GRACE_BYTES`]).
    pub grace_bytes: u64,
    /// Uncovered usage above `slack_bytes` for this long blocks (default [`DEFAULT_GRACE_MS`]).
    pub grace_ms: u64,
    /// Most clients tracked, each with at most one session (default [`DEFAULT_MAX_SESSIONS`];
    /// at least 1).
    pub max_sessions: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            tolerance_bps: DEFAULT_TOLERANCE_BPS,
            slack_bytes: DEFAULT_SLACK_BYTES,
            grace_bytes: DEFAULT_GRACE_BYTES,
            grace_ms: DEFAULT_GRACE_MS,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Counts since the state was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageStats {
    /// Receipts agreed and co-signed.
    pub agreed: u64,
    /// Receipts disputed (nothing co-signed).
    pub disputed: u64,
    /// Receipts refused.
    pub refused: u64,
    /// Block decisions.
    pub blocks: u64,
    /// Clients evicted to make room for a new one.
    pub evicted: u64,
    /// Co-signed receipts handed to [`Usage::poll_proof`].
    pub receipts_sent: u64,
    /// Outputs dropped because the driver did not drain them.
    pub dropped: u64,
}

#[derive(Debug)]
struct Agreed {
    seq: u64,
    claim: Counts,
    /// The hotspot's own totals for the session when it agreed.
    own: Counts,
    id: ProofId,
    bytes: Vec<u8>,
    cosigned_ms: u64,
}

#[derive(Debug)]
struct Session {
    id: ByteArray<16>,
    /// The highest `seq` that passed the checks, agreed or disputed.
    last_seq: u64,
    agreed: Option<Agreed>,
    /// The `seq` of the receipt last handed out (0: none).
    sent_seq: u64,
}

#[derive(Debug)]
struct Client {
    /// The router's cumulative counters, as last reported.
    counted: Counts,
    /// `(when, lifetime counts)` of the reports of the last [`LAG_MS`], oldest first (at most
    /// [`LAG_SAMPLES`]).
    samples: VecDeque<(u64, Counts)>,
    /// What the router counted before its counters last started afresh.
    carried: Counts,
    /// Where the current (or next) session's accounting starts, in `carried + counted`.
    base: Counts,
    session: Option<Session>,
    /// The session that ended last: its receipts are refused.
    ended: Option<ByteArray<16>>,
    /// The last time its uncovered usage was at most `slack_bytes`.
    covered_ms: u64,
    /// The last input about it: counters that grew, or a receipt (for eviction).
    active_ms: u64,
    /// Why it is blocked, if it is.
    blocked: Option<BlockWhy>,
    /// Whether the current `blocked` state was handed out by [`Usage::poll_decision`].
    announced: bool,
}

impl Client {
    fn new(counted: Counts, now_ms: u64) -> Self {
        Self {
            counted,
            samples: VecDeque::from([(now_ms, counted)]),
            carried: Counts::default(),
            base: Counts::default(),
            session: None,
            ended: None,
            covered_ms: now_ms,
            active_ms: now_ms,
            blocked: None,
            // Served is the router's default: nothing to announce.
            announced: true,
        }
    }

    /// Everything counted since the client is tracked.
    fn lifetime(&self) -> Counts {
        Counts {
            down: self.carried.down.saturating_add(self.counted.down),
            up: self.carried.up.saturating_add(self.counted.up),
        }
    }

    /// The hotspot's totals for the current session.
    fn own(&self) -> Counts {
        self.lifetime().saturating_sub(self.base)
    }

    /// The hotspot's totals for the current session as of the earliest report of the last
    /// [`LAG_MS`]: the least a receipt arriving now may honestly claim.
    fn own_lagged(&self) -> Counts {
        self.samples.front().map_or(self.own(), |(_, lifetime)| {
            lifetime.saturating_sub(self.base)
        })
    }

    fn record(&mut self, now_ms: u64) {
        let lifetime = self.lifetime();
        while self.samples.len() >= LAG_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|(t, _)| t.saturating_add(LAG_MS) < now_ms)
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, lifetime));
    }

    /// What the hotspot counted in the session since it last agreed to a receipt.
    fn uncovered(&self) -> u64 {
        let agreed = self
            .session
            .as_ref()
            .and_then(|s| s.agreed.as_ref())
            .map(|a| a.own)
            .unwrap_or_default();
        self.own().saturating_sub(agreed).total()
    }

    fn set_blocked(&mut self, why: Option<BlockWhy>) {
        if self.blocked.is_some() != why.is_some() {
            self.announced = !self.announced;
        }
        self.blocked = why;
    }
}

/// The hotspot's proof-of-usage state. See the module docs for the rules and the call order.
#[derive(Debug)]
pub struct Usage {
    key: NodeKey,
    id: NodeId,
    cfg: UsageConfig,
    epoch: Option<u64>,
    clients: BTreeMap<ClientRef, Client>,
    proofs: VecDeque<Proof>,
    /// Blocked clients forgotten, to announce as served.
    released: VecDeque<ClientRef>,
    stats: UsageStats,
}

impl Usage {
    /// The state of the hotspot whose node key is `key` (it co-signs the receipts).
    pub fn new(key: NodeKey, mut cfg: UsageConfig) -> Self {
        cfg.max_sessions = cfg.max_sessions.max(1);
        Self {
            id: key.id(),
            key,
            cfg,
            epoch: None,
            clients: BTreeMap::new(),
            proofs: VecDeque::new(),
            released: VecDeque::new(),
            stats: UsageStats::default(),
        }
    }

    /// The policy in force.
    pub fn config(&self) -> &UsageConfig {
        &self.cfg
    }

    /// Clients tracked (each has at most one session).
    pub fn sessions(&self) -> usize {
        self.clients.len()
    }

    /// Counts since the state was made.
    pub fn stats(&self) -> UsageStats {
        self.stats
    }

    /// Whether `client` is blocked by the current decisions.
    pub fn is_blocked(&self, client: &ClientRef) -> bool {
        self.clients
            .get(client)
            .is_some_and(|c| c.blocked.is_some())
    }

    /// The hotspot's own totals for `client`'s current session, if it is tracked.
    pub fn own_counts(&self, client: &ClientRef) -> Option<Counts> {
        self.clients.get(client).map(Client::own)
    }

    /// What `client`'s current session counted beyond its last agreed receipt (everything,
    /// before one), if it is tracked: what a next session would start with. A driver whose
    /// router keeps counting a client that left carries this over when it comes back.
    pub fn unsigned_counts(&self, client: &ClientRef) -> Option<Counts> {
        let c = self.clients.get(client)?;
        let claim = c.session.as_ref().and_then(|s| s.agreed.as_ref());
        Some(
            c.own()
                .saturating_sub(claim.map(|a| a.claim).unwrap_or_default()),
        )
    }

    fn out_cap(&self) -> usize {
        self.cfg.max_sessions.saturating_mul(2)
    }

    /// The epoch is `epoch` as of `now_ms`. At a change, every session's latest agreed receipt
    /// not sent yet goes to [`Usage::poll_proof`]. An epoch that is not newer is ignored.
    pub fn handle_epoch(&mut self, epoch: u64, now_ms: u64) {
        let _ = now_ms;
        match self.epoch {
            Some(e) if epoch <= e => return,
            _ => {}
        }
        let first = self.epoch.is_none();
        self.epoch = Some(epoch);
        if first {
            return;
        }
        let keys: Vec<ClientRef> = self.clients.keys().copied().collect();
        for k in keys {
            self.flush(&k);
        }
    }

    /// The router's cumulative counters for `client` at `now_ms`. A client not seen before is
    /// tracked from here (evicting the one idle longest when full). A counter lower than the
    /// last report means the router started counting afresh (the client re-associated, or the
    /// router restarted): what it counted before is carried over and the session goes on.
    pub fn handle_counters(
        &mut self,
        client: ClientRef,
        bytes_down: u64,
        bytes_up: u64,
        now_ms: u64,
    ) {
        let counted = Counts {
            down: bytes_down,
            up: bytes_up,
        };
        match self.clients.get_mut(&client) {
            Some(c) => {
                if counted.down < c.counted.down {
                    c.carried.down = c.carried.down.saturating_add(c.counted.down);
                }
                if counted.up < c.counted.up {
                    c.carried.up = c.carried.up.saturating_add(c.counted.up);
                }
                if counted != c.counted {
                    c.active_ms = now_ms;
                }
                c.counted = counted;
                c.record(now_ms);
            }
            None => {
                if self.clients.len() >= self.cfg.max_sessions {
                    self.evict_idlest();
                }
                self.clients.insert(client, Client::new(counted, now_ms));
            }
        }
        self.evaluate(&client, now_ms);
    }

    /// `client`, not tracked, comes back owing `counts` (unsigned when it left, plus counted
    /// since); its grace runs on from `covered_ms`, its [`Usage::covered_since`] as it left.
    /// A tracked client is given `counts` as by [`Usage::handle_counters`].
    pub fn handle_return(
        &mut self,
        client: ClientRef,
        counts: Counts,
        covered_ms: u64,
        now_ms: u64,
    ) {
        let new = !self.clients.contains_key(&client);
        self.handle_counters(client, counts.down, counts.up, now_ms);
        if new && let Some(c) = self.clients.get_mut(&client) {
            c.covered_ms = covered_ms.min(now_ms);
            self.evaluate(&client, now_ms);
        }
    }

    /// When `client`'s uncovered usage was last at most `slack_bytes` (its grace runs from then).
    pub fn covered_since(&self, client: &ClientRef) -> Option<u64> {
        self.clients.get(client).map(|c| c.covered_ms)
    }

    /// `client` left (disassociated): its session ends (its receipt, if new, is sent) and it is
    /// forgotten; if it was blocked, it is announced served.
    pub fn handle_client_gone(&mut self, client: &ClientRef, now_ms: u64) {
        let _ = now_ms;
        self.forget(client);
    }

    /// A receipt `bytes` that peer `from` sent on `/wisp/usage/1`, at `now_ms` in the
    /// hotspot's epoch `epoch` (advanced first as [`Usage::handle_epoch`] does). Returns the
    /// answer to send back.
    ///
    /// Refused, with the reason's code: an envelope that does not open as a receipt awaiting
    /// this co-signature (its own reason; `oversize` beyond
    /// [`USAGE_REQUEST_MAX`]); a receipt naming another hotspot, or sent by a peer that is not
    /// its subscriber (`usage_role_mismatch`); one signed more than an epoch away from ours
    /// (`wrong_epoch`); a `seq` that does not rise (`usage_stale_seq`), or totals below the
    /// session's last agreed ones (`usage_counters_decreased`), as the oracle would refuse
    /// them; a session that already ended (`denied`). A refusal
    /// ends the sending client's session and blocks it.
    ///
    /// From a peer without counters: `Disputed` with zeros (the hotspot counted nothing for
    /// it) and no state. Otherwise `Agreed` (co-signed and kept) when both totals are within
    /// the tolerance of the hotspot's own, else `Disputed` with the hotspot's totals.
    pub fn handle_receipt(
        &mut self,
        bytes: &[u8],
        from: ClientRef,
        now_ms: u64,
        epoch: u64,
    ) -> UsageAnswer {
        self.handle_epoch(epoch, now_ms);
        match self.judge(bytes, from, now_ms, epoch) {
            Ok(answer) => {
                match answer {
                    UsageAnswer::Agreed { .. } => self.stats.agreed += 1,
                    _ => self.stats.disputed += 1,
                }
                answer
            }
            Err(reason) => {
                self.stats.refused += 1;
                self.end_session(&from);
                if let Some(c) = self.clients.get_mut(&from) {
                    c.active_ms = now_ms;
                    if c.blocked.is_none() {
                        self.stats.blocks += 1;
                    }
                    c.set_blocked(Some(BlockWhy::Refused(reason)));
                }
                UsageAnswer::Refused {
                    reason: reason.code(),
                }
            }
        }
    }

    /// The answer to a receipt, or why it is refused.
    fn judge(
        &mut self,
        bytes: &[u8],
        from: ClientRef,
        now_ms: u64,
        epoch: u64,
    ) -> Result<UsageAnswer, Reason> {
        if bytes.len() > USAGE_REQUEST_MAX {
            return Err(Reason::Oversize);
        }
        let r = UsageReceipt::open_for_cosigning(bytes)
            .map_err(|e| e.reason())?
            .msg;
        if r.hotspot != self.id || r.subscriber != from {
            return Err(Reason::UsageRoleMismatch);
        }
        if r.epoch.abs_diff(epoch) > 1 {
            return Err(Reason::WrongEpoch);
        }
        let claim = Counts {
            down: r.bytes_down,
            up: r.bytes_up,
        };
        let Some(c) = self.clients.get(&from) else {
            return Ok(UsageAnswer::Disputed {
                seq: r.seq,
                bytes_down: 0,
                bytes_up: 0,
            });
        };
        if c.ended == Some(r.session) {
            return Err(Reason::Denied);
        }
        if c.session.as_ref().is_some_and(|s| s.id != r.session) {
            // A new session replaces the current one, which ends here.
            self.end_session(&from);
        }
        let cfg = self.cfg.clone();
        let Some(c) = self.clients.get_mut(&from) else {
            unreachable!("checked above")
        };
        c.active_ms = now_ms;
        let s = c.session.get_or_insert(Session {
            id: r.session,
            last_seq: 0,
            agreed: None,
            sent_seq: 0,
        });
        if r.seq <= s.last_seq {
            return Err(Reason::UsageStaleSeq);
        }
        if let Some(a) = &s.agreed
            && (claim.down < a.claim.down || claim.up < a.claim.up)
        {
            return Err(Reason::UsageCountersDecreased);
        }
        s.last_seq = r.seq;
        let own = c.own();
        let lagged = c.own_lagged();
        let agrees = |claim: u64, lagged: u64, own: u64| {
            claim >= lagged.saturating_sub(tolerance(lagged, &cfg))
                && claim <= own.saturating_add(tolerance(own, &cfg))
        };
        if !(agrees(claim.down, lagged.down, own.down) && agrees(claim.up, lagged.up, own.up)) {
            self.evaluate(&from, now_ms);
            return Ok(UsageAnswer::Disputed {
                seq: r.seq,
                bytes_down: own.down,
                bytes_up: own.up,
            });
        }
        let cosigned = cosign(bytes, &self.key);
        let Some(c) = self.clients.get_mut(&from) else {
            unreachable!("checked above")
        };
        if let Some(s) = c.session.as_mut() {
            s.agreed = Some(Agreed {
                seq: r.seq,
                claim,
                own,
                id: ProofId::of(&cosigned),
                bytes: cosigned,
                cosigned_ms: now_ms,
            });
        }
        // Agreeing covers everything counted so far: the tolerance and the lag are accepted
        // with the receipt, and the next cumulative receipt carries what it left out.
        c.covered_ms = now_ms;
        c.set_blocked(None);
        self.evaluate(&from, now_ms);
        Ok(UsageAnswer::Agreed { seq: r.seq })
    }

    /// Time passed: clients whose uncovered usage outlasted `grace_ms` are blocked.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let keys: Vec<ClientRef> = self.clients.keys().copied().collect();
        for k in keys {
            self.evaluate(&k, now_ms);
        }
    }

    /// When [`Usage::handle_timeout`] is next due: the earliest moment a served client's
    /// uncovered usage, above the slack now, outlasts `grace_ms`.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.clients
            .values()
            .filter(|c| c.blocked.is_none() && c.uncovered() > self.cfg.slack_bytes)
            .map(|c| c.covered_ms.saturating_add(self.cfg.grace_ms))
            .min()
    }

    /// The next co-signed receipt for the outbox (topic `wisp/v1/proofs/{hotspot}`).
    pub fn poll_proof(&mut self) -> Option<Proof> {
        self.proofs.pop_front()
    }

    /// The next decision for the enforcement hook: clients forgotten while blocked first, then
    /// changes of tracked clients, in key order. Each change is handed out once.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        if let Some(c) = self.released.pop_front() {
            return Some(Decision::Serve(c));
        }
        let (k, c) = self.clients.iter_mut().find(|(_, c)| !c.announced)?;
        c.announced = true;
        Some(match c.blocked {
            Some(why) => Decision::Block(*k, why),
            None => Decision::Serve(*k),
        })
    }

    /// Blocks `client` if its uncovered usage calls for it; notes when it was last covered.
    fn evaluate(&mut self, client: &ClientRef, now_ms: u64) {
        let (slack, grace_bytes, grace_ms) = (
            self.cfg.slack_bytes,
            self.cfg.grace_bytes,
            self.cfg.grace_ms,
        );
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        if c.blocked.is_some() {
            return;
        }
        let bytes = c.uncovered();
        let why = if bytes <= slack {
            c.covered_ms = now_ms;
            None
        } else if bytes > grace_bytes {
            Some(BlockWhy::Uncovered { bytes })
        } else if now_ms >= c.covered_ms.saturating_add(grace_ms) {
            Some(BlockWhy::Unsigned {
                bytes,
                since_ms: c.covered_ms,
            })
        } else {
            None
        };
        if why.is_some() {
            c.set_blocked(why);
            self.stats.blocks += 1;
        }
    }

    /// Hands out the session's latest agreed receipt if it was not handed out yet.
    fn flush(&mut self, client: &ClientRef) {
        let Some(s) = self
            .clients
            .get_mut(client)
            .and_then(|c| c.session.as_mut())
        else {
            return;
        };
        let Some(a) = s.agreed.as_ref().filter(|a| a.seq > s.sent_seq) else {
            return;
        };
        s.sent_seq = a.seq;
        let proof = Proof {
            id: a.id,
            kind: Kind::UsageReceipt,
            bytes: a.bytes.clone(),
            created_ms: a.cosigned_ms,
        };
        if self.proofs.len() >= self.out_cap() {
            self.proofs.pop_front();
            self.stats.dropped += 1;
        }
        self.proofs.push_back(proof);
        self.stats.receipts_sent += 1;
    }

    /// Ends `client`'s session: its receipt is handed out if new, the next session starts where
    /// its agreed totals end, and its receipts are refused from now on.
    fn end_session(&mut self, client: &ClientRef) {
        self.flush(client);
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        if let Some(s) = c.session.take() {
            let covered = s.agreed.map(|a| a.claim).unwrap_or_default();
            let lifetime = c.lifetime();
            c.base = Counts {
                down: c.base.down.saturating_add(covered.down).min(lifetime.down),
                up: c.base.up.saturating_add(covered.up).min(lifetime.up),
            };
            c.ended = Some(s.id);
        }
    }

    fn forget(&mut self, client: &ClientRef) {
        self.end_session(client);
        if let Some(c) = self.clients.remove(client) {
            // Blocked as far as the router knows: release it, since nothing here will.
            let router_blocked = c.blocked.is_some() == c.announced;
            if router_blocked {
                if self.released.len() >= self.out_cap() {
                    self.released.pop_front();
                    self.stats.dropped += 1;
                }
                self.released.push_back(*client);
            }
        }
    }

    fn evict_idlest(&mut self) {
        let idlest = self
            .clients
            .iter()
            .min_by_key(|(k, c)| (c.active_ms, **k))
            .map(|(k, _)| *k);
        if let Some(k) = idlest {
            self.forget(&k);
            self.stats.evicted += 1;
        }
    }
}

/// The tolerance around the hotspot's count `own`: `tolerance_bps` of it plus `slack_bytes`.
fn tolerance(own: u64, cfg: &UsageConfig) -> u64 {
    let rel = u128::from(own) * u128::from(cfg.tolerance_bps) / 10_000;
    u64::try_from(rel)
        .unwrap_or(u64::MAX)
        .saturating_add(cfg.slack_bytes)
}

/// `bytes` (a receipt [`UsageReceipt::open_for_cosigning`] accepted) with `key`'s
/// co-signature added.
fn cosign(bytes: &[u8], key: &NodeKey) -> Vec<u8> {
    let env = match EnvelopeRef::parse(bytes) {
        Ok(env) => env,
        Err(e) => unreachable!("the receipt was opened before: {e}"),
    };
    let mut owned = Envelope {
        version: wisp_protocol::VERSION,
        kind: env.kind,
        payload: env.payload.to_vec(),
        signer: env.signer_id(),
        signature: ByteArray(*env.signature),
        cosigners: Vec::new(),
    };
    owned.cosign(key);
    owned.to_bytes()
}
