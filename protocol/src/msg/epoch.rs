use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, Message};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{EpochNo, UnixMs};

use super::invalid;

/// Per-epoch parameters the oracle publishes with the seed, so that agents and the oracle apply
/// the same schedule without a config change on every hotspot.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EpochParams {
    /// Beacon slots per epoch; each node beacons once, in its slot.
    pub slot_count: u32,
    /// At most this many witnesses are paid per beacon (the first to arrive).
    pub witness_limit: u16,
    /// Measurers assigned per prover per epoch.
    pub measurers_per_prover: u8,
    /// Agents send a heartbeat every this many milliseconds.
    pub heartbeat_interval_ms: u32,
    /// After the epoch ends, proofs are still accepted for this long (late witnesses settle).
    pub settle_ms: u32,
}

impl Default for EpochParams {
    /// One-hour epochs: 60 one-minute beacon slots, 14 witnesses, 3 measurers, 5-minute
    /// heartbeats, 10-minute settle window.
    fn default() -> Self {
        Self {
            slot_count: 60,
            witness_limit: 14,
            measurers_per_prover: 3,
            heartbeat_interval_ms: 300_000,
            settle_ms: 600_000,
        }
    }
}

/// The oracle's seed for one epoch. Signed by the oracle; agents pin the oracle's key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EpochSeed {
    /// The epoch number.
    pub epoch: EpochNo,
    /// When the epoch starts.
    pub start_ms: UnixMs,
    /// How long it lasts.
    pub duration_ms: u64,
    /// 32 random bytes, unknown before publication.
    pub seed: ByteArray<32>,
    /// The schedule parameters.
    pub params: EpochParams,
}

impl EpochSeed {
    /// When the epoch ends (exclusive).
    pub fn end_ms(&self) -> UnixMs {
        self.start_ms.saturating_add(self.duration_ms)
    }

    /// Whether `t` falls inside the epoch.
    pub fn contains(&self, t: UnixMs) -> bool {
        (self.start_ms..self.end_ms()).contains(&t)
    }
}

impl Message for EpochSeed {
    const KIND: Kind = Kind::EpochSeed;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.duration_ms == 0 || self.params.slot_count == 0 {
            return Err(invalid(
                "epoch_seed",
                "zero duration or slot count",
                Reason::FieldOutOfRange,
            ));
        }
        if u64::from(self.params.slot_count) > self.duration_ms {
            return Err(invalid(
                "epoch_seed",
                "slots shorter than 1 ms",
                Reason::FieldOutOfRange,
            ));
        }
        if self.start_ms.checked_add(self.duration_ms).is_none() {
            return Err(invalid(
                "epoch_seed",
                "end overflows",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}
