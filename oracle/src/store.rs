//! The oracle's storage: SQLite (the default; WAL mode, `synchronous=FULL`) or PostgreSQL
//! (`storage.url = "postgres://…"`), with the same schema, the same migrations and the same
//! semantics behind one [`Store`].
//!
//! Every authentic proof is a row (with its verdict and arrival order); the epochs table holds
//! each epoch's signed seed and, once closed, when; an epoch's close writes its rewards, its
//! stateful rejections, its signed manifest pages and its `closed` mark in **one
//! transaction**, so a crash leaves either the epoch open (and it is closed again, with the same
//! result) or closed with everything. The engine's memory is rebuilt by replaying the rows.
//! **Commit before ack**: the service publishes no ack before `insert_rows` returned.
//!
//! Layout: this file holds the shared types and [`Store`], which dispatches to
//! [`sqlite::SqliteStore`] or [`postgres::PgStore`]; each backend keeps its own SQL dialect
//! and its list of migrations (recorded in `schema_migrations`). [`crash`] holds the crash
//! points the crash tests abort the process at (feature `failpoints`).

use std::path::{Path, PathBuf};

use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason};

use crate::engine::Row;

pub mod crash;
pub mod postgres;
pub mod sqlite;

/// Which database the oracle uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A SQLite file (the default: `oracle.db` in the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres {
        /// The connection string (`postgres://user@host:port/db`, or `host=… user=…`).
        url: String,
        /// A schema to create if needed and use (`search_path`); `None` uses the server's.
        schema: Option<String>,
    },
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("oracle database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("oracle database (PostgreSQL): {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The storage configuration cannot be used.
    #[error("storage configuration: {0}")]
    Config(String),
    /// A row holds something this build cannot read.
    #[error("oracle database holds an invalid row: {0}")]
    Corrupt(&'static str),
    /// The SQLite database file could not be created.
    #[error("creating the oracle database {path}: {source}")]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
    /// The arrival sequence number when it opened: onboards before it make its measurer
    /// pool. `None` for epochs opened before the schema recorded it.
    pub opened_at_seq: Option<u64>,
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

/// The database: one of the backends.
#[derive(Debug)]
pub enum Store {
    /// SQLite.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL.
    Postgres(postgres::PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens (creating and migrating if needed) the configured database.
    pub fn open(cfg: &StorageConfig) -> Result<Store, StoreError> {
        Ok(match cfg {
            StorageConfig::Sqlite(path) => Store::Sqlite(sqlite::SqliteStore::open(path)?),
            StorageConfig::Postgres { url, schema } => {
                Store::Postgres(postgres::PgStore::open(url, schema.as_deref())?)
            }
        })
    }

    /// Opens a SQLite file.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(path)?))
    }

    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A stored counter (None if never set).
    pub fn meta(&mut self, key: &str) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.meta(key))
    }

    /// Sets a counter.
    pub fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_meta(key, value))
    }

    /// Stores a batch of proofs in one transaction (a proof id already stored is skipped).
    pub fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_rows(rows))
    }

    /// The stored verdict of a proof.
    pub fn verdict(&mut self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        dispatch!(self, s => s.verdict(id))
    }

    /// Every stored proof in arrival order, for replay.
    pub fn for_each_row(&mut self, f: impl FnMut(Row)) -> Result<(), StoreError> {
        dispatch!(self, s => s.for_each_row(f))
    }

    /// Records a new epoch's signed seed and the arrival sequence number it opened at (kept
    /// as it is if the epoch is already stored).
    pub fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
        opened_at_seq: u64,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_epoch(epoch, seed, emission, opened_at_seq))
    }

    /// Every epoch, oldest first.
    pub fn epochs(&mut self) -> Result<Vec<EpochRow>, StoreError> {
        dispatch!(self, s => s.epochs())
    }

    /// Closes an epoch in one transaction: rewards, stateful rejections, manifest pages, and
    /// the closed mark. Refuses (returns false) if the epoch is already closed.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        rejections: &[(ProofId, Reason)],
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.commit_close(epoch, closed_ms, closed_at_seq, entries, rejections, manifests))
    }

    /// An epoch's signed manifest pages.
    pub fn manifests(&mut self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.manifests(epoch))
    }

    /// An epoch's rewards, by node id.
    pub fn rewards(&mut self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        dispatch!(self, s => s.rewards(epoch))
    }

    /// A node's rewards, newest epoch first: `(epoch, entry)`.
    pub fn node_rewards(
        &mut self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        dispatch!(self, s => s.node_rewards(node, limit))
    }

    /// A node's latest proofs, newest first.
    pub fn node_proofs(
        &mut self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<ProofSummary>, StoreError> {
        dispatch!(self, s => s.node_proofs(node, limit))
    }

    /// Rejection counts by reason code, ingest and close together.
    pub fn rejection_counts(&mut self) -> Result<Vec<(Reason, u64)>, StoreError> {
        let mut counts: Vec<(Reason, u64)> = dispatch!(self, s => s.rejection_counts())?;
        let unstored = self.meta(&unstored_key(Reason::UnknownNode))?.unwrap_or(0);
        if unstored > 0 {
            match counts.iter_mut().find(|(r, _)| *r == Reason::UnknownNode) {
                Some((_, n)) => *n += unstored,
                None => {
                    counts.push((Reason::UnknownNode, unstored));
                    counts.sort_unstable_by_key(|(r, _)| r.code());
                }
            }
        }
        Ok(counts)
    }

    /// Counts `n` more authentic proofs refused for `reason` that were not stored (see
    /// [`crate::engine::Ingested::unknown_nodes`]); [`Store::rejection_counts`] includes them.
    pub fn add_unstored_refusals(&mut self, reason: Reason, n: u64) -> Result<(), StoreError> {
        let key = unstored_key(reason);
        let before = self.meta(&key)?.unwrap_or(0);
        self.set_meta(&key, before.saturating_add(n))
    }

    /// How many proofs are stored.
    pub fn proof_count(&mut self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.proof_count())
    }

    /// Up to `limit` witness envelopes of `epoch` that were counted (accepted at ingest and
    /// not refused at the close), in arrival order.
    pub fn counted_witnesses(
        &mut self,
        epoch: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.counted_witnesses(epoch, limit))
    }
}

fn kind_of(code: i64) -> Result<Kind, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(Kind::from_u8)
        .ok_or(StoreError::Corrupt("kind"))
}

fn id32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(what))
}

fn reason_of(code: i64) -> Reason {
    Reason::from_code(u16::try_from(code).unwrap_or(u16::MAX))
}

/// The meta key counting authentic proofs refused for `reason` and not stored.
fn unstored_key(reason: Reason) -> String {
    format!("unstored_refusals_{}", reason.name())
}
