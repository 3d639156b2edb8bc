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

#[path = "../live/mod.rs"]
mod live;
#[path = "../pg/mod.rs"]
mod pg;
use live::{free_port, wait_for};

mod broker;
mod cluster;
mod crash;
mod leaving;
mod measurers;
mod proofs;

/// The tests here kill and restart oracles on fixed ports: while one is down, another test's
/// `free_port()` could hand its port out. They run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` to completion on a runtime of its own: the store's calls are async, and these
/// tests are not.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
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
        wisp_shell::keyfile::load(&data.join("oracle.key")).unwrap()
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

use wisp_shell::clock::system_ms as wall_ms;

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
