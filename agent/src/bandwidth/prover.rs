//! The proving side's async shell: [`Prover`] answers `/wisp/bw/1` requests, then connects to
//! the measurer, follows its lead and co-signs the receipts that match what it saw.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{Envelope, EnvelopeRef, decode_canonical, open};
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{BandwidthReceipt, Direction, MAX_WIRE_OVERHEAD_PERMILLE, Outcome};
use wisp_protocol::schedule::is_assigned;

use super::cheat::{Cheat, CheatingSender};
use super::content::{SENDER_GRACE, receive_content, send_content};
use super::control::{CONTROL_TIMEOUT, caps_of, ms_u32, spawn_reader};
use super::negotiate::{
    BwRequest, BwResponse, RefuseReason, SignedResponse, VERSION, decode_body, encode_body,
    refusal_receipt,
};
use super::quic;
use super::report::ProverReport;
use super::stats;
use super::stream::{End, Keystream, ReceiverReport, SendLog, commitment};
use super::wire::{self, Ctl, WireEnd, WireError};
use super::{BwConfig, EpochView, MAX_DURATION, MIN_BYTE_CAP};

/// An accepted test the prover must run with [`Prover::run`]; holds one of the prover's test
/// slots until dropped.
#[derive(Debug)]
pub struct ProverJob {
    measurer: NodeId,
    request: BwRequest,
    _slot: OwnedSemaphorePermit,
}

impl ProverJob {
    /// The accepted request.
    pub fn request(&self) -> &BwRequest {
        &self.request
    }
}

/// Why a prover's session ended early ([`ProverReport::error`]).
#[derive(Debug, thiserror::Error)]
pub enum ProverError {
    /// Its client endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] quic::EndpointError),
    /// The connection to the measurer could not be started.
    #[error(transparent)]
    Connect(#[from] quinn::ConnectError),
    /// The measurer did not accept the connection in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The connection failed, or the control stream could not be opened on it.
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    /// Reading or writing a control frame failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The measurer's secret does not match its commitment from the negotiation.
    #[error("the measurer revealed no secret matching its commitment")]
    BadReveal,
    /// A pong or a report could not be written.
    #[error("control stream lost")]
    ControlLost,
    /// The co-signatures could not be written.
    #[error("control stream lost before co-signing")]
    ControlLostBeforeCosign,
    /// The measurer sent a frame out of turn.
    #[error("unexpected control frame {0:?}")]
    UnexpectedFrame(Box<Ctl>),
    /// The measurer closed the control stream before asking for co-signatures.
    #[error("control stream closed")]
    ControlClosed,
    /// The session outlasted its bound (negotiation to co-signature).
    #[error("session timed out")]
    Timeout,
}

/// The proving side.
#[derive(Debug)]
pub struct Prover {
    key: NodeKey,
    cfg: BwConfig,
    bind: SocketAddr,
    slots: Arc<Semaphore>,
    cheat: Option<Cheat>,
}

/// The prover's own view of a direction, for deciding what to co-sign.
#[derive(Clone, Debug)]
enum Seen {
    Received(ReceiverReport),
    Sent(SendLog),
}

impl Prover {
    /// A prover with key `key`; its test connections bind to `bind` (an unspecified address
    /// and port 0 suit most hosts).
    pub fn new(key: NodeKey, cfg: BwConfig, bind: SocketAddr) -> Self {
        Self {
            key,
            slots: Arc::new(Semaphore::new(cfg.max_concurrent)),
            cfg,
            bind,
            cheat: None,
        }
    }

    /// Fault injection: this prover cheats as told (tests and the benchmark only: the
    /// `cheats` feature).
    #[cfg(feature = "cheats")]
    pub fn with_cheat(mut self, cheat: Cheat) -> Self {
        self.cheat = Some(cheat);
        self
    }

    /// Answers a `/wisp/bw/1` request body from `from` (the authenticated libp2p peer). Returns
    /// the response body and, when accepted, the job to [`Prover::run`].
    pub fn handle_request(
        &self,
        from: NodeId,
        body: &[u8],
        epoch: &EpochView,
    ) -> (Vec<u8>, Option<ProverJob>) {
        let Some(req) = decode_body::<BwRequest>(body) else {
            return (self.refuse(from, None, RefuseReason::BadRequest), None);
        };
        let reason = if req.version != VERSION
            || req.duration_ms == 0
            || u128::from(req.duration_ms) > MAX_DURATION.as_millis()
            || req.byte_cap < MIN_BYTE_CAP
            || req.byte_cap > self.cfg.byte_cap
            || from == self.key.id()
        {
            Some(RefuseReason::BadRequest)
        } else if req.epoch != epoch.epoch {
            Some(RefuseReason::WrongEpoch)
        } else if !is_assigned(
            &epoch.seed,
            &self.key.id(),
            &from,
            &epoch.eligible,
            epoch.measurers_per_prover,
        ) {
            Some(RefuseReason::NotAssigned)
        } else {
            None
        };
        if let Some(r) = reason {
            return (self.refuse(from, Some(&req), r), None);
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return (self.refuse(from, Some(&req), RefuseReason::Busy), None);
        };
        let resp = SignedResponse::sign(
            &self.key,
            &from,
            BwResponse::Accept {
                test_id: req.test_id,
            },
        );
        (
            encode_body(&resp),
            Some(ProverJob {
                measurer: from,
                request: req,
                _slot: slot,
            }),
        )
    }

    fn refuse(&self, measurer: NodeId, req: Option<&BwRequest>, reason: RefuseReason) -> Vec<u8> {
        let (test_id, cosignatures) = match req {
            Some(r) => (
                r.test_id,
                r.directions
                    .list()
                    .iter()
                    .map(|&d| {
                        let env = Envelope::sign(
                            &self.key,
                            &refusal_receipt(r, self.key.id(), measurer, d),
                        );
                        env.signature
                    })
                    .collect(),
            ),
            None => (ByteArray([0; 16]), Vec::new()),
        };
        encode_body(&SignedResponse::sign(
            &self.key,
            &measurer,
            BwResponse::Refuse {
                test_id,
                reason,
                cosignatures,
            },
        ))
    }

    /// Runs an accepted test: connects to the measurer's endpoint (pinned certificate), follows
    /// its lead, and co-signs the receipts that match what it saw.
    pub async fn run(&self, job: ProverJob) -> ProverReport {
        let test_id = job.request.test_id.0;
        let mut report = ProverReport {
            test_id,
            receipts: Vec::new(),
            error: None,
        };
        if let Err(e) = self.session(&job, &mut report).await {
            report.error = Some(e);
        }
        report
    }

    async fn session(&self, job: &ProverJob, out: &mut ProverReport) -> Result<(), ProverError> {
        let req = &job.request;
        let bind = match (req.quic_addr, self.bind) {
            (SocketAddr::V6(_), SocketAddr::V4(b)) if b.ip().is_unspecified() => {
                SocketAddr::from(([0u16; 8], 0))
            }
            _ => self.bind,
        };
        let (endpoint, client, _bufs) = quic::client(bind, &self.cfg.tuning, req.cert_sha256.0)?;
        let connecting = endpoint.connect_with(client, req.quic_addr, quic::server_name())?;
        let conn = timeout(self.cfg.connect_timeout, connecting)
            .await
            .map_err(|_| ProverError::ConnectTimeout)??;
        let (mut ctl, recv) = conn.open_bi().await?;
        wire::write(
            &mut ctl,
            &Ctl::Hello {
                test_id: req.test_id,
            },
        )
        .await?;
        let (mut frames, _reader) = spawn_reader(recv);
        let secret = match timeout(CONTROL_TIMEOUT, frames.recv()).await {
            Ok(Some(Ok(Ctl::Reveal { secret })))
                if commitment(&secret.0) == req.key_commitment.0 =>
            {
                secret.0
            }
            _ => {
                conn.close(2u32.into(), b"bad reveal");
                return Err(ProverError::BadReveal);
            }
        };
        let caps = caps_of(
            &self.cfg,
            req.byte_cap,
            Duration::from_millis(u64::from(req.duration_ms)),
        );
        let (done_tx, mut done_rx) = mpsc::channel::<(Direction, Seen)>(2);
        let mut seen: Vec<(Direction, Seen)> = Vec::new();
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        // The whole session is bounded: negotiation to co-signature.
        let deadline = Instant::now()
            + (caps.duration + caps.stall + SENDER_GRACE + CONTROL_TIMEOUT) * 2
            + CONTROL_TIMEOUT * 2;
        let result = loop {
            tokio::select! {
                f = frames.recv() => match f {
                    Some(Ok(Ctl::Ping { seq })) => {
                        if wire::write(&mut ctl, &Ctl::Pong { seq }).await.is_err() {
                            break Err(ProverError::ControlLost);
                        }
                    }
                    Some(Ok(Ctl::Begin { direction })) if !seen.iter().any(|s| s.0 == direction)
                        && tasks.len() < 2 => {
                        let ks = Keystream::new(&secret, &req.test_id.0, direction);
                        let tx = done_tx.clone();
                        let conn2 = conn.clone();
                        let cheat = self.cheat.map(CheatingSender::new);
                        tasks.push(tokio::spawn(async move {
                            let v = match direction {
                                Direction::Down => Seen::Received(receive_content(conn2, ks, caps).await),
                                Direction::Up => {
                                    let Ok(send) = conn2.open_uni().await else { return };
                                    Seen::Sent(send_content(send, ks, caps, cheat).await)
                                }
                            };
                            let _ = tx.send((direction, v)).await;
                        }));
                    }
                    Some(Ok(Ctl::Ended)) => {}
                    Some(Ok(Ctl::Sign { receipts })) => {
                        // A sender learns that the measurer stopped its stream one round trip
                        // after the measurer did: wait for its final count before judging.
                        while seen.len() < tasks.len() {
                            match timeout(CONTROL_TIMEOUT, done_rx.recv()).await {
                                Ok(Some(x)) => seen.push(x),
                                _ => break,
                            }
                        }
                        let mut sigs = Vec::new();
                        for (i, bytes) in receipts.iter().enumerate().take(2) {
                            let want = req.directions.list().get(i).copied();
                            let view = seen.iter().find(|s| Some(s.0) == want).map(|s| &s.1);
                            let sig = want.and_then(|d| self.judge(job, d, bytes, view));
                            if let Some((sig, env)) = sig {
                                out.receipts.push(env);
                                sigs.push(Some(sig));
                            } else {
                                sigs.push(None);
                            }
                        }
                        if wire::write(&mut ctl, &Ctl::Cosigned { signatures: sigs }).await.is_err() {
                            break Err(ProverError::ControlLostBeforeCosign);
                        }
                        let _ = ctl.finish();
                        break Ok(());
                    }
                    Some(Ok(other)) => break Err(ProverError::UnexpectedFrame(Box::new(other))),
                    Some(Err(e)) => break Err(ProverError::Wire(e)),
                    None => break Err(ProverError::ControlClosed),
                },
                Some((d, v)) = done_rx.recv() => {
                    if let (Seen::Received(r), Direction::Down) = (&v, d) {
                        let (bytes, bins) = match self.cheat {
                            Some(c) => c.report(r),
                            None => (r.bytes, r.bins.clone()),
                        };
                        let rep = Ctl::Report {
                            end: WireEnd::from(r.end),
                            bytes,
                            duration_ms: ms_u32(r.duration),
                            bins,
                        };
                        if wire::write(&mut ctl, &rep).await.is_err() {
                            break Err(ProverError::ControlLost);
                        }
                    }
                    seen.push((d, v));
                }
                () = sleep_until(deadline) => break Err(ProverError::Timeout),
            }
        };
        for t in tasks {
            t.abort();
        }
        // Give the measurer time to read the co-signatures before the connection goes.
        let _ = timeout(Duration::from_secs(2), conn.closed()).await;
        endpoint.close(0u32.into(), b"done");
        result
    }

    /// Checks one receipt the measurer asks us to co-sign against our own view; returns our
    /// co-signature and the complete envelope when we agree.
    fn judge(
        &self,
        job: &ProverJob,
        direction: Direction,
        bytes: &[u8],
        view: Option<&Seen>,
    ) -> Option<(ByteArray<64>, Envelope)> {
        let env = EnvelopeRef::parse(bytes).ok()?;
        if env.kind != Kind::BandwidthReceipt || env.signer_id() != job.measurer {
            return None;
        }
        env.verify().ok()?;
        let r: BandwidthReceipt = decode_canonical(env.payload).ok()?;
        let req = &job.request;
        if r.test_id != req.test_id
            || r.epoch != req.epoch
            || r.prover != self.key.id()
            || r.measurer != job.measurer
            || r.direction != direction
        {
            return None;
        }
        let agree = match (&r.outcome, view) {
            (Outcome::Measured(m), Some(Seen::Received(mine))) => {
                // The figures the measurer derived from our report: the same bins over the
                // duration as reported, in whole milliseconds (a test shorter than one window
                // is rated over that duration, so the rounding shows in the rate).
                let reported = Duration::from_millis(u64::from(ms_u32(mine.duration)));
                // The measurer scales them to the IP layer by its own overhead ratio, within
                // the protocol's bound.
                let s = stats::summarize(&mine.bins, reported)?;
                let max = s.scaled(MAX_WIRE_OVERHEAD_PERMILLE);
                !matches!(mine.end, End::Failed(_))
                    && m.bytes == mine.bytes
                    && m.duration_ms == ms_u32(mine.duration).max(1)
                    && (s.median_bps..=max.median_bps).contains(&m.median_bps)
                    && (s.p10_bps..=max.p10_bps).contains(&m.p10_bps)
            }
            (Outcome::Failed(f), Some(Seen::Received(mine))) => mine.end == End::Failed(*f),
            // Upload: the measurer cannot have verified more than we sent.
            (Outcome::Measured(m), Some(Seen::Sent(log))) => m.bytes <= log.total,
            _ => false,
        };
        if !agree {
            return None;
        }
        let mut full = Envelope {
            version: bytes[0],
            kind: env.kind,
            payload: env.payload.to_vec(),
            signer: env.signer_id(),
            signature: ByteArray(*env.signature),
            cosigners: Vec::new(),
        };
        full.cosign(&self.key);
        open::<BandwidthReceipt>(&full.to_bytes()).ok()?;
        let sig = full.cosigners.first()?.signature;
        Some((sig, full))
    }
}
