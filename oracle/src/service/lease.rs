//! The leader lease in the service ([`crate::store::lease`]): a process of a cluster stands by
//! until it takes the lease, then a keeper renews it every third of its length on a
//! connection of its own. When a renewal finds the lease taken over, or renewals have failed
//! for a whole lease, the keeper says so and the process stops: its writes are refused by then
//! anyway (the fence), and a supervisor restarts it to stand by.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::settings::Cluster;
use crate::store::lease::Fence;
use crate::store::{StorageConfig, Store};

/// How often a standby tries to take the lease and the leader renews it: a third of the lease,
/// so a leader survives two failed renewals and a standby takes over at most a third of a
/// lease after it expired.
fn every(lease_ms: u64) -> Duration {
    Duration::from_millis((lease_ms / 3).max(100))
}

/// Renews the lease while this process leads.
pub(super) struct Keeper {
    store: Arc<Mutex<Store>>,
    fence: Fence,
    lost: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

/// Stands by until this process holds the lease, or `shutdown` resolves first (`None`).
pub(super) async fn wait<F: Future<Output = ()>>(
    storage: &StorageConfig,
    cluster: &Cluster,
    shutdown: &mut Pin<&mut F>,
) -> anyhow::Result<Option<Keeper>> {
    let mut store = Store::open(storage)
        .await
        .context("opening the oracle database for the leader lease")?;
    let mut said = false;
    let fence = loop {
        match store.acquire_lease(&cluster.name, cluster.lease_ms).await {
            Ok(Some(token)) => {
                info!(name = %cluster.name, token, "took the leader lease: this process leads");
                let Some(fence) = store.fence().cloned() else {
                    anyhow::bail!("the store took the lease but holds no fence");
                };
                break fence;
            }
            Ok(None) => {
                if !said {
                    let holder = store.lease().await.ok().flatten();
                    info!(
                        name = %cluster.name,
                        leader = holder.as_ref().map_or("?", |h| h.holder.as_str()),
                        "another oracle process leads: standing by"
                    );
                    said = true;
                }
            }
            Err(e) => warn!("taking the leader lease: {e}"),
        }
        tokio::select! {
            () = shutdown.as_mut() => return Ok(None),
            () = tokio::time::sleep(every(cluster.lease_ms)) => {}
        }
    };
    let store = Arc::new(Mutex::new(store));
    let (tx, lost) = watch::channel(None);
    let task = tokio::spawn(keep(store.clone(), cluster.lease_ms, tx));
    Ok(Some(Keeper {
        store,
        fence,
        lost,
        task,
    }))
}

/// Renews the lease until it is lost, then says why on `tx`.
async fn keep(store: Arc<Mutex<Store>>, lease_ms: u64, tx: watch::Sender<Option<String>>) {
    let lease = Duration::from_millis(lease_ms);
    let mut renewed = Instant::now();
    let mut tick = tokio::time::interval(every(lease_ms));
    tick.tick().await;
    loop {
        tick.tick().await;
        let result = store.lock().await.renew_lease(lease_ms).await;
        match result {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                let _ = tx.send(Some(
                    "another oracle process took the leader lease over".into(),
                ));
                return;
            }
            Err(e) if renewed.elapsed() >= lease => {
                let _ = tx.send(Some(format!(
                    "the leader lease could not be renewed for {lease_ms} ms: {e}"
                )));
                return;
            }
            Err(e) => warn!("renewing the leader lease: {e}"),
        }
    }
}

impl Keeper {
    /// The lease this process holds: its store's writes check it.
    pub(super) fn fence(&self) -> Option<Fence> {
        Some(self.fence.clone())
    }

    /// Resolves with the reason when the lease is lost.
    pub(super) async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "the leader lease keeper stopped".into(),
        }
    }

    /// Stops renewing and gives the lease up, so a standby takes over at once.
    pub(super) async fn release(self) {
        self.task.abort();
        if let Err(e) = self.store.lock().await.release_lease().await {
            warn!("giving up the leader lease: {e} (it expires by itself)");
        } else {
            info!("gave up the leader lease");
        }
    }
}
