//! The threads around the ingest worker: the precheck stage ahead of it (batching, signatures on
//! several threads, rate limits) and the acker behind it (sealing and sending the acks of each
//! committed batch), with the bounded queues between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ClientError, QoS, Request};
use tokio::sync::mpsc;
use tracing::warn;
use wisp_protocol::envelope;
use wisp_protocol::{NodeKey, topics};

use super::clock::Clock;
use crate::acks::AckBatcher;
use crate::engine::{Checked, Incoming, Prechecker, SignatureCheck};
use crate::state::Shared;

/// Batch signature verification on every core: envelopes are split by their signer's first
/// key byte, so each thread's key cache sees its own share of the signers.
#[derive(Debug)]
pub struct ThreadedVerifier {
    keys: Vec<envelope::KeyCache>,
}

impl ThreadedVerifier {
    /// One verifying thread per core (the calling thread is one of them), at most `max`.
    pub fn new(max: usize) -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, max.max(1));
        Self {
            keys: (0..threads)
                .map(|_| envelope::KeyCache::new(crate::engine::KEY_CACHE))
                .collect(),
        }
    }
}

impl SignatureCheck for ThreadedVerifier {
    fn check(
        &mut self,
        envs: &[envelope::EnvelopeRef<'_>],
    ) -> Vec<Result<(), envelope::EnvelopeError>> {
        /// Below this, one thread is faster than handing work to others.
        const MIN_SPLIT: usize = 64;
        let n = self.keys.len();
        if n == 1 || envs.len() < MIN_SPLIT {
            return envelope::verify_batch_cached(envs, &mut self.keys[0]);
        }
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in envs.iter().enumerate() {
            parts[usize::from(e.signer[0]) % n].push(i);
        }
        let results: Vec<Vec<Result<(), envelope::EnvelopeError>>> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut caches = self.keys.iter_mut();
            let first = caches.next();
            for (part, keys) in parts.iter().skip(1).zip(caches) {
                let batch: Vec<envelope::EnvelopeRef<'_>> = part.iter().map(|&i| envs[i]).collect();
                handles.push(s.spawn(move || envelope::verify_batch_cached(&batch, keys)));
            }
            let batch: Vec<envelope::EnvelopeRef<'_>> = parts[0].iter().map(|&i| envs[i]).collect();
            let mut out = vec![match first {
                Some(keys) => envelope::verify_batch_cached(&batch, keys),
                None => batch.iter().map(|e| e.verify()).collect(),
            }];
            for (h, part) in handles.into_iter().zip(parts.iter().skip(1)) {
                out.push(
                    h.join()
                        .unwrap_or_else(|_| part.iter().map(|&i| envs[i].verify()).collect()),
                );
            }
            out
        });
        let mut out: Vec<Result<(), envelope::EnvelopeError>> = vec![Ok(()); envs.len()];
        for (part, rs) in parts.iter().zip(results) {
            for (&i, r) in part.iter().zip(rs) {
                out[i] = r;
            }
        }
        out
    }
}

pub(super) enum ToWorker {
    Connected,
    Publish(Incoming),
}

/// From the precheck thread to the worker, in arrival order.
pub(super) enum Stage {
    Connected,
    Batch(Vec<Checked>),
}

/// Prechecked batches waiting for the worker (backpressure beyond: the MQTT channel fills).
pub(super) const STAGE_QUEUE: usize = 2;

/// The precheck stage: fills a batch from the MQTT loop (the first publish, then what arrives
/// within the batch window, up to the batch size), checks its signatures (two threads) and
/// rate-limits what verified, and hands it to the worker — which judges and commits the previous batch
/// meanwhile.
pub(super) fn run_prechecker(
    mut rx: mpsc::Receiver<ToWorker>,
    tx: std::sync::mpsc::SyncSender<Stage>,
    mut pre: Prechecker<ThreadedVerifier>,
    handle: tokio::runtime::Handle,
    batch_max: usize,
    window: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut batch: Vec<Incoming> = Vec::with_capacity(batch_max);
    while !stop.load(Ordering::Relaxed) {
        // Wait for the first message (at most 100 ms, so shutdown is timely), then fill the
        // batch for at most the batch window.
        let first = handle
            .block_on(async { tokio::time::timeout(Duration::from_millis(100), rx.recv()).await });
        let mut connected = false;
        match first {
            Ok(Some(ToWorker::Publish(m))) => batch.push(m),
            Ok(Some(ToWorker::Connected)) => connected = true,
            Ok(None) => return,
            Err(_) => {}
        }
        let until = Instant::now() + window;
        while !batch.is_empty() && batch.len() < batch_max {
            match rx.try_recv() {
                Ok(ToWorker::Publish(m)) => batch.push(m),
                Ok(ToWorker::Connected) => connected = true,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() >= until {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        if connected && tx.send(Stage::Connected).is_err() {
            return;
        }
        if !batch.is_empty() {
            let checked = pre.check(std::mem::replace(&mut batch, Vec::with_capacity(batch_max)));
            if tx.send(Stage::Batch(checked)).is_err() {
                return;
            }
        }
    }
}

/// Most threads verifying signatures (this machine class has two cores; more rarely pays at
/// the batch sizes of one oracle).
pub(super) const VERIFY_THREADS: usize = 4;

/// Committed batches whose acks wait for the acker thread (backpressure beyond).
pub(super) const ACK_QUEUE: usize = 4;

/// Most verdicts the ack thread merges from queued batches before it signs.
const ACK_MERGE_MAX: usize = 16_384;

/// Seals the acks of each committed batch (one per node, one signature for all) and hands them
/// to the MQTT client, in batch order, until the worker drops its sender.
pub(super) fn run_acker(
    rx: std::sync::mpsc::Receiver<Vec<(wisp_protocol::NodeId, wisp_protocol::msg::AckEntry)>>,
    key: NodeKey,
    client: AsyncClient,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    clock: Clock,
) {
    while let Ok(batch) = rx.recv() {
        let mut acks = AckBatcher::new();
        for (node, e) in batch {
            acks.push(node, e.proof_id, e.verdict);
        }
        // Batches committed while the last ones were signed go out together: a node with
        // proofs in several of them gets one ack, so under load there are fewer signatures.
        while acks.len() < ACK_MERGE_MAX
            && let Ok(more) = rx.try_recv()
        {
            for (node, e) in more {
                acks.push(node, e.proof_id, e.verdict);
            }
        }
        for (node, bytes) in acks.flush(&key, clock.now_ms()) {
            publish(&client, &handle, topics::acks(&node), false, bytes);
            shared.metrics.acks_sent.inc();
        }
    }
}

/// Puts a publish straight into the client's request queue; only when it is full, waits for
/// room.
pub(super) fn publish(
    client: &AsyncClient,
    handle: &tokio::runtime::Handle,
    topic: String,
    retain: bool,
    payload: Vec<u8>,
) {
    // A refused try hands the publish back, so nothing is copied to keep it for the retry.
    match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        Ok(()) => {}
        Err(ClientError::TryRequest(Request::Publish(p))) => {
            let c = client.clone();
            if let Err(e) = handle.block_on(async move {
                c.publish_bytes(p.topic, QoS::AtLeastOnce, retain, p.payload)
                    .await
            }) {
                warn!("publish failed: {e}");
            }
        }
        Err(e) => warn!("publish failed: {e}"),
    }
}
