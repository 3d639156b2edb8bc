//! A cluster's members in the service ([`crate::store::members`]): every process records
//! itself and is seen every third of the lease ([`keep`]); one that stops on purpose leaves
//! the broker's share group first ([`leave`]); the leader reaps the broker session of a member
//! not seen for `cluster.reap_after_s` (`service/reaper.rs`).
//!
//! **Why.** Every process subscribes to the proofs through the shared subscription with a
//! persistent session. A broker keeps handing a share of the proofs to the session of a process
//! that is gone, and queues them for it (Mosquitto 2.0.11 does: with two members, one offline,
//! the offline one got 5 of 10): those proofs wait until that process comes back, or the broker
//! expires its session (14 days as shipped), and every resend of an agent has the same chance
//! of landing there again. A process that unsubscribes before it disconnects gets nothing
//! queued. So a clean stop leaves the group — unless no other member is alive: then the last
//! one keeps its place, and the broker queues the proofs for the cluster while it is down — and
//! the leader takes over the session of one that died, judges what was queued there and
//! discards it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tracing::{info, warn};

use super::reaper::{Outcome, Reaper};
use super::stages::ToWorker;
use crate::settings::Cluster;
use crate::state::{Role, Shared};
use crate::store::members::Member;

/// Longest wait for the broker's `UNSUBACK` when leaving, and then for what it delivered
/// before to be taken by the pipeline.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// How soon a reap that failed is tried again (a refused login: [`REFUSED_RETRY`]).
const FAILED_RETRY: Duration = Duration::from_secs(30);

/// How soon a reap whose login was refused is tried again: an operator has to act first.
const REFUSED_RETRY: Duration = Duration::from_secs(600);

/// Aborts the task when dropped: a stopping process takes its membership's tasks with it.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What [`keep`] runs with.
pub(super) struct Membership {
    /// This process as a member.
    pub(super) me: Member,
    pub(super) cluster: Cluster,
    pub(super) shared: Arc<Shared>,
    /// `None`: reaping is off (`cluster.reap_after_s = 0`).
    pub(super) reaper: Option<Reaper>,
}

/// Marks this process seen every third of the lease until it is leaving; while it leads,
/// reaps one stale member at a time.
pub(super) async fn keep(m: Membership) {
    let reaper = m.reaper.map(Arc::new);
    let mut tick = tokio::time::interval(Duration::from_millis((m.cluster.lease_ms / 3).max(100)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    let mut reaping: Option<AbortOnDrop> = None;
    let (done_tx, mut done_rx) = mpsc::channel::<(String, Retry)>(1);
    // Members not to be tried again before then; members whose trouble was logged once.
    let mut not_before: HashMap<String, Instant> = HashMap::new();
    let mut said: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some((name, retry)) = done_rx.recv() => {
                reaping = None;
                let after = match retry {
                    Retry::Next => continue,
                    Retry::After(after) => after,
                    Retry::Refused => {
                        said.insert(name.clone());
                        REFUSED_RETRY
                    }
                };
                not_before.insert(name, Instant::now() + after);
                continue;
            }
        }
        if m.shared.leaving.load(Ordering::Relaxed) {
            return;
        }
        match m.shared.reader.member_seen(&m.me).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                warn!("recording this process as a live member of the cluster: {e}");
            }
            Err(_) => {}
        }
        let leads = m.shared.role.lock().is_ok_and(|r| *r == Role::Leader);
        let Some(reaper) = reaper.as_ref().filter(|_| leads && reaping.is_none()) else {
            continue;
        };
        let stale = match m
            .shared
            .reader
            .stale_members(&m.me.name, m.cluster.reap_after_ms)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                warn!("reading the cluster's members: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let Some(dead) = stale
            .into_iter()
            .filter(|d| not_before.get(&d.name).is_none_or(|t| now >= *t))
            .find(|d| {
                // Its session is this process's own: connecting under it would drop ours.
                let ours = d.client_id == m.me.client_id;
                if ours && said.insert(d.name.clone()) {
                    warn!(member = %d.name, client_id = %d.client_id, "a member not seen for cluster.reap_after_s has this process's own broker client id: not reaped (give each process its own broker.client_id)");
                }
                !ours
            })
        else {
            continue;
        };
        let (reaper, shared, done) = (reaper.clone(), m.shared.clone(), done_tx.clone());
        let after_ms = m.cluster.reap_after_ms;
        let say_refusal = !said.contains(&dead.name);
        reaping = Some(AbortOnDrop(tokio::spawn(async move {
            let retry = reap_one(&reaper, &shared, &dead, after_ms, say_refusal).await;
            let _ = done.send((dead.name, retry)).await;
        })));
    }
}

/// When to try a member's reap again.
enum Retry {
    /// At the next tick, if it is still stale.
    Next,
    /// Not before this long.
    After(Duration),
    /// The login was refused (and said): not before [`REFUSED_RETRY`].
    Refused,
}

/// Reaps `dead`, logging how it went; how soon to try it again, if ever.
async fn reap_one(
    reaper: &Reaper,
    shared: &Shared,
    dead: &Member,
    after_ms: u64,
    say_refusal: bool,
) -> Retry {
    info!(member = %dead.name, client_id = %dead.client_id, "a member has not been seen for cluster.reap_after_s: taking its broker session over");
    let started = Instant::now();
    let still_dead = async { Ok(shared.reader.member_reaped(&dead.name, after_ms).await?) };
    match reaper.reap(dead, still_dead).await {
        Ok(Outcome::Done { taken }) => {
            shared.metrics.members_reaped.inc();
            info!(member = %dead.name, taken, took_ms = started.elapsed().as_millis(), "reaped a dead member: what the broker queued for it is judged here, its session discarded");
            Retry::Next
        }
        Ok(Outcome::Interrupted { taken }) => {
            info!(member = %dead.name, taken, "reaping a member stopped: it came back (or the broker dropped the connection); its session is left to it");
            Retry::After(FAILED_RETRY)
        }
        Ok(Outcome::Unfinished { taken }) => {
            info!(member = %dead.name, taken, "reaping a member took all the time allowed: the rest of its queue is taken at the next try");
            Retry::Next
        }
        Ok(Outcome::Refused(code)) => {
            if say_refusal {
                let user = dead.username.as_deref().unwrap_or("<its username>");
                warn!(member = %dead.name, client_id = %dead.client_id, "the broker refused this process's login under a dead member's client id ({code:?}), so the proofs it queued for it wait there: reaping needs every process of the cluster to share one broker password; or discard the session by hand with a clean-session login under its id (what it had queued was never acked: agents resend it): mosquitto_sub -h <broker> -i '{}' -u '{user}' -P <its password> -t wisp/v1/epoch -E", dead.client_id);
            }
            Retry::Refused
        }
        Err(e) => {
            warn!(member = %dead.name, "reaping a dead member's broker session: {e:#}; tried again in {FAILED_RETRY:?}");
            Retry::After(FAILED_RETRY)
        }
    }
}

/// A cluster process's clean stop: leaves the share group unless no other member is alive,
/// and waits (bounded) until what the broker delivered before is taken by the pipeline, which
/// runs as usual meanwhile. From here on the process subscribes to the proofs no more.
pub(super) async fn leave(
    shared: &Shared,
    client: &AsyncClient,
    cluster: &Cluster,
    filter: &str,
    pipeline: &mpsc::WeakSender<ToWorker>,
    window: Duration,
) {
    shared.leaving.store(true, Ordering::SeqCst);
    match shared
        .reader
        .members_alive_besides(&cluster.name, cluster.lease_ms)
        .await
    {
        Ok(0) => {
            info!(
                "no other member of the cluster is alive: this process keeps its place in the shared subscription, so the broker queues the proofs for the cluster while it is down"
            );
            return;
        }
        Ok(_) => {}
        Err(e) => {
            warn!(
                "reading the cluster's members: {e}; this process keeps its place in the shared subscription (the leader reaps it after cluster.reap_after_s)"
            );
            return;
        }
    }
    let acked = shared.unsubacked.notified();
    if let Err(e) = client.unsubscribe(filter).await {
        warn!("leaving the shared subscription: {e}");
        return;
    }
    if timeout(LEAVE_WAIT, acked).await.is_err() {
        warn!(
            "the broker did not confirm within {LEAVE_WAIT:?} that this process left the shared subscription; stopping all the same"
        );
    } else {
        info!("left the shared subscription: the broker hands the proofs to the other members");
    }
    // What the broker delivered before its UNSUBACK has been read: the pipeline takes it
    // (checked every 10 ms: a stop, not the pipeline's own path), then judges or hands over
    // its last batch.
    let deadline = Instant::now() + LEAVE_WAIT;
    while Instant::now() < deadline {
        let queued = shared.metrics.mqtt_backlog.get() > 0
            || pipeline
                .upgrade()
                .is_some_and(|s| s.capacity() < s.max_capacity());
        if !queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(window * 2 + Duration::from_millis(500)).await;
    if let Err(e) = shared.reader.member_left(&cluster.name).await {
        warn!("recording that this process left the cluster: {e}");
    }
}
