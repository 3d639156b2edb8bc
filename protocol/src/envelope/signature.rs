//! The signature rule ([`verify_signature`]) and batch verification ([`verify_batch_cached`]),
//! which gives exactly the single verdicts.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use sha2::{Digest, Sha512};

use super::{EnvelopeError, EnvelopeRef};

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
pub(super) fn decode_key(key: &[u8; 32]) -> Result<EdwardsPoint, SignatureError> {
    let a = decode_point(key).ok_or(SignatureError::InvalidKey)?;
    if a.is_small_order() {
        return Err(SignatureError::WeakKey);
    }
    Ok(a)
}

/// A signature that passed the checks before the equation: `R` decompressed, `s` canonical and
/// the challenge `k` computed.
#[derive(Clone, Copy)]
pub(super) struct Prechecked {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl Prechecked {
    /// The single cofactored equation for key point `a`. `[s]B − [k]A` uses the basepoint's
    /// precomputed table; a point is of small order exactly when `[8]` of it is the identity.
    pub(super) fn holds(&self, a: &EdwardsPoint) -> bool {
        let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-a, &self.s);
        (sb_minus_ka - self.r).is_small_order()
    }
}

/// Checks `s` and `R` of `sig` and computes `k = SHA-512(R || key || message) mod ℓ`, the
/// message given in parts (`domain_tag`, `payload`) so that nothing is copied.
pub(super) fn precheck(
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
