//! Twelve real agents (the full daemon: core, outbox on SQLite, MQTT, HTTP status, libp2p)
//! in one process, over loopback TCP and QUIC, each with a simulated radio (the firmware's
//! `SimDevice`) on a shared simulated medium that delivers a transmitted beacon to exactly
//! the nodes within range. An embedded broker and a test oracle (signed seed, signed acks)
//! stand for the oracle side.
//!
//! Checked: every beacon is witnessed by exactly the nodes in range; the witnesses reach the
//! oracle and are gossiped to every node; each beaconer's status lists its witnesses; a remote
//! `/wisp/status/1` query (library and CLI) returns a report whose signature is checked, with
//! the witnesses' envelopes only from a node that shows peers its asserted cell; a
//! forged witness is rejected by the node it is sent to and reaches nobody else; with the
//! epoch's measurer set published, every node invites its assigned measurers and every
//! assigned (prover, measurer) pair ends in co-signed receipts for both directions at the
//! oracle, and each prover's latest test shows in its `/status` and its signed status report; a
//! malformed `/wisp/bw/1` request gets a signed refusal; a restarted agent (same key) rejoins.
//!
//! Timeouts only bound a hang (the machine is shared and slow); nothing asserts speed.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use wisp_agent::bandwidth::negotiate::decode_body;
use wisp_agent::bandwidth::{BwResponse, RefuseReason, SignedResponse};
use wisp_agent::config::RawConfig;
use wisp_agent::core::TxFrame;
use wisp_agent::device::Board;
use wisp_agent::device::{DeviceError, DeviceIo, RxFrame};
use wisp_agent::net::{self, NetConfig, Topic};
use wisp_agent::shell;
use wisp_agent::status::DeviceChecks;
use wisp_agent::wallclock::wall_ms;
use wisp_firmware::device::SimDevice;
use wisp_firmware::radio::RadioFrame;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{
    BackhaulOutcome, BandwidthReceipt, Direction, GnssFix, MeasurerSet, Outcome, Witness,
};
use wisp_protocol::schedule::assign_measurers;
use wisp_protocol::{NodeId, NodeKey, topics};

/// Agents on a line, 150 m apart; a beacon carries 350 m, so each node hears the two nearest
/// on each side and no farther.
const N: usize = 12;
const SPACING_M: f64 = 150.0;
const RANGE_M: f64 = 350.0;
const HANG: Duration = Duration::from_secs(120);

fn in_range(a: usize, b: usize) -> bool {
    a != b && (a.abs_diff(b) as f64) * SPACING_M <= RANGE_M
}

/// One node's simulated device, shared by its daemon and the medium.
type SharedBoard = Arc<Mutex<Board<SimDevice>>>;

/// The air: every node's simulated device, by index.
#[derive(Clone, Default)]
struct Medium {
    boards: Arc<Mutex<Vec<SharedBoard>>>,
}

impl Medium {
    fn add(&self, seed: u8) -> (usize, SharedBoard) {
        let dev = wisp_firmware::device::simulated(&[seed; 32], [seed; 9]).unwrap();
        let b = Arc::new(Mutex::new(Board::new(dev, "sim-medium")));
        let mut all = self.boards.lock().unwrap();
        all.push(b.clone());
        (all.len() - 1, b)
    }

    /// Delivers what node `from` transmitted to every node in range, with a free-space RSSI.
    fn propagate(&self, from: usize, payload: &[u8], freq_khz: u32) {
        let all = self.boards.lock().unwrap().clone();
        for (to, board) in all.iter().enumerate() {
            if !in_range(from, to) {
                continue;
            }
            let d_m = (from.abs_diff(to) as f64) * SPACING_M;
            let f_mhz = f64::from(freq_khz) / 1000.0;
            let fspl = 20.0 * d_m.log10() + 20.0 * f_mhz.log10() - 27.55;
            let rssi = 20.0 + 3.0 + 3.0 - fspl;
            let frame = RadioFrame {
                payload: payload.try_into().unwrap(),
                rssi_ddbm: (rssi * 10.0).round() as i16,
                snr_ddb: ((rssi + 95.0) * 10.0).round() as i16,
                freq_khz,
                rx_time_ms: wall_ms(),
            };
            assert!(board.lock().unwrap().device_mut().inject_frame(frame));
        }
    }
}

/// One node's radio on the medium.
struct MediumRadio {
    idx: usize,
    board: SharedBoard,
    medium: Medium,
}

impl DeviceIo for MediumRadio {
    fn transmit(&mut self, frame: &TxFrame) -> Result<(), DeviceError> {
        let sent: Vec<_> = {
            let mut b = self.board.lock().unwrap();
            b.transmit(frame)?;
            b.device_mut().drain_transmitted().collect()
        };
        for t in sent {
            self.medium
                .propagate(self.idx, &t.payload, t.channel.freq_khz);
        }
        Ok(())
    }
    fn poll_received(&mut self) -> Option<RxFrame> {
        self.board.lock().unwrap().poll_received()
    }
    fn poll_fix(&mut self) -> Option<GnssFix> {
        None
    }
    fn health(&self) -> DeviceChecks {
        self.board.lock().unwrap().health()
    }
    fn firmware_version(&self) -> String {
        "sim-medium".into()
    }
}

/// An agent running in this process.
struct Node {
    dir: PathBuf,
    id: NodeId,
    http: SocketAddr,
    p2p: Vec<Multiaddr>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    fn quic(&self) -> Multiaddr {
        self.p2p
            .iter()
            .find(|a| a.to_string().contains("quic"))
            .unwrap()
            .clone()
    }
    fn tcp(&self) -> Multiaddr {
        self.p2p
            .iter()
            .find(|a| a.to_string().contains("/tcp/"))
            .unwrap()
            .clone()
    }
    fn peer(&self) -> PeerId {
        self.id.to_peer_id()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&http_get(self.http, "/status").1).unwrap()
    }
    /// The sum of a metric's samples whose labels contain every one of `labels`.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        http_get(self.http, "/metrics")
            .1
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter(|l| labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
    fn poc(&self, outcome: &str) -> f64 {
        self.metric(
            "wisp_gossip_received_total",
            &["wisp/poc/1", &format!("\"{outcome}\"")],
        )
    }
    fn witnessed_by(&self) -> BTreeSet<String> {
        self.status()["witnessed_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["peer"].as_str().unwrap().to_string())
            .collect()
    }
    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            tokio::time::timeout(HANG, d)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

fn env_for(
    dir: &Path,
    broker: u16,
    idx: usize,
    bootstrap: Option<&Multiaddr>,
) -> Vec<(String, String)> {
    let mut env = agent_env(dir, broker, &oracle_key());
    env.retain(|(k, _)| k != "WISP_NET__LISTEN");
    env.extend([
        (
            "WISP_NET__LISTEN".into(),
            "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1".into(),
        ),
        ("WISP_NET__KAD_SERVER".into(), "true".into()),
        // Every node measures when assigned; short, capped tests keep the loopback cheap. Odd
        // nodes listen for tests on every address without an advertised one: they give provers
        // the IP of their configured external address.
        ("WISP_BANDWIDTH__MEASURER".into(), "true".into()),
        (
            "WISP_BANDWIDTH__LISTEN".into(),
            if idx % 2 == 1 {
                "0.0.0.0:0"
            } else {
                "127.0.0.1:0"
            }
            .into(),
        ),
        ("WISP_BANDWIDTH__DURATION_S".into(), "1".into()),
        ("WISP_BANDWIDTH__BYTE_CAP_MIB".into(), "16".into()),
        ("WISP_LOCATION__LAT".into(), "38.7".into()),
        (
            "WISP_LOCATION__LON".into(),
            format!("{}", -9.1 + idx as f64 * 0.0017),
        ),
    ]);
    if let Some(b) = bootstrap {
        env.push(("WISP_NET__BOOTSTRAP".into(), b.to_string()));
    }
    if idx == 7 {
        // Shows its asserted cell to peers, and so the signed witnesses of its beacon too.
        env.push(("WISP_NET__STATUS_CELL_RESOLUTION".into(), "12".into()));
    }
    if idx % 2 == 1 {
        // Only the IP is taken for the test endpoint; nothing listens on this port, so a peer
        // dialling it is refused at once.
        env.push((
            "WISP_NET__EXTERNAL_ADDRESSES".into(),
            "/ip4/127.0.0.1/tcp/9".into(),
        ));
    }
    env
}

async fn spawn_node(dir: &Path, env: Vec<(String, String)>, device: MediumRadio) -> Node {
    let cfg = RawConfig::load(None, env).unwrap().resolve().unwrap();
    let _ = std::fs::remove_file(dir.join("http.addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(shell::run(cfg, Box::new(device), async move {
        let _ = rx.await;
    }));
    let http_path = dir.join("http.addr");
    tokio::time::timeout(HANG, async {
        while !http_path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("agent did not start");
    let http = std::fs::read_to_string(&http_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let p2p = std::fs::read_to_string(dir.join("p2p.addr"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let id = wisp_shell::keyfile::load(&dir.join("node.key"))
        .unwrap()
        .id();
    Node {
        dir: dir.to_path_buf(),
        id,
        http,
        p2p,
        stop: Some(tx),
        done: Some(done),
    }
}

/// Polls `f` (off the runtime's workers: it does blocking HTTP) until it holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool + Send + 'static) {
    let ok = tokio::task::spawn_blocking(move || wait_for(HANG, &mut f))
        .await
        .unwrap();
    assert!(ok, "gave up waiting for: {what}");
}

#[test]
fn twelve_agents_witness_gossip_report_and_answer_status() {
    // The agents run in this process: `WISP_TEST_LOG=<filter>` shows their logs.
    if let Ok(f) = std::env::var("WISP_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .try_init();
    }
    let broker = start_broker();
    // Epoch 1 starts 8 s from now (time for every agent to start and the mesh to form), with
    // 4 s beacon slots: every node beacons within 56 s. The epoch is long enough for 36
    // bandwidth tests on a busy machine: a measurer starts no test that could not end 5 s
    // before the epoch does, and each prover invites its three measurers one after another.
    let start = wall_ms() + 8_000;
    let seed = seed_envelope_with(&oracle_key(), 1, start, 48_000, 12, 5_000);
    // The oracle owns a runtime of its own: keep it outside the agents' runtime.
    let oracle = TestOracle::start_with_seed("127.0.0.1", broker, seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(&oracle, broker));
}

async fn scenario(oracle: &TestOracle, broker: u16) {
    let medium = Medium::default();
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..N {
        let dir = tmp.path().join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (idx, board) = medium.add(u8::try_from(i).unwrap() + 1);
        assert_eq!(idx, i);
        // Everyone bootstraps from node 0 over QUIC and finds the rest through the DHT.
        let boot = nodes.first().map(Node::quic);
        let env = env_for(&dir, broker, i, boot.as_ref());
        let device = MediumRadio {
            idx,
            board,
            medium: medium.clone(),
        };
        nodes.push(spawn_node(&dir, env, device).await);
    }
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    let index: BTreeMap<NodeId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    // The oracle's measurer set for epoch 1: every node (as if all had onboarded before).
    let mut eligible = ids.clone();
    eligible.sort_unstable();
    for part in MeasurerSet::split(1, &eligible).unwrap() {
        oracle
            .client
            .publish(
                topics::measurers(usize::from(part.part)),
                rumqttc::QoS::AtLeastOnce,
                true,
                Envelope::sign(&oracle.key, &part).to_bytes(),
            )
            .await
            .unwrap();
    }
    let expected: BTreeSet<(usize, usize)> = (0..N)
        .flat_map(|b| (0..N).filter(move |&w| in_range(b, w)).map(move |w| (b, w)))
        .collect();
    println!(
        "{} nodes, {} expected (beaconer, witness) pairs",
        N,
        expected.len()
    );

    // The oracle side: every node beacons once, and every witness arrives.
    let seen = oracle.seen.clone();
    let total = expected.len();
    eventually("all beacons and witnesses at the oracle", move || {
        let s = seen.lock().unwrap();
        s.beacons.len() >= N && s.witnesses.len() >= total
    })
    .await;
    let pairs: Vec<(usize, usize)> = oracle
        .seen
        .lock()
        .unwrap()
        .witnesses
        .iter()
        .map(|w| {
            let w = envelope::open::<Witness>(w).unwrap();
            let b = w.msg.open_beacon().unwrap();
            (index[&b.signer], index[&w.signer])
        })
        .collect();
    let pair_set: BTreeSet<(usize, usize)> = pairs.iter().copied().collect();
    assert_eq!(
        pairs.len(),
        pair_set.len(),
        "a beacon was witnessed twice by one node"
    );
    assert_eq!(
        pair_set, expected,
        "witnesses differ from the nodes in range"
    );

    // Gossip: every node accepted every witness it did not sign itself.
    let own: Vec<usize> = (0..N)
        .map(|w| expected.iter().filter(|(_, x)| *x == w).count())
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        let want = (total - own[i]) as f64;
        let http = n.http;
        let probe = Node {
            dir: n.dir.clone(),
            id: n.id,
            http,
            p2p: vec![],
            stop: None,
            done: None,
        };
        eventually(
            &format!("node {i} received {want} gossiped witnesses"),
            move || probe.poc("accepted") >= want,
        )
        .await;
        assert_eq!(n.poc("accepted"), want, "node {i}");
        assert_eq!(n.poc("rejected"), 0.0, "node {i}");
    }

    // Each beaconer's status lists exactly the nodes in range as its witnesses.
    for (b, n) in nodes.iter().enumerate() {
        let want: BTreeSet<String> = (0..N)
            .filter(|&w| in_range(b, w))
            .map(|w| ids[w].to_string())
            .collect();
        assert_eq!(n.witnessed_by(), want, "status of node {b}");
        let first = &n.status()["witnessed_by"][0];
        assert!(first["rssi_dbm"].as_f64().unwrap() < -40.0, "{first}");
        assert_eq!(first["freq_mhz"].as_f64().unwrap(), 2412.0);
    }

    // A monitor asks node 5 over /wisp/status/1, knowing only its peer id and address.
    let monitor = net::start(
        &NodeKey::from_seed(&[0xee; 32]),
        &NetConfig {
            listen: vec![],
            ..NetConfig::default()
        },
        oracle_key().id(),
        None,
    )
    .unwrap();
    monitor
        .handle
        .add_address(nodes[5].peer(), nodes[5].tcp())
        .await
        .unwrap();
    let remote = tokio::time::timeout(HANG, monitor.handle.status_request(nodes[5].peer()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(remote.peer, ids[5]);
    assert_eq!(remote.report.epoch, Some(1));
    assert!(remote.report.peers >= 1);
    // At the default resolution (7) the report names the witnesses but carries none of their
    // envelopes (they hold full-resolution cells), and its cell is the coarse one.
    let listed: BTreeSet<String> = remote
        .report
        .witnessed_by
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(listed, nodes[5].witnessed_by());
    assert!(remote.witnesses.is_empty());
    assert_eq!(remote.report.cell.unwrap().resolution(), 7);
    assert_eq!(remote.report.fix, None);
    assert_eq!(
        nodes[5].metric("wisp_status_queries_served_total", &[]),
        1.0
    );

    // The same through the CLI, which verifies the signature against the peer id.
    let cli_dir = tmp.path().join("cli");
    let out = tokio::task::spawn_blocking({
        let (peer, addr) = (nodes[7].peer().to_string(), nodes[7].tcp().to_string());
        let env = agent_env(&cli_dir, broker, &oracle_key());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
                .args(["status", "--peer", &peer, "--addr", &addr, "--json"])
                .envs(env)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["peer_id"], ids[7].to_string());
    assert_eq!(doc["signature"], "verified");
    // Node 7 shows its asserted cell, so its answer carries the 4 verified witnesses.
    assert_eq!(doc["witnessed_by"].as_array().unwrap().len(), 4);
    assert_eq!(doc["report"]["cell"], nodes[7].status()["cell"]);

    // Proof of backhaul: every node invited its 3 assigned measurers, each ran the test, and
    // both directions of every assigned pair reached the oracle, signed by the measurer and
    // co-signed by the prover.
    let seed = [1u8; 32];
    let want: BTreeSet<(NodeId, NodeId)> = ids
        .iter()
        .flat_map(|p| {
            assign_measurers(&seed, p, &eligible, 3)
                .into_iter()
                .map(move |m| (*p, m))
        })
        .collect();
    assert_eq!(want.len(), 3 * N);
    let seen = oracle.seen.clone();
    let receipts_due = 2 * want.len();
    eventually(
        "both receipts of every assigned pair at the oracle",
        move || seen.lock().unwrap().receipts.len() >= receipts_due,
    )
    .await;
    let mut got: BTreeMap<(NodeId, NodeId), Vec<Direction>> = BTreeMap::new();
    for bytes in &oracle.seen.lock().unwrap().receipts {
        let r = envelope::open::<BandwidthReceipt>(bytes).unwrap();
        assert_eq!(r.signer, r.msg.measurer);
        assert_eq!(r.cosigners, vec![r.msg.prover], "co-signed by the prover");
        assert_eq!(r.msg.epoch, 1);
        assert!(
            matches!(r.msg.outcome, Outcome::Measured(_)),
            "{} measuring {}: {:?}",
            r.msg.measurer,
            r.msg.prover,
            r.msg.outcome
        );
        got.entry((r.msg.prover, r.msg.measurer))
            .or_default()
            .push(r.msg.direction);
    }
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), want);
    for dirs in got.values_mut() {
        dirs.sort_unstable_by_key(|d| matches!(d, Direction::Up));
        assert_eq!(dirs, &[Direction::Down, Direction::Up]);
    }
    // The measurer counts its test when its endpoint has closed, which can be after the
    // prover's copy of the receipts reached the oracle.
    let https: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let measured = move || -> f64 {
        https
            .iter()
            .map(|h| {
                http_get(*h, "/metrics")
                    .1
                    .lines()
                    .filter(|l| l.starts_with("wisp_bw_tests_total{") && l.contains("\"measured\""))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum()
    };
    let pairs = want.len() as f64;
    let m = measured.clone();
    eventually("every measurer counted its test", move || m() >= pairs).await;
    assert_eq!(measured(), pairs, "each pair measured once");
    // Each prover keeps its latest test (a prover's task ends a moment after the measurer's).
    let https: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    eventually("every prover shows its latest test in /status", move || {
        https.iter().all(|h| {
            let doc: serde_json::Value = serde_json::from_str(&http_get(*h, "/status").1).unwrap();
            doc["backhaul"]["outcome"] == "ok"
        })
    })
    .await;
    let names: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
    for n in &nodes {
        let b = n.status()["backhaul"].clone();
        assert!(b["down_bps"].as_u64().unwrap() > 0, "{b}");
        assert!(b["up_bps"].as_u64().unwrap() > 0, "{b}");
        assert!(b["rtt_idle_us"].as_u64().is_some(), "{b}");
        assert_eq!(b["epoch"], 1);
        assert!(names.contains(b["measurer"].as_str().unwrap()), "{b}");
        assert_ne!(b["measurer"], n.id.to_string());
    }
    let remote = tokio::time::timeout(HANG, monitor.handle.status_request(nodes[5].peer()))
        .await
        .unwrap()
        .unwrap();
    let b = remote.report.backhaul.unwrap();
    assert_eq!(b.outcome, BackhaulOutcome::Ok);
    assert!(b.down_bps.is_some() && b.up_bps.is_some());
    assert!(want.contains(&(ids[5], b.measurer)), "one of its measurers");
    // `wisp-agent status` prints it.
    let out = tokio::task::spawn_blocking({
        let addr = nodes[5].http.to_string();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
                .args(["status", "--addr", &addr])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("backhaul"))
        .unwrap_or_else(|| panic!("no backhaul line in:\n{text}"));
    assert!(
        line.contains("Mbit/s") && line.contains(", ok; measured by 12D3KooW"),
        "{line}"
    );

    // A malformed /wisp/bw/1 request gets a refusal signed by the node asked.
    let answer = tokio::time::timeout(
        HANG,
        monitor
            .handle
            .bw_request(nodes[5].peer(), b"hello".to_vec()),
    )
    .await
    .unwrap()
    .unwrap();
    let refusal: SignedResponse = decode_body(&answer).unwrap();
    assert!(refusal.verify(&ids[5], &NodeKey::from_seed(&[0xee; 32]).id()));
    assert!(matches!(
        refusal.response,
        BwResponse::Refuse {
            reason: RefuseReason::BadRequest,
            ..
        }
    ));
    assert!(nodes[5].metric("wisp_bw_requests_total", &["request_refused"]) >= 1.0);

    // A forger that can hold one connection, to node 0, gossips a witness whose RSSI was
    // changed after signing. Node 0 rejects it; nobody else ever sees it.
    let forged = {
        let mut w = oracle.seen.lock().unwrap().witnesses[0].clone();
        let n = w.len();
        w[n - 100] ^= 0x01;
        w
    };
    let forger = net::start(
        &NodeKey::from_seed(&[0xfe; 32]),
        &NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            max_connections: 1,
            ..NetConfig::default()
        },
        oracle_key().id(),
        None,
    )
    .unwrap();
    forger.handle.dial(nodes[0].tcp()).await.unwrap();
    let accepted_before: Vec<f64> = nodes.iter().map(|n| n.poc("accepted")).collect();
    forger.handle.try_publish(Topic::Poc, forged).unwrap();
    let n0 = Node {
        dir: nodes[0].dir.clone(),
        id: nodes[0].id,
        http: nodes[0].http,
        p2p: vec![],
        stop: None,
        done: None,
    };
    eventually("node 0 rejected the forged witness", move || {
        n0.poc("rejected") >= 1.0
    })
    .await;
    // Give a forwarded copy every chance to arrive (several gossip heartbeats) before
    // checking that none did.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.poc("accepted"), accepted_before[i], "node {i}");
        if i > 0 {
            assert_eq!(n.poc("rejected"), 0.0, "node {i} saw the forgery");
        }
    }
    drop(forger);

    // Node 9 restarts with the same key (and a new port); it rejoins and answers again.
    let mut old = nodes.remove(9);
    old.stop().await;
    let (_, board) = medium.add(200);
    let env = env_for(&old.dir, broker, 9, Some(&nodes[0].quic()));
    let device = MediumRadio {
        idx: 99, // off the line: hears nothing, reaches nobody
        board,
        medium: medium.clone(),
    };
    let again = spawn_node(&old.dir, env, device).await;
    assert_eq!(again.id, old.id);
    let probe = Node {
        dir: again.dir.clone(),
        id: again.id,
        http: again.http,
        p2p: vec![],
        stop: None,
        done: None,
    };
    eventually("the restarted node has peers", move || {
        probe.status()["p2p_peers"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    monitor
        .handle
        .add_address(again.peer(), again.tcp())
        .await
        .unwrap();
    let remote = tokio::time::timeout(HANG, monitor.handle.status_request(again.peer()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(remote.peer, ids[9]);
    nodes.push(again);

    for n in &mut nodes {
        n.stop().await;
    }
}
