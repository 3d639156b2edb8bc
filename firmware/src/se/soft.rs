//! A secure element in software.

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

use super::SecureElement;

/// Why the software secure element refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SoftSeError {
    /// The secret is not a valid P-256 private key (zero, or not below the group order).
    #[error("secret is not a valid P-256 private key")]
    InvalidSecret,
    /// The software element has one key, in slot 0.
    #[error("no key in slot {0}: the software secure element has only slot 0")]
    UnknownSlot(u8),
    /// Signing failed (cannot happen for a valid key and a 32-byte digest; reported, not hidden).
    #[error("signing failed")]
    Signing,
}

/// A [`SecureElement`] backed by a P-256 key in memory.
///
/// Signatures are deterministic (RFC 6979), so a simulation replays bit for bit.
/// [`SecureElement::random`] is a hash chain over the secret and a counter: unpredictable to
/// anyone without the secret, deterministic for a given secret, and repeated after a restart
/// unless the caller mixes fresh entropy in with [`SoftSecureElement::reseed`].
#[derive(Clone)]
pub struct SoftSecureElement {
    key: SigningKey,
    serial: [u8; 9],
    random_state: [u8; 32],
    counter: u64,
}

impl core::fmt::Debug for SoftSecureElement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the key or the random state.
        f.debug_struct("SoftSecureElement")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl SoftSecureElement {
    /// An element whose slot 0 holds the private key `secret` (big-endian scalar) and which
    /// reports `serial`.
    pub fn new(secret: &[u8; 32], serial: [u8; 9]) -> Result<Self, SoftSeError> {
        let key = SigningKey::from_slice(secret).map_err(|_| SoftSeError::InvalidSecret)?;
        let random_state = Sha256::new()
            .chain_update(b"wisp/v1/soft-se-random\0")
            .chain_update(secret)
            .finalize()
            .into();
        Ok(Self {
            key,
            serial,
            random_state,
            counter: 0,
        })
    }

    /// Mixes `entropy` into the random-number state.
    pub fn reseed(&mut self, entropy: &[u8]) {
        self.random_state = Sha256::new()
            .chain_update(self.random_state)
            .chain_update(entropy)
            .finalize()
            .into();
    }

    fn check_slot(slot: u8) -> Result<(), SoftSeError> {
        if slot == 0 {
            Ok(())
        } else {
            Err(SoftSeError::UnknownSlot(slot))
        }
    }
}

impl SecureElement for SoftSecureElement {
    type Error = SoftSeError;

    fn serial(&mut self) -> Result<[u8; 9], SoftSeError> {
        Ok(self.serial)
    }

    fn public_key(&mut self, slot: u8) -> Result<[u8; 64], SoftSeError> {
        Self::check_slot(slot)?;
        let point = self.key.verifying_key().to_sec1_point(false);
        let mut out = [0u8; 64];
        // Uncompressed SEC1: 0x04 || x || y.
        out.copy_from_slice(&point.as_bytes()[1..]);
        Ok(out)
    }

    fn sign_digest(&mut self, slot: u8, digest: &[u8; 32]) -> Result<[u8; 64], SoftSeError> {
        Self::check_slot(slot)?;
        let signature: Signature = self
            .key
            .sign_prehash(digest)
            .map_err(|_| SoftSeError::Signing)?;
        let mut out = [0u8; 64];
        out.copy_from_slice(&signature.to_bytes());
        Ok(out)
    }

    fn random(&mut self) -> Result<[u8; 32], SoftSeError> {
        self.counter = self.counter.wrapping_add(1);
        Ok(Sha256::new()
            .chain_update(self.random_state)
            .chain_update(self.counter.to_le_bytes())
            .finalize()
            .into())
    }
}
