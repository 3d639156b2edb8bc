use alloc::string::String;
use alloc::vec::Vec;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, Message};
use crate::geo::Cell;
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{DeciDb, FreqKhz, UnixMs};

use super::{check_str, invalid};

/// The longest owner (payout) address.
pub const OWNER_MAX: usize = 64;
/// The longest maker name.
pub const MAKER_MAX: usize = 32;
/// The most radio bands a node may declare.
pub const BANDS_MAX: usize = 8;

/// A radio band a node declares it operates in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Band {
    /// Lowest frequency.
    pub low_khz: FreqKhz,
    /// Highest frequency (greater than `low_khz`).
    pub high_khz: FreqKhz,
    /// The EIRP the node may radiate in this band (dBm), per its regulatory domain.
    pub max_eirp: DeciDb,
}

impl Band {
    /// Whether `freq` lies in the band (inclusive).
    pub fn contains(&self, freq: FreqKhz) -> bool {
        (self.low_khz..=self.high_khz).contains(&freq)
    }
}

/// A secure element's proof that this node key lives on a genuine device.
///
/// Two ECDSA P-256 signatures over SHA-256 digests, each 64 bytes `r || s`:
/// - `device_sig`, by the chip's key `device_key`, over [`Attestation::device_digest`]
///   (the node key, the chip serial and the maker name): the chip vouches for the node key.
/// - `maker_sig`, by the maker's key, over [`Attestation::certificate_digest`] (the serial, the
///   chip key and the maker name): the maker vouches for the chip.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Attestation {
    /// Maker name, as configured on the oracle (≤ [`MAKER_MAX`] printable ASCII bytes).
    pub maker: String,
    /// The chip's 9-byte serial number.
    pub serial: ByteArray<9>,
    /// The chip's P-256 public key, `x || y` (uncompressed, without the 0x04 prefix).
    pub device_key: ByteArray<64>,
    /// The chip's signature over the device digest.
    pub device_sig: ByteArray<64>,
    /// The maker's signature over the certificate digest.
    pub maker_sig: ByteArray<64>,
}

impl Attestation {
    /// `SHA-256("wisp/v1/attest\0" || node_key[32] || serial[9] || len(maker) u8 || maker)`.
    pub fn device_digest(node: &NodeId, serial: &[u8; 9], maker: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"wisp/v1/attest\0");
        h.update(node.as_bytes());
        h.update(serial);
        h.update([u8::try_from(maker.len()).unwrap_or(u8::MAX)]);
        h.update(maker.as_bytes());
        h.finalize().into()
    }

    /// `SHA-256("wisp/v1/device-cert\0" || serial[9] || device_key[64] || len(maker) u8 || maker)`.
    pub fn certificate_digest(serial: &[u8; 9], device_key: &[u8; 64], maker: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"wisp/v1/device-cert\0");
        h.update(serial);
        h.update(device_key);
        h.update([u8::try_from(maker.len()).unwrap_or(u8::MAX)]);
        h.update(maker.as_bytes());
        h.finalize().into()
    }

    /// Checks both signatures: the maker's (with `maker_key`, a P-256 key the oracle trusts for
    /// this maker name) and the chip's over `node`.
    pub fn verify(
        &self,
        node: &NodeId,
        maker_key: &p256::ecdsa::VerifyingKey,
    ) -> Result<(), Reason> {
        let cert = Self::certificate_digest(&self.serial.0, &self.device_key.0, &self.maker);
        let maker_sig = p256::ecdsa::Signature::from_slice(&self.maker_sig.0)
            .map_err(|_| Reason::AttestationInvalid)?;
        maker_key
            .verify_prehash(&cert, &maker_sig)
            .map_err(|_| Reason::AttestationInvalid)?;
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(&self.device_key.0);
        let device_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| Reason::AttestationInvalid)?;
        let digest = Self::device_digest(node, &self.serial.0, &self.maker);
        let device_sig = p256::ecdsa::Signature::from_slice(&self.device_sig.0)
            .map_err(|_| Reason::AttestationInvalid)?;
        device_key
            .verify_prehash(&digest, &device_sig)
            .map_err(|_| Reason::AttestationInvalid)
    }
}

/// A node joins the network, or re-asserts its location. The node key is the envelope signer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Onboard {
    /// Where rewards are paid: 1 to [`OWNER_MAX`] characters of `[A-Za-z0-9._:-]` (fits base58,
    /// hex and bech32 addresses).
    pub owner: String,
    /// The asserted location.
    pub cell: Cell,
    /// Antenna gain (dBi), -10.0 to 30.0.
    pub antenna_gain: DeciDb,
    /// Antenna height above ground, decimetres (≤ 5000).
    pub antenna_height_dm: u16,
    /// Declared radio bands, 1 to [`BANDS_MAX`].
    pub bands: Vec<Band>,
    /// Whether the node runs the measurer role: it tests other nodes' backhaul from a UDP
    /// address they can reach. Only such nodes are in an epoch's measurer set, so provers are
    /// assigned measurers that will answer.
    pub measurer: bool,
    /// When it was signed; the oracle orders re-assertions by it.
    pub issued_ms: UnixMs,
    /// The secure element's attestation, when the device has one.
    pub attestation: Option<Attestation>,
}

impl Message for Onboard {
    const KIND: Kind = Kind::Onboard;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        let owner_ok = !self.owner.is_empty()
            && self.owner.len() <= OWNER_MAX
            && self
                .owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !owner_ok {
            return Err(invalid(
                "owner",
                "1-64 chars of [A-Za-z0-9._:-]",
                Reason::BadOwnerAddress,
            ));
        }
        if !(-100..=300).contains(&self.antenna_gain.0) {
            return Err(invalid(
                "antenna_gain",
                "outside -10..30 dBi",
                Reason::FieldOutOfRange,
            ));
        }
        if self.antenna_height_dm > 5000 {
            return Err(invalid(
                "antenna_height_dm",
                "above 500 m",
                Reason::FieldOutOfRange,
            ));
        }
        if self.bands.is_empty() || self.bands.len() > BANDS_MAX {
            return Err(invalid(
                "bands",
                "must declare 1 to 8 bands",
                Reason::FieldOutOfRange,
            ));
        }
        if self.bands.iter().any(|b| b.low_khz >= b.high_khz) {
            return Err(invalid(
                "bands",
                "low must be below high",
                Reason::FieldOutOfRange,
            ));
        }
        if let Some(a) = &self.attestation {
            check_str("attestation.maker", &a.maker, MAKER_MAX)?;
            if a.maker.is_empty() {
                return Err(invalid(
                    "attestation.maker",
                    "empty",
                    Reason::FieldOutOfRange,
                ));
            }
        }
        Ok(())
    }
}
