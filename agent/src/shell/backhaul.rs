//! Proof of backhaul in the daemon: the measurer's queue task, the invitations this node sends
//! as prover, the `/wisp/bw/1` bodies it answers, and what a finished test hands back
//! ([`crate::backhaul`] decides who tests whom, [`crate::bandwidth`] measures).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{BackhaulSummary, BandwidthReceipt, Outcome};
use wisp_protocol::units::EpochNo;
use wisp_protocol::{Kind, NodeId, ProofId};

use super::{Daemon, MEASURER_SET_BLOB, random_u64, save_blob};
use crate::backhaul::{self, Backhaul, SetError};
use crate::bandwidth::{
    Directions, EpochView, InviteAnswer, InviteRefusal, Measurer, NegotiateError, Negotiator,
    Prover, RefuseReason,
};
use crate::core::Proof;
use crate::metrics::{KindLabel, Metrics, WhyLabel};
use crate::net::{self, NetHandle};
use crate::status::BackhaulStatus;
use crate::wallclock::wall_ms;

/// The daemon's proof-of-backhaul parts.
pub(super) struct BwIo {
    pub(super) state: Backhaul,
    pub(super) prover: Arc<Prover>,
    /// Accepted invitations, to the measurer task (absent when not a measurer).
    pub(super) queue: Option<mpsc::Sender<QueuedTest>>,
}

/// What a bandwidth task hands the daemon when its test ends.
#[derive(Debug)]
pub(super) struct BwDone {
    /// The receipts, for the outbox.
    pub(super) receipts: Vec<Envelope>,
    /// A test of this node as prover: how it went.
    pub(super) proved: Option<BackhaulStatus>,
}

/// `/wisp/bw/1` over the libp2p network: the measurer's requests, the prover's invitations.
pub(super) struct NetNegotiator(pub(super) NetHandle);

impl Negotiator for NetNegotiator {
    async fn request(&self, peer: NodeId, body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        self.0
            .bw_request(peer.to_peer_id(), body)
            .await
            .map_err(|e| match e {
                net::NetError::Timeout(_) => NegotiateError::Timeout,
                other => NegotiateError::unreachable(other),
            })
    }

    async fn public_ip(&self) -> Option<std::net::IpAddr> {
        self.0.public_ip().await
    }
}

/// Runs the queued tests one at a time (tests in parallel would share, and so understate, the
/// measurer's own link) and hands the receipts back.
/// A prover that answers `busy` (another of its measurers is testing it) or never answers the
/// invitation (a lost connection, a timeout: it may have restarted), or a test this measurer
/// could not run for a reason of its own (its endpoint, its address: no receipt is signed
/// then, the prover is not to blame), is tried again this many times, [`BUSY_RETRY`] apart;
/// the receipts of the attempts before the last are not kept.
const BUSY_ATTEMPTS: u32 = 4;
pub(super) const BUSY_RETRY: Duration = Duration::from_secs(15);

/// A test waiting in the measurer's queue: the prover, the epoch, the attempt, and when the
/// epoch ends (Unix ms).
pub(super) type QueuedTest = (NodeId, EpochNo, u32, u64);

/// A queued test starts only this long before its epoch ends, at the latest: both directions
/// and a few seconds to connect and co-sign. A test that straddles the epoch's end is refused
/// by a prover that has moved on, or its receipts arrive late.
pub(super) fn test_margin(cfg: &crate::bandwidth::BwConfig) -> Duration {
    cfg.duration * 2 + Duration::from_secs(3)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn measure_queue(
    margin: Duration,
    measurer: Measurer,
    me: NodeId,
    negotiator: NetNegotiator,
    requeue: mpsc::WeakSender<QueuedTest>,
    mut queue: mpsc::Receiver<QueuedTest>,
    receipts: mpsc::Sender<BwDone>,
    metrics: Arc<Metrics>,
) {
    while let Some((prover, epoch, attempt, end_ms)) = queue.recv().await {
        let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
        if wall_ms().saturating_add(margin_ms) >= end_ms {
            // Nothing signed: the epoch ends before the test could.
            info!(%prover, epoch, "bandwidth test not started: its epoch ends before it could finish");
            metrics
                .bw_tests
                .get_or_create(&WhyLabel {
                    why: "epoch_ending",
                })
                .inc();
            continue;
        }
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let report = measurer
            .measure(&negotiator, prover, epoch, Directions::Both, &mut rng)
            .await;
        if let Some(error) = &report.local_error {
            // Logged at warn by the measurer; nothing was signed.
            metrics
                .bw_tests
                .get_or_create(&WhyLabel {
                    why: "measurer_error",
                })
                .inc();
            if attempt + 1 >= BUSY_ATTEMPTS {
                warn!(%prover, epoch, %error, "bandwidth test not run after {BUSY_ATTEMPTS} attempts: giving up on this prover this epoch");
                continue;
            }
        }
        // A busy prover, a measurer not ready, or a prover that never answered (restarted, its
        // old connection dead): tried again later, and the failure signed only at the last
        // attempt.
        let retry = report.local_error.is_some()
            || report.refusal == Some(RefuseReason::Busy)
            || report.unanswered;
        if retry && attempt + 1 < BUSY_ATTEMPTS {
            debug!(%prover, epoch, attempt, "prover busy, unanswered, or measurer not ready: trying again later");
            tokio::spawn(retry_later(
                requeue.clone(),
                (prover, epoch, attempt + 1, end_ms),
            ));
            continue;
        }
        // Our own receipts, just signed: decode the payloads, no need to verify again.
        let decoded = decode_receipts(&report.receipts);
        let passed = decoded
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Measured(_)))
            .count();
        let why = if report.refusal.is_some() {
            "measured_refused"
        } else if passed == report.receipts.len() && passed > 0 {
            "measured"
        } else {
            "measured_failed"
        };
        let summary = backhaul::summarize(me, epoch, wall_ms(), Directions::Both.list(), &decoded);
        let refusal = report
            .refusal
            .map(|r| format!("the prover answered {}", r.name()));
        log_test_end(
            "measurer",
            prover,
            Directions::Both,
            &summary,
            refusal.as_deref(),
        );
        metrics.bw_tests.get_or_create(&WhyLabel { why }).inc();
        let done = BwDone {
            receipts: report.receipts,
            proved: None,
        };
        if receipts.send(done).await.is_err() {
            return;
        }
    }
}

/// Puts `test` back in the measurer's queue [`BUSY_RETRY`] from now, unless the daemon stopped
/// meanwhile (the queue's last sender is gone) or the queue is full.
pub(super) async fn retry_later(requeue: mpsc::WeakSender<QueuedTest>, test: QueuedTest) {
    tokio::time::sleep(BUSY_RETRY).await;
    let Some(requeue) = requeue.upgrade() else {
        return; // the daemon stopped
    };
    if requeue.try_send(test).is_err() {
        let (prover, epoch, ..) = test;
        warn!(%prover, epoch, "measurer queue full: a test is not retried");
    }
}

/// The payloads of receipt envelopes this node signed or co-signed (not verified again).
fn decode_receipts(receipts: &[Envelope]) -> Vec<BandwidthReceipt> {
    receipts
        .iter()
        .filter_map(|e| wisp_protocol::envelope::decode_canonical(&e.payload).ok())
        .collect()
}

/// A rate for the log: Mbit/s with one decimal, `-` when not measured.
struct Mbps(Option<u64>);

impl std::fmt::Display for Mbps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(bps) => write!(f, "{:.1}", bps as f64 / 1e6),
            None => f.write_str("-"),
        }
    }
}

/// A round-trip time for the log: ms with one decimal, `-` when not measured.
struct Millis(Option<u32>);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(us) => write!(f, "{:.1}", f64::from(us) / 1e3),
            None => f.write_str("-"),
        }
    }
}

/// The one INFO line a finished bandwidth test gets, on either side: the other party, this
/// node's role, the directions, the figures and the outcome (`ok`, or the failure and, when
/// known, more about it).
fn log_test_end(
    role: &'static str,
    peer: NodeId,
    directions: Directions,
    s: &BackhaulSummary,
    detail: Option<&str>,
) {
    let name = backhaul::outcome_name(s.outcome);
    let outcome = match detail {
        Some(d) => format!("{name}: {d}"),
        None => name.to_string(),
    };
    info!(
        %peer,
        role,
        epoch = s.epoch,
        directions = directions.name(),
        down_mbps = %Mbps(s.down_bps),
        up_mbps = %Mbps(s.up_bps),
        rtt_idle_ms = %Millis(s.rtt_idle_us),
        rtt_loaded_ms = %Millis(s.rtt_loaded_us),
        %outcome,
        "bandwidth test ended"
    );
}

/// How inviting one measurer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Invited {
    /// The measurer queued the test.
    Queued,
    /// The measurer declined, and said why.
    Declined(InviteRefusal),
    /// No answer that settles it after every attempt; the last attempt's reason.
    Failed(String),
}

/// Attempts at inviting one measurer, 10 s × the attempt number apart.
pub(super) const INVITE_ATTEMPTS: u32 = 3;

/// Invites `measurer` for `epoch`, trying a busy, not yet ready or unreachable one again a few
/// times, with `pause` (a sleep, in the daemon) between the attempts; no attempt starts after
/// `budget` (the rest of the epoch) has been spent pausing.
pub(super) async fn invite<F: std::future::Future<Output = ()>>(
    negotiator: &impl Negotiator,
    measurer: NodeId,
    epoch: EpochNo,
    budget: Duration,
    mut pause: impl FnMut(Duration) -> F,
) -> Invited {
    let mut paused = Duration::ZERO;
    let body = Backhaul::invite_body(epoch);
    let mut why = String::new();
    for attempt in 1..=INVITE_ATTEMPTS {
        why = match negotiator.request(measurer, body.clone()).await {
            Ok(answer) => match crate::bandwidth::negotiate::decode_body::<InviteAnswer>(&answer) {
                Some(InviteAnswer::Queued) => return Invited::Queued,
                Some(InviteAnswer::Refused(InviteRefusal::Busy)) => {
                    "the measurer is busy (its test queue is full)".to_string()
                }
                Some(InviteAnswer::Refused(InviteRefusal::NotYet)) => {
                    "the measurer has not got this epoch yet".to_string()
                }
                Some(InviteAnswer::Refused(r)) => return Invited::Declined(r),
                None if answer.is_empty() => {
                    "the measurer takes no bandwidth tests (bandwidth.enabled = false)".to_string()
                }
                None => "the measurer's answer was unreadable".to_string(),
            },
            Err(e) => e.to_string(),
        };
        debug!(%measurer, epoch, attempt, "bandwidth test invitation: {why}");
        if attempt < INVITE_ATTEMPTS {
            let wait = Duration::from_secs(10 * u64::from(attempt));
            paused += wait;
            if paused >= budget {
                why.push_str("; the epoch ended before another attempt");
                break;
            }
            pause(wait).await;
        }
    }
    Invited::Failed(why)
}

/// Invites `measurer` [`invite`] after `after`, pausing on the tokio clock between attempts.
pub(super) async fn invite_after(
    negotiator: &impl Negotiator,
    measurer: NodeId,
    epoch: EpochNo,
    after: Duration,
    budget: Duration,
) -> Invited {
    tokio::time::sleep(after).await;
    invite(negotiator, measurer, epoch, budget, tokio::time::sleep).await
}

/// Invites one measurer after `after`, and logs and counts how that ended.
async fn send_invite(
    net: NetHandle,
    measurer: NodeId,
    epoch: EpochNo,
    after: Duration,
    budget: Duration,
    metrics: Arc<Metrics>,
) {
    let why = match invite_after(&NetNegotiator(net), measurer, epoch, after, budget).await {
        Invited::Queued => {
            info!(%measurer, epoch, "bandwidth test: invitation queued");
            "queued"
        }
        Invited::Declined(reason) => {
            info!(%measurer, epoch, ?reason, "bandwidth test: invitation declined");
            "declined"
        }
        Invited::Failed(reason) => {
            warn!(%measurer, epoch, attempts = INVITE_ATTEMPTS, "bandwidth test: the measurer could not be invited: {reason}");
            "failed"
        }
    };
    metrics.bw_invites.get_or_create(&WhyLabel { why }).inc();
}

impl Daemon {
    /// A `/wisp/bw/1` body from `peer`: an invitation (we measure it) or a measurer's request
    /// (we are measured). Returns the answer and a label for the metrics.
    pub(super) fn on_bw_request(
        &mut self,
        peer: libp2p::PeerId,
        body: &[u8],
    ) -> (Vec<u8>, &'static str) {
        let Ok(from) = NodeId::from_peer_id(&peer) else {
            return (Vec::new(), "not_a_node");
        };
        let Some(bw) = &mut self.bw else {
            // `bandwidth.enabled = false`: an empty body says no.
            return (Vec::new(), "disabled");
        };
        if Backhaul::is_invite(body) {
            let answer = match bw.state.on_invite(from, body) {
                Ok(epoch) => match bw.queue.as_ref().map(|q| {
                    let end = bw.state.epoch_end(epoch).unwrap_or(u64::MAX);
                    q.try_send((from, epoch, 0, end))
                }) {
                    Some(Ok(())) => InviteAnswer::Queued,
                    _ => {
                        bw.state.forget(&from);
                        InviteAnswer::Refused(InviteRefusal::Busy)
                    }
                },
                Err(r) => InviteAnswer::Refused(r),
            };
            let why = match answer {
                InviteAnswer::Queued => "invite_queued",
                InviteAnswer::Refused(_) => "invite_refused",
            };
            return (crate::bandwidth::negotiate::encode_body(&answer), why);
        }
        // Without the epoch's view every request is refused (wrong epoch), co-signed as usual.
        let none = EpochView {
            epoch: EpochNo::MAX,
            seed: [0; 32],
            eligible: Vec::new(),
            measurers_per_prover: 0,
        };
        let view = bw.state.view().unwrap_or(&none);
        let (answer, job) = bw.prover.handle_request(from, body, view);
        let Some(job) = job else {
            return (answer, "request_refused");
        };
        let prover = bw.prover.clone();
        let receipts = self.receipts_tx.clone();
        let metrics = self.metrics.clone();
        let (epoch, directions) = (job.request().epoch, job.request().directions);
        self.bw_tasks.spawn(async move {
            let report = prover.run(job).await;
            // The status document and the log line show the error's text.
            let error = report.error.map(|e| e.to_string());
            let why = if error.is_some() {
                "proved_error"
            } else {
                "proved"
            };
            let summary = backhaul::summarize(
                from,
                epoch,
                wall_ms(),
                directions.list(),
                &decode_receipts(&report.receipts),
            );
            log_test_end("prover", from, directions, &summary, error.as_deref());
            metrics.bw_tests.get_or_create(&WhyLabel { why }).inc();
            let done = BwDone {
                receipts: report.receipts,
                proved: Some(BackhaulStatus { summary, error }),
            };
            let _ = receipts.send(done).await;
        });
        (answer, "request_accepted")
    }

    /// A `wisp/v1/measurers/{part}` payload. A completed set is saved, so that a restart
    /// mid-epoch does not wait for a broker that does not re-send retained messages.
    pub(super) async fn on_measurer_set(&mut self, payload: Vec<u8>, now: u64) {
        let Some(bw) = &mut self.bw else { return };
        if payload.is_empty() {
            // A cleared retained part.
            return;
        }
        match bw.state.on_measurer_set(&payload, now, random_u64()) {
            Ok(Some(parts)) => {
                if let Some(v) = bw.state.view() {
                    info!(
                        epoch = v.epoch,
                        nodes = v.eligible.len(),
                        "measurer set received"
                    );
                }
                let blob = backhaul::pack(&parts);
                if !save_blob(self.store.clone(), MEASURER_SET_BLOB, blob).await {
                    warn!("could not save the measurer set");
                }
            }
            Ok(None) => {}
            Err(SetError::Old) => debug!("ignored a measurer-set part of an older epoch"),
            Err(e) => {
                warn!("refused a measurer-set part: {e}");
                self.metrics
                    .oracle_messages_refused
                    .get_or_create(&WhyLabel {
                        why: "measurer_set",
                    })
                    .inc();
            }
        }
    }

    /// Invites this epoch's measurers when it is time (each in a task of its own).
    pub(super) fn send_invites(&mut self, now: u64) {
        let (Some(bw), Some(net)) = (&mut self.bw, &self.net) else {
            return;
        };
        let Some((epoch, measurers)) = bw.state.poll_invites(now) else {
            return;
        };
        info!(
            epoch,
            measurers = measurers.len(),
            "inviting this epoch's measurers"
        );
        // One at a time, roughly: a prover runs one test at a time and answers `busy` to the
        // others, so the invitations are spread by about one test's length.
        let gap = self.cfg.bandwidth.test.duration * 2 + Duration::from_secs(5);
        // Retries stop with the epoch: an invitation for an ended epoch is declined.
        let left = bw.state.epoch_end(epoch).map_or(Duration::MAX, |end| {
            Duration::from_millis(end.saturating_sub(now))
        });
        for (i, m) in measurers.into_iter().enumerate() {
            let after = gap * u32::try_from(i).unwrap_or(u32::MAX);
            self.bw_tasks.spawn(send_invite(
                net.clone(),
                m,
                epoch,
                after,
                left.saturating_sub(after),
                self.metrics.clone(),
            ));
        }
    }

    /// A bandwidth test ended: its receipts are staged in the outbox, committed and sent like
    /// any proof; a test of this node as prover becomes the one `/status` shows.
    pub(super) fn on_bw_done(&mut self, done: BwDone) {
        let now = wall_ms();
        if let Some(proved) = done.proved {
            self.last_backhaul = Some(proved);
            // The gauges and `/status` show it at once.
            self.refresh_gauges(now);
            // And on the retained MQTT status at this turn, not up to 30 s later.
            self.next_status_ms = now;
        }
        for env in done.receipts {
            let bytes = env.to_bytes();
            self.metrics
                .proofs_signed
                .get_or_create(&KindLabel {
                    kind: Kind::BandwidthReceipt.name(),
                })
                .inc();
            self.stage(
                Proof {
                    id: ProofId::of(&bytes),
                    kind: Kind::BandwidthReceipt,
                    bytes,
                    created_ms: now,
                },
                now,
            );
        }
    }
}
