//! The oracle service with real parts: the `wisp-oracle` binary with its embedded broker and
//! SQLite store, and protocol-level test clients publishing real signed envelopes over MQTT.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wisp_oracle::store::StorageConfig;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{Envelope, signed_bytes};
use wisp_protocol::msg::{
    Band, BandwidthReceipt, BwFailure, Direction, EpochSeed, Heartbeat, MeasurerSet,
    MeasurerSetAssembly, Onboard, Verdict, Versions, open_sealed_ack,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeId, NodeKey, ProofId, Reason, envelope, topics};

mod pg;

/// The tests here kill and restart oracles on fixed ports: while one is down, another test's
/// `free_port()` could hand its port out. They run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

struct Oracle {
    child: Child,
    data: PathBuf,
}

impl Oracle {
    fn spawn(data: &Path, broker: u16, extra: &[(&str, &str)]) -> Oracle {
        Self::spawn_with(data, broker, &[], extra)
    }

    fn spawn_with(data: &Path, broker: u16, args: &[&str], extra: &[(&str, &str)]) -> Oracle {
        let _ = std::fs::remove_file(data.join("http.addr"));
        let child = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
            .args(["run", "--data-dir", &data.display().to_string()])
            .args(args)
            .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{broker}"))
            .env("WISP_BROKER__MAX_PAYLOAD", "1048576")
            .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
            .env("WISP_EPOCH__DURATION_S", "3")
            .env("WISP_EPOCH__SETTLE_S", "1")
            .env("WISP_EPOCH__SLOT_COUNT", "3")
            .env("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.05")
            .env("WISP_LOG", "warn,rumqttd=off")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let o = Oracle {
            child,
            data: data.to_path_buf(),
        };
        assert!(
            wait_for(Duration::from_secs(20), || o
                .data
                .join("http.addr")
                .exists()),
            "oracle did not start"
        );
        assert!(wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", broker)).is_ok()
        }));
        o
    }

    fn key(data: &Path) -> NodeKey {
        wisp_protocol::keyfile::load(&data.join("oracle.key")).unwrap()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let addr = std::fs::read_to_string(self.data.join("http.addr")).unwrap();
        let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        let body = r.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()))
    }

    fn metrics(&self) -> String {
        match self.get("/metrics") {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The value of an unlabelled counter or gauge in `/metrics` (0 when it is not there yet).
    fn counter(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test client: publishes envelopes for several nodes, each over a connection logged in as
/// that node (the embedded broker lets a node publish only its own proofs and read only its own
/// acks), reads the seed as a monitor, and records every ack it sees.
struct Client {
    conns: BTreeMap<NodeId, AsyncClient>,
    acks: Arc<Mutex<BTreeMap<ProofId, Verdict>>>,
    seed: Arc<Mutex<Option<EpochSeed>>>,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn connect(broker: u16, oracle: &NodeKey, nodes: &[&NodeKey]) -> Client {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let acks = Arc::new(Mutex::new(BTreeMap::new()));
        let seed = Arc::new(Mutex::new(None));
        let oracle_id = oracle.id();
        let subscribed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut conns = BTreeMap::new();
        // `None`: the monitor, which reads the seed.
        let logins: Vec<Option<&NodeKey>> = std::iter::once(None)
            .chain(nodes.iter().map(|k| Some(*k)))
            .collect();
        for login in &logins {
            let client_id = match login {
                Some(k) => format!("wisp-test-{}", k.id()),
                None => format!("test-monitor-{}", free_port()),
            };
            let mut o = MqttOptions::new(client_id, "127.0.0.1", broker);
            o.set_max_packet_size(2 << 20, 2 << 20);
            o.set_request_channel_capacity(10_000);
            o.set_inflight(1000);
            if let Some(k) = login {
                o.set_credentials(
                    k.id().to_string(),
                    wisp_protocol::login::password(k, &oracle_id),
                );
            }
            let (client, mut events) = AsyncClient::new(o, 10_000);
            let sub = match login {
                Some(k) => topics::acks(&k.id()),
                None => topics::EPOCH.to_string(),
            };
            let (a, sd, c, n) = (
                acks.clone(),
                seed.clone(),
                client.clone(),
                subscribed.clone(),
            );
            rt.spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            c.subscribe(sub.clone(), QoS::AtLeastOnce).await.unwrap();
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if p.topic == topics::EPOCH {
                                // A shared broker may still hold another oracle's retained seed.
                                if let Ok(o) = envelope::open::<EpochSeed>(&p.payload)
                                    && o.signer == oracle_id
                                {
                                    *sd.lock().unwrap() = Some(o.msg);
                                }
                            } else if let Ok(o) = open_sealed_ack(&p.payload) {
                                assert_eq!(o.signer, oracle_id, "ack not signed by the oracle");
                                assert_eq!(topics::node_of(&p.topic), Some(o.ack.node));
                                let mut acks = a.lock().unwrap();
                                for e in o.ack.entries {
                                    acks.insert(e.proof_id, e.verdict);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
            if let Some(k) = login {
                conns.insert(k.id(), client);
            } else {
                // The monitor's client lives in its task; it only reads.
                drop(client);
            }
        }
        let c = Client {
            conns,
            acks,
            seed,
            rt,
        };
        assert!(
            wait_for(Duration::from_secs(10), || {
                c.seed.lock().unwrap().is_some()
                    && subscribed.load(std::sync::atomic::Ordering::SeqCst) >= logins.len()
            }),
            "no epoch seed, or not subscribed to every node's acks"
        );
        c
    }

    fn seed(&self) -> EpochSeed {
        self.seed.lock().unwrap().clone().unwrap()
    }

    /// Publishes on `topic` over the connection of the node it names.
    fn publish(&self, topic: String, bytes: Vec<u8>) {
        let node = topics::node_of(&topic).expect("a node's topic");
        let c = self.conns[&node].clone();
        self.rt.block_on(async move {
            c.publish(topic, QoS::AtLeastOnce, false, bytes)
                .await
                .unwrap()
        });
    }

    fn send(&self, node: &NodeKey, bytes: &[u8]) -> ProofId {
        self.publish(topics::proofs(&node.id()), bytes.to_vec());
        ProofId::of(bytes)
    }

    fn verdict(&self, id: &ProofId) -> Option<Verdict> {
        self.acks.lock().unwrap().get(id).copied()
    }

    fn await_verdict(&self, id: &ProofId) -> Verdict {
        let mut v = None;
        assert!(
            wait_for(Duration::from_secs(10), || {
                v = self.verdict(id);
                v.is_some()
            }),
            "no ack for {id}"
        );
        v.unwrap()
    }
}

fn onboard(node: &NodeKey, lat: f64) -> Vec<u8> {
    onboard_as(node, lat, true)
}

/// An onboard declaring the measurer role or not.
fn onboard_as(node: &NodeKey, lat: f64, measurer: bool) -> Vec<u8> {
    Envelope::sign(
        node,
        &Onboard {
            owner: "owner".into(),
            cell: Cell::from_degrees(lat, -9.1, 12).unwrap(),
            antenna_gain: DeciDb(30),
            antenna_height_dm: 50,
            bands: vec![Band {
                low_khz: 2_400_000,
                high_khz: 2_483_500,
                max_eirp: DeciDb(200),
            }],
            measurer,
            issued_ms: wall_ms(),
            attestation: None,
        },
    )
    .to_bytes()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn heartbeat_at(epoch: u64, seq: u64, sent_ms: u64) -> Heartbeat {
    Heartbeat {
        epoch,
        seq,
        uptime_s: seq,
        sent_ms,
        fix: None,
        cell: None,
        versions: Versions::new("test", "none"),
        peers: 0,
    }
}

/// Heartbeat `seq`, signed `30 ms × seq` after a base just behind the clock, so that
/// consecutive ones respect the 50 ms interval these tests configure.
fn heartbeat(_node: &NodeKey, epoch: u64, seq: u64) -> Heartbeat {
    heartbeat_at(epoch, seq, wall_ms() - 1_000 + 30 * seq)
}

#[test]
fn verdicts_for_honest_replayed_forged_and_malformed_proofs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let oracle = Oracle::spawn(dir.path(), port, &[]);
    let okey = Oracle::key(dir.path());
    let a = NodeKey::from_seed(&[1; 32]);
    let b = NodeKey::from_seed(&[2; 32]);
    let c = Client::connect(port, &okey, &[&a, &b]);

    let on = c.send(&a, &onboard(&a, 38.7));
    assert_eq!(c.await_verdict(&on), Verdict::Accepted);
    let epoch = c.seed().epoch;
    let hb = Envelope::sign(&a, &heartbeat(&a, epoch, 1)).to_bytes();
    let id = c.send(&a, &hb);
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    // Replayed: acked again, with the same verdict, and stored once.
    c.acks.lock().unwrap().remove(&id);
    c.send(&a, &hb);
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);

    let check = |topic_node: &NodeKey, bytes: Vec<u8>, want: Reason| {
        c.publish(topics::proofs(&topic_node.id()), bytes.clone());
        assert_eq!(
            c.await_verdict(&ProofId::of(&bytes)),
            Verdict::Rejected(want),
            "{want}"
        );
    };
    // What did not verify is refused without an ack: nothing says the topic's node sent it.
    // A proof the oracle acks follows it on the same topic; once that ack is in, an ack for
    // the refused one would have come before it (one batch order, one ack order). On a's
    // topic the follower is the replayed heartbeat, acked again and never stored twice.
    let b_hb = Envelope::sign(&b, &heartbeat(&b, epoch, 1)).to_bytes();
    let silent = |topic_node: &NodeKey, bytes: Vec<u8>| {
        let follower = if topic_node.id() == a.id() {
            &hb
        } else {
            &b_hb
        };
        let fid = ProofId::of(follower);
        c.acks.lock().unwrap().remove(&fid);
        c.publish(topics::proofs(&topic_node.id()), bytes.clone());
        c.send(topic_node, follower);
        c.await_verdict(&fid);
        assert_eq!(c.verdict(&ProofId::of(&bytes)), None, "acked");
    };
    // Forged: one flipped bit in the signature.
    let mut forged = Envelope::sign(&a, &heartbeat(&a, epoch, 2)).to_bytes();
    let n = forged.len();
    forged[n - 10] ^= 1;
    silent(&a, forged);
    // Wrong topic: a's heartbeat on b's topic.
    silent(&b, Envelope::sign(&a, &heartbeat(&a, epoch, 3)).to_bytes());
    // Wrong epoch.
    check(
        &a,
        Envelope::sign(&a, &heartbeat(&a, epoch + 50, 4)).to_bytes(),
        Reason::WrongEpoch,
    );
    // Not onboarded (the follower above).
    assert_eq!(
        c.verdict(&ProofId::of(&b_hb)),
        Some(Verdict::Rejected(Reason::UnknownNode))
    );
    // Oversize: larger than any envelope may be.
    let mut big = vec![1u8, Kind::Heartbeat.as_u8()];
    big.resize(300_000, 0);
    silent(&a, big);
    // Non-canonical: an over-long varint, properly signed.
    let payload = envelope::encode_payload(&heartbeat(&a, epoch, 5));
    let mut padded = vec![payload[0] | 0x80, 0x00];
    padded.extend_from_slice(&payload[1..]);
    let sig = a.sign_raw(&signed_bytes(Kind::Heartbeat, &padded));
    let env = Envelope {
        version: 1,
        kind: Kind::Heartbeat,
        payload: padded,
        signer: a.id(),
        signature: sig.into(),
        cosigners: vec![],
    };
    check(&a, env.to_bytes(), Reason::NonCanonical);
    // Not a proof kind.
    let seed_like = Envelope::sign(&a, &c.seed()).to_bytes();
    silent(&a, seed_like);

    // The API shows the node, its proofs and the rejections (the node list refreshes each second).
    let path = format!("/v1/nodes/{}", a.id());
    assert!(wait_for(Duration::from_secs(5), || {
        oracle.get(&path)["node"].is_object()
    }));
    let node = oracle.get(&path);
    assert_eq!(node["node"]["peer_id"], a.id().to_string());
    let kinds: Vec<&str> = node["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "heartbeat").count(),
        3,
        "{node}"
    );
    let rej = oracle.get("/v1/rejections").to_string();
    // Authentic proofs are stored with their rejection; the rest are only counted.
    for r in ["wrong_epoch", "non_canonical", "unknown_node"] {
        assert!(rej.contains(r), "{r} missing from {rej}");
    }
    let metrics = oracle.metrics();
    for r in [
        "bad_signature",
        "topic_mismatch",
        "oversize",
        "unexpected_kind",
    ] {
        assert!(
            metrics.contains(&format!(
                "wisp_oracle_unverified_total{{reason=\"{r}\"}} 1\n"
            )),
            "{r} not counted:\n{metrics}"
        );
        assert!(
            !metrics.contains(&format!("verdict=\"{r}\"")),
            "{r} counted as a verdict:\n{metrics}"
        );
    }
    assert!(metrics.contains("verdict=\"accepted\""), "{metrics}");
    // The replay, and the heartbeat that followed three of the refusals on a's topic.
    assert!(
        metrics.contains("wisp_oracle_duplicates_total 4"),
        "{metrics}"
    );
    assert_eq!(
        oracle.get("/v1/nodes/not-a-peer-id")["error"]
            .as_str()
            .map(|s| s.contains("peer id")),
        Some(true)
    );
}

/// Every complete measurer set seen, by epoch, once per publication.
type SeenSets = Arc<Mutex<BTreeMap<u64, Vec<Vec<NodeId>>>>>;

/// Collects the oracle's `measurer_set` parts (checked: oracle-signed) by epoch.
fn collect_measurer_sets(broker: u16, oracle: NodeId) -> (SeenSets, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sets: SeenSets = Arc::default();
    let mut o = MqttOptions::new(format!("sets-{}", free_port()), "127.0.0.1", broker);
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut events) = AsyncClient::new(o, 100);
    let s = sets.clone();
    rt.spawn(async move {
        let mut asm: BTreeMap<u64, MeasurerSetAssembly> = BTreeMap::new();
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(topics::MEASURERS_FILTER, QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                    let opened = envelope::open::<MeasurerSet>(&p.payload).unwrap();
                    assert_eq!(
                        opened.signer, oracle,
                        "measurer set not signed by the oracle"
                    );
                    assert_eq!(p.topic, topics::measurers(usize::from(opened.msg.part)));
                    let epoch = opened.msg.epoch;
                    let a = asm.entry(epoch).or_default();
                    if a.add(opened.msg) == Ok(true)
                        && let Some((_, nodes)) = a.set()
                    {
                        s.lock().unwrap().entry(epoch).or_default().push(nodes);
                        *a = MeasurerSetAssembly::new();
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (sets, rt)
}

/// A failed test's receipt, measurer-signed and prover co-signed.
fn failed_receipt(
    epoch: u64,
    prover: &NodeKey,
    measurer: &NodeKey,
    direction: Direction,
    test: u8,
) -> Vec<u8> {
    let mut env = Envelope::sign(
        measurer,
        &BandwidthReceipt {
            test_id: ByteArray([test; 16]),
            epoch,
            prover: prover.id(),
            measurer: measurer.id(),
            direction,
            outcome: wisp_protocol::msg::Outcome::Failed(BwFailure::Timeout),
        },
    );
    env.cosign(prover);
    env.to_bytes()
}

#[test]
fn each_epoch_publishes_its_measurer_set_and_judges_receipts_by_it_across_a_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Epochs long enough to send receipts in the one whose set was just seen.
    let long = [("WISP_EPOCH__DURATION_S", "8")];
    let oracle = Oracle::spawn(dir.path(), port, &long);
    let okey = Oracle::key(dir.path());
    let (sets, _rt) = collect_measurer_sets(port, okey.id());
    let nodes: Vec<NodeKey> = (1..=5u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    // A node that does not declare the measurer role is in no set.
    let idle = NodeKey::from_seed(&[6; 32]);
    let mut refs: Vec<&NodeKey> = nodes.iter().collect();
    refs.push(&idle);
    let c = Client::connect(port, &okey, &refs);
    let onboards: Vec<Vec<u8>> = nodes[..4].iter().map(|n| onboard(n, 38.7)).collect();
    for (n, bytes) in nodes.iter().zip(&onboards) {
        assert_eq!(c.await_verdict(&c.send(n, bytes)), Verdict::Accepted);
    }
    assert_eq!(
        c.await_verdict(&c.send(&idle, &onboard_as(&idle, 38.7, false))),
        Verdict::Accepted
    );
    let mut first4: Vec<NodeId> = nodes[..4].iter().map(NodeKey::id).collect();
    first4.sort_unstable();
    // An epoch opened after the onboards lists exactly those nodes.
    let mut epoch = 0;
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = sets.lock().unwrap();
            match s.iter().find(|(_, v)| v[0] == first4) {
                Some((e, _)) => {
                    epoch = *e;
                    true
                }
                None => false,
            }
        }),
        "no measurer set with the four onboarded nodes: {:?}",
        sets.lock().unwrap()
    );
    // A fifth node onboards now: it is not in that epoch's set, whatever the registry says.
    let late = &nodes[4];
    assert_eq!(
        c.await_verdict(&c.send(late, &onboard(late, 38.7))),
        Verdict::Accepted
    );
    let prover = &nodes[0];
    assert!(wait_for(Duration::from_secs(10), || c.seed().epoch >= epoch));
    let seed = c.seed();
    assert_eq!(
        seed.epoch, epoch,
        "the epoch ended before its receipts were sent"
    );
    {
        let assigned =
            wisp_protocol::schedule::assign_measurers(&seed.seed.0, &prover.id(), &first4, 3);
        let measurer = nodes.iter().find(|n| n.id() == assigned[0]).unwrap();
        // Past the assignment check, a failed test is refused for what it is.
        let ok = failed_receipt(epoch, prover, measurer, Direction::Down, 1);
        assert_eq!(
            c.await_verdict(&c.send(measurer, &ok)),
            Verdict::Rejected(Reason::TestFailed)
        );
        // A receipt sent only by its prover (the co-signer), on its own topic, is judged the
        // same way; on a node's topic that signed nothing it is a topic mismatch, dropped
        // without an ack. (Distinct receipts, so that no ack of one check can answer another.)
        let copy = failed_receipt(epoch, prover, measurer, Direction::Up, 2);
        assert_eq!(
            c.await_verdict(&c.send(prover, &copy)),
            Verdict::Rejected(Reason::TestFailed)
        );
        // The seed is random, so the measurer may be any of the other three: pick a node that
        // is neither of the two signers.
        let (bystander, bystander_onboard) = nodes[1..4]
            .iter()
            .zip(&onboards[1..4])
            .find(|(n, _)| n.id() != measurer.id())
            .unwrap();
        let stray = failed_receipt(epoch, prover, measurer, Direction::Down, 3);
        let stray = c.send(bystander, &stray);
        // Its onboarding again, after it on the same topic: acked (a duplicate), and any ack
        // of the stray receipt would have come first.
        let follower = ProofId::of(bystander_onboard);
        c.acks.lock().unwrap().remove(&follower);
        c.send(bystander, bystander_onboard);
        assert_eq!(c.await_verdict(&follower), Verdict::Accepted);
        assert_eq!(c.verdict(&stray), None, "a topic mismatch was acked");
        let bad = failed_receipt(epoch, prover, late, Direction::Down, 4);
        assert_eq!(
            c.await_verdict(&c.send(late, &bad)),
            Verdict::Rejected(Reason::WrongMeasurer),
            "a node that onboarded after the epoch opened does not measure in it"
        );
        let not_measuring = failed_receipt(epoch, prover, &idle, Direction::Down, 5);
        assert_eq!(
            c.await_verdict(&c.send(&idle, &not_measuring)),
            Verdict::Rejected(Reason::WrongMeasurer),
            "a node onboarded without the measurer role does not measure"
        );
    }

    // SIGKILL and restart: the store replays the onboards and reopens every epoch at the point
    // it opened, so each epoch's set is the same as before; later epochs include the fifth node.
    oracle.kill9();
    let _oracle = Oracle::spawn(dir.path(), port, &long);
    let mut all5: Vec<NodeId> = nodes.iter().map(NodeKey::id).collect();
    all5.sort_unstable();
    assert!(
        wait_for(Duration::from_secs(20), || sets
            .lock()
            .unwrap()
            .values()
            .any(|v| v[0] == all5)),
        "no measurer set with all five nodes"
    );
    for (e, seen) in sets.lock().unwrap().iter() {
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "epoch {e}: the set changed between publications: {seen:?}"
        );
    }
}

#[test]
fn a_flood_is_rate_limited_while_others_are_served() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _oracle = Oracle::spawn(
        dir.path(),
        port,
        &[
            ("WISP_INGEST__RATE_PER_S", "20"),
            ("WISP_INGEST__BURST", "50"),
        ],
    );
    let okey = Oracle::key(dir.path());
    let flooder = NodeKey::from_seed(&[3; 32]);
    let honest = NodeKey::from_seed(&[4; 32]);
    let c = Client::connect(port, &okey, &[&flooder, &honest]);
    for (k, lat) in [(&flooder, 38.7), (&honest, 38.71)] {
        let id = c.send(k, &onboard(k, lat));
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    let epoch = c.seed().epoch;
    let flood: Vec<ProofId> = (1..=1000)
        .map(|s| {
            c.send(
                &flooder,
                &Envelope::sign(&flooder, &heartbeat(&flooder, epoch, s)).to_bytes(),
            )
        })
        .collect();
    let honest_ids: Vec<ProofId> = (1..=10)
        .map(|s| {
            std::thread::sleep(Duration::from_millis(30));
            c.send(
                &honest,
                &Envelope::sign(&honest, &heartbeat(&honest, epoch, s)).to_bytes(),
            )
        })
        .collect();
    for id in &honest_ids {
        assert_eq!(c.await_verdict(id), Verdict::Accepted);
    }
    assert!(wait_for(Duration::from_secs(20), || flood
        .iter()
        .all(|id| c.verdict(id).is_some())));
    let limited = flood
        .iter()
        .filter(|id| c.verdict(id) == Some(Verdict::Rejected(Reason::RateLimited)))
        .count();
    println!("flood: {limited} of 1000 rate-limited");
    assert!(limited >= 900, "only {limited} rate-limited");
}

#[test]
fn garbage_on_a_nodes_topic_costs_the_node_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let oracle = Oracle::spawn(
        dir.path(),
        port,
        &[
            ("WISP_INGEST__RATE_PER_S", "20"),
            ("WISP_INGEST__BURST", "50"),
        ],
    );
    let okey = Oracle::key(dir.path());
    let victim = NodeKey::from_seed(&[5; 32]);
    let stranger = NodeKey::from_seed(&[6; 32]);
    let c = Client::connect(port, &okey, &[&victim, &stranger]);
    let id = c.send(&victim, &onboard(&victim, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let epoch = c.seed().epoch;
    // 2,000 publishes on the victim's topic from someone without its key, forty times its
    // burst: its heartbeats with made-up signatures, a stranger's genuine heartbeats,
    // envelopes cut short.
    let mut garbage: Vec<ProofId> = Vec::new();
    for n in 0..2_000u64 {
        let hb = heartbeat_at(epoch, 1_000 + n, wall_ms() - 1_000);
        let bytes = match n % 3 {
            0 => {
                let mut b = Envelope::sign(&victim, &hb).to_bytes();
                let len = b.len();
                b[len - 5] ^= 1 << (n % 8);
                b
            }
            1 => Envelope::sign(&stranger, &hb).to_bytes(),
            _ => {
                let mut b = Envelope::sign(&stranger, &hb).to_bytes();
                b.truncate(b.len() - 7);
                b
            }
        };
        garbage.push(c.send(&victim, &bytes));
    }
    // Then the victim's own heartbeats: every one accepted, none rate-limited.
    let genuine: Vec<ProofId> = (1..=10)
        .map(|s| {
            c.send(
                &victim,
                &Envelope::sign(&victim, &heartbeat(&victim, epoch, s)).to_bytes(),
            )
        })
        .collect();
    for id in &genuine {
        assert_eq!(c.await_verdict(id), Verdict::Accepted);
    }
    // The garbage went before them on the same topic: had any of it been acked, that ack
    // would be in by now.
    let acked: Vec<&ProofId> = garbage
        .iter()
        .filter(|id| c.verdict(id).is_some())
        .collect();
    assert!(acked.is_empty(), "{} garbage publishes acked", acked.len());
    let metrics = oracle.metrics();
    let count = |line: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("wisp_oracle_unverified_total{reason=\"bad_signature\"}")
            + count("wisp_oracle_unverified_total{reason=\"topic_mismatch\"}")
            + count("wisp_oracle_unverified_total{reason=\"malformed\"}"),
        2_000,
        "{metrics}"
    );
    assert!(!metrics.contains("verdict=\"rate_limited\""), "{metrics}");
}

#[test]
fn the_data_directory_and_the_database_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // Neither the data directory nor its parent exists yet.
    let data = root.path().join("srv/oracle");
    let port = free_port();
    let oracle = Oracle::spawn(&data, port, &[]);
    let okey = Oracle::key(&data);
    let node = NodeKey::from_seed(&[7; 32]);
    let c = Client::connect(port, &okey, &[&node]);
    // A stored proof: the write-ahead log exists.
    let id = c.send(&node, &onboard(&node, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("srv")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for f in ["oracle.db", "oracle.db-wal", "oracle.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    drop(oracle);
}

#[test]
fn crash_in_the_middle_of_an_epoch_close_leaves_the_old_state_then_closes_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let timing = [
        ("WISP_EPOCH__DURATION_S", "4"),
        ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.5"),
    ];
    let oracle = Oracle::spawn(dir.path(), port, &timing);
    let okey = Oracle::key(dir.path());
    let nodes: Vec<NodeKey> = (10..13u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    let refs: Vec<&NodeKey> = nodes.iter().collect();
    let c = Client::connect(port, &okey, &refs);
    for (i, k) in nodes.iter().enumerate() {
        let id = c.send(k, &onboard(k, 38.7 + i as f64 * 0.01));
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    // Heartbeat through one whole epoch, from its start, every 450 ms.
    let first = c.seed().epoch;
    assert!(wait_for(Duration::from_secs(10), || c.seed().epoch > first));
    let seed = c.seed();
    let epoch = seed.epoch;
    let mut seq = 0;
    while wall_ms() + 450 < seed.end_ms() {
        seq += 1;
        for k in &nodes {
            let id = c.send(
                k,
                &Envelope::sign(k, &heartbeat_at(epoch, seq, wall_ms())).to_bytes(),
            );
            assert_eq!(c.await_verdict(&id), Verdict::Accepted);
        }
        std::thread::sleep(Duration::from_millis(450));
    }
    // Restart (the state is replayed from the database) with a crash point in the close.
    oracle.kill9();
    let mut crashing = Oracle::spawn(
        dir.path(),
        port,
        &[
            timing[0],
            timing[1],
            ("WISP_ORACLE_CRASH_AT", "close-mid-transaction"),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(15), || crashing
            .child
            .try_wait()
            .unwrap()
            .is_some()),
        "did not crash"
    );
    let db = rusqlite::Connection::open(dir.path().join("oracle.db")).unwrap();
    let closed: Option<i64> = db
        .query_row(
            "SELECT closed_ms FROM epochs WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rewards WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (closed, rows),
        (None, 0),
        "a crash mid-close must leave the epoch open and unpaid"
    );
    drop(crashing);

    // Restarted without the crash point: the epoch closes once and pays exactly the emission.
    let oracle = Oracle::spawn(dir.path(), port, &timing);
    let path = format!("/v1/epochs/{epoch}/rewards");
    assert!(wait_for(Duration::from_secs(15), || {
        oracle.get(&path)["entries"].is_array()
    }));
    let r = oracle.get(&path);
    let entries = r["entries"].as_array().unwrap();
    let total: u64 = entries.iter().map(|e| e["amount"].as_u64().unwrap()).sum();
    println!("epoch {epoch}: {seq} heartbeats per node, rewards {entries:?}");
    assert_eq!(entries.len(), 3, "{r}");
    assert_eq!(total, 1_000_000_000);
    // Every manifest page verifies and carries the root the API shows.
    for page in r["manifest_pages_hex"].as_array().unwrap() {
        let bytes = hex::decode(page.as_str().unwrap()).unwrap();
        let m = envelope::open::<wisp_protocol::msg::RewardManifest>(&bytes).unwrap();
        assert_eq!(m.signer, okey.id());
        assert_eq!(m.msg.root.to_string(), r["merkle_root"].as_str().unwrap());
    }
    let rows: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rewards WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 3);
    oracle.kill9();
}

#[test]
fn sigkill_during_ingest_loses_no_acked_proof_and_counts_none_twice() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut oracle = Some(Oracle::spawn(
        dir.path(),
        port,
        &[("WISP_EPOCH__DURATION_S", "60")],
    ));
    let okey = Oracle::key(dir.path());
    let nodes: Vec<NodeKey> = (0..100u32)
        .map(|i| NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let refs: Vec<&NodeKey> = nodes.iter().collect();
    let c = Client::connect(port, &okey, &refs);
    for (i, k) in nodes.iter().enumerate() {
        c.send(k, &onboard(k, 38.0 + i as f64 * 0.01));
    }
    assert!(wait_for(Duration::from_secs(20), || c
        .acks
        .lock()
        .unwrap()
        .len()
        >= nodes.len()));
    let epoch = c.seed().epoch;
    let mut proofs: Vec<(usize, Vec<u8>)> = Vec::new();
    for seq in 1..=6u64 {
        for (i, k) in nodes.iter().enumerate() {
            proofs.push((i, Envelope::sign(k, &heartbeat(k, epoch, seq)).to_bytes()));
        }
    }
    let send_unacked = |c: &Client| {
        for (i, p) in &proofs {
            if c.verdict(&ProofId::of(p)).is_none() {
                c.send(&nodes[*i], p);
            }
        }
    };
    // Send everything; kill the oracle three times while it ingests; resend what is unacked.
    let mut rng = 7u64;
    for round in 0..4 {
        send_unacked(&c);
        if round < 3 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_millis(20 + (rng >> 33) % 200));
            oracle.take().unwrap().kill9();
            oracle = Some(Oracle::spawn(
                dir.path(),
                port,
                &[("WISP_EPOCH__DURATION_S", "60")],
            ));
        }
    }
    assert!(
        wait_for(Duration::from_secs(30), || {
            send_unacked(&c);
            std::thread::sleep(Duration::from_millis(200));
            proofs
                .iter()
                .all(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        }),
        "some proofs were never acked"
    );
    let verdicts: BTreeMap<String, usize> = proofs.iter().fold(BTreeMap::new(), |mut m, (_, p)| {
        *m.entry(format!("{:?}", c.verdict(&ProofId::of(p)).unwrap()))
            .or_default() += 1;
        m
    });
    println!("verdicts after 3 SIGKILLs: {verdicts:?}");
    oracle.take().unwrap().kill9();
    let db = rusqlite::Connection::open(dir.path().join("oracle.db")).unwrap();
    for (_, p) in &proofs {
        let id = ProofId::of(p);
        let stored: Option<i64> = db
            .query_row(
                "SELECT verdict FROM proofs WHERE id = ?1",
                [id.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .ok();
        // Every acked proof is stored (exactly once: the id is unique), with the acked verdict.
        let code = match c.verdict(&id).unwrap() {
            Verdict::Accepted => 0,
            Verdict::Rejected(r) => i64::from(r.code()),
        };
        assert_eq!(stored, Some(code), "proof {id}");
    }
    assert_eq!(
        verdicts.get("Accepted"),
        Some(&proofs.len()),
        "{verdicts:?}"
    );
}

#[test]
#[ignore = "needs Mosquitto: WISP_TEST_MOSQUITTO=127.0.0.1:1883"]
fn with_mosquitto_as_the_broker() {
    let _serial = serial();
    let addr = std::env::var("WISP_TEST_MOSQUITTO")
        .expect("set WISP_TEST_MOSQUITTO=host:port of a Mosquitto broker (.ci/run starts one on 127.0.0.1:1883)");
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://{addr}");
    let oracle = Oracle::spawn_with(dir.path(), port, &["--broker", &url], &[]);
    let okey = Oracle::key(dir.path());
    let node = NodeKey::from_seed(blake3::hash(okey.id().as_bytes()).as_bytes());
    let c = Client::connect(port, &okey, &[&node]);
    let id = c.send(&node, &onboard(&node, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let epoch = c.seed().epoch;
    for s in 1..=5 {
        let id = c.send(
            &node,
            &Envelope::sign(&node, &heartbeat(&node, epoch, s)).to_bytes(),
        );
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    assert_eq!(oracle.get("/v1/status")["broker_connected"], true);
    // This broker has no ACLs: anyone may replace the retained seed with one of its own making,
    // or delete it with an empty one. The oracle puts its own back at once.
    let real = c.seed();
    // A shared broker may still hold retained messages, and queued ones for the oracle's
    // session, from earlier runs with other oracle keys: those were restored too, so count
    // from here.
    let restored = oracle.counter("wisp_oracle_retained_restored_total");
    let stranger = NodeKey::from_seed(&[66; 32]);
    let forged = EpochSeed {
        seed: [9; 32].into(),
        ..real.clone()
    };
    let forged = Envelope::sign(&stranger, &forged).to_bytes();
    assert_eq!(
        publish_retained(port, topics::EPOCH, forged),
        BrokerAnswer::Done
    );
    assert_eq!(
        publish_retained(port, topics::EPOCH, Vec::new()),
        BrokerAnswer::Done
    );
    assert!(
        wait_for(Duration::from_secs(10), || oracle
            .counter("wisp_oracle_retained_restored_total")
            >= restored + 2),
        "{}",
        oracle.metrics()
    );
    // A subscriber that comes now gets the oracle's seed (`connect` waits for one the oracle
    // signed, and fails after 10 s without one).
    assert_eq!(Client::connect(port, &okey, &[]).seed(), real);
}

// ---------------------------------------------------------------------------------------------
// Repeated SIGKILL, compared with a run without crashes.
//
// Both runs use the oracle's file clock (`WISP_ORACLE_CLOCK_FILE`), the same oracle key and the
// same pre-signed proofs, so a run is a function of its inputs: the rewards and the signed
// manifests of the crashing run must equal those of the clean run byte for byte.

const EPOCH_MS: u64 = 10_000;
const SETTLE_MS: u64 = 1_500;
const STEP_MS: u64 = 1_000;
const EPOCHS: u64 = 3;
/// The clock at step 0: epoch 0 starts at `T0 - 500` (genesis is the clock rounded down).
const T0: u64 = 1_800_000_000_500;

/// An epoch as stored: closed_ms, rewards and signed manifest pages.
type StoredEpoch = (
    Option<u64>,
    Vec<wisp_protocol::msg::RewardEntry>,
    Vec<Vec<u8>>,
);

/// What a run leaves in its store, for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Per epoch.
    epochs: BTreeMap<u64, StoredEpoch>,
    /// Every stored proof: id → (epoch, verdict).
    proofs: BTreeMap<ProofId, (Option<u64>, Verdict)>,
}

fn outcome_of(storage: &Storage) -> Outcome {
    let mut store = storage.open();
    let mut epochs = BTreeMap::new();
    for e in store.epochs().unwrap() {
        epochs.insert(
            e.epoch,
            (
                e.closed_ms,
                store.rewards(e.epoch).unwrap(),
                store.manifests(e.epoch).unwrap(),
            ),
        );
    }
    let mut proofs = BTreeMap::new();
    store
        .for_each_row(|r| {
            assert!(
                proofs.insert(r.id, (r.epoch, r.verdict)).is_none(),
                "proof {} stored twice",
                r.id
            );
        })
        .unwrap();
    Outcome { epochs, proofs }
}

/// Where a run stores its data: SQLite in the data directory, or a fresh PostgreSQL schema.
struct Storage {
    cfg: StorageConfig,
}

impl Storage {
    fn sqlite(dir: &Path) -> Storage {
        Storage {
            cfg: StorageConfig::Sqlite(dir.join("oracle.db")),
        }
    }

    fn postgres() -> Storage {
        Storage { cfg: pg::fresh() }
    }

    fn env(&self) -> Vec<(String, String)> {
        match &self.cfg {
            StorageConfig::Sqlite(_) => vec![],
            StorageConfig::Postgres { url, schema } => {
                let mut v = vec![("WISP_STORAGE__URL".to_string(), url.clone())];
                v.extend(
                    schema
                        .iter()
                        .map(|s| ("WISP_STORAGE__SCHEMA".to_string(), s.clone())),
                );
                v
            }
        }
    }

    fn open(&self) -> wisp_oracle::store::Store {
        wisp_oracle::store::Store::open(&self.cfg).unwrap()
    }
}

struct Schedule {
    nodes: Vec<NodeKey>,
    onboards: Vec<Vec<u8>>,
    /// Per step: the heartbeats sent at it, with the sending node's index.
    steps: Vec<Vec<(usize, Vec<u8>)>>,
}

impl Schedule {
    fn new(n: usize) -> Schedule {
        let nodes: Vec<NodeKey> = (0..n as u32)
            .map(|i| NodeKey::from_seed(blake3::hash(&(i + 5000).to_le_bytes()).as_bytes()))
            .collect();
        let onboards = nodes
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Envelope::sign(
                    k,
                    &Onboard {
                        owner: format!("owner-{}", i % 4),
                        cell: Cell::from_degrees(38.0 + i as f64 * 0.02, -9.1, 12).unwrap(),
                        antenna_gain: DeciDb(30),
                        antenna_height_dm: 50,
                        bands: vec![Band {
                            low_khz: 2_400_000,
                            high_khz: 2_483_500,
                            max_eirp: DeciDb(200),
                        }],
                        measurer: true,
                        issued_ms: T0 - 400,
                        attestation: None,
                    },
                )
                .to_bytes()
            })
            .collect();
        let per_epoch = EPOCH_MS / STEP_MS;
        let steps = (0..EPOCHS * per_epoch)
            .map(|k| {
                let epoch = k / per_epoch;
                // The heartbeat counter runs on across epochs, as an agent's does.
                let seq = k + 1;
                let t = T0 + k * STEP_MS;
                nodes
                    .iter()
                    .enumerate()
                    // Uneven uptime: some nodes miss beats, every fifth stops halfway.
                    .filter(|(i, _)| !(i * 7 + k as usize * 3).is_multiple_of(11))
                    .filter(|(i, _)| i % 5 != 0 || k % per_epoch < per_epoch / 2)
                    .map(|(i, key)| {
                        (
                            i,
                            Envelope::sign(key, &heartbeat_at(epoch, seq, t - 200)).to_bytes(),
                        )
                    })
                    .collect()
            })
            .collect();
        Schedule {
            nodes,
            onboards,
            steps,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.onboards
            .iter()
            .chain(self.steps.iter().flatten().map(|(_, p)| p))
    }
}

/// A small deterministic generator for the kill moments.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Run<'a> {
    data: PathBuf,
    clock: PathBuf,
    port: u16,
    storage: &'a Storage,
    oracle: Option<Oracle>,
    kills: u32,
}

impl<'a> Run<'a> {
    fn new(data: &Path, key: &NodeKey, storage: &'a Storage) -> Run<'a> {
        std::fs::create_dir_all(data).unwrap();
        wisp_protocol::keyfile::save_new(&data.join("oracle.key"), key).unwrap();
        let clock = data.join("clock");
        std::fs::write(&clock, T0.to_string()).unwrap();
        Run {
            data: data.to_path_buf(),
            clock,
            port: free_port(),
            storage,
            oracle: None,
            kills: 0,
        }
    }

    fn env(&self, crash_at: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("WISP_ORACLE_CLOCK_FILE", self.clock.display().to_string()),
            ("WISP_EPOCH__DURATION_S", (EPOCH_MS / 1000).to_string()),
            (
                "WISP_EPOCH__SETTLE_S",
                format!("{}", SETTLE_MS as f64 / 1000.0),
            ),
            ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "1".into()),
            ("WISP_INGEST__BURST", "100000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.storage.env());
        if let Some(c) = crash_at {
            env.push(("WISP_ORACLE_CRASH_AT".into(), c.into()));
        }
        env
    }

    fn start(&mut self) {
        let env = self.env(None);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.oracle = Some(Oracle::spawn(&self.data, self.port, &env));
    }

    fn kill(&mut self) {
        if let Some(o) = self.oracle.take() {
            o.kill9();
            self.kills += 1;
        }
    }

    /// Starts the oracle with a crash point and waits for it to abort there.
    fn crash_at(&mut self, point: &str) {
        self.crash_at_while(point, || {});
    }

    /// Starts the oracle with a crash point and waits for it to abort there, calling
    /// `meanwhile` every 300 ms (to send it what makes it reach the point).
    fn crash_at_while(&mut self, point: &str, mut meanwhile: impl FnMut()) {
        use std::os::unix::process::ExitStatusExt;
        assert!(self.oracle.is_none());
        let mut child = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
            .args(["run", "--data-dir", &self.data.display().to_string()])
            .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
            .env("WISP_LOG", "error,rumqttd=off")
            .envs(self.env(Some(point)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut status = None;
        let mut last = Instant::now();
        assert!(
            wait_for(Duration::from_secs(30), || {
                if last.elapsed() > Duration::from_millis(300) {
                    meanwhile();
                    last = Instant::now();
                }
                status = child.try_wait().unwrap();
                status.is_some()
            }),
            "the oracle did not reach crash point {point}"
        );
        assert_eq!(
            status.unwrap().signal(),
            Some(6),
            "the oracle should have aborted at {point}"
        );
        self.kills += 1;
    }

    fn set_clock(&self, t: u64) {
        // Atomic replace: the oracle never reads a half-written number.
        let tmp = self.clock.with_extension("tmp");
        std::fs::write(&tmp, t.to_string()).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    fn oracle(&self) -> &Oracle {
        self.oracle.as_ref().unwrap()
    }
}

/// Sends `proofs` until every one is acked; with `kills`, SIGKILLs the oracle at random
/// moments while it ingests them and restarts it.
fn deliver(
    run: &mut Run<'_>,
    c: &Client,
    proofs: &[(&NodeKey, &Vec<u8>)],
    kills: Option<&mut Lcg>,
) {
    let send_unacked = |c: &Client| {
        for (k, p) in proofs {
            if c.verdict(&ProofId::of(p)).is_none() {
                c.send(k, p);
            }
        }
    };
    if let Some(rng) = kills {
        for _ in 0..rng.next(3) {
            send_unacked(c);
            std::thread::sleep(Duration::from_millis(rng.next(40)));
            run.kill();
            if rng.next(4) == 0 {
                // The next start dies inside its first ingest transaction.
                run.crash_at_while("ingest-before-commit", || send_unacked(c));
            }
            run.start();
        }
    }
    assert!(
        wait_for(Duration::from_secs(60), || {
            send_unacked(c);
            std::thread::sleep(Duration::from_millis(150));
            proofs
                .iter()
                .all(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        }),
        "some proofs were never acked"
    );
}

fn epoch_closed(run: &Run<'_>, epoch: u64) -> bool {
    run.oracle().get(&format!("/v1/epochs/{epoch}/rewards"))["entries"].is_array()
}

/// Runs the whole schedule; with `seed`, kills the oracle repeatedly. Returns the acks seen.
fn run_schedule(
    run: &mut Run<'_>,
    key: &NodeKey,
    s: &Schedule,
    seed: Option<u64>,
) -> BTreeMap<ProofId, Verdict> {
    let mut rng = seed.map(Lcg);
    run.start();
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(run.port, key, &refs);
    let onboards: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).collect();
    deliver(run, &c, &onboards, rng.as_mut());
    let per_epoch = EPOCH_MS / STEP_MS;
    for k in 0..=EPOCHS * per_epoch + 1 {
        let t = T0 + k * STEP_MS;
        // The step after an epoch's end + settle window closes it.
        let closing = (k > 1 && (k - 1) % per_epoch == 0).then(|| (k - 1) / per_epoch - 1);
        match (closing, rng.is_some()) {
            (Some(epoch), true) => {
                // Kill, move the clock past the settle window, and crash inside the close
                // transaction, then after its commit (before the manifest is published).
                run.kill();
                run.set_clock(t);
                run.crash_at("close-mid-transaction");
                let mut store = run.storage.open();
                let e = store
                    .epochs()
                    .unwrap()
                    .into_iter()
                    .find(|e| e.epoch == epoch)
                    .unwrap();
                assert_eq!(
                    e.closed_ms, None,
                    "a crash mid-close left epoch {epoch} closed"
                );
                assert!(
                    store.rewards(epoch).unwrap().is_empty(),
                    "a crash mid-close left rewards"
                );
                drop(store);
                run.crash_at("close-after-commit");
                let mut store = run.storage.open();
                assert!(
                    !store.manifests(epoch).unwrap().is_empty(),
                    "the close committed before the crash"
                );
                drop(store);
                run.start();
            }
            _ => run.set_clock(t),
        }
        if let Some(epoch) = closing {
            assert!(
                wait_for(Duration::from_secs(30), || epoch_closed(run, epoch)),
                "epoch {epoch} did not close"
            );
        }
        // Proofs of an epoch go out once the oracle has opened it (it notices the clock
        // within 100 ms), as an agent waits for the seed.
        let current = k / per_epoch;
        assert!(
            wait_for(Duration::from_secs(30), || c.seed().epoch >= current),
            "epoch {current} did not open"
        );
        if let Some(step) = s.steps.get(k as usize) {
            let proofs: Vec<(&NodeKey, &Vec<u8>)> =
                step.iter().map(|(i, p)| (&s.nodes[*i], p)).collect();
            deliver(run, &c, &proofs, rng.as_mut());
        }
    }
    // The dashboard's witness links come from the last closed epoch (heartbeats only here).
    let links = run.oracle().get("/v1/witness-links");
    assert_eq!(links["epoch"], EPOCHS - 1, "{links}");
    assert_eq!(links["links"], serde_json::json!([]), "{links}");
    let acks = c.acks.lock().unwrap().clone();
    run.kill();
    acks
}

fn crash_run_equals_clean_run(clean_storage: &Storage, crash_storage: &Storage, root: &Path) {
    let key = NodeKey::from_seed(&[42; 32]);
    let schedule = Schedule::new(24);

    let mut clean = Run::new(&root.join("clean"), &key, clean_storage);
    let clean_acks = run_schedule(&mut clean, &key, &schedule, None);
    let mut crashing = Run::new(&root.join("crashing"), &key, crash_storage);
    let crash_acks = run_schedule(&mut crashing, &key, &schedule, Some(0x5eed));

    let a = outcome_of(clean_storage);
    let b = outcome_of(crash_storage);
    // Every proof was acked, in both runs, with the same verdict; every acked proof is stored
    // (once: `outcome_of` refuses a proof stored twice) with the verdict its ack carried.
    for p in schedule.all() {
        let id = ProofId::of(p);
        let v = crash_acks.get(&id).copied();
        assert!(v.is_some(), "proof {id} never acked");
        assert_eq!(v, clean_acks.get(&id).copied(), "proof {id}");
        assert_eq!(
            b.proofs.get(&id).map(|x| x.1),
            v,
            "acked proof {id} not stored as acked"
        );
    }
    assert_eq!(a.proofs, b.proofs, "stored proofs differ");
    let accepted = b
        .proofs
        .values()
        .filter(|x| x.1 == Verdict::Accepted)
        .count();
    let by_verdict = b.proofs.values().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(format!("{:?} {:?}", x.0, x.1)).or_insert(0) += 1;
        m
    });
    assert_eq!(
        accepted,
        schedule.all().count(),
        "every proof of the schedule is honest: {by_verdict:?}"
    );
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (epoch, (closed, rewards, pages)) in &a.epochs {
        let (closed_b, rewards_b, pages_b) = &b.epochs[epoch];
        if *epoch < EPOCHS {
            assert!(closed.is_some(), "epoch {epoch} not closed");
            assert_eq!(
                rewards.iter().map(|e| e.amount).sum::<u64>(),
                1_000_000_000,
                "epoch {epoch} pays its emission"
            );
        }
        assert_eq!(closed, closed_b, "epoch {epoch} closed at a different time");
        assert_eq!(rewards, rewards_b, "epoch {epoch}: rewards differ");
        assert_eq!(pages, pages_b, "epoch {epoch}: signed manifests differ");
    }
    println!(
        "{} kills and crashes over {EPOCHS} epochs; {} proofs; rewards per epoch: {:?}",
        crashing.kills,
        b.proofs.len(),
        b.epochs
            .iter()
            .map(|(e, (_, r, _))| (*e, r.len()))
            .collect::<Vec<_>>()
    );
    assert!(crashing.kills >= EPOCHS as u32 * 2 + 3);
}

#[test]
fn repeated_sigkill_in_ingest_and_close_gives_the_rewards_of_a_run_without_crashes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clean = Storage::sqlite(&dir.path().join("clean"));
    let crash = Storage::sqlite(&dir.path().join("crashing"));
    crash_run_equals_clean_run(&clean, &crash, dir.path());
}

#[test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
fn postgres_repeated_sigkill_in_ingest_and_close_gives_the_rewards_of_a_run_without_crashes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clean = Storage::postgres();
    let crash = Storage::postgres();
    crash_run_equals_clean_run(&clean, &crash, dir.path());
}

/// `check` refuses a key that `run` would refuse (readable by others), and names its mode.
#[test]
fn check_refuses_a_key_run_would_refuse() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let cli = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
            .args([cmd, "--data-dir", &data.path().display().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(cli("check").0, "no key yet: `run` creates one");
    assert!(cli("key").0);
    assert!(cli("check").0);
    let key = data.path().join("oracle.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = cli("check");
    assert!(!ok && err.contains("644"), "{err}");
}

/// What a broker did with one client's one request.
#[derive(Debug, PartialEq, Eq)]
enum BrokerAnswer {
    /// Acknowledged (`PUBACK` or a granting `SUBACK`).
    Done,
    /// The `CONNECT` was refused with this code.
    Refused(rumqttc::ConnectReturnCode),
    /// The connection was closed before an acknowledgement.
    Closed,
}

/// What a client does once connected.
enum Request<'a> {
    PublishRetained(&'a str, Vec<u8>),
    Subscribe(&'a str),
}

/// A node's own login (username, password) on the network of `oracle`.
fn node_login(node: &NodeKey, oracle: NodeId) -> Option<(String, String)> {
    Some((
        node.id().to_string(),
        wisp_protocol::login::password(node, &oracle),
    ))
}

/// Connects as `client_id` (with `login`, a username and password, when given), makes one
/// request, and reports what the broker did.
fn attempt(
    broker: u16,
    client_id: &str,
    login: Option<(String, String)>,
    request: Request<'_>,
) -> BrokerAnswer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", broker);
        if let Some((user, password)) = login {
            o.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(o, 10);
        match request {
            Request::PublishRetained(topic, payload) => client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await
                .unwrap(),
            Request::Subscribe(filter) => client.subscribe(filter, QoS::AtLeastOnce).await.unwrap(),
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("no answer from the broker")
            {
                Ok(Event::Incoming(Packet::PubAck(_))) => return BrokerAnswer::Done,
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    return if s
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                    {
                        BrokerAnswer::Done
                    } else {
                        BrokerAnswer::Closed
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    return BrokerAnswer::Refused(code);
                }
                Err(_) => return BrokerAnswer::Closed,
            }
        }
    })
}

/// A publish as a monitor (no login) under a client id of its own.
fn publish_retained(broker: u16, topic: &str, payload: Vec<u8>) -> BrokerAnswer {
    attempt(
        broker,
        &format!("stranger-{}", free_port()),
        None,
        Request::PublishRetained(topic, payload),
    )
}

#[test]
fn the_embedded_broker_lets_nobody_speak_for_another() {
    use rumqttc::ConnectReturnCode::{BadClientId, BadUserNamePassword};
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = free_port();
    // Hour-long epochs: no new seed would come to mend the topic by itself.
    let oracle = Oracle::spawn(dir.path(), broker, &[("WISP_EPOCH__DURATION_S", "3600")]);
    let key = Oracle::key(dir.path());
    let me = NodeKey::from_seed(&[65; 32]);
    let victim = NodeKey::from_seed(&[66; 32]);
    let c = Client::connect(broker, &key, &[&me, &victim]);
    let real = c.seed();
    let on = c.send(&victim, &onboard(&victim, 38.7));
    assert_eq!(c.await_verdict(&on), Verdict::Accepted);
    let forged = Envelope::sign(
        &me,
        &EpochSeed {
            seed: [9; 32].into(),
            ..real.clone()
        },
    )
    .to_bytes();
    let mine = node_login(&me, key.id());
    let my_id = format!("wisp-agent-{}", me.id());
    // A forged seed, and an empty one that would delete the retained seed: from a monitor and
    // from a logged-in node alike, the connection is closed and nothing is published.
    assert_eq!(
        publish_retained(broker, topics::EPOCH, forged.clone()),
        BrokerAnswer::Closed
    );
    assert_eq!(
        publish_retained(broker, topics::EPOCH, Vec::new()),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::PublishRetained(topics::EPOCH, forged)
        ),
        BrokerAnswer::Closed
    );
    // A node's proofs and acks are its own.
    let hb = Envelope::sign(&me, &heartbeat(&me, real.epoch, 1)).to_bytes();
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::PublishRetained(&topics::proofs(&victim.id()), hb.clone())
        ),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::Subscribe(&topics::acks(&victim.id()))
        ),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            "monitor-1",
            None,
            Request::Subscribe(topics::PROOFS_FILTER)
        ),
        BrokerAnswer::Closed
    );
    // Client ids: the oracle's, a node's, with or without somebody's login.
    for (id, login) in [
        ("wisp-oracle".to_string(), None),
        ("wisp-oracle".to_string(), mine.clone()),
        (format!("wisp-agent-{}", victim.id()), None),
        (format!("wisp-agent-{}", victim.id()), mine.clone()),
    ] {
        assert_eq!(
            attempt(broker, &id, login, Request::Subscribe(topics::EPOCH)),
            BrokerAnswer::Refused(BadClientId),
            "{id}"
        );
    }
    // Somebody else's name with my token.
    let my_token = wisp_protocol::login::password(&me, &key.id());
    assert_eq!(
        attempt(
            broker,
            "x",
            Some((victim.id().to_string(), my_token)),
            Request::Subscribe(topics::EPOCH)
        ),
        BrokerAnswer::Refused(BadUserNamePassword)
    );
    let as_victim = node_login(&victim, key.id());
    // What a node and a monitor may do, they can.
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::Subscribe(&topics::acks(&me.id()))
        ),
        BrokerAnswer::Done
    );
    assert_eq!(
        attempt(
            broker,
            &format!("wisp-agent-{}", victim.id()),
            as_victim,
            Request::PublishRetained(&topics::status(&victim.id()), b"{}".to_vec())
        ),
        BrokerAnswer::Done
    );
    assert_eq!(
        attempt(
            broker,
            "monitor-2",
            None,
            Request::Subscribe("wisp/v1/status/+")
        ),
        BrokerAnswer::Done
    );
    // The oracle stayed connected, kept its seed, and counted every refusal.
    assert_eq!(oracle.get("/v1/status")["broker_connected"], true);
    assert_eq!(Client::connect(broker, &key, &[]).seed(), real);
    let m = oracle.metrics();
    for (reason, n) in [
        ("publish", 4),
        ("subscribe", 2),
        ("client_id", 4),
        ("login", 1),
    ] {
        let line = format!("wisp_oracle_broker_refused_total{{reason=\"{reason}\"}} {n}\n");
        assert!(m.contains(&line), "{line} in\n{m}");
    }
    assert!(m.contains("wisp_oracle_retained_restored_total 0\n"), "{m}");
}
