//! The `/wisp/bw/1` negotiation bodies and the transport-agnostic API around them.
//!
//! The libp2p request-response protocol carries one request body and one response body of at
//! most [`MAX_BODY`] bytes each; this module defines what is in them. Both are canonical
//! postcard (decoded with [`decode_body`]: no trailing bytes, one encoding only).
//!
//! - [`BwRequest`] (measurer → prover): test id, epoch, directions, caps, the measurer's QUIC
//!   address and the SHA-256 of its self-signed certificate (the prover pins it, so the QUIC
//!   connection is bound to the authenticated libp2p channel the request came over), and a
//!   commitment to the stream secret that the measurer reveals on that QUIC connection.
//! - [`SignedResponse`] (prover → measurer): accept, or refuse with a [`RefuseReason`]. The
//!   prover signs the response, and a refusal also carries the prover's co-signature of each
//!   direction's `Failed(Refused)` receipt, whose bytes both sides can compute from the
//!   request: the measurer ends up with a refusal receipt signed by both.
//!
//! The bodies without a socket address (the response, the invitation and its answer, the
//! encoding) are sans-IO and live in [`wisp_agent_core::bandwidth::negotiate`]; they are
//! re-exported here under their old paths. The request (it carries a [`SocketAddr`]), the
//! [`Negotiator`] the measurer calls (libp2p in the daemon, a direct call in tests) and its
//! error stay here; the prover answers with [`super::Prover::handle_request`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::id::NodeId;
use wisp_protocol::msg::{BandwidthReceipt, BwFailure, Direction, Outcome};
use wisp_protocol::units::EpochNo;

pub use wisp_agent_core::bandwidth::negotiate::{
    BwInvite, BwResponse, Directions, INVITE_TAG, InviteAnswer, InviteRefusal, MAX_BODY, PROTOCOL,
    RefuseReason, SignedResponse, VERSION, decode_body, encode_body,
};

/// The measurer's request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BwRequest {
    /// [`VERSION`].
    pub version: u8,
    /// Random, chosen by the measurer; names the test everywhere, receipts included.
    pub test_id: ByteArray<16>,
    /// The epoch whose assignment the measurer acts on.
    pub epoch: EpochNo,
    /// Which directions.
    pub directions: Directions,
    /// Byte cap per direction.
    pub byte_cap: u64,
    /// Time cap per direction, milliseconds from the first byte.
    pub duration_ms: u32,
    /// Where the measurer's test endpoint listens.
    pub quic_addr: SocketAddr,
    /// SHA-256 of the DER certificate that endpoint presents.
    pub cert_sha256: ByteArray<32>,
    /// [`super::stream::commitment`] of the stream secret.
    pub key_commitment: ByteArray<32>,
}

/// Why a negotiation produced no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NegotiateError {
    /// The peer could not be reached, or the request failed: the transport's own error (no
    /// address known, the dial error, the connection closing), kept as its source. Made with
    /// [`NegotiateError::unreachable`].
    #[error(transparent)]
    Unreachable(Arc<dyn std::error::Error + Send + Sync>),
    /// The peer did not answer in time.
    #[error("no answer in time")]
    Timeout,
    /// The answer was larger than [`MAX_BODY`].
    #[error("response body of {0} bytes exceeds the limit")]
    Oversize(usize),
}

impl NegotiateError {
    /// The peer could not be reached, for the transport's reason `why`.
    pub fn unreachable(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        NegotiateError::Unreachable(Arc::from(why.into()))
    }
}

/// The measurer's side of the `/wisp/bw/1` channel: send a request body, get the response body.
/// The daemon implements it over libp2p request-response; tests call the prover directly.
pub trait Negotiator {
    /// Sends `body` (at most [`MAX_BODY`] bytes) to `peer` and returns its response body.
    fn request(
        &self,
        peer: NodeId,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, NegotiateError>> + Send;

    /// The IP provers can reach this node at, when the network knows it (a confirmed external
    /// address). A measurer listening on every address without an advertised one tells provers
    /// this IP with its test port.
    fn public_ip(&self) -> impl Future<Output = Option<std::net::IpAddr>> + Send {
        std::future::ready(None)
    }
}

/// The receipt a refusal of `request` by `prover` yields for `direction`: both sides compute
/// the same bytes, so the prover can co-sign it in its response.
pub fn refusal_receipt(
    request: &BwRequest,
    prover: NodeId,
    measurer: NodeId,
    direction: Direction,
) -> BandwidthReceipt {
    BandwidthReceipt {
        test_id: request.test_id,
        epoch: request.epoch,
        prover,
        measurer,
        direction,
        outcome: Outcome::Failed(BwFailure::Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_peer_keeps_the_transports_error() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = NegotiateError::unreachable(io);
        // The transport's own text, as before, and its error still there to inspect.
        assert_eq!(e.to_string(), "refused");
        let NegotiateError::Unreachable(inner) = &e else {
            panic!("{e:?}")
        };
        let io = inner.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn an_invite_is_never_read_as_a_request_nor_the_other_way() {
        let invite = encode_body(&BwInvite {
            tag: INVITE_TAG,
            epoch: 9,
        });
        assert_eq!(invite[0], INVITE_TAG);
        assert_eq!(decode_body::<BwRequest>(&invite), None);
        let req = encode_body(&request());
        assert_eq!(req[0], VERSION);
        assert_ne!(req[0], INVITE_TAG);
        let answer = encode_body(&InviteAnswer::Refused(InviteRefusal::Busy));
        assert_eq!(
            decode_body::<InviteAnswer>(&answer),
            Some(InviteAnswer::Refused(InviteRefusal::Busy))
        );
    }

    fn request() -> BwRequest {
        BwRequest {
            version: VERSION,
            test_id: ByteArray([3; 16]),
            epoch: 42,
            directions: Directions::Both,
            byte_cap: 1 << 30,
            duration_ms: 8000,
            quic_addr: "[2001:db8::1]:4433"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            cert_sha256: ByteArray([9; 32]),
            key_commitment: ByteArray([5; 32]),
        }
    }

    #[test]
    fn request_round_trips_and_fits() {
        let r = request();
        let body = encode_body(&r);
        assert!(body.len() < 200, "{} bytes", body.len());
        assert_eq!(decode_body::<BwRequest>(&body), Some(r));
        let mut long = body.clone();
        long.push(0);
        assert_eq!(decode_body::<BwRequest>(&long), None, "trailing byte");
        assert_eq!(decode_body::<BwRequest>(&vec![0; MAX_BODY + 1]), None);
    }
}
