//! The daemon: a tokio shell around the sans-IO [`Core`] and [`Outbox`].
//!
//! One task owns the core and the outbox (which holds the proofs, staged and committed, with
//! their bytes); a second task polls the MQTT event loop and forwards what matters over a
//! bounded channel; SQLite commits run on the blocking pool. The loop, each turn:
//!
//! 1. waits for the earliest deadline (core, outbox with its commit window, status), an MQTT
//!    event or a network event;
//! 2. feeds the core (timeouts, seeds, acks, radio frames, GNSS fixes, gossiped witnesses);
//! 3. stages newly signed proofs in the outbox, and writes the commit it hands out: **every
//!    proof is on disk before any of it is published**; proofs acked with a final verdict are
//!    deleted by the same kind of commit (a transient one, `rate_limited`, leaves the proof to
//!    be resent); the shell logs and counts the evictions and refusals the commit reports;
//! 4. publishes what the outbox says is due (new proofs, resends) while connected;
//! 5. refreshes the status and the metrics.
//!
//! The libp2p swarm runs in its own task ([`crate::net`]). The daemon gossips every witness it
//! signs (besides outboxing it for the oracle) and every new seed it got over MQTT; it records
//! gossiped witnesses of its own beacon in the core; it answers `/wisp/status/1` with a signed
//! report.
//!
//! Proof of backhaul ([`crate::backhaul`] decides, [`crate::bandwidth`] measures): the daemon
//! assembles the epoch's measurer set from MQTT, invites its assigned measurers over
//! `/wisp/bw/1`, answers invitations (queueing tests for a measurer task that runs them one at
//! a time) and measurers' requests (each accepted test runs in a task of its own), and puts
//! every receipt those tasks hand back into the outbox like any other proof. Every test
//! that ends gets one INFO line (peer, role, directions, Mbit/s, RTTs, outcome); the latest
//! one as prover (whichever measurer ran it) is kept for `/status`, the `wisp_backhaul_*`
//! gauges and the signed status report.
//!
//! Layout: `startup` (the key, the data directory's files, everything opened before the
//! loop), this module (the loop: feeding the core, committing, the network's events), `mqtt`
//! (the client's options and task, incoming messages dispatched by topic, publishing),
//! `backhaul` (the bandwidth tasks and `/wisp/bw/1`), `status` (the status snapshot and
//! what is made from it) and [`usage`] (proof of usage's driver, a task of its own with
//! `usage.enabled`: the daemon hands it the epoch and stages the receipts it co-signs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use wisp_protocol::{Kind, NodeKey, topics};
use wisp_shell::broker_health::BrokerHealth;

use crate::clock::ClockSync;
use crate::config::Config;
use crate::core::{Core, Event, Ignored, Proof};
use crate::device::{DeviceError, DeviceIo};
use crate::metrics::{KindLabel, Metrics, WhyLabel};
use crate::net::{NetEvent, NetHandle, Topic};
use crate::outbox::{Commit, Full, Outbox};
use crate::status::{BackhaulStatus, Shared};
use crate::store::{Row, Store};
use crate::wallclock::{system_ms, wall_ms};

mod backhaul;
mod mqtt;
mod startup;
mod status;
#[cfg(test)]
mod tests;
pub mod usage;

use backhaul::{BwDone, BwIo};
use mqtt::offline_status;
pub use mqtt::{broker_url, mqtt_options};
pub use startup::{http_addr_path, load_key, p2p_addr_path, store_path};

const SEED_BLOB: &str = "epoch_seed";
/// The interval of the oracle's clock, once seen (u32 LE): a restart holds signing until the
/// next live one.
const CLOCK_BLOB: &str = "oracle_clock_interval";
/// Meta key: when the last heartbeat was signed (Unix ms), committed with the batch carrying it.
const HEARTBEAT_MS: &str = "heartbeat_ms";
/// Store meta key: when this node last beaconed, Unix ms (0: never).
const BEACON_MS: &str = "beacon_ms";
const MEASURER_SET_BLOB: &str = "measurer_set";

/// The daemon's state.
struct Daemon {
    cfg: Config,
    key: NodeKey,
    core: Core,
    outbox: Outbox,
    store: Arc<Mutex<Store>>,
    client: AsyncClient,
    connected: bool,
    /// What operators are told about the broker (WARN lines, `/readyz`).
    broker: BrokerHealth,
    device: Box<dyn DeviceIo>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    next_status_ms: u64,
    net: Option<NetHandle>,
    p2p_listen: Vec<String>,
    p2p_peers: usize,
    /// Proof of backhaul, when the network runs and `bandwidth.enabled`.
    bw: Option<BwIo>,
    /// What the bandwidth tasks hand back (kept here so the channel never closes).
    receipts_tx: mpsc::Sender<BwDone>,
    /// The latest bandwidth test of this node as prover, since the start.
    last_backhaul: Option<BackhaulStatus>,
    /// The bandwidth tasks (measurer queue, invitations, prover runs); aborted on drop.
    bw_tasks: tokio::task::JoinSet<()>,
    /// The oracle's time.
    clock: ClockSync,
    /// The epoch, for the usage driver (with `usage.enabled`).
    usage_epoch: Option<tokio::sync::watch::Sender<Option<u64>>>,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    device: Box<dyn DeviceIo>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(cfg, device, shutdown, Faults::default()).await
}

/// Fault injection for a devnet's cheaters and for tests: what the daemon does against the
/// protocol. Nothing in `wisp-agent`'s command line or configuration sets any of it; the
/// default is none. Only a build with the cargo feature `cheats` can inject a fault: without
/// it, [`run_with`] refuses to start when one is asked for, rather than run honestly while its
/// caller believes it cheats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The measurer signs this many thousandths of every upload it measures
    /// (`Measurer::with_shaved_uploads`, feature `cheats`).
    pub shave_uploads_permille: Option<u32>,
}

impl Faults {
    /// Refuses the faults this build cannot inject.
    fn check(self) -> anyhow::Result<()> {
        self.check_injectable(cfg!(feature = "cheats"))
    }

    /// Refuses any fault unless `injectable` (the build has the `cheats` feature).
    fn check_injectable(self, injectable: bool) -> anyhow::Result<()> {
        match self.shave_uploads_permille {
            Some(k) if !injectable => anyhow::bail!(
                "fault injection asked for (a measurer signing {k} thousandths of every upload), \
                 but this build of wisp-agent cannot inject faults: build it with the cargo \
                 feature `cheats` (wisp-devnet does)"
            ),
            _ => Ok(()),
        }
    }

    /// `m` with the measurer's faults injected.
    fn measurer(self, m: crate::bandwidth::Measurer) -> crate::bandwidth::Measurer {
        #[cfg(feature = "cheats")]
        if let Some(k) = self.shave_uploads_permille {
            tracing::warn!(permille = k, "fault injected: this measurer shaves uploads");
            return m.with_shaved_uploads(k);
        }
        m
    }
}

/// A sleep that ends at `deadline` (Unix ms) as seen at `now`: at once for a deadline already
/// past. The daemon's deadlines are on the wall clock, its sleeps on tokio's.
fn sleep_until(deadline: u64, now: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now)))
}

/// [`run`], with `faults` injected.
pub async fn run_with(
    cfg: Config,
    device: Box<dyn DeviceIo>,
    shutdown: impl std::future::Future<Output = ()>,
    faults: Faults,
) -> anyhow::Result<()> {
    faults.check()?;
    let startup::Started {
        mut d,
        mut rx,
        mqtt_task,
        mut net_events,
        mut receipts_rx,
        mut usage_rx,
    } = startup::start(cfg, device, faults).await?;

    tokio::pin!(shutdown);
    loop {
        let now = wall_ms();
        let sleep = sleep_until(d.next_deadline(now), now);
        tokio::select! {
            () = &mut shutdown => break,
            () = sleep => {}
            msg = rx.recv() => match msg {
                Some(m) => d.on_mqtt(m).await,
                None => anyhow::bail!("the MQTT task stopped"),
            },
            Some(ev) = next_net_event(&mut net_events) => d.on_net(ev).await,
            Some(done) = receipts_rx.recv() => d.on_bw_done(done),
            Some(p) = next_usage_proof(&mut usage_rx) => d.on_usage_proof(p),
        }
        d.turn().await?;
    }

    info!("shutting down: committing the outbox and publishing the offline status");
    d.bw_tasks.shutdown().await;
    while let Ok(done) = receipts_rx.try_recv() {
        d.on_bw_done(done);
    }
    while let Some(p) = usage_rx.as_mut().and_then(|r| r.try_recv().ok()) {
        d.on_usage_proof(p);
    }
    d.collect(wall_ms());
    d.commit(true).await?;
    if d.connected {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            d.client.publish(
                topics::status(&d.key.id()),
                QoS::AtLeastOnce,
                true,
                offline_status(&d.key),
            ),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), d.client.disconnect()).await;
        // Give the event loop a moment to put the offline status and the disconnect on the wire.
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
    }
    info!(pending = d.outbox.len(), "stopped");
    Ok(())
}

impl Daemon {
    fn next_deadline(&self, now: u64) -> u64 {
        // Turn at least once a second: device polling, status, /healthz.
        let mut t = now + 1_000;
        // While the clock holds signing, the core is not driven: its due timers would spin.
        let core = if self.clock.holding(system_ms()) {
            None
        } else {
            self.core.poll_timeout()
        };
        // The outbox's: its commit window, and its sends and resends while connected.
        for c in [
            core,
            self.outbox.poll_timeout(),
            Some(self.next_status_ms),
            self.bw.as_ref().and_then(|b| b.state.invite_at()),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(c);
        }
        t.max(now)
    }

    /// An epoch seed from the broker or from gossip. A new one is saved (so a restart resumes
    /// the epoch) and, when it came from the broker, gossiped to peers that lack a broker.
    async fn on_seed(&mut self, payload: Vec<u8>, from_broker: bool, now: u64) {
        match self.core.handle_seed(&payload, now) {
            Ok(true) => {
                if let Some(seed) = self.core.epoch() {
                    self.device.set_epoch(seed);
                }
                if let (Some(bw), Some(seed)) = (&mut self.bw, self.core.epoch()) {
                    bw.state.on_seed(seed, now, random_u64());
                }
                if let (Some(tx), Some(seed)) = (&self.usage_epoch, self.core.epoch()) {
                    tx.send_replace(Some(seed.epoch));
                }
                if from_broker && let Some(n) = &self.net {
                    let _ = n.try_publish(Topic::Seed, payload.clone());
                }
                if !save_blob(self.store.clone(), SEED_BLOB, payload).await {
                    warn!(
                        "could not save the epoch seed; a restart will wait for the broker's copy"
                    );
                }
            }
            Ok(false) => debug!("ignored an old epoch seed"),
            Err(e) => {
                warn!("refused an epoch seed: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel { why: "seed" })
                    .inc();
            }
        }
    }

    async fn on_net(&mut self, ev: NetEvent) {
        let now = wall_ms();
        match ev {
            NetEvent::Witness {
                bytes, beaconer, ..
            } => {
                if beaconer != self.key.id() {
                    return;
                }
                match self.core.handle_peer_witness(&bytes) {
                    Ok(()) => {
                        self.metrics.own_beacon_witnesses.inc();
                        // Show it at once rather than at the next status refresh.
                        self.refresh_gauges(now);
                    }
                    Err(why) => debug!(?why, "gossiped witness of our beacon not recorded"),
                }
            }
            NetEvent::Seed { bytes } => self.on_seed(bytes, false, now).await,
            NetEvent::StatusRequest { peer, responder } => {
                let body = self.status_response(now);
                match responder.try_respond(body) {
                    Ok(()) => {
                        debug!(%peer, "served a status report");
                        self.metrics.status_queries_served.inc();
                    }
                    Err(e) => warn!(%peer, "status report not sent: {e}"),
                }
            }
            NetEvent::BwRequest {
                peer,
                body,
                responder,
            } => {
                let (answer, why) = self.on_bw_request(peer, &body);
                debug!(%peer, why, "answered a bandwidth-test message");
                self.metrics
                    .bw_requests
                    .get_or_create(&WhyLabel { why })
                    .inc();
                if let Err(e) = responder.try_respond(answer) {
                    debug!(%peer, "bandwidth answer not sent: {e}");
                }
            }
            NetEvent::Peers(n) => {
                self.p2p_peers = n;
                self.core.handle_peers(u16::try_from(n).unwrap_or(u16::MAX));
                self.metrics
                    .p2p_peers
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// A subscriber's receipt the usage driver co-signed: into the outbox like every proof.
    fn on_usage_proof(&mut self, p: Proof) {
        self.metrics
            .proofs_signed
            .get_or_create(&KindLabel {
                kind: p.kind.name(),
            })
            .inc();
        let now = wall_ms();
        self.stage(p, now);
    }

    /// Stages a signed proof in the outbox, for the next commit.
    fn stage(&mut self, proof: Proof, now: u64) {
        let (id, kind) = (proof.id, proof.kind);
        if !self.outbox.stage(proof, now) {
            debug!(proof = %id, %kind, "signed a proof the outbox already holds");
        }
    }

    /// Feeds the core with time and device input and collects its outputs.
    fn collect(&mut self, now: u64) {
        if self.clock.holding(system_ms()) {
            // The oracle publishes a clock and none has come since the start: nothing
            // time-stamped is signed until it does (for at most two intervals).
            while self.device.poll_received().is_some() {
                self.metrics
                    .radio_frames_ignored
                    .get_or_create(&WhyLabel {
                        why: "clock_unsynced",
                    })
                    .inc();
            }
            return;
        }
        while let Some(fix) = self.device.poll_fix() {
            self.core.handle_fix(fix);
        }
        while let Some(f) = self.device.poll_received() {
            let _ = self
                .core
                .handle_radio_frame(&f.payload, f.rssi, f.snr, f.freq_khz, f.rx_ms, now);
        }
        self.core.handle_timeout(now);
        while let Some(frame) = self.core.poll_transmit() {
            match self.device.transmit(&frame) {
                Ok(()) => {
                    self.metrics.beacons_transmitted.inc();
                }
                // A node without a radio has no beacon to send: nothing to warn about.
                Err(e @ DeviceError::NotSupported(_)) => debug!("beacon not transmitted: {e}"),
                Err(e) => warn!("beacon not transmitted: {e}"),
            }
        }
        while let Some(p) = self.core.poll_proof() {
            // Witnesses are also gossiped, so the beaconer and monitors see who heard whom.
            if p.kind == Kind::Witness
                && let Some(n) = &self.net
                && let Err(e) = n.try_publish(Topic::Poc, p.bytes.clone())
            {
                warn!("witness not gossiped: {e}");
            }
            self.metrics
                .proofs_signed
                .get_or_create(&KindLabel {
                    kind: p.kind.name(),
                })
                .inc();
            self.stage(p, now);
        }
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::NewEpoch {
                    epoch,
                    beacon_at_ms,
                } => {
                    info!(epoch, ?beacon_at_ms, "new epoch");
                    self.metrics
                        .epoch
                        .set(i64::try_from(epoch).unwrap_or(i64::MAX));
                }
                Event::ClockSkew { skew_ms } => {
                    warn!(
                        skew_ms,
                        "the local clock disagrees with the oracle's epoch start; check NTP"
                    );
                    self.metrics.clock_skew_warnings.inc();
                }
                Event::Ignored(why) => {
                    debug!(?why, "radio frame not witnessed");
                    self.metrics
                        .radio_frames_ignored
                        .get_or_create(&WhyLabel {
                            why: ignored_name(why),
                        })
                        .inc();
                }
                Event::BeaconMissed { epoch } => info!(
                    epoch,
                    "no beacon this epoch (no location, or started after the slot)"
                ),
                Event::OutputDropped => {
                    error!("the daemon fell behind the core; an output was dropped")
                }
            }
        }
    }

    /// Writes what the outbox hands out (new proofs, deletions, the heartbeat counter) in one
    /// durable transaction, and reports the result back to it.
    async fn commit(&mut self, force: bool) -> anyhow::Result<()> {
        let now = wall_ms();
        let Some(Commit {
            writes,
            deletions,
            evicted,
            refused,
        }) = self.outbox.poll_commit(now, force)
        else {
            return Ok(());
        };
        for (id, kind) in evicted {
            warn!(proof = %id, %kind, "outbox full: evicted");
            self.metrics
                .outbox_evicted
                .get_or_create(&KindLabel { kind: kind.name() })
                .inc();
        }
        for (_, kind) in refused {
            error!(%kind, "{Full}: proof dropped");
            self.metrics.outbox_refused.inc();
        }
        let hb = self.core.heartbeat_seq();
        let hb_ms = self.core.activity().last_heartbeat_ms.unwrap_or(0);
        let beacon_ms = self.core.activity().last_beacon_ms.unwrap_or(0);
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let rows: Vec<(Row, &[u8])> = writes
                .iter()
                .map(|w| {
                    let row = Row {
                        seq: w.seq,
                        id: w.id,
                        kind: w.kind,
                        created_ms: w.created_ms,
                        len: w.bytes.len(),
                    };
                    (row, w.bytes.as_slice())
                })
                .collect();
            store
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))
                .and_then(|mut s| {
                    s.commit(
                        &rows,
                        &deletions,
                        &[
                            ("heartbeat_seq", hb),
                            (HEARTBEAT_MS, hb_ms),
                            (BEACON_MS, beacon_ms),
                        ],
                    )
                    .map_err(anyhow::Error::from)
                })
        })
        .await?;
        if let Err(e) = r {
            // Nothing was written: the outbox stages it all again, deletions too.
            self.outbox.handle_commit_failed(now);
            error!("outbox commit failed, retrying in 1 s: {e:#}");
            return Ok(());
        }
        self.metrics.outbox_commits.inc();
        self.metrics
            .outbox_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        // Committed: now due for sending.
        self.outbox.handle_committed(now);
        Ok(())
    }

    async fn turn(&mut self) -> anyhow::Result<()> {
        let now = wall_ms();
        self.shared.tick();
        self.collect(now);
        // Reap finished bandwidth tasks (a panic in one is logged, not propagated).
        while let Some(done) = self.bw_tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                error!("a bandwidth task panicked: {e}");
            }
        }
        self.send_invites(now);
        self.commit(false).await?;
        self.publish_due(now);
        let acked_recently = self.outbox.is_empty()
            || self
                .core
                .activity()
                .last_ack_ms
                .is_some_and(|t| now.saturating_sub(t) < 3 * self.cfg.outbox.ack_timeout_ms);
        self.device
            .set_health(match (self.connected, acked_recently) {
                (false, _) => crate::device::Health::Offline,
                (true, false) => crate::device::Health::Degraded,
                (true, true) => crate::device::Health::Online,
            });
        if now >= self.next_status_ms {
            self.refresh_status(now).await;
            self.next_status_ms = now + 30_000;
        }
        self.refresh_gauges(now);
        Ok(())
    }
}

async fn next_net_event(
    rx: &mut Option<tokio::sync::mpsc::Receiver<NetEvent>>,
) -> Option<NetEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_usage_proof(rx: &mut Option<mpsc::Receiver<Proof>>) -> Option<Proof> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Saves a named blob (on the blocking pool); whether it was saved.
async fn save_blob(store: Arc<Mutex<Store>>, name: &'static str, bytes: Vec<u8>) -> bool {
    let saved = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
            .set_blob(name, &bytes)?;
        anyhow::Ok(())
    })
    .await;
    matches!(saved, Ok(Ok(())))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Spreads invitations only: without OS randomness every node invites at the epoch start.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn ignored_name(i: Ignored) -> &'static str {
    match i {
        Ignored::Invalid(_) => "invalid",
        Ignored::Own => "own",
        Ignored::WrongEpoch => "wrong_epoch",
        Ignored::BadNonce => "bad_nonce",
        Ignored::WrongSlot => "wrong_slot",
        Ignored::BadRxTime => "bad_rx_time",
        Ignored::Duplicate => "duplicate",
        Ignored::Budget => "budget",
        Ignored::NoLocation => "no_location",
        Ignored::NoBeacon => "no_beacon",
    }
}
