//! Proof of usage end to end over real loopback sockets: a hotspot's libp2p network with its
//! usage driver (the `endpoint` counter source, a hook script writing its calls to a file),
//! and subscribers on libp2p networks of their own driving wisp-client's sans-IO `Session`.
//! An honest subscriber's receipts are agreed and one co-signed receipt per session per epoch
//! reaches the outbox's channel; a subscriber that stops signing is blocked (the endpoint
//! refuses it, the hook is called with `block`); one that inflates its receipt is disputed with
//! the hotspot's totals, and one that replays a `seq` is refused and blocked. One that leaves
//! ends its session, and its receipt goes out at once.
//!
//! Real sockets rule out paused tokio time (the runtime would jump its timers while waiting on
//! I/O), so nothing here depends on a timer: blocking is triggered by bytes (`grace_bytes`),
//! and timeouts only bound a hang.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};
use wisp_agent::config::{CounterSource, UsageSettings};
use wisp_agent::core::Proof;
use wisp_agent::metrics::Metrics;
use wisp_agent::net::usage_data::{CHUNK_MAX, DataAnswer};
use wisp_agent::net::{self, NetConfig, Network};
use wisp_agent::shell::usage::{UsageIo, run};
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
    _net: Network,
    _driver: tokio::task::JoinHandle<()>,
}

/// A hotspot with its usage driver counting with `counters`; the hook appends its arguments
/// to `hook_log`.
async fn hotspot(dir: &Path, counters: CounterSource) -> (Hotspot, std::path::PathBuf) {
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
            ..UsageConfig::default()
        },
        hook: Some(hook),
        counters,
        counters_interval_ms: 200,
    };
    let (epoch, epoch_rx) = watch::channel(Some(EPOCH));
    let (proofs_tx, proofs) = mpsc::channel(64);
    let io = UsageIo {
        requests: std::mem::replace(&mut n.usage, mpsc::channel(1).1),
        net: n.handle.clone(),
        endpoint: n.usage_data.clone(),
        epoch: epoch_rx,
        proofs: proofs_tx,
        metrics: Arc::new(Metrics::new("test")),
    };
    let driver = tokio::spawn(run(key.clone(), settings, io));
    let peer = n.handle.local_peer_id();
    (
        Hotspot {
            key,
            peer,
            addr,
            epoch,
            proofs,
            _net: n,
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
    let counts = dir.path().join("counts");
    let program = dir.path().join("counters.sh");
    std::fs::write(&program, format!("#!/bin/sh\ncat '{}'\n", counts.display())).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let write = |down: u64, up: u64| {
        let text = format!("not-an-address 1 2\n127.0.0.1 {down} {up}\n");
        std::fs::write(&counts, text).unwrap();
    };
    write(0, 0);
    let (hot, log) = hotspot(dir.path(), CounterSource::Command(program)).await;

    // The router counted 1 MiB down and 64 KiB up for 127.0.0.1, where the subscriber's
    // connection comes from: its receipt for that is agreed.
    let erin = subscriber(6, &hot).await;
    let mut session = erin.session(&hot, [0xe5; 16], EPOCH);
    // The first request opens the connection the address is mapped through.
    assert!(
        erin.net
            .handle
            .usage_data_request(hot.peer, 0, &[])
            .await
            .is_ok()
    );
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
