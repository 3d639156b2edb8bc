//! MQTT: the client's options, the event-loop task and its bounded channel, what comes in
//! (dispatched on the parsed [`Topic`]) and the proofs going out.

use std::time::Duration;

use rumqttc::{Event as MqttEvent, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use wisp_protocol::msg::Verdict;
use wisp_protocol::topics::{self, Topic};
use wisp_protocol::{Kind, NodeId, NodeKey};

use super::{CLOCK_BLOB, Daemon, save_blob};
use crate::config::MqttConfig;
use crate::metrics::{ReasonLabel, WhyLabel};
use crate::wallclock::{self, system_ms, wall_ms};

pub(super) enum Incoming {
    Connected,
    Disconnected(String),
    Publish {
        topic: String,
        payload: Vec<u8>,
        /// The broker's retained copy, delivered on subscribing (not a live message).
        retain: bool,
    },
}

/// MQTT options for this node: persistent session, TLS from the config, and the last will on
/// the status topic when given. The login is the node's own (username = peer id, password =
/// its login token for the network of `oracle`, [`wisp_protocol::login`]) unless the config
/// names other credentials.
pub fn mqtt_options(
    cfg: &MqttConfig,
    key: &NodeKey,
    oracle: &NodeId,
    will: Option<Vec<u8>>,
) -> anyhow::Result<MqttOptions> {
    let id = key.id();
    // A stable client id with a persistent session: the broker keeps our subscriptions and
    // queued acks while we are away.
    let b = &cfg.broker;
    let mut o = MqttOptions::new(format!("wisp-agent-{id}"), b.host.clone(), b.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    o.set_clean_session(false);
    o.set_request_channel_capacity(64);
    o.set_inflight(64);
    // Acks are at most 8 KiB; a seed well under 1 KiB. Proofs are at most 64 KiB.
    // Incoming: a measurer-set part is the largest oracle message (132 KiB and its topic).
    o.set_max_packet_size(Kind::MeasurerSet.max_envelope_len() + 1024, 64 * 1024);
    if let Some(will) = will {
        o.set_last_will(LastWill::new(
            topics::status(&id),
            will,
            QoS::AtLeastOnce,
            true,
        ));
    }
    match &b.login {
        Some((u, p)) => o.set_credentials(u.clone(), p.expose().to_string()),
        None => o.set_credentials(id.to_string(), wisp_protocol::login::password(key, oracle)),
    };
    if let Some(transport) = b.transport().map_err(|e| anyhow::anyhow!("mqtt.{e}"))? {
        o.set_transport(transport);
    }
    Ok(o)
}

/// A connection error as an operator can act on it: a refused login says what to check.
pub(super) fn refusal_hint(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        rumqttc::ConnectionError::ConnectionRefused(
            Code::BadUserNamePassword | Code::NotAuthorized,
        ) => format!(
            "{e}: the broker refused this node's login (without mqtt.username the agent logs in as its node, with a password made for the pinned oracle key: is that key this network's? with mqtt.username: are the credentials right?)"
        ),
        rumqttc::ConnectionError::ConnectionRefused(Code::BadClientId) => format!(
            "{e}: the broker refused the client id wisp-agent-<peer id> (a broker that reserves client ids for logged-in nodes wants this node's own login)"
        ),
        _ => e.to_string(),
    }
}

/// The broker as configured, `mqtt://host:port` or `mqtts://host:port`.
pub fn broker_url(cfg: &MqttConfig) -> String {
    cfg.broker.url()
}

pub(super) fn offline_status(key: &NodeKey) -> Vec<u8> {
    serde_json::json!({ "peer_id": key.id().to_string(), "state": "offline" })
        .to_string()
        .into_bytes()
}

/// Polls the MQTT event loop in a task of its own and forwards what matters over a bounded
/// channel: connections, failed attempts (with [`refusal_hint`]) and publishes. The task
/// reconnects with exponential backoff and jitter ([`Backoff`]), and ends when the daemon
/// disconnects or drops the receiver.
pub(super) fn spawn_event_loop(
    eventloop: EventLoop,
) -> (mpsc::Receiver<Incoming>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Incoming>(256);
    let mqtt_task = tokio::spawn(forward_events(eventloop, wall_ms, tx));
    (rx, mqtt_task)
}

/// What the event-loop task polls: rumqttc's [`EventLoop`], or a script in tests.
pub(super) trait PollEvents: Send {
    /// The next event, or the error that ended a connection attempt or a connection.
    fn poll(
        &mut self,
    ) -> impl std::future::Future<Output = Result<MqttEvent, rumqttc::ConnectionError>> + Send;
}

impl PollEvents for EventLoop {
    fn poll(
        &mut self,
    ) -> impl std::future::Future<Output = Result<MqttEvent, rumqttc::ConnectionError>> + Send {
        EventLoop::poll(self)
    }
}

/// The wait before reconnecting: 500 ms after the first failure, doubled after each further
/// one up to 30 s, plus a jitter of up to half the wait so that a fleet does not reconnect in
/// lockstep; back to 500 ms once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff {
    next_ms: u64,
}

impl Backoff {
    /// The first wait.
    pub(super) const FIRST_MS: u64 = 500;
    /// The longest wait, jitter aside.
    pub(super) const MAX_MS: u64 = 30_000;

    pub(super) fn new() -> Self {
        Backoff {
            next_ms: Self::FIRST_MS,
        }
    }

    /// Connected: the next failure waits the first wait again.
    pub(super) fn reset(&mut self) {
        *self = Self::new();
    }

    /// The wait after a failure, its jitter drawn from `entropy`; the next wait doubles.
    pub(super) fn next_wait(&mut self, entropy: u64) -> Duration {
        let jitter = entropy % (self.next_ms / 2 + 1);
        let wait = Duration::from_millis(self.next_ms + jitter);
        self.next_ms = (self.next_ms * 2).min(Self::MAX_MS);
        wait
    }
}

/// The event-loop task: polls `events`, forwards to `tx`, and after a failure waits as
/// [`Backoff`] says, its jitter drawn from `entropy` (the wall clock in the daemon).
pub(super) async fn forward_events(
    mut events: impl PollEvents,
    mut entropy: impl FnMut() -> u64 + Send,
    tx: mpsc::Sender<Incoming>,
) {
    let mut backoff = Backoff::new();
    loop {
        match events.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if tx.send(Incoming::Connected).await.is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let msg = Incoming::Publish {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if tx
                    .send(Incoming::Disconnected(refusal_hint(&e)))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff.next_wait(entropy())).await;
            }
        }
    }
}

impl Daemon {
    pub(super) async fn on_mqtt(&mut self, m: Incoming) {
        let now = wall_ms();
        match m {
            Incoming::Connected => {
                match self.broker.handle_connected() {
                    Some(line) => info!("{line}"),
                    None => info!(broker = %self.broker.url(), "connected to the broker"),
                }
                self.connected = true;
                self.clock.on_connected(system_ms());
                self.metrics.mqtt_connected.set(1);
                self.metrics.mqtt_connections.inc();
                let id = self.key.id();
                // The clock first, so that its retained copy (which holds signing until a live
                // one comes) arrives before the retained seed; at most once, so that a broker
                // never queues stale ones for a session that was away.
                for (t, qos) in [
                    (topics::CLOCK.to_string(), QoS::AtMostOnce),
                    (topics::acks(&id), QoS::AtLeastOnce),
                    (topics::EPOCH.to_string(), QoS::AtLeastOnce),
                    (topics::MEASURERS_FILTER.to_string(), QoS::AtLeastOnce),
                ] {
                    if let Err(e) = self.client.subscribe(t.clone(), qos).await {
                        warn!("subscribing to {t}: {e}");
                    }
                }
                // Whatever was in flight may have been dropped with the old connection.
                self.outbox.reconnected(now);
                self.next_status_ms = now;
            }
            Incoming::Disconnected(why) => {
                // Every failed attempt comes here; at most one line per 30 s is logged.
                match self.broker.handle_failure(&why, now) {
                    Some(line) => warn!("{line}"),
                    None => debug!(broker = %self.broker.url(), "broker unreachable: {why}"),
                }
                self.connected = false;
                self.outbox.disconnected();
                self.metrics.mqtt_connected.set(0);
            }
            Incoming::Publish {
                topic,
                payload,
                retain,
            } => {
                match topics::parse(&topic) {
                    Some(Topic::Clock) => self.on_clock(&payload, retain).await,
                    Some(Topic::Epoch) => self.on_seed(payload, true, now).await,
                    Some(Topic::Measurers(_)) => self.on_measurer_set(payload, now).await,
                    Some(Topic::Acks(node)) if node == self.key.id() => {
                        match self.core.handle_ack(&payload, now) {
                            Ok(entries) => self.apply_ack(entries, now),
                            Err(e) => {
                                warn!("refused an ack: {e}");
                                self.metrics
                                    .oracle_messages_refused
                                    .get_or_create(&WhyLabel { why: "ack" })
                                    .inc();
                            }
                        }
                    }
                    // Not subscribed to: another node's acks, proofs, statuses, rewards.
                    Some(
                        Topic::Acks(_) | Topic::Proofs(_) | Topic::Status(_) | Topic::Rewards(_),
                    )
                    | None => debug!("unexpected topic {topic}"),
                }
            }
        }
    }

    /// The oracle's signed clock: sets the offset every timestamp is taken with.
    async fn on_clock(&mut self, payload: &[u8], retain: bool) {
        if payload.is_empty() {
            return;
        }
        let msg = match self.core.open_clock(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("refused an oracle clock: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel { why: "clock" })
                    .inc();
                return;
            }
        };
        let up = self.clock.on_clock(&msg, retain, system_ms());
        let offset = self.clock.offset_ms();
        wallclock::set_offset_ms(offset);
        self.metrics.clock_offset.set(offset as f64 / 1000.0);
        if let Some(old) = up.offset_changed {
            // Timers set on the old clock move with it.
            let delta = offset - old;
            self.core.clock_stepped(delta);
            self.outbox.clock_stepped(delta);
            self.next_status_ms = self.next_status_ms.saturating_add_signed(delta);
            if let Some(bw) = &mut self.bw {
                bw.state.clock_stepped(delta);
            }
        }
        if up.report {
            if offset == 0 {
                info!("the local clock agrees with the oracle's again; no correction");
            } else {
                warn!(
                    offset_ms = offset,
                    "the local clock is {:.1} s {} the oracle's; every timestamp is corrected by it (check NTP)",
                    offset.unsigned_abs() as f64 / 1000.0,
                    if offset < 0 { "ahead of" } else { "behind" }
                );
            }
        }
        if up.interval_changed {
            let blob = msg.interval_ms.to_le_bytes().to_vec();
            if !save_blob(self.store.clone(), CLOCK_BLOB, blob).await {
                warn!("could not save the oracle's clock interval");
            }
        }
    }

    fn apply_ack(&mut self, entries: Vec<wisp_protocol::msg::AckEntry>, now: u64) {
        for e in entries {
            if let Verdict::Rejected(reason) = e.verdict
                && reason.is_transient()
            {
                // Not judged now (`rate_limited`): the proof stays in the outbox, in flight, and
                // goes out again when its resend timer fires, as if no ack had come: the ack
                // timeout, doubling with each attempt. Only a final verdict deletes it.
                if let Some(entry) = self.outbox.get(&e.proof_id) {
                    debug!(proof = %e.proof_id, kind = %entry.kind, %reason, "the oracle did not judge a proof yet; it will be resent");
                    self.metrics
                        .proofs_deferred
                        .get_or_create(&ReasonLabel {
                            reason: reason.name(),
                        })
                        .inc();
                }
                continue;
            }
            // Out of the outbox at once; deleted from the store by the next commit.
            let Some(kind) = self.outbox.stage_deletion(&e.proof_id, now) else {
                // Already acked (a duplicate ack after a resend), or never ours.
                continue;
            };
            match e.verdict {
                Verdict::Accepted => {
                    self.metrics.proofs_accepted.inc();
                }
                Verdict::Rejected(reason) => {
                    warn!(proof = %e.proof_id, %kind, %reason, "the oracle rejected a proof: {}", reason.describe());
                    self.metrics
                        .proofs_rejected
                        .get_or_create(&ReasonLabel {
                            reason: reason.name(),
                        })
                        .inc();
                }
            }
        }
    }

    pub(super) fn publish_due(&mut self, now: u64) {
        // The outbox sends nothing while disconnected.
        let topic = topics::proofs(&self.key.id());
        while let Some(e) = self.outbox.poll_send(now) {
            let (id, bytes) = (e.id, e.envelope().to_vec());
            match self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes)
            {
                Ok(()) => {
                    if self.outbox.mark_sent(&id, now) > 1 {
                        self.metrics.proofs_resent.inc();
                    }
                    self.metrics.proofs_published.inc();
                }
                // The client's request queue is full: the rest waits for the next turn.
                Err(_) => break,
            }
        }
    }
}
