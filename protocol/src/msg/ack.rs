use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeError, Message, ProofId};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::UnixMs;

use super::invalid;

/// The most verdicts in one ack. The oracle batches acks per node so one signature covers many
/// proofs.
pub const ACK_MAX_ENTRIES: usize = 128;

/// The oracle's verdict on one proof.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Durably stored; it will be evaluated at epoch close. The agent may delete it.
    Accepted,
    /// Refused, with the reason. The agent deletes it and counts the reason.
    Rejected(Reason),
}

/// One proof's verdict.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AckEntry {
    /// The proof.
    pub proof_id: ProofId,
    /// The verdict.
    pub verdict: Verdict,
}

/// Oracle-signed verdicts for one node's proofs. An agent deletes an outbox entry only when an
/// ack signed by the pinned oracle key names its proof id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ack {
    /// The node whose proofs these are (acks are published on that node's topic; the agent
    /// checks the field too, so an ack for another node is never applied).
    pub node: NodeId,
    /// When the oracle signed it.
    pub issued_ms: UnixMs,
    /// 1 to [`ACK_MAX_ENTRIES`] verdicts, distinct proof ids.
    pub entries: Vec<AckEntry>,
}

impl Message for Ack {
    const KIND: Kind = Kind::Ack;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.entries.is_empty() || self.entries.len() > ACK_MAX_ENTRIES {
            return Err(invalid(
                "entries",
                "must hold 1 to 128 verdicts",
                Reason::FieldOutOfRange,
            ));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|p| p.proof_id == e.proof_id) {
                return Err(invalid(
                    "entries",
                    "duplicate proof id",
                    Reason::FieldOutOfRange,
                ));
            }
        }
        Ok(())
    }
}
