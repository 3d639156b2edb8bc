//! The SQLite backend: WAL mode, `synchronous=FULL`, one connection per [`SqliteStore`].
//!
//! rusqlite's calls block (on the disk, and on `fsync` at each commit), so every method runs
//! them in `spawn_blocking`, with the connection behind a mutex: callers only await, and
//! never block the runtime.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason};

use super::crash::{self, crash_point};
use super::{
    CloseMarks, EpochRow, ProofSummary, ROW_CHUNK, Rows, SeqRange, StoreError, i, u, verdict_code,
    verdict_of,
};
use crate::engine::Row;

/// The migrations, in order: each runs once, in one transaction, and is recorded in
/// `schema_migrations`. The first is written so that a database created before migrations
/// were recorded takes it as a no-op.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
];

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS proofs (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    node BLOB NOT NULL,
    kind INTEGER NOT NULL,
    epoch INTEGER,
    received_ms INTEGER NOT NULL,
    verdict INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS proofs_node ON proofs (node, seq);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    seed BLOB NOT NULL,
    closed_ms INTEGER,
    closed_at_seq INTEGER,
    emission INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rewards (
    epoch INTEGER NOT NULL,
    node BLOB NOT NULL,
    owner TEXT NOT NULL,
    amount INTEGER NOT NULL,
    coverage INTEGER NOT NULL,
    backhaul INTEGER NOT NULL,
    uptime INTEGER NOT NULL,
    PRIMARY KEY (epoch, node)
);
CREATE INDEX IF NOT EXISTS rewards_node ON rewards (node, epoch);
CREATE TABLE IF NOT EXISTS close_rejections (
    epoch INTEGER NOT NULL,
    id BLOB NOT NULL,
    reason INTEGER NOT NULL,
    PRIMARY KEY (epoch, id)
);
CREATE TABLE IF NOT EXISTS manifests (
    epoch INTEGER NOT NULL,
    page INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    PRIMARY KEY (epoch, page)
);
";

/// The arrival sequence number at which each epoch opened: its measurer pool is the nodes
/// onboarded by rows before it. NULL for epochs opened before this migration.
const SCHEMA_V2: &str = "ALTER TABLE epochs ADD COLUMN opened_at_seq INTEGER;";

/// Rejection counts by reason read the refused rows through this index, not the whole table
/// (`rejection_counts`, asked by the API and the dashboard).
const SCHEMA_V3: &str =
    "CREATE INDEX IF NOT EXISTS proofs_verdict ON proofs (verdict) WHERE verdict > 0;";

/// What each reward entry was paid from the usage pool, a column of its own in the manifest
/// (docs/PROTOCOL.md §5.8). Rows closed before this migration read 0: the usage pool did not
/// exist, or its pay was counted in `backhaul`.
const SCHEMA_V4: &str = "ALTER TABLE rewards ADD COLUMN usage INTEGER NOT NULL DEFAULT 0;";

/// Proofs an epoch's close counted but flagged (a heartbeat's `gnss_mismatch`, a usage receipt
/// paid in part), read by proof id for the API. Epochs closed before this migration have none.
const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS close_flags (
    epoch INTEGER NOT NULL,
    id BLOB NOT NULL,
    reason INTEGER NOT NULL,
    PRIMARY KEY (epoch, id, reason)
);
CREATE INDEX IF NOT EXISTS close_flags_id ON close_flags (id);
";

/// SQLite's page cache per connection, KiB.
const CACHE_KIB: i64 = 64 * 1024;

/// How much of the database file SQLite reads through a memory map, bytes.
const MMAP_BYTES: i64 = 1 << 30;

/// The connection and the blocking calls on it.
#[derive(Debug)]
struct Conn {
    conn: Connection,
}

impl Conn {
    /// Opens (creating, mode 0600, and migrating if needed) the database file.
    fn open(path: &Path) -> Result<Conn, StoreError> {
        // Created owner-only before SQLite opens it: its `-wal` and `-shm` files take its mode.
        wisp_shell::keyfile::create_private_file(path).map_err(|source| StoreError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Room for the indexes a batch's inserts touch: the proof id index takes its keys at
        // random, so with SQLite's default 2 MiB cache every insert into a table of a few
        // tens of thousands of proofs spilled dirty pages to the WAL mid-transaction and read
        // others back (a third of the oracle's CPU in the ingest bench's profile). Pages
        // beyond the cache are read through a memory map rather than `read` calls.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
        )?;
        let newest: Option<i64> =
            conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })?;
        super::refuse_newer_schema(newest, MIGRATIONS.iter().map(|(v, _)| *v).max())?;
        for (version, sql) in MIGRATIONS {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let done: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if !done {
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES (?1)",
                    [version],
                )?;
            }
            tx.commit()?;
        }
        Ok(Conn { conn })
    }

    /// A stored counter (None if never set).
    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(u))
    }

    /// Sets a counter.
    fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, i(value)],
        )?;
        Ok(())
    }

    /// Stores a batch of proofs in one transaction.
    fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO proofs (seq, id, node, kind, epoch, received_ms, verdict, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows {
                st.execute(params![
                    i(r.seq),
                    r.id.as_bytes().as_slice(),
                    r.node.as_bytes().as_slice(),
                    i64::from(r.kind.as_u8()),
                    r.epoch.map(i),
                    i(r.received_ms),
                    verdict_code(r.verdict),
                    r.envelope,
                ])?;
            }
        }
        crash_point!(crash::INGEST_BEFORE_COMMIT);
        tx.commit()?;
        Ok(())
    }

    /// The stored verdict of a proof.
    fn verdict(&self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT verdict FROM proofs WHERE id = ?1")?
            .query_row([id.as_bytes().as_slice()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(verdict_of))
    }

    /// Every stored proof in arrival order, for replay, sent in chunks of [`ROW_CHUNK`]; stops
    /// early when the receiver is gone.
    fn send_rows(&self, range: SeqRange, out: &mpsc::Sender<Result<Vec<Row>, StoreError>>) {
        let mut chunk = Vec::with_capacity(ROW_CHUNK);
        let r = self.rows_into(range, |row| {
            chunk.push(row);
            if chunk.len() < ROW_CHUNK {
                return true;
            }
            out.blocking_send(Ok(std::mem::take(&mut chunk))).is_ok()
        });
        let _ = match r {
            Ok(()) if chunk.is_empty() => return,
            Ok(()) => out.blocking_send(Ok(chunk)),
            Err(e) => out.blocking_send(Err(e)),
        };
    }

    /// Calls `f` on every stored proof of `range` in arrival order while it returns true.
    fn rows_into(&self, range: SeqRange, mut f: impl FnMut(Row) -> bool) -> Result<(), StoreError> {
        let mut st = self.conn.prepare(
            "SELECT seq, id, node, kind, epoch, received_ms, verdict, envelope FROM proofs WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        )?;
        let (after, through) = range.bounds();
        let mut rows = st.query(params![after, through])?;
        while let Some(r) = rows.next()? {
            let id: [u8; 32] = r
                .get::<_, Vec<u8>>(1)?
                .try_into()
                .map_err(|_| StoreError::Corrupt("proof id"))?;
            let node: [u8; 32] = r
                .get::<_, Vec<u8>>(2)?
                .try_into()
                .map_err(|_| StoreError::Corrupt("node"))?;
            let kind = u8::try_from(r.get::<_, i64>(3)?)
                .ok()
                .and_then(Kind::from_u8)
                .ok_or(StoreError::Corrupt("kind"))?;
            let more = f(Row {
                seq: u(r.get(0)?),
                id: ProofId(id.into()),
                node: NodeId(node),
                kind,
                epoch: r.get::<_, Option<i64>>(4)?.map(u),
                received_ms: u(r.get(5)?),
                verdict: verdict_of(r.get(6)?),
                envelope: r.get(7)?,
            });
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Records a new epoch's signed seed.
    fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
        opened_at_seq: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO epochs (epoch, seed, emission, opened_at_seq) VALUES (?1, ?2, ?3, ?4)",
            params![i(epoch), seed, i(emission), i(opened_at_seq)],
        )?;
        Ok(())
    }

    /// Every epoch, oldest first.
    fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT epoch, seed, closed_ms, closed_at_seq, emission, opened_at_seq FROM epochs ORDER BY epoch",
        )?;
        let rows = st.query_map([], |r| {
            Ok(EpochRow {
                epoch: u(r.get(0)?),
                seed: r.get(1)?,
                closed_ms: r.get::<_, Option<i64>>(2)?.map(u),
                closed_at_seq: r.get::<_, Option<i64>>(3)?.map(u),
                emission: u(r.get(4)?),
                opened_at_seq: r.get::<_, Option<i64>>(5)?.map(u),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Closes an epoch in one transaction: rewards, stateful rejections, manifest pages, and
    /// the closed mark. Refuses (returns false) if the epoch is already closed.
    fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        marks: CloseMarks<'_>,
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        let (rejections, flagged) = (marks.rejected, marks.flagged);
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            "UPDATE epochs SET closed_ms = ?2, closed_at_seq = ?3 WHERE epoch = ?1 AND closed_ms IS NULL",
            params![i(epoch), i(closed_ms), i(closed_at_seq)],
        )?;
        if updated != 1 {
            return Ok(false);
        }
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO rewards (epoch, node, owner, amount, coverage, backhaul, uptime, usage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in entries {
                st.execute(params![
                    i(epoch),
                    e.node.as_bytes().as_slice(),
                    e.owner,
                    i(e.amount),
                    i(e.coverage),
                    i(e.backhaul),
                    i(e.uptime),
                    i(e.usage)
                ])?;
            }
            crash_point!(crash::CLOSE_MID_TRANSACTION);
            let mut st = tx.prepare_cached(
                "INSERT INTO close_rejections (epoch, id, reason) VALUES (?1, ?2, ?3)",
            )?;
            for (id, r) in rejections {
                st.execute(params![
                    i(epoch),
                    id.as_bytes().as_slice(),
                    i64::from(r.code())
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO close_flags (epoch, id, reason) VALUES (?1, ?2, ?3)",
            )?;
            for (id, r) in flagged {
                st.execute(params![
                    i(epoch),
                    id.as_bytes().as_slice(),
                    i64::from(r.code())
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO manifests (epoch, page, envelope) VALUES (?1, ?2, ?3)",
            )?;
            for (page, env) in manifests.iter().enumerate() {
                st.execute(params![i(epoch), i(page as u64), env])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// An epoch's signed manifest pages.
    fn manifests(&self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT envelope FROM manifests WHERE epoch = ?1 ORDER BY page")?;
        let rows = st.query_map([i(epoch)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An epoch's rewards, by node id.
    fn rewards(&self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT node, owner, amount, coverage, backhaul, uptime, usage FROM rewards WHERE epoch = ?1 ORDER BY node",
        )?;
        let rows = st.query_map([i(epoch)], reward_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A node's rewards, newest epoch first: `(epoch, entry)`.
    fn node_rewards(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT node, owner, amount, coverage, backhaul, uptime, usage, epoch FROM rewards WHERE node = ?1 ORDER BY epoch DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![node.as_bytes().as_slice(), limit], |r| {
            Ok((u(r.get(7)?), reward_entry(r)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A node's latest proofs, newest first.
    fn node_proofs(&self, node: &NodeId, limit: u32) -> Result<Vec<ProofSummary>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT p.seq, p.id, p.kind, p.epoch, p.received_ms, p.verdict, c.reason,
                    (SELECT min(f.reason) FROM close_flags f WHERE f.id = p.id)
             FROM proofs p LEFT JOIN close_rejections c ON c.id = p.id
             WHERE p.node = ?1 ORDER BY p.seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![node.as_bytes().as_slice(), limit], |r| {
            let id: Vec<u8> = r.get(1)?;
            let mut b = [0u8; 32];
            if id.len() == 32 {
                b.copy_from_slice(&id);
            }
            Ok(ProofSummary {
                seq: u(r.get(0)?),
                id: ProofId(b.into()),
                kind: u8::try_from(r.get::<_, i64>(2)?)
                    .ok()
                    .and_then(Kind::from_u8)
                    .unwrap_or(Kind::Heartbeat),
                epoch: r.get::<_, Option<i64>>(3)?.map(u),
                received_ms: u(r.get(4)?),
                verdict: verdict_of(r.get(5)?),
                closed_reason: r
                    .get::<_, Option<i64>>(6)?
                    .map(|c| Reason::from_code(u16::try_from(c).unwrap_or(u16::MAX))),
                flag: r
                    .get::<_, Option<i64>>(7)?
                    .map(|c| Reason::from_code(u16::try_from(c).unwrap_or(u16::MAX))),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rejection counts by reason code, ingest and close together.
    fn rejection_counts(&self) -> Result<Vec<(Reason, u64)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT reason, SUM(n) FROM (
                 SELECT verdict AS reason, COUNT(*) AS n FROM proofs WHERE verdict > 0 GROUP BY verdict
                 UNION ALL
                 SELECT reason, COUNT(*) FROM close_rejections GROUP BY reason
             ) AS t GROUP BY reason ORDER BY reason",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                Reason::from_code(u16::try_from(r.get::<_, i64>(0)?).unwrap_or(u16::MAX)),
                u(r.get(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counted witness envelopes of an epoch, in arrival order.
    fn counted_witnesses(&self, epoch: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT envelope FROM proofs
             WHERE epoch = ?1 AND kind = ?2 AND verdict = 0
               AND id NOT IN (SELECT id FROM close_rejections WHERE epoch = ?1)
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(
            params![i(epoch), i64::from(Kind::Witness.as_u8()), limit],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest arrival sequence number stored.
    fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT MAX(seq) FROM proofs", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(u))
    }

    /// How many proofs are stored.
    fn proof_count(&self) -> Result<u64, StoreError> {
        Ok(u(self.conn.query_row(
            "SELECT COUNT(*) FROM proofs",
            [],
            |r| r.get(0),
        )?))
    }
}

/// A SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Conn>>,
}

impl SqliteStore {
    /// Opens (creating, mode 0600, and migrating if needed) the database file.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let conn = blocking(move || Conn::open(&path)).await?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection in `spawn_blocking`.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| StoreError::Task("an earlier call panicked".into()))?;
            f(&mut c)
        })
        .await
    }

    /// A stored counter (None if never set).
    pub async fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let key = key.to_owned();
        self.run(move |c| c.meta(&key)).await
    }

    /// Sets a counter.
    pub async fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(move |c| c.set_meta(&key, value)).await
    }

    /// Stores a batch of proofs in one transaction.
    pub async fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        // Copied for the blocking thread: a batch's rows are small next to its `fsync`.
        let rows = rows.to_vec();
        self.run(move |c| c.insert_rows(&rows)).await
    }

    /// The stored verdict of a proof.
    pub async fn verdict(&self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        let id = *id;
        self.run(move |c| c.verdict(&id)).await
    }

    /// The stored verdicts of those of `ids` that are stored.
    pub async fn verdicts(
        &self,
        ids: Vec<ProofId>,
    ) -> Result<HashMap<ProofId, Verdict>, StoreError> {
        self.run(move |c| {
            let mut out = HashMap::new();
            for id in ids {
                if let Some(v) = c.verdict(&id)? {
                    out.insert(id, v);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The stored proofs of `range` in arrival order, for replay: read by a blocking task
    /// that sends chunks through a queue of one, so memory stays bounded however large the
    /// table.
    pub fn rows(&mut self, range: SeqRange) -> Rows<'_> {
        let (tx, rx) = mpsc::channel(1);
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || match conn.lock() {
            Ok(c) => c.send_rows(range, &tx),
            Err(_) => {
                let _ = tx.blocking_send(Err(StoreError::Task("an earlier call panicked".into())));
            }
        });
        Rows::sqlite(rx)
    }

    /// Records a new epoch's signed seed.
    pub async fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
        opened_at_seq: u64,
    ) -> Result<(), StoreError> {
        let seed = seed.to_vec();
        self.run(move |c| c.insert_epoch(epoch, &seed, emission, opened_at_seq))
            .await
    }

    /// Every epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        self.run(|c| c.epochs()).await
    }

    /// Closes an epoch in one transaction: rewards, stateful rejections, manifest pages, and
    /// the closed mark. Refuses (returns false) if the epoch is already closed.
    pub async fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        marks: CloseMarks<'_>,
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        let (entries, rejections, flagged, manifests) = (
            entries.to_vec(),
            marks.rejected.to_vec(),
            marks.flagged.to_vec(),
            manifests.to_vec(),
        );
        self.run(move |c| {
            c.commit_close(
                epoch,
                closed_ms,
                closed_at_seq,
                &entries,
                CloseMarks {
                    rejected: &rejections,
                    flagged: &flagged,
                },
                &manifests,
            )
        })
        .await
    }

    /// An epoch's signed manifest pages.
    pub async fn manifests(&self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(move |c| c.manifests(epoch)).await
    }

    /// An epoch's rewards, by node id.
    pub async fn rewards(&self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        self.run(move |c| c.rewards(epoch)).await
    }

    /// A node's rewards, newest epoch first: `(epoch, entry)`.
    pub async fn node_rewards(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        let node = *node;
        self.run(move |c| c.node_rewards(&node, limit)).await
    }

    /// A node's latest proofs, newest first.
    pub async fn node_proofs(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<ProofSummary>, StoreError> {
        let node = *node;
        self.run(move |c| c.node_proofs(&node, limit)).await
    }

    /// Rejection counts by reason code, ingest and close together.
    pub async fn rejection_counts(&self) -> Result<Vec<(Reason, u64)>, StoreError> {
        self.run(|c| c.rejection_counts()).await
    }

    /// Counted witness envelopes of an epoch, in arrival order.
    pub async fn counted_witnesses(
        &self,
        epoch: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(move |c| c.counted_witnesses(epoch, limit)).await
    }

    /// How many proofs are stored.
    pub async fn proof_count(&self) -> Result<u64, StoreError> {
        self.run(|c| c.proof_count()).await
    }

    /// The highest arrival sequence number stored.
    pub async fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        self.run(|c| c.last_seq()).await
    }
}

/// Runs `f` in `spawn_blocking`; a panic there is an error here.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

fn reward_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RewardEntry> {
    let node: Vec<u8> = r.get(0)?;
    let mut b = [0u8; 32];
    if node.len() == 32 {
        b.copy_from_slice(&node);
    }
    Ok(RewardEntry {
        node: NodeId(b),
        owner: r.get(1)?,
        amount: u(r.get(2)?),
        coverage: u(r.get(3)?),
        backhaul: u(r.get(4)?),
        uptime: u(r.get(5)?),
        usage: u(r.get(6)?),
    })
}
