//! The one signature rule (docs/PROTOCOL.md §3, "The signature rule") on its edge cases:
//! small-order keys and `R` (every one of the eight points, and their non-canonical
//! encodings), mixed-order keys and `R`, non-canonical `s`, and encodings with `y ≥ p`. Every
//! vector is generated here from the curve itself (no vectors copied from elsewhere), and its
//! verdict is asserted identically by the single check ([`verify_signature`] and
//! [`EnvelopeRef::verify`]) and by batch verification, alone and mixed into batches of genuine
//! signatures. The table in docs/PROTOCOL.md ("Signature vectors") lists these cases.
#![allow(clippy::unwrap_used)]

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity};
use sha2::{Digest, Sha512};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{
    self, Cosignature, Envelope, EnvelopeError, EnvelopeRef, KeyCache, SignatureError,
    encode_payload, signed_bytes, verify_signature,
};
use wisp_protocol::msg::{Heartbeat, Versions};
use wisp_protocol::{Kind, NodeId, NodeKey};

/// A scalar derived from a label, so that every vector is reproducible.
fn scalar(label: &str, i: u64) -> Scalar {
    let mut h = Sha512::new();
    h.update(label.as_bytes());
    h.update(i.to_le_bytes());
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// The eight points of small order: `[i]T` for `i` in 0..8, where `T = [ℓ]P` has order 8 for
/// the first point `P` with a small `y` whose torsion component has order 8.
fn torsion() -> Vec<EdwardsPoint> {
    let l_minus_one = -Scalar::ONE;
    for y in 2u8..=255 {
        let mut bytes = [0u8; 32];
        bytes[0] = y;
        let Some(p) = CompressedEdwardsY(bytes).decompress() else {
            continue;
        };
        // `[ℓ − 1]P` is computed on the integer ℓ − 1, so `[ℓ − 1]P + P` is `[ℓ]P`: the
        // prime-order part vanishes and the torsion part remains.
        let t = p * l_minus_one + p;
        if !(t + t + t + t).is_identity() {
            let points: Vec<EdwardsPoint> = (0..8)
                .scan(EdwardsPoint::identity(), |acc, _| {
                    let this = *acc;
                    *acc = this + t;
                    Some(this)
                })
                .collect();
            assert!(points.iter().all(EdwardsPoint::is_small_order));
            assert!(t.mul_by_cofactor().is_identity());
            return points;
        }
    }
    unreachable!("a point with a torsion component of order 8 has a small y")
}

/// Every 32-byte string that `decompress` accepts but that is not the canonical encoding of its
/// point: `y + p` for the `y < 19` on the curve (either sign bit), and the sign bit set on a
/// point with `x = 0` (`y = 1` and `y = p − 1`). Also the strings with `y ≥ p` that are not
/// points at all. Returns (accepted by `decompress`, not points).
fn non_canonical_encodings() -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut candidates = Vec::new();
    for delta in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut b = p;
            b[0] += delta;
            b[31] |= sign;
            candidates.push(b);
        }
    }
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_one = p;
    p_minus_one[0] = 0xec;
    for mut b in [one, p_minus_one] {
        b[31] |= 0x80;
        candidates.push(b);
    }
    let mut points = Vec::new();
    let mut not_points = Vec::new();
    for b in candidates {
        match CompressedEdwardsY(b).decompress() {
            Some(q) => {
                assert_ne!(
                    q.compress().to_bytes(),
                    b,
                    "{} is canonical",
                    hex::encode(b)
                );
                points.push(b);
            }
            None => not_points.push(b),
        }
    }
    (points, not_points)
}

/// The heartbeat every vector signs (as the payload of a heartbeat envelope).
fn payload(seq: u64) -> Vec<u8> {
    encode_payload(&Heartbeat {
        epoch: 7,
        seq,
        uptime_s: 3600,
        sent_ms: 1_790_000_000_000,
        fix: None,
        cell: None,
        versions: Versions::new("0.1.0", "sim"),
        peers: 3,
    })
}

/// `k = SHA-512(R || A || M) mod ℓ` over the bytes as given.
fn challenge(r: &[u8; 32], key: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(key);
    h.update(msg);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn sig_bytes(r: &[u8; 32], s: &[u8; 32]) -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(r);
    sig[32..].copy_from_slice(s);
    sig
}

/// `a + b` of two 256-bit little-endian numbers (the callers' sums do not overflow).
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

/// ℓ, little-endian (ℓ − 1 is the canonical −1).
fn ell() -> [u8; 32] {
    let mut one = [0u8; 32];
    one[0] = 1;
    add_le(&(-Scalar::ONE).to_bytes(), &one)
}

/// One edge case: a key and a signature of `payload(seq)` under the heartbeat domain tag, the
/// rule's verdict, and ed25519-dalek `verify_strict`'s (which differs only on mixed order).
#[derive(Clone, Debug)]
struct Vector {
    name: String,
    key: [u8; 32],
    sig: [u8; 64],
    seq: u64,
    expect: Result<(), SignatureError>,
    strict_accepts: bool,
}

impl Vector {
    fn msg(&self) -> Vec<u8> {
        signed_bytes(Kind::Heartbeat, &payload(self.seq))
    }

    fn envelope(&self) -> Vec<u8> {
        Envelope {
            version: wisp_protocol::VERSION,
            kind: Kind::Heartbeat,
            payload: payload(self.seq),
            signer: NodeId(self.key),
            signature: ByteArray(self.sig),
            cosigners: Vec::new(),
        }
        .to_bytes()
    }
}

/// A signer who knows its secret scalar, so it can put any `R` and `s` on its signatures.
struct Crafter {
    a: Scalar,
}

impl Crafter {
    fn point(&self) -> EdwardsPoint {
        EdwardsPoint::mul_base(&self.a)
    }

    /// A signature by the key `key` (whose prime-order part is `[a]B`) with nonce point
    /// `[r]B + r_torsion`, honest `s = r + k·a`.
    fn sign(&self, key: &[u8; 32], msg: &[u8], r: Scalar, r_torsion: EdwardsPoint) -> [u8; 64] {
        let r_bytes = (EdwardsPoint::mul_base(&r) + r_torsion)
            .compress()
            .to_bytes();
        let k = challenge(&r_bytes, key, msg);
        sig_bytes(&r_bytes, &(r + k * self.a).to_bytes())
    }
}

fn dalek_strict(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|vk| {
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    })
}

/// All the vectors. Their message is the heartbeat of `seq`, one `seq` per vector.
fn vectors() -> Vec<Vector> {
    let torsion = torsion();
    let (non_canonical, not_points) = non_canonical_encodings();
    let signer = Crafter {
        a: scalar("signer", 0),
    };
    let key = signer.point().compress().to_bytes();
    let identity = EdwardsPoint::identity();
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut push = |name: String,
                    key: [u8; 32],
                    make: &mut dyn FnMut(&[u8]) -> [u8; 64],
                    expect: Result<(), SignatureError>,
                    strict_accepts: bool| {
        seq += 1;
        let msg = signed_bytes(Kind::Heartbeat, &payload(seq));
        let sig = make(&msg);
        out.push(Vector {
            name,
            key,
            sig,
            seq,
            expect,
            strict_accepts,
        });
    };

    // A genuine signature, and the same with `s` off by one.
    push(
        "genuine".into(),
        key,
        &mut |m| signer.sign(&key, m, scalar("r", 0), identity),
        Ok(()),
        true,
    );
    push(
        "genuine, s + 1".into(),
        key,
        &mut |m| {
            let mut sig = signer.sign(&key, m, scalar("r", 1), identity);
            let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
            sig[32..].copy_from_slice((s + Scalar::ONE).as_bytes());
            sig
        },
        Err(SignatureError::Equation),
        false,
    );

    // Non-canonical s: the genuine s plus ℓ (the equation holds mod ℓ), ℓ itself, and s with
    // the top bit set.
    push(
        "s + ℓ".into(),
        key,
        &mut |m| {
            let mut sig = signer.sign(&key, m, scalar("r", 2), identity);
            let s: [u8; 32] = sig[32..].try_into().unwrap();
            sig[32..].copy_from_slice(&add_le(&s, &ell()));
            sig
        },
        Err(SignatureError::NonCanonicalS),
        false,
    );
    push(
        "s = ℓ".into(),
        key,
        &mut |m| {
            let mut sig = signer.sign(&key, m, scalar("r", 3), identity);
            sig[32..].copy_from_slice(&ell());
            sig
        },
        Err(SignatureError::NonCanonicalS),
        false,
    );
    push(
        "s with bit 255 set".into(),
        key,
        &mut |m| {
            let mut sig = signer.sign(&key, m, scalar("r", 4), identity);
            sig[63] |= 0x80;
            sig
        },
        Err(SignatureError::NonCanonicalS),
        false,
    );

    for (i, t) in torsion.iter().enumerate() {
        let t_bytes = t.compress().to_bytes();
        // A small-order key: the cofactored equation holds for anyone's s = r, R = [r]B (and
        // for s = 0 with R = the key), so only the small-order check refuses it.
        push(
            format!("small-order key T{i}, R = [r]B, s = r (equation holds)"),
            t_bytes,
            &mut |_| {
                let r = scalar("weak r", i as u64);
                sig_bytes(
                    &EdwardsPoint::mul_base(&r).compress().to_bytes(),
                    r.as_bytes(),
                )
            },
            Err(SignatureError::WeakKey),
            false,
        );
        push(
            format!("small-order key T{i}, R = T{i}, s = 0 (equation holds)"),
            t_bytes,
            &mut |_| sig_bytes(&t_bytes, &[0; 32]),
            Err(SignatureError::WeakKey),
            false,
        );
        push(
            format!("small-order key T{i}, s arbitrary"),
            t_bytes,
            &mut |_| {
                let r = EdwardsPoint::mul_base(&scalar("weak r2", i as u64));
                sig_bytes(
                    &r.compress().to_bytes(),
                    scalar("weak s", i as u64).as_bytes(),
                )
            },
            Err(SignatureError::WeakKey),
            false,
        );
        // A small-order R on a genuine key: with s = k·a the cofactored equation holds.
        push(
            format!("small-order R = T{i}, s = k·a (equation holds)"),
            key,
            &mut |m| {
                let k = challenge(&t_bytes, &key, m);
                sig_bytes(&t_bytes, (k * signer.a).as_bytes())
            },
            Err(SignatureError::SmallOrderR),
            false,
        );
        push(
            format!("small-order R = T{i}, s = 0"),
            key,
            &mut |_| sig_bytes(&t_bytes, &[0; 32]),
            Err(SignatureError::SmallOrderR),
            false,
        );
        push(
            format!("small-order R = T{i}, s arbitrary"),
            key,
            &mut |_| sig_bytes(&t_bytes, scalar("small R s", i as u64).as_bytes()),
            Err(SignatureError::SmallOrderR),
            false,
        );
        if i == 0 {
            continue;
        }
        // Mixed order, made by the key's owner: the cofactored equation holds and the
        // cofactorless one does not, so the rule accepts what `verify_strict` refuses.
        let mixed_key = (signer.point() + t).compress().to_bytes();
        push(
            format!("mixed-order key A + T{i}, honest s (cofactorless fails)"),
            mixed_key,
            &mut |m| {
                // A nonce for which [k]T ≠ 0, so that the cofactorless equation fails.
                (0..)
                    .map(|j| signer.sign(&mixed_key, m, scalar("mixed key r", j), identity))
                    .find(|sig| {
                        let k = challenge(sig[..32].try_into().unwrap(), &mixed_key, m);
                        !(t * k).is_identity()
                    })
                    .unwrap()
            },
            Ok(()),
            false,
        );
        push(
            format!("mixed-order R = [r]B + T{i}, honest s (cofactorless fails)"),
            key,
            &mut |m| signer.sign(&key, m, scalar("mixed R r", i as u64), *t),
            Ok(()),
            false,
        );
    }
    // A mixed-order key whose challenge kills its torsion: both rules accept.
    let t1 = torsion[1];
    let mixed_key = (signer.point() + t1).compress().to_bytes();
    push(
        "mixed-order key A + T1, honest s, [k]T1 = 0 (cofactorless holds)".into(),
        mixed_key,
        &mut |m| {
            (0..)
                .map(|j| signer.sign(&mixed_key, m, scalar("mixed key r0", j), identity))
                .find(|sig| {
                    let k = challenge(sig[..32].try_into().unwrap(), &mixed_key, m);
                    (t1 * k).is_identity()
                })
                .unwrap()
        },
        Ok(()),
        true,
    );

    // Non-canonical encodings (y ≥ p, or a sign bit on x = 0) as the key and as R. Where the
    // point is the identity, s = r (key) or s = k·a (R) makes the equation hold on the decoded
    // point; the encoding alone is refused.
    for (j, enc) in non_canonical.iter().enumerate() {
        let decoded = CompressedEdwardsY(*enc).decompress().unwrap();
        let what = if decoded.is_small_order() {
            "small-order"
        } else {
            "prime-or-mixed-order"
        };
        push(
            format!(
                "non-canonical key {} ({what}), R = [r]B, s = r",
                hex::encode(enc)
            ),
            *enc,
            &mut |_| {
                let r = scalar("nc key r", j as u64);
                sig_bytes(
                    &EdwardsPoint::mul_base(&r).compress().to_bytes(),
                    r.as_bytes(),
                )
            },
            Err(SignatureError::InvalidKey),
            false,
        );
        push(
            format!("non-canonical R {} ({what}), s = k·a", hex::encode(enc)),
            key,
            &mut |m| sig_bytes(enc, (challenge(enc, &key, m) * signer.a).as_bytes()),
            Err(SignatureError::InvalidR),
            false,
        );
        push(
            format!("non-canonical R {} ({what}), s = 0", hex::encode(enc)),
            key,
            &mut |_| sig_bytes(enc, &[0; 32]),
            Err(SignatureError::InvalidR),
            false,
        );
    }
    for enc in &not_points {
        push(
            format!("y ≥ p, not a point {} as key", hex::encode(enc)),
            *enc,
            &mut |m| signer.sign(enc, m, scalar("np", 0), identity),
            Err(SignatureError::InvalidKey),
            false,
        );
        push(
            format!("y ≥ p, not a point {} as R", hex::encode(enc)),
            key,
            &mut |_| sig_bytes(enc, &[0; 32]),
            Err(SignatureError::InvalidR),
            false,
        );
    }
    // A canonical y that is not on the curve.
    let off_curve = (2u8..)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .unwrap();
    push(
        "key not on the curve".into(),
        off_curve,
        &mut |m| signer.sign(&off_curve, m, scalar("off", 0), identity),
        Err(SignatureError::InvalidKey),
        false,
    );
    push(
        "R not on the curve".into(),
        key,
        &mut |_| sig_bytes(&off_curve, &[1; 32]),
        Err(SignatureError::InvalidR),
        false,
    );
    out
}

/// Genuine envelopes (heartbeats by `n` keys, some signing twice).
fn genuine(n: usize, seed: u8) -> Vec<Vec<u8>> {
    let keys: Vec<NodeKey> = (0..u32::try_from(n.div_ceil(2)).unwrap())
        .map(|i| {
            let mut h = blake3::Hasher::new();
            h.update(&[seed]);
            h.update(&i.to_le_bytes());
            NodeKey::from_seed(h.finalize().as_bytes())
        })
        .collect();
    (0..n)
        .map(|i| {
            let hb: Heartbeat = envelope::decode_canonical(&payload(1000 + i as u64)).unwrap();
            Envelope::sign(&keys[i % keys.len()], &hb).to_bytes()
        })
        .collect()
}

fn parse(all: &[Vec<u8>]) -> Vec<EnvelopeRef<'_>> {
    all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect()
}

/// Asserts one vector's verdict by every path: the single function, the envelope check, a
/// batch of one, and a batch of genuine signatures with the vector in the middle.
fn check(v: &Vector, cache: &mut KeyCache) {
    let msg = v.msg();
    assert_eq!(
        verify_signature(&v.key, &msg, &v.sig),
        v.expect,
        "{}",
        v.name
    );
    assert_eq!(
        dalek_strict(&v.key, &msg, &v.sig),
        v.strict_accepts,
        "verify_strict on {}",
        v.name
    );
    let expect_env = v.expect.map_err(|e| e.in_envelope(0));
    let bytes = v.envelope();
    let env = EnvelopeRef::parse(&bytes).unwrap();
    assert_eq!(env.verify(), expect_env, "{}", v.name);
    assert_eq!(
        envelope::verify_batch(&[env]),
        core::slice::from_ref(&expect_env),
        "{}",
        v.name
    );
    let mut all = genuine(12, 1);
    all.insert(5, bytes);
    let refs = parse(&all);
    for (i, r) in envelope::verify_batch_cached(&refs, cache)
        .iter()
        .enumerate()
    {
        if i == 5 {
            assert_eq!(r, &expect_env, "{} in a batch", v.name);
        } else {
            assert_eq!(r, &Ok(()), "genuine {i} in a batch with {}", v.name);
        }
    }
}

#[test]
fn every_vector_gets_the_same_verdict_single_and_batched() {
    let vectors = vectors();
    let mut cache = KeyCache::new(64);
    for v in &vectors {
        check(v, &mut cache);
    }
    // Counts for the table in docs/PROTOCOL.md.
    let (non_canonical, not_points) = non_canonical_encodings();
    let small = non_canonical
        .iter()
        .filter(|b| {
            CompressedEdwardsY(**b)
                .decompress()
                .unwrap()
                .is_small_order()
        })
        .count();
    println!(
        "{} vectors; {} non-canonical encodings decompress ({small} of small order), {} with y ≥ p are not points",
        vectors.len(),
        non_canonical.len(),
        not_points.len()
    );
    for v in &vectors {
        println!(
            "{:<90} {:?} (verify_strict {})",
            v.name,
            v.expect,
            if v.strict_accepts {
                "accepts"
            } else {
                "refuses"
            }
        );
    }
}

#[test]
fn all_vectors_in_one_batch_with_genuine_signatures() {
    let vectors = vectors();
    let mut all = genuine(64, 2);
    let mut expect: Vec<Result<(), EnvelopeError>> = vec![Ok(()); all.len()];
    // Interleaved: every vector after a genuine envelope.
    for (i, v) in vectors.iter().enumerate() {
        let at = (2 * i + 1).min(all.len());
        all.insert(at, v.envelope());
        expect.insert(at, v.expect.map_err(|e| e.in_envelope(0)));
    }
    let refs = parse(&all);
    let single: Vec<_> = refs.iter().map(EnvelopeRef::verify).collect();
    assert_eq!(single, expect);
    assert_eq!(envelope::verify_batch(&refs), expect);
    assert_eq!(
        envelope::verify_batch_cached(&refs, &mut KeyCache::new(1 << 10)),
        expect
    );
}

#[test]
fn the_eight_small_order_points_are_distinct_and_encoded_canonically() {
    let t = torsion();
    let mut encodings: Vec<[u8; 32]> = t.iter().map(|p| p.compress().to_bytes()).collect();
    encodings.sort_unstable();
    encodings.dedup();
    assert_eq!(encodings.len(), 8);
    for e in &encodings {
        let p = CompressedEdwardsY(*e).decompress().unwrap();
        assert_eq!(p.compress().to_bytes(), *e);
        assert!(p.is_small_order());
    }
    assert!(t[0].is_identity());
    assert!(!ED25519_BASEPOINT_POINT.mul_by_cofactor().is_small_order());
}

/// The rule's canonical-encoding test is the byte comparison in `decode_point`; it must agree
/// with "decompress, then re-compress gives the input" on every string: the edge cases, and
/// many others.
#[test]
fn canonical_encoding_means_decompress_then_compress_gives_the_input() {
    let (non_canonical, not_points) = non_canonical_encodings();
    let mut inputs: Vec<[u8; 32]> = non_canonical.into_iter().chain(not_points).collect();
    inputs.extend(torsion().iter().map(|p| p.compress().to_bytes()));
    for i in 0..2000u64 {
        let mut b = [0u8; 32];
        b.copy_from_slice(&Sha512::digest(i.to_le_bytes())[..32]);
        inputs.push(b);
        // Near p and near zero, with either sign bit.
        let mut near = [0xffu8; 32];
        near[0] = 0xd0 + (i % 48) as u8;
        near[31] = 0x7f | (((i / 48) % 2) as u8) << 7;
        inputs.push(near);
        let mut small = [0u8; 32];
        small[0] = (i % 128) as u8;
        small[31] = (((i / 128) % 2) as u8) << 7;
        inputs.push(small);
    }
    let msg = b"any";
    let sig = [0u8; 64];
    for b in inputs {
        let round_trip = CompressedEdwardsY(b)
            .decompress()
            .is_some_and(|p| p.compress().to_bytes() == b);
        let rule = verify_signature(&b, msg, &sig);
        assert_eq!(
            rule != Err(SignatureError::InvalidKey),
            round_trip,
            "{}: {rule:?}",
            hex::encode(b)
        );
    }
}

/// A failed batch is bisected: 256 genuine signatures and 3 bad ones (which pass every
/// precheck and fail only the equation) give exactly the 3, each with the single check's
/// error; and likewise for bad co-signatures, signers that sign many times, and every
/// position.
#[test]
fn a_failed_batch_finds_exactly_the_bad_signatures() {
    let mut all = genuine(259, 3);
    let bad = [17usize, 128, 258];
    for &i in &bad {
        // Flip a bit of s's low byte: still canonical, the equation fails.
        let n = all[i].len();
        all[i][n - 33] ^= 0x04;
    }
    let refs = parse(&all);
    let results = envelope::verify_batch_cached(&refs, &mut KeyCache::new(1024));
    for (i, r) in results.iter().enumerate() {
        if bad.contains(&i) {
            assert_eq!(r, &Err(EnvelopeError::BadSignature { index: 0 }), "{i}");
        } else {
            assert_eq!(r, &Ok(()), "{i}");
        }
    }

    // Co-signed envelopes (bandwidth receipts allow one co-signer; `verify` reads the raw
    // payload, so any bytes do): a bad co-signature is index 1, a bad signer index 0 even when
    // the co-signature is bad too.
    let keys: Vec<NodeKey> = (0..6u8)
        .map(|i| NodeKey::from_seed(&[i + 40; 32]))
        .collect();
    let receipt = |i: usize, bad_signer: bool, bad_cosigner: bool| {
        let payload = vec![u8::try_from(i).unwrap(); 20];
        let msg = signed_bytes(Kind::BandwidthReceipt, &payload);
        let (a, b) = (&keys[i % 6], &keys[(i + 1) % 6]);
        let mut sig = a.sign_raw(&msg);
        let mut co = b.sign_raw(&msg);
        if bad_signer {
            sig[40] ^= 1;
        }
        if bad_cosigner {
            co[40] ^= 1;
        }
        Envelope {
            version: wisp_protocol::VERSION,
            kind: Kind::BandwidthReceipt,
            payload,
            signer: a.id(),
            signature: ByteArray(sig),
            cosigners: vec![Cosignature {
                signer: b.id(),
                signature: ByteArray(co),
            }],
        }
        .to_bytes()
    };
    for len in [2usize, 3, 9, 17, 40] {
        for at in 0..len {
            for (bad_signer, bad_cosigner) in [(false, true), (true, false), (true, true)] {
                let all: Vec<Vec<u8>> = (0..len)
                    .map(|i| receipt(i, i == at && bad_signer, i == at && bad_cosigner))
                    .collect();
                let refs = parse(&all);
                let single: Vec<_> = refs.iter().map(EnvelopeRef::verify).collect();
                let index = if bad_signer { 0 } else { 1 };
                assert_eq!(single[at], Err(EnvelopeError::BadSignature { index }));
                assert_eq!(
                    envelope::verify_batch(&refs),
                    single,
                    "{len} receipts, bad at {at}"
                );
            }
        }
    }
}

/// Random batches: any number of bad signatures anywhere, mixed with mixed-order ones the
/// rule accepts and precheck failures; the batch verdicts are the single ones. Seeds are
/// printed on failure.
#[test]
fn random_batches_give_the_single_verdicts() {
    let vectors = vectors();
    let pool = genuine(300, 4);
    for seed in 0..12u64 {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let len = 1 + (next() % 300) as usize;
        let bad_rate = next() % 40;
        let mut all: Vec<Vec<u8>> = Vec::with_capacity(len);
        for genuine in pool.iter().take(len) {
            let roll = next() % 100;
            if roll < bad_rate {
                let mut e = genuine.clone();
                let n = e.len();
                e[n - 33 - (next() % 31) as usize] ^= 1 << (next() % 8);
                all.push(e);
            } else if roll < bad_rate + 3 {
                all.push(vectors[usize::try_from(next()).unwrap() % vectors.len()].envelope());
            } else {
                all.push(genuine.clone());
            }
        }
        let refs = parse(&all);
        let single: Vec<_> = refs.iter().map(EnvelopeRef::verify).collect();
        assert_eq!(
            envelope::verify_batch_cached(&refs, &mut KeyCache::new(256)),
            single,
            "seed {seed}, {len} envelopes"
        );
    }
}
