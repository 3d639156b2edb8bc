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
    let refs: Vec<EnvelopeRef<'_>> = all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
    assert!(verify_batch(&refs).iter().all(|r| r.is_ok()));
    // Corrupt two signatures: exactly those two fail.
    let last = all[3].len() - 2;
    all[3][last] ^= 0x40;
    all[11][10] ^= 0x01;
    let refs: Vec<EnvelopeRef<'_>> = all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
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
    let refs: Vec<EnvelopeRef<'_>> = all.iter().map(|b| EnvelopeRef::parse(b).unwrap()).collect();
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
