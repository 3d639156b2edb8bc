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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason};

use crate::engine::Row;

pub mod crash;
pub mod intake;
pub mod lease;
pub mod members;
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
    Postgres(#[from] tokio_postgres::Error),
    /// The blocking task running a SQLite call failed (it panicked, or the runtime is
    /// shutting down).
    #[error("oracle database task: {0}")]
    Task(String),
    /// The storage configuration cannot be used.
    #[error("storage configuration: {0}")]
    Config(String),
    /// This process lost the leader lease: another took it over, so this one may write
    /// nothing more (see [`lease`]).
    #[error(
        "the leader lease moved on: {holder} with token {token} no longer holds it, another oracle process leads now"
    )]
    Fenced {
        /// This process's name in the lease.
        holder: String,
        /// The token it held.
        token: u64,
    },
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

/// What an epoch's close says of single proofs: refused (`close_rejections`, not counted) or
/// flagged (`close_flags`, counted, perhaps in part).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloseMarks<'a> {
    /// Proofs refused at the close, with the reason.
    pub rejected: &'a [(ProofId, Reason)],
    /// Proofs counted but flagged, with the reason.
    pub flagged: &'a [(ProofId, Reason)],
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
    /// A flag at epoch close on a proof counted anyway (a heartbeat's `gnss_mismatch`, a
    /// usage receipt paid only in part: `usage_exceeds_backhaul`, `usage_credit_short`); the
    /// lowest code if several.
    pub flag: Option<Reason>,
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

/// Rows a replay reads at a time ([`Rows::next_chunk`]): memory stays bounded however large
/// the table.
pub const ROW_CHUNK: usize = 10_000;

/// Arrival sequence numbers from just after `after` (from the first if `None`) through
/// `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// The last sequence number not wanted.
    pub after: Option<u64>,
    /// The last sequence number wanted.
    pub through: u64,
}

impl SeqRange {
    /// Every row.
    pub const ALL: SeqRange = SeqRange {
        after: None,
        through: u64::MAX,
    };

    /// The bounds as the databases' signed integers (`seq > after AND seq <= through`).
    fn bounds(self) -> (i64, i64) {
        let after = self
            .after
            .map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        (after, i64::try_from(self.through).unwrap_or(i64::MAX))
    }
}

/// The stored proofs in arrival order, read a chunk at a time ([`Store::rows`]).
#[derive(Debug)]
pub struct Rows<'a>(RowsFrom<'a>);

enum RowsFrom<'a> {
    /// Chunks sent by the blocking task reading them (a queue of one).
    Sqlite(tokio::sync::mpsc::Receiver<Result<Vec<Row>, StoreError>>),
    /// A portal in a read transaction, committed once it is drained.
    Postgres(Option<(tokio_postgres::Transaction<'a>, tokio_postgres::Portal)>),
}

impl std::fmt::Debug for RowsFrom<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowsFrom::Sqlite(_) => "Sqlite",
            RowsFrom::Postgres(_) => "Postgres",
        })
    }
}

impl<'a> Rows<'a> {
    fn sqlite(rx: tokio::sync::mpsc::Receiver<Result<Vec<Row>, StoreError>>) -> Self {
        Rows(RowsFrom::Sqlite(rx))
    }

    fn postgres(tx: tokio_postgres::Transaction<'a>, portal: tokio_postgres::Portal) -> Self {
        Rows(RowsFrom::Postgres(Some((tx, portal))))
    }

    /// The next rows, at most [`ROW_CHUNK`] of them; `None` once all were read.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Row>>, StoreError> {
        match &mut self.0 {
            RowsFrom::Sqlite(rx) => rx.recv().await.transpose(),
            RowsFrom::Postgres(state) => {
                let Some((tx, portal)) = state else {
                    return Ok(None);
                };
                let chunk = postgres::next_chunk(tx, portal).await?;
                if !chunk.is_empty() {
                    return Ok(Some(chunk));
                }
                if let Some((tx, _)) = state.take() {
                    tx.commit().await?;
                }
                Ok(None)
            }
        }
    }
}

/// The database: one of the backends. Every call is async: PostgreSQL's are queries on the
/// runtime, SQLite's run in `spawn_blocking` ([`sqlite`]). Reads take `&self`; writes and
/// transactions `&mut self`.
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
    pub async fn open(cfg: &StorageConfig) -> Result<Store, StoreError> {
        Ok(match cfg {
            StorageConfig::Sqlite(path) => Store::Sqlite(sqlite::SqliteStore::open(path).await?),
            StorageConfig::Postgres { url, schema } => {
                Store::Postgres(postgres::PgStore::open(url, schema.as_deref()).await?)
            }
        })
    }

    /// Opens a SQLite file.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?))
    }

    /// Takes the leader lease for `lease_ms` if it is free or expired (PostgreSQL only; see
    /// [`lease`]); the fencing token, or `None` while another process holds it.
    pub async fn acquire_lease(
        &mut self,
        holder: &str,
        lease_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Postgres(s) => s.acquire_lease(holder, lease_ms).await,
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// Extends the lease this store took; false if it was taken over.
    pub async fn renew_lease(&self, lease_ms: u64) -> Result<bool, StoreError> {
        match self {
            Store::Postgres(s) => s.renew_lease(lease_ms).await,
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// Gives up the lease this store took, if any (a clean stop: a standby takes over at once).
    pub async fn release_lease(&mut self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.release_lease().await,
            Store::Sqlite(_) => Ok(()),
        }
    }

    /// Who holds the lease, by the database.
    pub async fn lease(&self) -> Result<Option<lease::LeaseRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.lease().await,
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// The lease this store took, if any.
    pub fn fence(&self) -> Option<&lease::Fence> {
        match self {
            Store::Postgres(s) => s.fence(),
            Store::Sqlite(_) => None,
        }
    }

    /// Makes every later write of this store check `fence`, a lease another connection took.
    pub fn set_fence(&mut self, fence: Option<lease::Fence>) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => {
                s.set_fence(fence);
                Ok(())
            }
            Store::Sqlite(_) if fence.is_none() => Ok(()),
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// Hands publishes whose signatures this standby verified to the leader (PostgreSQL only;
    /// see [`intake`]).
    pub async fn push_intake(&mut self, rows: &[intake::Handed]) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.push_intake(rows).await,
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// Hands one verified row to the leader in a single statement, so on a connection shared
    /// with other readers (`&self`: the API's reader on a standby); PostgreSQL only, see
    /// [`intake`].
    pub async fn hand_over(&self, row: &intake::Handed) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.hand_over(row).await,
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// Takes up to `limit` handed publishes, oldest first, if this store's lease holds.
    pub async fn take_intake(&mut self, limit: usize) -> Result<Vec<intake::Handed>, StoreError> {
        match self {
            Store::Postgres(s) => s.take_intake(limit).await,
            Store::Sqlite(_) => Err(lease_needs_postgres()),
        }
    }

    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A stored counter (None if never set).
    pub async fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.meta(key).await)
    }

    /// Sets a counter.
    pub async fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_meta(key, value).await)
    }

    /// Stores a batch of proofs in one transaction (a proof id already stored is skipped).
    pub async fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_rows(rows).await)
    }

    /// The stored verdict of a proof.
    pub async fn verdict(&self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        dispatch!(self, s => s.verdict(id).await)
    }

    /// The stored verdicts of those of `ids` that are stored, in one call (PostgreSQL: one
    /// query; SQLite: one blocking task). Nearly every batch asks for none, and asking for
    /// none costs nothing: no query, no task.
    pub async fn verdicts(
        &self,
        ids: Vec<ProofId>,
    ) -> Result<HashMap<ProofId, Verdict>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        dispatch!(self, s => s.verdicts(ids).await)
    }

    /// Every stored proof in arrival order, for replay, a chunk at a time.
    pub async fn rows(&mut self) -> Result<Rows<'_>, StoreError> {
        self.rows_in(SeqRange::ALL).await
    }

    /// The stored proofs of `range` in arrival order, a chunk at a time: what a follower
    /// replays since it last looked.
    pub async fn rows_in(&mut self, range: SeqRange) -> Result<Rows<'_>, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.rows(range)),
            Store::Postgres(s) => s.rows(range).await,
        }
    }

    /// The highest arrival sequence number stored, if any row is.
    pub async fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.last_seq().await)
    }

    /// Calls `f` on every stored proof in arrival order (on the calling task; see
    /// [`Store::rows`] to handle them elsewhere).
    pub async fn for_each_row(&mut self, mut f: impl FnMut(Row)) -> Result<(), StoreError> {
        let mut rows = self.rows().await?;
        while let Some(chunk) = rows.next_chunk().await? {
            chunk.into_iter().for_each(&mut f);
        }
        Ok(())
    }

    /// Records a new epoch's signed seed and the arrival sequence number it opened at (kept
    /// as it is if the epoch is already stored).
    pub async fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
        opened_at_seq: u64,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_epoch(epoch, seed, emission, opened_at_seq).await)
    }

    /// Every epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        dispatch!(self, s => s.epochs().await)
    }

    /// Closes an epoch in one transaction: rewards, stateful rejections, flags, manifest
    /// pages, and the closed mark. Refuses (returns false) if the epoch is already closed.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        marks: CloseMarks<'_>,
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.commit_close(epoch, closed_ms, closed_at_seq, entries, marks, manifests).await)
    }

    /// An epoch's signed manifest pages.
    pub async fn manifests(&self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.manifests(epoch).await)
    }

    /// An epoch's rewards, by node id.
    pub async fn rewards(&self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        dispatch!(self, s => s.rewards(epoch).await)
    }

    /// A node's rewards, newest epoch first: `(epoch, entry)`.
    pub async fn node_rewards(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        dispatch!(self, s => s.node_rewards(node, limit).await)
    }

    /// A node's latest proofs, newest first.
    pub async fn node_proofs(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<ProofSummary>, StoreError> {
        dispatch!(self, s => s.node_proofs(node, limit).await)
    }

    /// Rejection counts by reason code, ingest and close together.
    pub async fn rejection_counts(&self) -> Result<Vec<(Reason, u64)>, StoreError> {
        let mut counts: Vec<(Reason, u64)> = dispatch!(self, s => s.rejection_counts().await)?;
        let unstored = self
            .meta(&unstored_key(Reason::UnknownNode))
            .await?
            .unwrap_or(0);
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
    pub async fn add_unstored_refusals(
        &mut self,
        reason: Reason,
        n: u64,
    ) -> Result<(), StoreError> {
        let key = unstored_key(reason);
        let before = self.meta(&key).await?.unwrap_or(0);
        self.set_meta(&key, before.saturating_add(n)).await
    }

    /// How many proofs are stored.
    pub async fn proof_count(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.proof_count().await)
    }

    /// Up to `limit` witness envelopes of `epoch` that were counted (accepted at ingest and
    /// not refused at the close), in arrival order.
    pub async fn counted_witnesses(
        &self,
        epoch: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.counted_witnesses(epoch, limit).await)
    }
}

/// Refuses a database migrated by a newer build: this one would misread, or write what the
/// newer one cannot read. An upgrade rolled back must restore the database as well.
fn refuse_newer_schema(newest: Option<i64>, known: Option<i64>) -> Result<(), StoreError> {
    match (newest, known) {
        (Some(n), Some(k)) if n > k => Err(StoreError::Config(format!(
            "the database's schema is version {n}, newer than this wisp-oracle knows ({k}): \
             run the newer wisp-oracle, or restore the database from before the upgrade"
        ))),
        _ => Ok(()),
    }
}

fn lease_needs_postgres() -> StoreError {
    StoreError::Config("a leader lease needs PostgreSQL (cluster.enabled, storage.url)".into())
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
