//! The oracle's storage: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Every authentic proof is a row (with its verdict and arrival order); the epochs table holds
//! each epoch's signed seed and, once closed, when; an epoch's close writes its rewards, its
//! stateful rejections, its signed manifest pages and its `closed` mark in **one
//! transaction**, so a crash leaves either the epoch open (and it is closed again, with the same
//! result) or closed with everything. The engine's memory is rebuilt by replaying the rows.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason};

use crate::engine::Row;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("oracle database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row holds something this build cannot read.
    #[error("oracle database holds an invalid row: {0}")]
    Corrupt(&'static str),
}

/// An epoch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRow {
    /// The epoch number.
    pub epoch: u64,
    /// The signed seed envelope.
    pub seed: Vec<u8>,
    /// When it was closed, if it was.
    pub closed_ms: Option<u64>,
    /// The arrival sequence number at the close: rows before it were in the close.
    pub closed_at_seq: Option<u64>,
    /// The emission paid.
    pub emission: u64,
}

/// A stored proof, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofSummary {
    /// Arrival order.
    pub seq: u64,
    /// The proof id.
    pub id: ProofId,
    /// The kind.
    pub kind: Kind,
    /// Its epoch.
    pub epoch: Option<u64>,
    /// Arrival time.
    pub received_ms: u64,
    /// The ingest verdict.
    pub verdict: Verdict,
    /// A rejection at epoch close, if any.
    pub closed_reason: Option<Reason>,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

fn i(v: u64) -> i64 {
    // Sequence numbers, epochs, amounts and Unix ms stay far below 2^63.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn verdict_code(v: Verdict) -> i64 {
    match v {
        Verdict::Accepted => 0,
        Verdict::Rejected(r) => i64::from(r.code()),
    }
}

fn verdict_of(code: i64) -> Verdict {
    if code == 0 {
        Verdict::Accepted
    } else {
        Verdict::Rejected(Reason::from_code(u16::try_from(code).unwrap_or(u16::MAX)))
    }
}

const SCHEMA: &str = "
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

/// Where the oracle may be made to crash, for tests (`WISP_ORACLE_CRASH_AT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Inside the ingest transaction, before commit.
    IngestBeforeCommit,
    /// Inside the close transaction, after the rewards were written, before commit.
    CloseMidTransaction,
    /// After the close committed, before the manifest was published.
    CloseAfterCommit,
}

impl CrashPoint {
    fn name(self) -> &'static str {
        match self {
            CrashPoint::IngestBeforeCommit => "ingest-before-commit",
            CrashPoint::CloseMidTransaction => "close-mid-transaction",
            CrashPoint::CloseAfterCommit => "close-after-commit",
        }
    }

    /// Aborts the process (as a power cut would stop it) if the environment asks for it here.
    pub fn reached(self) {
        if std::env::var("WISP_ORACLE_CRASH_AT").is_ok_and(|v| v == self.name()) {
            eprintln!("crash point {} reached: aborting", self.name());
            std::process::abort();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// A stored counter (None if never set).
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(u))
    }

    /// Sets a counter.
    pub fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, i(value)],
        )?;
        Ok(())
    }

    /// Stores a batch of proofs in one transaction.
    pub fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
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
        CrashPoint::IngestBeforeCommit.reached();
        tx.commit()?;
        Ok(())
    }

    /// The stored verdict of a proof.
    pub fn verdict(&self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT verdict FROM proofs WHERE id = ?1")?
            .query_row([id.as_bytes().as_slice()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(verdict_of))
    }

    /// Every stored proof in arrival order, for replay.
    pub fn for_each_row(&self, mut f: impl FnMut(Row)) -> Result<(), StoreError> {
        let mut st = self.conn.prepare(
            "SELECT seq, id, node, kind, epoch, received_ms, verdict, envelope FROM proofs ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
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
            f(Row {
                seq: u(r.get(0)?),
                id: ProofId(id.into()),
                node: NodeId(node),
                kind,
                epoch: r.get::<_, Option<i64>>(4)?.map(u),
                received_ms: u(r.get(5)?),
                verdict: verdict_of(r.get(6)?),
                envelope: r.get(7)?,
            });
        }
        Ok(())
    }

    /// Records a new epoch's signed seed.
    pub fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO epochs (epoch, seed, emission) VALUES (?1, ?2, ?3)",
            params![i(epoch), seed, i(emission)],
        )?;
        Ok(())
    }

    /// Every epoch, oldest first.
    pub fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT epoch, seed, closed_ms, closed_at_seq, emission FROM epochs ORDER BY epoch",
        )?;
        let rows = st.query_map([], |r| {
            Ok(EpochRow {
                epoch: u(r.get(0)?),
                seed: r.get(1)?,
                closed_ms: r.get::<_, Option<i64>>(2)?.map(u),
                closed_at_seq: r.get::<_, Option<i64>>(3)?.map(u),
                emission: u(r.get(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Closes an epoch in one transaction: rewards, stateful rejections, manifest pages, and
    /// the closed mark. Refuses (returns false) if the epoch is already closed.
    pub fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        rejections: &[(ProofId, Reason)],
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
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
                "INSERT INTO rewards (epoch, node, owner, amount, coverage, backhaul, uptime) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in entries {
                st.execute(params![
                    i(epoch),
                    e.node.as_bytes().as_slice(),
                    e.owner,
                    i(e.amount),
                    i(e.coverage),
                    i(e.backhaul),
                    i(e.uptime)
                ])?;
            }
            CrashPoint::CloseMidTransaction.reached();
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
    pub fn manifests(&self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT envelope FROM manifests WHERE epoch = ?1 ORDER BY page")?;
        let rows = st.query_map([i(epoch)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An epoch's rewards, by node id.
    pub fn rewards(&self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT node, owner, amount, coverage, backhaul, uptime FROM rewards WHERE epoch = ?1 ORDER BY node",
        )?;
        let rows = st.query_map([i(epoch)], reward_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A node's rewards, newest epoch first: `(epoch, entry)`.
    pub fn node_rewards(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT node, owner, amount, coverage, backhaul, uptime, epoch FROM rewards WHERE node = ?1 ORDER BY epoch DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![node.as_bytes().as_slice(), limit], |r| {
            Ok((u(r.get(6)?), reward_entry(r)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A node's latest proofs, newest first.
    pub fn node_proofs(&self, node: &NodeId, limit: u32) -> Result<Vec<ProofSummary>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT p.seq, p.id, p.kind, p.epoch, p.received_ms, p.verdict, c.reason
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rejection counts by reason code, ingest and close together.
    pub fn rejection_counts(&self) -> Result<Vec<(Reason, u64)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT reason, SUM(n) FROM (
                 SELECT verdict AS reason, COUNT(*) AS n FROM proofs WHERE verdict != 0 GROUP BY verdict
                 UNION ALL
                 SELECT reason, COUNT(*) FROM close_rejections GROUP BY reason
             ) GROUP BY reason ORDER BY reason",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                Reason::from_code(u16::try_from(r.get::<_, i64>(0)?).unwrap_or(u16::MAX)),
                u(r.get(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many proofs are stored.
    pub fn proof_count(&self) -> Result<u64, StoreError> {
        Ok(u(self.conn.query_row(
            "SELECT COUNT(*) FROM proofs",
            [],
            |r| r.get(0),
        )?))
    }
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
    })
}
