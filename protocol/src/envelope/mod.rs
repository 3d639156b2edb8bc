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

use alloc::collections::BTreeMap;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::bytes::ByteArray;
use crate::id::{NodeId, NodeKey};
use crate::kind::{Kind, MAX_ENVELOPE_LEN};
use crate::reason::Reason;

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

/// Why one signature is refused under wisp's signature rule (docs/PROTOCOL.md §3, "The
/// signature rule"). The checks run in the order of the variants; the first failure is the one
/// reported. Only the verdict is normative: another verifier may report another reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key is not the canonical encoding of a curve point.
    #[error("the key is not a canonically encoded curve point")]
    InvalidKey,
    /// The key is one of the eight points of small order, for which anyone can sign.
    #[error("the key is of small order")]
    WeakKey,
    /// `s` is not below the group order ℓ.
    #[error("s is not canonical (s ≥ ℓ)")]
    NonCanonicalS,
    /// `R` is not the canonical encoding of a curve point.
    #[error("R is not a canonically encoded curve point")]
    InvalidR,
    /// `R` is one of the eight points of small order.
    #[error("R is of small order")]
    SmallOrderR,
    /// The cofactored equation `[8]([s]B − R − [k]A) = 0` does not hold.
    #[error("the signature equation does not hold")]
    Equation,
}

impl SignatureError {
    /// The envelope error for signature `index` (0 is the signer) failing this way: a key
    /// that is not a valid key is [`EnvelopeError::InvalidKey`], anything else
    /// [`EnvelopeError::BadSignature`].
    pub fn in_envelope(self, index: usize) -> EnvelopeError {
        match self {
            SignatureError::InvalidKey | SignatureError::WeakKey => EnvelopeError::InvalidKey,
            _ => EnvelopeError::BadSignature { index },
        }
    }
}

/// Verifies one ed25519 signature (RFC 8032 pure Ed25519, `sig` = `R || s`) of `msg` by `key`
/// under wisp's one signature rule, which single and batch verification apply alike:
///
/// 1. `key` is a canonical encoding of a curve point (`y < p`, and no sign bit on `x = 0`),
///    and that point is not of small order;
/// 2. `s < ℓ`;
/// 3. `R` is a canonical encoding of a curve point, not of small order;
/// 4. the cofactored equation `[8]([s]B − R − [k]A) = 0` holds, with
///    `k = SHA-512(R || key || msg) mod ℓ` over the bytes as received.
///
/// Every signature an RFC 8032 signer makes verifies under this rule, and under ed25519-dalek's
/// `verify_strict` too; the two differ only on signatures whose `R` or key carries a torsion
/// component, which only the key's owner can make. The batch check ([`verify_batch_cached`])
/// accepts exactly what this function accepts (up to a 2⁻¹²⁸ chance over its coefficients).
/// Envelopes, login tokens and every other node-key signature are checked through it.
pub fn verify_signature(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), SignatureError> {
    let a = decode_key(key)?;
    if precheck(key, &[msg], sig)?.holds(&a) {
        Ok(())
    } else {
        Err(SignatureError::Equation)
    }
}

/// The point of a public key under the rule: canonical, on the curve, not of small order.
fn decode_key(key: &[u8; 32]) -> Result<EdwardsPoint, SignatureError> {
    let a = decode_point(key).ok_or(SignatureError::InvalidKey)?;
    if a.is_small_order() {
        return Err(SignatureError::WeakKey);
    }
    Ok(a)
}

/// A signature that passed the checks before the equation: `R` decompressed, `s` canonical and
/// the challenge `k` computed.
#[derive(Clone, Copy)]
struct Prechecked {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl Prechecked {
    /// The single cofactored equation for key point `a`. `[s]B − [k]A` uses the basepoint's
    /// precomputed table; a point is of small order exactly when `[8]` of it is the identity.
    fn holds(&self, a: &EdwardsPoint) -> bool {
        let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-a, &self.s);
        (sb_minus_ka - self.r).is_small_order()
    }
}

/// Checks `s` and `R` of `sig` and computes `k = SHA-512(R || key || message) mod ℓ`, the
/// message given in parts (`domain_tag`, `payload`) so that nothing is copied.
fn precheck(
    key: &[u8; 32],
    message: &[&[u8]],
    sig: &[u8; 64],
) -> Result<Prechecked, SignatureError> {
    let (r_bytes, s_bytes) = sig.split_at(32);
    let r_bytes = <&[u8; 32]>::try_from(r_bytes).unwrap_or_else(|_| unreachable!("64 = 32 + 32"));
    let s_bytes = <[u8; 32]>::try_from(s_bytes).unwrap_or_else(|_| unreachable!("64 = 32 + 32"));
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SignatureError::NonCanonicalS)?;
    let r = decode_point(r_bytes).ok_or(SignatureError::InvalidR)?;
    if r.is_small_order() {
        return Err(SignatureError::SmallOrderR);
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key);
    for part in message {
        h.update(part);
    }
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Ok(Prechecked {
        r,
        s,
        k: Scalar::from_bytes_mod_order_wide(&wide),
    })
}

/// The point `bytes` encode, if they are its one (canonical) encoding.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_encoding(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// Whether `bytes` would be the one encoding of the point they decode to: `y < p`, and the sign
/// bit clear if `x = 0` (that is, if `y` is 1 or `p − 1`). curve25519-dalek's `decompress`
/// accepts both of those non-canonical forms (it reduces `y` mod `p` and negates zero), so the
/// rule refuses them first; this is what decompressing and re-compressing would find, without
/// the field inversion of re-compressing.
fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7 == 1;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // p = 2²⁵⁵ − 19 is `ed ff … ff 7f` little-endian: y ≥ p iff y's upper 31 bytes are all
    // ones (with the top bit clear) and its low byte is at least 0xed.
    let top_all_ones = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff);
    if top_all_ones && y[0] >= 0xed {
        return false;
    }
    let y_is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
    let y_is_p_minus_one = top_all_ones && y[0] == 0xec;
    !(sign && (y_is_one || y_is_p_minus_one))
}

/// Decompressed public keys, so that a signer seen before costs no point decompression (a
/// field exponentiation, about a third of a batched signature check). Bounded: when full it is
/// emptied and fills again.
#[derive(Debug, Default)]
pub struct KeyCache {
    points: BTreeMap<[u8; 32], Result<EdwardsPoint, SignatureError>>,
    cap: usize,
}

impl KeyCache {
    /// A cache of at most `cap` keys (0: nothing is kept between batches).
    pub fn new(cap: usize) -> Self {
        Self {
            points: BTreeMap::new(),
            cap,
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The key's point, or why the rule refuses the key.
    fn get(&mut self, key: &[u8; 32]) -> Result<EdwardsPoint, SignatureError> {
        if let Some(p) = self.points.get(key) {
            return *p;
        }
        let p = decode_key(key);
        if self.points.len() >= self.cap.max(1) {
            self.points.clear();
        }
        self.points.insert(*key, p);
        p
    }
}

/// Verifies the signatures of many envelopes at once: the verdicts are exactly those of
/// [`EnvelopeRef::verify`] on each envelope. Keys are decompressed once per batch;
/// [`verify_batch_cached`] keeps them between batches.
pub fn verify_batch(envs: &[EnvelopeRef<'_>]) -> Vec<Result<(), EnvelopeError>> {
    verify_batch_cached(envs, &mut KeyCache::new(0))
}

/// A failed batch is split in halves until a part has at most this many signatures, which are
/// then checked one by one. Measured on 1,024 heartbeats with 1 and 8 bad signatures
/// (`cargo bench -p wisp-protocol --bench protocol -- batch_failures`): parts of 1 to 8 cost
/// the same within 2 %, 16 about 4 % more, 32 and 64 from 4 % to 26 % more.
const BISECT_LEAF: usize = 8;

/// One signature of a batch, prechecked, with its coefficient.
struct BatchEntry {
    /// Which envelope it belongs to.
    env: usize,
    /// Its key, as an index into the batch's distinct key points.
    key: usize,
    sig: Prechecked,
    /// Its 128-bit coefficient `z`.
    z: Scalar,
}

/// [`verify_batch`] with decompressed keys kept in `keys` from one batch to the next.
///
/// Each signature is first prechecked as [`verify_signature`] does (key, `s`, `R`); an envelope
/// failing any precheck is judged by [`EnvelopeRef::verify`] alone. The rest is one random
/// linear combination of the cofactored equations, `[8](Σ zᵢ([sᵢ]B − Rᵢ − [kᵢ]Aᵢ)) = 0`,
/// evaluated as one multiscalar multiplication in which a key that signed several times is one
/// point. Multiplying by 8 maps every term into the prime-order subgroup, where a combination
/// with a nonzero term vanishes for at most one value of that term's `zᵢ`: the batch holds
/// exactly when every single equation holds, except with probability 2⁻¹²⁸ (unlike the
/// cofactorless combination, where a torsion component vanishes whenever `zᵢ` is a multiple of
/// its order). The 128-bit `zᵢ` are drawn from a BLAKE3 transcript of every `R`, key, `s` and
/// challenge in the batch: deterministic, so the same batch gets the same answer (the
/// simulator's determinism needs it), and no signer can choose its `zᵢ` without fixing the
/// whole batch.
///
/// A failed batch is bisected: the combination over the first half is computed and the second
/// half's is the difference, so each split costs one multiscalar multiplication of half the
/// size, and only halves whose combination fails are split further, down to parts of a few
/// signatures checked one by one. Every envelope holding a failing signature is then judged by
/// [`EnvelopeRef::verify`], so its error is exactly the single check's.
pub fn verify_batch_cached(
    envs: &[EnvelopeRef<'_>],
    keys: &mut KeyCache,
) -> Vec<Result<(), EnvelopeError>> {
    let mut results: Vec<Result<(), EnvelopeError>> = Vec::with_capacity(envs.len());
    let mut entries: Vec<BatchEntry> = Vec::with_capacity(envs.len());
    // The distinct keys of the batch (a key that signed many times is one point).
    let mut points: Vec<EdwardsPoint> = Vec::new();
    let mut index: BTreeMap<&[u8; 32], usize> = BTreeMap::new();
    let mut transcript = blake3::Hasher::new_derive_key("wisp envelope batch verification v1");
    for (e, env) in envs.iter().enumerate() {
        let first = entries.len();
        let message = [env.kind.domain_tag(), env.payload];
        let mut seen: Vec<&[u8; 32]> = Vec::new();
        let mut ok = true;
        for (key, sig) in env.signatures() {
            if seen.contains(&key) {
                ok = false;
                break;
            }
            seen.push(key);
            let (Ok(a), Ok(checked)) = (keys.get(key), precheck(key, &message, sig)) else {
                ok = false;
                break;
            };
            let next = points.len();
            let ki = *index.entry(key).or_insert(next);
            if ki == next {
                points.push(a);
            }
            transcript.update(&sig[..32]);
            transcript.update(key);
            transcript.update(&sig[32..]);
            transcript.update(checked.k.as_bytes());
            entries.push(BatchEntry {
                env: e,
                key: ki,
                sig: checked,
                z: Scalar::ZERO,
            });
        }
        if ok {
            results.push(Ok(()));
        } else {
            // Judged alone, by the single check (which fails it, with the exact error).
            entries.truncate(first);
            results.push(env.verify());
        }
    }
    let failing: Vec<usize> = match entries.as_slice() {
        [] => Vec::new(),
        // One signature: its own equation, on the basepoint's precomputed table.
        [one] if one.sig.holds(&points[one.key]) => Vec::new(),
        [_] => alloc::vec![0],
        _ => {
            let mut zs = transcript.finalize_xof();
            for entry in &mut entries {
                let mut z = [0u8; 16];
                zs.fill(&mut z);
                entry.z = Scalar::from(u128::from_le_bytes(z));
            }
            let all = combination(&entries, &points);
            let mut failing = Vec::new();
            if !all.is_small_order() {
                bisect(&entries, &points, all, 0, &mut failing);
            }
            failing
        }
    };
    for i in failing {
        let e = entries[i].env;
        // An envelope with two failing signatures is judged once.
        if results[e].is_ok() {
            results[e] = envs[e].verify();
        }
    }
    results
}

/// `Σ zᵢ([sᵢ]B − Rᵢ − [kᵢ]Aᵢ)` over `entries`, as one multiscalar multiplication (each key
/// once). The batch equation holds for them when `[8]` of it is the identity.
fn combination(entries: &[BatchEntry], points: &[EdwardsPoint]) -> EdwardsPoint {
    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients: BTreeMap<usize, Scalar> = BTreeMap::new();
    let mut scalars: Vec<Scalar> = Vec::with_capacity(1 + 2 * entries.len());
    let mut terms: Vec<EdwardsPoint> = Vec::with_capacity(1 + 2 * entries.len());
    scalars.push(Scalar::ZERO);
    terms.push(ED25519_BASEPOINT_POINT);
    for entry in entries {
        b_coefficient += entry.z * entry.sig.s;
        *key_coefficients.entry(entry.key).or_insert(Scalar::ZERO) -= entry.z * entry.sig.k;
        scalars.push(-entry.z);
        terms.push(entry.sig.r);
    }
    scalars[0] = b_coefficient;
    for (key, c) in key_coefficients {
        scalars.push(c);
        terms.push(points[key]);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &terms)
}

/// Finds the entries whose single equation fails, given that `sum` (their combination) fails.
/// Pushes their indices, offset by `offset`, to `failing`.
///
/// The combination is linear, so with the same coefficients `sum = left + right`: one
/// multiscalar multiplication gives the left half and a subtraction the right one, and a
/// failing `sum` has at least one failing half. Every failing signature is found (a part with
/// one is missed only if its combination vanishes, with probability 2⁻¹²⁸), and at least one
/// always is.
fn bisect(
    entries: &[BatchEntry],
    points: &[EdwardsPoint],
    sum: EdwardsPoint,
    offset: usize,
    failing: &mut Vec<usize>,
) {
    if entries.len() <= BISECT_LEAF {
        for (i, entry) in entries.iter().enumerate() {
            if !entry.sig.holds(&points[entry.key]) {
                failing.push(offset + i);
            }
        }
        return;
    }
    let mid = entries.len() / 2;
    let (left, right) = entries.split_at(mid);
    let left_sum = combination(left, points);
    let right_sum = sum - left_sum;
    if !left_sum.is_small_order() {
        bisect(left, points, left_sum, offset, failing);
    }
    if !right_sum.is_small_order() {
        bisect(right, points, right_sum, offset + mid, failing);
    }
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
mod tests {
    use super::*;
    use crate::msg::Heartbeat;

    fn hb(seq: u64) -> Heartbeat {
        Heartbeat {
            epoch: 7,
            seq,
            uptime_s: 3600,
            sent_ms: 1_790_000_000_000,
            fix: None,
            cell: None,
            versions: crate::msg::Versions::new("0.1.0", "sim"),
            peers: 3,
        }
    }

    #[test]
    fn sign_open_round_trip() {
        let k = NodeKey::from_seed(&[1; 32]);
        let env = Envelope::sign(&k, &hb(1));
        let bytes = env.to_bytes();
        let opened = open::<Heartbeat>(&bytes).unwrap();
        assert_eq!(opened.msg, hb(1));
        assert_eq!(opened.signer, k.id());
        assert_eq!(opened.id, ProofId::of(&bytes));
        assert_eq!(opened.id, env.proof_id());
    }

    #[test]
    fn varint_rules() {
        assert_eq!(take_varint(&[0]).unwrap().0, 0);
        assert_eq!(take_varint(&[0x7f]).unwrap().0, 127);
        assert_eq!(take_varint(&[0x80, 0x01]).unwrap().0, 128);
        assert_eq!(
            take_varint(&[0x80, 0x00]).unwrap_err(),
            EnvelopeError::BadVarint
        );
        assert_eq!(
            take_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap().0,
            u64::from(u32::MAX)
        );
        assert_eq!(
            take_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]).unwrap_err(),
            EnvelopeError::BadVarint
        );
        assert_eq!(take_varint(&[0x80]).unwrap_err(), EnvelopeError::Truncated);
        assert_eq!(
            take_varint(&[0x80; 6]).unwrap_err(),
            EnvelopeError::BadVarint
        );
    }

    #[test]
    fn framing_errors() {
        let k = NodeKey::from_seed(&[1; 32]);
        let bytes = Envelope::sign(&k, &hb(1)).to_bytes();
        assert_eq!(EnvelopeRef::parse(&[]).unwrap_err(), EnvelopeError::Empty);
        assert_eq!(
            EnvelopeRef::parse(&[1]).unwrap_err(),
            EnvelopeError::Truncated
        );
        assert_eq!(
            EnvelopeRef::parse(&[2, 6]).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
        assert_eq!(
            EnvelopeRef::parse(&[1, 0]).unwrap_err(),
            EnvelopeError::UnknownKind(0)
        );
        assert_eq!(
            EnvelopeRef::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            EnvelopeError::Truncated
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            EnvelopeRef::parse(&long).unwrap_err(),
            EnvelopeError::TrailingBytes(1)
        );
        let huge = alloc::vec![0u8; MAX_ENVELOPE_LEN + 1];
        assert!(matches!(
            EnvelopeRef::parse(&huge),
            Err(EnvelopeError::TooLarge { .. })
        ));
        // Per-kind limit: a heartbeat-kind envelope longer than 512 bytes is refused unread.
        let mut big = alloc::vec![0u8; 600];
        big[0] = 1;
        big[1] = Kind::Heartbeat.as_u8();
        assert_eq!(
            EnvelopeRef::parse(&big).unwrap_err(),
            EnvelopeError::TooLarge { len: 600, max: 512 }
        );
    }

    #[test]
    fn cosigners_refused_on_single_signed_kinds() {
        let k = NodeKey::from_seed(&[1; 32]);
        let mut env = Envelope::sign(&k, &hb(1));
        env.cosign(&NodeKey::from_seed(&[2; 32]));
        assert!(matches!(
            EnvelopeRef::parse(&env.to_bytes()),
            Err(EnvelopeError::Cosigners { got: 1, max: 0, .. })
        ));
    }

    #[test]
    fn wrong_kind_is_refused_before_verification() {
        let k = NodeKey::from_seed(&[1; 32]);
        let mut bytes = Envelope::sign(&k, &hb(1)).to_bytes();
        // Also break the signature: the kind error must come first.
        let n = bytes.len();
        bytes[n - 2] ^= 1;
        assert_eq!(
            open::<crate::msg::StatusReport>(&bytes).unwrap_err(),
            EnvelopeError::WrongKind {
                expected: Kind::StatusReport,
                got: Kind::Heartbeat
            }
        );
    }

    #[test]
    fn batch_matches_single_verification() {
        let keys: Vec<NodeKey> = (0..20u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
        let mut all: Vec<Vec<u8>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Envelope::sign(k, &hb(i as u64)).to_bytes())
            .collect();
        let refs: Vec<EnvelopeRef<'_>> =
            all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
        assert!(verify_batch(&refs).iter().all(|r| r.is_ok()));
        // Corrupt two signatures: exactly those two fail.
        let last = all[3].len() - 2;
        all[3][last] ^= 0x40;
        all[11][10] ^= 0x01;
        let refs: Vec<EnvelopeRef<'_>> =
            all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
        let results = verify_batch(&refs);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 3 || i == 11, "envelope {i}: {r:?}");
        }
    }

    #[test]
    fn cached_batches_give_the_single_verdicts_with_repeated_and_broken_signers() {
        let keys: Vec<NodeKey> = (0..7u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
        let mut all: Vec<Vec<u8>> = (0..70u64)
            .map(|i| Envelope::sign(&keys[(i % 7) as usize], &hb(i)).to_bytes())
            .collect();
        // Layout tail: signer [32] | R [32] | s [32] | cosigner count (0).
        let n = all[0].len();
        let (signer, r, s) = (n - 97, n - 65, n - 33);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // A wrong signature, an `R` of small order, a non-canonical `s`, a key that is not a
        // curve point, a weak key, and a message changed after signing.
        all[5][s] ^= 0x01;
        all[12][r..r + 32].copy_from_slice(&identity);
        all[20][n - 2] = 0xff;
        all[33][signer..signer + 32].copy_from_slice(&[0xff; 32]);
        all[41][signer..signer + 32].copy_from_slice(&identity);
        all[50][5] ^= 0x01;
        let broken = [5, 12, 20, 33, 41, 50];
        let refs: Vec<EnvelopeRef<'_>> =
            all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
        let single: Vec<_> = refs.iter().map(EnvelopeRef::verify).collect();
        for (i, r) in single.iter().enumerate() {
            assert_eq!(r.is_err(), broken.contains(&i), "envelope {i}: {r:?}");
        }
        let mut cache = KeyCache::new(1024);
        for round in 0..3 {
            assert_eq!(
                verify_batch_cached(&refs, &mut cache),
                single,
                "round {round}"
            );
        }
        // The seven signers and the two broken keys.
        assert_eq!(cache.len(), 9);
        // Batches of one take the single-equation path: the same verdicts.
        for (i, e) in refs.iter().enumerate() {
            assert_eq!(
                verify_batch_cached(core::slice::from_ref(e), &mut cache),
                [single[i].clone()],
                "envelope {i} alone"
            );
        }
        assert_eq!(verify_batch(&refs), single);
        // Good envelopes only: the batch holds, with a cache of one (emptied as it fills).
        let good: Vec<EnvelopeRef<'_>> = refs
            .iter()
            .enumerate()
            .filter(|(i, _)| !broken.contains(i))
            .map(|(_, e)| *e)
            .collect();
        let mut tiny = KeyCache::new(1);
        assert!(
            verify_batch_cached(&good, &mut tiny)
                .iter()
                .all(Result::is_ok)
        );
        assert!(tiny.len() <= 1);
    }

    #[test]
    fn error_reasons_are_stable() {
        assert_eq!(EnvelopeError::NonCanonical.reason(), Reason::NonCanonical);
        assert_eq!(
            EnvelopeError::BadSignature { index: 0 }.reason(),
            Reason::BadSignature
        );
        assert_eq!(
            EnvelopeError::TooLarge { len: 1, max: 0 }.reason(),
            Reason::Oversize
        );
    }
}
