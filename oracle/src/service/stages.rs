//! The stages around the ingest worker, as tokio tasks joined by bounded channels: the
//! precheck ahead of it (batching, signatures on several threads, rate limits) and the acker
//! behind it (sealing and sending the acks of each committed batch).
//!
//! Their CPU-bound steps (a batch's signatures, an ack seal) run in `spawn_blocking`, so the
//! runtime's threads stay free for the MQTT loop and the HTTP API.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, warn};
use wisp_protocol::envelope;
use wisp_protocol::msg::AckEntry;
use wisp_protocol::{NodeId, NodeKey, topics};

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

/// The precheck's signature check: [`ThreadedVerifier`], or none for the publishes a standby
/// verified before it handed them over (a cluster's intake). One prechecker, and so one rate
/// limit per node, serves both: a node's proofs count against one allowance however the
/// broker shares them out among the processes.
#[derive(Debug)]
pub(super) struct Verifier {
    threads: ThreadedVerifier,
    /// The batch being checked was verified by a standby.
    verified_elsewhere: bool,
}

impl Verifier {
    pub(super) fn new(threads: ThreadedVerifier) -> Self {
        Self {
            threads,
            verified_elsewhere: false,
        }
    }
}

impl SignatureCheck for Verifier {
    fn check(
        &mut self,
        envs: &[envelope::EnvelopeRef<'_>],
    ) -> Vec<Result<(), envelope::EnvelopeError>> {
        if self.verified_elsewhere {
            return vec![Ok(()); envs.len()];
        }
        self.threads.check(envs)
    }
}

/// From the MQTT loop to the precheck stage, in arrival order.
pub(super) enum ToWorker {
    Connected,
    Publish(Incoming),
}

/// From the precheck stage to the worker, in arrival order.
pub(super) enum Stage {
    Connected,
    Batch(Vec<Checked>),
}

/// A committed batch's verdicts, from the worker to the acker.
pub(super) type AckBatch = Vec<(NodeId, AckEntry)>;

/// Prechecked batches waiting for the worker (backpressure beyond: the MQTT channel fills).
pub(super) const STAGE_QUEUE: usize = 2;

/// What the precheck stage took from the MQTT loop for one batch.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    /// A (re)connection was announced meanwhile: the worker hears of it before the batch.
    pub(super) connected: bool,
    pub(super) batch: Vec<Incoming>,
}

/// The batch `first` starts: what arrives within `window` of it, up to `batch_max`
/// publishes; a batch closes when full or when its window ends, whichever is first. A
/// connection alone goes on at once. Not to be cancelled: what it took from `rx` is in the
/// batch it returns (a caller that stops waits only for `first`).
pub(super) async fn fill(
    rx: &mut mpsc::Receiver<ToWorker>,
    first: ToWorker,
    batch_max: usize,
    window: Duration,
) -> Gathered {
    let mut g = Gathered::default();
    match first {
        ToWorker::Connected => {
            g.connected = true;
            return g;
        }
        ToWorker::Publish(m) => g.batch.push(m),
    }
    let deadline = tokio::time::sleep_until(Instant::now() + window);
    tokio::pin!(deadline);
    let mut buf = Vec::new();
    while g.batch.len() < batch_max {
        tokio::select! {
            // What has arrived goes first: a window that ended while messages were waiting
            // still takes them, up to the batch size.
            biased;
            n = rx.recv_many(&mut buf, batch_max - g.batch.len()) => {
                if n == 0 {
                    break;
                }
                for m in buf.drain(..) {
                    match m {
                        ToWorker::Publish(m) => g.batch.push(m),
                        ToWorker::Connected => g.connected = true,
                    }
                }
            }
            () = &mut deadline => break,
        }
    }
    g
}

/// The precheck stage: fills a batch from the MQTT loop ([`fill`]), checks its signatures
/// (on several threads, off the runtime) and rate-limits what verified, and hands it to the
/// worker — which judges and commits the previous batch meanwhile. A cluster's leader also
/// gathers, from `intake`, the proofs standbys verified: the same rate limit, no second
/// signature check. Ends when `stop` is set or the MQTT loop is gone.
pub(super) async fn run_prechecker(
    mut rx: mpsc::Receiver<ToWorker>,
    mut intake: Option<mpsc::Receiver<ToWorker>>,
    tx: mpsc::Sender<Stage>,
    mut pre: Prechecker<Verifier>,
    batch_max: usize,
    window: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Only the wait for a batch's first message races the stop and the other source; the
        // batch it starts is then filled from that source alone. (Racing two whole gathers
        // dropped the one that lost, with the publishes it had already taken: acknowledged to
        // the broker, or taken from the intake table, and then never judged.)
        let from_intake = async {
            match intake.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let (first, verified_elsewhere) = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            m = rx.recv() => match m {
                Some(m) => (m, false),
                None => return,
            },
            m = from_intake => match m {
                Some(m) => (m, true),
                None => {
                    // Its sender, the intake's drain, stopped: the service stops for that.
                    intake = None;
                    continue;
                }
            },
        };
        let source = match intake.as_mut() {
            Some(i) if verified_elsewhere => i,
            _ => &mut rx,
        };
        let Gathered { connected, batch } = fill(source, first, batch_max, window).await;
        if connected && tx.send(Stage::Connected).await.is_err() {
            return;
        }
        if batch.is_empty() {
            continue;
        }
        pre.verifier_mut().verified_elsewhere = verified_elsewhere;
        let checked = tokio::task::spawn_blocking(move || {
            let checked = pre.check(batch);
            (pre, checked)
        })
        .await;
        let checked = match checked {
            Ok((p, checked)) => {
                pre = p;
                checked
            }
            Err(e) => {
                error!("the signature check failed: {e}");
                return;
            }
        };
        if tx.send(Stage::Batch(checked)).await.is_err() {
            return;
        }
    }
}

/// Resolves once `stop` is set (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrow of the value is dropped at once: it must not be held across an await.
    let _ = stop.wait_for(|s| *s).await;
}

/// Most threads verifying signatures (this machine class has two cores; more rarely pays at
/// the batch sizes of one oracle).
pub(super) const VERIFY_THREADS: usize = 4;

/// Committed batches whose acks wait for the acker (backpressure beyond).
pub(super) const ACK_QUEUE: usize = 4;

/// Most ack topics the acker remembers (emptied when full).
const ACK_TOPICS_MAX: usize = 1 << 17;

/// Most verdicts the acker merges from queued batches before it signs.
const ACK_MERGE_MAX: usize = 16_384;

/// Seals the acks of each committed batch (one per node, one signature for all) and hands them
/// to the MQTT client, in batch order, until the worker drops its sender; what is queued then
/// still goes out.
pub(super) async fn run_acker(
    mut rx: mpsc::Receiver<AckBatch>,
    key: NodeKey,
    client: AsyncClient,
    shared: Arc<Shared>,
    clock: Clock,
) {
    // Each node's ack topic, written from base58 once rather than for every ack.
    let mut topics_of: HashMap<NodeId, String> = HashMap::new();
    while let Some(first) = rx.recv().await {
        // Batches committed while the last ones were signed go out together: a node with
        // proofs in several of them gets one ack, so under load there are fewer signatures.
        let mut batches = vec![first];
        let mut queued = batches[0].len();
        while queued < ACK_MERGE_MAX
            && let Ok(more) = rx.try_recv()
        {
            queued += more.len();
            batches.push(more);
        }
        let now_ms = clock.now_ms();
        let key = key.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            let mut acks = AckBatcher::new();
            for (node, e) in batches.into_iter().flatten() {
                acks.push(node, e.proof_id, e.verdict);
            }
            acks.flush(&key, now_ms)
        })
        .await;
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                error!("sealing acks failed: {e}");
                return;
            }
        };
        for (node, bytes) in sealed {
            if topics_of.len() >= ACK_TOPICS_MAX && !topics_of.contains_key(&node) {
                topics_of.clear();
            }
            let topic = topics_of
                .entry(node)
                .or_insert_with(|| topics::acks(&node))
                .clone();
            publish(&client, topic, false, bytes).await;
            shared.metrics.acks_sent.inc();
        }
    }
}

/// Puts a publish into the client's request queue, waiting for room when it is full.
pub(super) async fn publish(client: &AsyncClient, topic: String, retain: bool, payload: Vec<u8>) {
    if let Err(e) = client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
    {
        warn!("publish failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RateLimiter;

    const WINDOW: Duration = Duration::from_millis(50);

    fn publish_msg(i: u8) -> ToWorker {
        ToWorker::Publish(Incoming {
            topic: "wisp/v1/proofs/x".into(),
            payload: vec![i],
            at_ms: 0,
        })
    }

    /// The precheck stage between two channels, with `batch_max` and [`WINDOW`].
    fn stage(
        batch_max: usize,
    ) -> (
        mpsc::Sender<ToWorker>,
        mpsc::Receiver<Stage>,
        watch::Sender<bool>,
    ) {
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(STAGE_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let pre = Prechecker::new(
            RateLimiter::new(1.0, 1.0, 16),
            Verifier::new(ThreadedVerifier::new(1)),
        );
        tokio::spawn(run_prechecker(
            in_rx, None, out_tx, pre, batch_max, WINDOW, stop_rx,
        ));
        (in_tx, out_rx, stop)
    }

    /// The next stage message: the size of its batch (`None`: a connection) and when it came.
    async fn next(rx: &mut mpsc::Receiver<Stage>) -> (Option<usize>, Instant) {
        match rx.recv().await.expect("the stage stopped") {
            Stage::Connected => (None, Instant::now()),
            Stage::Batch(b) => (Some(b.len()), Instant::now()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_closes_at_its_window() {
        let (tx, mut rx, _stop) = stage(100);
        let t0 = Instant::now();
        for i in 0..3 {
            tx.send(publish_msg(i)).await.unwrap();
        }
        let late = tx.clone();
        tokio::spawn(async move {
            // Within the window: joins the batch. After it: the next batch.
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.send(publish_msg(3)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            late.send(publish_msg(4)).await.unwrap();
        });
        assert_eq!(next(&mut rx).await, (Some(4), t0 + WINDOW));
        // The next window starts at its first publish, not at the end of the last one.
        assert_eq!(
            next(&mut rx).await,
            (Some(1), t0 + Duration::from_millis(120) + WINDOW)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx, _stop) = stage(4);
        let t0 = Instant::now();
        for i in 0..10 {
            tx.send(publish_msg(i)).await.unwrap();
        }
        assert_eq!(next(&mut rx).await, (Some(4), t0));
        assert_eq!(next(&mut rx).await, (Some(4), t0));
        // The rest waits for the window of its first publish.
        assert_eq!(next(&mut rx).await, (Some(2), t0 + WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_starts_at_the_first_publish() {
        let (tx, mut rx, _stop) = stage(100);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let t1 = Instant::now();
        tx.send(publish_msg(0)).await.unwrap();
        assert_eq!(next(&mut rx).await, (Some(1), t1 + WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_goes_on_at_once_and_before_the_batch_it_arrived_in() {
        let (tx, mut rx, _stop) = stage(100);
        let t0 = Instant::now();
        tx.send(ToWorker::Connected).await.unwrap();
        assert_eq!(next(&mut rx).await, (None, t0));
        tx.send(publish_msg(0)).await.unwrap();
        tx.send(ToWorker::Connected).await.unwrap();
        tx.send(publish_msg(1)).await.unwrap();
        assert_eq!(next(&mut rx).await, (None, t0 + WINDOW));
        assert_eq!(next(&mut rx).await, (Some(2), t0 + WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn the_stage_ends_on_stop_and_when_the_mqtt_loop_is_gone() {
        let (_tx, mut rx, stop) = stage(100);
        stop.send(true).unwrap();
        assert!(rx.recv().await.is_none());
        let (tx, mut rx, _stop) = stage(100);
        tx.send(publish_msg(0)).await.unwrap();
        drop(tx);
        // What was gathered still goes on.
        assert_eq!(next(&mut rx).await.0, Some(1));
        assert!(rx.recv().await.is_none());
    }

    /// A node's signed heartbeat number `seq`, as a publish on its proofs topic.
    fn heartbeat_from(key: &NodeKey, seq: u64) -> ToWorker {
        let hb = wisp_protocol::msg::Heartbeat {
            epoch: 1,
            seq,
            uptime_s: seq,
            sent_ms: 1_000 * seq,
            fix: None,
            cell: None,
            versions: wisp_protocol::msg::Versions::new("test", "none"),
            peers: 0,
        };
        ToWorker::Publish(Incoming {
            topic: topics::proofs(&key.id()),
            payload: envelope::Envelope::sign(key, &hb).to_bytes(),
            at_ms: 0,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_has_one_allowance_for_its_own_and_its_handed_over_proofs() {
        // A leader's stage: its own share of the proofs and the intake's, one precheck.
        let (in_tx, in_rx) = mpsc::channel(64);
        let (intake_tx, intake_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(STAGE_QUEUE);
        let (_stop, stop_rx) = watch::channel(false);
        let pre = Prechecker::new(
            RateLimiter::new(0.001, 2.0, 16),
            Verifier::new(ThreadedVerifier::new(1)),
        );
        tokio::spawn(run_prechecker(
            in_rx,
            Some(intake_rx),
            out_tx,
            pre,
            100,
            WINDOW,
            stop_rx,
        ));
        let key = NodeKey::from_seed(&[3; 32]);
        let mut refused = 0;
        let mut authentic = 0;
        for seq in 1..=4 {
            let sent = if seq % 2 == 0 { &in_tx } else { &intake_tx };
            sent.send(heartbeat_from(&key, seq)).await.unwrap();
            let Some(Stage::Batch(b)) = out_rx.recv().await else {
                panic!("no batch");
            };
            for c in b {
                match c.screened {
                    crate::engine::Screened::Refused(wisp_protocol::Reason::RateLimited) => {
                        refused += 1;
                    }
                    crate::engine::Screened::Authentic { .. } => authentic += 1,
                    crate::engine::Screened::Refused(r) => panic!("refused as {r:?}"),
                }
            }
        }
        // A burst of two in all, not two from each source.
        assert_eq!((authentic, refused), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_waiting_on_both_sources_at_once_all_reach_the_worker() {
        // A leader with its own publishes and the intake's both waiting: every one is checked
        // and handed on, whichever source's batch is filled first.
        let (in_tx, in_rx) = mpsc::channel(64);
        let (intake_tx, intake_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(STAGE_QUEUE);
        let (_stop, stop_rx) = watch::channel(false);
        let pre = Prechecker::new(
            RateLimiter::new(1000.0, 1000.0, 16),
            Verifier::new(ThreadedVerifier::new(1)),
        );
        let key = NodeKey::from_seed(&[4; 32]);
        for seq in 1..=3 {
            in_tx.send(heartbeat_from(&key, seq)).await.unwrap();
            intake_tx
                .send(heartbeat_from(&key, 10 + seq))
                .await
                .unwrap();
        }
        tokio::spawn(run_prechecker(
            in_rx,
            Some(intake_rx),
            out_tx,
            pre,
            100,
            WINDOW,
            stop_rx,
        ));
        let mut seen = 0;
        while seen < 6 {
            // Paused time: a lost publish shows as this timeout, at once.
            let next = tokio::time::timeout(Duration::from_secs(60), out_rx.recv()).await;
            let Ok(Some(Stage::Batch(b))) = next else {
                panic!("{seen} of 6 publishes reached the worker");
            };
            seen += b.len();
        }
        assert_eq!(seen, 6);
        // And nothing more comes: each publish once.
        in_tx.send(heartbeat_from(&key, 7)).await.unwrap();
        let Some(Stage::Batch(b)) = out_rx.recv().await else {
            panic!("no batch");
        };
        assert_eq!(b.len(), 1);
    }
}
