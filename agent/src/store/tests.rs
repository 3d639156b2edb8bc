use std::path::Path;

use super::*;

fn bytes(seq: u64) -> Vec<u8> {
    format!("envelope {seq}").into_bytes()
}

fn row(seq: u64) -> Row {
    let b = bytes(seq);
    Row {
        seq,
        id: ProofId::of(&b),
        kind: Kind::Heartbeat,
        created_ms: 1000 + seq,
        len: b.len(),
    }
}

/// Commits proofs `seqs` with counter `hb` set to the last of them.
fn put(s: &mut Store, seqs: std::ops::RangeInclusive<u64>) {
    let b: Vec<_> = seqs.clone().map(bytes).collect();
    let new: Vec<_> = seqs
        .clone()
        .zip(&b)
        .map(|(q, b)| (row(q), &b[..]))
        .collect();
    s.commit(&new, &[], &[("hb", *seqs.end())]).unwrap();
}

/// What a reopened store holds: its proofs' seqs and counter `hb`.
fn reopened(path: &Path) -> Result<(Vec<u64>, u64), StoreError> {
    let s = Store::open(path)?;
    let seqs = s.load()?.iter().map(|(r, _)| r.seq).collect();
    Ok((seqs, s.meta("hb")?))
}

#[test]
fn commit_load_delete_meta_and_blobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let mut s = Store::open(&path).unwrap();
        s.commit(
            &[(row(1), &bytes(1)), (row(2), &bytes(2))],
            &[],
            &[("heartbeat_seq", 2)],
        )
        .unwrap();
        s.commit(
            &[(row(3), &bytes(3))],
            &[row(1).id],
            &[("heartbeat_seq", 3)],
        )
        .unwrap();
        s.set_blob("k", b"v1").unwrap();
        s.set_blob("k", b"v2").unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.load().unwrap(),
        vec![(row(2), bytes(2)), (row(3), bytes(3))]
    );
    assert_eq!(s.meta("heartbeat_seq").unwrap(), 3);
    assert_eq!(s.meta("missing").unwrap(), 0);
    assert_eq!(s.blob("seed").unwrap(), None);
    assert_eq!(s.blob("k").unwrap().unwrap(), b"v2");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_stored_id_or_seq_is_inserted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Store::open(&path).unwrap();
    s.commit(&[(row(1), &bytes(1))], &[], &[]).unwrap();
    // The same id under another seq, another id under a stored seq, and one id twice in one
    // commit: each keeps its first row (INSERT OR IGNORE).
    let again = Row { seq: 7, ..row(1) };
    let other = Row { seq: 1, ..row(2) };
    s.commit(
        &[
            (again, &bytes(1)),
            (other, &bytes(2)),
            (row(3), &bytes(3)),
            (row(3), &bytes(3)),
        ],
        &[],
        &[],
    )
    .unwrap();
    let want = vec![(row(1), bytes(1)), (row(3), bytes(3))];
    assert_eq!(s.load().unwrap(), want);
    drop(s);
    assert_eq!(Store::open(&path).unwrap().load().unwrap(), want);
}

#[test]
fn a_torn_last_record_reopens_to_the_state_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let before = {
        let mut s = Store::open(&path).unwrap();
        put(&mut s, 1..=3);
        put(&mut s, 4..=4);
        s.len()
    };
    {
        let mut s = Store::open(&path).unwrap();
        s.commit(&[(row(5), &bytes(5))], &[row(2).id], &[("hb", 5)])
            .unwrap();
    }
    let whole = std::fs::read(&path).unwrap();
    let before = usize::try_from(before).unwrap();
    // Every length the file could have been left at by a crash during the last append.
    for cut in before..whole.len() {
        std::fs::write(&path, &whole[..cut]).unwrap();
        assert_eq!(
            reopened(&path).unwrap(),
            (vec![1, 2, 3, 4], 4),
            "cut at {cut}"
        );
        // The torn bytes were cut off: the file is whole again, and takes appends.
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            before as u64,
            "cut at {cut}"
        );
    }
    // The whole last record, its bytes zero (the file grew but its data never reached the
    // disk), or its header zero and its payload there: torn too.
    let mut zeroed = whole.clone();
    zeroed[before..].fill(0);
    let mut head_lost = whole.clone();
    head_lost[before..before + FRAME_LEN].fill(0);
    for (name, b) in [("zeroed", zeroed), ("header lost", head_lost)] {
        std::fs::write(&path, &b).unwrap();
        assert_eq!(reopened(&path).unwrap(), (vec![1, 2, 3, 4], 4), "{name}");
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(reopened(&path).unwrap(), (vec![1, 3, 4, 5], 5));
}

#[test]
fn a_damaged_record_before_valid_ones_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let (a, b) = {
        let mut s = Store::open(&path).unwrap();
        put(&mut s, 1..=1);
        let a = s.len();
        put(&mut s, 2..=3);
        let b = s.len();
        put(&mut s, 4..=4);
        (usize::try_from(a).unwrap(), usize::try_from(b).unwrap())
    };
    let whole = std::fs::read(&path).unwrap();
    // Any one byte of the middle record flipped, header or payload.
    for at in a..b {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        match reopened(&path) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(&format!("byte {a}")), "{m}"),
            other => panic!("byte {at} flipped: {other:?}"),
        }
        // Nothing was cut: the operator still has every byte.
        assert_eq!(std::fs::read(&path).unwrap(), damaged);
    }
}

#[test]
fn a_length_above_the_limit_is_corrupt_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    drop(Store::open(&path).unwrap());
    // A header that passes its check, claiming 4 GiB − 1: refused before any allocation,
    // although the file ends right after it.
    let huge = journal::frame(&[]).unwrap();
    let len = u32::MAX.to_le_bytes();
    let mut head = huge[..FRAME_LEN].to_vec();
    head[..4].copy_from_slice(&len);
    let mut h = blake3::Hasher::new();
    h.update(&len);
    h.update(&head[4..12]);
    head[12..16].copy_from_slice(&h.finalize().as_bytes()[..4]);
    let mut file = std::fs::read(&path).unwrap();
    file.extend_from_slice(&head);
    std::fs::write(&path, &file).unwrap();
    match Store::open(&path) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("above the"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A commit above the limit is refused, and nothing of it is written.
    std::fs::write(&path, journal::header()).unwrap();
    let mut s = Store::open(&path).unwrap();
    let big = vec![0u8; MAX_RECORD + 1];
    let r = Row {
        len: big.len(),
        id: ProofId::of(&big),
        ..row(1)
    };
    assert!(matches!(
        s.commit(&[(r, &big)], &[], &[]),
        Err(StoreError::TooLarge(_))
    ));
    assert_eq!(s.load().unwrap(), vec![]);
}

#[test]
fn compaction_keeps_the_state_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Store::open(&path).unwrap();
    s.set_blob("seed", b"s").unwrap();
    // 3,000 proofs through, 10 kept: about 150 KiB of records for 1 KiB of live state.
    let mut peak = 0;
    for q in 1..=3000u64 {
        let b = [bytes(q), vec![b'x'; 300]].concat();
        let r = Row {
            id: ProofId::of(&b),
            len: b.len(),
            ..row(q)
        };
        let gone: Vec<ProofId> = if q > 10 {
            let old = [bytes(q - 10), vec![b'x'; 300]].concat();
            vec![ProofId::of(&old)]
        } else {
            vec![]
        };
        s.commit(&[(r, &b)], &gone, &[("hb", q)]).unwrap();
        peak = peak.max(s.len());
    }
    let len = s.len();
    assert!(peak <= COMPACT_MIN + 1024, "never compacted: {peak}");
    assert!(len < COMPACT_MIN, "{len}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert!(!tmp_path(&path).exists());
    let want = s.load().unwrap();
    assert_eq!(want.len(), 10);
    assert_eq!(want[0].0.seq, 2991);
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.load().unwrap(), want);
    assert_eq!(s.meta("hb").unwrap(), 3000);
    assert_eq!(s.blob("seed").unwrap().unwrap(), b"s");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_compaction_cut_short_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let state = {
        let mut s = Store::open(&path).unwrap();
        put(&mut s, 1..=5);
        s.state.clone()
    };
    // A crash before the rename: the snapshot (here half of one) is left beside the log.
    let mut snapshot = Store::open(&path).unwrap();
    snapshot.compact().unwrap();
    drop(snapshot);
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(tmp_path(&path), &whole[..whole.len() / 2]).unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.state, state);
    assert!(
        !tmp_path(&path).exists(),
        "the unfinished snapshot is removed"
    );
}

#[test]
fn a_second_process_cannot_open_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Store::open(&path).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Locked(_))));
    // Nor the file a compaction put in its place.
    put(&mut s, 1..=1);
    s.compact().unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Locked(_))));
    drop(s);
    assert_eq!(reopened(&path).unwrap(), (vec![1], 1));
}

#[test]
fn a_file_that_is_not_an_outbox_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, b"SQLite format 3\0 and more").unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
    let mut newer = journal::header();
    newer[8] = 2;
    std::fs::write(&path, newer).unwrap();
    match Store::open(&path) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("version 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A header cut short at the file's creation is written again.
    std::fs::write(&path, &journal::header()[..5]).unwrap();
    assert_eq!(reopened(&path).unwrap(), (vec![], 0));
}

#[test]
fn an_envelope_that_does_not_hash_to_its_id_fails_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join(FILE_NAME)).unwrap();
    let wrong = Row {
        id: ProofId::of(b"something else"),
        ..row(1)
    };
    s.commit(&[(wrong, &bytes(1))], &[], &[]).unwrap();
    assert!(matches!(s.load(), Err(StoreError::Corrupt(_))));
}
