//! The ingest worker: an async task that owns the [`Engine`] (in [`Books`]) and the writable
//! [`Store`]. It waits on five things at once — the next prechecked batch (or connection),
//! the next operator's credit grant (from the API), the next epoch deadline, the next
//! signed-clock publish and the next snapshot — and does
//! each in turn: the CPU-bound work (judging a batch, closing an epoch, the snapshot) in
//! `spawn_blocking`, the store's calls and the MQTT calls as plain `.await`s.
//!
//! The books move to the blocking pool for each CPU-bound step and come back with its result.
//! The worker awaits each step before it takes the next, so batches commit in arrival order,
//! their acks reach the acker in commit order, and the store has one user — without a second
//! task and queue to keep in step with this one.

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
use super::{close_epoch, commit_batch, is_guarded, off_runtime};
use crate::calendar::{EpochCalendar, Opening};
use crate::engine::{Checked, Closed, Engine, Ingested};
use crate::metrics::ReasonLabel;
use crate::settings::Settings;
use crate::state::{GrantRequest, Shared, Snapshot};
use crate::store::Store;
use crate::store::crash::{self, crash_point};

/// How often the API's snapshot of the engine is refreshed, at most.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// The snapshot is a view of every node, built while the worker judges nothing: at least this
/// many times as long as the last one took passes before the next, so it takes at most a
/// twentieth of the worker's time however large the registry (2,000 nodes take milliseconds;
/// a million would take seconds, docs/SCALE.md §7).
const SNAPSHOT_COST_FACTOR: u32 = 20;

/// How long after a snapshot that took `took` the next is due.
fn snapshot_every(took: Duration) -> Duration {
    SNAPSHOT_EVERY.max(took.saturating_mul(SNAPSHOT_COST_FACTOR))
}

/// How soon the epochs are checked again when they are still due right after a check (the
/// calendar and the engine did not agree on what to do): as often as the poll loop this task
/// replaced checked them, rather than a busy loop.
const STILL_DUE_RETRY: Duration = Duration::from_millis(100);

/// Why a step finds no books: an earlier step that had them failed.
const LOST: &str = "the ingest worker lost its state in an earlier step";

/// A publish decided by a step, sent once the step's writes are stored.
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

/// What the CPU-bound steps work on: the engine and what is kept in step with it.
pub(super) struct Books {
    pub(super) engine: Engine,
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
    /// `None` only while a step has them.
    books: Option<Books>,
    /// The writable store: only this task writes.
    store: Store,
    key: NodeKey,
    client: AsyncClient,
    shared: Arc<Shared>,
    clock: Clock,
    clock_interval_ms: u32,
    /// The proofs' topic filter: shared by the processes of a cluster (the broker hands each
    /// proof to one of them; standbys subscribe in `service/intake.rs`).
    proofs_filter: String,
    rx: mpsc::Receiver<Stage>,
    /// The operator's credit grants, from the API.
    grants: mpsc::Receiver<GrantRequest>,
    /// To the acker: each committed batch's verdicts.
    acker: mpsc::Sender<AckBatch>,
    /// When the epoch check next has work ([`EpochCalendar::poll_timeout`]), and the time it
    /// was computed at (a clock that went back checks again at once).
    epochs_due: (u64, u64),
    /// When the signed clock is published next (oracle ms).
    next_clock_ms: u64,
    last_snapshot: Option<Instant>,
    /// The time between snapshots ([`snapshot_every`] of the last one's cost).
    snapshot_every: Duration,
}

impl Worker {
    pub(super) fn new(
        books: Books,
        store: Store,
        client: AsyncClient,
        clock: Clock,
        rx: mpsc::Receiver<Stage>,
        grants: mpsc::Receiver<GrantRequest>,
        acker: mpsc::Sender<AckBatch>,
    ) -> Self {
        Self {
            key: books.engine.key().clone(),
            shared: books.shared.clone(),
            clock_interval_ms: books.settings.clock_interval_ms,
            proofs_filter: match &books.settings.cluster {
                Some(c) => c.proofs_filter(),
                None => topics::PROOFS_FILTER.into(),
            },
            books: Some(books),
            store,
            client,
            clock,
            rx,
            grants,
            acker,
            epochs_due: (0, 0),
            next_clock_ms: 0,
            last_snapshot: None,
            snapshot_every: SNAPSHOT_EVERY,
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
                .is_none_or(|t| t.elapsed() >= self.snapshot_every)
            {
                self.refresh_snapshot().await?;
            }
            let snapshot_at = self
                .last_snapshot
                .map_or_else(Instant::now, |t| t + self.snapshot_every);
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
                Some(request) = self.grants.recv() => self.grant(request).await?,
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
        let books = self.books.take().context(LOST)?;
        let (books, out) = off_runtime(books, f)
            .await
            .map_err(|e| anyhow!("the ingest worker failed: {e}"))?;
        self.books = Some(books);
        Ok(out)
    }

    /// The books, between steps.
    fn books(&self) -> anyhow::Result<&Books> {
        self.books.as_ref().context(LOST)
    }

    fn books_mut(&mut self) -> anyhow::Result<&mut Books> {
        self.books.as_mut().context(LOST)
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
        // A cluster process that is stopping has left the share group: it stays out.
        if !self
            .shared
            .leaving
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.client
                .subscribe(self.proofs_filter.clone(), QoS::AtLeastOnce)
                .await?;
        }
        // The oracle's own retained topics, to put right what anyone else publishes there.
        for filter in [topics::EPOCH, topics::CLOCK, topics::MEASURERS_FILTER] {
            self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        }
        let publishes = self.republish().await?;
        self.publish_all(publishes).await;
        Ok(())
    }

    /// The retained seed, measurer set and latest manifest, again after a (re)connection:
    /// harmless if the broker kept them, necessary if it did not (an embedded broker starts
    /// empty).
    async fn republish(&mut self) -> anyhow::Result<Vec<Publish>> {
        let mut out = Vec::new();
        let epochs = self.store.epochs().await?;
        if let Some(current) = epochs.iter().rev().find(|e| e.closed_ms.is_none()) {
            out.push(Publish::retained(
                topics::EPOCH.into(),
                current.seed.clone(),
            ));
            let epoch = current.epoch;
            out.extend(self.blocking(move |b| b.measurer_set(epoch)).await?);
        }
        if let Some(closed) = epochs.iter().rev().find(|e| e.closed_ms.is_some()) {
            for page in self.store.manifests(closed.epoch).await? {
                out.push(Publish::retained(topics::rewards(closed.epoch), page));
            }
        }
        Ok(out)
    }

    /// Judges a batch, commits it and counts it, then hands its acks to the acker.
    async fn ingest(&mut self, batch: Vec<Checked>) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut books = self.books.take().context(LOST)?;
        let (engine, out) = commit_batch(books.engine, &mut self.store, batch).await?;
        books.engine = engine;
        books.count_batch(&out, started.elapsed());
        self.books = Some(books);
        // Durable now: the acker signs and sends the acks while this task takes in the next
        // batch.
        if self.acker.send(out.acks).await.is_err() {
            bail!("the ack task stopped");
        }
        Ok(())
    }

    /// Judges an operator's credit grant or a carrier's usage report and stores its row,
    /// between batches (so it takes its place in the arrival order like a proof), then answers
    /// the API and refreshes the snapshot's credits, so the balance it returns is the one
    /// `/v1/subscribers` serves next.
    async fn grant(&mut self, request: GrantRequest) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        let mut books = self.books.take().context(LOST)?;
        let (engine, answer, stored) =
            super::credits::submit(books.engine, &mut self.store, request.envelope, now).await?;
        books.engine = engine;
        if stored && let Some(n) = &mut books.proofs_stored {
            *n += 1;
        }
        self.books = Some(books);
        // The API may have given up waiting; the grant is stored all the same.
        let _ = request.reply.send(answer);
        if stored {
            self.refresh_credits().await?;
        }
        Ok(())
    }

    /// Stores the genesis and opens the current epoch if the calendar says so (a new signed
    /// seed, stored, then published with the measurer set), then closes the epochs settled at
    /// `now`; each step's writes are stored before anything of it is published.
    async fn epochs(&mut self, now: u64) -> anyhow::Result<()> {
        let due = self.books()?.calendar.poll(now);
        if let Some(genesis) = due.genesis {
            self.store.set_meta("genesis_ms", genesis).await?;
            self.books_mut()?.calendar.handle_genesis_stored(genesis);
        }
        if let Some(opening) = due.open {
            let books = self.books()?;
            let seed = books.seed(&opening)?;
            let bytes = Envelope::sign(books.engine.key(), &seed).to_bytes();
            let next_seq = books.engine.next_seq();
            self.store
                .insert_epoch(opening.epoch, &bytes, opening.emission, next_seq)
                .await?;
            let publishes = self
                .blocking(move |b| b.opened(&opening, seed, bytes))
                .await?;
            self.publish_all(publishes).await;
        }
        let closable = self.books()?.engine.closable(now);
        for epoch in closable {
            let publishes = self.close(epoch, now).await?;
            self.publish_all(publishes).await;
        }
        let b = self.books()?;
        self.epochs_due = (b.calendar.poll_timeout(now, b.engine.next_close_at()), now);
        Ok(())
    }

    /// Closes a settled epoch (one transaction); returns its manifest pages to publish if this
    /// call committed it.
    async fn close(&mut self, epoch: u64, now: u64) -> anyhow::Result<Vec<Publish>> {
        let mut books = self.books.take().context(LOST)?;
        let emission = books.calendar.emission(epoch);
        let (engine, closed) =
            close_epoch(books.engine, &mut self.store, epoch, now, emission).await?;
        books.engine = engine;
        let publishes = match closed {
            Some((closed, true)) => {
                crash_point!(crash::CLOSE_AFTER_COMMIT);
                books.closed(epoch, closed)
            }
            _ => Vec::new(),
        };
        self.books = Some(books);
        Ok(publishes)
    }

    async fn refresh_snapshot(&mut self) -> anyhow::Result<()> {
        self.last_snapshot = Some(Instant::now());
        if self.books()?.proofs_stored.is_none() {
            // Counted once; if the count fails, it is tried again at the next snapshot.
            self.books_mut()?.proofs_stored = self.store.proof_count().await.ok();
        }
        let started = std::time::Instant::now();
        self.blocking(Books::refresh_snapshot).await?;
        self.snapshot_every = snapshot_every(started.elapsed());
        Ok(())
    }

    /// The snapshot's credits alone (a grant changes nothing else of it): a copy of the
    /// ledger, not a view of every node.
    async fn refresh_credits(&mut self) -> anyhow::Result<()> {
        self.blocking(Books::refresh_credits).await
    }
}

impl Books {
    /// Counts a committed batch in the metrics and the stored rows.
    fn count_batch(&mut self, out: &Ingested, took: Duration) {
        if let Some(n) = &mut self.proofs_stored {
            *n += out.rows.len() as u64;
        }
        let m = &self.shared.metrics;
        m.batch_seconds.observe(took.as_secs_f64());
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
    }

    /// A new epoch's seed, with fresh randomness from the OS.
    fn seed(&self, opening: &Opening) -> anyhow::Result<EpochSeed> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow!("OS random: {e}"))?;
        Ok(EpochSeed {
            epoch: opening.epoch,
            start_ms: opening.start_ms,
            duration_ms: opening.duration_ms,
            seed: seed.into(),
            params: self.settings.params,
        })
    }

    /// Opens an epoch whose signed seed is stored; returns what to publish: the seed, then the
    /// measurer set.
    fn opened(&mut self, opening: &Opening, seed: EpochSeed, signed: Vec<u8>) -> Vec<Publish> {
        let current = opening.epoch;
        self.calendar.handle_opened(opening);
        self.engine.open_epoch(seed);
        let mut out = vec![Publish::retained(topics::EPOCH.into(), signed)];
        out.extend(self.measurer_set(current));
        self.shared
            .metrics
            .epoch
            .set(i64::try_from(current).unwrap_or(i64::MAX));
        info!(epoch = current, "epoch opened");
        out
    }

    /// An open epoch's measurer pool as signed `measurer_set` parts, retained, and empty
    /// retained messages (which delete the broker's) for parts beyond its count left by a
    /// larger earlier set.
    fn measurer_set(&mut self, epoch: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        let Some(pool) = self.engine.measurer_pool(epoch) else {
            return out;
        };
        let Some(parts) = MeasurerSet::split(epoch, pool.eligible()) else {
            error!(
                epoch,
                nodes = pool.eligible().len(),
                "the measurer set exceeds the protocol's 1024 parts; not published"
            );
            return out;
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
        out
    }

    /// Counts and logs an epoch this process closed; returns its manifest pages to publish.
    fn closed(&mut self, epoch: u64, closed: Closed) -> Vec<Publish> {
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
        closed
            .manifests
            .into_iter()
            .map(|page| Publish::retained(topics::rewards(epoch), page))
            .collect()
    }

    /// The API's view of the engine.
    fn refresh_snapshot(&mut self) {
        let snap = Snapshot::of(&self.engine, self.proofs_stored.unwrap_or(0));
        self.shared.publish(snap);
    }

    /// The API's view of the subscribers' credits.
    fn refresh_credits(&mut self) {
        self.shared
            .publish_credits(Snapshot::credits_of(&self.engine));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rumqttc::MqttOptions;

    use super::*;
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
    async fn worker(dir: &Path) -> (Worker, Arc<Shared>, rumqttc::EventLoop, mpsc::Sender<Stage>) {
        let mut settings = RawSettings::load(None, Vec::<(String, String)>::new())
            .unwrap()
            .resolve()
            .unwrap();
        settings.storage = StorageConfig::Sqlite(dir.join("oracle.db"));
        settings.epoch_ms = EPOCH_MS;
        settings.params.settle_ms = SETTLE_MS;
        let mut store = Store::open(&settings.storage).await.unwrap();
        let key = NodeKey::from_seed(&[7; 32]);
        let engine = super::super::rebuild(&mut store, key, &settings.rules)
            .await
            .unwrap();
        let calendar = super::super::load_calendar(&store, &settings)
            .await
            .unwrap();
        let (shared, grant_rx) = Shared::for_tests(
            Store::open(&settings.storage).await.unwrap(),
            crate::state::Role::Alone,
        );
        let shared = Arc::new(shared);
        let (client, eventloop) =
            AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), 10_000);
        let (stage_tx, stage_rx) = mpsc::channel(2);
        let (ack_tx, _) = mpsc::channel(4);
        let books = Books {
            engine,
            calendar,
            settings,
            shared: shared.clone(),
            proofs_stored: None,
            measurer_parts_published: 0,
        };
        let clock = Clock::File(dir.join("clock"));
        let w = Worker::new(books, store, client, clock, stage_rx, grant_rx, ack_tx);
        (w, shared, eventloop, stage_tx)
    }

    fn retained(shared: &Shared, topic: &str) -> Option<Vec<u8>> {
        shared.retained.lock().unwrap().get(topic).cloned()
    }

    #[test]
    fn a_costly_snapshot_is_taken_less_often() {
        assert_eq!(snapshot_every(Duration::ZERO), SNAPSHOT_EVERY);
        assert_eq!(snapshot_every(Duration::from_millis(5)), SNAPSHOT_EVERY);
        assert_eq!(snapshot_every(Duration::from_millis(50)), SNAPSHOT_EVERY);
        assert_eq!(
            snapshot_every(Duration::from_millis(300)),
            Duration::from_secs(6)
        );
        assert_eq!(
            snapshot_every(Duration::from_secs(3)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn epochs_open_and_close_as_the_oracle_clock_reaches_them() {
        let dir = tempfile::tempdir().unwrap();
        let clock = dir.path().join("clock");
        set_clock(&clock, T0);
        let (w, shared, _eventloop, _stages) = worker(dir.path()).await;
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
