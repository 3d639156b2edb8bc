//! The workload, whatever runs the oracle: one MQTT connection per node logged in as itself,
//! the seed read as a monitor, onboarding, pre-signed heartbeats, and the timed publish that
//! ends at the last accepted verdict of an oracle-signed ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wisp_protocol::envelope::{self, Envelope, EnvelopeRef, decode_canonical};
use wisp_protocol::msg::{Ack, Band, EpochSeed, Heartbeat, Onboard, SealedAckRef, Versions};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId, NodeKey, topics};

use wisp_shell::clock::system_ms as wall_ms;

/// One pre-signed proof: the index of its node, its topic and its bytes.
pub(crate) type Proof = (usize, String, Vec<u8>);

/// User + system CPU seconds of a process so far (`self` for this one); `None` once it is
/// gone or when it is not readable.
pub(crate) fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the command name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `wisp-oracle run` on `data_dir` as every part of the bench runs it: the API on a free port,
/// hour-long epochs with a 10 ms heartbeat interval, no rate limit that a burst could hit,
/// and `WISP_BENCH_LOG` (else `log`) as its log filter.
pub(crate) fn oracle_command(data_dir: &std::path::Path, log: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-oracle"));
    c.args(["run", "--data-dir", &data_dir.display().to_string()])
        .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
        .env("WISP_EPOCH__DURATION_S", "3600")
        .env("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.01")
        .env("WISP_INGEST__RATE_PER_S", "1000000")
        .env("WISP_INGEST__BURST", "1000000")
        .env(
            "WISP_LOG",
            std::env::var("WISP_BENCH_LOG").unwrap_or_else(|_| log.into()),
        );
    c
}

/// The nodes of every run: the same keys, so runs differ only in what runs the oracle.
pub(crate) fn node_keys(n: usize) -> Vec<NodeKey> {
    (0..n as u32)
        .map(|i| NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect()
}

/// Where the nodes connect.
#[derive(Clone, Debug)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Clean sessions: on a shared external broker a bench must leave no sessions (and no
    /// queued acks) behind; the embedded broker is gone with its oracle anyway, and there
    /// nodes keep persistent sessions as agents do.
    pub(crate) clean: bool,
}

/// A connection logged in as `node` (or a monitor's, without a login).
fn client(b: &Broker, node: Option<(&NodeKey, NodeId)>) -> (AsyncClient, rumqttc::EventLoop) {
    let id = match node {
        Some((k, _)) => format!("wisp-bench-{}", k.id()),
        None => format!("bench-monitor-{}-{}", std::process::id(), wall_ms()),
    };
    let mut o = MqttOptions::new(id, b.host.clone(), b.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    o.set_request_channel_capacity(256);
    o.set_keep_alive(Duration::from_secs(60));
    // As agents: a persistent session (a reconnect keeps the subscription and the queued
    // acks, and resends what was in flight), and patience with 2,000 connections at once.
    o.set_clean_session(node.is_none() || b.clean);
    if let Some((k, oracle)) = node {
        o.set_credentials(
            k.id().to_string(),
            wisp_protocol::login::password(k, &oracle),
        );
    }
    let (client, mut events) = AsyncClient::new(o, 256);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(30);
    events.set_network_options(network);
    (client, events)
}

/// The nodes' connections to one oracle (or cluster), counting accepted verdicts. Dropping
/// it drops the connections with its runtime.
pub(crate) struct Load {
    rt: tokio::runtime::Runtime,
    conns: Vec<AsyncClient>,
    acked: Arc<AtomicU64>,
    /// Publishes the broker acknowledged (`PUBACK`): it holds them.
    pubacked: Arc<AtomicU64>,
    /// Refused proofs by verdict, for the message of a run that never completes.
    rejected: Rejected,
    pub(crate) epoch: u64,
}

type Rejected = Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>;

impl Load {
    /// Connects a monitor (until it reads a seed `oracle` signed: a shared broker may still
    /// hold another oracle's) and every node, each subscribed to its own acks.
    pub(crate) fn connect(b: &Broker, oracle: NodeId, nodes: &[NodeKey]) -> Load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let pubacked = Arc::new(AtomicU64::new(0));
        let rejected = Rejected::default();
        let seed: Arc<std::sync::Mutex<Option<EpochSeed>>> = Arc::default();
        let (monitor, mut events) = client(b, None);
        {
            let seed = seed.clone();
            rt.spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            monitor
                                .subscribe(topics::EPOCH, QoS::AtLeastOnce)
                                .await
                                .unwrap();
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topics::EPOCH => {
                            match envelope::open::<EpochSeed>(&p.payload) {
                                Ok(opened) if opened.signer == oracle => {
                                    *seed.lock().unwrap() = Some(opened.msg);
                                }
                                _ => {}
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while seed.lock().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no seed signed by {oracle}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let subscribed = Arc::new(AtomicU64::new(0));
        let conns: Vec<AsyncClient> = nodes
            .iter()
            .map(|k| {
                let (c, mut events) = client(b, Some((k, oracle)));
                let (acked, pubacked, rejected, subscribed, c2, acks) = (
                    acked.clone(),
                    pubacked.clone(),
                    rejected.clone(),
                    subscribed.clone(),
                    c.clone(),
                    topics::acks(&k.id()),
                );
                rt.spawn(async move {
                    // Each node once, however often it reconnects.
                    let mut counted = false;
                    loop {
                        match events.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                c2.subscribe(acks.clone(), QoS::AtLeastOnce).await.unwrap();
                            }
                            Ok(Event::Incoming(Packet::PubAck(_))) => {
                                pubacked.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) if !counted => {
                                counted = true;
                                subscribed.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                // Counting only: verifying every ack here would spend this
                                // machine's two cores on the benchmark instead of the oracle.
                                // (The service tests verify acks.) The signer is still checked.
                                let sealed = SealedAckRef::parse(&p.payload).unwrap();
                                let root = EnvelopeRef::parse(sealed.root).unwrap();
                                assert_eq!(root.signer_id(), oracle);
                                let ack = decode_canonical::<Ack>(sealed.ack).unwrap();
                                let mut ok = 0;
                                for e in &ack.entries {
                                    if e.verdict == wisp_protocol::msg::Verdict::Accepted {
                                        ok += 1;
                                    } else {
                                        let v = format!("{:?}", e.verdict);
                                        *rejected.lock().unwrap().entry(v).or_default() += 1;
                                    }
                                }
                                acked.fetch_add(ok, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                });
                c
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while subscribed.load(Ordering::Relaxed) < nodes.len() as u64 {
            assert!(
                Instant::now() < deadline,
                "only {} of {} connections subscribed",
                subscribed.load(Ordering::Relaxed),
                nodes.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let epoch = seed.lock().unwrap().clone().unwrap().epoch;
        Load {
            rt,
            conns,
            acked,
            pubacked,
            rejected,
            epoch,
        }
    }

    /// Onboards every node (not timed) and waits for their acks.
    pub(crate) fn onboard(&self, nodes: &[NodeKey]) {
        for (i, k) in nodes.iter().enumerate() {
            let o = Onboard {
                owner: "bench".into(),
                cell: Cell::from_degrees(
                    38.0 + (i % 100) as f64 * 0.01,
                    -9.0 - (i / 100) as f64 * 0.01,
                    12,
                )
                .unwrap(),
                antenna_gain: DeciDb(30),
                antenna_height_dm: 50,
                bands: vec![Band {
                    low_khz: 2_400_000,
                    high_khz: 2_483_500,
                    max_eirp: DeciDb(200),
                }],
                measurer: true,
                issued_ms: wall_ms(),
                attestation: None,
            };
            let (c, t, b) = (
                self.conns[i].clone(),
                topics::proofs(&k.id()),
                Envelope::sign(k, &o).to_bytes(),
            );
            self.rt
                .block_on(async move { c.publish(t, QoS::AtLeastOnce, false, b).await.unwrap() });
        }
        self.await_acked(nodes.len() as u64, "onboarding");
        self.acked.store(0, Ordering::Relaxed);
        self.pubacked.store(0, Ordering::Relaxed);
    }

    /// Heartbeats, 10 ms apart per node (the interval is 10 ms; half is allowed). Signed after
    /// every onboarding (a heartbeat may not predate its node's assertion); the last is at
    /// most 250 ms ahead, inside the 2 s clock tolerance.
    pub(crate) fn sign_heartbeats(&self, nodes: &[NodeKey], per_node: u64) -> Vec<Proof> {
        let base = wall_ms();
        let mut proofs = Vec::with_capacity(nodes.len() * per_node as usize);
        for seq in 1..=per_node {
            for (i, k) in nodes.iter().enumerate() {
                let hb = Heartbeat {
                    epoch: self.epoch,
                    seq,
                    uptime_s: seq,
                    sent_ms: base + seq * 10,
                    fix: None,
                    cell: None,
                    versions: Versions::new("bench", "none"),
                    peers: 0,
                };
                proofs.push((
                    i,
                    topics::proofs(&k.id()),
                    Envelope::sign(k, &hb).to_bytes(),
                ));
            }
        }
        proofs
    }

    /// Every node publishes its own, all at once; returns the seconds to the last accepted
    /// verdict, and the CPU seconds each of `pids` (and this process, last) spent meanwhile
    /// (`None`: not readable).
    pub(crate) fn publish_timed(
        &self,
        proofs: Vec<Proof>,
        pids: &[String],
    ) -> (f64, Vec<Option<f64>>) {
        let total = proofs.len() as u64;
        let per_conn = self.per_conn(proofs);
        std::thread::sleep(Duration::from_millis(300));
        self.timed(pids, total, "heartbeats", || self.spawn_publishes(per_conn))
    }

    /// The broker → committed part alone: every node publishes its own while the oracle is
    /// stopped (`SIGSTOP` on `oracle_pid`), until the broker has acknowledged every publish
    /// (it holds them all, queued for the oracle's session); then the clock starts, the oracle
    /// goes on (`SIGCONT`) and the clock stops at the last accepted verdict. Returns the
    /// seconds and the CPU seconds each of `pids` (and this process, last) spent meanwhile.
    pub(crate) fn drain_timed(
        &self,
        proofs: Vec<Proof>,
        oracle_pid: u32,
        pids: &[String],
    ) -> (f64, Vec<Option<f64>>) {
        let total = proofs.len() as u64;
        let per_conn = self.per_conn(proofs);
        signal(oracle_pid, "-STOP");
        self.spawn_publishes(per_conn);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.pubacked.load(Ordering::Relaxed) < total {
            if Instant::now() > deadline {
                signal(oracle_pid, "-CONT");
                panic!(
                    "the broker acknowledged {} of {total} publishes in 120 s",
                    self.pubacked.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            self.acked.load(Ordering::Relaxed),
            0,
            "the oracle judged proofs while stopped"
        );
        self.timed(pids, total, "heartbeats held by the broker", || {
            signal(oracle_pid, "-CONT");
        })
    }

    /// Each connection's proofs, in order.
    fn per_conn(&self, proofs: Vec<Proof>) -> Vec<Vec<(String, Vec<u8>)>> {
        let mut per_conn: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); self.conns.len()];
        for (i, t, b) in proofs {
            per_conn[i].push((t, b));
        }
        per_conn
    }

    /// Each connection publishes its own, in order, all connections at once.
    fn spawn_publishes(&self, per_conn: Vec<Vec<(String, Vec<u8>)>>) {
        for (c, mine) in self.conns.iter().zip(per_conn) {
            let c = c.clone();
            self.rt.spawn(async move {
                for (t, b) in mine {
                    c.publish(t, QoS::AtLeastOnce, false, b).await.unwrap();
                }
            });
        }
    }

    /// Starts the clock, calls `go` and waits for `n` accepted verdicts: the seconds, and the
    /// CPU seconds each of `pids` (and this process, last) spent meanwhile.
    fn timed(
        &self,
        pids: &[String],
        n: u64,
        what: &str,
        go: impl FnOnce(),
    ) -> (f64, Vec<Option<f64>>) {
        let mut watched: Vec<String> = pids.to_vec();
        watched.push("self".into());
        let cpu0: Vec<Option<f64>> = watched.iter().map(|p| cpu_s(p)).collect();
        let start = Instant::now();
        go();
        self.await_acked(n, what);
        let secs = start.elapsed().as_secs_f64();
        let cpu = watched
            .iter()
            .zip(cpu0)
            .map(|(p, before)| Some(cpu_s(p)? - before?))
            .collect();
        (secs, cpu)
    }

    /// Waits for `n` accepted verdicts; fails when none came for 30 s (a broker that drops
    /// what overflows a client's queue, as Mosquitto does beyond `max_queued_messages`, loses
    /// proofs this bench does not resend).
    fn await_acked(&self, n: u64, what: &str) {
        let (mut last, mut since) = (0, Instant::now());
        let mut report = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.acked.load(Ordering::Relaxed);
            if now >= n {
                return;
            }
            if now != last {
                (last, since) = (now, Instant::now());
            }
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "{what}: {now} of {n} accepted, none for 30 s; refused: {:?} (none refused: a \
                 broker dropping queued messages? Mosquitto needs max_queued_messages and \
                 max_inflight_messages as in deploy/mosquitto/wisp.conf)",
                self.rejected.lock().unwrap()
            );
            if Instant::now() > report {
                eprintln!("  … {what}: {now} of {n} acked");
                report += Duration::from_secs(10);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `kill <sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// The raw ed25519 batch-verification rate of this machine on `proofs`, on one thread and on
/// two, and the CPU µs per signature of the one-thread run.
pub(crate) fn raw_verify_rates(proofs: &[Proof]) -> (f64, f64, f64) {
    let refs: Vec<EnvelopeRef<'_>> = proofs
        .iter()
        .map(|(_, _, b)| EnvelopeRef::parse(b).unwrap())
        .collect();
    let t = Instant::now();
    let cpu0 = cpu_s("thread-self");
    for chunk in refs.chunks(1024) {
        assert!(envelope::verify_batch(chunk).iter().all(|r| r.is_ok()));
    }
    let one = refs.len() as f64 / t.elapsed().as_secs_f64();
    // The CPU the verifying thread spent: on a busy machine its wall time is longer.
    let cpu_us = match (cpu0, cpu_s("thread-self")) {
        (Some(a), Some(b)) => 1e6 * (b - a) / refs.len() as f64,
        _ => 1e6 / one,
    };
    let t = Instant::now();
    std::thread::scope(|s| {
        let (a, b) = refs.split_at(refs.len() / 2);
        let h = s.spawn(|| {
            a.chunks(1024)
                .for_each(|c| assert!(envelope::verify_batch(c).iter().all(|r| r.is_ok())))
        });
        b.chunks(1024)
            .for_each(|c| assert!(envelope::verify_batch(c).iter().all(|r| r.is_ok())));
        h.join().unwrap();
    });
    let two = refs.len() as f64 / t.elapsed().as_secs_f64();
    (one, two, cpu_us)
}
