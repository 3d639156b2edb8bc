//! One session of one subscriber with one hotspot, as a sans-IO state machine.
//!
//! # Call order
//!
//! Like quinn-proto's `Connection`, a [`Session`] never does I/O; its driver does:
//!
//! 1. [`Session::new`] when the client starts using the hotspot, with a fresh random session id
//!    (16 bytes from the driver's CSPRNG) and the time.
//! 2. Whenever something happens, feed it in:
//!    - [`Session::handle_counters`] with the client's own cumulative byte counts for the
//!      session (down: delivered to the subscriber; up: sent by it);
//!    - [`Session::handle_answer_bytes`] (or [`Session::handle_answer`]) with each answer the
//!      hotspot sends on [`USAGE_PROTOCOL`](wisp_protocol::msg::USAGE_PROTOCOL);
//!    - [`Session::handle_epoch`] when the client learns of a new epoch;
//!    - [`Session::handle_close`] when the subscriber disconnects.
//! 3. Then call [`Session::poll_receipt`] with the time, and send what it returns (a receipt
//!    envelope signed by the subscriber, at most
//!    [`USAGE_REQUEST_MAX`](wisp_protocol::msg::USAGE_REQUEST_MAX) bytes) as one request.
//! 4. Arm a timer for [`Session::poll_timeout`] (Unix ms; `None`: nothing to do until the next
//!    input) and call [`Session::poll_receipt`] when it fires.
//!
//! [`Session::status`] is a snapshot for display at any time.
//!
//! # Cadence
//!
//! A receipt is due when `receipt_every_bytes` (down and up together) were counted since the
//! last one, or `receipt_every_ms` after the first byte counted since the last one, whichever
//! comes first; never while nothing changed; and never sooner than `receipt_min_interval_ms`
//! after the last one, which bounds the signing rate on a fast link ([`Policy`]).
//!
//! # Disputes: what an honest client signs
//!
//! The client and the hotspot count at different layers (the client the bytes its sockets
//! moved, the hotspot the frames it forwarded), so their totals drift by a little. When the
//! hotspot disputes a receipt with its own totals, the client compares them with what it had
//! counted itself when it signed that receipt, per direction:
//!
//! - within [`Policy::tolerance`] of its own count (or below it): the client **adopts** the
//!   hotspot's view — from then on it signs its own count plus the difference the hotspot
//!   reported — and signs again at once;
//! - above it: the client will not sign that much, so the session ends
//!   ([`EndReason::DisputeBeyondTolerance`]); the hotspot stops serving a client it cannot agree
//!   with anyway.
//!
//! **Whatever the hotspot answers, no receipt ever states more than the client's own count plus
//! the tolerance of that count, in either direction.** Nor does one state less than the last
//! receipt the hotspot co-signed: that one may have reached the oracle, which refuses a
//! session's counters that go back (`usage_counters_decreased`). More than `max_disputes` disputes in a
//! row end the session too ([`EndReason::TooManyDisputes`]), so a hotspot that disputes every
//! receipt cannot keep the client signing. A `Refused` answer ends the session.

use std::collections::VecDeque;

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::decode_canonical;
use wisp_protocol::msg::{USAGE_ANSWER_MAX, USAGE_BYTES_MAX, UsageAnswer, UsageReceipt};
use wisp_protocol::units::{EpochNo, UnixMs};
use wisp_protocol::{EnvelopeError, NodeId, Reason, SubscriberId};

use crate::key::SubscriberKey;

/// How many signed receipts a session remembers for the hotspot's answers. An answer to an
/// older one is ignored: the hotspot answers each receipt in turn, and a later receipt repeats
/// the totals of an earlier one anyway.
pub const SENT_MAX: usize = 16;

/// When a client signs receipts, and how far it follows a hotspot that counts otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Policy {
    /// Sign after this many bytes, down and up together. Default 4 MiB.
    pub receipt_every_bytes: u64,
    /// Sign this long after the first byte counted since the last receipt. Default 10 s.
    pub receipt_every_ms: u64,
    /// Never sign sooner than this after the last receipt (bounds the signing rate on a fast
    /// link; at 2.4 Gbit/s, 4 MiB takes 14 ms). Default 1 s; at most `receipt_every_ms`.
    pub receipt_min_interval_ms: u64,
    /// The tolerance's floor, bytes per direction. Default 64 KiB.
    pub tolerance_bytes: u64,
    /// The tolerance as a share of the client's own count, per mille. Default 10 (1 %);
    /// at most 1000.
    pub tolerance_permille: u64,
    /// Disputes in a row after which the session ends. Default 3.
    pub max_disputes: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            receipt_every_bytes: 4 << 20,
            receipt_every_ms: 10_000,
            receipt_min_interval_ms: 1_000,
            tolerance_bytes: 64 << 10,
            tolerance_permille: 10,
            max_disputes: 3,
        }
    }
}

impl Policy {
    /// How many bytes above its own count `counted` the client will sign in one direction:
    /// `max(tolerance_bytes, counted × tolerance_permille / 1000)`.
    pub fn tolerance(&self, counted: u64) -> u64 {
        let share = u128::from(counted) * u128::from(self.tolerance_permille) / 1000;
        u64::try_from(share)
            .unwrap_or(u64::MAX)
            .max(self.tolerance_bytes)
    }

    fn validate(&self) -> Result<(), SessionError> {
        if self.receipt_every_bytes == 0 {
            return Err(SessionError::Policy("receipt_every_bytes is 0"));
        }
        if self.receipt_every_ms == 0 {
            return Err(SessionError::Policy("receipt_every_ms is 0"));
        }
        if self.receipt_min_interval_ms > self.receipt_every_ms {
            return Err(SessionError::Policy(
                "receipt_min_interval_ms is above receipt_every_ms",
            ));
        }
        if self.tolerance_permille > 1000 {
            return Err(SessionError::Policy("tolerance_permille is above 1000"));
        }
        Ok(())
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The hotspot is the subscriber's own key (a key cannot serve itself, §5.10).
    #[error("the hotspot is the subscriber's own key")]
    HotspotIsSubscriber,
    /// A policy value is out of range.
    #[error("policy: {0}")]
    Policy(&'static str),
}

/// Byte counts of a session, both directions.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Totals {
    /// Bytes delivered to the subscriber.
    pub bytes_down: u64,
    /// Bytes the subscriber sent.
    pub bytes_up: u64,
}

impl Totals {
    fn sum(self) -> u64 {
        self.bytes_down.saturating_add(self.bytes_up)
    }
}

/// Whether the session goes on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionState {
    /// Receipts are signed as traffic is counted.
    Active,
    /// No more receipts: why.
    Ended(EndReason),
}

/// Why a session ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndReason {
    /// The hotspot refused a receipt, with this reason (§8).
    Refused(Reason),
    /// The hotspot's totals exceed what the client counted plus its tolerance.
    DisputeBeyondTolerance {
        /// The disputed receipt.
        seq: u64,
        /// The hotspot's totals.
        hotspot: Totals,
        /// The client's own counts when it signed that receipt.
        counted: Totals,
    },
    /// More than [`Policy::max_disputes`] disputes in a row.
    TooManyDisputes,
    /// The driver closed the session ([`Session::handle_close`]).
    Closed,
}

/// What an answer did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AnswerOutcome {
    /// The hotspot co-signed receipt `seq`, which stated these totals.
    Agreed {
        /// The receipt.
        seq: u64,
        /// Its totals.
        totals: Totals,
    },
    /// The hotspot disputed receipt `seq` with totals within the tolerance: the client adopts
    /// them and signs again.
    Adopted {
        /// The disputed receipt.
        seq: u64,
        /// The hotspot's totals for it.
        hotspot: Totals,
    },
    /// The answer ended the session.
    Ended(EndReason),
    /// The answer changed nothing: it names a receipt this session did not sign or no longer
    /// remembers, a dispute of a receipt older than one already settled, or the session had
    /// ended.
    Ignored,
}

/// Why answer bytes were refused (the session is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// More than [`USAGE_ANSWER_MAX`] bytes.
    #[error("usage answer of {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a usage answer in canonical postcard form.
    #[error("not a usage answer: {0}")]
    Decode(EnvelopeError),
}

/// The receipt the hotspot last co-signed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Agreed {
    /// Its sequence number.
    pub seq: u64,
    /// Its totals.
    pub totals: Totals,
}

/// A snapshot of a session, for display.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Status {
    /// The session id.
    pub session: [u8; 16],
    /// The hotspot.
    pub hotspot: NodeId,
    /// The subscriber.
    pub subscriber: SubscriberId,
    /// The epoch the next receipt states.
    pub epoch: EpochNo,
    /// Active or ended.
    pub state: SessionState,
    /// The client's own counts.
    pub counted: Totals,
    /// The totals of the last receipt signed (zero before the first).
    pub signed: Totals,
    /// The last receipt's sequence number (0 before the first).
    pub seq: u64,
    /// The receipt the hotspot last co-signed.
    pub agreed: Option<Agreed>,
    /// Disputes answered so far.
    pub disputes: u64,
    /// When the next receipt is due ([`Session::poll_timeout`]).
    pub next_receipt_ms: Option<UnixMs>,
}

/// A receipt signed and not yet forgotten, for its answer.
#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u64,
    signed: Totals,
    /// The client's own counts when it signed.
    counted: Totals,
}

/// One session of one subscriber with one hotspot. See the [module docs](self) for the call
/// order, the cadence and the dispute rule.
#[derive(Debug)]
pub struct Session {
    key: SubscriberKey,
    hotspot: NodeId,
    session: [u8; 16],
    epoch: EpochNo,
    start_ms: UnixMs,
    policy: Policy,
    state: SessionState,
    closing: bool,
    /// The client's own cumulative counts (never decrease).
    counted: Totals,
    /// `counted` when the last receipt was signed.
    counted_at_last: Totals,
    /// When counting first changed since the last receipt.
    dirty_since_ms: Option<UnixMs>,
    /// A dispute was adopted: sign again as soon as the interval allows.
    resign: bool,
    /// What the hotspot counted minus what the client did, from the last adopted dispute.
    adjust: (i64, i64),
    seq: u64,
    signed: Totals,
    last_receipt_ms: Option<UnixMs>,
    sent: VecDeque<Sent>,
    agreed: Option<Agreed>,
    /// The highest totals the hotspot co-signed, per direction: no receipt states less.
    agreed_floor: Totals,
    /// The latest receipt a dispute was adopted for: older disputes are stale.
    adopted_seq: u64,
    disputes_in_a_row: u32,
    disputes: u64,
}

impl Session {
    /// A session of `key`'s subscriber with `hotspot`, with the random id `session_id`, the
    /// current `epoch` as the client knows it, started at `start_ms`.
    pub fn new(
        key: SubscriberKey,
        hotspot: NodeId,
        session_id: [u8; 16],
        epoch: EpochNo,
        start_ms: UnixMs,
        policy: Policy,
    ) -> Result<Self, SessionError> {
        if key.node_id() == hotspot {
            return Err(SessionError::HotspotIsSubscriber);
        }
        policy.validate()?;
        Ok(Session {
            key,
            hotspot,
            session: session_id,
            epoch,
            start_ms,
            policy,
            state: SessionState::Active,
            closing: false,
            counted: Totals::default(),
            counted_at_last: Totals::default(),
            dirty_since_ms: None,
            resign: false,
            adjust: (0, 0),
            seq: 0,
            signed: Totals::default(),
            last_receipt_ms: None,
            sent: VecDeque::with_capacity(SENT_MAX),
            agreed: None,
            agreed_floor: Totals::default(),
            adopted_seq: 0,
            disputes_in_a_row: 0,
            disputes: 0,
        })
    }

    /// The client's own cumulative counts for the session at `now_ms`. Counts never go back: a
    /// value below one already given is ignored (a counter reset in the driver must not take
    /// back bytes already signed for). Counts are capped at
    /// [`USAGE_BYTES_MAX`], the encoding's bound.
    pub fn handle_counters(&mut self, bytes_down: u64, bytes_up: u64, now_ms: UnixMs) {
        let new = Totals {
            bytes_down: bytes_down.min(USAGE_BYTES_MAX).max(self.counted.bytes_down),
            bytes_up: bytes_up.min(USAGE_BYTES_MAX).max(self.counted.bytes_up),
        };
        if new != self.counted && self.dirty_since_ms.is_none() {
            self.dirty_since_ms = Some(now_ms);
        }
        self.counted = new;
    }

    /// A new epoch, as the client learnt it: later receipts state it. An epoch older than the
    /// current one is ignored.
    pub fn handle_epoch(&mut self, epoch: EpochNo) {
        self.epoch = self.epoch.max(epoch);
    }

    /// The subscriber disconnects: the next [`Session::poll_receipt`] signs a last receipt at
    /// once if anything was counted since the previous one, and the session ends
    /// ([`EndReason::Closed`]).
    pub fn handle_close(&mut self) {
        if self.state != SessionState::Active {
            return;
        }
        self.closing = true;
        if self.target() == self.signed {
            self.state = SessionState::Ended(EndReason::Closed);
        }
    }

    /// Decodes and handles an answer the hotspot sent: at most [`USAGE_ANSWER_MAX`] bytes,
    /// canonical postcard, as every payload (`envelope::decode_canonical`).
    pub fn handle_answer_bytes(&mut self, bytes: &[u8]) -> Result<AnswerOutcome, AnswerError> {
        if bytes.len() > USAGE_ANSWER_MAX {
            return Err(AnswerError::TooLarge {
                len: bytes.len(),
                max: USAGE_ANSWER_MAX,
            });
        }
        let answer: UsageAnswer = decode_canonical(bytes).map_err(AnswerError::Decode)?;
        Ok(self.handle_answer(answer))
    }

    /// Handles the hotspot's answer to one of this session's receipts (see the module docs for
    /// the dispute rule).
    pub fn handle_answer(&mut self, answer: UsageAnswer) -> AnswerOutcome {
        if self.state != SessionState::Active {
            return AnswerOutcome::Ignored;
        }
        match answer {
            UsageAnswer::Refused { reason } => {
                self.end(EndReason::Refused(Reason::from_code(reason)))
            }
            UsageAnswer::Agreed { seq } => {
                let Some(sent) = self.sent_receipt(seq) else {
                    return AnswerOutcome::Ignored;
                };
                self.disputes_in_a_row = 0;
                self.agreed_floor = Totals {
                    bytes_down: self.agreed_floor.bytes_down.max(sent.signed.bytes_down),
                    bytes_up: self.agreed_floor.bytes_up.max(sent.signed.bytes_up),
                };
                if self.agreed.is_none_or(|a| a.seq < seq) {
                    self.agreed = Some(Agreed {
                        seq,
                        totals: sent.signed,
                    });
                }
                AnswerOutcome::Agreed {
                    seq,
                    totals: sent.signed,
                }
            }
            UsageAnswer::Disputed {
                seq,
                bytes_down,
                bytes_up,
            } => {
                let Some(sent) = self.sent_receipt(seq) else {
                    return AnswerOutcome::Ignored;
                };
                if self.agreed.is_some_and(|a| a.seq >= seq) || self.adopted_seq >= seq {
                    return AnswerOutcome::Ignored;
                }
                self.disputes += 1;
                self.disputes_in_a_row += 1;
                if self.disputes_in_a_row > self.policy.max_disputes {
                    return self.end(EndReason::TooManyDisputes);
                }
                let hotspot = Totals {
                    bytes_down,
                    bytes_up,
                };
                let within = |theirs: u64, ours: u64| {
                    theirs <= ours.saturating_add(self.policy.tolerance(ours))
                };
                if !within(bytes_down, sent.counted.bytes_down)
                    || !within(bytes_up, sent.counted.bytes_up)
                {
                    return self.end(EndReason::DisputeBeyondTolerance {
                        seq,
                        hotspot,
                        counted: sent.counted,
                    });
                }
                // Both values are at most 2^48 plus a tolerance (≤ 2^49), so the differences fit.
                let diff = |theirs: u64, ours: u64| {
                    i64::try_from(i128::from(theirs) - i128::from(ours)).unwrap_or(0)
                };
                self.adjust = (
                    diff(bytes_down, sent.counted.bytes_down),
                    diff(bytes_up, sent.counted.bytes_up),
                );
                self.adopted_seq = seq;
                self.resign = self.target() != self.signed;
                AnswerOutcome::Adopted { seq, hotspot }
            }
        }
    }

    /// The next receipt to send, if one is due at `now_ms`: the subscriber-signed envelope of a
    /// [`UsageReceipt`] with the next `seq` (from 1) and the session's cumulative totals.
    pub fn poll_receipt(&mut self, now_ms: UnixMs) -> Option<Vec<u8>> {
        if self.poll_timeout()? > now_ms {
            return None;
        }
        let totals = self.target();
        let receipt = UsageReceipt {
            session: ByteArray(self.session),
            hotspot: self.hotspot,
            subscriber: self.key.id(),
            epoch: self.epoch,
            seq: self.seq + 1,
            bytes_down: totals.bytes_down,
            bytes_up: totals.bytes_up,
            signed_ms: now_ms,
            // A start after `now` (a clock that stepped back) would break §5.10's rule.
            start_ms: (self.start_ms <= now_ms).then_some(self.start_ms),
        };
        // Cannot fail: the receipt names our key, a hotspot that is not ours (checked in
        // `new`), a seq from 1, totals capped at USAGE_BYTES_MAX and a start ≤ signed_ms.
        let bytes = self.key.sign_receipt(&receipt).ok()?;
        self.seq = receipt.seq;
        self.signed = totals;
        self.counted_at_last = self.counted;
        self.dirty_since_ms = None;
        self.resign = false;
        self.last_receipt_ms = Some(now_ms);
        if self.sent.len() == SENT_MAX {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            seq: self.seq,
            signed: totals,
            counted: self.counted,
        });
        if self.closing {
            self.state = SessionState::Ended(EndReason::Closed);
        }
        Some(bytes)
    }

    /// When [`Session::poll_receipt`] will next have a receipt (Unix ms; at or before now if it
    /// has one now), or `None` while nothing changed or the session has ended.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        if self.state != SessionState::Active || self.target() == self.signed {
            return None;
        }
        if self.closing {
            return Some(0);
        }
        let counted = self
            .counted
            .sum()
            .saturating_sub(self.counted_at_last.sum());
        let due = if self.resign || counted >= self.policy.receipt_every_bytes {
            0
        } else {
            self.dirty_since_ms
                .map_or(0, |t| t.saturating_add(self.policy.receipt_every_ms))
        };
        let floor = self
            .last_receipt_ms
            .map_or(0, |t| t.saturating_add(self.policy.receipt_min_interval_ms));
        Some(due.max(floor))
    }

    /// A snapshot of the session.
    pub fn status(&self) -> Status {
        Status {
            session: self.session,
            hotspot: self.hotspot,
            subscriber: self.key.id(),
            epoch: self.epoch,
            state: self.state,
            counted: self.counted,
            signed: self.signed,
            seq: self.seq,
            agreed: self.agreed,
            disputes: self.disputes,
            next_receipt_ms: self.poll_timeout(),
        }
    }

    /// The totals the next receipt states: the client's own counts, moved by the difference
    /// adopted from the last dispute, never below what the hotspot co-signed already nor above
    /// own count plus tolerance. (The floor is below the ceiling: a co-signed receipt stated at
    /// most the counts then plus their tolerance, and counts and tolerance only grow.)
    fn target(&self) -> Totals {
        let one = |counted: u64, adjust: i64, floor: u64| {
            let ceiling = counted
                .saturating_add(self.policy.tolerance(counted))
                .min(USAGE_BYTES_MAX);
            let moved = i128::from(counted) + i128::from(adjust);
            u64::try_from(moved.max(0))
                .map_or(ceiling, |m| m.min(ceiling))
                .max(floor.min(ceiling))
        };
        Totals {
            bytes_down: one(
                self.counted.bytes_down,
                self.adjust.0,
                self.agreed_floor.bytes_down,
            ),
            bytes_up: one(
                self.counted.bytes_up,
                self.adjust.1,
                self.agreed_floor.bytes_up,
            ),
        }
    }

    fn sent_receipt(&self, seq: u64) -> Option<Sent> {
        self.sent.iter().find(|s| s.seq == seq).copied()
    }

    fn end(&mut self, why: EndReason) -> AnswerOutcome {
        self.state = SessionState::Ended(why);
        AnswerOutcome::Ended(why)
    }
}

#[cfg(test)]
mod tests;
