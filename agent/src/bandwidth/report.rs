//! What a test hands back: the measurer's and the prover's reports, the figures of each
//! direction, and the receipt outcome those figures give.

use std::time::Duration;

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{BwFailure, Direction, MAX_WIRE_OVERHEAD_PERMILLE, Measurement, Outcome};

use super::control::ms_u32;
use super::measurer::MeasurerError;
use super::negotiate::RefuseReason;
use super::prover::ProverError;
use super::quic::SocketBuffers;
use super::stats::{self, Summary};
use super::stream::End;

/// The figures and evidence of one direction, beyond the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionDetail {
    /// Which direction.
    pub direction: Direction,
    /// How it ended.
    pub end: End,
    /// Verified bytes (as the receiver counted them).
    pub bytes: u64,
    /// From the first byte to the end.
    pub duration: Duration,
    /// The figures, when measured.
    pub summary: Option<Summary>,
    /// The loaded RTT (median of the pings during the direction), µs.
    pub rtt_loaded_us: u32,
    /// The receiver's 100 ms bins.
    pub bins: Vec<u64>,
    /// IP-layer bytes per payload byte in the steady state, ‰, as measured by the measurer
    /// and applied to the figures (1000 when not measured).
    pub wire_permille: u64,
}

impl DirectionDetail {
    /// A direction that ended before any byte was measured.
    pub(super) fn failed(direction: Direction, failure: BwFailure) -> DirectionDetail {
        DirectionDetail {
            direction,
            end: End::Failed(failure),
            bytes: 0,
            duration: Duration::ZERO,
            summary: None,
            rtt_loaded_us: 0,
            bins: Vec::new(),
            wire_permille: 1_000,
        }
    }
}

/// What a measurer hands back: the receipts (to outbox) and the details.
#[derive(Clone, Debug)]
pub struct MeasureReport {
    /// The test id.
    pub test_id: [u8; 16],
    /// One receipt per requested direction, in test order, signed by the measurer and
    /// co-signed by the prover where it agreed. Each passes [`wisp_protocol::envelope::open`].
    pub receipts: Vec<Envelope>,
    /// The prover's reason when it refused.
    pub refusal: Option<RefuseReason>,
    /// The directions that ran.
    pub details: Vec<DirectionDetail>,
    /// Idle RTT, µs (0 if not measured).
    pub rtt_idle_us: u32,
    /// The measurer's socket buffers.
    pub sockets: Option<SocketBuffers>,
    /// UDP payload bytes the measurer sent plus received on the test connection.
    pub wire_bytes: u64,
    /// Why the measurer could not run the test for a reason of its own (its endpoint, its
    /// address); `receipts` is then empty: nothing about the prover was learnt.
    pub local_error: Option<MeasurerError>,
    /// The prover never answered the invitation (the request timed out, or its connection
    /// was lost or could not be made): `receipts` record a failed test, and the caller may
    /// rather try again later (a restarted prover is reached on a new connection).
    pub unanswered: bool,
}

/// What a prover hands back.
#[derive(Debug)]
pub struct ProverReport {
    /// The test id.
    pub test_id: [u8; 16],
    /// The receipts the prover co-signed, complete (measurer and prover signatures).
    pub receipts: Vec<Envelope>,
    /// Why the session ended early, if it did. The daemon's status and logs show its text.
    pub error: Option<ProverError>,
}

/// Scales a measured direction's figures to the IP layer (see
/// [`stats::wire_ratio_permille`]).
pub(super) fn to_ip_layer(detail: &mut DirectionDetail, samples: &[(Duration, u64)]) {
    if let Some(s) = detail.summary {
        let permille =
            stats::wire_ratio_permille(detail.duration, &s, samples, MAX_WIRE_OVERHEAD_PERMILLE);
        detail.wire_permille = permille;
        detail.summary = Some(s.scaled(permille));
    }
}

/// The receipt outcome of a direction: figures only when it ended at a cap with a summary.
pub(super) fn outcome_of(d: &DirectionDetail, rtt_idle: u32) -> Outcome {
    match (d.end, d.summary) {
        (End::Failed(f), _) => Outcome::Failed(f),
        (End::ByteCap | End::TimeCap, Some(s)) if !d.duration.is_zero() => {
            Outcome::Measured(Measurement {
                bytes: d.bytes,
                duration_ms: ms_u32(d.duration).max(1),
                median_bps: s.median_bps,
                p10_bps: s.p10_bps,
                rtt_idle_us: rtt_idle,
                rtt_loaded_us: d.rtt_loaded_us,
            })
        }
        // Ended at a cap before a measurable time passed: no figure to give.
        _ => Outcome::Failed(BwFailure::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(end: End, summary: Option<Summary>) -> DirectionDetail {
        DirectionDetail {
            direction: Direction::Up,
            end,
            bytes: 1000,
            duration: Duration::from_millis(500),
            summary,
            rtt_loaded_us: 900,
            bins: vec![],
            wire_permille: 1_000,
        }
    }

    #[test]
    fn figures_only_for_a_direction_that_ended_at_a_cap() {
        let s = Summary {
            median_bps: 10,
            p10_bps: 5,
            warmup_bins: 0,
            windows: 1,
        };
        assert_eq!(
            outcome_of(&detail(End::TimeCap, Some(s)), 300),
            Outcome::Measured(Measurement {
                bytes: 1000,
                duration_ms: 500,
                median_bps: 10,
                p10_bps: 5,
                rtt_idle_us: 300,
                rtt_loaded_us: 900,
            })
        );
        assert_eq!(
            outcome_of(&detail(End::Failed(BwFailure::BadContent), Some(s)), 300),
            Outcome::Failed(BwFailure::BadContent)
        );
        assert_eq!(
            outcome_of(&detail(End::ByteCap, None), 300),
            Outcome::Failed(BwFailure::Truncated)
        );
    }
}
