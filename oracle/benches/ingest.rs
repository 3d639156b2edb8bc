//! End-to-end ingest throughput, printed: `cargo bench -p wisp-oracle --bench ingest`.
//!
//! The real `wisp-oracle` binary with its embedded broker; N pre-signed heartbeats from many
//! onboarded nodes are published over MQTT, each node over a connection of its own logged in
//! as itself (as agents do: the broker lets a node publish only its own proofs and read only
//! its own acks); the clock stops when the last oracle-signed ack arrives (acks go out only after the batch is committed to SQLite). In the
//! same run, the raw ed25519 batch-verification rate of this machine on the same envelopes, on
//! one thread and on two.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wisp_protocol::envelope::{self, Envelope, EnvelopeRef, decode_canonical};
use wisp_protocol::msg::{Ack, Band, EpochSeed, Heartbeat, Onboard, SealedAckRef, Versions};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId, NodeKey, topics};

use wisp_shell::clock::system_ms as wall_ms;

/// User + system CPU seconds of a process so far.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the command name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A connection logged in as `node` (or a monitor's, without a login).
fn client(port: u16, node: Option<(&NodeKey, NodeId)>) -> (AsyncClient, rumqttc::EventLoop) {
    let id = match node {
        Some((k, _)) => format!("wisp-bench-{}", k.id()),
        None => format!("bench-monitor-{}", std::process::id()),
    };
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    o.set_request_channel_capacity(256);
    o.set_keep_alive(Duration::from_secs(60));
    // As agents: a persistent session (a reconnect keeps the subscription and the queued
    // acks, and resends what was in flight), and patience with 2,000 connections at once.
    o.set_clean_session(node.is_none());
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

fn main() {
    // `WISP_BENCH_NODES` and `WISP_BENCH_PER_NODE` change the size (2,000 × 25 by default).
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (nodes_n, per_node) = (
        env("WISP_BENCH_NODES", 2_000) as usize,
        env("WISP_BENCH_PER_NODE", 25),
    );
    let total = nodes_n as u64 * per_node;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut oracle = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
        .args(["run", "--data-dir", &dir.path().display().to_string()])
        .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
        .env("WISP_EPOCH__DURATION_S", "3600")
        .env("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.01")
        .env("WISP_INGEST__RATE_PER_S", "1000000")
        .env("WISP_INGEST__BURST", "1000000")
        .env(
            "WISP_LOG",
            std::env::var("WISP_BENCH_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .env("WISP_BROKER__MAX_CONNECTIONS_PER_IP", "100000")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !dir.path().join("oracle.key").exists()
    {
        assert!(Instant::now() < deadline, "oracle did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let okey = wisp_shell::keyfile::load(&dir.path().join("oracle.key")).unwrap();

    let nodes: Vec<NodeKey> = (0..nodes_n as u32)
        .map(|i| NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let acked = Arc::new(AtomicU64::new(0));
    let seed: Arc<std::sync::Mutex<Option<EpochSeed>>> = Arc::default();
    // The seed, read as a monitor.
    let (monitor, mut events) = client(port, None);
    {
        let (seed, monitor, oid) = (seed.clone(), monitor.clone(), okey.id());
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
                        let opened = envelope::open::<EpochSeed>(&p.payload).unwrap();
                        assert_eq!(opened.signer, oid);
                        *seed.lock().unwrap() = Some(opened.msg);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    while seed.lock().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // One connection per node, subscribed to its own acks, counting the accepted ones.
    let subscribed = Arc::new(AtomicU64::new(0));
    let conns: Vec<AsyncClient> = nodes
        .iter()
        .map(|k| {
            let (c, mut events) = client(port, Some((k, okey.id())));
            let (acked, subscribed, c2, oid, acks) = (
                acked.clone(),
                subscribed.clone(),
                c.clone(),
                okey.id(),
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
                        Ok(Event::Incoming(Packet::SubAck(_))) if !counted => {
                            counted = true;
                            subscribed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            // Counting only: verifying every ack here would spend this
                            // machine's two cores on the benchmark instead of the oracle. (The
                            // service tests verify acks.) The signer is still checked.
                            let sealed = SealedAckRef::parse(&p.payload).unwrap();
                            let root = EnvelopeRef::parse(sealed.root).unwrap();
                            assert_eq!(root.signer_id(), oid);
                            let ack = decode_canonical::<Ack>(sealed.ack).unwrap();
                            let ok = ack
                                .entries
                                .iter()
                                .filter(|e| e.verdict == wisp_protocol::msg::Verdict::Accepted)
                                .count();
                            acked.fetch_add(ok as u64, Ordering::Relaxed);
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
    while subscribed.load(Ordering::Relaxed) < nodes_n as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {nodes_n} connections subscribed",
            subscribed.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let epoch = seed.lock().unwrap().clone().unwrap().epoch;

    // Onboard every node (not timed).
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
            conns[i].clone(),
            topics::proofs(&k.id()),
            Envelope::sign(k, &o).to_bytes(),
        );
        rt.block_on(async move { c.publish(t, QoS::AtLeastOnce, false, b).await.unwrap() });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < nodes_n as u64 {
        assert!(
            Instant::now() < deadline,
            "onboarding not acked: {}",
            acked.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    acked.store(0, Ordering::Relaxed);

    // Pre-sign the heartbeats, 10 ms apart per node (the interval is 10 ms; half is allowed).
    // After every onboarding (a heartbeat may not predate its node's assertion); the last is
    // at most 250 ms ahead, inside the 2 s clock tolerance.
    let base = wall_ms();
    let mut proofs: Vec<(usize, String, Vec<u8>)> = Vec::with_capacity(total as usize);
    for seq in 1..=per_node {
        for (i, k) in nodes.iter().enumerate() {
            let hb = Heartbeat {
                epoch,
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

    // Raw verification rate of this machine on the same envelopes.
    let refs: Vec<EnvelopeRef<'_>> = proofs
        .iter()
        .map(|(_, _, b)| EnvelopeRef::parse(b).unwrap())
        .collect();
    let t = Instant::now();
    for chunk in refs.chunks(1024) {
        assert!(envelope::verify_batch(chunk).iter().all(|r| r.is_ok()));
    }
    let one = refs.len() as f64 / t.elapsed().as_secs_f64();
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

    // Every node publishes its own, all at once; stop the clock at the last ack.
    std::thread::sleep(Duration::from_millis(300));
    let oracle_pid = oracle.id().to_string();
    let (oracle_cpu0, self_cpu0) = (cpu_s(&oracle_pid), cpu_s("self"));
    let start = Instant::now();
    let mut per_conn: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); nodes_n];
    for (i, t, b) in proofs {
        per_conn[i].push((t, b));
    }
    for (c, mine) in conns.iter().zip(per_conn) {
        let c = c.clone();
        rt.spawn(async move {
            for (t, b) in mine {
                c.publish(t, QoS::AtLeastOnce, false, b).await.unwrap();
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut report = Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Relaxed) < total {
        if Instant::now() > report {
            eprintln!("  … {} of {total} acked", acked.load(Ordering::Relaxed));
            report += Duration::from_secs(10);
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} acked",
            acked.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let e2e = total as f64 / secs;
    let oracle_cpu = cpu_s(&oracle_pid) - oracle_cpu0;
    let self_cpu = cpu_s("self") - self_cpu0;
    let _ = oracle.kill();
    let _ = oracle.wait();
    println!(
        "ingest: {total} heartbeats from {nodes_n} nodes, each over its own logged-in MQTT connection through the embedded broker"
    );
    println!(
        "  end to end (publish → verified → committed → signed ack received): {secs:.2} s = {e2e:.0} proofs/s"
    );
    println!(
        "  raw ed25519 batch verification on this machine: {one:.0}/s on 1 thread, {two:.0}/s on 2 threads"
    );
    println!("  end-to-end / raw (2 threads): {:.2}", e2e / two);
    println!(
        "  CPU during the timed run: oracle + embedded broker {oracle_cpu:.2} s, load generator {self_cpu:.2} s, of {:.2} s available on 2 cores",
        2.0 * secs
    );
}
