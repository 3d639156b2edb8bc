//! The `/wisp/status/1` response: the node's signed [`StatusReport`] and the signed witness
//! envelopes of its current beacon, so a monitor can check who heard the node, and how well,
//! without trusting the node: every witness carries the witness's own signature and the
//! node's signed beacon.
//!
//! Wire form: postcard `(report envelope bytes, [witness envelope bytes])`, at most
//! [`STATUS_MAX_RESPONSE`] bytes. The container is not
//! signed; each envelope in it is, and each is verified over its raw bytes before decoding.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use wisp_protocol::NodeId;
use wisp_protocol::envelope::{self, EnvelopeError};
use wisp_protocol::msg::{STATUS_WITNESSES_MAX, StatusReport, Witness};
use wisp_protocol::units::{DeciDb, FreqKhz};

use super::behaviour::STATUS_MAX_RESPONSE;

#[derive(Serialize, Deserialize)]
struct Wire {
    report: Vec<u8>,
    witnesses: Vec<Vec<u8>>,
}

/// Why a status response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Larger than the protocol allows.
    #[error("response of {0} bytes is too large")]
    TooLarge(usize),
    /// The container did not decode (or had trailing bytes).
    #[error("malformed response")]
    Malformed,
    /// More witnesses than a report may list.
    #[error("{0} witnesses, more than allowed")]
    TooManyWitnesses(usize),
    /// The report envelope did not open.
    #[error("report: {0}")]
    Report(EnvelopeError),
    /// The report is signed by another key than the peer's.
    #[error("report signed by {signer}, not by the peer {peer}")]
    WrongSigner {
        /// Who signed.
        signer: NodeId,
        /// Who was asked.
        peer: String,
    },
    /// The peer id is not an ed25519 node id.
    #[error("peer id {0} is not a wisp node id")]
    NotANode(String),
    /// A witness did not open, is not of this node's beacon in the report's epoch, or is
    /// not listed in the report.
    #[error("witness {index}: {why}")]
    Witness {
        /// Its position.
        index: usize,
        /// What is wrong.
        why: String,
    },
}

/// One witness of a node's beacon, as shown to operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WitnessView {
    /// The witness's peer id.
    pub peer: String,
    /// Received signal strength, dBm.
    pub rssi_dbm: f64,
    /// Signal to noise, dB.
    pub snr_db: f64,
    /// Frequency heard on, MHz.
    pub freq_mhz: f64,
    /// When it was heard (Unix ms).
    pub rx_ms: u64,
}

impl WitnessView {
    /// The view of a witness's fields.
    pub fn new(witness: &NodeId, rssi: DeciDb, snr: DeciDb, freq_khz: FreqKhz, rx_ms: u64) -> Self {
        Self {
            peer: witness.to_string(),
            rssi_dbm: rssi.db(),
            snr_db: snr.db(),
            freq_mhz: f64::from(freq_khz) / 1000.0,
            rx_ms,
        }
    }
}

/// A verified status from a remote node.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    /// The node.
    pub peer: NodeId,
    /// Its signed report.
    pub report: StatusReport,
    /// The witnesses of its beacon, each verified.
    pub witnesses: Vec<WitnessView>,
}

/// Encodes a response from a signed report envelope and witness envelopes (at most
/// [`STATUS_WITNESSES_MAX`] are included).
pub fn encode_response(report: Vec<u8>, witnesses: &[Vec<u8>]) -> Vec<u8> {
    let wire = Wire {
        report,
        witnesses: witnesses
            .iter()
            .take(STATUS_WITNESSES_MAX)
            .cloned()
            .collect(),
    };
    postcard::to_stdvec(&wire).unwrap_or_default()
}

/// Verifies a response from `peer`: size, framing, the report's signature by `peer`'s key,
/// then each witness (its signature, its embedded beacon signed by `peer` in the report's
/// epoch, and its signer listed in the report).
pub fn verify_response(peer: &PeerId, bytes: &[u8]) -> Result<RemoteStatus, StatusError> {
    if bytes.len() > STATUS_MAX_RESPONSE {
        return Err(StatusError::TooLarge(bytes.len()));
    }
    let node = NodeId::from_peer_id(peer).map_err(|_| StatusError::NotANode(peer.to_string()))?;
    let (wire, rest) =
        postcard::take_from_bytes::<Wire>(bytes).map_err(|_| StatusError::Malformed)?;
    if !rest.is_empty() {
        return Err(StatusError::Malformed);
    }
    if wire.witnesses.len() > STATUS_WITNESSES_MAX {
        return Err(StatusError::TooManyWitnesses(wire.witnesses.len()));
    }
    let report = envelope::open::<StatusReport>(&wire.report).map_err(StatusError::Report)?;
    if report.signer != node {
        return Err(StatusError::WrongSigner {
            signer: report.signer,
            peer: peer.to_string(),
        });
    }
    let mut witnesses = Vec::with_capacity(wire.witnesses.len());
    for (index, w) in wire.witnesses.iter().enumerate() {
        let bad = |why: String| StatusError::Witness { index, why };
        let opened = envelope::open::<Witness>(w).map_err(|e| bad(e.to_string()))?;
        let beacon = opened
            .msg
            .open_beacon()
            .map_err(|e| bad(format!("beacon: {e}")))?;
        if beacon.signer != node {
            return Err(bad("witnesses another node's beacon".into()));
        }
        if Some(beacon.msg.epoch) != report.msg.epoch {
            return Err(bad("beacon of another epoch".into()));
        }
        if !report.msg.witnessed_by.contains(&opened.signer) {
            return Err(bad("witness not listed in the report".into()));
        }
        let m = &opened.msg;
        witnesses.push(WitnessView::new(
            &opened.signer,
            m.rssi,
            m.snr,
            m.freq_khz,
            m.rx_ms,
        ));
    }
    Ok(RemoteStatus {
        peer: node,
        report: report.msg,
        witnesses,
    })
}
