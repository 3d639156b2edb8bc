//! The daemon's proof of backhaul: who measures whom this epoch, and the decisions around the
//! tests that the daemon's `wisp_agent::bandwidth` runs. No I/O here: time and randomness come
//! in as arguments, and the shell sends the invitations, queues the tests and outboxes the
//! receipts.
//!
//! 1. The oracle publishes the epoch's seed and, right after it, the epoch's measurer set
//!    (`wisp/v1/measurers/{part}`, retained, oracle-signed). [`Backhaul::on_measurer_set`]
//!    assembles the parts; once the seed and the whole set name the same epoch there is an
//!    [`EpochView`].
//! 2. As a prover, the node computes its own `k` measurers (one rendezvous score per candidate)
//!    and, at a random moment in the first quarter of the epoch, invites each of them over
//!    `/wisp/bw/1` ([`Backhaul::poll_invites`]).
//! 3. As a measurer, the node checks each invitation ([`Backhaul::on_invite`]): its role, the
//!    epoch, the assignment, one test per prover per epoch. Accepted invitations are queued;
//!    the measurer runs them one at a time and the prover answers its request as usual.
//! 4. Both sides put the co-signed receipts in their outbox; the oracle deduplicates.
//! 5. Both sides sum a finished test up from its receipts ([`summarize`]) for the log; the
//!    prover keeps its latest summary for `/status`, the metrics and its signed status report.

use std::collections::HashSet;

use wisp_protocol::envelope;
use wisp_protocol::msg::{
    AssemblyError, BackhaulOutcome, BackhaulSummary, BandwidthReceipt, BwFailure, Direction,
    EpochSeed, MeasurerSet, MeasurerSetAssembly, Outcome,
};
use wisp_protocol::schedule;
use wisp_protocol::units::EpochNo;
use wisp_protocol::{Kind, NodeId};

use crate::bandwidth::EpochView;
use crate::bandwidth::negotiate::{self, BwInvite, INVITE_TAG, InviteRefusal};
use crate::trust::{OracleTrust, TrustError};

/// The most provers a measurer queues.
pub const MAX_QUEUED: usize = 16;

/// Why a measurer-set part was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// Not a valid oracle-signed `measurer_set`.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A part of an older epoch than the one being assembled (a stale retained message).
    #[error("a part of an older epoch")]
    Old,
    /// The part contradicts parts already held.
    #[error("a part inconsistent with the others of its epoch")]
    Inconsistent,
}

/// The proof-of-backhaul state of one node.
#[derive(Debug)]
pub struct Backhaul {
    me: NodeId,
    trust: OracleTrust,
    measurer: bool,
    assembly: MeasurerSetAssembly,
    /// The raw parts being assembled, by index (kept so that a complete set can be saved).
    raw: Vec<Option<Vec<u8>>>,
    seed: Option<EpochSeed>,
    view: Option<EpochView>,
    /// When to invite this epoch's measurers, until done.
    invite_at: Option<u64>,
    /// Provers accepted this epoch (measurer side).
    accepted: HashSet<NodeId>,
}

impl Backhaul {
    /// The state of node `me`, trusting `oracle`; `measurer` is the configured role.
    pub fn new(me: NodeId, oracle: NodeId, measurer: bool) -> Self {
        Self {
            me,
            trust: OracleTrust::new(oracle, me),
            measurer,
            assembly: MeasurerSetAssembly::new(),
            raw: Vec::new(),
            seed: None,
            view: None,
            invite_at: None,
            accepted: HashSet::new(),
        }
    }

    /// The current epoch's view, once its seed and its whole measurer set are here.
    pub fn view(&self) -> Option<&EpochView> {
        self.view.as_ref()
    }

    /// The driver's clock moved by `delta_ms`: the pending invitation time moves with it.
    pub fn clock_stepped(&mut self, delta_ms: i64) {
        self.invite_at = self.invite_at.map(|t| t.saturating_add_signed(delta_ms));
    }

    /// When the next invitations are due, if any are pending.
    pub fn invite_at(&self) -> Option<u64> {
        self.invite_at
    }

    /// The current epoch's seed arrived (from the core, after it accepted it). `r` is a random
    /// number that spreads the invitations over the epoch's first quarter.
    pub fn on_seed(&mut self, seed: &EpochSeed, now_ms: u64, r: u64) {
        if self.seed.as_ref().is_some_and(|s| s.epoch >= seed.epoch) {
            return;
        }
        self.seed = Some(seed.clone());
        self.refresh(now_ms, r);
    }

    /// A `wisp/v1/measurers/{part}` payload: verified against the pinned oracle key on the raw
    /// bytes, then assembled. Returns the whole set's parts, for saving, when this part
    /// completed the set (a repeat of a complete set returns `None`).
    pub fn on_measurer_set(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        r: u64,
    ) -> Result<Option<Vec<Vec<u8>>>, SetError> {
        let opened = envelope::open::<MeasurerSet>(bytes).map_err(TrustError::from)?;
        self.trust.check_signer(opened.signer)?;
        let part = opened.msg;
        let (epoch, index, parts) = (part.epoch, usize::from(part.part), part.parts);
        let was = self.assembly.epoch();
        let was_complete = was == Some(epoch) && self.assembly.is_complete();
        let complete = match self.assembly.add(part) {
            Ok(c) => c,
            Err(AssemblyError::OldEpoch) => return Err(SetError::Old),
            Err(AssemblyError::Inconsistent) => return Err(SetError::Inconsistent),
        };
        if was != Some(epoch) {
            self.raw = vec![None; usize::from(parts)];
        }
        self.raw[index] = Some(bytes.to_vec());
        if !complete {
            return Ok(None);
        }
        self.refresh(now_ms, r);
        if was_complete {
            return Ok(None);
        }
        Ok(Some(self.raw.iter().flatten().cloned().collect()))
    }

    /// Builds the view when the seed and the set agree, and schedules the invitations.
    fn refresh(&mut self, now_ms: u64, r: u64) {
        let Some(seed) = &self.seed else { return };
        if self.view.as_ref().is_some_and(|v| v.epoch == seed.epoch) {
            return;
        }
        let Some((epoch, eligible)) = self.assembly.set() else {
            return;
        };
        if epoch != seed.epoch {
            return;
        }
        self.view = Some(EpochView {
            epoch,
            seed: seed.seed.0,
            eligible,
            measurers_per_prover: usize::from(seed.params.measurers_per_prover),
        });
        self.accepted.clear();
        if now_ms < seed.end_ms() {
            let spread = (seed.duration_ms / 4).max(1);
            self.invite_at = Some(now_ms.max(seed.start_ms) + r % spread);
        } else {
            self.invite_at = None;
        }
    }

    /// When due, the epoch and the measurers to invite (each once per epoch).
    pub fn poll_invites(&mut self, now_ms: u64) -> Option<(EpochNo, Vec<NodeId>)> {
        let at = self.invite_at?;
        if now_ms < at {
            return None;
        }
        self.invite_at = None;
        let view = self.view.as_ref()?;
        let measurers = schedule::assign_measurers(
            &view.seed,
            &self.me,
            &view.eligible,
            view.measurers_per_prover,
        );
        Some((view.epoch, measurers))
    }

    /// The body of an invitation for `epoch`.
    pub fn invite_body(epoch: EpochNo) -> Vec<u8> {
        negotiate::encode_body(&BwInvite {
            tag: INVITE_TAG,
            epoch,
        })
    }

    /// Whether a `/wisp/bw/1` body is an invitation (else a measurer's request).
    pub fn is_invite(body: &[u8]) -> bool {
        body.first() == Some(&INVITE_TAG)
    }

    /// An invitation from `from` (the authenticated peer): the epoch to measure it in, or why
    /// not. An accepted prover is remembered for the epoch; [`Backhaul::forget`] undoes that
    /// when the test could not be queued.
    pub fn on_invite(&mut self, from: NodeId, body: &[u8]) -> Result<EpochNo, InviteRefusal> {
        let Some(invite) = negotiate::decode_body::<BwInvite>(body) else {
            return Err(InviteRefusal::BadRequest);
        };
        if invite.tag != INVITE_TAG || from == self.me {
            return Err(InviteRefusal::BadRequest);
        }
        if !self.measurer {
            return Err(InviteRefusal::NotAMeasurer);
        }
        let Some(view) = &self.view else {
            return Err(InviteRefusal::NotYet);
        };
        if invite.epoch > view.epoch {
            return Err(InviteRefusal::NotYet);
        }
        if invite.epoch < view.epoch {
            return Err(InviteRefusal::WrongEpoch);
        }
        if !schedule::is_assigned(
            &view.seed,
            &from,
            &self.me,
            &view.eligible,
            view.measurers_per_prover,
        ) {
            return Err(InviteRefusal::NotAssigned);
        }
        if self.accepted.contains(&from) {
            return Err(InviteRefusal::AlreadyMeasured);
        }
        if self.accepted.len() >= MAX_QUEUED * 4 {
            return Err(InviteRefusal::Busy);
        }
        self.accepted.insert(from);
        Ok(view.epoch)
    }

    /// When `epoch` ends (Unix ms), if it is the epoch of the seed held.
    pub fn epoch_end(&self, epoch: EpochNo) -> Option<u64> {
        self.seed
            .as_ref()
            .filter(|s| s.epoch == epoch)
            .map(EpochSeed::end_ms)
    }

    /// Forgets an accepted invitation whose test could not be queued.
    pub fn forget(&mut self, prover: &NodeId) {
        self.accepted.remove(prover);
    }
}

/// Sums up a finished test between `measurer` and the prover of `receipts` for `epoch` that
/// covered `directions` and ended at `ended_ms`. `receipts` are what this node ended with: all
/// of the measurer's, or those the prover co-signed. A direction without a receipt and without
/// a failure on record makes the test incomplete.
pub fn summarize(
    measurer: NodeId,
    epoch: EpochNo,
    ended_ms: u64,
    directions: &[Direction],
    receipts: &[BandwidthReceipt],
) -> BackhaulSummary {
    let mut s = BackhaulSummary {
        measurer,
        epoch,
        measured_ms: ended_ms,
        down_bps: None,
        up_bps: None,
        rtt_idle_us: None,
        rtt_loaded_us: None,
        outcome: BackhaulOutcome::Ok,
    };
    let mut failed = None;
    let mut missing = false;
    for &d in directions {
        match receipts
            .iter()
            .find(|r| r.direction == d)
            .map(|r| r.outcome)
        {
            Some(Outcome::Measured(m)) => {
                match d {
                    Direction::Down => s.down_bps = Some(m.median_bps),
                    Direction::Up => s.up_bps = Some(m.median_bps),
                }
                s.rtt_idle_us = Some(m.rtt_idle_us);
                s.rtt_loaded_us = Some(s.rtt_loaded_us.unwrap_or(0).max(m.rtt_loaded_us));
            }
            Some(Outcome::Failed(f)) => {
                failed.get_or_insert(f);
            }
            None => missing = true,
        }
    }
    s.outcome = match failed {
        Some(f) => BackhaulOutcome::Failed(f),
        None if missing || directions.is_empty() => BackhaulOutcome::Incomplete,
        None => BackhaulOutcome::Ok,
    };
    s
}

/// An outcome's name, as logs, `/status` and the metrics show it.
pub fn outcome_name(o: BackhaulOutcome) -> &'static str {
    match o {
        BackhaulOutcome::Ok => "ok",
        BackhaulOutcome::Failed(f) => match f {
            BwFailure::Refused => "refused",
            BwFailure::Timeout => "timeout",
            BwFailure::BadContent => "bad_content",
            BwFailure::Truncated => "truncated",
            BwFailure::Transport => "transport",
        },
        BackhaulOutcome::Incomplete => "incomplete",
    }
}

/// Splits a saved set (as [`Backhaul::on_measurer_set`] returned it) into one blob.
pub fn pack(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The parts of a blob made by [`pack`]; stops at the first malformed length (each part is
/// verified again when fed back).
pub fn unpack(mut blob: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let max = Kind::MeasurerSet.max_envelope_len();
    while blob.len() >= 4 {
        let len = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if len > max || blob.len() < 4 + len {
            break;
        }
        parts.push(blob[4..4 + len].to_vec());
        blob = &blob[4 + len..];
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::NodeKey;
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::msg::EpochParams;

    fn keys(n: u8) -> Vec<NodeKey> {
        (1..=n).map(|i| NodeKey::from_seed(&[i; 32])).collect()
    }

    fn seed(epoch: u64) -> EpochSeed {
        EpochSeed {
            epoch,
            start_ms: 1_000_000 + epoch * 60_000,
            duration_ms: 60_000,
            seed: [epoch.to_le_bytes()[0]; 32].into(),
            params: EpochParams::default(),
        }
    }

    fn set_parts(oracle: &NodeKey, epoch: u64, nodes: &[NodeId]) -> Vec<Vec<u8>> {
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable();
        MeasurerSet::split(epoch, &sorted)
            .unwrap_or_default()
            .iter()
            .map(|p| Envelope::sign(oracle, p).to_bytes())
            .collect()
    }

    #[test]
    fn invitations_go_to_the_assigned_measurers_once_seed_and_set_agree() {
        let oracle = NodeKey::from_seed(&[99; 32]);
        let nodes = keys(8);
        let ids: Vec<NodeId> = nodes.iter().map(NodeKey::id).collect();
        let me = ids[0];
        let mut b = Backhaul::new(me, oracle.id(), false);
        let s = seed(5);
        // The set first: nothing until the seed of the same epoch.
        let parts = set_parts(&oracle, 5, &ids);
        let saved = b
            .on_measurer_set(&parts[0], s.start_ms, 7)
            .unwrap_or_default();
        assert_eq!(saved, Some(parts.clone()), "complete: returned for saving");
        assert!(b.view().is_none(), "no seed yet, so no view");
        b.on_seed(&s, s.start_ms, 7);
        let view = b.view().cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(view.eligible.len(), 8);
        assert_eq!(b.invite_at(), Some(s.start_ms + 7));
        assert_eq!(b.poll_invites(s.start_ms + 6), None);
        let (epoch, measurers) = b.poll_invites(s.start_ms + 7).unwrap_or_default();
        assert_eq!(epoch, 5);
        assert_eq!(
            measurers,
            schedule::assign_measurers(&s.seed.0, &me, &view.eligible, 3)
        );
        assert!(!measurers.contains(&me));
        assert_eq!(b.poll_invites(s.start_ms + 8), None, "once per epoch");
    }

    #[test]
    fn forged_stale_and_inconsistent_parts_are_refused() {
        let oracle = NodeKey::from_seed(&[99; 32]);
        let ids: Vec<NodeId> = keys(4).iter().map(NodeKey::id).collect();
        let mut b = Backhaul::new(ids[0], oracle.id(), true);
        let forged = set_parts(&NodeKey::from_seed(&[98; 32]), 5, &ids);
        assert!(matches!(
            b.on_measurer_set(&forged[0], 0, 0),
            Err(SetError::Trust(TrustError::NotOracle { .. }))
        ));
        let mut flipped = set_parts(&oracle, 5, &ids)[0].clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            b.on_measurer_set(&flipped, 0, 0),
            Err(SetError::Trust(TrustError::Envelope(_)))
        ));
        b.on_seed(&seed(5), 0, 0);
        let good = set_parts(&oracle, 5, &ids);
        let saved = b.on_measurer_set(&good[0], 0, 0).unwrap_or_default();
        assert_eq!(
            saved,
            Some(good.clone()),
            "a complete new set is returned for saving"
        );
        assert_eq!(
            b.on_measurer_set(&good[0], 0, 0).unwrap_or_default(),
            None,
            "a repeat is not new"
        );
        let old = set_parts(&oracle, 4, &ids);
        assert!(matches!(
            b.on_measurer_set(&old[0], 0, 0),
            Err(SetError::Old)
        ));
        // Saved and fed back after a restart, the set gives the same view.
        let mut again = Backhaul::new(ids[0], oracle.id(), true);
        again.on_seed(&seed(5), 0, 0);
        for p in unpack(&pack(&good)) {
            again.on_measurer_set(&p, 0, 0).unwrap_or_default();
        }
        assert_eq!(again.view(), b.view());
    }

    fn receipt(direction: Direction, outcome: Outcome) -> BandwidthReceipt {
        BandwidthReceipt {
            test_id: [7; 16].into(),
            epoch: 5,
            prover: NodeKey::from_seed(&[1; 32]).id(),
            measurer: NodeKey::from_seed(&[2; 32]).id(),
            direction,
            outcome,
        }
    }

    fn measured(median_bps: u64, rtt_loaded_us: u32) -> Outcome {
        Outcome::Measured(wisp_protocol::msg::Measurement {
            bytes: 1 << 20,
            duration_ms: 1_000,
            median_bps,
            p10_bps: median_bps / 2,
            rtt_idle_us: 900,
            rtt_loaded_us,
        })
    }

    #[test]
    fn a_test_is_summed_up_from_its_receipts() {
        use BackhaulOutcome::{Failed, Incomplete, Ok};
        let both = [Direction::Down, Direction::Up];
        let down = |o| receipt(Direction::Down, o);
        let up = |o| receipt(Direction::Up, o);
        let timeout = Outcome::Failed(BwFailure::Timeout);
        let refused = Outcome::Failed(BwFailure::Refused);
        // (receipts, down, up, loaded rtt, outcome)
        let cases = [
            (
                vec![down(measured(90, 3_000)), up(measured(40, 5_000))],
                Some(90),
                Some(40),
                Some(5_000),
                Ok,
            ),
            (
                vec![up(measured(40, 5_000)), down(timeout)],
                None,
                Some(40),
                Some(5_000),
                Failed(BwFailure::Timeout),
            ),
            (
                vec![down(refused), up(timeout)],
                None,
                None,
                None,
                Failed(BwFailure::Refused),
            ),
            // The prover declined to co-sign the upload's figure: no receipt for it.
            (
                vec![down(measured(90, 3_000))],
                Some(90),
                None,
                Some(3_000),
                Incomplete,
            ),
            (vec![], None, None, None, Incomplete),
        ];
        let measurer = NodeKey::from_seed(&[2; 32]).id();
        for (i, (receipts, down_bps, up_bps, loaded, outcome)) in cases.into_iter().enumerate() {
            let s = summarize(measurer, 5, 1_234, &both, &receipts);
            assert_eq!(
                (s.down_bps, s.up_bps, s.rtt_loaded_us, s.outcome),
                (down_bps, up_bps, loaded, outcome),
                "case {i}"
            );
            assert_eq!(s.rtt_idle_us, loaded.map(|_| 900), "case {i}");
            assert_eq!((s.measurer, s.epoch, s.measured_ms), (measurer, 5, 1_234));
        }
        // A test of one direction is ok with that direction's figure alone.
        let s = summarize(
            measurer,
            5,
            0,
            &[Direction::Up],
            &[receipt(Direction::Up, measured(40, 1))],
        );
        assert_eq!((s.down_bps, s.up_bps, s.outcome), (None, Some(40), Ok));
        assert_eq!(outcome_name(s.outcome), "ok");
        assert_eq!(outcome_name(Failed(BwFailure::BadContent)), "bad_content");
    }

    #[test]
    fn a_measurer_takes_only_invitations_it_is_assigned_once_per_epoch() {
        let oracle = NodeKey::from_seed(&[99; 32]);
        let nodes = keys(10);
        let ids: Vec<NodeId> = nodes.iter().map(NodeKey::id).collect();
        let s = seed(5);
        let parts = set_parts(&oracle, 5, &ids);
        // Find a prover and one of its measurers, and a node not assigned to it.
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let prover = ids[0];
        let assigned = schedule::assign_measurers(&s.seed.0, &prover, &sorted, 3);
        let measurer = assigned[0];
        let other = *ids
            .iter()
            .find(|i| **i != prover && !assigned.contains(i))
            .unwrap_or_else(|| unreachable!());

        let mut m = Backhaul::new(measurer, oracle.id(), true);
        let body = Backhaul::invite_body(5);
        assert_eq!(
            m.on_invite(prover, &body),
            Err(InviteRefusal::NotYet),
            "no view yet"
        );
        m.on_seed(&s, s.start_ms, 0);
        m.on_measurer_set(&parts[0], s.start_ms, 0)
            .unwrap_or_default();
        assert_eq!(
            m.on_invite(prover, &Backhaul::invite_body(4)),
            Err(InviteRefusal::WrongEpoch)
        );
        assert_eq!(
            m.on_invite(prover, &Backhaul::invite_body(6)),
            Err(InviteRefusal::NotYet),
            "a later epoch than the measurer's: it is behind"
        );
        assert_eq!(
            m.on_invite(prover, &[INVITE_TAG]),
            Err(InviteRefusal::BadRequest)
        );
        assert_eq!(m.on_invite(prover, &body), Ok(5));
        assert_eq!(
            m.on_invite(prover, &body),
            Err(InviteRefusal::AlreadyMeasured)
        );
        m.forget(&prover);
        assert_eq!(
            m.on_invite(prover, &body),
            Ok(5),
            "forgotten: may be queued again"
        );

        let mut not = Backhaul::new(other, oracle.id(), true);
        not.on_seed(&s, s.start_ms, 0);
        not.on_measurer_set(&parts[0], s.start_ms, 0)
            .unwrap_or_default();
        assert_eq!(
            not.on_invite(prover, &body),
            Err(InviteRefusal::NotAssigned)
        );

        let mut off = Backhaul::new(measurer, oracle.id(), false);
        off.on_seed(&s, s.start_ms, 0);
        off.on_measurer_set(&parts[0], s.start_ms, 0)
            .unwrap_or_default();
        assert_eq!(
            off.on_invite(prover, &body),
            Err(InviteRefusal::NotAMeasurer)
        );
        assert!(Backhaul::is_invite(&body));
    }
}
