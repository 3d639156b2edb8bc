use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, Message};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::EpochNo;

use super::invalid;

/// Which way the bytes flowed, seen from the prover.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Measurer → prover (the prover's download).
    Down,
    /// Prover → measurer (the prover's upload).
    Up,
}

/// The most a measurement's rates may exceed its verified payload rate, in parts per thousand:
/// rates are IP-layer rates (the verified stream bytes plus the IP, UDP and QUIC bytes of the
/// datagrams that carried them), and that overhead is a few percent at full-size datagrams.
pub const MAX_WIRE_OVERHEAD_PERMILLE: u64 = 1_100;

/// The receiver counts verified bytes in bins of this many milliseconds; rates are taken over
/// whole bins.
pub const RATE_BIN_MS: u32 = 100;
/// A throughput window, milliseconds ([`Measurement::median_bps`] is the median of these).
pub const RATE_WINDOW_MS: u32 = 1_000;

/// The span of received bytes, in milliseconds, that the median rate of a test lasting
/// `duration_ms` is certain to have been measured over: one full window; for a test shorter
/// than a window, its whole bins; for a test shorter than one bin, its duration. The bytes of
/// that span are among [`Measurement::bytes`], so `median_bps × rate_span_ms(duration_ms)`
/// can never honestly exceed `bytes × 8 × 1000` (times the wire overhead).
pub fn rate_span_ms(duration_ms: u32) -> u32 {
    if duration_ms >= RATE_WINDOW_MS {
        RATE_WINDOW_MS
    } else if duration_ms >= RATE_BIN_MS {
        duration_ms - duration_ms % RATE_BIN_MS
    } else {
        duration_ms
    }
}

/// A completed measurement. Rates in bits per second, times in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Verified payload bytes the receiver counted (warm-up included).
    pub bytes: u64,
    /// Test duration, warm-up included.
    pub duration_ms: u32,
    /// Median of the 1 s throughput windows after warm-up, at the IP layer: the verified
    /// payload rate times the measurer's steady-state ratio of IP bytes to payload bytes
    /// (1 to [`MAX_WIRE_OVERHEAD_PERMILLE`] / 1000).
    pub median_bps: u64,
    /// 10th percentile of the same windows, scaled the same way.
    pub p10_bps: u64,
    /// Round-trip time before the load.
    pub rtt_idle_us: u32,
    /// Round-trip time under load.
    pub rtt_loaded_us: u32,
}

/// Why a bandwidth test produced no number. A failure is signed too: it is evidence, never a
/// fabricated figure.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BwFailure {
    /// The prover refused the test.
    Refused,
    /// The prover did not answer or the transfer stalled.
    Timeout,
    /// Received bytes did not match the keyed stream.
    BadContent,
    /// The stream ended before the agreed amount or time.
    Truncated,
    /// The transport failed (connection reset, unreachable).
    Transport,
}

/// The result of one test.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The test ran; the figures.
    Measured(Measurement),
    /// The test failed; why.
    Failed(BwFailure),
}

/// A bandwidth test receipt. The measurer signs the envelope; the prover co-signs a measured
/// receipt (a failed test may carry the measurer's signature alone).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BandwidthReceipt {
    /// Random id the measurer chose for the test.
    pub test_id: ByteArray<16>,
    /// The epoch of the assignment.
    pub epoch: EpochNo,
    /// The node being measured.
    pub prover: NodeId,
    /// The node that measured.
    pub measurer: NodeId,
    /// Which way.
    pub direction: Direction,
    /// What happened.
    pub outcome: Outcome,
}

impl Message for BandwidthReceipt {
    const KIND: Kind = Kind::BandwidthReceipt;

    fn check(&self, signer: &NodeId, cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if *signer != self.measurer {
            return Err(invalid(
                "measurer",
                "is not the envelope signer",
                Reason::SignerMismatch,
            ));
        }
        if self.prover == self.measurer {
            return Err(invalid(
                "prover",
                "a node cannot measure itself",
                Reason::SignerMismatch,
            ));
        }
        match (cosigners, &self.outcome) {
            ([p], _) if *p == self.prover => {}
            ([_], _) => {
                return Err(invalid(
                    "cosigner",
                    "is not the prover",
                    Reason::SignerMismatch,
                ));
            }
            ([], Outcome::Failed(_)) => {}
            ([], Outcome::Measured(_)) => {
                return Err(invalid(
                    "cosigner",
                    "prover has not co-signed",
                    Reason::MissingCosignature,
                ));
            }
            _ => return Err(invalid("cosigner", "too many", Reason::Malformed)),
        }
        if let Outcome::Measured(m) = &self.outcome
            && (m.p10_bps > m.median_bps || m.duration_ms == 0)
        {
            return Err(invalid(
                "measurement",
                "p10 above median or zero duration",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}
