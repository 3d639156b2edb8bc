//! Proof of usage end to end over real loopback sockets: a hotspot's libp2p network with its
//! usage driver (the `endpoint` counter source, a hook script writing its calls to a file),
//! and subscribers on libp2p networks of their own driving wisp-client's sans-IO `Session`.
//! An honest subscriber's receipts are agreed and one co-signed receipt per session per epoch
//! reaches the outbox's channel; a subscriber that stops signing is blocked (the endpoint
//! refuses it, the hook is called with `block`); one that inflates its receipt is disputed with
//! the hotspot's totals, and one that replays a `seq` is refused and blocked. One that leaves
//! ends its session, and its receipt goes out at once, with either counter source. One that
//! stops signing is blocked once `grace_ms` has passed since it was last covered, not before.
//!
//! Real sockets rule out paused tokio time (the runtime would jump its timers while waiting on
//! I/O), so nothing here depends on a timer: blocking is triggered by bytes (`grace_bytes`) or
//! by a clock the test steps (`grace_ms`), and timeouts only bound a hang.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};
use wisp_agent::config::{CounterSource, UsageSettings};
use wisp_agent::core::Proof;
use wisp_agent::metrics::Metrics;
use wisp_agent::net::usage_data::{CHUNK_MAX, DataAnswer};
use wisp_agent::net::{self, NetConfig, Network};
use wisp_agent::shell::usage::{Clock, UsageIo, run};
use wisp_agent_core::usage::UsageConfig;
use wisp_client::{AnswerOutcome, Policy, Session, SubscriberKey};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::open;
use wisp_protocol::msg::{UsageAnswer, UsageReceipt};
use wisp_protocol::{Kind, NodeKey, Reason};

const HANG: Duration = Duration::from_secs(60);
const EPOCH: u64 = 7;
const GRACE: u64 = 3 << 20;

fn now_ms() -> u64 {
    wisp_agent::wallclock::wall_ms()
}

fn start_net(key: &NodeKey) -> Network {
    let cfg = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        usage: true,
        ..NetConfig::default()
    };
    net::start(key, &cfg, NodeKey::from_seed(&[0x0a; 32]).id(), None).unwrap()
}

async fn listen_addr(n: &Network) -> Multiaddr {
    tokio::time::timeout(HANG, async {
        loop {
            if let Some(a) = n.handle.listen_addrs().await.unwrap().into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap()
}

struct Hotspot {
    key: NodeKey,
    peer: PeerId,
    addr: Multiaddr,
    epoch: watch::Sender<Option<u64>>,
    proofs: mpsc::Receiver<Proof>,
    net: Network,
    _driver: tokio::task::JoinHandle<()>,
}

/// A hotspot with its usage driver counting with `counters`; the hook appends its arguments
/// to `hook_log`.
async fn hotspot(dir: &Path, counters: CounterSource) -> (Hotspot, std::path::PathBuf) {
    hotspot_with(
        dir,
        counters,
        UsageConfig::default().grace_ms,
        Clock::wall(),
    )
    .await
}

/// [`hotspot`] with `grace_ms` and the driver's `clock`.
async fn hotspot_with(
    dir: &Path,
    counters: CounterSource,
    grace_ms: u64,
    clock: Clock,
) -> (Hotspot, std::path::PathBuf) {
    let key = NodeKey::from_seed(&[1; 32]);
    let mut n = start_net(&key);
    let addr = listen_addr(&n).await;
    let log = dir.join("hook.log");
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let settings = UsageSettings {
        enabled: true,
        policy: UsageConfig {
            slack_bytes: 256 << 10,
            grace_bytes: GRACE,
            grace_ms,
            ..UsageConfig::default()
        },
        hook: Some(hook),
        counters,
        counters_interval_ms: 200,
    };
    let (mut io, link) = UsageIo::new(&mut n, Some(EPOCH), Arc::new(Metrics::new("test")));
    io.clock = clock;
    let driver = tokio::spawn(run(key.clone(), settings, io));
    let peer = n.handle.local_peer_id();
    (
        Hotspot {
            key,
            peer,
            addr,
            epoch: link.epoch,
            proofs: link.proofs,
            net: n,
            _driver: driver,
        },
        log,
    )
}

struct Subscriber {
    key: SubscriberKey,
    net: Network,
    hot: PeerId,
    down: u64,
    up: u64,
}

async fn subscriber(seed: u8, hot: &Hotspot) -> Subscriber {
    let key = SubscriberKey::from_seed(&[seed; 32]);
    let net = start_net(key.node_key());
    net.handle
        .add_address(hot.peer, hot.addr.clone())
        .await
        .unwrap();
    Subscriber {
        key,
        net,
        hot: hot.peer,
        down: 0,
        up: 0,
    }
}

impl Subscriber {
    fn peer(&self) -> PeerId {
        self.net.handle.local_peer_id()
    }

    /// A session with `hot` in `epoch`: a receipt every 512 KiB, as soon as it is due.
    fn session(&self, hot: &Hotspot, id: [u8; 16], epoch: u64) -> Session {
        let policy = Policy {
            receipt_every_bytes: 512 << 10,
            receipt_min_interval_ms: 0,
            ..Policy::default()
        };
        Session::new(self.key.clone(), hot.key.id(), id, epoch, now_ms(), policy).unwrap()
    }

    /// Opens the connection to `hot` that a counter program's address is mapped through,
    /// with a request for nothing.
    async fn connect(&self, hot: &Hotspot) {
        assert!(
            self.net
                .handle
                .usage_data_request(hot.peer, 0, &[])
                .await
                .is_ok()
        );
    }

    /// Pulls one chunk down (and sends 4 KiB up); false when blocked.
    async fn pull(&mut self) -> bool {
        let up = vec![7u8; 4096];
        let a = tokio::time::timeout(
            HANG,
            self.net
                .handle
                .usage_data_request(self.hot, u32::try_from(CHUNK_MAX).unwrap(), &up),
        )
        .await
        .unwrap()
        .unwrap();
        match a {
            DataAnswer::Served(b) => {
                self.down += b.len() as u64;
                self.up += up.len() as u64;
                true
            }
            DataAnswer::Blocked => false,
            DataAnswer::BadRequest => panic!("the endpoint could not read our request"),
        }
    }

    async fn send(&self, receipt: Vec<u8>) -> UsageAnswer {
        tokio::time::timeout(HANG, self.net.handle.usage_request(self.hot, receipt))
            .await
            .unwrap()
            .unwrap()
    }

    fn receipt(&self, hot: &NodeKey, seq: u64, down: u64, up: u64) -> Vec<u8> {
        self.key
            .sign_receipt(&UsageReceipt {
                session: ByteArray([u8::try_from(seq).unwrap(); 16]),
                hotspot: hot.id(),
                subscriber: self.key.id(),
                // The hotspot's epoch by the time the cheaters sign.
                epoch: EPOCH + 3,
                seq,
                bytes_down: down,
                bytes_up: up,
                signed_ms: now_ms(),
                start_ms: None,
            })
            .unwrap()
    }
}

/// Pulls `bytes` through the endpoint, signing receipts as the session asks; returns how
/// many receipts were agreed.
async fn honest_run(s: &mut Subscriber, session: &mut Session, bytes: u64) -> u64 {
    let mut agreed = 0;
    while s.down < bytes {
        assert!(s.pull().await, "an honest subscriber was blocked");
        session.handle_counters(s.down, s.up, now_ms());
        if let Some(r) = session.poll_receipt(now_ms()) {
            let a = s.send(r).await;
            match session.handle_answer(a) {
                AnswerOutcome::Agreed { .. } => agreed += 1,
                o => panic!("an honest receipt was not agreed: {o:?} ({a:?})"),
            }
        }
    }
    agreed
}

async fn next_proof(h: &mut Hotspot) -> Proof {
    tokio::time::timeout(HANG, h.proofs.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn hook_line(log: &Path, want: &str) -> String {
    tokio::time::timeout(HANG, async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(want)) {
                return l.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the hook was never called with {want}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_cosigned_one_per_session_per_epoch_and_cheaters_are_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut hot, log) = hotspot(dir.path(), CounterSource::Endpoint).await;

    // An honest subscriber: a receipt every 512 KiB, all agreed.
    let mut alice = subscriber(2, &hot).await;
    let mut session = alice.session(&hot, [0xa1; 16], EPOCH);
    let agreed = honest_run(&mut alice, &mut session, 2 << 20).await;
    assert!(agreed >= 3, "{agreed} receipts agreed");
    let first = session.status().agreed.unwrap();

    // The epoch closes: exactly this session's latest agreed receipt goes to the outbox,
    // co-signed by the hotspot.
    hot.epoch.send_replace(Some(EPOCH + 1));
    let p = next_proof(&mut hot).await;
    assert_eq!(p.kind, Kind::UsageReceipt);
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(o.cosigners, vec![hot.key.id()]);
    assert_eq!(o.msg.subscriber, alice.key.id());
    assert_eq!(
        (o.msg.seq, o.msg.bytes_down),
        (first.seq, first.totals.bytes_down)
    );
    assert!(o.msg.bytes_down >= 2 << 20);

    // Nothing new in the session at the next epoch: nothing is sent. More traffic, and the
    // epoch after that sends the session's new receipt (the next proof, not a repeat).
    hot.epoch.send_replace(Some(EPOCH + 2));
    session.handle_epoch(EPOCH + 2);
    honest_run(&mut alice, &mut session, 3 << 20).await;
    let second = session.status().agreed.unwrap();
    assert!(second.seq > first.seq);
    hot.epoch.send_replace(Some(EPOCH + 3));
    let p = next_proof(&mut hot).await;
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(
        (o.msg.seq, o.msg.bytes_down),
        (second.seq, second.totals.bytes_down)
    );
    assert!(
        hot.proofs.try_recv().is_err(),
        "one receipt per session per epoch"
    );

    // A subscriber that never signs: blocked once it used more than grace_bytes; the endpoint
    // refuses it and the hook is told.
    let mut bob = subscriber(3, &hot).await;
    let blocked = tokio::time::timeout(HANG, async {
        while bob.pull().await {
            assert!(bob.down < 64 * GRACE, "never blocked");
        }
    })
    .await;
    assert!(blocked.is_ok(), "never blocked");
    assert!(
        bob.down > GRACE,
        "blocked before using its grace: {}",
        bob.down
    );
    let line = hook_line(&log, &bob.peer().to_string()).await;
    assert_eq!(line, format!("block {} 127.0.0.1 uncovered", bob.peer()));

    // A subscriber that inflates its receipt is disputed with the hotspot's own totals, and
    // one that then replays its seq is refused and blocked.
    let mut carol = subscriber(4, &hot).await;
    for _ in 0..4 {
        assert!(carol.pull().await);
    }
    let a = carol
        .send(carol.receipt(&hot.key, 1, 10 * carol.down, carol.up))
        .await;
    assert_eq!(
        a,
        UsageAnswer::Disputed {
            seq: 1,
            bytes_down: carol.down,
            bytes_up: carol.up
        }
    );
    let a = carol
        .send(carol.receipt(&hot.key, 1, carol.down, carol.up))
        .await;
    assert_eq!(
        a,
        UsageAnswer::Refused {
            reason: Reason::UsageStaleSeq.code()
        }
    );
    let line = hook_line(&log, &carol.peer().to_string()).await;
    assert_eq!(
        line,
        format!("block {} 127.0.0.1 refused:usage_stale_seq", carol.peer())
    );
    assert!(!carol.pull().await, "a refused subscriber is still served");
    // Alice, honest, is still served.
    assert!(alice.pull().await);

    // A subscriber that leaves (its last connection closes) ends its session: its latest
    // agreed receipt goes to the outbox at once, not at the epoch's end.
    let mut dave = subscriber(5, &hot).await;
    let mut session = dave.session(&hot, [0xd4; 16], EPOCH + 3);
    honest_run(&mut dave, &mut session, 1 << 20).await;
    let agreed = session.status().agreed.unwrap();
    dave.net.task.abort();
    let p = next_proof(&mut hot).await;
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(o.msg.subscriber, dave.key.id());
    assert_eq!(
        (o.msg.seq, o.msg.bytes_down),
        (agreed.seq, agreed.totals.bytes_down)
    );
}

/// The `command` counter source with a real program: its lines are mapped to the peer whose
/// connection comes from the address, a bad line is skipped, an honest receipt is agreed and
/// a client the router counts far beyond its receipts is blocked, the hook given its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_program_is_mapped_to_peers_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let (program, write) = counter_program(dir.path());
    let (hot, log) = hotspot(dir.path(), CounterSource::Command(program)).await;

    // The router counted 1 MiB down and 64 KiB up for 127.0.0.1, where the subscriber's
    // connection comes from: its receipt for that is agreed.
    let erin = subscriber(6, &hot).await;
    let mut session = erin.session(&hot, [0xe5; 16], EPOCH);
    // The first request opens the connection the address is mapped through.
    erin.connect(&hot).await;
    write(1 << 20, 64 << 10);
    session.handle_counters(1 << 20, 64 << 10, now_ms());
    let r = session
        .poll_receipt(now_ms())
        .expect("a receipt after 1 MiB");
    let a = erin.send(r).await;
    assert!(
        matches!(session.handle_answer(a), AnswerOutcome::Agreed { .. }),
        "{a:?}"
    );

    // Then the router counts 64 MiB more that the subscriber does not sign for: blocked, and
    // the hook is given the client's address.
    write(65 << 20, 64 << 10);
    let line = hook_line(&log, &erin.peer().to_string()).await;
    assert_eq!(line, format!("block {} 127.0.0.1 uncovered", erin.peer()));
}

/// A counter program printing a bad line and `127.0.0.1 <down> <up>`, and what sets the two
/// numbers (0 and 0 at first).
fn counter_program(dir: &Path) -> (std::path::PathBuf, impl Fn(u64, u64)) {
    let counts = dir.join("counts");
    let program = dir.join("counters.sh");
    std::fs::write(&program, format!("#!/bin/sh\ncat '{}'\n", counts.display())).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let write = move |down: u64, up: u64| {
        let text = format!("not-an-address 1 2\n127.0.0.1 {down} {up}\n");
        std::fs::write(&counts, text).unwrap();
    };
    write(0, 0);
    (program, write)
}

/// Signs a receipt for what the router counted and checks it is agreed.
async fn agree(s: &Subscriber, session: &mut Session, down: u64, up: u64) -> u64 {
    session.handle_counters(down, up, now_ms());
    let r = session.poll_receipt(now_ms()).expect("a receipt is due");
    let a = s.send(r).await;
    match session.handle_answer(a) {
        AnswerOutcome::Agreed { .. } => session.status().agreed.unwrap().seq,
        o => panic!("an honest receipt was not agreed: {o:?} ({a:?})"),
    }
}

/// With the `command` counter source, a subscriber that leaves (its last connection closes)
/// ends its session: its last agreed receipt reaches the outbox at once. The router keeps
/// counting its address; when it comes back, a new session is judged on what the router
/// counted since, not charged again for what it signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_leaves_ends_its_session_with_a_counter_program() {
    let dir = tempfile::tempdir().unwrap();
    let (program, write) = counter_program(dir.path());
    let (mut hot, _log) = hotspot(dir.path(), CounterSource::Command(program)).await;

    let gina = subscriber(9, &hot).await;
    let mut session = gina.session(&hot, [0x96; 16], EPOCH);
    // The first request opens the connection the address is mapped through.
    gina.connect(&hot).await;
    write(2 << 20, 64 << 10);
    let seq = agree(&gina, &mut session, 2 << 20, 64 << 10).await;

    // It leaves: its receipt goes out now, not at the epoch's end.
    gina.net.task.abort();
    let p = next_proof(&mut hot).await;
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(o.cosigners, vec![hot.key.id()]);
    assert_eq!(o.msg.subscriber, gina.key.id());
    assert_eq!(
        (o.msg.seq, o.msg.bytes_down, o.msg.bytes_up),
        (seq, 2 << 20, 64 << 10)
    );

    // It comes back with a new session; the router counted 1 MiB more for its address. The
    // new session's receipt for that 1 MiB is agreed (charged the 2 MiB again, it would be
    // disputed), and it goes out when the epoch ends.
    let gina = subscriber(9, &hot).await;
    let mut session = gina.session(&hot, [0x97; 16], EPOCH);
    gina.connect(&hot).await;
    write(3 << 20, 64 << 10);
    let seq = agree(&gina, &mut session, 1 << 20, 0).await;
    hot.epoch.send_replace(Some(EPOCH + 1));
    let p = next_proof(&mut hot).await;
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(
        (o.msg.session, o.msg.seq, o.msg.bytes_down),
        (ByteArray([0x97; 16]), seq, 1 << 20)
    );
}

/// A clock the test steps, counting the driver's readings.
#[derive(Clone, Default)]
struct StepClock {
    now: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl StepClock {
    fn clock(&self) -> Clock {
        let c = self.clone();
        Clock::new(move || {
            c.reads.fetch_add(1, Ordering::SeqCst);
            c.now.load(Ordering::SeqCst)
        })
    }

    /// Sets the time to `t` and returns once the driver has run a whole turn at `t`: it reads
    /// the clock at the start of each turn, so the second reading after the step starts the
    /// turn after one that began at `t`.
    async fn step(&self, t: u64) {
        self.now.store(t, Ordering::SeqCst);
        let r = self.reads.load(Ordering::SeqCst);
        tokio::time::timeout(HANG, async {
            while self.reads.load(Ordering::SeqCst) < r + 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the driver stopped turning");
    }
}

/// `usage.grace_ms`: a subscriber that signed, then pulls more than `slack_bytes` (less than
/// `grace_bytes`) and stops signing, is still served after a whole turn of the driver at
/// `grace_ms - 1` ms past the moment it was last covered, and blocked at `grace_ms`, the hook
/// called with `block … unsigned`. The driver's clock is stepped by the test; the sockets are
/// real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_signing_is_blocked_after_grace_ms() {
    const GRACE_MS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let clock = StepClock::default();
    let t0 = now_ms();
    clock.now.store(t0, Ordering::SeqCst);
    let (hot, log) =
        hotspot_with(dir.path(), CounterSource::Endpoint, GRACE_MS, clock.clock()).await;
    let endpoint = hot.net.usage_data.clone().unwrap();

    // Its receipts are agreed while the driver's time stands at t0: covered at t0.
    let mut hana = subscriber(10, &hot).await;
    let mut session = hana.session(&hot, [0x4a; 16], EPOCH);
    assert!(honest_run(&mut hana, &mut session, 1 << 20).await >= 1);
    let signed = hana.down;
    // Then 1 MiB more, unsigned: above the 256 KiB slack, below the 3 MiB grace.
    while hana.down < signed + (1 << 20) {
        assert!(hana.pull().await);
    }
    assert!(hana.down - signed < GRACE);

    // The counters are read (the excess is seen) and time passes up to a millisecond short of
    // the grace: served.
    clock.step(t0 + 200).await;
    clock.step(t0 + GRACE_MS - 1).await;
    assert!(
        !endpoint.is_blocked(&hana.peer()),
        "blocked before grace_ms"
    );
    assert!(hana.pull().await, "blocked before grace_ms");

    // At the grace: blocked, the endpoint refuses it, the hook is told why.
    clock.step(t0 + GRACE_MS).await;
    let line = hook_line(&log, &hana.peer().to_string()).await;
    assert_eq!(line, format!("block {} 127.0.0.1 unsigned", hana.peer()));
    assert!(!hana.pull().await, "served after grace_ms");
}

/// With a counter program, a subscriber that leaves with unsigned usage and comes back after
/// the router started counting its address afresh (it re-associated) answers for what it left
/// unsigned plus what the router counted since, and its grace runs on from when it was last
/// covered: blocked at `grace_ms` after its last agreed receipt although it came back since.
/// A receipt for all of it then serves it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_subscriber_keeps_its_unsigned_usage_and_its_grace_across_a_counter_reset() {
    const GRACE_MS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (program, write) = counter_program(dir.path());
    let clock = StepClock::default();
    let t0 = now_ms();
    clock.now.store(t0, Ordering::SeqCst);
    let (mut hot, log) = hotspot_with(
        dir.path(),
        CounterSource::Command(program),
        GRACE_MS,
        clock.clock(),
    )
    .await;
    let endpoint = hot.net.usage_data.clone().unwrap();

    // Covered at t0; then the router counts 1 MiB it never signs for (above the 256 KiB
    // slack, below the 3 MiB grace), read at t0 + 200.
    let ivy = subscriber(11, &hot).await;
    let mut session = ivy.session(&hot, [0xa1; 16], EPOCH);
    ivy.connect(&hot).await;
    write(2 << 20, 64 << 10);
    agree(&ivy, &mut session, 2 << 20, 64 << 10).await;
    write(3 << 20, 64 << 10);
    clock.step(t0 + 200).await;

    // It leaves at t0 + 300: its last agreed receipt goes out.
    clock.step(t0 + 300).await;
    ivy.net.task.abort();
    assert_eq!(
        open::<UsageReceipt>(&next_proof(&mut hot).await.bytes)
            .unwrap()
            .msg
            .bytes_down,
        2 << 20
    );

    // It re-associated: the router counts its address from zero, 100 KiB so far. Back at
    // t0 + 500, it is served: its grace is not over.
    write(100 << 10, 0);
    let ivy = subscriber(11, &hot).await;
    let mut session = ivy.session(&hot, [0xa2; 16], EPOCH);
    ivy.connect(&hot).await;
    clock.step(t0 + 500).await;
    clock.step(t0 + GRACE_MS - 1).await;
    assert!(!endpoint.is_blocked(&ivy.peer()), "blocked before grace_ms");

    // At t0 + grace_ms, not t0 + 500 + grace_ms: blocked for what it did not sign.
    clock.step(t0 + GRACE_MS).await;
    assert!(
        endpoint.is_blocked(&ivy.peer()),
        "the grace started afresh when it came back"
    );
    let line = hook_line(&log, &format!("block {}", ivy.peer())).await;
    assert_eq!(line, format!("block {} 127.0.0.1 unsigned", ivy.peer()));

    // Its new session must sign for the 1 MiB it left unsigned and the 100 KiB since: a
    // receipt for that is agreed, and it is served again.
    agree(&ivy, &mut session, (1 << 20) + (100 << 10), 0).await;
    let line = hook_line(&log, &format!("serve {}", ivy.peer())).await;
    assert_eq!(line, format!("serve {} 127.0.0.1 agreed", ivy.peer()));
    assert!(!endpoint.is_blocked(&ivy.peer()));
}
