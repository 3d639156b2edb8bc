//! The store's semantics, the same for both backends: SQLite (always) and PostgreSQL
//! (`#[ignore]`d; needs `WISP_TEST_POSTGRES`, and each test uses a fresh schema so parallel
//! tests do not collide).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod pg;

use wisp_oracle::engine::Row;
use wisp_oracle::store::{StorageConfig, Store};
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{Kind, NodeId, ProofId, Reason};

fn row(seq: u64, node: u8, epoch: Option<u64>, verdict: Verdict) -> Row {
    let envelope = [&[node][..], &seq.to_le_bytes(), &[7, 7]].concat();
    Row {
        seq,
        id: ProofId::of(&[&envelope[..], &seq.to_le_bytes()].concat()),
        node: NodeId([node; 32]),
        kind: Kind::Heartbeat,
        epoch,
        received_ms: 1_000 + seq,
        verdict,
        envelope,
    }
}

fn entry(node: u8, amount: u64) -> RewardEntry {
    RewardEntry {
        node: NodeId([node; 32]),
        owner: format!("owner-{node}"),
        amount,
        coverage: 0,
        backhaul: 0,
        uptime: amount,
    }
}

fn rows_of(store: &mut Store) -> Vec<Row> {
    let mut v = Vec::new();
    store.for_each_row(|r| v.push(r)).unwrap();
    v
}

/// Everything the service relies on, in one scenario.
fn semantics(cfg: &StorageConfig) {
    let mut store = Store::open(cfg).unwrap();
    assert_eq!(store.meta("genesis_ms").unwrap(), None);
    store.set_meta("genesis_ms", 42).unwrap();
    store.set_meta("genesis_ms", 43).unwrap();
    assert_eq!(store.meta("genesis_ms").unwrap(), Some(43));

    // Rows: stored in one batch, replayed in arrival order, a stored id is never stored twice.
    let rejected = Verdict::Rejected(Reason::WrongEpoch);
    let rows = vec![
        row(1, 1, None, Verdict::Accepted),
        row(2, 1, Some(5), Verdict::Accepted),
        row(3, 2, Some(5), rejected),
        row(4, 2, Some(5), Verdict::Accepted),
    ];
    store.insert_rows(&rows[..2]).unwrap();
    store.insert_rows(&rows[1..]).unwrap();
    let mut again = rows[3].clone();
    again.seq = 9;
    store.insert_rows(&[again]).unwrap();
    store.insert_rows(&[]).unwrap();
    assert_eq!(rows_of(&mut store), rows);
    assert_eq!(store.proof_count().unwrap(), 4);
    assert_eq!(store.verdict(&rows[2].id).unwrap(), Some(rejected));
    assert_eq!(store.verdict(&ProofId::of(b"never")).unwrap(), None);

    // Epochs: a seed once; a close once, with everything in it.
    store.insert_epoch(5, b"seed-5", 1_000, 3).unwrap();
    store.insert_epoch(5, b"another seed", 2_000, 4).unwrap();
    store.insert_epoch(6, b"seed-6", 1_000, 4).unwrap();
    let epochs = store.epochs().unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(
        (
            epochs[0].epoch,
            &epochs[0].seed[..],
            epochs[0].emission,
            epochs[0].opened_at_seq
        ),
        (5, &b"seed-5"[..], 1_000, Some(3))
    );
    assert_eq!(epochs[0].closed_ms, None);
    let entries = vec![entry(1, 600), entry(2, 400)];
    let rejections = vec![(rows[3].id, Reason::HeartbeatReplay)];
    let pages = vec![b"page-0".to_vec(), b"page-1".to_vec()];
    assert!(
        store
            .commit_close(5, 50_000, 5, &entries, &rejections, &pages)
            .unwrap()
    );
    assert!(
        !store
            .commit_close(5, 60_000, 6, &[entry(3, 1_000)], &[], &[])
            .unwrap(),
        "an epoch closes once"
    );
    let e5 = &store.epochs().unwrap()[0];
    assert_eq!((e5.closed_ms, e5.closed_at_seq), (Some(50_000), Some(5)));
    assert_eq!(store.rewards(5).unwrap(), entries);
    assert_eq!(store.manifests(5).unwrap(), pages);
    assert!(store.rewards(6).unwrap().is_empty());
    assert!(store.manifests(6).unwrap().is_empty());

    // The API's views.
    let node2 = NodeId([2; 32]);
    let proofs = store.node_proofs(&node2, 10).unwrap();
    assert_eq!(
        proofs.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![4, 3],
        "newest first"
    );
    assert_eq!(proofs[0].closed_reason, Some(Reason::HeartbeatReplay));
    assert_eq!(proofs[1].verdict, rejected);
    assert_eq!(store.node_proofs(&node2, 1).unwrap().len(), 1);
    assert_eq!(
        store.node_rewards(&node2, 10).unwrap(),
        vec![(5, entry(2, 400))]
    );
    let mut want = vec![(Reason::WrongEpoch, 1), (Reason::HeartbeatReplay, 1)];
    want.sort_by_key(|(r, _)| r.code());
    assert_eq!(store.rejection_counts().unwrap(), want);

    // Reopening migrates nothing twice and finds everything.
    drop(store);
    let mut store = Store::open(cfg).unwrap();
    assert_eq!(rows_of(&mut store), rows);
    assert_eq!(store.rewards(5).unwrap(), entries);
    assert_eq!(store.meta("genesis_ms").unwrap(), Some(43));
}

#[test]
fn sqlite_semantics() {
    let dir = tempfile::tempdir().unwrap();
    semantics(&StorageConfig::Sqlite(dir.path().join("oracle.db")));
}

#[test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
fn postgres_semantics() {
    semantics(&pg::fresh());
}

#[test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
fn postgres_schemas_keep_parallel_oracles_apart() {
    let a = pg::fresh();
    let b = pg::fresh();
    let mut sa = Store::open(&a).unwrap();
    let mut sb = Store::open(&b).unwrap();
    sa.insert_rows(&[row(1, 1, None, Verdict::Accepted)])
        .unwrap();
    assert_eq!(sa.proof_count().unwrap(), 1);
    assert_eq!(sb.proof_count().unwrap(), 0);
    assert!(matches!(
        Store::open(&StorageConfig::Postgres {
            url: pg::url(),
            schema: Some("Bad; DROP".into())
        }),
        Err(wisp_oracle::store::StoreError::Config(_))
    ));
}
