//! A cluster's intake in the service ([`crate::store::intake`]): every process subscribes to
//! the proofs through the shared subscription, so the broker hands each proof to one of them.
//! A standby checks what it gets as the leader would before judging (sizes, topic, signatures,
//! rate limit) and hands what verified to the leader through the database ([`forward`]); the
//! leader takes those rows and judges them with its own, without verifying them again
//! ([`drain`]). An operator's credit grant or a carrier's usage report posted to a standby's API
//! comes the same way, as a row with the topic [`GRANT_TOPIC`] (`crate::http`'s credits module
//! writes it); the leader hands it to its worker, which tells the two apart by the envelope's
//! kind. Verification, the costly part of ingest, is thus shared
//! by every process;
//! judging and committing stay with the one leader, so each proof is judged and stored once
//! and a node's proofs are judged in the order they reach it.

use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info};
use wisp_protocol::topics;

use super::stages::{Gathered, ToWorker, fill, stopped};
use crate::engine::{Incoming, Prechecker, Screened, SignatureCheck};
use crate::state::{GrantRequest, Shared};
use crate::store::Store;
use crate::store::intake::{GRANT_TOPIC, Handed, Listener};

/// Most rows the leader takes at once (one batch of the worker).
const TAKE_MAX: usize = 4096;

/// What a standby's forwarder gives back when its process starts to lead.
pub(super) struct Forwarder<V> {
    pub(super) rx: mpsc::Receiver<ToWorker>,
    pub(super) store: Store,
    pub(super) pre: Prechecker<V>,
}

/// A standby's stage: subscribes to the proofs on every (re)connection, checks what arrives
/// and hands what verified to the leader, until `stop` is set; then gives its parts back for
/// the process to lead with. Ends early (the error) if the database fails.
pub(super) async fn forward<V: SignatureCheck + Send + 'static>(
    mut parts: Forwarder<V>,
    client: AsyncClient,
    shared: Arc<Shared>,
    filter: String,
    batch_max: usize,
    window: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Forwarder<V>> {
    loop {
        // A stop ends the wait for the first publish, but not the batch it starts: what was
        // taken from the queue is handed over, never dropped (it was acknowledged to the
        // broker). A standby that starts to lead gets a full queue of proofs from its broker
        // session at once, and used to lose the batch being gathered.
        let first = tokio::select! {
            biased;
            () = stopped(&mut stop) => return Ok(parts),
            m = parts.rx.recv() => m,
        };
        let Some(first) = first else {
            return Ok(parts);
        };
        let Gathered { connected, batch } = fill(&mut parts.rx, first, batch_max, window).await;
        // A process that is stopping has left the share group: it stays out.
        if connected && !shared.leaving.load(std::sync::atomic::Ordering::Relaxed) {
            client.subscribe(filter.clone(), QoS::AtLeastOnce).await?;
            info!("standing by: verifying the proofs the broker hands this process");
        }
        if batch.is_empty() {
            continue;
        }
        let mut pre = parts.pre;
        let (p, checked) = tokio::task::spawn_blocking(move || {
            let checked = pre.check(batch);
            (pre, checked)
        })
        .await
        .map_err(|e| anyhow::anyhow!("the signature check failed: {e}"))?;
        parts.pre = p;
        // Only what verified is handed over; what did not is dropped here, unacked, as the
        // leader would drop it. A rate-limited proof goes too: the leader acks it so.
        let mut handed = Vec::new();
        for c in checked {
            let authentic = matches!(
                c.screened,
                Screened::Authentic { .. } | Screened::Refused(wisp_protocol::Reason::RateLimited)
            );
            if let (true, Some(node)) = (authentic, c.node) {
                handed.push(Handed {
                    topic: topics::proofs(&node),
                    payload: c.payload,
                    at_ms: c.at_ms,
                });
            } else if let Screened::Refused(r) = c.screened {
                shared
                    .metrics
                    .unverified
                    .get_or_create(&crate::metrics::ReasonLabel { reason: r.name() })
                    .inc();
            }
        }
        parts.store.push_intake(&handed).await?;
        shared.metrics.handed.inc_by(handed.len() as u64);
    }
}

/// The leader's stage: takes the rows standbys handed over, oldest first, and sends them on to
/// a prechecker that does not verify them again, until `stop` is set or the database fails.
/// Rows left by an earlier leader are taken first.
pub(super) async fn drain(
    mut listener: Listener,
    mut store: Store,
    tx: mpsc::Sender<ToWorker>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let rows = store.take_intake(TAKE_MAX).await?;
        if rows.is_empty() {
            tokio::select! {
                () = stopped(&mut stop) => return Ok(()),
                w = listener.wake.recv() => {
                    if w.is_none() {
                        error!("the database connection listening for handed proofs closed");
                        anyhow::bail!("the database connection listening for handed proofs closed");
                    }
                }
            }
            continue;
        }
        shared.metrics.taken.inc_by(rows.len() as u64);
        for r in rows {
            if r.topic == GRANT_TOPIC {
                // An operator's grant a standby verified: the worker judges and stores it as
                // one posted here. Its answer goes nowhere: the standby reads the stored row.
                let (reply, _) = oneshot::channel();
                let request = GrantRequest {
                    envelope: r.payload,
                    reply,
                };
                if shared.grants.send(request).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            let msg = Incoming {
                topic: r.topic,
                payload: r.payload,
                at_ms: r.at_ms,
            };
            if tx.send(ToWorker::Publish(msg)).await.is_err() {
                return Ok(());
            }
        }
    }
}
