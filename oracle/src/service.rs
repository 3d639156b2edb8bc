//! The oracle service: the embedded broker (or an external one), MQTT ingest, storage,
//! epochs, acks and the HTTP API.
//!
//! Threads: the tokio runtime runs the MQTT event loop (forwarding publishes over a bounded
//! channel), the HTTP server and the timers; one **worker thread** owns the [`Engine`] and the
//! writable [`Store`]: it takes batches of publishes, judges them (signatures verified on two
//! threads), commits the rows in one transaction, and only then publishes the signed acks. It
//! also opens epochs (a new signed seed, stored, then published retained) and closes them (one
//! transaction, then the manifest is published retained), as the core's
//! [`EpochCalendar`] decides; this module does the I/O.
//!
//! Submodules: `clock` ([`Clock`], [`wall_ms`]), `replay` ([`rebuild`]: the engine from the
//! store at start) and `threads` (the precheck and acks threads around the worker,
//! [`ThreadedVerifier`], the queue bounds).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{EpochSeed, MeasurerSet, OracleClock, Verdict};
use wisp_protocol::{NodeKey, keyfile, topics};
use wisp_shell::broker_health::{BrokerHealth, REPORT_EVERY_MS};

use crate::calendar::EpochCalendar;
use crate::engine::{Checked, Closed, Engine, Incoming, Ingested, Prechecker, RateLimiter};
use crate::metrics::{Metrics, ReasonLabel};
use crate::settings::{BrokerMode, Settings};
use crate::state::{MarkView, NodeView, Shared, Snapshot};
use crate::store::{CrashPoint, Store};

mod clock;
mod replay;
mod threads;

pub use clock::{Clock, wall_ms};
pub use replay::rebuild;
pub use threads::ThreadedVerifier;
use threads::{
    ACK_QUEUE, STAGE_QUEUE, Stage, ToWorker, VERIFY_THREADS, publish, run_acker, run_prechecker,
};

/// The database file.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("oracle.db")
}

/// Loads the oracle key, creating it (0600) on first start (and its directory, 0700, if
/// missing).
pub fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        keyfile::create_private_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let (key, created) = keyfile::load_or_create(path, &mut rng)?;
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

/// Judges a prechecked batch and commits its rows in one transaction, as the worker does. The
/// acks in the result may be sent only once this returns.
pub fn commit_batch(
    engine: &mut Engine,
    store: &mut Store,
    batch: Vec<Checked>,
) -> anyhow::Result<Ingested> {
    let out = engine.ingest(batch, |id| store.verdict(id).ok().flatten());
    store
        .insert_rows(&out.rows)
        .context("storing a batch of proofs")?;
    if out.unknown_nodes > 0 {
        store
            .add_unstored_refusals(wisp_protocol::Reason::UnknownNode, out.unknown_nodes)
            .context("counting proofs of keys that never onboarded")?;
    }
    Ok(out)
}

/// Closes a settled epoch as the worker does: the rules, the rewards and the signed manifest
/// in one transaction, then the engine moves on. Returns the close and whether this call
/// committed it (`false`: it was committed before, by a process that stopped before it could
/// publish); `None` if the epoch is not open or has not settled.
pub fn close_epoch(
    engine: &mut Engine,
    store: &mut Store,
    epoch: u64,
    now_ms: u64,
    emission: u64,
) -> anyhow::Result<Option<(Closed, bool)>> {
    let Some(closed) = engine.close(epoch, now_ms, emission) else {
        return Ok(None);
    };
    let committed = store.commit_close(
        epoch,
        now_ms,
        engine.next_seq(),
        &closed.rewards.entries,
        &closed.outcome.rejections,
        &closed.manifests,
    )?;
    engine.finish_close(epoch, &closed.outcome);
    Ok(Some((closed, committed)))
}

/// The epoch calendar as the store left it: the genesis (if set) and every stored epoch's
/// emission.
fn load_calendar(store: &mut Store, settings: &Settings) -> anyhow::Result<EpochCalendar> {
    let genesis = store.meta("genesis_ms")?;
    let stored = store
        .epochs()?
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

/// Whether `host` (a name or an address) is this machine: a password sent there in the clear
/// does not cross a network.
fn host_is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    // The PostgreSQL client blocks on a runtime of its own: open, replay and read the stores
    // off this one.
    let (mut store, engine, reader) = {
        let (settings, key) = (settings.clone(), key.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut store =
                Store::open(&settings.storage).context("opening the oracle database")?;
            let engine = rebuild(&mut store, key, &settings.rules)?;
            let reader = Store::open(&settings.storage).context("opening the oracle database")?;
            info!(backend = store.backend(), "storage open");
            Ok((store, engine, reader))
        })
        .await??
    };

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
                if !b.tls && !host_is_loopback(&b.host) {
                    warn!(
                        broker = %b.url(),
                        "the broker password goes over the network in the clear: use mqtts://"
                    );
                }
                o.set_credentials(user.clone(), password.expose().to_string());
            }
            // As the agent does: the CA bundle given, else the system's roots (through the
            // ring provider installed above).
            if b.tls {
                let transport = match &b.ca_file {
                    Some(f) => {
                        let ca = std::fs::read(f)
                            .with_context(|| format!("reading broker.ca_file {}", f.display()))?;
                        rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                            ca,
                            alpn: None,
                            client_auth: None,
                        })
                    }
                    None => rumqttc::Transport::tls_with_default_config(),
                };
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
    let (client, mut eventloop) = AsyncClient::new(o, 4096);
    let (tx, rx) = mpsc::channel::<ToWorker>(16_384);
    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Snapshot::default()),
        reader: Mutex::new(reader),
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
    });
    let guard_client = client.clone();

    let s2 = shared.clone();
    let clock = Clock::from_env();
    let mqtt_clock = clock.clone();
    let mqtt = tokio::spawn(async move {
        // Rate limiting of the broker's WARN lines runs on a monotonic clock of its own.
        let started = Instant::now();
        let mono_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(line) = s2.broker.lock().ok().and_then(|mut b| b.handle_connected())
                    {
                        info!("{line}");
                    }
                    s2.connected.store(true, Ordering::Relaxed);
                    if tx.send(ToWorker::Connected).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if is_guarded(&p.topic) => {
                    let ours = s2
                        .retained
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&p.topic).cloned());
                    if let Some(ours) = ours.filter(|o| o.as_slice() != p.payload.as_ref()) {
                        if p.retain {
                            // Held from before this connection (the oracle's own older one
                            // after a restart, or a forgery): put right all the same.
                            debug!(topic = %p.topic, "a stale retained message on the oracle's topic: publishing the oracle's own again");
                        } else {
                            s2.metrics.retained_restored.inc();
                            warn!(topic = %p.topic, "someone else published on the oracle's retained topic: publishing the oracle's own again");
                        }
                        // Not awaited here: this task drives the connection the publish needs.
                        let c = guard_client.clone();
                        tokio::spawn(async move {
                            let _ = c.publish(p.topic, QoS::AtLeastOnce, true, ours).await;
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Incoming {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        at_ms: mqtt_clock.now_ms(),
                    };
                    if tx.send(ToWorker::Publish(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // Every failed attempt comes here (a refused port, a name that does not
                    // resolve, a lost connection); at most one line per 30 s is logged.
                    s2.connected.store(false, Ordering::Relaxed);
                    let line = s2
                        .broker
                        .lock()
                        .ok()
                        .and_then(|mut b| b.handle_failure(&e.to_string(), mono_ms()));
                    if let Some(line) = line {
                        warn!("{line}");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding the HTTP API to {} (http.listen)",
                settings.http_listen
            )
        })?;
    let http_addr = listener.local_addr()?;
    std::fs::write(settings.data_dir.join("http.addr"), http_addr.to_string())?;
    let router = crate::http::router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!("HTTP API stopped: {e}");
        }
    });
    info!(oracle = %key.id(), broker = %format!("{host}:{port}"), http = %http_addr, "wisp-oracle started");

    let stop = Arc::new(AtomicBool::new(false));
    let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(ACK_QUEUE);
    let acker = {
        let (key, client, handle, shared, clock) = (
            engine.key().clone(),
            client.clone(),
            tokio::runtime::Handle::current(),
            shared.clone(),
            clock.clone(),
        );
        std::thread::Builder::new()
            .name("acks".into())
            .spawn(move || run_acker(ack_rx, key, client, handle, shared, clock))?
    };
    let (stage_tx, stage_rx) = std::sync::mpsc::sync_channel(STAGE_QUEUE);
    let prechecker = {
        let pre = Prechecker::new(
            RateLimiter::new(settings.rate_per_s, settings.burst, 1_000_000),
            ThreadedVerifier::new(VERIFY_THREADS),
        );
        let (handle, stop) = (tokio::runtime::Handle::current(), stop.clone());
        let (batch_max, window) = (
            settings.batch_max,
            Duration::from_millis(settings.batch_window_ms),
        );
        std::thread::Builder::new()
            .name("precheck".into())
            .spawn(move || run_prechecker(rx, stage_tx, pre, handle, batch_max, window, stop))?
    };
    let worker = {
        let stop = stop.clone();
        let shared = shared.clone();
        let handle = tokio::runtime::Handle::current();
        let client = client.clone();
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                let calendar = load_calendar(&mut store, &settings)?;
                let mut w = Worker {
                    calendar,
                    epochs_due: (0, 0),
                    engine,
                    proofs_stored: None,
                    store,
                    client,
                    handle,
                    shared,
                    settings,
                    rx: stage_rx,
                    last_snapshot: None,
                    measurer_parts_published: 0,
                    clock,
                    next_clock_ms: 0,
                    acker: ack_tx,
                };
                w.run(&stop)
            })?
    };
    shutdown.await;
    info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    let result = tokio::task::spawn_blocking(move || worker.join()).await?;
    let _ = tokio::task::spawn_blocking(move || prechecker.join()).await?;
    // The worker is gone, so is its sender: the acker sends what it holds and stops.
    let _ = tokio::task::spawn_blocking(move || acker.join()).await?;
    mqtt.abort();
    match result {
        Ok(r) => r,
        Err(_) => bail!("the ingest worker panicked"),
    }
}

struct Worker {
    engine: Engine,
    store: Store,
    client: AsyncClient,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    settings: Settings,
    rx: std::sync::mpsc::Receiver<Stage>,
    last_snapshot: Option<Instant>,
    /// Rows in the proofs table: counted once (at the first snapshot), then kept by the
    /// batches committed (the snapshot refreshes each second and must not count a growing
    /// table each time).
    proofs_stored: Option<u64>,
    /// The epoch policy: genesis, the current epoch, each epoch's emission (read once from
    /// the store and kept current, so the epoch check costs no query).
    calendar: EpochCalendar,
    /// When the epoch check next has work ([`EpochCalendar::poll_timeout`]), and the time it
    /// was computed at (a clock that went back checks again at once).
    epochs_due: (u64, u64),
    /// How many `measurer_set` parts this process last published (retained).
    measurer_parts_published: usize,
    clock: Clock,
    /// When the signed clock is published next (oracle ms).
    next_clock_ms: u64,
    /// To the acker thread: each committed batch's verdicts.
    acker: std::sync::mpsc::SyncSender<Vec<(wisp_protocol::NodeId, wisp_protocol::msg::AckEntry)>>,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        use std::sync::mpsc::RecvTimeoutError;
        while !stop.load(Ordering::Relaxed) {
            let now = self.clock.now_ms();
            let (due, computed_at) = self.epochs_due;
            if now >= due || now < computed_at {
                self.epochs(now)?;
                let due = self.calendar.poll_timeout(now, self.engine.next_close_at());
                self.epochs_due = (due, now);
            }
            if now >= self.next_clock_ms {
                self.publish_clock(now);
            }
            // At most 100 ms without a batch, so epochs and shutdown are timely.
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Stage::Connected) => self.on_connected()?,
                Ok(Stage::Batch(batch)) => self.ingest(batch)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self
                .last_snapshot
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            {
                self.refresh_snapshot();
            }
        }
        Ok(())
    }

    fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) {
        if retain
            && is_guarded(&topic)
            && let Ok(mut r) = self.shared.retained.lock()
        {
            r.insert(topic.clone(), payload.clone());
        }
        publish(&self.client, &self.handle, topic, retain, payload);
    }

    /// Publishes the signed clock, retained (a new subscriber learns that the oracle publishes
    /// one, and sets its time by the next, live one).
    fn publish_clock(&mut self, now: u64) {
        let interval = self.settings.clock_interval_ms;
        let msg = OracleClock {
            now_ms: now,
            interval_ms: interval,
        };
        let bytes = Envelope::sign(self.engine.key(), &msg).to_bytes();
        self.publish(topics::CLOCK.into(), true, bytes);
        self.next_clock_ms = now + u64::from(interval);
    }

    /// Publishes an open epoch's measurer pool, retained, as signed `measurer_set` parts, and
    /// clears retained parts beyond its count left by a larger earlier set.
    fn publish_measurer_set(&mut self, epoch: u64) {
        let Some(pool) = self.engine.measurer_pool(epoch) else {
            return;
        };
        let Some(parts) = MeasurerSet::split(epoch, pool.eligible()) else {
            error!(
                epoch,
                nodes = pool.eligible().len(),
                "the measurer set exceeds the protocol's 1024 parts; not published"
            );
            return;
        };
        let count = parts.len();
        let signed: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| Envelope::sign(self.engine.key(), p).to_bytes())
            .collect();
        for (part, bytes) in signed.into_iter().enumerate() {
            self.publish(topics::measurers(part), true, bytes);
        }
        // An empty retained payload deletes the broker's retained message.
        for part in count..self.measurer_parts_published {
            self.publish(topics::measurers(part), true, Vec::new());
        }
        self.measurer_parts_published = count;
        info!(
            epoch,
            nodes = pool.eligible().len(),
            parts = count,
            "measurer set published"
        );
    }

    fn on_connected(&mut self) -> anyhow::Result<()> {
        info!("connected to the broker");
        // The clock at once: agents waiting for it need not wait a whole interval.
        self.next_clock_ms = 0;
        let c = self.client.clone();
        self.handle.block_on(async move {
            c.subscribe(topics::PROOFS_FILTER, QoS::AtLeastOnce).await?;
            // The oracle's own retained topics, to put right what anyone else publishes there.
            for filter in [topics::EPOCH, topics::CLOCK, topics::MEASURERS_FILTER] {
                c.subscribe(filter, QoS::AtLeastOnce).await?;
            }
            Ok::<(), rumqttc::ClientError>(())
        })?;
        // The retained seed and the latest manifest, again: harmless if the broker kept them,
        // necessary if it did not (an embedded broker starts empty).
        let epochs = self.store.epochs()?;
        if let Some(current) = epochs.iter().rev().find(|e| e.closed_ms.is_none()) {
            self.publish(topics::EPOCH.into(), true, current.seed.clone());
            self.publish_measurer_set(current.epoch);
        }
        if let Some(closed) = epochs.iter().rev().find(|e| e.closed_ms.is_some()) {
            for page in self.store.manifests(closed.epoch)? {
                self.publish(topics::rewards(closed.epoch), true, page);
            }
        }
        Ok(())
    }

    fn ingest(&mut self, batch: Vec<Checked>) -> anyhow::Result<()> {
        let started = Instant::now();
        let out = commit_batch(&mut self.engine, &mut self.store, batch)?;
        if let Some(n) = &mut self.proofs_stored {
            *n += out.rows.len() as u64;
        }
        let m = &self.shared.metrics;
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        m.duplicates.inc_by(out.duplicates);
        m.bad_topic.inc_by(out.bad_topic);
        for (reason, n) in &out.verdicts {
            m.verdict(*reason).inc_by(*n);
        }
        let mut unverified = 0;
        for (reason, n) in &out.unverified {
            m.unverified
                .get_or_create(&ReasonLabel {
                    reason: reason.name(),
                })
                .inc_by(*n);
            unverified += n;
        }
        if unverified > 0 {
            // No ack: nothing says the topic's node published these (see `engine`).
            debug!(
                unverified,
                "publishes whose signatures did not verify dropped without an ack"
            );
        }
        // Durable now: the acker thread signs and sends the acks while this one takes in the
        // next batch.
        if self.acker.send(out.acks).is_err() {
            bail!("the ack thread stopped");
        }
        Ok(())
    }

    /// Opens the current epoch (if not yet) and closes settled ones, as the calendar decides;
    /// the store is written before anything is published.
    fn epochs(&mut self, now: u64) -> anyhow::Result<()> {
        let due = self.calendar.poll(now);
        if let Some(genesis) = due.genesis {
            self.store.set_meta("genesis_ms", genesis)?;
            self.calendar.handle_genesis_stored(genesis);
        }
        if let Some(opening) = due.open {
            let current = opening.epoch;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random: {e}"))?;
            let msg = EpochSeed {
                epoch: current,
                start_ms: opening.start_ms,
                duration_ms: opening.duration_ms,
                seed: seed.into(),
                params: self.settings.params,
            };
            let bytes = Envelope::sign(self.engine.key(), &msg).to_bytes();
            self.store
                .insert_epoch(current, &bytes, opening.emission, self.engine.next_seq())?;
            self.calendar.handle_opened(&opening);
            self.engine.open_epoch(msg);
            self.publish(topics::EPOCH.into(), true, bytes);
            self.publish_measurer_set(current);
            self.shared
                .metrics
                .epoch
                .set(i64::try_from(current).unwrap_or(i64::MAX));
            info!(epoch = current, "epoch opened");
        }
        for epoch in self.engine.closable(now) {
            let emission = self.calendar.emission(epoch);
            let Some((closed, committed)) =
                close_epoch(&mut self.engine, &mut self.store, epoch, now, emission)?
            else {
                continue;
            };
            if committed {
                CrashPoint::CloseAfterCommit.reached();
                for page in &closed.manifests {
                    self.publish(topics::rewards(epoch), true, page.clone());
                }
                let paid: u64 = closed.rewards.entries.iter().map(|e| e.amount).sum();
                info!(
                    epoch,
                    nodes = closed.rewards.entries.len(),
                    paid,
                    rejected = closed.outcome.rejections.len(),
                    penalized = closed.outcome.penalties.len(),
                    "epoch closed"
                );
                for (node, reason) in &closed.outcome.penalties {
                    debug!(epoch, %node, reason = reason.name(), "penalty");
                }
                self.shared.metrics.epochs_closed.inc();
                for (reason, n) in closed.outcome.rejection_counts() {
                    self.shared.metrics.verdict(Some(reason)).inc_by(n);
                }
            }
        }
        Ok(())
    }

    fn refresh_snapshot(&mut self) {
        self.last_snapshot = Some(Instant::now());
        let nodes = self
            .engine
            .registry()
            .iter()
            .map(|n| {
                let (lat, lon) = n.cell.center();
                NodeView {
                    peer_id: n.id.to_string(),
                    owner: n.owner.clone(),
                    cell: n.cell.to_string(),
                    lat,
                    lon,
                    last_heartbeat_ms: n.heartbeats.latest().map(|h| h.sent_ms),
                    location_trust_bps: n.location_trust_bps,
                    down_bps: n.capacity.down_bps,
                    up_bps: n.capacity.up_bps,
                    penalized_through: n.penalized_through,
                    marks: n
                        .marks
                        .iter()
                        .map(|m| MarkView {
                            epoch: m.epoch,
                            reason: m.reason.name(),
                        })
                        .collect(),
                }
            })
            .collect();
        let snap = Snapshot {
            oracle: self.engine.key().id().to_string(),
            epoch: self.engine.open_epochs().map(|(e, _)| *e).max(),
            open_epochs: self
                .engine
                .open_epochs()
                .map(|(e, s)| (*e, s.len()))
                .collect(),
            nodes,
            proofs_stored: match self.proofs_stored {
                Some(n) => n,
                None => {
                    self.proofs_stored = self.store.proof_count().ok();
                    self.proofs_stored.unwrap_or(0)
                }
            },
        };
        self.shared
            .metrics
            .nodes
            .set(i64::try_from(snap.nodes.len()).unwrap_or(i64::MAX));
        if let Ok(mut s) = self.shared.snapshot.write() {
            *s = snap;
        }
    }
}

/// The verdict as a metrics label.
pub fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accepted => "accepted",
        Verdict::Rejected(r) => r.name(),
    }
}
