//! The `/wisp/status/1` response: the node's signed [`StatusReport`] and the signed witness
//! envelopes of its current beacon, so a monitor can check who heard the node, and how well,
//! without trusting the node: every witness carries the witness's own signature and the
//! node's signed beacon.
//!
//! Wire form: postcard `(report envelope bytes, [witness envelope bytes])`, at most
//! [`STATUS_MAX_RESPONSE`] bytes. The container is not
//! signed; each envelope in it is, and each is verified over its raw bytes before decoding.
//!
//! Anyone who can dial the node may ask, so the answer is built for an anonymous peer
//! ([`for_anonymous_peer`]): no GNSS fix, and the asserted cell only at the configured coarse
//! resolution (`net.status_cell_resolution`). The fix stays on the local HTTP status and in the
//! heartbeats bound for the oracle.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use wisp_protocol::NodeId;
use wisp_protocol::envelope::{self, EnvelopeError};
use wisp_protocol::geo::ASSERT_RESOLUTION;
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

/// Makes `report` and `witnesses` fit for an anonymous peer: the GNSS fix is dropped and the
/// asserted cell is replaced by its ancestor at `cell_resolution`. Witness envelopes are kept
/// only when `cell_resolution` is the asserted one ([`ASSERT_RESOLUTION`]): each is signed,
/// so it cannot be coarsened, and each carries the node's asserted cell (in its embedded
/// beacon) and the witness's at full resolution. The report's `witnessed_by` still says who
/// heard the node.
pub fn for_anonymous_peer(
    report: &mut StatusReport,
    witnesses: &mut Vec<Vec<u8>>,
    cell_resolution: u8,
) {
    report.fix = None;
    report.cell = report.cell.map(|c| c.parent(cell_resolution));
    if cell_resolution < ASSERT_RESOLUTION {
        witnesses.clear();
    }
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

#[cfg(test)]
mod tests {
    use wisp_protocol::NodeKey;
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::geo::Cell;
    use wisp_protocol::msg::{Beacon, DeviceHealth, GnssFix, Versions};

    use super::*;

    /// A node at a street corner in Lisbon, asserted at resolution 12, with a fix, one witness
    /// of its beacon, and everything signed.
    struct Scene {
        node: NodeKey,
        report: StatusReport,
        witnesses: Vec<Vec<u8>>,
    }

    fn scene() -> Scene {
        let node = NodeKey::from_seed(&[1; 32]);
        let witness = NodeKey::from_seed(&[2; 32]);
        let cell = Cell::from_degrees(38.713_912_3, -9.139_456_7, ASSERT_RESOLUTION).unwrap();
        let beacon = Envelope::sign(
            &node,
            &Beacon {
                epoch: 4,
                nonce: [7; 16].into(),
                freq_khz: 2_412_000,
                width_mhz: 20,
                tx_power: DeciDb(200),
                antenna_gain: DeciDb(30),
                cell,
                tx_ms: 1_000,
            },
        )
        .to_bytes();
        let heard = Envelope::sign(
            &witness,
            &Witness {
                beacon,
                rssi: DeciDb(-700),
                snr: DeciDb(250),
                freq_khz: 2_412_000,
                rx_ms: 1_001,
                cell: Cell::from_degrees(38.714, -9.138, ASSERT_RESOLUTION).unwrap(),
            },
        )
        .to_bytes();
        let report = StatusReport {
            epoch: Some(4),
            sent_ms: 2_000,
            uptime_s: 60,
            versions: Versions::new("0.1.0", "sim"),
            cell: Some(cell),
            fix: Some(GnssFix {
                lat_e7: 387_139_123,
                lon_e7: -91_394_567,
                alt_mm: 71_250,
                hdop_centi: 90,
                satellites: 9,
                utc_ms: 1_500,
            }),
            outbox_depth: 0,
            oldest_unacked_ms: None,
            last_ack_ms: None,
            last_beacon_ms: Some(1_000),
            last_witness_ms: None,
            last_heartbeat_ms: None,
            broker_connected: true,
            peers: 3,
            health: DeviceHealth::default(),
            witnessed_by: vec![witness.id()],
            backhaul: None,
        };
        Scene {
            node,
            report,
            witnesses: vec![heard],
        }
    }

    /// What a peer decodes after asking a node configured with `resolution`.
    fn answer(resolution: u8) -> (Scene, RemoteStatus) {
        let mut s = scene();
        let (mut report, mut witnesses) = (s.report.clone(), s.witnesses.clone());
        for_anonymous_peer(&mut report, &mut witnesses, resolution);
        let bytes = encode_response(Envelope::sign(&s.node, &report).to_bytes(), &witnesses);
        let remote = verify_response(&s.node.id().to_peer_id(), &bytes).unwrap();
        s.witnesses = witnesses;
        (s, remote)
    }

    #[test]
    fn an_anonymous_peer_gets_the_coarse_cell_and_no_fix() {
        for resolution in [0, 5, 7, 11] {
            let (s, remote) = answer(resolution);
            let asserted = s.report.cell.unwrap();
            assert_eq!(remote.report.fix, None, "resolution {resolution}");
            assert_eq!(remote.report.cell, Some(asserted.parent(resolution)));
            assert_eq!(remote.report.cell.unwrap().resolution(), resolution);
            // The signed witnesses carry full-resolution cells: none is sent, though the
            // report still names who heard the node.
            assert!(remote.witnesses.is_empty(), "resolution {resolution}");
            assert_eq!(remote.report.witnessed_by, s.report.witnessed_by);
            // Nothing else in the report is finer than the cell: the only cell it holds is the
            // coarse one, and no coordinate is left.
            let json = serde_json::to_string(&remote.report).unwrap();
            assert!(
                !json.contains("lat_e7") && !json.contains("alt_mm"),
                "{json}"
            );
            assert!(!json.contains(&asserted.to_string()), "{json}");
        }
    }

    #[test]
    fn at_the_asserted_resolution_the_witnesses_are_kept() {
        let (s, remote) = answer(ASSERT_RESOLUTION);
        assert_eq!(remote.report.fix, None);
        assert_eq!(remote.report.cell, s.report.cell);
        assert_eq!(remote.witnesses.len(), 1);
        assert_eq!(remote.witnesses[0].rssi_dbm, -70.0);
    }
}
