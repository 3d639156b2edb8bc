//! The outbox's policy, sans-IO: which proofs are pending, which to send next, when to resend,
//! and what to evict when full. The bytes live in the durable [`crate::store`]; this index
//! holds what the policy needs.
//!
//! A proof is sent once committed to disk, resent if no oracle ack names it within the ack
//! timeout (doubling up to a cap, with jitter, so a fleet that lost its broker does not
//! resend in lockstep), and removed only on an ack with a final verdict. A transient one
//! (`rate_limited`) changes nothing here: the shell leaves the proof in flight, so it is resent
//! on this same backoff, as if no ack had come. After a reconnect every in-flight proof is
//! due again (the broker may have dropped it), after one random delay within a jitter window.
//!
//! **A backlog goes out in signing order**: of the proofs due, the oldest (lowest sequence
//! number, which the driver assigns in the order the core signed them and the store keeps
//! across restarts) is sent first; after a reconnect nothing is sent until one random delay
//! passed, and then the whole backlog, in flight before or never sent, goes out oldest first.
//! Jitter is drawn per moment, not per proof, so proofs sent together that time out are resent
//! together, in order. (Proofs sent at different times resend on their own backoff; the oracle
//! accepts heartbeats in any order, so this is tidiness, not correctness.)
//!
//! **When full** (entries or bytes), room is made by evicting the oldest proofs of the lowest
//! priority first: heartbeats (a later one supersedes them), then beacons and witnesses.
//! Onboarding messages and bandwidth receipts are never evicted; a new proof that would need
//! that is refused instead, and counted.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::ProofId;
use wisp_protocol::kind::Kind;

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
            Kind::Beacon | Kind::Witness => Priority::Normal,
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
    /// Waiting to be sent at or after `at`, after `attempts` earlier sends.
    Due { at: u64, attempts: u32 },
    /// Sent at `sent_ms` (jitter included), the `attempts`-th send.
    InFlight { sent_ms: u64, attempts: u32 },
}

/// One pending proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Insertion order, also the store's row key.
    pub seq: u64,
    /// The proof.
    pub id: ProofId,
    /// Its kind.
    pub kind: Kind,
    /// Envelope bytes.
    pub len: usize,
    /// When it was signed.
    pub created_ms: u64,
    state: State,
}

/// Room could not be made for a new proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox full of proofs that may not be evicted")]
pub struct Full;

/// The pending-proof index.
#[derive(Debug)]
pub struct Outbox {
    cfg: OutboxConfig,
    entries: BTreeMap<u64, Entry>,
    by_id: BTreeMap<ProofId, u64>,
    /// `(priority, seq)` of every entry, for eviction in order.
    by_priority: BTreeSet<(Priority, u64)>,
    /// `(due_ms, seq)` of every entry not in flight and not yet found due.
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
    /// An empty outbox. `jitter_seed` seeds the resend jitter (the shell passes OS randomness,
    /// tests and the simulator a fixed value).
    pub fn new(cfg: OutboxConfig, jitter_seed: u64) -> Self {
        Self {
            cfg,
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

    /// The sequence number the next inserted proof gets (the store keys rows by it).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Proofs pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
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

    /// The entry for `id`.
    pub fn get(&self, id: &ProofId) -> Option<&Entry> {
        self.by_id.get(id).and_then(|s| self.entries.get(s))
    }

    /// The proofs to evict so that one more of `kind` and `len` bytes fits, oldest lowest
    /// priority first, never a critical one and never one of higher priority than the newcomer.
    /// Nothing is changed: evict them with [`Outbox::remove`] once the store committed.
    pub fn make_room(&self, kind: Kind, len: usize) -> Result<Vec<ProofId>, Full> {
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
            bytes -= e.len;
        }
        Ok(victims)
    }

    /// Records a proof committed to the store with sequence `seq`, due for sending now.
    /// A proof id already pending is ignored (returns false).
    pub fn insert(
        &mut self,
        seq: u64,
        id: ProofId,
        kind: Kind,
        len: usize,
        created_ms: u64,
        now_ms: u64,
    ) -> bool {
        if self.by_id.contains_key(&id) {
            return false;
        }
        self.next_seq = self.next_seq.max(seq + 1);
        let e = Entry {
            seq,
            id,
            kind,
            len,
            created_ms,
            state: State::Due {
                at: now_ms,
                attempts: 0,
            },
        };
        self.entries.insert(seq, e);
        self.by_id.insert(id, seq);
        self.by_priority.insert((Priority::of(kind), seq));
        self.due.insert((now_ms, seq));
        self.bytes += len;
        true
    }

    /// Removes a proof (acked, rejected or evicted). Returns its entry if it was pending.
    pub fn remove(&mut self, id: &ProofId) -> Option<Entry> {
        let seq = self.by_id.remove(id)?;
        let e = self.entries.remove(&seq)?;
        self.by_priority.remove(&(Priority::of(e.kind), seq));
        match e.state {
            State::Due { at, .. } => self.due.remove(&(at, seq)) | self.ready.remove(&seq),
            State::InFlight { sent_ms, attempts } => self
                .in_flight
                .remove(&(resend_at(&self.cfg, sent_ms, attempts), seq)),
        };
        self.bytes -= e.len;
        Some(e)
    }

    /// The next proof to send now, if any is due and the in-flight limit allows: of those due,
    /// the one signed first. The caller sends it and reports with [`Outbox::mark_sent`].
    pub fn poll_send(&mut self, now_ms: u64) -> Option<Entry> {
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
        Some(self.entries[seq])
    }

    /// The proof was handed to the MQTT client at `now_ms`. Returns which attempt this was
    /// (1 for the first send), or 0 if the proof is not pending.
    pub fn mark_sent(&mut self, id: &ProofId, now_ms: u64) -> u32 {
        let Some(&seq) = self.by_id.get(id) else {
            return 0;
        };
        let Some(e) = self.entries.get_mut(&seq) else {
            return 0;
        };
        let attempts = match e.state {
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

    /// The connection to the broker was re-established: everything in flight may have been
    /// dropped by the broker or the client, so it is all due again. Nothing is sent for one
    /// random delay within a short window (so a fleet does not resend in lockstep); then the
    /// whole backlog, in flight before or never sent, goes out oldest first.
    pub fn reconnected(&mut self, now_ms: u64) {
        let seqs: Vec<(u64, u64)> = self.in_flight.iter().copied().collect();
        self.in_flight.clear();
        let spread = next_rand(&mut self.rng) % (self.cfg.reconnect_spread_ms + 1);
        self.hold_until = now_ms + spread;
        let at = now_ms;
        for (_, seq) in seqs {
            if let Some(e) = self.entries.get_mut(&seq) {
                let attempts = match e.state {
                    State::InFlight { attempts, .. } | State::Due { attempts, .. } => attempts,
                };
                e.state = State::Due { at, attempts };
                self.due.insert((at, seq));
            }
        }
    }

    /// The clock the outbox is driven with moved by `delta_ms` (the driver's correction by the
    /// oracle's clock changed): every time it holds moves with it, so a proof due in 2 s is
    /// still due in 2 s, not 30 s later. Signing times stay as they are.
    pub fn clock_stepped(&mut self, delta_ms: i64) {
        let s = |t: u64| t.saturating_add_signed(delta_ms);
        self.due = self.due.iter().map(|&(t, q)| (s(t), q)).collect();
        self.in_flight = self.in_flight.iter().map(|&(t, q)| (s(t), q)).collect();
        for e in self.entries.values_mut() {
            e.state = match e.state {
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
        self.burst = None;
    }

    /// When something next becomes due (a scheduled send or a resend timeout).
    pub fn poll_timeout(&self) -> Option<u64> {
        let due = if self.in_flight.len() < self.cfg.max_in_flight {
            let ready = (!self.ready.is_empty()).then_some(self.ready_since);
            match (ready, self.due.first().map(|d| d.0)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else {
            None
        };
        let resend = self.in_flight.first().map(|r| r.0);
        let next = match (due, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.max(self.hold_until))
    }

    fn requeue_expired(&mut self, now_ms: u64) {
        while let Some(&(at, seq)) = self.in_flight.first() {
            if at > now_ms {
                break;
            }
            self.in_flight.remove(&(at, seq));
            if let Some(e) = self.entries.get_mut(&seq) {
                // The attempt count stays, so the next resend backs off further.
                let attempts = match e.state {
                    State::InFlight { attempts, .. } | State::Due { attempts, .. } => attempts,
                };
                e.state = State::Due { at, attempts };
                self.due.insert((at, seq));
            }
        }
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
mod tests {
    use super::*;

    fn id(n: u32) -> ProofId {
        ProofId::of(&n.to_le_bytes())
    }

    #[test]
    fn a_clock_step_moves_every_pending_time_with_it() {
        let mut o = Outbox::new(small(), 7);
        let t = 100_000;
        o.insert(1, id(1), Kind::Heartbeat, 10, t, t + 2_000);
        o.insert(2, id(2), Kind::Heartbeat, 10, t, t);
        assert_eq!(o.poll_send(t).map(|e| e.seq), Some(2));
        o.mark_sent(&id(2), t);
        // The clock is set back 30 s: the first is still due 2 s from "now", the second's
        // resend timeout still 1 s (plus jitter) after its send.
        o.clock_stepped(-30_000);
        let now = t - 30_000;
        let resend = o.poll_timeout().unwrap();
        assert!((now + 1_000..=now + 1_200).contains(&resend), "{resend}");
        assert!(o.poll_send(now + 500).is_none());
        assert_eq!(o.poll_send(now + 2_000).map(|e| e.seq), Some(1));
    }

    fn small() -> OutboxConfig {
        OutboxConfig {
            max_entries: 4,
            max_bytes: 1000,
            ack_timeout_ms: 1_000,
            max_backoff_ms: 8_000,
            max_in_flight: 2,
            reconnect_spread_ms: 100,
        }
    }

    #[test]
    fn sends_in_order_respecting_the_in_flight_limit() {
        let mut o = Outbox::new(small(), 7);
        for n in 0..3 {
            assert!(o.insert(u64::from(n) + 1, id(n), Kind::Witness, 100, 0, 0));
        }
        assert!(
            !o.insert(9, id(0), Kind::Witness, 100, 0, 0),
            "duplicate ids are ignored"
        );
        let a = o.poll_send(0).unwrap();
        o.mark_sent(&a.id, 0);
        let b = o.poll_send(0).unwrap();
        o.mark_sent(&b.id, 0);
        assert_eq!((a.id, b.id), (id(0), id(1)));
        assert!(o.poll_send(0).is_none(), "two in flight is the limit");
        o.remove(&a.id);
        assert_eq!(o.poll_send(0).unwrap().id, id(2));
        assert_eq!(o.len(), 2);
        assert_eq!(o.bytes(), 200);
    }

    #[test]
    fn resends_back_off_exponentially_with_bounded_jitter() {
        let mut o = Outbox::new(
            OutboxConfig {
                max_in_flight: 10,
                ..small()
            },
            3,
        );
        o.insert(1, id(1), Kind::Witness, 10, 0, 0);
        let mut t = 0;
        let mut sends = Vec::new();
        while t < 40_000 {
            if let Some(e) = o.poll_send(t) {
                o.mark_sent(&e.id, t);
                sends.push(t);
            }
            t += 10;
        }
        // Gaps of ~1, 2, 4, 8, 8, 8 s (+ up to 20% jitter each).
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        let expected = [1_000u64, 2_000, 4_000, 8_000, 8_000];
        for (g, e) in gaps.iter().zip(expected) {
            assert!(*g >= e && *g <= e + e / 5 + 210, "gaps {gaps:?}");
        }
    }

    #[test]
    fn reconnect_makes_everything_in_flight_due_soon() {
        let mut o = Outbox::new(
            OutboxConfig {
                max_in_flight: 10,
                ..small()
            },
            3,
        );
        for n in 1..=3 {
            o.insert(u64::from(n), id(n), Kind::Witness, 10, 0, 0);
            let e = o.poll_send(0).unwrap();
            o.mark_sent(&e.id, 0);
        }
        assert!(o.poll_send(50).is_none());
        o.reconnected(100);
        let mut resent = 0;
        for t in 100..=200 {
            while let Some(e) = o.poll_send(t) {
                o.mark_sent(&e.id, t);
                resent += 1;
            }
        }
        assert_eq!(resent, 3);
    }

    /// Sends whatever is due from `from` to `to` (1 ms steps), acking nothing; the ids in order.
    fn sends(o: &mut Outbox, from: u64, to: u64) -> Vec<ProofId> {
        let mut out = Vec::new();
        for t in from..=to {
            while let Some(e) = o.poll_send(t) {
                o.mark_sent(&e.id, t);
                out.push(e.id);
            }
        }
        out
    }

    #[test]
    fn a_backlog_goes_out_in_signing_order_after_an_outage_a_timeout_or_a_restart() {
        let cfg = OutboxConfig {
            max_entries: 100,
            max_bytes: 100_000,
            max_in_flight: 100,
            ..small()
        };
        let signed: Vec<ProofId> = (1..=20).map(id).collect();
        for seed in [1, 3, 7, 42] {
            let mut o = Outbox::new(cfg.clone(), seed);
            // Signed and sent over a second, never acked: the broker went away unnoticed.
            for (n, pid) in signed[..10].iter().enumerate() {
                let t = n as u64 * 100;
                o.insert(n as u64 + 1, *pid, Kind::Heartbeat, 10, t, t);
                assert_eq!(o.poll_send(t).map(|e| e.id), Some(*pid));
                o.mark_sent(pid, t);
            }
            // Signed while disconnected: never sent.
            for (n, pid) in signed.iter().enumerate().skip(10) {
                let t = n as u64 * 100;
                o.insert(n as u64 + 1, *pid, Kind::Heartbeat, 10, t, t);
            }
            // Reconnected: the whole backlog, in flight or never sent, oldest first.
            o.reconnected(2_500);
            assert_eq!(sends(&mut o, 2_500, 2_700), signed, "seed {seed}");
            // Sent together and never acked: the resend timeout (1 s, plus one jitter for the
            // burst) brings them back together, in order again.
            let mut b = Outbox::new(cfg.clone(), seed);
            for (n, pid) in signed.iter().enumerate() {
                b.insert(n as u64 + 1, *pid, Kind::Heartbeat, 10, 0, 0);
            }
            assert_eq!(sends(&mut b, 0, 0), signed, "seed {seed}");
            assert_eq!(sends(&mut b, 1, 2_500), signed, "seed {seed}");
            // A restart loads the rows (in any order) into a new index: sent in signing order.
            let mut r = Outbox::new(cfg.clone(), seed);
            for n in [
                5u32, 1, 20, 3, 2, 4, 19, 18, 17, 16, 6, 7, 8, 9, 10, 15, 14, 13, 12, 11,
            ] {
                r.insert(u64::from(n), id(n), Kind::Heartbeat, 10, 0, 30_000);
            }
            assert_eq!(sends(&mut r, 30_000, 30_000), signed, "seed {seed}");
        }
    }

    #[test]
    fn eviction_takes_oldest_low_priority_first_and_never_critical() {
        let mut o = Outbox::new(small(), 1);
        o.insert(1, id(1), Kind::Witness, 100, 0, 0);
        o.insert(2, id(2), Kind::Heartbeat, 100, 0, 0);
        o.insert(3, id(3), Kind::BandwidthReceipt, 100, 0, 0);
        o.insert(4, id(4), Kind::Heartbeat, 100, 0, 0);
        // Full by count: a new witness evicts the oldest heartbeat.
        assert_eq!(o.make_room(Kind::Witness, 100), Ok(vec![id(2)]));
        // A heartbeat may not evict a witness, only heartbeats.
        assert_eq!(o.make_room(Kind::Heartbeat, 100), Ok(vec![id(2)]));
        o.remove(&id(2));
        o.remove(&id(4));
        o.insert(5, id(5), Kind::Onboard, 100, 0, 0);
        o.insert(6, id(6), Kind::BandwidthReceipt, 100, 0, 0);
        // Now: witness, receipt, onboard, receipt. A heartbeat cannot displace any of them.
        assert_eq!(o.make_room(Kind::Heartbeat, 10), Err(Full));
        // A receipt may displace the witness.
        assert_eq!(o.make_room(Kind::BandwidthReceipt, 10), Ok(vec![id(1)]));
        o.remove(&id(1));
        // Critical only: nothing can be evicted.
        o.insert(7, id(7), Kind::Onboard, 100, 0, 0);
        assert_eq!(o.make_room(Kind::BandwidthReceipt, 10), Err(Full));
        // Byte limit too.
        let mut o = Outbox::new(small(), 1);
        o.insert(1, id(1), Kind::Heartbeat, 600, 0, 0);
        assert_eq!(o.make_room(Kind::Witness, 500), Ok(vec![id(1)]));
        assert_eq!(o.make_room(Kind::Witness, 300), Ok(vec![]));
    }

    #[test]
    fn poll_timeout_tracks_due_and_resends() {
        let mut o = Outbox::new(small(), 1);
        assert_eq!(o.poll_timeout(), None);
        o.insert(1, id(1), Kind::Witness, 10, 0, 500);
        assert_eq!(o.poll_timeout(), Some(500));
        let e = o.poll_send(500).unwrap();
        o.mark_sent(&e.id, 500);
        let t = o.poll_timeout().unwrap();
        assert!((1_500..=1_700).contains(&t), "{t}");
        assert_eq!(o.oldest_created_ms(), Some(0));
        o.remove(&id(1));
        assert_eq!(o.poll_timeout(), None);
    }
}
