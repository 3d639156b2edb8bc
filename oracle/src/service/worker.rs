//! The ingest worker: an async task that owns the [`Engine`] and the writable [`Store`]
//! ([`Books`]). It waits on four things at once — the next prechecked batch (or connection),
//! the next epoch deadline, the next signed-clock publish and the next snapshot — and does
//! each in turn: the blocking work (judging and committing a batch, opening and closing
//! epochs, reading the store) in `spawn_blocking`, the MQTT calls as plain `.await`s.
//!
//! The books move to the blocking pool for each step and come back with its result. The
//! worker awaits each step before it takes the next, so batches commit in arrival order,
//! their acks reach the acker in commit order, and the store (whose PostgreSQL client blocks
//! on a runtime of its own) is only ever used off the runtime, by one thread at a time —
//! without a second thread and queue to keep in step with this task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{EpochSeed, MeasurerSet, OracleClock};
use wisp_protocol::{NodeKey, topics};

use super::clock::Clock;
use super::stages::{AckBatch, Stage, publish, stopped};
use super::{close_epoch, commit_batch, is_guarded};
use crate::calendar::EpochCalendar;
use crate::engine::{Checked, Engine};
use crate::metrics::ReasonLabel;
use crate::settings::Settings;
use crate::state::{MarkView, NodeView, Shared, Snapshot};
use crate::store::Store;
use crate::store::crash::{self, crash_point};

/// How often the API's snapshot of the engine is refreshed.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// How soon the epochs are checked again when they are still due right after a check (the
/// calendar and the engine did not agree on what to do): as often as the poll loop this task
/// replaced checked them, rather than a busy loop.
const STILL_DUE_RETRY: Duration = Duration::from_millis(100);

/// A publish decided by a blocking step, sent once the step's writes are stored.
pub(super) struct Publish {
    topic: String,
    retain: bool,
    payload: Vec<u8>,
}

impl Publish {
    fn retained(topic: String, payload: Vec<u8>) -> Self {
        Self {
            topic,
            retain: true,
            payload,
        }
    }
}

/// What the blocking steps work on: the engine, the writable store and what is kept in step
/// with them.
pub(super) struct Books {
    pub(super) engine: Engine,
    pub(super) store: Store,
    /// The epoch policy: genesis, the current epoch, each epoch's emission (read once from
    /// the store and kept current, so the epoch check costs no query).
    pub(super) calendar: EpochCalendar,
    pub(super) settings: Settings,
    pub(super) shared: Arc<Shared>,
    /// Rows in the proofs table: counted once (at the first snapshot), then kept by the
    /// batches committed (the snapshot refreshes each second and must not count a growing
    /// table each time).
    pub(super) proofs_stored: Option<u64>,
    /// How many `measurer_set` parts this process last published (retained).
    pub(super) measurer_parts_published: usize,
}

pub(super) struct Worker {
    /// `None` only while a blocking step has them.
    books: Option<Books>,
    key: NodeKey,
    client: AsyncClient,
    shared: Arc<Shared>,
    clock: Clock,
    clock_interval_ms: u32,
    rx: mpsc::Receiver<Stage>,
    /// To the acker: each committed batch's verdicts.
    acker: mpsc::Sender<AckBatch>,
    /// When the epoch check next has work ([`EpochCalendar::poll_timeout`]), and the time it
    /// was computed at (a clock that went back checks again at once).
    epochs_due: (u64, u64),
    /// When the signed clock is published next (oracle ms).
    next_clock_ms: u64,
    last_snapshot: Option<Instant>,
}

impl Worker {
    pub(super) fn new(
        books: Books,
        client: AsyncClient,
        clock: Clock,
        rx: mpsc::Receiver<Stage>,
        acker: mpsc::Sender<AckBatch>,
    ) -> Self {
        Self {
            key: books.engine.key().clone(),
            shared: books.shared.clone(),
            clock_interval_ms: books.settings.clock_interval_ms,
            books: Some(books),
            client,
            clock,
            rx,
            acker,
            epochs_due: (0, 0),
            next_clock_ms: 0,
            last_snapshot: None,
        }
    }

    /// Runs until `stop` is set or the precheck stage is gone; a batch being committed then is
    /// finished first. Dropping the worker drops its ack sender: the acker sends what it holds
    /// and stops.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            // The oracle clock is read again at every wake: it is not tokio's clock (the wall
            // clock can be stepped, a test's file clock moves when written).
            let now = self.clock.now_ms();
            let (due, computed_at) = self.epochs_due;
            if now >= due || now < computed_at {
                self.epochs(now).await?;
            }
            if now >= self.next_clock_ms {
                self.publish_clock(now).await;
            }
            if self
                .last_snapshot
                .is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY)
            {
                self.refresh_snapshot().await?;
            }
            let snapshot_at = self
                .last_snapshot
                .map_or_else(Instant::now, |t| t + SNAPSHOT_EVERY);
            let epochs_in = if self.epochs_due.0 > now {
                Duration::from_millis(self.epochs_due.0 - now)
            } else {
                STILL_DUE_RETRY
            };
            let clock_in = Duration::from_millis(self.next_clock_ms.saturating_sub(now));
            // A deadline on the oracle clock, waited for on tokio's: re-read the oracle clock
            // at least every `recheck`, so a step of it is seen in time.
            let recheck = self.clock.recheck();
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return Ok(()),
                stage = self.rx.recv() => match stage {
                    Some(Stage::Connected) => self.on_connected().await?,
                    Some(Stage::Batch(batch)) => self.ingest(batch).await?,
                    None => return Ok(()),
                },
                () = tokio::time::sleep(epochs_in.min(recheck)) => {}
                () = tokio::time::sleep(clock_in.min(recheck)) => {}
                () = tokio::time::sleep_until(snapshot_at) => {}
            }
        }
    }

    /// Runs `f` on the books in `spawn_blocking` and takes them back.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Books) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let mut books = self
            .books
            .take()
            .context("the ingest worker lost its state in an earlier step")?;
        let (books, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut books);
            (books, out)
        })
        .await
        .map_err(|e| anyhow!("the ingest worker failed: {e}"))?;
        self.books = Some(books);
        Ok(out)
    }

    /// Publishes in order, remembering what the oracle keeps retained on its guarded topics.
    async fn publish_all(&mut self, publishes: Vec<Publish>) {
        for p in publishes {
            self.publish(p).await;
        }
    }

    async fn publish(&mut self, p: Publish) {
        if p.retain
            && is_guarded(&p.topic)
            && let Ok(mut r) = self.shared.retained.lock()
        {
            r.insert(p.topic.clone(), p.payload.clone());
        }
        publish(&self.client, p.topic, p.retain, p.payload).await;
    }

    /// Publishes the signed clock, retained (a new subscriber learns that the oracle publishes
    /// one, and sets its time by the next, live one).
    async fn publish_clock(&mut self, now: u64) {
        let interval = self.clock_interval_ms;
        let msg = OracleClock {
            now_ms: now,
            interval_ms: interval,
        };
        let bytes = Envelope::sign(&self.key, &msg).to_bytes();
        self.publish(Publish::retained(topics::CLOCK.into(), bytes))
            .await;
        self.next_clock_ms = now + u64::from(interval);
    }

    async fn on_connected(&mut self) -> anyhow::Result<()> {
        info!("connected to the broker");
        // The clock at once: agents waiting for it need not wait a whole interval.
        self.next_clock_ms = 0;
        self.client
            .subscribe(topics::PROOFS_FILTER, QoS::AtLeastOnce)
            .await?;
        // The oracle's own retained topics, to put right what anyone else publishes there.
        for filter in [topics::EPOCH, topics::CLOCK, topics::MEASURERS_FILTER] {
            self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        }
        let publishes = self.blocking(Books::republish).await??;
        self.publish_all(publishes).await;
        Ok(())
    }

    async fn ingest(&mut self, batch: Vec<Checked>) -> anyhow::Result<()> {
        let acks = self.blocking(move |b| b.ingest(batch)).await??;
        // Durable now: the acker signs and sends the acks while this task takes in the next
        // batch.
        if self.acker.send(acks).await.is_err() {
            bail!("the ack task stopped");
        }
        Ok(())
    }

    /// Opens the current epoch (if not yet) and closes settled ones, as the calendar decides;
    /// each step's writes are stored before anything of it is published.
    async fn epochs(&mut self, now: u64) -> anyhow::Result<()> {
        let (publishes, closable) = self.blocking(move |b| b.open_due(now)).await??;
        self.publish_all(publishes).await;
        for epoch in closable {
            let publishes = self.blocking(move |b| b.close(epoch, now)).await??;
            self.publish_all(publishes).await;
        }
        let b = self
            .books
            .as_ref()
            .context("the ingest worker lost its state")?;
        self.epochs_due = (b.calendar.poll_timeout(now, b.engine.next_close_at()), now);
        Ok(())
    }

    async fn refresh_snapshot(&mut self) -> anyhow::Result<()> {
        self.last_snapshot = Some(Instant::now());
        self.blocking(Books::refresh_snapshot).await
    }
}

impl Books {
    /// The retained seed, measurer set and latest manifest, again after a (re)connection:
    /// harmless if the broker kept them, necessary if it did not (an embedded broker starts
    /// empty).
    fn republish(&mut self) -> anyhow::Result<Vec<Publish>> {
        let mut out = Vec::new();
        let epochs = self.store.epochs()?;
        if let Some(current) = epochs.iter().rev().find(|e| e.closed_ms.is_none()) {
            out.push(Publish::retained(
                topics::EPOCH.into(),
                current.seed.clone(),
            ));
            self.measurer_set(current.epoch, &mut out);
        }
        if let Some(closed) = epochs.iter().rev().find(|e| e.closed_ms.is_some()) {
            for page in self.store.manifests(closed.epoch)? {
                out.push(Publish::retained(topics::rewards(closed.epoch), page));
            }
        }
        Ok(out)
    }

    /// Judges a batch, commits it and counts it; returns its acks, which may be sent now.
    fn ingest(&mut self, batch: Vec<Checked>) -> anyhow::Result<AckBatch> {
        let started = std::time::Instant::now();
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
        Ok(out.acks)
    }

    /// Stores the genesis and opens the current epoch if the calendar says so (a new signed
    /// seed, stored); returns what to publish (the seed, then the measurer set) and the
    /// epochs settled at `now`, to close next.
    fn open_due(&mut self, now: u64) -> anyhow::Result<(Vec<Publish>, Vec<u64>)> {
        let mut out = Vec::new();
        let due = self.calendar.poll(now);
        if let Some(genesis) = due.genesis {
            self.store.set_meta("genesis_ms", genesis)?;
            self.calendar.handle_genesis_stored(genesis);
        }
        if let Some(opening) = due.open {
            let current = opening.epoch;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow!("OS random: {e}"))?;
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
            out.push(Publish::retained(topics::EPOCH.into(), bytes));
            self.measurer_set(current, &mut out);
            self.shared
                .metrics
                .epoch
                .set(i64::try_from(current).unwrap_or(i64::MAX));
            info!(epoch = current, "epoch opened");
        }
        Ok((out, self.engine.closable(now)))
    }

    /// An open epoch's measurer pool as signed `measurer_set` parts, retained, and empty
    /// retained messages (which delete the broker's) for parts beyond its count left by a
    /// larger earlier set.
    fn measurer_set(&mut self, epoch: u64, out: &mut Vec<Publish>) {
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
        for (part, p) in parts.iter().enumerate() {
            let bytes = Envelope::sign(self.engine.key(), p).to_bytes();
            out.push(Publish::retained(topics::measurers(part), bytes));
        }
        for part in count..self.measurer_parts_published {
            out.push(Publish::retained(topics::measurers(part), Vec::new()));
        }
        self.measurer_parts_published = count;
        info!(
            epoch,
            nodes = pool.eligible().len(),
            parts = count,
            "measurer set published"
        );
    }

    /// Closes a settled epoch (one transaction); returns its manifest pages to publish if this
    /// call committed it.
    fn close(&mut self, epoch: u64, now: u64) -> anyhow::Result<Vec<Publish>> {
        let emission = self.calendar.emission(epoch);
        let Some((closed, committed)) =
            close_epoch(&mut self.engine, &mut self.store, epoch, now, emission)?
        else {
            return Ok(Vec::new());
        };
        if !committed {
            return Ok(Vec::new());
        }
        crash_point!(crash::CLOSE_AFTER_COMMIT);
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
        Ok(closed
            .manifests
            .into_iter()
            .map(|page| Publish::retained(topics::rewards(epoch), page))
            .collect())
    }

    /// The API's view of the engine.
    fn refresh_snapshot(&mut self) {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Mutex, RwLock};

    use rumqttc::MqttOptions;
    use wisp_shell::broker_health::BrokerHealth;

    use super::*;
    use crate::metrics::Metrics;
    use crate::settings::RawSettings;
    use crate::store::StorageConfig;

    const EPOCH_MS: u64 = 10_000;
    const SETTLE_MS: u32 = 1_000;
    /// The genesis: the first start's clock, a whole number of epochs.
    const T0: u64 = 1_800_000_000_000;

    fn set_clock(file: &Path, t: u64) {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, t.to_string()).unwrap();
        std::fs::rename(&tmp, file).unwrap();
    }

    /// A worker on a fresh SQLite store and the file clock `dir/clock`, with a client whose
    /// publishes only queue (what it publishes retained shows in `Shared::retained`).
    fn worker(dir: &Path) -> (Worker, Arc<Shared>, rumqttc::EventLoop, mpsc::Sender<Stage>) {
        let mut settings = RawSettings::load(None, Vec::<(String, String)>::new())
            .unwrap()
            .resolve()
            .unwrap();
        settings.storage = StorageConfig::Sqlite(dir.join("oracle.db"));
        settings.epoch_ms = EPOCH_MS;
        settings.params.settle_ms = SETTLE_MS;
        let mut store = Store::open(&settings.storage).unwrap();
        let key = NodeKey::from_seed(&[7; 32]);
        let engine = super::super::rebuild(&mut store, key, &settings.rules).unwrap();
        let calendar = super::super::load_calendar(&mut store, &settings).unwrap();
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Snapshot::default()),
            reader: Mutex::new(Store::open(&settings.storage).unwrap()),
            metrics: Metrics::new(),
            connected: AtomicBool::new(false),
            broker: Mutex::new(BrokerHealth::new("mqtt://test", 30_000)),
            retained: Mutex::new(HashMap::new()),
        });
        let (client, eventloop) =
            AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), 10_000);
        let (stage_tx, stage_rx) = mpsc::channel(2);
        let (ack_tx, _) = mpsc::channel(4);
        let books = Books {
            engine,
            store,
            calendar,
            settings,
            shared: shared.clone(),
            proofs_stored: None,
            measurer_parts_published: 0,
        };
        let clock = Clock::File(dir.join("clock"));
        let w = Worker::new(books, client, clock, stage_rx, ack_tx);
        (w, shared, eventloop, stage_tx)
    }

    fn retained(shared: &Shared, topic: &str) -> Option<Vec<u8>> {
        shared.retained.lock().unwrap().get(topic).cloned()
    }

    #[tokio::test(start_paused = true)]
    async fn epochs_open_and_close_as_the_oracle_clock_reaches_them() {
        let dir = tempfile::tempdir().unwrap();
        let clock = dir.path().join("clock");
        set_clock(&clock, T0);
        let (w, shared, _eventloop, _stages) = worker(dir.path());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(w.run(stop_rx));
        let epoch = || shared.metrics.epoch.get();
        let closed = || shared.metrics.epochs_closed.get();

        // The first epoch opens at once, its seed and the signed clock published.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(epoch(), 0);
        assert!(retained(&shared, topics::EPOCH).is_some());
        let first_clock = retained(&shared, topics::CLOCK).unwrap();

        // The file clock stands still while tokio's time passes: nothing new is due.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!((epoch(), closed()), (0, 0));
        assert_eq!(retained(&shared, topics::CLOCK).unwrap(), first_clock);

        // The next epoch opens within the file clock's recheck of its start.
        set_clock(&clock, T0 + EPOCH_MS);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!((epoch(), closed()), (1, 0));
        // The signed clock too is published again, on the oracle clock.
        assert_ne!(retained(&shared, topics::CLOCK).unwrap(), first_clock);

        // The first epoch closes once its settle window has passed, not before.
        set_clock(&clock, T0 + EPOCH_MS + u64::from(SETTLE_MS) - 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(closed(), 0);
        set_clock(&clock, T0 + EPOCH_MS + u64::from(SETTLE_MS));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(closed(), 1);

        // A clock that went back and came forward again still opens the next epoch.
        set_clock(&clock, T0 + 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!((epoch(), closed()), (1, 1));
        set_clock(&clock, T0 + 2 * EPOCH_MS);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(epoch(), 2);

        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
