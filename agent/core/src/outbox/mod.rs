//! The outbox, sans-IO: the proofs signed and not yet written, the ones written and pending
//! (with their envelope bytes), what to write next, which to send next, when to resend, and
//! what to evict when full. Time is an argument; the shell does the writing and the sending.
//!
//! **Nothing is sent before it is on disk.** A signed proof is staged ([`Outbox::stage`]); a
//! final ack stages its deletion ([`Outbox::stage_deletion`]). [`Outbox::poll_commit`] hands
//! out everything staged as one [`Commit`] once the commit window (opened by the first thing
//! staged) has passed, or at once when [`COMMIT_BATCH`] proofs are staged; the shell writes it
//! in one durable transaction and reports back: [`Outbox::handle_committed`] makes the new
//! proofs due for sending, [`Outbox::handle_commit_failed`] stages all of it again and retries
//! [`COMMIT_RETRY_MS`] later. At most one commit is in flight.
//!
//! A proof is sent once committed to disk, resent if no oracle ack names it within the ack
//! timeout (doubling up to a cap, with jitter, so a fleet that lost its broker does not
//! resend in lockstep), and removed only on an ack with a final verdict. A transient one
//! (`rate_limited`) changes nothing here: the shell leaves the proof in flight, so it is resent
//! on this same backoff, as if no ack had come. After a reconnect every in-flight proof is
//! due again (the broker may have dropped it), after one random delay within a jitter window.
//!
//! **A backlog goes out in signing order**: of the proofs due, the oldest (lowest sequence
//! number, which the outbox assigns in the order the proofs were staged and the store keeps
//! across restarts) is sent first; after a reconnect nothing is sent until one random delay
//! passed, and then the whole backlog, in flight before or never sent, goes out oldest first.
//! Jitter is drawn per moment, not per proof, so proofs sent together that time out are resent
//! together, in order. (Proofs sent at different times resend on their own backoff; the oracle
//! accepts heartbeats in any order, so this is tidiness, not correctness.)
//!
//! **When full** (entries or bytes), room is made at commit time by evicting the oldest proofs
//! of the lowest priority first: heartbeats (a later one supersedes them), then beacons,
//! witnesses and usage receipts (cumulative: a session's next receipt carries what a lost one
//! counted, so losing one only moves its pay to a later epoch). Onboarding messages and
//! bandwidth receipts are never evicted; a new proof that would need that is refused instead. The commit reports both, for the shell to log and count.
//!
//! Call order, each turn of the shell: [`Outbox::stage`] and [`Outbox::stage_deletion`] as
//! proofs are signed and acked; [`Outbox::poll_commit`], write, then
//! [`Outbox::handle_committed`] or [`Outbox::handle_commit_failed`]; [`Outbox::poll_send`] and
//! [`Outbox::mark_sent`] until it returns `None`; sleep until [`Outbox::poll_timeout`].
//! [`Outbox::reconnected`] and [`Outbox::disconnected`] follow the broker connection.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::ProofId;
use wisp_protocol::kind::Kind;

use crate::core::Proof;

/// This many staged proofs make a commit due at once, without waiting for the window.
pub const COMMIT_BATCH: usize = 64;
/// A failed commit is tried again this long after it started.
pub const COMMIT_RETRY_MS: u64 = 1_000;
/// The commit window unless [`Outbox::with_commit_interval`] sets another (the default of
/// `outbox.commit_interval_ms`).
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 20;

/// How much a proof matters if space runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Evicted first.
    Low = 0,
    /// Evicted when no low-priority proof is left.
    Normal = 1,
    /// Never evicted.
    Critical = 2,
}

impl Priority {
    /// The priority of a kind of proof.
    pub fn of(kind: Kind) -> Priority {
        match kind {
            Kind::Heartbeat | Kind::StatusReport => Priority::Low,
            // A usage receipt is cumulative over its session: the next one (the next epoch's)
            // repeats its totals, so it may go before what nothing replaces.
            Kind::Beacon | Kind::Witness | Kind::UsageReceipt => Priority::Normal,
            _ => Priority::Critical,
        }
    }
}

/// Outbox limits and timing.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Most proofs held.
    pub max_entries: usize,
    /// Most envelope bytes held.
    pub max_bytes: usize,
    /// Resend if no ack came within this long.
    pub ack_timeout_ms: u64,
    /// The resend interval doubles per attempt up to this.
    pub max_backoff_ms: u64,
    /// Most proofs sent but not yet acked at once (bounds the burst after an outage).
    pub max_in_flight: usize,
    /// After a reconnect, pending resends are spread over this window.
    pub reconnect_spread_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_entries: 20_000,
            max_bytes: 8 * 1024 * 1024,
            ack_timeout_ms: 30_000,
            max_backoff_ms: 600_000,
            max_in_flight: 256,
            reconnect_spread_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the commit being written: it takes room (and may be evicted by a later proof of the
    /// same commit), but is not sent until the commit is on disk.
    Writing,
    /// Waiting to be sent at or after `at`, after `attempts` earlier sends.
    Due { at: u64, attempts: u32 },
    /// Sent at `sent_ms` (jitter included), the `attempts`-th send.
    InFlight { sent_ms: u64, attempts: u32 },
}

/// One pending proof: committed to the store, or in the commit being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Staging order, also the store's row key.
    pub seq: u64,
    /// The proof.
    pub id: ProofId,
    /// Its kind.
    pub kind: Kind,
    /// When it was signed.
    pub created_ms: u64,
    bytes: Vec<u8>,
    state: State,
}

impl Entry {
    /// The envelope bytes, as published.
    pub fn envelope(&self) -> &[u8] {
        &self.bytes
    }
}

/// A new row for the store, from [`Commit::writes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The row key (the proof's sequence number).
    pub seq: u64,
    /// The proof.
    pub id: ProofId,
    /// Its kind.
    pub kind: Kind,
    /// When it was signed.
    pub created_ms: u64,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
}

/// What to write in one durable transaction, from [`Outbox::poll_commit`]. The shell writes
/// `writes` and `deletions` and reports the result; `evicted` and `refused` are for its logs
/// and metrics (the outbox already let go of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// New proofs, in staging order.
    pub writes: Vec<Write>,
    /// Proofs to delete: acked with a final verdict, and the stored ones evicted.
    pub deletions: Vec<ProofId>,
    /// Proofs evicted to make room, stored or staged, oldest lowest priority first.
    pub evicted: Vec<(ProofId, Kind)>,
    /// Staged proofs dropped because the outbox is full of proofs that may not be evicted.
    pub refused: Vec<(ProofId, Kind)>,
}

/// Room could not be made for a new proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox full of proofs that may not be evicted")]
pub struct Full;

/// The commit handed out and not yet reported back.
#[derive(Debug)]
struct InFlightCommit {
    /// The new rows' sequence numbers, in staging order.
    seqs: Vec<u64>,
    /// The deletions it carries (staged again if it fails).
    deletions: Vec<ProofId>,
}

/// The outbox: staged proofs and deletions, pending proofs and their bytes, and the policy.
#[derive(Debug)]
pub struct Outbox {
    cfg: OutboxConfig,
    commit_interval_ms: u64,
    /// Signed, not yet handed out in a commit, in signing order.
    staged: Vec<Proof>,
    /// Acked with a final verdict, not yet handed out in a commit.
    staged_deletions: Vec<ProofId>,
    /// When what is staged must be committed (the window opened by the first of it).
    commit_at: Option<u64>,
    /// The commit being written, if any.
    committing: Option<InFlightCommit>,
    /// Whether the broker connection is up: nothing is sent while it is down.
    online: bool,
    entries: BTreeMap<u64, Entry>,
    by_id: BTreeMap<ProofId, u64>,
    /// `(priority, seq)` of every entry, for eviction in order.
    by_priority: BTreeSet<(Priority, u64)>,
    /// `(due_ms, seq)` of every entry due and not yet found due.
    due: BTreeSet<(u64, u64)>,
    /// Entries found due (their time passed), sent lowest sequence number first.
    ready: BTreeSet<u64>,
    /// When entries last moved from `due` to `ready` (all of `ready` was due by then).
    ready_since: u64,
    /// The jitter drawn for sends at one moment `(now_ms, jitter)`: a burst shares it, so its
    /// resends come due together and go out in order.
    burst: Option<(u64, u64)>,
    /// Nothing is sent before this (a reconnect's random delay), so that everything pending
    /// then goes out together, oldest first.
    hold_until: u64,
    /// `(resend_ms, seq)` of every entry in flight.
    in_flight: BTreeSet<(u64, u64)>,
    bytes: usize,
    next_seq: u64,
    rng: u64,
}

impl Outbox {
    /// An empty outbox, online, with the default commit window. `jitter_seed` seeds the resend
    /// jitter (the shell passes OS randomness, tests and the simulator a fixed value). A driver
    /// that starts without a broker connection calls [`Outbox::disconnected`] first.
    pub fn new(cfg: OutboxConfig, jitter_seed: u64) -> Self {
        Self {
            cfg,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            staged: Vec::new(),
            staged_deletions: Vec::new(),
            commit_at: None,
            committing: None,
            online: true,
            entries: BTreeMap::new(),
            by_id: BTreeMap::new(),
            by_priority: BTreeSet::new(),
            due: BTreeSet::new(),
            ready: BTreeSet::new(),
            ready_since: 0,
            burst: None,
            hold_until: 0,
            in_flight: BTreeSet::new(),
            bytes: 0,
            next_seq: 1,
            rng: jitter_seed | 1,
        }
    }

    /// The commit window: how long after the first thing staged the commit is due.
    #[must_use]
    pub fn with_commit_interval(mut self, ms: u64) -> Self {
        self.commit_interval_ms = ms;
        self
    }

    /// Proofs pending (committed, or in the commit being written); staged ones are not counted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no proof is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Envelope bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Proofs sent and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// When the oldest pending proof was signed.
    pub fn oldest_created_ms(&self) -> Option<u64> {
        self.entries.values().map(|e| e.created_ms).min()
    }

    /// Whether a proof is pending.
    pub fn contains(&self, id: &ProofId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The pending entry for `id`.
    pub fn get(&self, id: &ProofId) -> Option<&Entry> {
        self.by_id.get(id).and_then(|s| self.entries.get(s))
    }

    /// A proof signed at `now_ms`, to be written by the next commit and sent only after it.
    /// The first thing staged opens the commit window. A proof already staged or pending is
    /// ignored (returns false).
    pub fn stage(&mut self, proof: Proof, now_ms: u64) -> bool {
        if self.by_id.contains_key(&proof.id) || self.staged.iter().any(|p| p.id == proof.id) {
            return false;
        }
        self.staged.push(proof);
        self.open_window(now_ms);
        true
    }

    /// The oracle gave `id` a final verdict at `now_ms`: it leaves the outbox. A pending one is
    /// deleted from the store by the next commit (which the first deletion staged opens the
    /// window for); a staged one, never written, is just dropped. Returns its kind, or `None`
    /// if it is not held (a duplicate ack, or never ours).
    pub fn stage_deletion(&mut self, id: &ProofId, now_ms: u64) -> Option<Kind> {
        if let Some(i) = self.staged.iter().position(|p| p.id == *id) {
            let kind = self.staged.remove(i).kind;
            if self.staged.is_empty() && self.staged_deletions.is_empty() {
                self.commit_at = None;
            }
            return Some(kind);
        }
        // A proof in the commit being written is deleted by the next one (on disk by then, or,
        // if that commit fails, deleting nothing).
        let e = self.remove(id)?;
        self.staged_deletions.push(*id);
        self.open_window(now_ms);
        Some(e.kind)
    }

    /// What to write now, if a commit is due (its window passed, or [`COMMIT_BATCH`] proofs
    /// are staged) or `force`d (at shutdown), something is staged and no commit is in flight.
    /// Room is made for each staged proof in turn; the new rows take their room at once, and
    /// are sent only after [`Outbox::handle_committed`].
    pub fn poll_commit(&mut self, now_ms: u64, force: bool) -> Option<Commit> {
        if self.committing.is_some() || !self.has_staged() {
            return None;
        }
        let due = self.commit_at.is_some_and(|d| now_ms >= d) || self.staged.len() >= COMMIT_BATCH;
        if !(due || force) {
            return None;
        }
        let mut c = Commit::default();
        let mut evicted_stored = Vec::new();
        for p in std::mem::take(&mut self.staged) {
            let victims = match self.make_room(p.kind, p.bytes.len()) {
                Ok(v) => v,
                Err(Full) => {
                    c.refused.push((p.id, p.kind));
                    continue;
                }
            };
            for v in victims {
                let Some(e) = self.remove(&v) else { continue };
                c.evicted.push((v, e.kind));
                // A victim from this very commit was never stored: it is just not written.
                match c.writes.iter().position(|w| w.id == v) {
                    Some(i) => {
                        c.writes.remove(i);
                    }
                    None => evicted_stored.push(v),
                }
            }
            let seq = self.next_seq;
            c.writes.push(Write {
                seq,
                id: p.id,
                kind: p.kind,
                created_ms: p.created_ms,
                bytes: p.bytes.clone(),
            });
            self.insert(seq, p, State::Writing);
        }
        c.deletions = std::mem::take(&mut self.staged_deletions);
        c.deletions.extend(evicted_stored);
        self.committing = Some(InFlightCommit {
            seqs: c.writes.iter().map(|w| w.seq).collect(),
            deletions: c.deletions.clone(),
        });
        self.commit_at = None;
        Some(c)
    }

    /// The commit from [`Outbox::poll_commit`] is on disk: its new proofs are due for sending
    /// at `now_ms`.
    pub fn handle_committed(&mut self, now_ms: u64) {
        let Some(c) = self.committing.take() else {
            return;
        };
        for seq in c.seqs {
            // Absent if acked while being written (its deletion is staged).
            if let Some(e) = self.entries.get_mut(&seq)
                && e.state == State::Writing
            {
                e.state = State::Due {
                    at: now_ms,
                    attempts: 0,
                };
                self.due.insert((now_ms, seq));
            }
        }
    }

    /// The commit from [`Outbox::poll_commit`] failed (started at `now_ms`) and wrote nothing:
    /// its proofs are staged again, ahead of any staged since, its deletions too, and the
    /// next attempt is due [`COMMIT_RETRY_MS`] later. What it evicted or refused stays so.
    pub fn handle_commit_failed(&mut self, now_ms: u64) {
        let Some(c) = self.committing.take() else {
            return;
        };
        let mut staged = Vec::with_capacity(c.seqs.len() + self.staged.len());
        for seq in c.seqs {
            if let Some(e) = self.remove_seq(seq) {
                staged.push(Proof {
                    id: e.id,
                    kind: e.kind,
                    bytes: e.bytes,
                    created_ms: e.created_ms,
                });
            }
        }
        staged.append(&mut self.staged);
        self.staged = staged;
        let mut deletions = c.deletions;
        deletions.append(&mut self.staged_deletions);
        self.staged_deletions = deletions;
        self.commit_at = self
            .has_staged()
            .then_some(now_ms.saturating_add(COMMIT_RETRY_MS));
    }

    /// A proof loaded from the store at start-up (rows in any order), committed under `seq`
    /// and due for sending at `now_ms`. A proof id already pending is ignored (returns false).
    pub fn restore(&mut self, seq: u64, proof: Proof, now_ms: u64) -> bool {
        if self.by_id.contains_key(&proof.id) {
            return false;
        }
        self.insert(
            seq,
            proof,
            State::Due {
                at: now_ms,
                attempts: 0,
            },
        );
        self.due.insert((now_ms, seq));
        true
    }

    /// The next proof to send now, if the broker connection is up, one is due and the
    /// in-flight limit allows: of those due, the one signed first. The caller publishes its
    /// [`Entry::envelope`] and reports with [`Outbox::mark_sent`].
    pub fn poll_send(&mut self, now_ms: u64) -> Option<&Entry> {
        if !self.online {
            return None;
        }
        self.requeue_expired(now_ms);
        if now_ms < self.hold_until {
            return None;
        }
        while let Some(&(at, seq)) = self.due.first() {
            if at > now_ms {
                break;
            }
            self.due.remove(&(at, seq));
            self.ready.insert(seq);
            self.ready_since = now_ms;
        }
        if self.in_flight.len() >= self.cfg.max_in_flight {
            return None;
        }
        let seq = self.ready.first()?;
        self.entries.get(seq)
    }

    /// The proof was handed to the MQTT client at `now_ms`. Returns which attempt this was
    /// (1 for the first send), or 0 if the proof is not pending or not yet committed.
    pub fn mark_sent(&mut self, id: &ProofId, now_ms: u64) -> u32 {
        let Some(&seq) = self.by_id.get(id) else {
            return 0;
        };
        let Some(e) = self.entries.get_mut(&seq) else {
            return 0;
        };
        let attempts = match e.state {
            State::Writing => return 0,
            State::Due { at, attempts } => {
                self.due.remove(&(at, seq));
                self.ready.remove(&seq);
                attempts + 1
            }
            State::InFlight { sent_ms, attempts } => {
                self.in_flight
                    .remove(&(resend_at(&self.cfg, sent_ms, attempts), seq));
                attempts + 1
            }
        };
        // Jitter: up to a fifth of the timeout, so resends from many agents do not align. One
        // draw per moment: proofs sent together come due together, and go out in order again.
        let jitter = match self.burst {
            Some((at, j)) if at == now_ms => j,
            _ => {
                let j = next_rand(&mut self.rng) % (self.cfg.ack_timeout_ms / 5 + 1);
                self.burst = Some((now_ms, j));
                j
            }
        };
        let sent_ms = now_ms + jitter;
        e.state = State::InFlight { sent_ms, attempts };
        self.in_flight
            .insert((resend_at(&self.cfg, sent_ms, attempts), seq));
        attempts
    }

    /// The connection to the broker was (re-)established: everything in flight may have been
    /// dropped by the broker or the client, so it is all due again. Nothing is sent for one
    /// random delay within a short window (so a fleet does not resend in lockstep); then the
    /// whole backlog, in flight before or never sent, goes out oldest first.
    pub fn reconnected(&mut self, now_ms: u64) {
        self.online = true;
        let seqs: Vec<(u64, u64)> = self.in_flight.iter().copied().collect();
        self.in_flight.clear();
        let spread = next_rand(&mut self.rng) % (self.cfg.reconnect_spread_ms + 1);
        self.hold_until = now_ms + spread;
        for (_, seq) in seqs {
            self.due_again(seq, now_ms);
        }
    }

    /// The connection to the broker is down: nothing is sent, and no send or resend time is
    /// reported by [`Outbox::poll_timeout`], until [`Outbox::reconnected`].
    pub fn disconnected(&mut self) {
        self.online = false;
    }

    /// The clock the outbox is driven with moved by `delta_ms` (the driver's correction by the
    /// oracle's clock changed): every time it holds moves with it, so a proof due in 2 s is
    /// still due in 2 s, not 30 s later, and so does the commit window. Signing times stay as
    /// they are.
    pub fn clock_stepped(&mut self, delta_ms: i64) {
        let s = |t: u64| t.saturating_add_signed(delta_ms);
        self.due = self.due.iter().map(|&(t, q)| (s(t), q)).collect();
        self.in_flight = self.in_flight.iter().map(|&(t, q)| (s(t), q)).collect();
        for e in self.entries.values_mut() {
            e.state = match e.state {
                State::Writing => State::Writing,
                State::Due { at, attempts } => State::Due {
                    at: s(at),
                    attempts,
                },
                State::InFlight { sent_ms, attempts } => State::InFlight {
                    sent_ms: s(sent_ms),
                    attempts,
                },
            };
        }
        self.ready_since = s(self.ready_since);
        self.hold_until = s(self.hold_until);
        self.commit_at = self.commit_at.map(s);
        self.burst = None;
    }

    /// When something next becomes due: the commit window of what is staged (unless a commit
    /// is in flight), and, while connected, a scheduled send or a resend timeout.
    pub fn poll_timeout(&self) -> Option<u64> {
        let commit = self
            .commit_at
            .filter(|_| self.committing.is_none() && self.has_staged());
        let send = if self.online {
            self.poll_send_timeout()
        } else {
            None
        };
        earliest(commit, send)
    }

    fn poll_send_timeout(&self) -> Option<u64> {
        let due = if self.in_flight.len() < self.cfg.max_in_flight {
            let ready = (!self.ready.is_empty()).then_some(self.ready_since);
            earliest(ready, self.due.first().map(|d| d.0))
        } else {
            None
        };
        let resend = self.in_flight.first().map(|r| r.0);
        earliest(due, resend).map(|t| t.max(self.hold_until))
    }

    fn has_staged(&self) -> bool {
        !self.staged.is_empty() || !self.staged_deletions.is_empty()
    }

    fn open_window(&mut self, now_ms: u64) {
        if self.commit_at.is_none() {
            self.commit_at = Some(now_ms.saturating_add(self.commit_interval_ms));
        }
    }

    /// The proofs to evict so that one more of `kind` and `len` bytes fits, oldest lowest
    /// priority first, never a critical one and never one of higher priority than the newcomer.
    /// Nothing is changed.
    fn make_room(&self, kind: Kind, len: usize) -> Result<Vec<ProofId>, Full> {
        let newcomer = Priority::of(kind);
        let mut count = self.entries.len();
        let mut bytes = self.bytes;
        let mut victims = Vec::new();
        let mut candidates = self.by_priority.iter();
        while count + 1 > self.cfg.max_entries || bytes + len > self.cfg.max_bytes {
            let Some(&(p, seq)) = candidates.next() else {
                return Err(Full);
            };
            if p == Priority::Critical || p > newcomer {
                return Err(Full);
            }
            let e = &self.entries[&seq];
            victims.push(e.id);
            count -= 1;
            bytes -= e.bytes.len();
        }
        Ok(victims)
    }

    /// Indexes a proof under `seq` in `state` (a due one is put in `due` by the caller).
    fn insert(&mut self, seq: u64, proof: Proof, state: State) {
        self.next_seq = self.next_seq.max(seq + 1);
        self.by_id.insert(proof.id, seq);
        self.by_priority.insert((Priority::of(proof.kind), seq));
        self.bytes += proof.bytes.len();
        self.entries.insert(
            seq,
            Entry {
                seq,
                id: proof.id,
                kind: proof.kind,
                created_ms: proof.created_ms,
                bytes: proof.bytes,
                state,
            },
        );
    }

    /// Takes a pending proof out of every index. Returns its entry if it was pending.
    fn remove(&mut self, id: &ProofId) -> Option<Entry> {
        let seq = *self.by_id.get(id)?;
        self.remove_seq(seq)
    }

    fn remove_seq(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.by_id.remove(&e.id);
        self.by_priority.remove(&(Priority::of(e.kind), seq));
        match e.state {
            State::Writing => false,
            State::Due { at, .. } => self.due.remove(&(at, seq)) | self.ready.remove(&seq),
            State::InFlight { sent_ms, attempts } => self
                .in_flight
                .remove(&(resend_at(&self.cfg, sent_ms, attempts), seq)),
        };
        self.bytes -= e.bytes.len();
        Some(e)
    }

    fn requeue_expired(&mut self, now_ms: u64) {
        while let Some(&(at, seq)) = self.in_flight.first() {
            if at > now_ms {
                break;
            }
            self.in_flight.remove(&(at, seq));
            self.due_again(seq, at);
        }
    }

    /// Makes proof `seq`, already taken out of the in-flight index, due again at `at`. Its
    /// attempt count stays, so the next resend backs off further. A proof still being written
    /// is left alone.
    fn due_again(&mut self, seq: u64, at: u64) {
        let Some(e) = self.entries.get_mut(&seq) else {
            return;
        };
        let attempts = match e.state {
            State::InFlight { attempts, .. } | State::Due { attempts, .. } => attempts,
            State::Writing => return,
        };
        e.state = State::Due { at, attempts };
        self.due.insert((at, seq));
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn resend_at(cfg: &OutboxConfig, sent_ms: u64, attempts: u32) -> u64 {
    let backoff = cfg
        .ack_timeout_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(cfg.max_backoff_ms.max(cfg.ack_timeout_ms));
    sent_ms.saturating_add(backoff)
}

/// SplitMix64: a tiny deterministic generator for jitter (not for anything secret).
fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
