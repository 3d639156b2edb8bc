//! The measuring side's async shell: [`Measurer`] drives the sans-IO parts over a quinn
//! connection. Everything here is I/O, timeouts and task plumbing; decisions (when a direction
//! ends, what it measured, whether a report is believable) are made in [`super::stream`] and
//! [`super::stats`].
//!
//! Every failure of the test ends in a receipt with `Outcome::Failed(reason)` signed by the
//! measurer, never in a made-up figure: a test that cannot be completed is evidence too. A
//! failure of the measurer's own making (it cannot bind its endpoint, has no address to give)
//! is not evidence about the prover: it ends in no receipt at all
//! ([`MeasureReport::local_error`]), and the caller may try again later.
//!
//! A measurer binds its test endpoint once and reuses it for every test (one at a time), with a
//! fresh certificate per test; with port 0 configured, each test gets a fresh endpoint on a
//! fresh port instead. Rebinding a fixed port per test failed with `Address already in use`
//! while the previous test's connection was still draining.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRng;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{Cosignature, Envelope, open};
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::msg::{BandwidthReceipt, BwFailure, Direction, Outcome};
use wisp_protocol::units::EpochNo;

use super::BwConfig;
use super::content::{ip_bytes, receive_content_timed, send_content, since};
use super::control::{CONTROL_TIMEOUT, Pings, caps_of, ms_u32, spawn_reader, timeout_at};
use super::negotiate::{
    BwRequest, BwResponse, Directions, NegotiateError, Negotiator, RefuseReason, SignedResponse,
    VERSION, decode_body, encode_body, refusal_receipt,
};
use super::quic::{self, SocketBuffers};
use super::report::{DirectionDetail, MeasureReport, outcome_of, to_ip_layer};
use super::stats;
use super::stream::{Caps, ClaimedReport, End, Keystream, SendLog, check_report, commitment};
use super::wire::{self, Ctl, MAX_REPORT_BINS, WireError};

/// Why a measurer could not run a test, for a reason of its own: nothing about the prover was
/// learnt and no receipt is signed ([`MeasureReport::local_error`]); the test may be tried again
/// later. The texts are what the daemon logs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MeasurerError {
    /// Its test endpoint could not be set up on the configured address.
    #[error("the bandwidth test endpoint on {bind} (bandwidth.listen): {source}")]
    Endpoint {
        /// The configured address (`bandwidth.listen`).
        bind: SocketAddr,
        /// Why.
        source: Arc<quic::EndpointError>,
    },
    /// Its endpoint listens on an unspecified IP and the node knows no public address yet.
    #[error(
        "no public address to give the prover: the node has no confirmed external address yet (set bandwidth.advertise, or net.external_addresses)"
    )]
    NoPublicAddress,
    /// Its endpoint has no local address.
    #[error("the bandwidth test endpoint has no address: {0}")]
    NoAddress(Arc<std::io::Error>),
    /// Its endpoint closed while it waited for the prover's connection.
    #[error("the bandwidth test endpoint closed")]
    EndpointClosed,
}

/// The measuring side.
#[derive(Debug)]
pub struct Measurer {
    key: NodeKey,
    cfg: BwConfig,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    /// The test endpoint on a fixed `bind` port, bound at the first test and kept. Locked for
    /// the whole of a test, so tests run one at a time (parallel tests would share, and
    /// understate, the measurer's link, and each swaps in its own certificate).
    endpoint: tokio::sync::Mutex<Option<(quinn::Endpoint, SocketBuffers)>>,
    /// Fault injection: report this many thousandths of every upload measured (only with the
    /// `cheats` feature).
    #[cfg(feature = "cheats")]
    shave_permille: Option<u32>,
}

/// State of an accepted test on the measurer's side.
struct Session {
    conn: quinn::Connection,
    ctl: quinn::SendStream,
    frames: mpsc::Receiver<Result<Ctl, WireError>>,
    pings: Pings,
}

impl Measurer {
    /// A measurer with key `key` binding its test endpoints to `bind`. `advertise` is the
    /// address put in requests when `bind` is not reachable as is (unspecified IP, NAT).
    pub fn new(
        key: NodeKey,
        cfg: BwConfig,
        bind: SocketAddr,
        advertise: Option<SocketAddr>,
    ) -> Self {
        Self {
            key,
            cfg,
            bind,
            advertise,
            endpoint: tokio::sync::Mutex::new(None),
            #[cfg(feature = "cheats")]
            shave_permille: None,
        }
    }

    /// Fault injection (a devnet's lying measurer, tests): this measurer signs `permille`
    /// thousandths of the bytes and rates it measured of every prover's upload. The prover
    /// co-signs it (it cannot see what arrived, only that no more than it sent is claimed);
    /// the oracle's comparison of measurers has to catch it. Only with the `cheats` feature.
    #[cfg(feature = "cheats")]
    #[must_use]
    pub fn with_shaved_uploads(mut self, permille: u32) -> Self {
        self.shave_permille = Some(permille.min(1_000));
        self
    }

    /// The outcome to sign for a direction: as measured, unless this measurer lies.
    #[cfg(feature = "cheats")]
    fn reported(&self, direction: Direction, outcome: Outcome) -> Outcome {
        match (self.shave_permille, direction, outcome) {
            (Some(k), Direction::Up, Outcome::Measured(mut m)) => {
                let shave =
                    |v: u64| u64::try_from(u128::from(v) * u128::from(k) / 1_000).unwrap_or(v);
                m.bytes = shave(m.bytes);
                m.median_bps = shave(m.median_bps);
                m.p10_bps = shave(m.p10_bps);
                Outcome::Measured(m)
            }
            (_, _, o) => o,
        }
    }

    /// The outcome to sign for a direction: as measured.
    #[cfg(not(feature = "cheats"))]
    fn reported(&self, _direction: Direction, outcome: Outcome) -> Outcome {
        outcome
    }

    fn sign(&self, r: &BandwidthReceipt) -> Envelope {
        Envelope::sign(&self.key, r)
    }

    fn receipt(
        &self,
        test_id: [u8; 16],
        epoch: EpochNo,
        prover: NodeId,
        direction: Direction,
        outcome: Outcome,
    ) -> BandwidthReceipt {
        BandwidthReceipt {
            test_id: ByteArray(test_id),
            epoch,
            prover,
            measurer: self.key.id(),
            direction,
            outcome,
        }
    }

    fn all_failed(
        &self,
        req: &BwRequest,
        prover: NodeId,
        failure: BwFailure,
        sockets: Option<SocketBuffers>,
    ) -> MeasureReport {
        MeasureReport {
            test_id: req.test_id.0,
            receipts: req
                .directions
                .list()
                .iter()
                .map(|&d| {
                    self.sign(&self.receipt(
                        req.test_id.0,
                        req.epoch,
                        prover,
                        d,
                        Outcome::Failed(failure),
                    ))
                })
                .collect(),
            refusal: None,
            details: Vec::new(),
            rtt_idle_us: 0,
            sockets,
            wire_bytes: 0,
            local_error: None,
            unanswered: false,
        }
    }

    /// No test: the measurer failed on its own side. No receipt, nothing blamed on the prover.
    fn local_failure(
        req: &BwRequest,
        error: MeasurerError,
        sockets: Option<SocketBuffers>,
    ) -> MeasureReport {
        tracing::warn!(
            error = %error,
            "bandwidth test not run: this measurer's own problem; no receipt signed"
        );
        MeasureReport {
            test_id: req.test_id.0,
            receipts: Vec::new(),
            refusal: None,
            details: Vec::new(),
            rtt_idle_us: 0,
            sockets,
            wire_bytes: 0,
            local_error: Some(error),
            unanswered: false,
        }
    }

    /// The endpoint for one test, serving a fresh certificate (whose SHA-256 it returns), and
    /// whether it is this test's alone (port 0: a fresh port per test, closed after it).
    fn endpoint_for_test(
        &self,
        kept: &mut Option<(quinn::Endpoint, SocketBuffers)>,
    ) -> Result<(quinn::Endpoint, [u8; 32], SocketBuffers, bool), quic::EndpointError> {
        let (config, pin) = quic::server_config(&self.cfg.tuning)?;
        if self.bind.port() == 0 {
            let (endpoint, sockets) = quic::server_endpoint(self.bind, &self.cfg.tuning, config)?;
            return Ok((endpoint, pin, sockets, true));
        }
        if let Some((endpoint, sockets)) = kept.as_ref() {
            endpoint.set_server_config(Some(config));
            return Ok((endpoint.clone(), pin, *sockets, false));
        }
        let (endpoint, sockets) = quic::server_endpoint(self.bind, &self.cfg.tuning, config)?;
        *kept = Some((endpoint.clone(), sockets));
        Ok((endpoint, pin, sockets, false))
    }

    /// Runs one test of `prover` for `epoch`: negotiates over `negotiator`, measures the
    /// directions, and gets the receipts co-signed. Never fails: every problem of the test
    /// becomes a `Failed` receipt, and a problem of the measurer's own a report without
    /// receipts ([`MeasureReport::local_error`]). Concurrent calls run one after the other.
    pub async fn measure<N: Negotiator, R: CryptoRng + ?Sized>(
        &self,
        negotiator: &N,
        prover: NodeId,
        epoch: EpochNo,
        directions: Directions,
        rng: &mut R,
    ) -> MeasureReport {
        let mut test_id = [0u8; 16];
        rng.fill_bytes(&mut test_id);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut req = BwRequest {
            version: VERSION,
            test_id: ByteArray(test_id),
            epoch,
            directions,
            byte_cap: self.cfg.byte_cap,
            duration_ms: ms_u32(self.cfg.duration),
            quic_addr: self.bind,
            cert_sha256: ByteArray([0; 32]),
            key_commitment: ByteArray(commitment(&secret)),
        };
        let mut kept = self.endpoint.lock().await;
        let (endpoint, pin, sockets, own) = match self.endpoint_for_test(&mut kept) {
            Ok(x) => x,
            Err(e) => {
                let error = MeasurerError::Endpoint {
                    bind: self.bind,
                    source: Arc::new(e),
                };
                return Self::local_failure(&req, error, None);
            }
        };
        req.cert_sha256 = ByteArray(pin);
        req.quic_addr = match (self.advertise, endpoint.local_addr()) {
            (Some(a), _) => a,
            (None, Ok(a)) if a.ip().is_unspecified() => match negotiator.public_ip().await {
                Some(ip) => SocketAddr::new(ip, a.port()),
                None => {
                    let error = MeasurerError::NoPublicAddress;
                    return Self::local_failure(&req, error, Some(sockets));
                }
            },
            (None, Ok(a)) => a,
            (None, Err(e)) => {
                *kept = None;
                let error = MeasurerError::NoAddress(Arc::new(e));
                return Self::local_failure(&req, error, Some(sockets));
            }
        };
        let answer = timeout(
            self.cfg.connect_timeout,
            negotiator.request(prover, encode_body(&req)),
        )
        .await;
        let body = match answer {
            Ok(Ok(b)) => b,
            Err(_) | Ok(Err(NegotiateError::Timeout)) => {
                let mut r = self.all_failed(&req, prover, BwFailure::Timeout, Some(sockets));
                r.unanswered = true;
                return r;
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "bandwidth negotiation");
                let mut r = self.all_failed(&req, prover, BwFailure::Transport, Some(sockets));
                r.unanswered = true;
                return r;
            }
        };
        let me = self.key.id();
        let signed = decode_body::<SignedResponse>(&body).filter(|s| s.verify(&prover, &me));
        match signed.map(|s| s.response) {
            Some(BwResponse::Accept { test_id: t }) if t == req.test_id => {}
            Some(BwResponse::Refuse {
                test_id: t,
                reason,
                cosignatures,
            }) if t == req.test_id => {
                return self.refused(&req, prover, reason, &cosignatures, sockets);
            }
            // An unsigned, garbled or mismatched answer is no answer.
            _ => return self.all_failed(&req, prover, BwFailure::Transport, Some(sockets)),
        }
        let mut report = self
            .run_accepted(&endpoint, &req, &secret, prover, sockets)
            .await;
        report.sockets = Some(sockets);
        if own {
            endpoint.close(0u32.into(), b"done");
            let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        } else if report.local_error.is_some() {
            // The kept endpoint failed: bind a new one at the next test.
            endpoint.close(0u32.into(), b"endpoint failed");
            *kept = None;
        }
        report
    }

    fn refused(
        &self,
        req: &BwRequest,
        prover: NodeId,
        reason: RefuseReason,
        cosignatures: &[ByteArray<64>],
        sockets: SocketBuffers,
    ) -> MeasureReport {
        let receipts = req
            .directions
            .list()
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let mut env = self.sign(&refusal_receipt(req, prover, self.key.id(), d));
                if let Some(sig) = cosignatures.get(i) {
                    attach_cosignature(&mut env, prover, *sig);
                }
                env
            })
            .collect();
        MeasureReport {
            test_id: req.test_id.0,
            receipts,
            refusal: Some(reason),
            details: Vec::new(),
            rtt_idle_us: 0,
            sockets: Some(sockets),
            wire_bytes: 0,
            local_error: None,
            unanswered: false,
        }
    }

    /// Waits for the prover's connection. `Ok(Err(_))` is the measurer's own failure (its
    /// endpoint closed), not the prover's.
    async fn accept_session(
        &self,
        endpoint: &quinn::Endpoint,
        req: &BwRequest,
        secret: &[u8; 32],
    ) -> Result<Result<Session, MeasurerError>, BwFailure> {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        // Connections that are not our prover's (wrong test id, an earlier test's certificate)
        // are closed and waited past.
        loop {
            let Some(incoming) = timeout_at(deadline, endpoint.accept())
                .await
                .ok_or(BwFailure::Timeout)?
            else {
                return Ok(Err(MeasurerError::EndpointClosed));
            };
            let Ok(connecting) = incoming.accept() else {
                continue;
            };
            let Some(Ok(conn)) = timeout_at(deadline, connecting).await else {
                continue;
            };
            let Some(Ok((mut ctl, recv))) = timeout_at(deadline, conn.accept_bi()).await else {
                continue;
            };
            let (mut frames, _reader) = spawn_reader(recv);
            match timeout_at(deadline, frames.recv()).await {
                Some(Some(Ok(Ctl::Hello { test_id }))) if test_id == req.test_id => {}
                _ => {
                    conn.close(1u32.into(), b"unknown test");
                    continue;
                }
            }
            wire::write(
                &mut ctl,
                &Ctl::Reveal {
                    secret: ByteArray(*secret),
                },
            )
            .await
            .map_err(|_| BwFailure::Transport)?;
            return Ok(Ok(Session {
                conn,
                ctl,
                frames,
                pings: Pings::new(),
            }));
        }
    }

    async fn idle_rtt(&self, s: &mut Session) -> Result<u32, BwFailure> {
        let mut samples = Vec::new();
        for _ in 0..self.cfg.idle_pings {
            s.pings
                .send(&mut s.ctl)
                .await
                .map_err(|_| BwFailure::Transport)?;
            let deadline = Instant::now() + CONTROL_TIMEOUT;
            loop {
                match timeout_at(deadline, s.frames.recv()).await {
                    None => return Err(BwFailure::Timeout),
                    Some(Some(Ok(Ctl::Pong { seq }))) => {
                        if let Some(rtt) = s.pings.pong(seq) {
                            samples.push(rtt);
                            break;
                        }
                    }
                    Some(Some(Ok(_))) => return Err(BwFailure::Transport),
                    Some(_) => return Err(BwFailure::Transport),
                }
            }
            sleep(Duration::from_millis(20)).await;
        }
        Ok(stats::median_us(&samples))
    }

    async fn run_accepted(
        &self,
        endpoint: &quinn::Endpoint,
        req: &BwRequest,
        secret: &[u8; 32],
        prover: NodeId,
        sockets: SocketBuffers,
    ) -> MeasureReport {
        let mut s = match self.accept_session(endpoint, req, secret).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => return Self::local_failure(req, error, Some(sockets)),
            Err(f) => return self.all_failed(req, prover, f, Some(sockets)),
        };
        let rtt_idle = match self.idle_rtt(&mut s).await {
            Ok(r) => r,
            Err(f) => {
                let mut r = self.all_failed(req, prover, f, Some(sockets));
                r.wire_bytes = wire_bytes(&s.conn);
                return r;
            }
        };
        let caps = caps_of(
            &self.cfg,
            req.byte_cap,
            Duration::from_millis(u64::from(req.duration_ms)),
        );
        let mut details = Vec::new();
        let mut broken: Option<BwFailure> = None;
        for &d in req.directions.list() {
            let detail = match broken {
                Some(f) => DirectionDetail::failed(d, f),
                None => match d {
                    Direction::Down => self.download(&mut s, req, secret, caps, rtt_idle).await,
                    Direction::Up => self.upload(&mut s, req, secret, caps).await,
                },
            };
            if let End::Failed(f @ (BwFailure::Transport | BwFailure::Timeout)) = detail.end {
                // The session is gone; later directions cannot run.
                broken.get_or_insert(f);
            }
            details.push(detail);
        }
        let mut receipts: Vec<Envelope> = details
            .iter()
            .map(|d| {
                let outcome = self.reported(d.direction, outcome_of(d, rtt_idle));
                self.sign(&self.receipt(req.test_id.0, req.epoch, prover, d.direction, outcome))
            })
            .collect();
        if broken.is_none() {
            self.cosign(&mut s, &mut receipts, prover).await;
        }
        // A measured receipt the prover did not co-sign cannot stand: the prover declined it.
        for (env, d) in receipts.iter_mut().zip(&details) {
            if open::<BandwidthReceipt>(&env.to_bytes()).is_err() {
                *env = self.sign(&self.receipt(
                    req.test_id.0,
                    req.epoch,
                    prover,
                    d.direction,
                    Outcome::Failed(BwFailure::Refused),
                ));
            }
        }
        let wire = wire_bytes(&s.conn);
        s.conn.close(0u32.into(), b"done");
        MeasureReport {
            test_id: req.test_id.0,
            receipts,
            refusal: None,
            details,
            rtt_idle_us: rtt_idle,
            sockets: Some(sockets),
            wire_bytes: wire,
            local_error: None,
            unanswered: false,
        }
    }

    async fn cosign(&self, s: &mut Session, receipts: &mut [Envelope], prover: NodeId) {
        let msg = Ctl::Sign {
            receipts: receipts.iter().map(Envelope::to_bytes).collect(),
        };
        if wire::write(&mut s.ctl, &msg).await.is_err() {
            return;
        }
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            match timeout_at(deadline, s.frames.recv()).await {
                Some(Some(Ok(Ctl::Cosigned { signatures }))) => {
                    for (env, sig) in receipts.iter_mut().zip(signatures) {
                        if let Some(sig) = sig {
                            attach_cosignature(env, prover, sig);
                        }
                    }
                    let _ = s.ctl.finish();
                    return;
                }
                Some(Some(Ok(Ctl::Pong { .. }))) => {}
                _ => return,
            }
        }
    }

    /// Measurer → prover: we send, the prover reports what it received.
    async fn download(
        &self,
        s: &mut Session,
        req: &BwRequest,
        secret: &[u8; 32],
        caps: Caps,
        rtt_idle: u32,
    ) -> DirectionDetail {
        let mut detail = DirectionDetail::failed(Direction::Down, BwFailure::Transport);
        let begin = Ctl::Begin {
            direction: Direction::Down,
        };
        if wire::write(&mut s.ctl, &begin).await.is_err() {
            return detail;
        }
        let Ok(send) = s.conn.open_uni().await else {
            return detail;
        };
        let ks = Keystream::new(secret, &req.test_id.0, Direction::Down);
        let sent_at = Instant::now();
        let sender = tokio::spawn(send_content(send, ks, caps, None));
        let mut loaded = Vec::new();
        let mut wire = Vec::new();
        let mut tick = tokio::time::interval(self.cfg.ping_interval);
        let deadline = Instant::now() + caps.duration + caps.stall + CONTROL_TIMEOUT;
        let report = loop {
            tokio::select! {
                _ = tick.tick() => {
                    wire.push((Instant::now(), ip_bytes(&s.conn, true)));
                    if s.pings.send(&mut s.ctl).await.is_err() { break Err(BwFailure::Transport); }
                }
                f = s.frames.recv() => match f {
                    Some(Ok(Ctl::Pong { seq })) => loaded.extend(s.pings.pong(seq)),
                    Some(Ok(Ctl::Report { end, bytes, duration_ms, bins })) => {
                        break Ok(ClaimedReport {
                            end: end.into(),
                            bytes,
                            duration: Duration::from_millis(u64::from(duration_ms)),
                            bins,
                        });
                    }
                    _ => break Err(BwFailure::Transport),
                },
                () = sleep_until(deadline) => break Err(BwFailure::Timeout),
            }
        };
        // The prover stopped the stream when it ended the direction; the sender is done or
        // about to be. One that is not is cut off.
        let log = match timeout(CONTROL_TIMEOUT, sender).await {
            Ok(Ok(log)) => log,
            _ => SendLog::default(),
        };
        detail.rtt_loaded_us = stats::median_us(&loaded);
        let report = match report {
            Ok(r) => r,
            Err(f) => {
                detail.end = End::Failed(f);
                return detail;
            }
        };
        // The prover's first byte left us at least one one-way delay before its clock started;
        // allow the idle RTT plus two bins of skew.
        let slack = usize::try_from(u64::from(rtt_idle.max(detail.rtt_loaded_us)) / 100_000)
            .unwrap_or(MAX_REPORT_BINS)
            + 2;
        detail.bytes = report.bytes;
        detail.duration = report.duration;
        detail.end = report.end;
        if !matches!(report.end, End::Failed(_)) {
            if check_report(&report, &log, &caps, slack) {
                detail.summary = stats::summarize(&report.bins, report.duration);
            } else {
                detail.end = End::Failed(BwFailure::BadContent);
            }
        }
        detail.bins = report.bins;
        // The prover's clock started when our first byte reached it: about half an idle RTT
        // after we started sending.
        let first = sent_at + Duration::from_micros(u64::from(rtt_idle) / 2);
        to_ip_layer(&mut detail, &since(first, &wire));
        detail
    }

    /// Prover → measurer: we receive and verify.
    async fn upload(
        &self,
        s: &mut Session,
        req: &BwRequest,
        secret: &[u8; 32],
        caps: Caps,
    ) -> DirectionDetail {
        let mut detail = DirectionDetail::failed(Direction::Up, BwFailure::Transport);
        let begin = Ctl::Begin {
            direction: Direction::Up,
        };
        if wire::write(&mut s.ctl, &begin).await.is_err() {
            return detail;
        }
        let ks = Keystream::new(secret, &req.test_id.0, Direction::Up);
        let mut receiving = tokio::spawn(receive_content_timed(s.conn.clone(), ks, caps));
        let mut loaded = Vec::new();
        let mut wire = Vec::new();
        let mut tick = tokio::time::interval(self.cfg.ping_interval);
        let rep = loop {
            tokio::select! {
                r = &mut receiving => break r.ok(),
                _ = tick.tick() => {
                    wire.push((Instant::now(), ip_bytes(&s.conn, false)));
                    let _ = s.pings.send(&mut s.ctl).await;
                }
                f = s.frames.recv() => {
                    if let Some(Ok(Ctl::Pong { seq })) = f { loaded.extend(s.pings.pong(seq)); }
                }
            }
        };
        detail.rtt_loaded_us = stats::median_us(&loaded);
        let Some((rep, first)) = rep else {
            return detail;
        };
        let _ = wire::write(&mut s.ctl, &Ctl::Ended).await;
        detail.end = rep.end;
        detail.bytes = rep.bytes;
        detail.duration = rep.duration;
        detail.summary = rep.summary;
        detail.bins = rep.bins;
        if let Some(first) = first {
            to_ip_layer(&mut detail, &since(first, &wire));
        }
        detail
    }
}

fn wire_bytes(conn: &quinn::Connection) -> u64 {
    let st = conn.stats();
    st.udp_tx.bytes + st.udp_rx.bytes
}

pub(super) fn attach_cosignature(env: &mut Envelope, prover: NodeId, sig: ByteArray<64>) {
    env.cosigners.push(Cosignature {
        signer: prover,
        signature: sig,
    });
    if open::<BandwidthReceipt>(&env.to_bytes()).is_err() {
        env.cosigners.pop();
    }
}
