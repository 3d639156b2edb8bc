//! Secure element: the device's P-256 identity and its attestation of the node key.
//!
//! A hotspot's node key is ed25519 and lives in a file; the secure element holds a P-256 key
//! that never leaves the chip and was certified by the maker. At onboarding the chip signs
//! "this node key runs on my device" ([`attest`]), and the oracle checks the device key
//! against the keys makers registered.
//!
//! - [`SecureElement`]: what the agent needs from any secure element.
//! - [`Atecc608`]: the I²C driver for ATECC608-class chips ([`atecc`]).
//! - [`SoftSecureElement`]: the same in software, for the simulator, tests and devices without
//!   a chip. It is not tamper-resistant and proves nothing about hardware.

pub mod atecc;
pub mod crc;
mod soft;

pub use atecc::{Atecc608, AteccConfig};
pub use soft::{SoftSeError, SoftSecureElement};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

/// A P-256 secure element.
pub trait SecureElement {
    /// The element's error.
    type Error;

    /// The 9-byte device serial number.
    fn serial(&mut self) -> Result<[u8; 9], Self::Error>;

    /// The public key of the private key in `slot`: `x || y`, 32 bytes each, big-endian
    /// (SEC1 uncompressed without the 0x04 prefix).
    fn public_key(&mut self, slot: u8) -> Result<[u8; 64], Self::Error>;

    /// ECDSA P-256 signature `r || s` (32 bytes each, big-endian) over a 32-byte digest the
    /// caller computed (the element does not hash).
    fn sign_digest(&mut self, slot: u8, digest: &[u8; 32]) -> Result<[u8; 64], Self::Error>;

    /// 32 random bytes.
    fn random(&mut self) -> Result<[u8; 32], Self::Error>;
}

/// The domain tag that starts every attestation digest.
pub const ATTEST_DOMAIN: &[u8] = b"wisp/v1/attest\0";

/// The longest maker name, in bytes.
pub const MAX_MAKER_LEN: usize = 32;

/// A maker name longer than [`MAX_MAKER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("maker name is {len} bytes, at most {MAX_MAKER_LEN} allowed")]
pub struct MakerTooLong {
    /// Its length in bytes.
    pub len: usize,
}

/// Why [`attest`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError<E> {
    /// The maker name does not fit.
    #[error(transparent)]
    MakerTooLong(#[from] MakerTooLong),
    /// The secure element failed.
    #[error("secure element: {0:?}")]
    Device(E),
}

/// `SHA-256(b"wisp/v1/attest\0" || node_public_key || serial || len(maker) as u8 || maker)`.
///
/// The maker's length prefix keeps the encoding injective: no two `(key, serial, maker)`
/// triples hash the same bytes.
pub fn attestation_digest(
    node_public_key: &[u8; 32],
    serial: &[u8; 9],
    maker: &str,
) -> Result<[u8; 32], MakerTooLong> {
    let len = maker.len();
    let len_byte = u8::try_from(len)
        .ok()
        .filter(|_| len <= MAX_MAKER_LEN)
        .ok_or(MakerTooLong { len })?;
    let digest = Sha256::new()
        .chain_update(ATTEST_DOMAIN)
        .chain_update(node_public_key)
        .chain_update(serial)
        .chain_update([len_byte])
        .chain_update(maker.as_bytes())
        .finalize();
    Ok(digest.into())
}

/// A device's statement that it runs a node key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attestation {
    /// The secure element's serial number.
    pub serial: [u8; 9],
    /// The device key, `x || y`.
    pub device_public_key: [u8; 64],
    /// ECDSA P-256 `r || s` over [`attestation_digest`].
    pub signature: [u8; 64],
}

impl Attestation {
    /// Checks the signature against the device key for `node_public_key` and `maker`.
    ///
    /// This proves only that the device key signed; whether the device key belongs to a
    /// trusted maker is the oracle's check.
    pub fn verify(&self, node_public_key: &[u8; 32], maker: &str) -> bool {
        let Ok(digest) = attestation_digest(node_public_key, &self.serial, maker) else {
            return false;
        };
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(&self.device_public_key);
        let (Ok(key), Ok(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1),
            p256::ecdsa::Signature::from_slice(&self.signature),
        ) else {
            return false;
        };
        key.verify_prehash(&digest, &sig).is_ok()
    }
}

/// Has `se` attest `node_public_key` with the key in `slot`.
pub fn attest<S: SecureElement>(
    se: &mut S,
    slot: u8,
    node_public_key: &[u8; 32],
    maker: &str,
) -> Result<Attestation, AttestError<S::Error>> {
    // Check the maker before touching the device.
    attestation_digest(node_public_key, &[0; 9], maker)?;
    let serial = se.serial().map_err(AttestError::Device)?;
    let digest = attestation_digest(node_public_key, &serial, maker)?;
    let device_public_key = se.public_key(slot).map_err(AttestError::Device)?;
    let signature = se.sign_digest(slot, &digest).map_err(AttestError::Device)?;
    Ok(Attestation {
        serial,
        device_public_key,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_layout_is_fixed() {
        let node = [7u8; 32];
        let serial = [0x01, 0x23, 1, 2, 3, 4, 5, 6, 0xEE];
        let mut expected = Sha256::new();
        expected.update(b"wisp/v1/attest\0");
        expected.update(node);
        expected.update(serial);
        expected.update([4]);
        expected.update(b"acme");
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(attestation_digest(&node, &serial, "acme"), Ok(expected));
        // Moving a byte between serial-adjacent fields changes the digest.
        assert_ne!(
            attestation_digest(&node, &serial, "acme"),
            attestation_digest(&node, &serial, "acm")
        );
    }

    #[test]
    fn maker_length_is_bounded() {
        let node = [0u8; 32];
        let serial = [0u8; 9];
        assert!(attestation_digest(&node, &serial, "").is_ok());
        assert!(attestation_digest(&node, &serial, &"m".repeat(32)).is_ok());
        assert_eq!(
            attestation_digest(&node, &serial, &"m".repeat(33)),
            Err(MakerTooLong { len: 33 })
        );
        // Multi-byte characters count in bytes: 11 × 3 = 33.
        assert_eq!(
            attestation_digest(&node, &serial, &"€".repeat(11)),
            Err(MakerTooLong { len: 33 })
        );
    }
}
