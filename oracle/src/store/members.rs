//! A cluster's members (PostgreSQL only): each oracle process of a cluster records itself in
//! `members` — its name, the MQTT client id and broker username its persistent session is
//! kept under, when it was last seen and its state — and marks itself seen every third of the
//! lease. The times are the database server's (`clock_timestamp()`), as the lease's are, so
//! the processes' clocks do not matter.
//!
//! Why: every member subscribes to the proofs through the broker's shared subscription, and a
//! broker keeps handing a share of the proofs to a persistent session whose process is gone,
//! queueing them for it. A member that stops on purpose leaves the share group and marks
//! itself `left`; the leader takes over the session of one not seen for
//! `cluster.reap_after_s`, judges what the broker queued for it, discards the session and marks
//! it `reaped` (`service/members.rs`). A member that comes back is `live` again.

use tokio_postgres::Client;

use super::{Store, StoreError, i};

/// The migration that creates the table.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    username TEXT,
    last_seen TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('live', 'left', 'reaped'))
);";

/// A member as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its `cluster.name`.
    pub name: String,
    /// The MQTT client id of its persistent session.
    pub client_id: String,
    /// Its broker username, if it logs in.
    pub username: Option<String>,
}

/// A member's row: the member, its state and how long ago it was last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// Who.
    pub member: Member,
    /// `live`, `left` (it left the share group when it stopped) or `reaped` (the leader took
    /// over and discarded its broker session).
    pub state: String,
    /// Milliseconds since it was last seen, by the database's clock.
    pub unseen_ms: i64,
}

/// Records `m` as live and seen now.
pub(super) async fn seen(client: &Client, m: &Member) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO members (name, client_id, username, last_seen, state)
             VALUES ($1, $2, $3, clock_timestamp(), 'live')
             ON CONFLICT (name) DO UPDATE
                 SET client_id = excluded.client_id, username = excluded.username,
                     last_seen = excluded.last_seen, state = 'live'",
            &[&m.name, &m.client_id, &m.username],
        )
        .await?;
    Ok(())
}

/// Marks `name` as gone out of the share group (a clean stop).
pub(super) async fn left(client: &Client, name: &str) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE members SET state = 'left' WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(())
}

/// How many live members other than `name` were seen within `within_ms`.
pub(super) async fn others_alive(
    client: &Client,
    name: &str,
    within_ms: u64,
) -> Result<u64, StoreError> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM members
             WHERE name <> $1 AND state = 'live'
               AND last_seen > clock_timestamp() - ($2::BIGINT || ' milliseconds')::INTERVAL",
            &[&name, &i(within_ms)],
        )
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The live members other than `name` not seen for `after_ms`, longest unseen first.
pub(super) async fn stale(
    client: &Client,
    name: &str,
    after_ms: u64,
) -> Result<Vec<Member>, StoreError> {
    let rows = client
        .query(
            "SELECT name, client_id, username FROM members
             WHERE name <> $1 AND state = 'live'
               AND last_seen < clock_timestamp() - ($2::BIGINT || ' milliseconds')::INTERVAL
             ORDER BY last_seen",
            &[&name, &i(after_ms)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                name: r.try_get(0)?,
                client_id: r.try_get(1)?,
                username: r.try_get(2)?,
            })
        })
        .collect()
}

/// Marks `name` reaped if it is still live and unseen for `after_ms`; false if it came back
/// (or another process reaped it) meanwhile.
pub(super) async fn reaped(client: &Client, name: &str, after_ms: u64) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE members SET state = 'reaped'
             WHERE name = $1 AND state = 'live'
               AND last_seen < clock_timestamp() - ($2::BIGINT || ' milliseconds')::INTERVAL",
            &[&name, &i(after_ms)],
        )
        .await?;
    Ok(n == 1)
}

fn needs_postgres() -> StoreError {
    StoreError::Config("a cluster's members need PostgreSQL (cluster.enabled, storage.url)".into())
}

/// The members' calls on a [`Store`]: single statements, so they run on a connection shared
/// with other readers (`&self`: the API's reader).
impl Store {
    /// Records `m` as a live member of the cluster, seen now.
    pub async fn member_seen(&self, m: &Member) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => seen(s.client(), m).await,
            Store::Sqlite(_) => Err(needs_postgres()),
        }
    }

    /// Marks member `name` as gone out of the share group.
    pub async fn member_left(&self, name: &str) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => left(s.client(), name).await,
            Store::Sqlite(_) => Err(needs_postgres()),
        }
    }

    /// How many live members other than `name` were seen within `within_ms`.
    pub async fn members_alive_besides(
        &self,
        name: &str,
        within_ms: u64,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Postgres(s) => others_alive(s.client(), name, within_ms).await,
            Store::Sqlite(_) => Err(needs_postgres()),
        }
    }

    /// The live members other than `name` unseen for `after_ms`, longest unseen first.
    pub async fn stale_members(
        &self,
        name: &str,
        after_ms: u64,
    ) -> Result<Vec<Member>, StoreError> {
        match self {
            Store::Postgres(s) => stale(s.client(), name, after_ms).await,
            Store::Sqlite(_) => Err(needs_postgres()),
        }
    }

    /// Marks `name` reaped if it is still live and unseen for `after_ms`; false if not.
    pub async fn member_reaped(&self, name: &str, after_ms: u64) -> Result<bool, StoreError> {
        match self {
            Store::Postgres(s) => reaped(s.client(), name, after_ms).await,
            Store::Sqlite(_) => Err(needs_postgres()),
        }
    }

    /// Every member, by name (none on SQLite).
    pub async fn members(&self) -> Result<Vec<MemberRow>, StoreError> {
        match self {
            Store::Postgres(s) => list(s.client()).await,
            Store::Sqlite(_) => Ok(Vec::new()),
        }
    }
}

/// Every member, by name.
pub(super) async fn list(client: &Client) -> Result<Vec<MemberRow>, StoreError> {
    let rows = client
        .query(
            "SELECT name, client_id, username, state,
                    (EXTRACT(EPOCH FROM (clock_timestamp() - last_seen)) * 1000)::BIGINT
             FROM members ORDER BY name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MemberRow {
                member: Member {
                    name: r.try_get(0)?,
                    client_id: r.try_get(1)?,
                    username: r.try_get(2)?,
                },
                state: r.try_get(3)?,
                unseen_ms: r.try_get(4)?,
            })
        })
        .collect()
}
