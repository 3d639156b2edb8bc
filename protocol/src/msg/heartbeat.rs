use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeError, Message};
use crate::geo::Cell;
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{EpochNo, UnixMs};

use super::{BwFailure, Versions, invalid};

/// A GNSS position fix, integers only. Field meanings follow NMEA GGA/RMC.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GnssFix {
    /// Latitude in 1e-7 degrees (north positive).
    pub lat_e7: i32,
    /// Longitude in 1e-7 degrees (east positive).
    pub lon_e7: i32,
    /// Altitude above mean sea level in millimetres.
    pub alt_mm: i32,
    /// Horizontal dilution of precision × 100.
    pub hdop_centi: u16,
    /// Satellites used.
    pub satellites: u8,
    /// The fix's UTC time.
    pub utc_ms: UnixMs,
}

impl GnssFix {
    fn check(&self) -> Result<(), EnvelopeError> {
        if !(-900_000_000..=900_000_000).contains(&self.lat_e7)
            || !(-1_800_000_000..=1_800_000_000).contains(&self.lon_e7)
        {
            return Err(invalid(
                "fix",
                "coordinates out of range",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

/// A periodic liveness and location report.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The current epoch as the node sees it.
    pub epoch: EpochNo,
    /// Increases by one with every heartbeat the node signs, across restarts.
    pub seq: u64,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// When it was signed.
    pub sent_ms: UnixMs,
    /// The latest GNSS fix, if the device has one.
    pub fix: Option<GnssFix>,
    /// The node's current cell (from the fix, or its configured location).
    pub cell: Option<Cell>,
    /// Software versions.
    pub versions: Versions,
    /// Connected libp2p peers.
    pub peers: u16,
}

impl Message for Heartbeat {
    const KIND: Kind = Kind::Heartbeat;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        self.versions.check()?;
        if let Some(fix) = &self.fix {
            fix.check()?;
        }
        Ok(())
    }
}

/// Device health flags in a status report: each is true only when its part's last check
/// passed, so false means absent, failing or not checked since the agent started.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct DeviceHealth {
    /// The GNSS receiver's last read delivered a fix.
    pub gnss_ok: bool,
    /// The radio's last transmission went out.
    pub radio_ok: bool,
    /// The secure element signed the last attestation asked of it.
    pub secure_element_ok: bool,
}

/// The most witnesses listed in a status report.
pub const STATUS_WITNESSES_MAX: usize = 32;

/// A node's signed status, returned over libp2p `/wisp/status/1` so a monitor can ask any node
/// and know the answer came from it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// The current epoch, once a seed was received.
    pub epoch: Option<EpochNo>,
    /// When the report was signed.
    pub sent_ms: UnixMs,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Software versions.
    pub versions: Versions,
    /// The node's asserted cell, or (what nodes send to peers) its ancestor at a coarse
    /// resolution: anyone may ask for a report (docs/PROTOCOL.md §5.9).
    pub cell: Option<Cell>,
    /// The latest GNSS fix. Nodes send reports without it: the fix goes only to the oracle,
    /// in heartbeats.
    pub fix: Option<GnssFix>,
    /// Proofs waiting in the outbox for an oracle ack.
    pub outbox_depth: u32,
    /// When the oldest unacked proof was signed.
    pub oldest_unacked_ms: Option<UnixMs>,
    /// When the last oracle ack arrived.
    pub last_ack_ms: Option<UnixMs>,
    /// When this node last beaconed.
    pub last_beacon_ms: Option<UnixMs>,
    /// When this node last witnessed a beacon.
    pub last_witness_ms: Option<UnixMs>,
    /// When this node last sent a heartbeat.
    pub last_heartbeat_ms: Option<UnixMs>,
    /// Whether the MQTT connection to the broker is up.
    pub broker_connected: bool,
    /// Connected libp2p peers.
    pub peers: u16,
    /// Device health.
    pub health: DeviceHealth,
    /// Who witnessed this node's last beacon (at most [`STATUS_WITNESSES_MAX`]).
    pub witnessed_by: Vec<NodeId>,
    /// The last bandwidth test of this node as prover, once one ended since the agent started.
    pub backhaul: Option<BackhaulSummary>,
}

/// How a node's last bandwidth test as prover went, as the node itself saw it. A monitor's
/// view only: the co-signed receipts are the evidence, and the oracle pays on those.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BackhaulSummary {
    /// Who measured.
    pub measurer: NodeId,
    /// The epoch the test was for.
    pub epoch: EpochNo,
    /// When the test ended, on the node's clock.
    pub measured_ms: UnixMs,
    /// Measurer → prover: the receipt's median IP-layer rate, bit/s; absent when that direction
    /// has no measured receipt.
    pub down_bps: Option<u64>,
    /// Prover → measurer, the same way.
    pub up_bps: Option<u64>,
    /// Round-trip time before the load, µs, when measured.
    pub rtt_idle_us: Option<u32>,
    /// Round-trip time under load, µs (the higher of the two directions'), when measured.
    pub rtt_loaded_us: Option<u32>,
    /// How the test ended.
    pub outcome: BackhaulOutcome,
}

/// How a bandwidth test ended, from the receipts it produced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackhaulOutcome {
    /// Every direction the test covered was measured, and the receipts co-signed.
    Ok,
    /// A direction's receipt says it failed, and why (the first such direction, in test order).
    Failed(BwFailure),
    /// The test ended without a receipt for some direction and with no failure on record: the
    /// session broke off before co-signing, or the prover declined to co-sign a figure.
    Incomplete,
}

impl BackhaulSummary {
    fn check(&self, signer: &NodeId) -> Result<(), EnvelopeError> {
        if self.measurer == *signer {
            return Err(invalid(
                "backhaul",
                "a node does not measure itself",
                Reason::SignerMismatch,
            ));
        }
        if self.outcome == BackhaulOutcome::Ok && self.down_bps.is_none() && self.up_bps.is_none() {
            return Err(invalid(
                "backhaul",
                "an ok test has a rate",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

impl Message for StatusReport {
    const KIND: Kind = Kind::StatusReport;

    fn check(&self, signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        self.versions.check()?;
        if let Some(fix) = &self.fix {
            fix.check()?;
        }
        if self.witnessed_by.len() > STATUS_WITNESSES_MAX {
            return Err(invalid(
                "witnessed_by",
                "too many entries",
                Reason::FieldOutOfRange,
            ));
        }
        if let Some(b) = &self.backhaul {
            b.check(signer)?;
        }
        Ok(())
    }
}
