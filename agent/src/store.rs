//! The durable outbox store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Every commit is one transaction: WAL append + fsync, so a committed proof survives
//! `kill -9` and power loss. Commits are batched by the shell (many proofs, and the acks'
//! deletions, per transaction) so flash is not worn by one write per message. Small state the
//! agent must never repeat (the heartbeat sequence number, and when the last heartbeat was
//! signed, so that a restart keeps the heartbeat interval) lives in the same database and is
//! updated in the same transaction as the proofs that use it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use wisp_protocol::ProofId;
use wisp_protocol::kind::Kind;

/// A stored proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Insertion order.
    pub seq: u64,
    /// The proof id.
    pub id: ProofId,
    /// Its kind.
    pub kind: Kind,
    /// When it was signed.
    pub created_ms: u64,
    /// The envelope length.
    pub len: usize,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file could not be created.
    #[error("creating the outbox database: {0}")]
    Create(std::io::Error),
    /// A row holds something this build cannot read.
    #[error("outbox database holds an invalid row: {0}")]
    Corrupt(&'static str),
}

/// The outbox database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

const SCHEMA_VERSION: i64 = 1;

impl Store {
    /// Opens (creating if needed, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // Created owner-only before SQLite opens it: its `-wal` and `-shm` files take its mode.
        wisp_shell::keyfile::create_private_file(path).map_err(StoreError::Create)?;
        let conn = Connection::open(path)?;
        // WAL + FULL: a commit is durable once `commit` returns (fsync of the WAL).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY,
                 id BLOB NOT NULL UNIQUE,
                 kind INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL,
                 envelope BLOB NOT NULL
             );",
        )?;
        let version: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(_) => return Err(StoreError::Corrupt("schema version newer than this agent")),
        }
        Ok(Store { conn })
    }

    /// Every pending proof with its envelope bytes, in insertion order.
    pub fn load(&self) -> Result<Vec<(Row, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, id, kind, created_ms, envelope FROM outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, kind, created, bytes) = row?;
            let id: [u8; 32] = id
                .try_into()
                .map_err(|_| StoreError::Corrupt("proof id length"))?;
            let kind = u8::try_from(kind)
                .ok()
                .and_then(Kind::from_u8)
                .ok_or(StoreError::Corrupt("kind"))?;
            if ProofId::of(&bytes).as_bytes() != &id {
                return Err(StoreError::Corrupt(
                    "envelope does not hash to its proof id",
                ));
            }
            out.push((
                Row {
                    seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("seq"))?,
                    id: ProofId(id.into()),
                    kind,
                    created_ms: u64::try_from(created)
                        .map_err(|_| StoreError::Corrupt("created_ms"))?,
                    len: bytes.len(),
                },
                bytes,
            ));
        }
        Ok(out)
    }

    /// A stored counter (0 if never set).
    pub fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        Ok(v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
    }

    /// A stored blob (the last epoch seed, so a restart does not wait for the broker).
    pub fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM blobs WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Stores a blob durably.
    pub fn set_blob(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO blobs (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// One durable transaction: insert `new` proofs, delete `gone` ones, set `meta` counters.
    /// When it returns `Ok`, all of it survives a crash or power loss; on `Err`, none of it.
    pub fn commit(
        &mut self,
        new: &[(Row, &[u8])],
        gone: &[ProofId],
        meta: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (seq, id, kind, created_ms, envelope) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (row, bytes) in new {
                insert.execute(params![
                    to_i64(row.seq),
                    row.id.as_bytes().as_slice(),
                    i64::from(row.kind.as_u8()),
                    to_i64(row.created_ms),
                    bytes
                ])?;
            }
            let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in gone {
                delete.execute([id.as_bytes().as_slice()])?;
            }
            let mut set = tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?;
            for (k, v) in meta {
                set.execute(params![k, to_i64(*v)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn to_i64(v: u64) -> i64 {
    // Sequence numbers and Unix milliseconds stay far below 2^63.
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn commit_load_delete_and_meta_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
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
        let rows = s.load().unwrap();
        assert_eq!(rows, vec![(row(2), bytes(2)), (row(3), bytes(3))]);
        assert_eq!(s.meta("heartbeat_seq").unwrap(), 3);
        assert_eq!(s.meta("missing").unwrap(), 0);
        assert_eq!(s.blob("seed").unwrap(), None);
        assert_eq!(s.blob("k").unwrap().unwrap(), b"v2");
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_failed_transaction_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("o.db")).unwrap();
        s.commit(&[(row(1), &bytes(1))], &[], &[]).unwrap();
        // Make the last statement of the transaction fail: nothing before it may stick.
        s.conn
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON meta BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        assert!(
            s.commit(&[(row(2), &bytes(2))], &[row(1).id], &[("k", 1)])
                .is_err()
        );
        assert_eq!(s.load().unwrap(), vec![(row(1), bytes(1))]);
    }
}
