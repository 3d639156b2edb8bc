//! The async shells: [`Measurer`] and [`Prover`] drive the sans-IO parts over a quinn
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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{Cosignature, Envelope, EnvelopeRef, decode_canonical, open};
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{
    BandwidthReceipt, BwFailure, Direction, MAX_WIRE_OVERHEAD_PERMILLE, Measurement, Outcome,
};
use wisp_protocol::schedule::is_assigned;
use wisp_protocol::units::EpochNo;

use super::negotiate::{
    BwRequest, BwResponse, Directions, NegotiateError, Negotiator, RefuseReason, SignedResponse,
    VERSION, decode_body, encode_body, refusal_receipt,
};
use super::quic::{self, SocketBuffers};
use super::stats::{self, Summary};
use super::stream::{
    Caps, ClaimedReport, End, Keystream, Receiver, ReceiverReport, SendLog, check_report,
    commitment,
};
use super::wire::{self, Ctl, MAX_REPORT_BINS, WireEnd};
use super::{BwConfig, MAX_DURATION, MIN_BYTE_CAP};

/// Bytes per write of test content.
const CHUNK: usize = 64 * 1024;
/// How long a sender keeps going past the time cap before it gives up on a receiver that never
/// said stop.
const SENDER_GRACE: Duration = Duration::from_secs(2);
/// Wait for single control answers (pong, report after the direction, co-signatures).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings in flight at most.
const MAX_PINGS_IN_FLIGHT: usize = 16;
/// Control frames buffered between the reader task and the session.
const CONTROL_QUEUE: usize = 16;

/// The figures and evidence of one direction, beyond the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionDetail {
    /// Which direction.
    pub direction: Direction,
    /// How it ended.
    pub end: End,
    /// Verified bytes (as the receiver counted them).
    pub bytes: u64,
    /// From the first byte to the end.
    pub duration: Duration,
    /// The figures, when measured.
    pub summary: Option<Summary>,
    /// The loaded RTT (median of the pings during the direction), µs.
    pub rtt_loaded_us: u32,
    /// The receiver's 100 ms bins.
    pub bins: Vec<u64>,
    /// IP-layer bytes per payload byte in the steady state, ‰, as measured by the measurer
    /// and applied to the figures (1000 when not measured).
    pub wire_permille: u64,
}

impl DirectionDetail {
    /// A direction that ended before any byte was measured.
    fn failed(direction: Direction, failure: BwFailure) -> DirectionDetail {
        DirectionDetail {
            direction,
            end: End::Failed(failure),
            bytes: 0,
            duration: Duration::ZERO,
            summary: None,
            rtt_loaded_us: 0,
            bins: Vec::new(),
            wire_permille: 1_000,
        }
    }
}

/// What a measurer hands back: the receipts (to outbox) and the details.
#[derive(Clone, Debug)]
pub struct MeasureReport {
    /// The test id.
    pub test_id: [u8; 16],
    /// One receipt per requested direction, in test order, signed by the measurer and
    /// co-signed by the prover where it agreed. Each passes [`wisp_protocol::envelope::open`].
    pub receipts: Vec<Envelope>,
    /// The prover's reason when it refused.
    pub refusal: Option<RefuseReason>,
    /// The directions that ran.
    pub details: Vec<DirectionDetail>,
    /// Idle RTT, µs (0 if not measured).
    pub rtt_idle_us: u32,
    /// The measurer's socket buffers.
    pub sockets: Option<SocketBuffers>,
    /// UDP payload bytes the measurer sent plus received on the test connection.
    pub wire_bytes: u64,
    /// Why the measurer could not run the test for a reason of its own (its endpoint, its
    /// address); `receipts` is then empty: nothing about the prover was learnt.
    pub local_error: Option<String>,
    /// The prover never answered the invitation (the request timed out, or its connection
    /// was lost or could not be made): `receipts` record a failed test, and the caller may
    /// rather try again later (a restarted prover is reached on a new connection).
    pub unanswered: bool,
}

/// What a prover hands back.
#[derive(Clone, Debug)]
pub struct ProverReport {
    /// The test id.
    pub test_id: [u8; 16],
    /// The receipts the prover co-signed, complete (measurer and prover signatures).
    pub receipts: Vec<Envelope>,
    /// Why the session ended early, if it did.
    pub error: Option<String>,
}

/// Fault injection for tests and the benchmark's cheat runs: how a dishonest prover behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Upload: after `after` bytes, send bytes of another stream.
    Garbage {
        /// Honest bytes first.
        after: u64,
    },
    /// Upload: after `after` bytes, send the first bytes again.
    Replay {
        /// Honest bytes first.
        after: u64,
    },
    /// Upload: end the stream after `after` bytes.
    Truncate {
        /// Bytes sent.
        after: u64,
    },
    /// Upload: stop sending after `after` bytes but keep the stream open.
    Stall {
        /// Bytes sent.
        after: u64,
    },
    /// Download: report this many times the bytes received.
    InflateReport {
        /// Multiplier.
        factor: u64,
    },
}

/// The prover's view of the current epoch, from the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochView {
    /// The current epoch.
    pub epoch: EpochNo,
    /// Its seed.
    pub seed: [u8; 32],
    /// The nodes eligible to measure.
    pub eligible: Vec<NodeId>,
    /// Measurers per prover (`EpochParams::measurers_per_prover`).
    pub measurers_per_prover: usize,
}

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

fn caps_of(cfg: &BwConfig, byte_cap: u64, duration: Duration) -> Caps {
    Caps {
        bytes: byte_cap,
        duration,
        stall: cfg.stall,
    }
}

fn elapsed_us(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

fn ms_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Spawns a task that reads control frames into a bounded queue (ended by an `Err`).
fn spawn_reader(
    mut recv: quinn::RecvStream,
) -> (mpsc::Receiver<Result<Ctl, String>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let h = tokio::spawn(async move {
        loop {
            match wire::read(&mut recv).await {
                Ok(m) => {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return;
                }
            }
        }
    });
    (rx, h)
}

/// Sends the keyed stream until the receiver stops it, the byte cap, or the time cap plus
/// [`SENDER_GRACE`]. `cheat` injects faults.
async fn send_content(
    mut send: quinn::SendStream,
    mut ks: Keystream,
    caps: Caps,
    cheat: Option<Cheat>,
    seed_for_garbage: [u8; 32],
) -> SendLog {
    let mut log = SendLog::default();
    let mut buf = vec![0u8; CHUNK];
    let mut garbage = Keystream::new(&seed_for_garbage, &[0xee; 16], Direction::Up);
    let mut first: Option<Vec<u8>> = None;
    let start = Instant::now();
    loop {
        let written = log.total;
        if written >= caps.bytes || start.elapsed() >= caps.duration + SENDER_GRACE {
            let _ = send.finish();
            break;
        }
        let n = usize::try_from(caps.bytes - written)
            .unwrap_or(CHUNK)
            .min(CHUNK);
        ks.fill(&mut buf[..n]);
        match cheat {
            Some(Cheat::Garbage { after }) if written >= after => garbage.fill(&mut buf[..n]),
            Some(Cheat::Replay { after }) if written >= after => {
                if let Some(f) = &first {
                    let m = n.min(f.len());
                    buf[..m].copy_from_slice(&f[..m]);
                }
            }
            Some(Cheat::Truncate { after }) if written >= after => {
                let _ = send.finish();
                break;
            }
            Some(Cheat::Stall { after }) if written >= after => {
                // Hold the stream open and silent past every deadline of the receiver.
                sleep(caps.duration + caps.stall * 2 + SENDER_GRACE).await;
                break;
            }
            _ => {}
        }
        if first.is_none() {
            first = Some(buf[..n].to_vec());
        }
        match send.write_all(&buf[..n]).await {
            Ok(()) => log.record(start.elapsed(), n as u64),
            // Stopped by the receiver (the normal end), or the connection went away.
            Err(_) => break,
        }
        // quinn accepts writes without yielding while the send window has room, and the
        // connection driver this write woke sits in this worker's LIFO slot, where no other
        // worker can steal it: without a yield, nothing is sent until the window is full.
        tokio::task::yield_now().await;
    }
    log
}

/// Receives and checks one direction's stream (accepted within the stall limit).
async fn receive_content(conn: quinn::Connection, ks: Keystream, caps: Caps) -> ReceiverReport {
    receive_content_timed(conn, ks, caps).await.0
}

/// [`receive_content`], with the moment the first byte arrived.
async fn receive_content_timed(
    conn: quinn::Connection,
    ks: Keystream,
    caps: Caps,
) -> (ReceiverReport, Option<Instant>) {
    let start = Instant::now();
    let mut rx = Receiver::new(ks, caps, Duration::ZERO);
    let mut recv = match timeout(caps.stall, conn.accept_uni()).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            rx.handle_transport_error(start.elapsed());
            return (rx.report().unwrap_or_else(|| unreachable!("ended")), None);
        }
        Err(_) => {
            rx.handle_timeout(start.elapsed());
            let report = rx
                .report()
                .unwrap_or_else(|| unreachable!("the stall limit passed"));
            return (report, None);
        }
    };
    while !rx.is_done() {
        let wake = rx.poll_timeout().unwrap_or(Duration::ZERO);
        tokio::select! {
            chunk = recv.read_chunk(CHUNK * 4, true) => {
                let now = start.elapsed();
                match chunk {
                    Ok(Some(c)) => { rx.handle_data(now, &c.bytes); }
                    Ok(None) => { rx.handle_fin(now); }
                    Err(_) => { rx.handle_transport_error(now); }
                }
            }
            () = sleep_until(start + wake) => { rx.handle_timeout(start.elapsed()); }
        }
        // Buffered data is returned without yielding; let the connection driver run.
        tokio::task::yield_now().await;
    }
    // Tell the sender to stop; a sender that already finished ignores it.
    let _ = recv.stop(0u32.into());
    let report = rx
        .report()
        .unwrap_or_else(|| unreachable!("loop ends when done"));
    (report, rx.first().map(|f| start + f))
}

/// This side's cumulative IP-layer bytes of one direction of `conn` (`sent`: what it sent,
/// less what was lost; else what it received): UDP payloads plus UDP and IP headers.
fn ip_bytes(conn: &quinn::Connection, sent: bool) -> u64 {
    let st = conn.stats();
    let ip_header: u64 = match conn.remote_address() {
        SocketAddr::V4(_) => 20,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => 20,
        SocketAddr::V6(_) => 40,
    };
    let (bytes, datagrams) = if sent {
        (
            st.udp_tx.bytes.saturating_sub(st.path.lost_bytes),
            st.udp_tx.datagrams.saturating_sub(st.path.lost_packets),
        )
    } else {
        (st.udp_rx.bytes, st.udp_rx.datagrams)
    };
    bytes + datagrams * (8 + ip_header)
}

/// Samples taken at `Instant`s, as times since `anchor` (samples before it are dropped).
fn since(anchor: Instant, samples: &[(Instant, u64)]) -> Vec<(Duration, u64)> {
    samples
        .iter()
        .filter_map(|(at, b)| at.checked_duration_since(anchor).map(|d| (d, *b)))
        .collect()
}

/// Scales a measured direction's figures to the IP layer (see
/// [`stats::wire_ratio_permille`]).
fn to_ip_layer(detail: &mut DirectionDetail, samples: &[(Duration, u64)]) {
    if let Some(s) = detail.summary {
        let permille =
            stats::wire_ratio_permille(detail.duration, &s, samples, MAX_WIRE_OVERHEAD_PERMILLE);
        detail.wire_permille = permille;
        detail.summary = Some(s.scaled(permille));
    }
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
    /// Fault injection: report this many thousandths of every upload measured.
    shave_permille: Option<u32>,
}

struct Pings {
    next: u32,
    in_flight: VecDeque<(u32, Instant)>,
}

impl Pings {
    fn new() -> Self {
        Self {
            next: 0,
            in_flight: VecDeque::new(),
        }
    }

    async fn send(&mut self, ctl: &mut quinn::SendStream) -> Result<(), wire::WireError> {
        if self.in_flight.len() >= MAX_PINGS_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.in_flight.push_back((seq, Instant::now()));
        wire::write(ctl, &Ctl::Ping { seq }).await
    }

    fn pong(&mut self, seq: u32) -> Option<u32> {
        let i = self.in_flight.iter().position(|(s, _)| *s == seq)?;
        let (_, at) = self.in_flight.remove(i)?;
        Some(elapsed_us(at))
    }
}

/// State of an accepted test on the measurer's side.
struct Session {
    conn: quinn::Connection,
    ctl: quinn::SendStream,
    frames: mpsc::Receiver<Result<Ctl, String>>,
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
            shave_permille: None,
        }
    }

    /// Fault injection (a devnet's lying measurer, tests): this measurer signs `permille`
    /// thousandths of the bytes and rates it measured of every prover's upload. The prover
    /// co-signs it (it cannot see what arrived, only that no more than it sent is claimed);
    /// the oracle's comparison of measurers has to catch it.
    #[must_use]
    pub fn with_shaved_uploads(mut self, permille: u32) -> Self {
        self.shave_permille = Some(permille.min(1_000));
        self
    }

    /// The outcome to sign for a direction: as measured, unless this measurer lies.
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
        error: String,
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
                let error = format!(
                    "the bandwidth test endpoint on {} (bandwidth.listen): {e}",
                    self.bind
                );
                return Self::local_failure(&req, error, None);
            }
        };
        req.cert_sha256 = ByteArray(pin);
        req.quic_addr = match (self.advertise, endpoint.local_addr()) {
            (Some(a), _) => a,
            (None, Ok(a)) if a.ip().is_unspecified() => match negotiator.public_ip().await {
                Some(ip) => SocketAddr::new(ip, a.port()),
                None => {
                    let error = "no public address to give the prover: the node has no confirmed external address yet (set bandwidth.advertise, or net.external_addresses)";
                    return Self::local_failure(&req, error.into(), Some(sockets));
                }
            },
            (None, Ok(a)) => a,
            (None, Err(e)) => {
                *kept = None;
                let error = format!("the bandwidth test endpoint has no address: {e}");
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
    ) -> Result<Result<Session, String>, BwFailure> {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        // Connections that are not our prover's (wrong test id, an earlier test's certificate)
        // are closed and waited past.
        loop {
            let Some(incoming) = timeout_at(deadline, endpoint.accept())
                .await
                .ok_or(BwFailure::Timeout)?
            else {
                return Ok(Err("the bandwidth test endpoint closed".into()));
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
        let sender = tokio::spawn(send_content(send, ks, caps, None, [0; 32]));
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

async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

fn attach_cosignature(env: &mut Envelope, prover: NodeId, sig: ByteArray<64>) {
    env.cosigners.push(Cosignature {
        signer: prover,
        signature: sig,
    });
    if open::<BandwidthReceipt>(&env.to_bytes()).is_err() {
        env.cosigners.pop();
    }
}

/// The receipt outcome of a direction: figures only when it ended at a cap with a summary.
fn outcome_of(d: &DirectionDetail, rtt_idle: u32) -> Outcome {
    match (d.end, d.summary) {
        (End::Failed(f), _) => Outcome::Failed(f),
        (End::ByteCap | End::TimeCap, Some(s)) if !d.duration.is_zero() => {
            Outcome::Measured(Measurement {
                bytes: d.bytes,
                duration_ms: ms_u32(d.duration).max(1),
                median_bps: s.median_bps,
                p10_bps: s.p10_bps,
                rtt_idle_us: rtt_idle,
                rtt_loaded_us: d.rtt_loaded_us,
            })
        }
        // Ended at a cap before a measurable time passed: no figure to give.
        _ => Outcome::Failed(BwFailure::Truncated),
    }
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

    /// Fault injection: this prover cheats as told (tests and the benchmark only).
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

    async fn session(&self, job: &ProverJob, out: &mut ProverReport) -> Result<(), String> {
        let req = &job.request;
        let bind = match (req.quic_addr, self.bind) {
            (SocketAddr::V6(_), SocketAddr::V4(b)) if b.ip().is_unspecified() => {
                SocketAddr::from(([0u16; 8], 0))
            }
            _ => self.bind,
        };
        let (endpoint, client, _bufs) =
            quic::client(bind, &self.cfg.tuning, req.cert_sha256.0).map_err(|e| e.to_string())?;
        let connecting = endpoint
            .connect_with(client, req.quic_addr, quic::server_name())
            .map_err(|e| e.to_string())?;
        let conn = timeout(self.cfg.connect_timeout, connecting)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (mut ctl, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        wire::write(
            &mut ctl,
            &Ctl::Hello {
                test_id: req.test_id,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let (mut frames, _reader) = spawn_reader(recv);
        let secret = match timeout(CONTROL_TIMEOUT, frames.recv()).await {
            Ok(Some(Ok(Ctl::Reveal { secret })))
                if commitment(&secret.0) == req.key_commitment.0 =>
            {
                secret.0
            }
            _ => {
                conn.close(2u32.into(), b"bad reveal");
                return Err("the measurer revealed no secret matching its commitment".into());
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
                            break Err("control stream lost".to_string());
                        }
                    }
                    Some(Ok(Ctl::Begin { direction })) if !seen.iter().any(|s| s.0 == direction)
                        && tasks.len() < 2 => {
                        let ks = Keystream::new(&secret, &req.test_id.0, direction);
                        let tx = done_tx.clone();
                        let conn2 = conn.clone();
                        let cheat = self.cheat;
                        tasks.push(tokio::spawn(async move {
                            let v = match direction {
                                Direction::Down => Seen::Received(receive_content(conn2, ks, caps).await),
                                Direction::Up => {
                                    let Ok(send) = conn2.open_uni().await else { return };
                                    Seen::Sent(send_content(send, ks, caps, cheat, [0x5a; 32]).await)
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
                            break Err("control stream lost before co-signing".to_string());
                        }
                        let _ = ctl.finish();
                        break Ok(());
                    }
                    Some(Ok(other)) => break Err(format!("unexpected control frame {other:?}")),
                    Some(Err(e)) => break Err(e),
                    None => break Err("control stream closed".to_string()),
                },
                Some((d, v)) = done_rx.recv() => {
                    if let (Seen::Received(r), Direction::Down) = (&v, d) {
                        let (bytes, bins) = match self.cheat {
                            Some(Cheat::InflateReport { factor }) => {
                                (r.bytes * factor, r.bins.iter().map(|b| b * factor).collect())
                            }
                            _ => (r.bytes, r.bins.clone()),
                        };
                        let rep = Ctl::Report {
                            end: WireEnd::from(r.end),
                            bytes,
                            duration_ms: ms_u32(r.duration),
                            bins,
                        };
                        if wire::write(&mut ctl, &rep).await.is_err() {
                            break Err("control stream lost".to_string());
                        }
                    }
                    seen.push((d, v));
                }
                () = sleep_until(deadline) => break Err("session timed out".to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(end: End, summary: Option<Summary>) -> DirectionDetail {
        DirectionDetail {
            direction: Direction::Up,
            end,
            bytes: 1000,
            duration: Duration::from_millis(500),
            summary,
            rtt_loaded_us: 900,
            bins: vec![],
            wire_permille: 1_000,
        }
    }

    #[test]
    fn figures_only_for_a_direction_that_ended_at_a_cap() {
        let s = Summary {
            median_bps: 10,
            p10_bps: 5,
            warmup_bins: 0,
            windows: 1,
        };
        assert_eq!(
            outcome_of(&detail(End::TimeCap, Some(s)), 300),
            Outcome::Measured(Measurement {
                bytes: 1000,
                duration_ms: 500,
                median_bps: 10,
                p10_bps: 5,
                rtt_idle_us: 300,
                rtt_loaded_us: 900,
            })
        );
        assert_eq!(
            outcome_of(&detail(End::Failed(BwFailure::BadContent), Some(s)), 300),
            Outcome::Failed(BwFailure::BadContent)
        );
        assert_eq!(
            outcome_of(&detail(End::ByteCap, None), 300),
            Outcome::Failed(BwFailure::Truncated)
        );
    }
}
