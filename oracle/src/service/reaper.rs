//! Reaping a dead member's broker session: the leader connects under the member's client id
//! with `clean_session=false`, takes what the broker queued for it, leaves the share group in
//! its name and discards the session ([`Reaper::reap`]). Why and when: `service/members.rs`.
//!
//! **What it takes goes through the leader's own pipeline**: every publish is handed to the
//! same queue the leader's own connection feeds, so it is prechecked (size, topic, signature,
//! rate limit), judged, committed and acked as one of its own; the oracle's guarded retained
//! topics (seed, clock, measurer set), which a dead leader's session also subscribed to, are
//! skipped. A proof also delivered elsewhere (the member came back meanwhile, an agent's
//! resend) is judged once: proofs are deduplicated by id.
//!
//! Bounds: each step waits a bounded time, at most [`TAKE_MAX`] publishes are taken per reap,
//! and the session is discarded only once the broker went quiet after the `UNSUBACK`; a reap cut
//! short by a bound leaves the session (and what it still holds) for the next try.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use wisp_shell::broker::Broker;

use super::clock::Clock;
use super::is_guarded;
use super::stages::ToWorker;
use crate::engine::Incoming;
use crate::store::members::Member;

/// The broker is taken to have sent all it queued once it is quiet for this long.
const QUIET: Duration = Duration::from_secs(1);

/// Longest the queued publishes are taken before leaving the share group anyway: a session
/// still in the group keeps getting its share of new proofs, so under load it is never quiet.
const TAKE_FOR: Duration = Duration::from_secs(20);

/// Longest wait for the broker's `CONNACK`, `UNSUBACK` and the quiet after it.
const STEP: Duration = Duration::from_secs(10);

/// Most publishes taken in one reap: above Mosquitto's shipped `max_queued_messages` (100,000).
pub(super) const TAKE_MAX: u64 = 200_000;

/// How a reap ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The broker held no session for the member, or it was emptied, left and discarded;
    /// `taken` publishes were handed to the pipeline.
    Done {
        /// Publishes handed to the pipeline.
        taken: u64,
    },
    /// The broker refused the login under the member's client id.
    Refused(ConnectReturnCode),
    /// The connection was dropped (the member most likely came back and took its id over),
    /// or the member was seen again before the session was discarded: it is left alone.
    Interrupted {
        /// Publishes handed to the pipeline before.
        taken: u64,
    },
    /// A bound was reached before the broker went quiet: the session was kept, with what it
    /// still holds, for the next try.
    Unfinished {
        /// Publishes handed to the pipeline.
        taken: u64,
    },
}

/// What a reap needs: where the broker is and how this process logs in, and the pipeline.
pub(super) struct Reaper {
    /// This process's broker: host, TLS, and its password (used with the member's username).
    pub(super) broker: Broker,
    /// The largest packet, as on this process's own connection.
    pub(super) max_payload: usize,
    /// The queue this process's own connection feeds.
    pub(super) tx: mpsc::Sender<ToWorker>,
    pub(super) clock: Clock,
    /// Counts what is taken (`wisp_oracle_reaped_total`).
    pub(super) reaped: prometheus_client::metrics::counter::Counter,
    /// The proofs' shared filter, left in the member's name.
    pub(super) filter: String,
}

impl Reaper {
    /// Connection options under `m`'s client id and username, with this process's password.
    fn options(&self, m: &Member, clean: bool) -> anyhow::Result<MqttOptions> {
        let mut o = MqttOptions::new(
            m.client_id.clone(),
            self.broker.host.clone(),
            self.broker.port,
        );
        let password = self
            .broker
            .login
            .as_ref()
            .map(|(_, p)| p.expose().to_string());
        match (&m.username, password) {
            (Some(user), p) => o.set_credentials(user.clone(), p.unwrap_or_default()),
            (None, _) => &mut o,
        };
        if let Some(t) = self.broker.transport().map_err(|e| anyhow!("broker.{e}"))? {
            o.set_transport(t);
        }
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean);
        o.set_max_packet_size(self.max_payload, self.max_payload);
        o.set_inflight(1000);
        Ok(o)
    }

    /// Takes `m`'s session over, hands what the broker queued for it to the pipeline, leaves
    /// the share group in its name and, if `still_dead` then confirms the member has not come
    /// back, discards the session.
    pub(super) async fn reap(
        &self,
        m: &Member,
        still_dead: impl std::future::Future<Output = anyhow::Result<bool>>,
    ) -> anyhow::Result<Outcome> {
        let (client, mut ev) = AsyncClient::new(self.options(m, false)?, 16);
        match timeout(STEP, connack(&mut ev)).await {
            Err(_) => anyhow::bail!("no CONNACK within {STEP:?}"),
            Ok(Err(ConnectionError::ConnectionRefused(code))) => return Ok(Outcome::Refused(code)),
            Ok(Err(e)) => return Err(e).context("connecting under the member's client id"),
            Ok(Ok(())) => {}
        }
        let mut taken = 0;
        // The queue, until the broker is quiet (or the bounds).
        let started = Instant::now();
        loop {
            let left = TAKE_FOR.saturating_sub(started.elapsed()).min(QUIET);
            match self.next(&mut ev, left, &mut taken).await {
                Next::Quiet => break,
                Next::Lost => return Ok(Outcome::Interrupted { taken }),
                Next::UnsubAck | Next::Other => {}
            }
            if taken >= TAKE_MAX || started.elapsed() >= TAKE_FOR {
                break;
            }
        }
        // Out of the share group: from the UNSUBACK on, the broker hands this session nothing
        // new; what it sent before is taken until it is quiet.
        client
            .unsubscribe(self.filter.clone())
            .await
            .context("asking to leave the share group")?;
        let started = Instant::now();
        let mut unsubacked = false;
        let quiet = loop {
            if started.elapsed() >= STEP || taken >= TAKE_MAX {
                break false;
            }
            let wait = if unsubacked {
                QUIET
            } else {
                STEP.saturating_sub(started.elapsed())
            };
            match self.next(&mut ev, wait, &mut taken).await {
                Next::Quiet => break unsubacked,
                Next::Lost => return Ok(Outcome::Interrupted { taken }),
                Next::UnsubAck => unsubacked = true,
                Next::Other => {}
            }
        };
        disconnect(&client, &mut ev).await;
        if !quiet {
            return Ok(Outcome::Unfinished { taken });
        }
        if !still_dead.await? {
            return Ok(Outcome::Interrupted { taken });
        }
        // Discarded: a clean session under its id replaces it, and ends with the connection.
        let (client, mut ev) = AsyncClient::new(self.options(m, true)?, 4);
        match timeout(STEP, connack(&mut ev)).await {
            Ok(Ok(())) => disconnect(&client, &mut ev).await,
            Ok(Err(e)) => return Err(e).context("discarding the member's session"),
            Err(_) => anyhow::bail!("no CONNACK within {STEP:?} discarding the member's session"),
        }
        Ok(Outcome::Done { taken })
    }

    /// Waits up to `wait` for the next event: a publish is handed to the pipeline (the
    /// guarded retained topics skipped, as the own connection's loop does with them).
    async fn next(&self, ev: &mut EventLoop, wait: Duration, taken: &mut u64) -> Next {
        let event = match timeout(wait, ev.poll()).await {
            Err(_) => return Next::Quiet,
            Ok(Err(_)) => return Next::Lost,
            Ok(Ok(e)) => e,
        };
        match event {
            Event::Incoming(Packet::Publish(p)) if !is_guarded(&p.topic) => {
                let msg = ToWorker::Publish(Incoming {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    at_ms: self.clock.now_ms(),
                });
                if self.tx.send(msg).await.is_err() {
                    // The pipeline is gone: the process is stopping.
                    return Next::Lost;
                }
                *taken += 1;
                self.reaped.inc();
                Next::Other
            }
            Event::Incoming(Packet::UnsubAck(_)) => Next::UnsubAck,
            _ => Next::Other,
        }
    }
}

/// What [`Reaper::next`] saw.
enum Next {
    /// Nothing within the wait.
    Quiet,
    /// The connection is gone (or the pipeline).
    Lost,
    /// The broker confirmed the unsubscription.
    UnsubAck,
    /// Anything else (a publish was handed on).
    Other,
}

/// Polls until the `CONNACK`; a refused login is `ConnectionRefused`.
async fn connack(ev: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = ev.poll().await? {
            return Ok(());
        }
    }
}

/// Sends a DISCONNECT (the session stays, or ends if it is a clean one) and waits, bounded,
/// until it is out.
async fn disconnect(client: &AsyncClient, ev: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = timeout(Duration::from_secs(2), async {
        loop {
            match ev.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}
