//! The PostgreSQL backend: the same tables and semantics as SQLite, through the asynchronous
//! `tokio-postgres` client: every method is a plain `.await` on the oracle's runtime, whose
//! task drives the connection.
//!
//! The connection is plain TCP or a Unix socket (`NoTls`): the database is meant to run on the
//! oracle's host or a private link. Durability is PostgreSQL's (`synchronous_commit = on`, the
//! server's default): `insert_rows` returns after the commit is flushed, and only then does
//! the service ack.

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tracing::error;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason};

use super::crash::{self, crash_point};
use super::intake::{self, Handed};
use super::lease::{self, Fence, LeaseRow};
use super::members;
use super::{
    CloseMarks, EpochRow, ProofSummary, ROW_CHUNK, Rows, SeqRange, StoreError, i, id32, kind_of,
    reason_of, u, verdict_code, verdict_of,
};
use crate::engine::Row;

/// The migrations, in order: each runs once, in one transaction, recorded in
/// `schema_migrations`. Concurrent starts (several oracles on one database) serialize on an
/// advisory lock.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, lease::SCHEMA),
    (5, intake::SCHEMA),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, members::SCHEMA),
];

/// Held (transaction-scoped) while migrating.
const MIGRATION_LOCK: i64 = 0x0077_6973_706d_6967; // "wispmig"

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS proofs (
    seq BIGINT PRIMARY KEY,
    id BYTEA NOT NULL UNIQUE,
    node BYTEA NOT NULL,
    kind BIGINT NOT NULL,
    epoch BIGINT,
    received_ms BIGINT NOT NULL,
    verdict BIGINT NOT NULL,
    envelope BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS proofs_node ON proofs (node, seq);
CREATE TABLE IF NOT EXISTS epochs (
    epoch BIGINT PRIMARY KEY,
    seed BYTEA NOT NULL,
    closed_ms BIGINT,
    closed_at_seq BIGINT,
    emission BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS rewards (
    epoch BIGINT NOT NULL,
    node BYTEA NOT NULL,
    owner TEXT NOT NULL,
    amount BIGINT NOT NULL,
    coverage BIGINT NOT NULL,
    backhaul BIGINT NOT NULL,
    uptime BIGINT NOT NULL,
    PRIMARY KEY (epoch, node)
);
CREATE INDEX IF NOT EXISTS rewards_node ON rewards (node, epoch);
CREATE TABLE IF NOT EXISTS close_rejections (
    epoch BIGINT NOT NULL,
    id BYTEA NOT NULL,
    reason BIGINT NOT NULL,
    PRIMARY KEY (epoch, id)
);
CREATE TABLE IF NOT EXISTS manifests (
    epoch BIGINT NOT NULL,
    page BIGINT NOT NULL,
    envelope BYTEA NOT NULL,
    PRIMARY KEY (epoch, page)
);
";

/// The arrival sequence number at which each epoch opened: its measurer pool is the nodes
/// onboarded by rows before it. NULL for epochs opened before this migration.
const SCHEMA_V2: &str = "ALTER TABLE epochs ADD COLUMN opened_at_seq BIGINT;";

/// Rejection counts by reason read the refused rows through this index, not the whole table
/// (`rejection_counts`, asked by the API and the dashboard).
const SCHEMA_V3: &str =
    "CREATE INDEX IF NOT EXISTS proofs_verdict ON proofs (verdict) WHERE verdict > 0;";

/// What each reward entry was paid from the usage pool, a column of its own in the manifest
/// (docs/PROTOCOL.md §5.8). Rows closed before this migration read 0: the usage pool did not
/// exist, or its pay was counted in `backhaul`.
const SCHEMA_V6: &str = "ALTER TABLE rewards ADD COLUMN usage BIGINT NOT NULL DEFAULT 0;";

/// Proofs an epoch's close counted but flagged (a heartbeat's `gnss_mismatch`, a usage receipt
/// paid in part), read by proof id for the API. Epochs closed before this migration have none.
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS close_flags (
    epoch BIGINT NOT NULL,
    id BYTEA NOT NULL,
    reason BIGINT NOT NULL,
    PRIMARY KEY (epoch, id, reason)
);
CREATE INDEX IF NOT EXISTS close_flags_id ON close_flags (id);
";

/// A PostgreSQL database.
pub struct PgStore {
    client: Client,
    /// The leader lease this process holds, once it holds one: every write checks it.
    fence: Option<Fence>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// Whether `name` is a plain lower-case identifier (it is spliced into SQL).
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl PgStore {
    /// Connects, selects (creating if needed) `schema`, and migrates. The connection is driven
    /// by a task on the current runtime; if it fails, the error is logged there and every
    /// later call returns an error.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        if let Some(schema) = schema
            && !valid_schema(schema)
        {
            return Err(StoreError::Config(format!(
                "storage.schema `{schema}`: use lower-case letters, digits and _"
            )));
        }
        let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                error!("the PostgreSQL connection failed: {e}");
            }
        });
        if let Some(schema) = schema {
            // Several oracles starting at once on a new schema race on creating it (as on the
            // table below): the loser sees a unique violation on the catalog, and the schema
            // exists.
            if let Err(e) = client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                && e.code() != Some(&SqlState::UNIQUE_VIOLATION)
                && e.code() != Some(&SqlState::DUPLICATE_SCHEMA)
            {
                return Err(e.into());
            }
            client
                .batch_execute(&format!("SET search_path TO {schema}"))
                .await?;
        }
        if let Err(e) = client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
            )
            .await
        {
            // Two oracles starting at once may race on creating this table; the loser sees a
            // unique violation on the catalog, or the table or its row type already existing
            // (`duplicate_table`, `duplicate_object`), and the table exists.
            let raced = [
                SqlState::UNIQUE_VIOLATION,
                SqlState::DUPLICATE_TABLE,
                SqlState::DUPLICATE_OBJECT,
            ];
            if !e.code().is_some_and(|c| raced.contains(c)) {
                return Err(e.into());
            }
        }
        let newest: Option<i64> = client
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await?
            .try_get(0)?;
        super::refuse_newer_schema(newest, MIGRATIONS.iter().map(|(v, _)| *v).max())?;
        for (version, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let done: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                    &[version],
                )
                .await?
                .try_get(0)?;
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(PgStore {
            client,
            fence: None,
        })
    }

    /// A stored counter (None if never set).
    pub async fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?;
        Ok(match row {
            Some(r) => Some(u(r.try_get(0)?)),
            None => None,
        })
    }

    /// Sets a counter.
    pub async fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        let tx = self.client.transaction().await?;
        lease::check(&tx, self.fence.as_ref()).await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &i(value)],
        ).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a batch of proofs in one transaction and one round trip (`UNNEST` of arrays).
    pub async fn insert_rows(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        let seq: Vec<i64> = rows.iter().map(|r| i(r.seq)).collect();
        let id: Vec<&[u8]> = rows.iter().map(|r| r.id.as_bytes().as_slice()).collect();
        let node: Vec<&[u8]> = rows.iter().map(|r| r.node.as_bytes().as_slice()).collect();
        let kind: Vec<i64> = rows.iter().map(|r| i64::from(r.kind.as_u8())).collect();
        let epoch: Vec<Option<i64>> = rows.iter().map(|r| r.epoch.map(i)).collect();
        let received: Vec<i64> = rows.iter().map(|r| i(r.received_ms)).collect();
        let verdict: Vec<i64> = rows.iter().map(|r| verdict_code(r.verdict)).collect();
        let envelope: Vec<&[u8]> = rows.iter().map(|r| r.envelope.as_slice()).collect();
        let tx = self.client.transaction().await?;
        lease::check(&tx, self.fence.as_ref()).await?;
        tx.execute(
            "INSERT INTO proofs (seq, id, node, kind, epoch, received_ms, verdict, envelope)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[], $4::BIGINT[],
                                  $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BYTEA[])
             ON CONFLICT DO NOTHING",
            &[
                &seq, &id, &node, &kind, &epoch, &received, &verdict, &envelope,
            ],
        )
        .await?;
        crash_point!(crash::INGEST_BEFORE_COMMIT);
        tx.commit().await?;
        Ok(())
    }

    /// The stored verdict of a proof.
    pub async fn verdict(&self, id: &ProofId) -> Result<Option<Verdict>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT verdict FROM proofs WHERE id = $1",
                &[&id.as_bytes().as_slice()],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(verdict_of(r.try_get(0)?)),
            None => None,
        })
    }

    /// The stored verdicts of those of `ids` that are stored, in one round trip.
    pub async fn verdicts(
        &self,
        ids: Vec<ProofId>,
    ) -> Result<HashMap<ProofId, Verdict>, StoreError> {
        let bytes: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        self.client
            .query(
                "SELECT id, verdict FROM proofs WHERE id = ANY($1::BYTEA[])",
                &[&bytes],
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    ProofId(id32(r.try_get::<_, &[u8]>(0)?, "proof id")?.into()),
                    verdict_of(r.try_get(1)?),
                ))
            })
            .collect()
    }

    /// The stored proofs of `range` in arrival order, for replay: a portal in a transaction,
    /// read [`ROW_CHUNK`] rows at a time (streamed, not collected).
    pub async fn rows(&mut self, range: SeqRange) -> Result<Rows<'_>, StoreError> {
        let tx = self.client.transaction().await?;
        let (after, through) = range.bounds();
        let portal = tx
            .bind(
                "SELECT seq, id, node, kind, epoch, received_ms, verdict, envelope FROM proofs WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                &[&after, &through],
            )
            .await?;
        Ok(Rows::postgres(tx, portal))
    }

    /// Records a new epoch's signed seed.
    pub async fn insert_epoch(
        &mut self,
        epoch: u64,
        seed: &[u8],
        emission: u64,
        opened_at_seq: u64,
    ) -> Result<(), StoreError> {
        let tx = self.client.transaction().await?;
        lease::check(&tx, self.fence.as_ref()).await?;
        tx.execute(
            "INSERT INTO epochs (epoch, seed, emission, opened_at_seq) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&i(epoch), &seed, &i(emission), &i(opened_at_seq)],
        ).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        self.client
            .query(
                "SELECT epoch, seed, closed_ms, closed_at_seq, emission, opened_at_seq FROM epochs ORDER BY epoch",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| {
                Ok(EpochRow {
                    epoch: u(r.try_get(0)?),
                    seed: r.try_get(1)?,
                    closed_ms: r.try_get::<_, Option<i64>>(2)?.map(u),
                    closed_at_seq: r.try_get::<_, Option<i64>>(3)?.map(u),
                    emission: u(r.try_get(4)?),
                    opened_at_seq: r.try_get::<_, Option<i64>>(5)?.map(u),
                })
            })
            .collect()
    }

    /// Closes an epoch in one transaction; false if it was already closed.
    pub async fn commit_close(
        &mut self,
        epoch: u64,
        closed_ms: u64,
        closed_at_seq: u64,
        entries: &[RewardEntry],
        marks: CloseMarks<'_>,
        manifests: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        let rejections = marks.rejected;
        let tx = self.client.transaction().await?;
        lease::check(&tx, self.fence.as_ref()).await?;
        let updated = tx.execute(
            "UPDATE epochs SET closed_ms = $2, closed_at_seq = $3 WHERE epoch = $1 AND closed_ms IS NULL",
            &[&i(epoch), &i(closed_ms), &i(closed_at_seq)],
        ).await?;
        if updated != 1 {
            return Ok(false);
        }
        let e = i(epoch);
        let node: Vec<&[u8]> = entries
            .iter()
            .map(|x| x.node.as_bytes().as_slice())
            .collect();
        let owner: Vec<&str> = entries.iter().map(|x| x.owner.as_str()).collect();
        let amount: Vec<i64> = entries.iter().map(|x| i(x.amount)).collect();
        let coverage: Vec<i64> = entries.iter().map(|x| i(x.coverage)).collect();
        let backhaul: Vec<i64> = entries.iter().map(|x| i(x.backhaul)).collect();
        let uptime: Vec<i64> = entries.iter().map(|x| i(x.uptime)).collect();
        let usage: Vec<i64> = entries.iter().map(|x| i(x.usage)).collect();
        tx.execute(
            "INSERT INTO rewards (epoch, node, owner, amount, coverage, backhaul, uptime, usage)
             SELECT $1, * FROM UNNEST($2::BYTEA[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[],
                                      $6::BIGINT[], $7::BIGINT[], $8::BIGINT[])",
            &[
                &e, &node, &owner, &amount, &coverage, &backhaul, &uptime, &usage,
            ],
        )
        .await?;
        crash_point!(crash::CLOSE_MID_TRANSACTION);
        let ids: Vec<&[u8]> = rejections
            .iter()
            .map(|(id, _)| id.as_bytes().as_slice())
            .collect();
        let reasons: Vec<i64> = rejections
            .iter()
            .map(|(_, r)| i64::from(r.code()))
            .collect();
        tx.execute(
            "INSERT INTO close_rejections (epoch, id, reason)
             SELECT $1, * FROM UNNEST($2::BYTEA[], $3::BIGINT[])",
            &[&e, &ids, &reasons],
        )
        .await?;
        let ids: Vec<&[u8]> = marks
            .flagged
            .iter()
            .map(|(id, _)| id.as_bytes().as_slice())
            .collect();
        let reasons: Vec<i64> = marks
            .flagged
            .iter()
            .map(|(_, r)| i64::from(r.code()))
            .collect();
        tx.execute(
            "INSERT INTO close_flags (epoch, id, reason)
             SELECT $1, * FROM UNNEST($2::BYTEA[], $3::BIGINT[])
             ON CONFLICT DO NOTHING",
            &[&e, &ids, &reasons],
        )
        .await?;
        let pages: Vec<i64> = (0..manifests.len() as u64).map(i).collect();
        let envs: Vec<&[u8]> = manifests.iter().map(Vec::as_slice).collect();
        tx.execute(
            "INSERT INTO manifests (epoch, page, envelope)
             SELECT $1, * FROM UNNEST($2::BIGINT[], $3::BYTEA[])",
            &[&e, &pages, &envs],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An epoch's signed manifest pages.
    pub async fn manifests(&self, epoch: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.client
            .query(
                "SELECT envelope FROM manifests WHERE epoch = $1 ORDER BY page",
                &[&i(epoch)],
            )
            .await?
            .into_iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    /// An epoch's rewards, by node id.
    pub async fn rewards(&self, epoch: u64) -> Result<Vec<RewardEntry>, StoreError> {
        self.client
            .query(
                "SELECT node, owner, amount, coverage, backhaul, uptime, usage FROM rewards WHERE epoch = $1 ORDER BY node",
                &[&i(epoch)],
            )
            .await?
            .iter()
            .map(reward_entry)
            .collect()
    }

    /// A node's rewards, newest epoch first.
    pub async fn node_rewards(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<(u64, RewardEntry)>, StoreError> {
        self.client
            .query(
                "SELECT node, owner, amount, coverage, backhaul, uptime, usage, epoch FROM rewards WHERE node = $1 ORDER BY epoch DESC LIMIT $2",
                &[&node.as_bytes().as_slice(), &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| Ok((u(r.try_get(7)?), reward_entry(r)?)))
            .collect()
    }

    /// A node's latest proofs, newest first.
    pub async fn node_proofs(
        &self,
        node: &NodeId,
        limit: u32,
    ) -> Result<Vec<ProofSummary>, StoreError> {
        self.client
            .query(
                "SELECT p.seq, p.id, p.kind, p.epoch, p.received_ms, p.verdict, c.reason,
                        (SELECT min(f.reason) FROM close_flags f WHERE f.id = p.id)
                 FROM proofs p LEFT JOIN close_rejections c ON c.id = p.id
                 WHERE p.node = $1 ORDER BY p.seq DESC LIMIT $2",
                &[&node.as_bytes().as_slice(), &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ProofSummary {
                    seq: u(r.try_get(0)?),
                    id: ProofId(id32(r.try_get::<_, &[u8]>(1)?, "proof id")?.into()),
                    kind: kind_of(r.try_get(2)?)?,
                    epoch: r.try_get::<_, Option<i64>>(3)?.map(u),
                    received_ms: u(r.try_get(4)?),
                    verdict: verdict_of(r.try_get(5)?),
                    closed_reason: r.try_get::<_, Option<i64>>(6)?.map(reason_of),
                    flag: r.try_get::<_, Option<i64>>(7)?.map(reason_of),
                })
            })
            .collect()
    }

    /// Rejection counts by reason code, ingest and close together.
    pub async fn rejection_counts(&self) -> Result<Vec<(Reason, u64)>, StoreError> {
        self.client
            .query(
                "SELECT reason, SUM(n)::BIGINT FROM (
                     SELECT verdict AS reason, COUNT(*) AS n FROM proofs WHERE verdict > 0 GROUP BY verdict
                     UNION ALL
                     SELECT reason, COUNT(*) FROM close_rejections GROUP BY reason
                 ) AS t GROUP BY reason ORDER BY reason",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((reason_of(r.try_get(0)?), u(r.try_get(1)?))))
            .collect()
    }

    /// Counted witness envelopes of an epoch, in arrival order.
    pub async fn counted_witnesses(
        &self,
        epoch: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.client
            .query(
                "SELECT envelope FROM proofs
                 WHERE epoch = $1 AND kind = $2 AND verdict = 0
                   AND id NOT IN (SELECT id FROM close_rejections WHERE epoch = $1)
                 ORDER BY seq LIMIT $3",
                &[
                    &i(epoch),
                    &i64::from(wisp_protocol::Kind::Witness.as_u8()),
                    &i64::from(limit),
                ],
            )
            .await?
            .into_iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    /// The highest arrival sequence number stored.
    pub async fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .client
            .query_one("SELECT MAX(seq) FROM proofs", &[])
            .await?
            .try_get::<_, Option<i64>>(0)?
            .map(u))
    }

    /// How many proofs are stored.
    pub async fn proof_count(&self) -> Result<u64, StoreError> {
        Ok(u(self
            .client
            .query_one("SELECT COUNT(*) FROM proofs", &[])
            .await?
            .try_get(0)?))
    }
}

/// The next [`ROW_CHUNK`] rows of a replay's portal.
pub(super) async fn next_chunk(
    tx: &tokio_postgres::Transaction<'_>,
    portal: &tokio_postgres::Portal,
) -> Result<Vec<Row>, StoreError> {
    tx.query_portal(portal, i32::try_from(ROW_CHUNK).unwrap_or(i32::MAX))
        .await?
        .iter()
        .map(|r| {
            Ok(Row {
                seq: u(r.try_get(0)?),
                id: ProofId(id32(r.try_get::<_, &[u8]>(1)?, "proof id")?.into()),
                node: NodeId(id32(r.try_get::<_, &[u8]>(2)?, "node")?),
                kind: kind_of(r.try_get(3)?)?,
                epoch: r.try_get::<_, Option<i64>>(4)?.map(u),
                received_ms: u(r.try_get(5)?),
                verdict: verdict_of(r.try_get(6)?),
                envelope: r.try_get(7)?,
            })
        })
        .collect()
}

impl PgStore {
    /// Takes the leader lease for `lease_ms` if it is free or expired. On success every later
    /// write of this store checks it ([`lease`]); the fencing token is returned.
    pub async fn acquire_lease(
        &mut self,
        holder: &str,
        lease_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let token = lease::acquire(&self.client, holder, lease_ms).await?;
        if let Some(token) = token {
            self.fence = Some(Fence {
                holder: holder.to_string(),
                token,
            });
        }
        Ok(token)
    }

    /// Extends the lease this store holds; false if it is not held or was taken over.
    pub async fn renew_lease(&self, lease_ms: u64) -> Result<bool, StoreError> {
        match &self.fence {
            Some(f) => lease::renew(&self.client, f, lease_ms).await,
            None => Ok(false),
        }
    }

    /// Gives up the lease this store holds, if any.
    pub async fn release_lease(&mut self) -> Result<(), StoreError> {
        if let Some(f) = self.fence.take() {
            lease::release(&self.client, &f).await?;
        }
        Ok(())
    }

    /// The lease row.
    pub async fn lease(&self) -> Result<Option<LeaseRow>, StoreError> {
        lease::read(&self.client).await
    }

    /// Checks writes against the lease `fence` holds, which another connection took (the
    /// worker's store holds what its lease keeper's took).
    pub fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    /// The lease this store holds, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Hands verified publishes to the leader ([`intake`]).
    pub async fn push_intake(&mut self, rows: &[Handed]) -> Result<(), StoreError> {
        intake::push(&mut self.client, rows).await
    }

    /// Hands one verified row to the leader on this shared connection ([`intake`]).
    pub async fn hand_over(&self, row: &Handed) -> Result<(), StoreError> {
        intake::push_one(&self.client, row).await
    }

    /// Takes up to `limit` handed publishes, oldest first, if this store's lease holds.
    pub async fn take_intake(&mut self, limit: usize) -> Result<Vec<Handed>, StoreError> {
        intake::take(&mut self.client, self.fence.as_ref(), limit).await
    }

    /// The connection, for single statements that need no transaction ([`members`]).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }
}

fn reward_entry(r: &tokio_postgres::Row) -> Result<RewardEntry, StoreError> {
    Ok(RewardEntry {
        node: NodeId(id32(r.try_get::<_, &[u8]>(0)?, "node")?),
        owner: r.try_get(1)?,
        amount: u(r.try_get(2)?),
        coverage: u(r.try_get(3)?),
        backhaul: u(r.try_get(4)?),
        uptime: u(r.try_get(5)?),
        usage: u(r.try_get(6)?),
    })
}
