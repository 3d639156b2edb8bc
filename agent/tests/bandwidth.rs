//! The bandwidth test over real quinn sockets on loopback: honest runs in both directions,
//! cheating provers, refusals and caps. The negotiation goes through a direct in-process call
//! (the transport boundary; libp2p carries the same bodies in the daemon).
//!
//! No speed is asserted (the machine is shared); figures are checked for consistency only.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::task::JoinHandle;
use wisp_agent::bandwidth::stats;
use wisp_agent::bandwidth::{
    BwConfig, Cheat, Directions, End, EpochView, MeasureReport, Measurer, MeasurerError,
    NegotiateError, Negotiator, Prover, ProverReport, RefuseReason,
};
use wisp_protocol::envelope::open;
use wisp_protocol::id::{NodeId, NodeKey};
use wisp_protocol::msg::{
    BandwidthReceipt, BwFailure, Direction, MAX_WIRE_OVERHEAD_PERMILLE, Outcome,
};
use wisp_protocol::schedule::assign_measurers;

/// The prover side of the `/wisp/bw/1` channel, called directly.
struct Direct {
    prover: Arc<Prover>,
    measurer: NodeId,
    view: EpochView,
    job: Mutex<Option<JoinHandle<ProverReport>>>,
}

impl Negotiator for Direct {
    async fn request(&self, _peer: NodeId, body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        let (resp, job) = self.prover.handle_request(self.measurer, &body, &self.view);
        if let Some(job) = job {
            let p = self.prover.clone();
            *self.job.lock().unwrap() = Some(tokio::spawn(async move { p.run(job).await }));
        }
        Ok(resp)
    }
}

struct World {
    measurer_key: NodeKey,
    prover_key: NodeKey,
    view: EpochView,
}

/// Ten nodes, three measurers per prover; the measurer is one of the prover's assigned three.
fn world() -> World {
    let keys: Vec<NodeKey> = (1..=10u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    let eligible: Vec<NodeId> = keys.iter().map(NodeKey::id).collect();
    let seed = [42u8; 32];
    let prover_key = NodeKey::from_seed(&[1; 32]);
    let assigned = assign_measurers(&seed, &prover_key.id(), &eligible, 3);
    let measurer_key = keys.iter().find(|k| k.id() == assigned[0]).unwrap().clone();
    World {
        measurer_key,
        prover_key,
        view: EpochView {
            epoch: 7,
            seed,
            eligible,
            measurers_per_prover: 3,
        },
    }
}

fn config(byte_cap: u64, duration_ms: u64) -> BwConfig {
    BwConfig {
        byte_cap,
        duration: Duration::from_millis(duration_ms),
        stall: Duration::from_millis(800),
        connect_timeout: Duration::from_secs(5),
        ..BwConfig::default()
    }
}

async fn run(
    w: &World,
    measurer_key: NodeKey,
    cfg: BwConfig,
    cheat: Option<Cheat>,
    epoch: u64,
    dirs: Directions,
) -> (MeasureReport, Option<ProverReport>) {
    let mut prover = Prover::new(w.prover_key.clone(), cfg, "127.0.0.1:0".parse().unwrap());
    if let Some(c) = cheat {
        prover = prover.with_cheat(c);
    }
    let direct = Direct {
        prover: Arc::new(prover),
        measurer: measurer_key.id(),
        view: w.view.clone(),
        job: Mutex::new(None),
    };
    let measurer = Measurer::new(measurer_key, cfg, "127.0.0.1:0".parse().unwrap(), None);
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let report = measurer
        .measure(&direct, w.prover_key.id(), epoch, dirs, &mut rng)
        .await;
    let job = direct.job.lock().unwrap().take();
    let prover_report = match job {
        Some(h) => Some(h.await.unwrap()),
        None => None,
    };
    (report, prover_report)
}

/// Opens every receipt (signatures, roles, bounds) and returns the messages.
fn open_all(report: &MeasureReport) -> Vec<(BandwidthReceipt, Vec<NodeId>)> {
    report
        .receipts
        .iter()
        .map(|e| {
            let o = open::<BandwidthReceipt>(&e.to_bytes()).unwrap();
            (o.msg, o.cosigners)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_test_in_both_directions_is_cosigned() {
    let w = world();
    let (report, prover) = run(
        &w,
        w.measurer_key.clone(),
        config(24 << 20, 3000),
        None,
        7,
        Directions::Both,
    )
    .await;
    println!("{report:#?}");
    let opened = open_all(&report);
    assert_eq!(opened.len(), 2);
    for ((r, cosigners), want) in opened.iter().zip([Direction::Down, Direction::Up]) {
        assert_eq!(r.direction, want);
        assert_eq!(r.measurer, w.measurer_key.id());
        assert_eq!(r.prover, w.prover_key.id());
        assert_eq!(r.epoch, 7);
        assert_eq!(r.test_id.0, report.test_id);
        assert_eq!(
            cosigners,
            &vec![w.prover_key.id()],
            "co-signed by the prover"
        );
        let Outcome::Measured(m) = r.outcome else {
            panic!("{want:?} not measured: {:?}", r.outcome)
        };
        assert!(m.bytes > 0 && m.bytes <= 24 << 20);
        assert!(m.duration_ms > 0 && m.duration_ms <= 3000);
        assert!(m.median_bps > 0 && m.p10_bps <= m.median_bps);
        assert!(m.rtt_idle_us > 0, "idle RTT measured");
        // The rate cannot exceed the bytes over the time they took (plus one window's rounding).
        let mean_bps = m.bytes * 8 * 1000 / u64::from(m.duration_ms);
        assert!(m.median_bps <= mean_bps * 20, "{m:?}");
    }
    for (d, (r, _)) in report.details.iter().zip(&opened) {
        assert!(matches!(d.end, End::ByteCap | End::TimeCap), "{d:?}");
        assert_eq!(d.bins.iter().sum::<u64>(), d.bytes);
        // The receipt's rates are the payload figures of the bins, scaled to the IP layer by
        // the measurer's ratio, within the protocol's bound.
        assert!((1_000..=MAX_WIRE_OVERHEAD_PERMILLE).contains(&d.wire_permille));
        let payload = stats::summarize(&d.bins, d.duration).unwrap();
        let ip = payload.scaled(d.wire_permille);
        let Outcome::Measured(m) = r.outcome else {
            unreachable!("checked above")
        };
        assert_eq!(
            (m.median_bps, m.p10_bps),
            (ip.median_bps, ip.p10_bps),
            "{d:?}"
        );
    }
    // The prover holds the same co-signed receipts.
    let prover = prover.unwrap();
    assert!(prover.error.is_none(), "{:?}", prover.error);
    let mine: Vec<Vec<u8>> = report.receipts.iter().map(|e| e.to_bytes()).collect();
    let theirs: Vec<Vec<u8>> = prover.receipts.iter().map(|e| e.to_bytes()).collect();
    assert_eq!(mine, theirs);
    let sockets = report.sockets.unwrap();
    assert!(sockets.recv > 0 && sockets.send > 0);
    assert!(report.wire_bytes >= report.details.iter().map(|d| d.bytes).sum::<u64>());
}

async fn cheat_upload(cheat: Cheat) -> (BandwidthReceipt, Vec<NodeId>) {
    let w = world();
    let (report, _) = run(
        &w,
        w.measurer_key.clone(),
        config(16 << 20, 3000),
        Some(cheat),
        7,
        Directions::Up,
    )
    .await;
    println!("{report:#?}");
    let mut opened = open_all(&report);
    assert_eq!(opened.len(), 1);
    opened.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prover_sending_garbage_gets_bad_content() {
    let (r, _) = cheat_upload(Cheat::Garbage { after: 1 << 20 }).await;
    assert_eq!(r.outcome, Outcome::Failed(BwFailure::BadContent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prover_replaying_bytes_gets_bad_content() {
    let (r, _) = cheat_upload(Cheat::Replay { after: 1 << 20 }).await;
    assert_eq!(r.outcome, Outcome::Failed(BwFailure::BadContent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_is_truncated() {
    let (r, _) = cheat_upload(Cheat::Truncate { after: 1 << 20 }).await;
    assert_eq!(r.outcome, Outcome::Failed(BwFailure::Truncated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sender_times_out() {
    let (r, _) = cheat_upload(Cheat::Stall { after: 1 << 20 }).await;
    assert_eq!(r.outcome, Outcome::Failed(BwFailure::Timeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inflated_download_report_is_caught() {
    let w = world();
    let (report, _) = run(
        &w,
        w.measurer_key.clone(),
        config(16 << 20, 3000),
        Some(Cheat::InflateReport { factor: 3 }),
        7,
        Directions::Down,
    )
    .await;
    let opened = open_all(&report);
    assert_eq!(opened[0].0.outcome, Outcome::Failed(BwFailure::BadContent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_epoch_is_a_signed_refusal() {
    let w = world();
    let (report, prover) = run(
        &w,
        w.measurer_key.clone(),
        config(16 << 20, 3000),
        None,
        8,
        Directions::Both,
    )
    .await;
    assert!(prover.is_none(), "no test ran");
    assert_eq!(report.refusal, Some(RefuseReason::WrongEpoch));
    let opened = open_all(&report);
    assert_eq!(opened.len(), 2);
    for (r, cosigners) in opened {
        assert_eq!(r.outcome, Outcome::Failed(BwFailure::Refused));
        assert_eq!(r.epoch, 8);
        assert_eq!(
            cosigners,
            vec![w.prover_key.id()],
            "the prover signed its refusal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unassigned_measurer_is_refused() {
    let w = world();
    let assigned = assign_measurers(&w.view.seed, &w.prover_key.id(), &w.view.eligible, 3);
    let outsider = (2..=10u8)
        .map(|i| NodeKey::from_seed(&[i; 32]))
        .find(|k| !assigned.contains(&k.id()))
        .unwrap();
    let (report, prover) = run(
        &w,
        outsider.clone(),
        config(16 << 20, 3000),
        None,
        7,
        Directions::Up,
    )
    .await;
    assert!(prover.is_none());
    assert_eq!(report.refusal, Some(RefuseReason::NotAssigned));
    let opened = open_all(&report);
    assert_eq!(opened[0].0.outcome, Outcome::Failed(BwFailure::Refused));
    assert_eq!(opened[0].0.measurer, outsider.id());
    assert_eq!(opened[0].1, vec![w.prover_key.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_ends_the_test_early() {
    let w = world();
    let cap = 3 << 20;
    let (report, _) = run(
        &w,
        w.measurer_key.clone(),
        config(cap, 8000),
        None,
        7,
        Directions::Both,
    )
    .await;
    for (d, (r, cosigners)) in report.details.iter().zip(open_all(&report)) {
        assert_eq!(d.end, End::ByteCap, "{d:?}");
        let Outcome::Measured(m) = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(m.bytes, cap, "the receipt says the cap was reached");
        assert!(m.duration_ms < 8000);
        assert_eq!(cosigners.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_cap_ends_the_test() {
    let w = world();
    let cap = 1 << 40;
    let mut cfg = config(cap, 1200);
    cfg.byte_cap = cap;
    let (report, _) = run(&w, w.measurer_key.clone(), cfg, None, 7, Directions::Up).await;
    let d = &report.details[0];
    assert_eq!(d.end, End::TimeCap, "{d:?}");
    let (r, _) = &open_all(&report)[0];
    let Outcome::Measured(m) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(
        m.duration_ms, 1200,
        "the receipt says the time cap was reached"
    );
    assert!(m.bytes < cap);
}

/// One test of the world's prover by its measurer, `measurer` (kept by the caller).
async fn measure_in(
    measurer: &Measurer,
    w: &World,
    cfg: BwConfig,
    rng_seed: u8,
) -> (MeasureReport, Option<ProverReport>) {
    measure_with(
        measurer,
        w.measurer_key.id(),
        &w.prover_key,
        &w.view,
        cfg,
        rng_seed,
    )
    .await
}

/// One test of `prover_key` by `measurer` (kept by the caller, so several tests share it).
async fn measure_with(
    measurer: &Measurer,
    measurer_id: NodeId,
    prover_key: &NodeKey,
    view: &EpochView,
    cfg: BwConfig,
    rng_seed: u8,
) -> (MeasureReport, Option<ProverReport>) {
    let direct = Direct {
        prover: Arc::new(Prover::new(
            prover_key.clone(),
            cfg,
            "127.0.0.1:0".parse().unwrap(),
        )),
        measurer: measurer_id,
        view: view.clone(),
        job: Mutex::new(None),
    };
    let mut rng = ChaCha20Rng::from_seed([rng_seed; 32]);
    let report = measurer
        .measure(&direct, prover_key.id(), 7, Directions::Both, &mut rng)
        .await;
    let job = direct.job.lock().unwrap().take();
    let prover = match job {
        Some(h) => Some(h.await.unwrap()),
        None => None,
    };
    (report, prover)
}

/// A UDP port free on loopback right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measurer_on_a_fixed_port_serves_every_queued_prover() {
    let w = world();
    // Every node measures every other, so three provers all have this measurer.
    let view = EpochView {
        measurers_per_prover: 9,
        ..w.view.clone()
    };
    let provers: Vec<NodeKey> = (1..=10u8)
        .map(|i| NodeKey::from_seed(&[i; 32]))
        .filter(|k| k.id() != w.measurer_key.id())
        .take(3)
        .collect();
    let cfg = config(4 << 20, 1000);
    let bind = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let measurer = Measurer::new(w.measurer_key.clone(), cfg, bind, None);
    let me = w.measurer_key.id();
    // Two queued at once (the second waits for the first), then one more right after.
    let (a, b) = tokio::join!(
        measure_with(&measurer, me, &provers[0], &view, cfg, 1),
        measure_with(&measurer, me, &provers[1], &view, cfg, 2),
    );
    let c = measure_with(&measurer, me, &provers[2], &view, cfg, 3).await;
    for ((report, prover), key) in [a, b, c].into_iter().zip(&provers) {
        assert!(report.local_error.is_none(), "{report:#?}");
        let opened = open_all(&report);
        assert_eq!(opened.len(), 2, "{report:#?}");
        for (r, cosigners) in opened {
            assert_eq!(r.prover, key.id());
            assert!(
                matches!(r.outcome, Outcome::Measured(_)),
                "{:?}: {report:#?}",
                r.outcome
            );
            assert_eq!(cosigners, vec![key.id()]);
        }
        let error = prover.unwrap().error;
        assert!(error.is_none(), "{error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measurer_that_cannot_bind_signs_nothing_against_the_prover() {
    let w = world();
    // Another program holds the measurer's port.
    let squatter = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bind = squatter.local_addr().unwrap();
    let cfg = config(4 << 20, 1000);
    let measurer = Measurer::new(w.measurer_key.clone(), cfg, bind, None);
    let (report, prover) = measure_in(&measurer, &w, cfg, 1).await;
    assert!(prover.is_none(), "the prover was never asked");
    assert!(report.receipts.is_empty(), "{report:#?}");
    let error = report.local_error.unwrap();
    assert!(
        matches!(error, MeasurerError::Endpoint { bind: b, .. } if b == bind),
        "{error:?}"
    );
    assert!(error.to_string().contains(&bind.to_string()), "{error}");
    // Once the port is free the same measurer works.
    drop(squatter);
    let (report, _) = measure_in(&measurer, &w, cfg, 2).await;
    assert!(report.local_error.is_none(), "{report:#?}");
    assert!(
        open_all(&report)
            .iter()
            .all(|(r, _)| matches!(r.outcome, Outcome::Measured(_))),
        "{report:#?}"
    );
}

/// A prover that never answers (its connection lost: it restarted, or is down).
struct Gone;

impl Negotiator for Gone {
    async fn request(&self, _peer: NodeId, _body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        Err(NegotiateError::unreachable(
            "IO error on outbound stream: connection lost",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_invitation_is_marked_for_another_try() {
    let w = world();
    let cfg = config(4 << 20, 1000);
    let measurer = Measurer::new(
        w.measurer_key.clone(),
        cfg,
        "127.0.0.1:0".parse().unwrap(),
        None,
    );
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let report = measurer
        .measure(&Gone, w.prover_key.id(), 7, Directions::Both, &mut rng)
        .await;
    // The caller (the daemon's measurer queue) tries again later rather than keep these.
    assert!(report.unanswered, "{report:#?}");
    assert!(report.local_error.is_none(), "{report:#?}");
    let opened = open_all(&report);
    assert_eq!(opened.len(), 2);
    assert!(
        opened
            .iter()
            .all(|(r, _)| r.outcome == Outcome::Failed(BwFailure::Transport)),
        "{report:#?}"
    );
    // A prover that answers is no such case.
    let (report, _) = measure_in(&measurer, &w, cfg, 2).await;
    assert!(!report.unanswered);
}
