use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, EnvelopeRef, Message, Opened};
use crate::geo::Cell;
use crate::id::NodeId;
use crate::kind::{Kind, MAX_BEACON_LEN};
use crate::reason::Reason;
use crate::units::{DeciDb, EpochNo, FreqKhz, UnixMs};

use super::invalid;

/// A radio beacon, transmitted in the node's slot. The beaconer is the envelope's signer; the
/// whole signed envelope (≤ [`MAX_BEACON_LEN`] bytes) goes on air in one WiFi vendor IE.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Beacon {
    /// The epoch it belongs to.
    pub epoch: EpochNo,
    /// [`crate::schedule::beacon_nonce`] of the epoch seed and the beaconer.
    pub nonce: ByteArray<16>,
    /// Centre frequency it is transmitted on.
    pub freq_khz: FreqKhz,
    /// Channel width in MHz (20, 40, 80, 160, 2160 for 60 GHz).
    pub width_mhz: u16,
    /// Conducted transmit power.
    pub tx_power: DeciDb,
    /// Antenna gain (dBi) the beaconer claims; the oracle caps it by the onboarded value.
    pub antenna_gain: DeciDb,
    /// The beaconer's asserted cell.
    pub cell: Cell,
    /// When it was transmitted.
    pub tx_ms: UnixMs,
}

impl Message for Beacon {
    const KIND: Kind = Kind::Beacon;
}

/// A node heard a beacon. The witness is the envelope's signer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Witness {
    /// The beacon's envelope bytes exactly as received over the air.
    #[serde(with = "crate::bytes::hex_vec")]
    pub beacon: Vec<u8>,
    /// Received signal strength (dBm).
    pub rssi: DeciDb,
    /// Signal-to-noise ratio (dB).
    pub snr: DeciDb,
    /// The frequency the witness received it on.
    pub freq_khz: FreqKhz,
    /// When it was received.
    pub rx_ms: UnixMs,
    /// The witness's asserted cell.
    pub cell: Cell,
}

impl Witness {
    /// Opens the embedded beacon: signature, canonical form and structure. The oracle also
    /// checks it against the epoch seed.
    pub fn open_beacon(&self) -> Result<Opened<Beacon>, EnvelopeError> {
        crate::envelope::open::<Beacon>(&self.beacon)
    }
}

impl Message for Witness {
    const KIND: Kind = Kind::Witness;

    fn check(&self, signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.beacon.len() > MAX_BEACON_LEN {
            return Err(invalid(
                "beacon",
                "longer than a beacon may be",
                Reason::Oversize,
            ));
        }
        // Framing only here (cheap); the beacon's signature is checked by `open_beacon`.
        let inner = EnvelopeRef::parse(&self.beacon)
            .map_err(|_| invalid("beacon", "not an envelope", Reason::BeaconInvalid))?;
        if inner.kind != Kind::Beacon {
            return Err(invalid(
                "beacon",
                "not a beacon envelope",
                Reason::BeaconInvalid,
            ));
        }
        if inner.signer == signer.as_bytes() {
            return Err(invalid(
                "beacon",
                "a node cannot witness itself",
                Reason::SelfWitness,
            ));
        }
        Ok(())
    }
}
