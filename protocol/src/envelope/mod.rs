//! The signed envelope: framing, signing, verification and canonical decoding.
//!
//! Wire layout (all integers are LEB128 varints, minimal length, as postcard writes them):
//!
//! ```text
//! version u8 | kind u8 | payload_len varint | payload | signer [32] | signature [64]
//!           | cosigner_count varint | cosigner_count × (signer [32] | signature [64])
//! ```
//!
//! Every signature is ed25519 over `domain_tag(kind) || payload`. [`open`] does the work in the
//! order that keeps an attacker's cost above ours: size limit (before reading anything) →
//! framing → signature check over the raw payload bytes → canonical decode (no trailing bytes,
//! re-encoding gives the same bytes) → per-message checks (signer roles, field bounds).
//!
//! One signature rule ([`verify_signature`]: RFC 8032's cofactored equation, canonical
//! encodings, no small-order key or `R`) decides every signature, alone or in a batch
//! ([`verify_batch_cached`], which gives exactly the single verdicts).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::id::{NodeId, NodeKey};
use crate::kind::{Kind, MAX_ENVELOPE_LEN};
use crate::reason::Reason;

mod signature;

pub use signature::{
    KeyCache, SignatureError, verify_batch, verify_batch_cached, verify_signature,
};
use signature::{decode_key, precheck};

/// BLAKE3 of an envelope's bytes: the one id of a proof. Acks, dedupe and the outbox use it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProofId(pub ByteArray<32>);

impl ProofId {
    /// The id of these envelope bytes.
    pub fn of(envelope_bytes: &[u8]) -> Self {
        Self(ByteArray(*blake3::hash(envelope_bytes).as_bytes()))
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }
}

impl fmt::Display for ProofId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ProofId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProofId({})", self.0)
    }
}

/// Why an envelope was refused. Each maps to a stable [`Reason`] code via
/// [`EnvelopeError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Zero bytes.
    #[error("empty envelope")]
    Empty,
    /// Longer than the limit for its kind (or than the global limit).
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A kind byte this build does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The bytes end inside a field.
    #[error("envelope truncated")]
    Truncated,
    /// A varint is longer than needed or overflows, so the bytes are not the one encoding.
    #[error("non-minimal or overflowing varint")]
    BadVarint,
    /// Bytes follow the last field.
    #[error("{0} trailing bytes after the envelope")]
    TrailingBytes(usize),
    /// More co-signatures than the kind allows.
    #[error("{got} co-signatures where {kind} allows at most {max}")]
    Cosigners {
        /// The envelope kind.
        kind: Kind,
        /// Co-signatures present.
        got: usize,
        /// Co-signatures allowed.
        max: usize,
    },
    /// A signer's public key is not a valid, canonical ed25519 point (or is of small order).
    #[error("invalid signer key")]
    InvalidKey,
    /// A signature does not verify (index 0 is the signer, 1.. the co-signers).
    #[error("signature {index} does not verify")]
    BadSignature {
        /// Which signature failed.
        index: usize,
    },
    /// The same key signed twice.
    #[error("duplicate signer")]
    DuplicateSigner,
    /// The envelope is of another kind than the caller expected.
    #[error("expected a {expected} envelope, got {got}")]
    WrongKind {
        /// What the caller asked for.
        expected: Kind,
        /// What the bytes hold.
        got: Kind,
    },
    /// The payload does not decode as the kind's message.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The payload decodes, but re-encoding gives other bytes (or bytes are left over).
    #[error("payload is not in canonical form")]
    NonCanonical,
    /// The message decodes but breaks a structural rule (signer roles, field bounds).
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
        /// The stable code the oracle records.
        reason: Reason,
    },
}

impl EnvelopeError {
    /// The stable reason code for this error.
    pub fn reason(&self) -> Reason {
        match self {
            EnvelopeError::Empty
            | EnvelopeError::Truncated
            | EnvelopeError::BadVarint
            | EnvelopeError::TrailingBytes(_)
            | EnvelopeError::Cosigners { .. }
            | EnvelopeError::DuplicateSigner
            | EnvelopeError::Decode(_) => Reason::Malformed,
            EnvelopeError::TooLarge { .. } => Reason::Oversize,
            EnvelopeError::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            EnvelopeError::UnknownKind(_) | EnvelopeError::WrongKind { .. } => {
                Reason::UnexpectedKind
            }
            EnvelopeError::InvalidKey | EnvelopeError::BadSignature { .. } => Reason::BadSignature,
            EnvelopeError::NonCanonical => Reason::NonCanonical,
            EnvelopeError::Invalid { reason, .. } => *reason,
        }
    }
}

/// A payload type carried in envelopes of one kind.
pub trait Message: Serialize + DeserializeOwned {
    /// The kind of envelope that carries this message.
    const KIND: Kind;

    /// Structural checks that need the signers or go beyond the encoding: who must have signed
    /// (for example, the measurer of a receipt is its signer), string lengths, list bounds.
    /// Called by [`open`] after the signatures verified and the payload decoded canonically.
    fn check(&self, signer: &NodeId, cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        let _ = (signer, cosigners);
        Ok(())
    }
}

/// One co-signature: another party's signature over the same `domain_tag || payload`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Cosignature {
    /// The co-signer's key.
    pub signer: NodeId,
    /// Its signature.
    pub signature: ByteArray<64>,
}

/// An owned envelope, for building and sending.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version, [`crate::VERSION`].
    pub version: u8,
    /// What the payload is.
    pub kind: Kind,
    /// The canonical postcard encoding of the message.
    pub payload: Vec<u8>,
    /// The main signer.
    pub signer: NodeId,
    /// The main signature.
    pub signature: ByteArray<64>,
    /// Further signatures over the same bytes (bandwidth receipts).
    pub cosigners: Vec<Cosignature>,
}

/// The bytes a signature covers: `domain_tag(kind) || payload`.
pub fn signed_bytes(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let tag = kind.domain_tag();
    let mut m = Vec::with_capacity(tag.len() + payload.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(payload);
    m
}

impl Envelope {
    /// Encodes `msg` canonically and signs it with `key`.
    pub fn sign<M: Message>(key: &NodeKey, msg: &M) -> Envelope {
        let payload = encode_payload(msg);
        let signature = key.sign_raw(&signed_bytes(M::KIND, &payload));
        Envelope {
            version: crate::VERSION,
            kind: M::KIND,
            payload,
            signer: key.id(),
            signature: ByteArray(signature),
            cosigners: Vec::new(),
        }
    }

    /// Adds `key`'s co-signature over the same payload. The caller (the prover of a receipt)
    /// should have checked the payload first: a co-signature is an endorsement.
    pub fn cosign(&mut self, key: &NodeKey) {
        let signature = key.sign_raw(&signed_bytes(self.kind, &self.payload));
        self.cosigners.push(Cosignature {
            signer: key.id(),
            signature: ByteArray(signature),
        });
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(2 + 5 + self.payload.len() + 97 + 96 * self.cosigners.len());
        out.push(self.version);
        out.push(self.kind.as_u8());
        put_varint(&mut out, self.payload.len() as u64);
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(self.signer.as_bytes());
        out.extend_from_slice(self.signature.as_bytes());
        put_varint(&mut out, self.cosigners.len() as u64);
        for c in &self.cosigners {
            out.extend_from_slice(c.signer.as_bytes());
            out.extend_from_slice(c.signature.as_bytes());
        }
        out
    }

    /// The proof id of the wire bytes.
    pub fn proof_id(&self) -> ProofId {
        ProofId::of(&self.to_bytes())
    }
}

/// An envelope parsed (framing only) from received bytes; borrows them. Nothing is verified
/// yet: call [`EnvelopeRef::verify`] before trusting any field.
#[derive(Clone, Copy, Debug)]
pub struct EnvelopeRef<'a> {
    /// All the bytes.
    pub bytes: &'a [u8],
    /// The kind.
    pub kind: Kind,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The main signer's key bytes.
    pub signer: &'a [u8; 32],
    /// The main signature bytes.
    pub signature: &'a [u8; 64],
    cosig_bytes: &'a [u8],
}

impl<'a> EnvelopeRef<'a> {
    /// Checks the size limit and parses the framing. Does no cryptography.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        // Size first: nothing else is looked at for an oversize input.
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        let (&kind_byte, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
        if version != crate::VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let kind = Kind::from_u8(kind_byte).ok_or(EnvelopeError::UnknownKind(kind_byte))?;
        let max = kind.max_envelope_len();
        if bytes.len() > max {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let (len, rest) = take_varint(rest)?;
        let len = usize::try_from(len).map_err(|_| EnvelopeError::Truncated)?;
        if rest.len() < len {
            return Err(EnvelopeError::Truncated);
        }
        let (payload, rest) = rest.split_at(len);
        let (signer, rest) = take_array::<32>(rest)?;
        let (signature, rest) = take_array::<64>(rest)?;
        let (count, rest) = take_varint(rest)?;
        let max_cosigners = kind.max_cosigners();
        if count > max_cosigners as u64 {
            return Err(EnvelopeError::Cosigners {
                kind,
                got: usize::try_from(count).unwrap_or(usize::MAX),
                max: max_cosigners,
            });
        }
        let cosig_len = 96 * usize::try_from(count).map_err(|_| EnvelopeError::Truncated)?;
        if rest.len() < cosig_len {
            return Err(EnvelopeError::Truncated);
        }
        let (cosig_bytes, rest) = rest.split_at(cosig_len);
        if !rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes(rest.len()));
        }
        Ok(EnvelopeRef {
            bytes,
            kind,
            payload,
            signer,
            signature,
            cosig_bytes,
        })
    }

    /// The main signer.
    pub fn signer_id(&self) -> NodeId {
        NodeId(*self.signer)
    }

    /// The co-signers' keys, in wire order.
    pub fn cosigner_ids(&self) -> Vec<NodeId> {
        self.cosignatures().map(|(k, _)| NodeId(*k)).collect()
    }

    /// Whether `node` may send this envelope on its own proofs topic: its signer; for a
    /// bandwidth receipt also its co-signer (measurer and prover both send it); for a usage
    /// receipt only its co-signer, the hotspot (a subscriber has no broker login, and its
    /// receipt is its hotspot's proof). Says nothing about the signatures' validity.
    pub fn sent_by(&self, node: &NodeId) -> bool {
        let cosigned = || self.cosignatures().any(|(k, _)| k == node.as_bytes());
        match self.kind {
            Kind::UsageReceipt => cosigned(),
            Kind::BandwidthReceipt => self.signer == node.as_bytes() || cosigned(),
            _ => self.signer == node.as_bytes(),
        }
    }

    /// Every `(key, signature)` pair: the signer first, then the co-signers.
    pub fn signatures(&self) -> impl Iterator<Item = (&'a [u8; 32], &'a [u8; 64])> + 'a {
        core::iter::once((self.signer, self.signature)).chain(self.cosignatures())
    }

    fn cosignatures(&self) -> impl Iterator<Item = (&'a [u8; 32], &'a [u8; 64])> + 'a {
        self.cosig_bytes.chunks_exact(96).map(|c| {
            let (k, s) = c.split_at(32);
            (
                <&[u8; 32]>::try_from(k).unwrap_or_else(|_| unreachable!("chunk of 96")),
                <&[u8; 64]>::try_from(s).unwrap_or_else(|_| unreachable!("chunk of 96")),
            )
        })
    }

    /// The proof id: BLAKE3 of all the bytes.
    pub fn proof_id(&self) -> ProofId {
        ProofId::of(self.bytes)
    }

    /// The message every signature covers: `domain_tag(kind) || payload`.
    pub fn signed_message(&self) -> Vec<u8> {
        signed_bytes(self.kind, self.payload)
    }

    /// Verifies every signature under wisp's one signature rule ([`verify_signature`]) over the
    /// raw payload bytes, in wire order, and that no key signed twice. Stops at the first
    /// failure, which names the signature (0 is the signer, 1.. the co-signers).
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        let message = [self.kind.domain_tag(), self.payload];
        let mut seen: Vec<&[u8; 32]> = Vec::with_capacity(1 + self.cosig_bytes.len() / 96);
        for (index, (key, sig)) in self.signatures().enumerate() {
            if seen.contains(&key) {
                return Err(EnvelopeError::DuplicateSigner);
            }
            seen.push(key);
            let a = decode_key(key).map_err(|e| e.in_envelope(index))?;
            let sig = precheck(key, &message, sig).map_err(|e| e.in_envelope(index))?;
            if !sig.holds(&a) {
                return Err(SignatureError::Equation.in_envelope(index));
            }
        }
        Ok(())
    }

    /// Decodes the payload as `M`, canonically, and runs `M`'s structural checks. Call only
    /// after [`EnvelopeRef::verify`] (or a batch verification) succeeded; [`open`] does both.
    pub fn decode<M: Message>(&self) -> Result<Opened<M>, EnvelopeError> {
        if self.kind != M::KIND {
            return Err(EnvelopeError::WrongKind {
                expected: M::KIND,
                got: self.kind,
            });
        }
        let msg: M = decode_canonical(self.payload)?;
        let signer = self.signer_id();
        let cosigners = self.cosigner_ids();
        msg.check(&signer, &cosigners)?;
        Ok(Opened {
            msg,
            signer,
            cosigners,
            id: self.proof_id(),
        })
    }
}

/// A verified, decoded message with who signed it and its proof id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened<M> {
    /// The message.
    pub msg: M,
    /// The main signer.
    pub signer: NodeId,
    /// The co-signers.
    pub cosigners: Vec<NodeId>,
    /// BLAKE3 of the envelope bytes.
    pub id: ProofId,
}

/// Size check, framing, signatures over the raw bytes ([`EnvelopeRef::verify`]), canonical
/// decode and structural checks, in that order.
pub fn open<M: Message>(bytes: &[u8]) -> Result<Opened<M>, EnvelopeError> {
    let env = EnvelopeRef::parse(bytes)?;
    if env.kind != M::KIND {
        // Refuse before spending a signature check on a message nobody asked for.
        return Err(EnvelopeError::WrongKind {
            expected: M::KIND,
            got: env.kind,
        });
    }
    env.verify()?;
    env.decode()
}

/// Encodes a message's payload (postcard). The result is canonical by construction.
pub fn encode_payload<M: Serialize>(msg: &M) -> Vec<u8> {
    postcard::to_allocvec(msg)
        .unwrap_or_else(|e| unreachable!("encoding to a Vec cannot fail: {e}"))
}

/// Decodes `bytes` as `M` and requires the canonical form: no trailing bytes, and re-encoding
/// yields exactly `bytes` (this rejects over-long varints, which postcard's decoder accepts).
pub fn decode_canonical<M: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<M, EnvelopeError> {
    let (msg, rest) =
        postcard::take_from_bytes::<M>(bytes).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EnvelopeError::NonCanonical);
    }
    if encode_payload(&msg) != bytes {
        return Err(EnvelopeError::NonCanonical);
    }
    Ok(msg)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A minimal LEB128 varint of at most 32 bits (postcard's `u32`).
fn take_varint(bytes: &[u8]) -> Result<(u64, &[u8]), EnvelopeError> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of zero (after the first) means a shorter encoding existed.
            if i > 0 && b == 0 {
                return Err(EnvelopeError::BadVarint);
            }
            if v > u64::from(u32::MAX) {
                return Err(EnvelopeError::BadVarint);
            }
            return Ok((v, &bytes[i + 1..]));
        }
    }
    if bytes.len() < 5 {
        Err(EnvelopeError::Truncated)
    } else {
        Err(EnvelopeError::BadVarint)
    }
}

fn take_array<const N: usize>(bytes: &[u8]) -> Result<(&[u8; N], &[u8]), EnvelopeError> {
    if bytes.len() < N {
        return Err(EnvelopeError::Truncated);
    }
    let (a, rest) = bytes.split_at(N);
    Ok((
        <&[u8; N]>::try_from(a).map_err(|_| EnvelopeError::Truncated)?,
        rest,
    ))
}

#[cfg(test)]
mod tests;
