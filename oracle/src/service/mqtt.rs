//! The oracle's MQTT connection: an event loop that never waits on the rest of the service,
//! and a forwarder that waits for room in the service's queue.
//!
//! **Why two tasks.** rumqttc sends what the client queues (the acks, seeds and manifests the
//! worker and the acker publish) only while its event loop is polled. An event loop that waited
//! for room in the worker's queue sent nothing meanwhile: the acker filled the client's request
//! queue and waited, the worker waited for the acker, and nobody emptied the worker's queue.
//! The ingest bench at 2,000 nodes × 50 heartbeats stalled so in two runs of three. So the
//! event loop hands each publish to the forwarder without waiting, and the forwarder waits for
//! the precheck stage.
//!
//! **What sits between them** is what the broker delivered and the service has not taken yet,
//! counted in `wisp_oracle_mqtt_backlog`: at most what the broker holds for this session (the
//! embedded broker's log, 4 segments of 16 MiB; Mosquitto's `max_queued_messages`, 100,000 in
//! deploy/mosquitto/wisp.conf) and at most [`BACKLOG_MAX`] publishes, beyond which the event
//! loop waits as it used to. The client acknowledges each publish as it reads it, as before: a
//! proof is the oracle's only once it is acked after commit, and an agent resends what was
//! not. (Acknowledging only once handed on would bound it by the in-flight window instead, but
//! rumqttd then stops acknowledging the oracle's own publishes, the acks among them, while
//! publishes to the oracle are unacknowledged: the same deadlock one step further.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::clock::Clock;
use super::is_guarded;
use super::stages::ToWorker;
use crate::engine::Incoming;
use crate::state::{Role, Shared};

/// Most publishes read and not yet taken: above what the brokers hold for a session (the
/// embedded broker's 64 MiB log is about 200,000 heartbeats; Mosquitto as shipped queues
/// 100,000). The channel's memory is taken as it fills, not up front.
pub(super) const BACKLOG_MAX: usize = 1 << 19;

/// Runs the connection until the service's queue closes: the event loop task, and the
/// forwarder until `tx`'s receiver is gone.
pub(super) fn spawn(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    tx: mpsc::Sender<ToWorker>,
    clock: Clock,
) -> tokio::task::JoinHandle<()> {
    let (read_tx, read_rx) = mpsc::channel(BACKLOG_MAX);
    let forwarder = tokio::spawn(forward(read_rx, shared.clone(), tx));
    tokio::spawn(async move {
        // Rate limiting of the broker's WARN lines runs on a monotonic clock of its own.
        let started = Instant::now();
        let mono_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        loop {
            let read = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(line) = shared
                        .broker
                        .lock()
                        .ok()
                        .and_then(|mut b| b.handle_connected())
                    {
                        info!("{line}");
                    }
                    shared.connected.store(true, Ordering::Relaxed);
                    ToWorker::Connected
                }
                Ok(Event::Incoming(Packet::Publish(p))) if is_guarded(&p.topic) => {
                    guard(&shared, &client, &p);
                    continue;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => ToWorker::Publish(Incoming {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    at_ms: clock.now_ms(),
                }),
                // A stopping cluster process waits for it (`service/members.rs`, `leave`):
                // what the broker delivered before it is read by then.
                Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                    shared.unsubacked.notify_waiters();
                    continue;
                }
                // The service's clean stop: the DISCONNECT is sent, nothing more to read.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => continue,
                Err(e) => {
                    // Every failed attempt comes here (a refused port, a name that does not
                    // resolve, a lost connection); at most one line per 30 s is logged.
                    shared.connected.store(false, Ordering::Relaxed);
                    let line = shared
                        .broker
                        .lock()
                        .ok()
                        .and_then(|mut b| b.handle_failure(&e.to_string(), mono_ms()));
                    if let Some(line) = line {
                        warn!("{line}");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            shared.metrics.mqtt_backlog.inc();
            if read_tx.send(read).await.is_err() {
                break;
            }
        }
        forwarder.abort();
    })
}

/// Hands each publish to the service's queue, in the order read, waiting for room.
async fn forward(
    mut rx: mpsc::Receiver<ToWorker>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<ToWorker>,
) {
    while let Some(msg) = rx.recv().await {
        if tx.send(msg).await.is_err() {
            return;
        }
        shared.metrics.mqtt_backlog.dec();
    }
}

/// A publish on one of the oracle's retained topics: if this process leads and it is not what
/// the oracle last published there, publish the oracle's own again.
fn guard(shared: &Shared, client: &AsyncClient, p: &Publish) {
    // Only the leader puts its retained messages back: one that lost the lease would put back
    // what its successor replaced.
    let leads = shared.role.lock().is_ok_and(|r| *r != Role::Standby);
    let ours = shared
        .retained
        .lock()
        .ok()
        .filter(|_| leads)
        .and_then(|r| r.get(&p.topic).cloned());
    let Some(ours) = ours.filter(|o| o.as_slice() != p.payload.as_ref()) else {
        return;
    };
    if p.retain {
        // Held from before this connection (the oracle's own older one after a restart, or a
        // forgery): put right all the same.
        debug!(topic = %p.topic, "a stale retained message on the oracle's topic: publishing the oracle's own again");
    } else {
        shared.metrics.retained_restored.inc();
        warn!(topic = %p.topic, "someone else published on the oracle's retained topic: publishing the oracle's own again");
    }
    // Not awaited here: this task drives the connection the publish needs.
    let (c, topic) = (client.clone(), p.topic.clone());
    tokio::spawn(async move {
        let _ = c.publish(topic, QoS::AtLeastOnce, true, ours).await;
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use tokio::sync::mpsc;

    use super::*;
    use crate::broker::{self, FrontConfig, INTERNAL_USER};
    use crate::metrics::Metrics;
    use crate::state::Role;
    use crate::store::{StorageConfig, Store};

    const N: u32 = 2_000;

    fn options(id: &str, b: &broker::Embedded) -> MqttOptions {
        let mut o = MqttOptions::new(id, b.internal.ip().to_string(), b.internal.port());
        o.set_credentials(INTERNAL_USER, b.password.clone());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// While nobody drains the service's queue, what the oracle publishes still goes out, and
    /// what was read meanwhile reaches the queue later, in order, once each. With an event loop
    /// that waited for room in the queue, the oracle's publishes stopped once its small request
    /// queue filled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_go_out_while_the_worker_is_behind_and_nothing_read_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker::start(
            FrontConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                max_payload: 64 * 1024,
                oracle: wisp_protocol::NodeKey::from_seed(&[1; 32]).id(),
                oracle_client_id: "wisp-oracle".into(),
                max_connections_per_ip: 16,
            },
            Metrics::new().front(),
        )
        .await
        .unwrap();
        let storage = StorageConfig::Sqlite(dir.path().join("oracle.db"));
        let (shared, _grants) =
            Shared::for_tests(Store::open(&storage).await.unwrap(), Role::Alone);
        let shared = Arc::new(shared);

        // The oracle's connection as the service makes it, with a request queue of 8 and a
        // worker queue of 1 that nobody reads yet.
        let mut o = options("oracle", &b);
        o.set_clean_session(false);
        let (oracle, eventloop) = AsyncClient::new(o, 8);
        oracle
            .subscribe("wisp/v1/proofs/+", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let clock = Clock::File(dir.path().join("clock"));
        std::fs::write(dir.path().join("clock"), "1000").unwrap();
        let task = spawn(eventloop, oracle.clone(), shared.clone(), tx, clock);

        // A reader of what the oracle publishes, and a node that publishes proofs.
        let (reader, mut reader_loop) = AsyncClient::new(options("reader", &b), 64);
        reader
            .subscribe("wisp/v1/acks/+", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (read_tx, mut read_rx) = mpsc::channel(N as usize + 8);
        tokio::spawn(async move {
            loop {
                match reader_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = read_tx.send(None).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = read_tx.send(Some(p.payload)).await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let subscribed = tokio::time::timeout(Duration::from_secs(10), read_rx.recv()).await;
        assert!(
            matches!(subscribed, Ok(Some(None))),
            "the reader did not subscribe"
        );
        let (node, mut node_loop) = AsyncClient::new(options("node", &b), 64);
        tokio::spawn(async move {
            loop {
                if node_loop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let sent = tokio::spawn(async move {
            for i in 0..N {
                let payload = i.to_be_bytes().to_vec();
                node.publish("wisp/v1/proofs/n", QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
        });

        // The worker is behind (its queue holds one and nobody takes it); the oracle publishes
        // as the acker does, N times its request queue: all of it reaches the reader.
        let publishing = tokio::spawn({
            let oracle = oracle.clone();
            async move {
                for i in 0..N {
                    let payload = i.to_be_bytes().to_vec();
                    oracle
                        .publish("wisp/v1/acks/n", QoS::AtLeastOnce, false, payload)
                        .await
                        .unwrap();
                }
            }
        });
        for i in 0..N {
            let got = tokio::time::timeout(Duration::from_secs(20), read_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("only {i} of the oracle's {N} publishes went out"));
            assert_eq!(got.unwrap().unwrap().as_ref(), i.to_be_bytes());
        }
        publishing.await.unwrap();

        // Now the worker catches up: every proof arrives, in order, once.
        let mut next = 0u32;
        while next < N {
            let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("only {next} of {N} proofs reached the worker"));
            match got.unwrap() {
                ToWorker::Connected => {}
                ToWorker::Publish(m) => {
                    assert_eq!(m.topic, "wisp/v1/proofs/n");
                    assert_eq!(m.payload, next.to_be_bytes());
                    assert_eq!(m.at_ms, 1000);
                    next += 1;
                }
            }
        }
        sent.await.unwrap();
        task.abort();
    }
}
