//! The store's semantics, the same for both backends: SQLite (always) and PostgreSQL
//! (`#[ignore]`d; needs `WISP_TEST_POSTGRES`, and each test uses a fresh schema so parallel
//! tests do not collide).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod pg;

use wisp_oracle::engine::Row;
use wisp_oracle::store::{CloseMarks, ROW_CHUNK, StorageConfig, Store};
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

/// An entry paid `amount`, a quarter of it (rounded down) from the usage pool.
fn entry(node: u8, amount: u64) -> RewardEntry {
    RewardEntry {
        node: NodeId([node; 32]),
        owner: format!("owner-{node}"),
        amount,
        coverage: 0,
        backhaul: 0,
        uptime: amount - amount / 4,
        usage: amount / 4,
    }
}

async fn rows_of(store: &mut Store) -> Vec<Row> {
    let mut v = Vec::new();
    store.for_each_row(|r| v.push(r)).await.unwrap();
    v
}

/// Everything the service relies on, in one scenario.
async fn semantics(cfg: &StorageConfig) {
    let mut store = Store::open(cfg).await.unwrap();
    assert_eq!(store.meta("genesis_ms").await.unwrap(), None);
    store.set_meta("genesis_ms", 42).await.unwrap();
    store.set_meta("genesis_ms", 43).await.unwrap();
    assert_eq!(store.meta("genesis_ms").await.unwrap(), Some(43));

    // Rows: stored in one batch, replayed in arrival order, a stored id is never stored twice.
    let rejected = Verdict::Rejected(Reason::WrongEpoch);
    let rows = vec![
        row(1, 1, None, Verdict::Accepted),
        row(2, 1, Some(5), Verdict::Accepted),
        row(3, 2, Some(5), rejected),
        row(4, 2, Some(5), Verdict::Accepted),
    ];
    store.insert_rows(&rows[..2]).await.unwrap();
    store.insert_rows(&rows[1..]).await.unwrap();
    let mut again = rows[3].clone();
    again.seq = 9;
    store.insert_rows(&[again]).await.unwrap();
    store.insert_rows(&[]).await.unwrap();
    assert_eq!(rows_of(&mut store).await, rows);
    assert_eq!(store.proof_count().await.unwrap(), 4);
    assert_eq!(store.verdict(&rows[2].id).await.unwrap(), Some(rejected));
    assert_eq!(store.verdict(&ProofId::of(b"never")).await.unwrap(), None);
    let asked = vec![rows[2].id, ProofId::of(b"never"), rows[0].id];
    let found = store.verdicts(asked).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&rows[2].id], rejected);
    assert_eq!(found[&rows[0].id], Verdict::Accepted);
    assert!(store.verdicts(Vec::new()).await.unwrap().is_empty());

    // Epochs: a seed once; a close once, with everything in it.
    store.insert_epoch(5, b"seed-5", 1_000, 3).await.unwrap();
    store
        .insert_epoch(5, b"another seed", 2_000, 4)
        .await
        .unwrap();
    store.insert_epoch(6, b"seed-6", 1_000, 4).await.unwrap();
    let epochs = store.epochs().await.unwrap();
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
    // A flag twice (kept once) and a higher one: the API shows the lowest code (1008 < 1009).
    let flagged = vec![
        (rows[2].id, Reason::UsageCreditShort),
        (rows[2].id, Reason::UsageExceedsBackhaul),
        (rows[2].id, Reason::UsageExceedsBackhaul),
    ];
    let lowest = Reason::UsageExceedsBackhaul;
    let pages = vec![b"page-0".to_vec(), b"page-1".to_vec()];
    let marks = CloseMarks {
        rejected: &rejections,
        flagged: &flagged,
    };
    assert!(
        store
            .commit_close(5, 50_000, 5, &entries, marks, &pages)
            .await
            .unwrap()
    );
    assert!(
        !store
            .commit_close(5, 60_000, 6, &[entry(3, 1_000)], CloseMarks::default(), &[])
            .await
            .unwrap(),
        "an epoch closes once"
    );
    let e5 = &store.epochs().await.unwrap()[0];
    assert_eq!((e5.closed_ms, e5.closed_at_seq), (Some(50_000), Some(5)));
    assert_eq!(store.rewards(5).await.unwrap(), entries);
    assert_eq!(store.manifests(5).await.unwrap(), pages);
    assert!(store.rewards(6).await.unwrap().is_empty());
    assert!(store.manifests(6).await.unwrap().is_empty());

    // The API's views.
    let node2 = NodeId([2; 32]);
    let proofs = store.node_proofs(&node2, 10).await.unwrap();
    assert_eq!(
        proofs.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![4, 3],
        "newest first"
    );
    assert_eq!(proofs[0].closed_reason, Some(Reason::HeartbeatReplay));
    assert_eq!((proofs[0].flag, proofs[1].flag), (None, Some(lowest)));
    assert_eq!(proofs[1].verdict, rejected);
    assert_eq!(store.node_proofs(&node2, 1).await.unwrap().len(), 1);
    assert_eq!(
        store.node_rewards(&node2, 10).await.unwrap(),
        vec![(5, entry(2, 400))]
    );
    let mut want = vec![(Reason::WrongEpoch, 1), (Reason::HeartbeatReplay, 1)];
    want.sort_by_key(|(r, _)| r.code());
    assert_eq!(store.rejection_counts().await.unwrap(), want);

    // Reopening migrates nothing twice and finds everything.
    drop(store);
    let mut store = Store::open(cfg).await.unwrap();
    assert_eq!(rows_of(&mut store).await, rows);
    assert_eq!(store.rewards(5).await.unwrap(), entries);
    assert_eq!(store.meta("genesis_ms").await.unwrap(), Some(43));

    // A replay reads more rows than one chunk holds, all of them, in order.
    let many: Vec<Row> = (100..100 + ROW_CHUNK as u64 + 3)
        .map(|seq| row(seq, 3, None, Verdict::Accepted))
        .collect();
    store.insert_rows(&many).await.unwrap();
    let mut seqs = Vec::new();
    let mut chunks = store.rows().await.unwrap();
    while let Some(chunk) = chunks.next_chunk().await.unwrap() {
        assert!(chunk.len() <= ROW_CHUNK);
        seqs.extend(chunk.iter().map(|r| r.seq));
    }
    drop(chunks);
    let want: Vec<u64> = rows.iter().chain(&many).map(|r| r.seq).collect();
    assert_eq!(seqs, want);
}

#[tokio::test]
async fn sqlite_semantics() {
    let dir = tempfile::tempdir().unwrap();
    semantics(&StorageConfig::Sqlite(dir.path().join("oracle.db"))).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_semantics() {
    semantics(&pg::fresh()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_schemas_keep_parallel_oracles_apart() {
    let a = pg::fresh();
    let b = pg::fresh();
    let mut sa = Store::open(&a).await.unwrap();
    let sb = Store::open(&b).await.unwrap();
    sa.insert_rows(&[row(1, 1, None, Verdict::Accepted)])
        .await
        .unwrap();
    assert_eq!(sa.proof_count().await.unwrap(), 1);
    assert_eq!(sb.proof_count().await.unwrap(), 0);
    assert!(matches!(
        Store::open(&StorageConfig::Postgres {
            url: pg::url(),
            schema: Some("Bad; DROP".into())
        })
        .await,
        Err(wisp_oracle::store::StoreError::Config(_))
    ));
}

/// The leader lease: one holder at a time; taken over only once expired, with a new fencing
/// token; the old holder's writes (and takes from the intake) refused from then on, whichever
/// connection it writes on.
#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_the_leader_lease_fences_a_holder_that_was_overtaken() {
    use wisp_oracle::store::StoreError;
    let cfg = pg::fresh();
    let mut a = Store::open(&cfg).await.unwrap();
    let mut a_writer = Store::open(&cfg).await.unwrap();
    let mut b = Store::open(&cfg).await.unwrap();
    assert_eq!(a.lease().await.unwrap(), None);
    let t1 = a.acquire_lease("a", 60_000).await.unwrap().unwrap();
    a_writer.set_fence(a.fence().cloned()).unwrap();
    assert_eq!(b.acquire_lease("b", 60_000).await.unwrap(), None);
    assert!(a.renew_lease(60_000).await.unwrap());
    a_writer
        .insert_rows(&[row(1, 1, None, Verdict::Accepted)])
        .await
        .unwrap();
    let held = a.lease().await.unwrap().unwrap();
    assert_eq!((held.holder.as_str(), held.token), ("a", t1));
    assert!(held.expires_in_ms > 50_000, "{held:?}");

    // a lets it lapse (a short renewal), b takes it over with the next token.
    assert!(a.renew_lease(1).await.unwrap());
    let mut t2 = None;
    for _ in 0..100 {
        t2 = b.acquire_lease("b", 60_000).await.unwrap();
        if t2.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(t2, Some(t1 + 1));
    assert!(!a.renew_lease(60_000).await.unwrap(), "a renewed b's lease");
    for r in [
        a_writer
            .insert_rows(&[row(2, 1, None, Verdict::Accepted)])
            .await,
        a_writer.set_meta("genesis_ms", 5).await,
        a_writer.insert_epoch(1, b"seed", 10, 2).await,
    ] {
        assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    }
    assert!(
        a_writer
            .commit_close(0, 1, 1, &[], CloseMarks::default(), &[])
            .await
            .is_err()
    );
    assert_eq!(
        b.proof_count().await.unwrap(),
        1,
        "a wrote after it lost the lease"
    );
    b.insert_rows(&[row(3, 2, None, Verdict::Accepted)])
        .await
        .unwrap();
    // The intake: standbys hand verified publishes over (no lease needed to add); the holder
    // takes them oldest first, once; an overtaken holder takes nothing.
    use wisp_oracle::store::intake::Handed;
    let handed = |n: u8| Handed {
        topic: format!("wisp/v1/proofs/{n}"),
        payload: vec![n; 3],
        at_ms: u64::from(n),
    };
    let mut standby = Store::open(&cfg).await.unwrap();
    standby.push_intake(&[handed(1), handed(2)]).await.unwrap();
    standby.push_intake(&[handed(3)]).await.unwrap();
    assert!(matches!(
        a_writer.take_intake(10).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(b.take_intake(2).await.unwrap(), vec![handed(1), handed(2)]);
    assert_eq!(b.take_intake(10).await.unwrap(), vec![handed(3)]);
    assert_eq!(b.take_intake(10).await.unwrap(), vec![]);
    // b hands it on at a clean stop: free at once.
    b.release_lease().await.unwrap();
    assert_eq!(a.acquire_lease("a", 60_000).await.unwrap(), Some(t1 + 2));
    // The lease needs PostgreSQL.
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Store::open(&StorageConfig::Sqlite(dir.path().join("o.db")))
        .await
        .unwrap();
    assert!(matches!(
        lite.acquire_lease("a", 1).await,
        Err(StoreError::Config(_))
    ));
}

/// A database a newer build migrated is refused, naming both versions, on either backend.
async fn newer_schema_refused(cfg: &StorageConfig, raise: &str) {
    drop(Store::open(cfg).await.unwrap());
    raw_sql(cfg, raise).await;
    let err = Store::open(cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("version 999") && err.contains("newer"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    newer_schema_refused(
        &StorageConfig::Sqlite(dir.path().join("oracle.db")),
        "INSERT INTO schema_migrations (version) VALUES (999)",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_a_newer_schema_is_refused() {
    newer_schema_refused(
        &pg::fresh(),
        "INSERT INTO schema_migrations (version) VALUES (999)",
    )
    .await;
}

/// Oracles starting together on a new schema all open it: the loser of the race to create the
/// schema (or the migrations' table) goes on.
#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_oracles_starting_together_on_a_new_schema_all_open_it() {
    let cfg = pg::fresh();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { Store::open(&cfg).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
}

/// Runs `sql` on the database of `cfg` directly (for PostgreSQL, in its schema).
async fn raw_sql(cfg: &StorageConfig, sql: &str) {
    match cfg {
        StorageConfig::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).unwrap();
            c.execute_batch(sql).unwrap();
        }
        StorageConfig::Postgres { url, schema } => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let schema = schema.as_deref().unwrap();
            client
                .batch_execute(&format!("SET search_path TO {schema}; {sql}"))
                .await
                .unwrap();
        }
    }
}

/// A database whose rewards were written before the usage column existed (`downgrade` takes a
/// fresh one back there and writes such a row): the migration adds the column, the old row
/// reads usage 0, and new closes store it.
async fn rewards_before_the_usage_column_read_zero(cfg: &StorageConfig, downgrade: &str) {
    drop(Store::open(cfg).await.unwrap());
    raw_sql(cfg, downgrade).await;
    let mut store = Store::open(cfg).await.unwrap();
    let old = RewardEntry {
        node: NodeId([1; 32]),
        owner: "owner-1".into(),
        amount: 900,
        coverage: 500,
        backhaul: 300,
        uptime: 100,
        usage: 0,
    };
    assert_eq!(store.rewards(4).await.unwrap(), vec![old.clone()]);
    assert_eq!(
        store.node_rewards(&NodeId([1; 32]), 10).await.unwrap(),
        vec![(4, old)]
    );
    store.insert_epoch(5, b"seed-5", 1_000, 1).await.unwrap();
    assert!(
        store
            .commit_close(5, 50_000, 1, &[entry(2, 1_000)], CloseMarks::default(), &[])
            .await
            .unwrap()
    );
    assert_eq!(store.rewards(5).await.unwrap()[0].usage, 250);
}

/// The rows a build before the usage column wrote: `rewards` without it, the migration not
/// recorded. `version` is the migration that adds the column on this backend.
fn downgrade_sql(version: u32, blob: &str) -> String {
    format!(
        "ALTER TABLE rewards DROP COLUMN usage;
         DELETE FROM schema_migrations WHERE version = {version};
         INSERT INTO rewards (epoch, node, owner, amount, coverage, backhaul, uptime)
         VALUES (4, {blob}, 'owner-1', 900, 500, 300, 100);"
    )
}

#[tokio::test]
async fn sqlite_rewards_before_the_usage_column_read_zero() {
    let dir = tempfile::tempdir().unwrap();
    let blob = format!("X'{}'", "01".repeat(32));
    rewards_before_the_usage_column_read_zero(
        &StorageConfig::Sqlite(dir.path().join("oracle.db")),
        &downgrade_sql(4, &blob),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_rewards_before_the_usage_column_read_zero() {
    let blob = format!("'\\x{}'::BYTEA", "01".repeat(32));
    rewards_before_the_usage_column_read_zero(&pg::fresh(), &downgrade_sql(6, &blob)).await;
}

/// A cluster's members: a member seen is live; one unseen for the wait is stale to the others
/// (never to itself), counted alive by none, and marked reaped once; a member seen again is
/// live again and can no longer be marked reaped; one that left is neither alive nor stale.
/// SQLite has no members.
#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_members_are_seen_go_stale_and_are_reaped_once() {
    use wisp_oracle::store::members::Member;
    let cfg = pg::fresh();
    let store = Store::open(&cfg).await.unwrap();
    let member = |name: &str, user: Option<&str>| Member {
        name: name.into(),
        client_id: format!("wisp-oracle-{name}"),
        username: user.map(Into::into),
    };
    let (a, b, c) = (
        member("a", Some("oracle-a")),
        member("b", None),
        member("c", None),
    );
    for m in [&a, &b, &c] {
        store.member_seen(m).await.unwrap();
    }
    assert_eq!(store.members_alive_besides("a", 60_000).await.unwrap(), 2);
    store.member_left("c").await.unwrap();
    assert_eq!(store.members_alive_besides("a", 60_000).await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store.member_seen(&a).await.unwrap();
    // b and c unseen for 300 ms; c left, so only b is stale, and only to others.
    assert_eq!(
        store.stale_members("a", 200).await.unwrap(),
        vec![b.clone()]
    );
    assert_eq!(store.stale_members("b", 200).await.unwrap(), vec![]);
    assert_eq!(store.members_alive_besides("a", 200).await.unwrap(), 0);
    assert!(store.member_reaped("b", 200).await.unwrap());
    assert!(
        !store.member_reaped("b", 200).await.unwrap(),
        "reaped twice"
    );
    assert_eq!(store.stale_members("a", 200).await.unwrap(), vec![]);
    // Back: live again, and not reaped while seen.
    store.member_seen(&b).await.unwrap();
    assert!(!store.member_reaped("b", 200).await.unwrap());
    let rows = store.members().await.unwrap();
    let states: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                r.member.name.as_str(),
                r.state.as_str(),
                r.member.username.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("a", "live", Some("oracle-a")),
            ("b", "live", None),
            ("c", "left", None)
        ]
    );
    assert!(rows.iter().all(|r| r.unseen_ms >= 0));
    let sqlite = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&sqlite.path().join("oracle.db"))
        .await
        .unwrap();
    assert!(s.members().await.unwrap().is_empty());
    assert!(s.member_seen(&a).await.is_err());
}
