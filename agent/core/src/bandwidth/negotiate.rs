//! The `/wisp/bw/1` negotiation bodies that need no I/O: what the prover answers, the prover's
//! invitation and the measurer's answer to it, and their canonical encoding.
//!
//! The libp2p request-response protocol carries one request body and one response body of at
//! most [`MAX_BODY`] bytes each. Both are canonical postcard (decoded with [`decode_canonical`]:
//! no trailing bytes, one encoding only).
//!
//! - [`SignedResponse`] (prover → measurer): accept, or refuse with a [`RefuseReason`]. The
//!   prover signs the response, and a refusal also carries the prover's co-signature of each
//!   direction's `Failed(Refused)` receipt, whose bytes both sides can compute from the
//!   request: the measurer ends up with a refusal receipt signed by both.
//! - [`BwInvite`] (prover → measurer) and [`InviteAnswer`]: "measure me this epoch", which
//!   [`crate::backhaul`] decides.
//!
//! The measurer's request (`BwRequest`, with the socket address of its test endpoint), the
//! transport it is sent over (`Negotiator`) and the async roles stay in the daemon
//! (`wisp_agent::bandwidth::negotiate`), which re-exports everything here under its old paths.

use serde::{Deserialize, Serialize};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{decode_canonical, encode_payload};
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::msg::Direction;
use wisp_protocol::units::EpochNo;

/// The largest request or response body, each way.
pub const MAX_BODY: usize = 4096;
/// The protocol name on libp2p.
pub const PROTOCOL: &str = "/wisp/bw/1";
/// The version byte of the bodies defined here.
pub const VERSION: u8 = 1;

const RESPONSE_CONTEXT: &[u8] = b"wisp/v1 bw response\0";

/// Which directions a test covers, always run download first.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Directions {
    /// Measurer → prover only.
    Down,
    /// Prover → measurer only.
    Up,
    /// Both, download first.
    Both,
}

impl Directions {
    /// The directions in test order.
    pub fn list(self) -> &'static [Direction] {
        match self {
            Directions::Down => &[Direction::Down],
            Directions::Up => &[Direction::Up],
            Directions::Both => &[Direction::Down, Direction::Up],
        }
    }

    /// `down`, `up` or `down+up`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Directions::Down => "down",
            Directions::Up => "up",
            Directions::Both => "down+up",
        }
    }
}

/// The first byte of an invitation body ([`BwInvite`]); the measurer's request
/// (`BwRequest`, in the daemon) starts with its version, [`VERSION`], so the two never collide.
pub const INVITE_TAG: u8 = 0x80;

/// A prover's invitation to one of its assigned measurers (prover → measurer): "measure me
/// this epoch". The prover computes its own measurers from the epoch's measurer set (one score
/// per candidate); a measurer could not find its provers without scoring every pair. The
/// measurer checks the assignment and then sends its request as usual.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BwInvite {
    /// [`INVITE_TAG`].
    pub tag: u8,
    /// The epoch whose assignment the prover acts on.
    pub epoch: EpochNo,
}

/// The measurer's answer to an invitation. Unsigned: it proves nothing, the receipts do.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum InviteAnswer {
    /// The test is queued; a request follows.
    Queued,
    /// No test.
    Refused(InviteRefusal),
}

/// Why a measurer declined an invitation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteRefusal {
    /// This node does not measure (`bandwidth.measurer = false`).
    NotAMeasurer,
    /// An epoch the measurer has left behind (the prover is late).
    WrongEpoch,
    /// The measurer is not assigned to the prover.
    NotAssigned,
    /// The prover was already measured (or queued) this epoch.
    AlreadyMeasured,
    /// The measurer's queue is full.
    Busy,
    /// The body is malformed.
    BadRequest,
    /// The measurer has not got the epoch's seed and measurer set yet (it is behind, e.g.
    /// just reconnected): ask again later.
    NotYet,
}

/// Why a prover refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseReason {
    /// The request is not for the prover's current epoch.
    WrongEpoch,
    /// The requester is not one of the prover's assigned measurers this epoch.
    NotAssigned,
    /// The body is malformed, oversize, of another version or asks beyond the caps.
    BadRequest,
    /// The prover already runs as many tests as it allows.
    Busy,
}

impl RefuseReason {
    /// The reason's name, as logs show it.
    pub fn name(self) -> &'static str {
        match self {
            RefuseReason::WrongEpoch => "wrong_epoch",
            RefuseReason::NotAssigned => "not_assigned",
            RefuseReason::BadRequest => "bad_request",
            RefuseReason::Busy => "busy",
        }
    }
}

/// The prover's answer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum BwResponse {
    /// The prover will connect to the measurer's endpoint.
    Accept {
        /// The request's test id.
        test_id: ByteArray<16>,
    },
    /// No test.
    Refuse {
        /// The request's test id (zero when the request did not decode).
        test_id: ByteArray<16>,
        /// Why.
        reason: RefuseReason,
        /// The prover's co-signature of each requested direction's `Failed(Refused)` receipt,
        /// in test order; empty when the request did not decode.
        cosignatures: Vec<ByteArray<64>>,
    },
}

/// A response signed by the prover over `"wisp/v1 bw response\0" || measurer || postcard(response)`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedResponse {
    /// The answer.
    pub response: BwResponse,
    /// The prover's signature.
    pub signature: ByteArray<64>,
}

fn response_message(measurer: &NodeId, response: &BwResponse) -> Vec<u8> {
    let mut m = RESPONSE_CONTEXT.to_vec();
    m.extend_from_slice(measurer.as_bytes());
    m.extend_from_slice(&encode_payload(response));
    m
}

impl SignedResponse {
    /// Signs `response` to `measurer` with the prover's key.
    pub fn sign(key: &NodeKey, measurer: &NodeId, response: BwResponse) -> Self {
        let signature = ByteArray(key.sign_raw(&response_message(measurer, &response)));
        Self {
            response,
            signature,
        }
    }

    /// Whether `prover` signed this response to `measurer`.
    pub fn verify(&self, prover: &NodeId, measurer: &NodeId) -> bool {
        wisp_protocol::envelope::verify_signature(
            prover.as_bytes(),
            &response_message(measurer, &self.response),
            self.signature.as_bytes(),
        )
        .is_ok()
    }
}

/// Decodes a body of type `T`, refusing oversize and non-canonical bytes.
pub fn decode_body<T: Serialize + serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    if body.len() > MAX_BODY {
        return None;
    }
    decode_canonical(body).ok()
}

/// Encodes a body (always under [`MAX_BODY`] for the types here).
pub fn encode_body<T: Serialize>(value: &T) -> Vec<u8> {
    encode_payload(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_with_cosignatures_fits_and_verifies() {
        let prover = NodeKey::from_seed(&[1; 32]);
        let measurer = NodeKey::from_seed(&[2; 32]).id();
        let resp = SignedResponse::sign(
            &prover,
            &measurer,
            BwResponse::Refuse {
                test_id: ByteArray([3; 16]),
                reason: RefuseReason::NotAssigned,
                cosignatures: vec![ByteArray([0; 64]); 2],
            },
        );
        let body = encode_body(&resp);
        assert!(body.len() < MAX_BODY);
        let back: SignedResponse = decode_body(&body).unwrap_or_else(|| unreachable!());
        assert!(back.verify(&prover.id(), &measurer));
        // Signed for one measurer, it does not verify for another.
        assert!(!back.verify(&prover.id(), &prover.id()));
        assert!(!back.verify(&measurer, &measurer));
    }
}
