//! The leader lease (PostgreSQL only): of the oracle processes sharing one database, the one
//! holding the lease is the leader, the only one that judges proofs, opens and closes epochs
//! and publishes; the others stand by, serve their API and take the lease over when it
//! expires.
//!
//! One row, `leader`: the holder, a fencing token and the expiry, read on the database
//! server's clock (`clock_timestamp()`), so the processes' own clocks do not matter. Taking
//! over an expired lease increases the token. Once a process holds the lease, every write of
//! its store first checks, in the same transaction, that the row still names it with its token
//! (`FOR SHARE`: a takeover waits for that transaction to end). A leader paused past its lease
//! and overtaken therefore cannot write anything when it resumes: its next transaction is
//! refused ([`StoreError::Fenced`]) and the process stops.

use tokio_postgres::{Client, Transaction};

use super::{StoreError, i, u};

/// The lease as this process holds it: every write checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// This process's name in the lease row.
    pub holder: String,
    /// The fencing token it got when it took the lease.
    pub token: u64,
}

/// Who holds the lease, as the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// The holder's name.
    pub holder: String,
    /// The fencing token.
    pub token: u64,
    /// Milliseconds until it expires (negative: expired), by the database's clock.
    pub expires_in_ms: i64,
}

/// The migration that creates the lease row's table.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leader (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);";

/// Takes the lease for `lease_ms` if nobody holds it or its holder let it expire; the new
/// fencing token, or `None` while another process holds it.
pub(super) async fn acquire(
    client: &Client,
    holder: &str,
    lease_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let row = client
        .query_opt(
            "INSERT INTO leader (id, holder, token, expires_at)
             VALUES (1, $1, 1, clock_timestamp() + ($2::BIGINT || ' milliseconds')::INTERVAL)
             ON CONFLICT (id) DO UPDATE
                 SET holder = excluded.holder, token = leader.token + 1,
                     expires_at = excluded.expires_at
                 WHERE leader.expires_at < clock_timestamp()
             RETURNING token",
            &[&holder, &i(lease_ms)],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(u(r.try_get(0)?)),
        None => None,
    })
}

/// Extends the lease `fence` holds by `lease_ms` from now; false if it is no longer this
/// process's (taken over after it expired).
pub(super) async fn renew(
    client: &Client,
    fence: &Fence,
    lease_ms: u64,
) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE leader SET expires_at = clock_timestamp() + ($3::BIGINT || ' milliseconds')::INTERVAL
             WHERE id = 1 AND holder = $1 AND token = $2",
            &[&fence.holder, &i(fence.token), &i(lease_ms)],
        )
        .await?;
    Ok(n == 1)
}

/// Gives the lease up (a clean stop), so another process takes over at once.
pub(super) async fn release(client: &Client, fence: &Fence) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE leader SET expires_at = clock_timestamp() - interval '1 millisecond'
             WHERE id = 1 AND holder = $1 AND token = $2",
            &[&fence.holder, &i(fence.token)],
        )
        .await?;
    Ok(())
}

/// The lease row, if any process ever took it.
pub(super) async fn read(client: &Client) -> Result<Option<LeaseRow>, StoreError> {
    let row = client
        .query_opt(
            "SELECT holder, token,
                    (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT
             FROM leader WHERE id = 1",
            &[],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(LeaseRow {
            holder: r.try_get(0)?,
            token: u(r.try_get(1)?),
            expires_in_ms: r.try_get(2)?,
        }),
        None => None,
    })
}

/// Inside a write transaction: refuses it unless the lease row still names `fence`'s holder
/// and token, and keeps the row locked until the transaction ends. No fence (a single oracle):
/// nothing to check.
pub(super) async fn check(tx: &Transaction<'_>, fence: Option<&Fence>) -> Result<(), StoreError> {
    let Some(f) = fence else {
        return Ok(());
    };
    let held = tx
        .query_opt(
            "SELECT 1 FROM leader WHERE id = 1 AND holder = $1 AND token = $2 FOR SHARE",
            &[&f.holder, &i(f.token)],
        )
        .await?;
    if held.is_none() {
        return Err(StoreError::Fenced {
            holder: f.holder.clone(),
            token: f.token,
        });
    }
    Ok(())
}
