//! Test harness: an embedded MQTT broker (rumqttd), a fault-injection TCP proxy in front of it,
//! a small oracle responder that signs real acks, and the real `wisp-agent` binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wisp_oracle::acks::AckBatcher;
use wisp_protocol::envelope::{self, Envelope, EnvelopeRef};
use wisp_protocol::msg::{EpochParams, EpochSeed, GnssFix, Heartbeat, Verdict};
use wisp_protocol::{Kind, NodeKey, ProofId, topics};

pub mod linux;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts rumqttd on a free loopback port, on its own thread, and waits until it accepts.
pub fn start_broker() -> u16 {
    let port = free_port();
    let cfg = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 500
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&cfg).unwrap();
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        let _ = broker.start();
    });
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    port
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A TCP proxy that can be cut: while down it closes every connection and refuses new ones.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if d.load(Ordering::SeqCst) {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match std::io::Read::read(&mut from, &mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Ok(n) => {
                                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => {
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                            }
                        }
                    });
                }
            }
        });
        Proxy { port, down }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// What the test oracle saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Every distinct proof id, with how many times it arrived.
    pub proofs: BTreeMap<ProofId, u32>,
    /// Heartbeat seq → the distinct proof ids carrying it.
    pub heartbeat_seqs: BTreeMap<u64, Vec<ProofId>>,
    /// Heartbeat seq → when the node signed it.
    pub heartbeat_sent: BTreeMap<u64, u64>,
    /// Heartbeat seqs in the order their first copy arrived.
    pub heartbeat_arrivals: Vec<u64>,
    /// The GNSS fix in the latest heartbeat that carried one.
    pub heartbeat_fix: Option<GnssFix>,
    /// Envelopes that failed to open.
    pub invalid: u32,
    /// The last payload on each `wisp/v1/status/+` topic.
    pub status: BTreeMap<String, String>,
    /// Onboarding envelopes received.
    pub onboards: Vec<Vec<u8>>,
    /// Witness envelopes received (first copy of each).
    pub witnesses: Vec<Vec<u8>>,
    /// Beacon envelopes received (first copy of each).
    pub beacons: Vec<Vec<u8>>,
    /// Bandwidth receipts received (first copy of each).
    pub receipts: Vec<Vec<u8>>,
}

/// The verdict the test oracle acks a proof with, given how many copies of it have arrived
/// (1 for the first).
pub type VerdictFn = Arc<dyn Fn(&ProofId, u32) -> Verdict + Send + Sync>;

/// A minimal oracle: publishes a retained seed, opens every proof, acks it (signed; accepted
/// unless a [`VerdictFn`] says otherwise).
pub struct TestOracle {
    pub key: NodeKey,
    pub seen: Arc<Mutex<Seen>>,
    pub client: AsyncClient,
    pub rt: tokio::runtime::Runtime,
}

pub fn oracle_key() -> NodeKey {
    NodeKey::from_seed(&[0x0a; 32])
}

pub fn seed_envelope(key: &NodeKey, epoch: u64, start_ms: u64, heartbeat_ms: u32) -> Vec<u8> {
    Envelope::sign(
        key,
        &EpochSeed {
            epoch,
            start_ms,
            duration_ms: 3_600_000,
            seed: [epoch.to_le_bytes()[0]; 32].into(),
            params: EpochParams {
                slot_count: 60,
                heartbeat_interval_ms: heartbeat_ms,
                ..EpochParams::default()
            },
        },
    )
    .to_bytes()
}

/// A seed with every timing parameter chosen by the caller (short epochs for radio tests).
pub fn seed_envelope_with(
    key: &NodeKey,
    epoch: u64,
    start_ms: u64,
    duration_ms: u64,
    slot_count: u32,
    heartbeat_ms: u32,
) -> Vec<u8> {
    Envelope::sign(
        key,
        &EpochSeed {
            epoch,
            start_ms,
            duration_ms,
            seed: [epoch.to_le_bytes()[0]; 32].into(),
            params: EpochParams {
                slot_count,
                heartbeat_interval_ms: heartbeat_ms,
                ..EpochParams::default()
            },
        },
    )
    .to_bytes()
}

impl TestOracle {
    pub fn start(broker_port: u16, heartbeat_ms: u32) -> TestOracle {
        Self::start_at("127.0.0.1", broker_port, heartbeat_ms)
    }

    pub fn start_at(host: &str, broker_port: u16, heartbeat_ms: u32) -> TestOracle {
        let seed = seed_envelope(
            &oracle_key(),
            1,
            wisp_agent::wallclock::wall_ms(),
            heartbeat_ms,
        );
        Self::start_with_seed(host, broker_port, seed)
    }

    /// An oracle that publishes `seed` (retained) when it connects.
    pub fn start_with_seed(host: &str, broker_port: u16, seed: Vec<u8>) -> TestOracle {
        Self::start_judging(host, broker_port, seed, Arc::new(|_, _| Verdict::Accepted))
    }

    /// An oracle that acks each proof with `verdict`'s answer.
    pub fn start_with_verdicts(
        broker_port: u16,
        heartbeat_ms: u32,
        verdict: impl Fn(&ProofId, u32) -> Verdict + Send + Sync + 'static,
    ) -> TestOracle {
        let seed = seed_envelope(
            &oracle_key(),
            1,
            wisp_agent::wallclock::wall_ms(),
            heartbeat_ms,
        );
        Self::start_judging("127.0.0.1", broker_port, seed, Arc::new(verdict))
    }

    fn start_judging(
        host: &str,
        broker_port: u16,
        seed: Vec<u8>,
        verdict: VerdictFn,
    ) -> TestOracle {
        let key = oracle_key();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let client_id = format!("test-oracle-{}", std::process::id());
        let mut o = MqttOptions::new(client_id, host, broker_port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_request_channel_capacity(1000);
        let (client, mut events) = AsyncClient::new(o, 1000);
        let (c, s, k) = (client.clone(), seen.clone(), key.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        rt.spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe(topics::PROOFS_FILTER, QoS::AtLeastOnce)
                            .await
                            .unwrap();
                        c.subscribe("wisp/v1/status/+", QoS::AtLeastOnce)
                            .await
                            .unwrap();
                        c.publish(topics::EPOCH, QoS::AtLeastOnce, true, seed.clone())
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => r.store(true, Ordering::SeqCst),
                    Ok(Event::Incoming(Packet::Publish(p)))
                        if p.topic.starts_with("wisp/v1/status/") =>
                    {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        s.lock().unwrap().status.insert(p.topic.clone(), text);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut batch = AckBatcher::new();
                        let bytes = p.payload.to_vec();
                        let Ok(env) = EnvelopeRef::parse(&bytes) else {
                            s.lock().unwrap().invalid += 1;
                            continue;
                        };
                        if env.verify().is_err() {
                            s.lock().unwrap().invalid += 1;
                            continue;
                        }
                        let id = env.proof_id();
                        let copy = {
                            let mut seen = s.lock().unwrap();
                            let first = !seen.proofs.contains_key(&id);
                            *seen.proofs.entry(id).or_default() += 1;
                            let copy = seen.proofs[&id];
                            if first && env.kind == Kind::Witness {
                                seen.witnesses.push(bytes.clone());
                            }
                            if first && env.kind == Kind::Beacon {
                                seen.beacons.push(bytes.clone());
                            }
                            if first && env.kind == Kind::BandwidthReceipt {
                                seen.receipts.push(bytes.clone());
                            }
                            if env.kind == Kind::Onboard {
                                seen.onboards.push(bytes.clone());
                            }
                            if env.kind == Kind::Heartbeat {
                                let hb = envelope::open::<Heartbeat>(&bytes).unwrap().msg;
                                if first {
                                    seen.heartbeat_arrivals.push(hb.seq);
                                    seen.heartbeat_sent.insert(hb.seq, hb.sent_ms);
                                }
                                if hb.fix.is_some() {
                                    seen.heartbeat_fix = hb.fix;
                                }
                                let ids = seen.heartbeat_seqs.entry(hb.seq).or_default();
                                if !ids.contains(&id) {
                                    ids.push(id);
                                }
                            }
                            copy
                        };
                        // Acked to the node whose topic it came on (a receipt's prover sends
                        // the measurer-signed receipt too), as the oracle does.
                        let node = topics::node_of(&p.topic).unwrap_or_else(|| env.signer_id());
                        batch.push(node, id, verdict(&id, copy));
                        for (node, ack) in batch.flush(&k, wisp_agent::wallclock::wall_ms()) {
                            c.publish(topics::acks(&node), QoS::AtLeastOnce, false, ack)
                                .await
                                .unwrap();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        TestOracle {
            key,
            seen,
            client,
            rt,
        }
    }

    /// Publishes raw bytes on a topic (for forged messages).
    pub fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        let c = self.client.clone();
        let t = topic.to_string();
        self.rt.block_on(async move {
            c.publish(t, QoS::AtLeastOnce, retain, payload)
                .await
                .unwrap()
        });
    }
}

/// A `wisp-agent run` process with its own data directory.
pub struct Agent {
    pub child: Child,
    pub data_dir: PathBuf,
}

pub fn agent_env(data_dir: &Path, broker_port: u16, oracle: &NodeKey) -> Vec<(String, String)> {
    agent_env_at(data_dir, &format!("127.0.0.1:{broker_port}"), oracle)
}

pub fn agent_env_at(data_dir: &Path, broker: &str, oracle: &NodeKey) -> Vec<(String, String)> {
    vec![
        ("WISP_NODE__DATA_DIR".into(), data_dir.display().to_string()),
        ("WISP_ORACLE__PUBLIC_KEY".into(), oracle.id().to_string()),
        ("WISP_MQTT__URL".into(), format!("mqtt://{broker}")),
        ("WISP_HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        // Each agent on its own ephemeral loopback port (the default is 0.0.0.0:9311).
        ("WISP_NET__LISTEN".into(), "/ip4/127.0.0.1/tcp/0".into()),
        ("WISP_OUTBOX__ACK_TIMEOUT_S".into(), "2".into()),
        (
            "WISP_LOG__LEVEL".into(),
            std::env::var("TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]
}

impl Agent {
    pub fn spawn(data_dir: &Path, env: &[(String, String)]) -> Agent {
        let _ = std::fs::remove_file(data_dir.join("http.addr"));
        let child = Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Agent {
            child,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The status server's address, once the agent is up.
    pub fn http_addr(&self) -> SocketAddr {
        let path = self.data_dir.join("http.addr");
        assert!(
            wait_for(Duration::from_secs(20), || path.exists()),
            "agent did not start"
        );
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr(), path)
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").1).unwrap()
    }

    /// A metric's value from `/metrics`: the sum over all its samples (all label values).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").1;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .sum()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < end, "agent did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}
