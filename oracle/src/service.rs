//! The oracle service: the embedded broker (or an external one), MQTT ingest, storage,
//! epochs, acks and the HTTP API.
//!
//! Tasks: everything runs on the tokio runtime, each stage a task joined to the next by a
//! bounded channel. The MQTT tasks forward publishes to the precheck stage, which batches
//! them and checks their signatures; the **ingest worker** owns the [`Engine`] and the
//! writable [`Store`]: it judges each batch, commits its rows in one transaction, and only
//! then hands the verdicts to the acker, which signs and publishes them in commit order. The
//! worker also opens epochs (a new signed seed, stored, then published retained) and closes
//! them (one transaction, then the manifest is published retained), as the core's
//! [`EpochCalendar`] decides; this module does the I/O. CPU-bound work (signatures, the
//! engine) runs in `spawn_blocking`, and so do SQLite's calls, inside the [`Store`]; the
//! store's PostgreSQL queries are awaited on the runtime. The tasks only wait, on their
//! channels, timers and queries — none polls.
//!
//! Submodules: `clock` ([`Clock`], [`wall_ms`]), `mqtt` (the connection's event loop, which
//! never waits on the service, and the forwarder that waits for room in its queue), `replay` ([`rebuild`]: the engine from the
//! store at start; [`Follower`]: a standby's engine kept up with the leader's commits),
//! `stages` (the precheck and acker tasks around the worker, [`ThreadedVerifier`], the queue
//! bounds) and `worker` (the ingest worker).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rumqttc::{AsyncClient, MqttOptions};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use wisp_protocol::ProofId;
use wisp_protocol::msg::Verdict;
use wisp_protocol::{NodeKey, topics};
use wisp_shell::broker_health::{BrokerHealth, REPORT_EVERY_MS};
use wisp_shell::keyfile;

use crate::calendar::EpochCalendar;
use crate::engine::{Checked, Closed, Engine, Ingested, Prechecker, Proof, RateLimiter, Screened};
use crate::metrics::Metrics;
use crate::settings::{BrokerMode, Settings};
use crate::state::{GRANT_QUEUE, Role, Shared, Snapshot};
use crate::store::intake::Listener;
use crate::store::{CloseMarks, StorageConfig, Store};

mod clock;
mod credits;
mod intake;
mod lease;
mod members;
mod mqtt;
mod reaper;
mod replay;
mod stages;
mod worker;

pub use clock::{Clock, wall_ms};
pub use replay::{Follower, rebuild};
pub use stages::ThreadedVerifier;
use stages::{
    ACK_QUEUE, STAGE_QUEUE, ToWorker, VERIFY_THREADS, Verifier, run_acker, run_prechecker,
};
use worker::{Books, Worker};

/// The database file.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("oracle.db")
}

/// Loads the oracle key, creating it (0600) on first start (and its directory, 0700, if
/// missing).
pub fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    let (key, created) = keyfile::open_or_create(path)?;
    if created {
        info!(oracle = %key.id(), path = %path.display(), "created a new oracle key");
    }
    Ok(key)
}

/// Topics only the oracle publishes on, retained, that agents read when they subscribe. A
/// broker without ACLs lets anyone publish there: a forged or empty retained message would
/// be what new subscribers get. The oracle subscribes to them, and whatever arrives that is
/// not what it last published there, it publishes its own again (agents also verify the
/// oracle's signature on all of them, so a forgery is never believed, only a nuisance).
fn is_guarded(topic: &str) -> bool {
    topic == topics::EPOCH || topic == topics::CLOCK || topic.starts_with(MEASURERS_PREFIX)
}

/// The measurer set parts' topics, [`topics::MEASURERS_FILTER`] without its wildcard.
const MEASURERS_PREFIX: &str = "wisp/v1/measurers/";

/// Runs `f` on `state` in `spawn_blocking` and gives it back with the result: judging a
/// batch, closing an epoch and replaying rows are CPU-bound, and stay off the runtime.
pub(crate) async fn off_runtime<S: Send + 'static, T: Send + 'static>(
    mut state: S,
    f: impl FnOnce(&mut S) -> T + Send + 'static,
) -> anyhow::Result<(S, T)> {
    tokio::task::spawn_blocking(move || {
        let out = f(&mut state);
        (state, out)
    })
    .await
    .map_err(|e| anyhow!("a blocking step of the oracle failed: {e}"))
}

/// The proofs of `batch` whose stored verdict [`Engine::ingest`] may ask for: authentic,
/// unknown to the engine, of an epoch it does not hold open (the engine asks only for a late
/// proof of a closed epoch, which may be a resend of one it forgot at the close). Read from
/// the store in one query before the batch is judged; nearly every batch asks for none.
fn stored_verdicts_wanted(engine: &Engine, batch: &[Checked]) -> Vec<ProofId> {
    let open: HashSet<u64> = engine.open_epochs().map(|(e, _)| *e).collect();
    batch
        .iter()
        .filter_map(|c| {
            let Screened::Authentic { proof: Ok(p), .. } = &c.screened else {
                return None;
            };
            let epoch = match p {
                Proof::Beacon(b) | Proof::Witness(_, Some(b)) => b.msg.epoch,
                Proof::Receipt(r) => r.msg.epoch,
                Proof::Heartbeat(h) => h.msg.epoch,
                Proof::Usage(u) => u.msg.epoch,
                Proof::Carrier(c) => c.msg.epoch,
                Proof::Onboard(_) | Proof::Witness(_, None) | Proof::Grant(_) => return None,
            };
            (!open.contains(&epoch) && engine.known(&c.id).is_none()).then_some(c.id)
        })
        .collect()
}

/// Judges a prechecked batch (in `spawn_blocking`) and commits its rows in one transaction,
/// as the worker does. The acks in the result may be sent only once this returns. The engine
/// is handed back with the result; on an error it is dropped (the worker stops).
pub async fn commit_batch(
    engine: Engine,
    store: &mut Store,
    batch: Vec<Checked>,
) -> anyhow::Result<(Engine, Ingested)> {
    let wanted = stored_verdicts_wanted(&engine, &batch);
    let stored = store
        .verdicts(wanted)
        .await
        .context("reading the stored verdicts of resent proofs")?;
    let (engine, out) = off_runtime(engine, move |e| {
        e.ingest(batch, |id| stored.get(id).copied())
    })
    .await?;
    store
        .insert_rows(&out.rows)
        .await
        .context("storing a batch of proofs")?;
    if out.unknown_nodes > 0 {
        store
            .add_unstored_refusals(wisp_protocol::Reason::UnknownNode, out.unknown_nodes)
            .await
            .context("counting proofs of keys that never onboarded")?;
    }
    Ok((engine, out))
}

/// Closes a settled epoch as the worker does: the rules, the rewards and the signed manifest
/// (in `spawn_blocking`), stored in one transaction, then the engine moves on. Returns the
/// engine with the close and whether this call committed it (`false`: it was committed
/// before, by a process that stopped before it could publish); `None` if the epoch is not
/// open or has not settled.
pub async fn close_epoch(
    engine: Engine,
    store: &mut Store,
    epoch: u64,
    now_ms: u64,
    emission: u64,
) -> anyhow::Result<(Engine, Option<(Closed, bool)>)> {
    let (engine, closed) = off_runtime(engine, move |e| e.close(epoch, now_ms, emission)).await?;
    let Some(closed) = closed else {
        return Ok((engine, None));
    };
    let committed = store
        .commit_close(
            epoch,
            now_ms,
            engine.next_seq(),
            &closed.rewards.entries,
            CloseMarks {
                rejected: &closed.outcome.rejections,
                flagged: &closed.outcome.flagged,
            },
            &closed.manifests,
        )
        .await?;
    let (engine, closed) = off_runtime(engine, move |e| {
        e.finish_close(epoch, &closed.outcome);
        closed
    })
    .await?;
    Ok((engine, Some((closed, committed))))
}

/// The epoch calendar as the store left it: the genesis (if set) and every stored epoch's
/// emission.
async fn load_calendar(store: &Store, settings: &Settings) -> anyhow::Result<EpochCalendar> {
    let genesis = store.meta("genesis_ms").await?;
    let stored = store
        .epochs()
        .await?
        .iter()
        .map(|e| (e.epoch, e.emission))
        .collect::<Vec<_>>();
    Ok(EpochCalendar::new(
        settings.epoch_ms,
        settings.emission,
        genesis,
        stored,
    ))
}

/// Runs the oracle until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Owner only: the key, the database and the API's address.
    keyfile::create_private_dir(&settings.data_dir)
        .with_context(|| format!("creating oracle.data_dir {}", settings.data_dir.display()))?;
    let key = load_key(&settings.key_file)?;
    let mut store = Store::open(&settings.storage)
        .await
        .context("opening the oracle database")?;
    let reader = Store::open(&settings.storage)
        .await
        .context("opening the oracle database")?;
    info!(backend = store.backend(), "storage open");

    let metrics = Metrics::new();
    // The broker as operators name it, and where (and as whom) this process connects.
    let (host, port, embedded) = match &settings.broker {
        BrokerMode::Embedded(addr) => {
            let front = crate::broker::FrontConfig {
                listen: *addr,
                max_payload: settings.max_payload,
                oracle: key.id(),
                oracle_client_id: settings.client_id.clone(),
                max_connections_per_ip: settings.max_connections_per_ip,
            };
            let e = crate::broker::start(front, metrics.front()).await?;
            (addr.ip().to_string(), addr.port(), Some(e))
        }
        BrokerMode::External(b) => (b.host.clone(), b.port, None),
    };
    let mut o = match (&embedded, &settings.broker) {
        (Some(e), _) => {
            let mut o = MqttOptions::new(
                settings.client_id.clone(),
                e.internal.ip().to_string(),
                e.internal.port(),
            );
            o.set_credentials(crate::broker::INTERNAL_USER, e.password.clone());
            o
        }
        (None, BrokerMode::External(b)) => {
            let mut o = MqttOptions::new(settings.client_id.clone(), host.clone(), port);
            if let Some((user, password)) = &b.login {
                if !b.tls && !b.is_loopback() {
                    warn!(
                        broker = %b.url(),
                        "the broker password goes over the network in the clear: use mqtts://"
                    );
                }
                o.set_credentials(user.clone(), password.expose().to_string());
            }
            // As the agent does: the CA bundle given, else the system's roots (through the
            // ring provider installed above).
            if let Some(transport) = b.transport().map_err(|e| anyhow!("broker.{e}"))? {
                o.set_transport(transport);
            }
            o
        }
        (None, BrokerMode::Embedded(_)) => bail!("the embedded broker did not start"),
    };
    o.set_keep_alive(Duration::from_secs(30));
    // A persistent session: an external broker queues the proofs that arrive while we restart.
    o.set_clean_session(false);
    o.set_max_packet_size(settings.max_payload, settings.max_payload);
    o.set_inflight(1000);
    o.set_request_channel_capacity(4096);
    let (client, eventloop) = AsyncClient::new(o, 4096);
    let (tx, rx) = mpsc::channel::<ToWorker>(16_384);
    // A standby that starts to lead tells its worker of a connection made while it stood by.
    let inject = tx.clone();
    // Credit grants from the API to the worker (unread while this process stands by: a
    // standby's API hands grants to the leader through the intake instead).
    let (grant_tx, grant_rx) = mpsc::channel(GRANT_QUEUE);
    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Snapshot::default()),
        reader,
        metrics,
        connected: AtomicBool::new(false),
        broker: Mutex::new(BrokerHealth::new(
            match &settings.broker {
                BrokerMode::External(b) => b.url(),
                BrokerMode::Embedded(_) => format!("mqtt://{host}:{port}"),
            },
            REPORT_EVERY_MS,
        )),
        retained: Mutex::new(HashMap::new()),
        role: Mutex::new(if settings.cluster.is_some() {
            Role::Standby
        } else {
            Role::Alone
        }),
        grants: grant_tx,
        carrier_limit: crate::carrier_limit::CarrierLimit::new(
            settings.carrier_rate_per_s,
            settings.carrier_burst,
        ),
        leaving: AtomicBool::new(false),
        unsubacked: tokio::sync::Notify::new(),
    });
    let clock = Clock::from_env();
    // A cluster's stopping process watches the queue empty; its leader's reaper feeds it.
    let pipeline = tx.downgrade();
    let membership = match (&settings.cluster, &settings.broker) {
        (Some(c), BrokerMode::External(b)) => {
            let reaper = (c.reap_after_ms > 0).then(|| reaper::Reaper {
                broker: b.clone(),
                max_payload: settings.max_payload,
                tx: tx.clone(),
                clock: clock.clone(),
                reaped: shared.metrics.reaped.clone(),
                filter: c.proofs_filter(),
            });
            let me = crate::store::members::Member {
                name: c.name.clone(),
                client_id: settings.client_id.clone(),
                username: b.login.as_ref().map(|(user, _)| user.clone()),
            };
            Some(members::AbortOnDrop(tokio::spawn(members::keep(
                members::Membership {
                    me,
                    cluster: c.clone(),
                    shared: shared.clone(),
                    reaper,
                },
            ))))
        }
        _ => None,
    };
    let mqtt = mqtt::spawn(eventloop, client.clone(), shared.clone(), tx, clock.clone());

    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding the HTTP API to {} (http.listen)",
                settings.http_listen
            )
        })?;
    let http_addr = listener.local_addr()?;
    wisp_shell::keyfile::replace_file(
        &settings.data_dir.join("http.addr"),
        http_addr.to_string().as_bytes(),
    )?;
    let router = crate::http::router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!("HTTP API stopped: {e}");
        }
    });
    info!(oracle = %key.id(), broker = %format!("{host}:{port}"), http = %http_addr, "wisp-oracle started");

    let window = Duration::from_millis(settings.batch_window_ms);
    // A cluster's process that stops on purpose first leaves the broker's share group, while
    // its pipeline runs on (`service/members.rs`, `leave`).
    let leaving = (settings.cluster.clone()).map(|c| (c, client.clone(), shared.clone()));
    let shutdown = async move {
        shutdown.await;
        if let Some((c, client, shared)) = leaving {
            let filter = c.proofs_filter();
            members::leave(&shared, &client, &c, &filter, &pipeline, window).await;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let (mut rx, mut pre) = (
        rx,
        Prechecker::new(
            RateLimiter::new(settings.rate_per_s, settings.burst, 1_000_000),
            Verifier::new(ThreadedVerifier::new(VERIFY_THREADS)),
        ),
    );
    // Several processes on one database: stand by until this one holds the leader lease,
    // verifying meanwhile the proofs the broker hands this process and passing them to the
    // leader. The state it takes over with is its follower's, finished with what the previous
    // leader committed since its last look.
    let mut lease = None;
    let mut followed = None;
    if let Some(cluster) = &settings.cluster {
        let (fwd_stop, fwd_stop_rx) = watch::channel(false);
        // Meanwhile it follows what the leader commits, for its API and to take over with
        // little left to replay.
        let follower = tokio::spawn(replay::follow(
            Follower::new(key.clone(), &settings.rules),
            Store::open(&settings.storage)
                .await
                .context("opening the oracle database")?,
            shared.clone(),
            fwd_stop_rx.clone(),
        ));
        let parts = intake::Forwarder { rx, store, pre };
        let mut fwd = tokio::spawn(intake::forward(
            parts,
            client.clone(),
            shared.clone(),
            cluster.proofs_filter(),
            settings.batch_max,
            window,
            fwd_stop_rx,
        ));
        let keeper = tokio::select! {
            k = lease::wait(&settings.storage, cluster, &mut shutdown) => k?,
            r = &mut fwd => {
                let why = match r {
                    Ok(Err(e)) => format!("{e:#}"),
                    Ok(Ok(_)) => "it stopped".into(),
                    Err(e) => e.to_string(),
                };
                bail!("handing verified proofs to the leader failed: {why}");
            }
        };
        let _ = fwd_stop.send(true);
        let parts = fwd
            .await
            .map_err(|e| anyhow!("the standby's stage failed: {e}"))??;
        followed = follower.await.ok();
        (rx, store, pre) = (parts.rx, parts.store, parts.pre);
        let Some(keeper) = keeper else {
            info!("shutting down");
            drop(membership);
            disconnect(&client, mqtt).await;
            return Ok(());
        };
        store.set_fence(keeper.fence())?;
        if let Ok(mut r) = shared.role.lock() {
            *r = Role::Leader;
        }
        if shared.connected.load(Ordering::Relaxed) {
            let _ = inject.send(ToWorker::Connected).await;
        }
        lease = Some(keeper);
    }
    drop(inject);
    let engine = followed
        .unwrap_or_else(|| Follower::new(key.clone(), &settings.rules))
        .finish(&mut store)
        .await?;
    let calendar = load_calendar(&store, &settings).await?;

    let (stop, stop_rx) = watch::channel(false);
    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
    let acker = tokio::spawn(run_acker(
        ack_rx,
        engine.key().clone(),
        client.clone(),
        shared.clone(),
        clock.clone(),
    ));
    let (stage_tx, stage_rx) = mpsc::channel(STAGE_QUEUE);
    // A leader also takes the proofs standbys verified: rate-limited with its own (one
    // allowance per node), judged without verifying them again.
    let mut drain = None;
    let mut intake = None;
    if let (Some(_), StorageConfig::Postgres { url, .. }) = (&settings.cluster, &settings.storage) {
        let listener = Listener::open(url)
            .await
            .context("listening for the proofs standbys hand over")?;
        let mut taker = Store::open(&settings.storage)
            .await
            .context("opening the oracle database")?;
        taker.set_fence(store.fence().cloned())?;
        let (itx, irx) = mpsc::channel(16_384);
        drain = Some(tokio::spawn(intake::drain(
            listener,
            taker,
            itx,
            shared.clone(),
            stop_rx.clone(),
        )));
        intake = Some(irx);
    }
    let prechecker = tokio::spawn(run_prechecker(
        rx,
        intake,
        stage_tx,
        pre,
        settings.batch_max,
        window,
        stop_rx.clone(),
    ));
    let books = Books {
        engine,
        calendar,
        settings,
        shared: shared.clone(),
        proofs_stored: None,
        measurer_parts_published: 0,
    };
    let client_end = client.clone();
    let mut worker = tokio::spawn(
        Worker::new(books, store, client, clock, stage_rx, grant_rx, ack_tx).run(stop_rx),
    );
    let lost = async {
        match &lease {
            Some(k) => k.lost().await,
            None => std::future::pending().await,
        }
    };
    let drained = async {
        match drain.as_mut() {
            Some(d) => match d.await {
                Ok(Ok(())) => "it stopped".to_string(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            },
            None => std::future::pending().await,
        }
    };
    // A worker that stops by itself (its store failed) stops the process: an oracle that
    // serves its API but judges nothing would look healthy to a supervisor that could
    // restart it. So does a leader that lost its lease (its store refuses every write now).
    let result = tokio::select! {
        () = &mut shutdown => {
            info!("shutting down");
            // The worker finishes the batch it holds; the stages stop on their own as their
            // neighbours go.
            let _ = stop.send(true);
            (&mut worker).await
        }
        why = lost => {
            if let Ok(mut r) = shared.role.lock() {
                *r = Role::Standby;
            }
            error!("{why}; wisp-oracle stops (restart it to stand by)");
            let _ = stop.send(true);
            let _ = (&mut worker).await;
            Ok(Err(anyhow!("{why}")))
        }
        why = drained => {
            error!("taking the proofs standbys hand over failed: {why}; wisp-oracle stops");
            let _ = stop.send(true);
            let _ = (&mut worker).await;
            Ok(Err(anyhow!("taking the proofs standbys hand over failed: {why}")))
        }
        r = &mut worker => {
            error!("the ingest worker stopped; wisp-oracle stops too");
            let _ = stop.send(true);
            r
        }
    };
    if let Some(k) = lease {
        // A clean stop hands the lease on at once (after a failure it expires by itself).
        if matches!(result, Ok(Ok(()))) {
            k.release().await;
        }
    }
    let _ = prechecker.await;
    drop(membership);
    // The worker is gone, so is its ack sender: the acker sends what it holds and stops.
    let _ = acker.await;
    disconnect(&client_end, mqtt).await;
    match result {
        Ok(r) => r,
        Err(_) => bail!("the ingest worker panicked"),
    }
}

/// Ends the MQTT connection cleanly: a DISCONNECT after what the client queued (the last
/// acks), within 2 s; the broker keeps a persistent session for the next start.
async fn disconnect(client: &AsyncClient, mut mqtt: tokio::task::JoinHandle<()>) {
    let sent = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = client.disconnect().await;
        let _ = (&mut mqtt).await;
    })
    .await;
    if sent.is_err() {
        mqtt.abort();
    }
}

/// The verdict as a metrics label.
pub fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accepted => "accepted",
        Verdict::Rejected(r) => r.name(),
    }
}
