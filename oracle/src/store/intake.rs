//! The intake (PostgreSQL only): proofs whose signatures a standby process of a cluster
//! verified, handed to the leader, which judges them. A standby adds rows and notifies the
//! channel [`CHANNEL`] in the same transaction; the leader listens, takes rows in arrival
//! order (deleting them in a transaction that checks its lease, so an overtaken leader takes
//! nothing) and judges them as if they had come over MQTT, without verifying them again.
//!
//! A row taken is handed over as a broker's `PUBACK` is: a leader that dies before its
//! batch commits loses it, and the agent resends the proof, which it does for every proof not
//! acked.

use std::future::poll_fn;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tracing::error;

use super::lease::{self, Fence};
use super::{StoreError, i, u};

/// The channel a standby notifies when it adds rows.
pub const CHANNEL: &str = "wisp_intake";

/// The topic of a handed row that holds an operator's credit grant (`POST /v1/credits` on a
/// standby) or a carrier's usage report (`POST /v1/usage/carrier`), not a proof: the leader
/// gives it to its worker, which reads the envelope's kind. No MQTT topic is
/// spelled so (`wisp/v1/…`), so a proof never passes for a grant, nor a grant for a proof.
pub const GRANT_TOPIC: &str = "wisp-oracle/credit-grant";

/// The migration that creates the intake.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS intake (
    seq BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BYTEA NOT NULL,
    at_ms BIGINT NOT NULL
);";

/// A publish a standby verified: its topic, payload and arrival time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handed {
    /// The topic it arrived on.
    pub topic: String,
    /// The envelope bytes.
    pub payload: Vec<u8>,
    /// Oracle time of arrival.
    pub at_ms: u64,
}

/// Adds verified publishes to the intake and wakes the leader, in one transaction.
pub(super) async fn push(client: &mut Client, rows: &[Handed]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let topic: Vec<&str> = rows.iter().map(|r| r.topic.as_str()).collect();
    let payload: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
    let at: Vec<i64> = rows.iter().map(|r| i(r.at_ms)).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO intake (topic, payload, at_ms)
         SELECT * FROM UNNEST($1::TEXT[], $2::BYTEA[], $3::BIGINT[])",
        &[&topic, &payload, &at],
    )
    .await?;
    tx.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds one verified row and wakes the leader, in one statement (so one implicit transaction)
/// on a shared connection: the API's reader on a standby, which cannot open a transaction
/// (that needs the connection to itself).
pub(super) async fn push_one(client: &Client, row: &Handed) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "WITH added AS (INSERT INTO intake (topic, payload, at_ms) VALUES ($1, $2, $3)
                                RETURNING seq)
                 SELECT pg_notify('{CHANNEL}', '') FROM added"
            ),
            &[&row.topic, &row.payload, &i(row.at_ms)],
        )
        .await?;
    Ok(())
}

/// Takes up to `limit` rows, oldest first, deleting them, if `fence` still holds the lease.
pub(super) async fn take(
    client: &mut Client,
    fence: Option<&Fence>,
    limit: usize,
) -> Result<Vec<Handed>, StoreError> {
    let tx = client.transaction().await?;
    lease::check(&tx, fence).await?;
    let rows = tx
        .query(
            "DELETE FROM intake WHERE seq IN
                 (SELECT seq FROM intake ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING seq, topic, payload, at_ms",
            &[&i(limit as u64)],
        )
        .await?;
    tx.commit().await?;
    let mut out = rows
        .into_iter()
        .map(|r| {
            Ok((
                u(r.try_get(0)?),
                Handed {
                    topic: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    at_ms: u(r.try_get(3)?),
                },
            ))
        })
        .collect::<Result<Vec<(u64, Handed)>, StoreError>>()?;
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out.into_iter().map(|(_, h)| h).collect())
}

/// A connection listening on [`CHANNEL`]: `wake` gets a message for each notification (at
/// most one waiting: a wake means "take until empty"); it closes if the connection fails.
pub struct Listener {
    /// Kept: the connection lives as long as its client.
    _client: Client,
    /// Notified when rows were added.
    pub wake: mpsc::Receiver<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Connects to `url` and listens (the channel is the database's, whatever the schema).
    pub async fn open(url: &str) -> Result<Listener, StoreError> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
        let (tx, wake) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        // One waiting wake is enough.
                        let _ = tx.try_send(());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        error!("the PostgreSQL connection listening for handed proofs failed: {e}");
                        return;
                    }
                    None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(Listener {
            _client: client,
            wake,
        })
    }
}
