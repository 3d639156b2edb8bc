//! Gossip benchmark: N in-process agents' networks (real swarms, loopback TCP or in-process
//! links, noise, yamux, gossipsub with our validator), each publishing one signed witness per
//! second for a given time. Prints the delivery ratio and the p50/p99/max latency from publish to validated
//! delivery at each other node.
//!
//! `cargo bench -p wisp-agent --bench gossip -- [nodes] [seconds] [tcp|memory]` (default 100
//! nodes, 60 s, loopback TCP). `memory` links the swarms with libp2p's in-process transport
//! (still noise and yamux) so that the kernel's loopback TCP is not part of the figure.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use wisp_agent::net::{self, KadMode, NetConfig, NetEvent, Topic};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Beacon, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey};

fn witness(by: &NodeKey, beaconer: &NodeKey, n: u64, cell: Cell) -> Vec<u8> {
    let beacon = Envelope::sign(
        beaconer,
        &Beacon {
            epoch: 1,
            nonce: [1; 16].into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell,
            tx_ms: n,
        },
    )
    .to_bytes();
    Envelope::sign(
        by,
        &Witness {
            beacon,
            rssi: DeciDb(-700),
            snr: DeciDb(100),
            freq_khz: 2_412_000,
            rx_ms: n + 1,
            cell,
        },
    )
    .to_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let nodes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let memory = match args.get(2).map(String::as_str) {
        None | Some("tcp") => false,
        Some("memory") => true,
        Some(other) => panic!("transport {other:?}: expected tcp or memory"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(nodes, secs, memory));
}

async fn run(nodes: usize, secs: u64, memory: bool) {
    let oracle = NodeKey::from_seed(&[0xaa; 32]).id();
    let keys: Vec<NodeKey> = (0..nodes)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            NodeKey::from_seed(&s)
        })
        .collect();
    let cell = Cell::from_degrees(38.7, -9.1, 12).unwrap();
    // Every message, signed before the clock starts.
    let t0 = Instant::now();
    let msgs: Vec<Vec<Vec<u8>>> = (0..nodes)
        .map(|i| {
            (0..secs)
                .map(|s| witness(&keys[i], &keys[(i + 1) % nodes], s * 1000 + i as u64, cell))
                .collect()
        })
        .collect();
    println!(
        "signed {} witnesses in {:?}",
        nodes as u64 * secs,
        t0.elapsed()
    );

    // Start the swarms; each dials up to three earlier ones (a random-ish connected graph);
    // Kademlia finds the rest.
    let listen = if memory {
        "/memory/0"
    } else {
        "/ip4/127.0.0.1/tcp/0"
    };
    println!("transport: {listen} (noise, yamux)");
    let mut nets = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let boot: Vec<Multiaddr> = [i.wrapping_sub(1), i / 2, i / 3]
            .into_iter()
            .filter(|&j| j < i)
            .map(|j| addrs[j].clone())
            .collect();
        let cfg = NetConfig {
            listen: vec![listen.parse().unwrap()],
            bootstrap: boot,
            // DHT clients (nothing confirms an in-process address): each node keeps the few
            // connections it dialled (and those dialled to it) instead of connecting to most
            // of the process.
            kad_mode: KadMode::WhenConfirmed,
            ..NetConfig::default()
        };
        let n = net::start(k, &cfg, oracle, None).unwrap();
        let addr = loop {
            if let Some(a) = n.handle.listen_addrs().await.unwrap().into_iter().next() {
                break a.with(Protocol::P2p(n.handle.local_peer_id()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        addrs.push(addr);
        nets.push(n);
    }
    // Sent times by message hash; per-receiver latencies.
    let sent: Arc<Mutex<HashMap<[u8; 32], Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut handles = Vec::new();
    let mut receivers = Vec::new();
    for mut n in nets {
        handles.push(n.handle.clone());
        let (sent, lat) = (sent.clone(), latencies.clone());
        receivers.push(tokio::spawn(async move {
            while let Some(ev) = n.events.recv().await {
                if let NetEvent::Witness { bytes, .. } = ev {
                    let now = Instant::now();
                    let h = *blake3::hash(&bytes).as_bytes();
                    if let Some(t) = sent.lock().unwrap().get(&h) {
                        lat.lock().unwrap().push(now - *t);
                    }
                }
            }
        }));
    }
    let warmup = Duration::from_secs(10);
    println!("{nodes} swarms started; {warmup:?} for the mesh to form");
    tokio::time::sleep(warmup).await;
    let mut peers = Vec::new();
    for h in &handles {
        peers.push(h.connected_peers().await.unwrap().len());
    }
    peers.sort_unstable();
    println!(
        "connected peers per node: min {}, median {}, max {}",
        peers[0],
        peers[peers.len() / 2],
        peers[peers.len() - 1]
    );

    // One witness per node per second, the nodes spread over the second.
    let start = Instant::now();
    let mut published = 0u64;
    for s in 0..secs {
        for (i, h) in handles.iter().enumerate() {
            let at = start
                + Duration::from_secs(s)
                + Duration::from_micros(1_000_000 * i as u64 / nodes as u64);
            tokio::time::sleep_until(at.into()).await;
            let m = &msgs[i][s as usize];
            sent.lock()
                .unwrap()
                .insert(*blake3::hash(m).as_bytes(), Instant::now());
            if h.try_publish(Topic::Poc, m.clone()).is_ok() {
                published += 1;
            }
        }
    }
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let expected = published * (nodes as u64 - 1);
    println!(
        "{nodes} nodes, {secs} s, {published} witnesses published ({} per second)",
        nodes
    );
    println!(
        "delivered {} of {} (node, message) pairs: {:.3}%",
        lat.len(),
        expected,
        100.0 * lat.len() as f64 / expected as f64
    );
    println!(
        "latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    for r in receivers {
        r.abort();
    }
}
