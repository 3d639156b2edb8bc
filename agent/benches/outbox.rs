//! Outbox and footprint figures, printed: `cargo bench -p wisp-agent --bench outbox`.
//!
//! 1. Durable commit throughput of the outbox log (one record and one fdatasync per commit) for
//!    batches of 1, 16 and 64 heartbeat-sized envelopes, on the disk under the system tempdir.
//! 2. The agent's resident memory with an idle broker connection: the real binary against an
//!    embedded broker, after it settled.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use wisp_agent::store::{Row, Store};
use wisp_protocol::{Kind, ProofId};

fn commit_throughput(batch: usize, total: usize) -> (f64, f64) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut store = Store::open(&dir.path().join(wisp_agent::store::FILE_NAME)).unwrap();
    let envelopes: Vec<Vec<u8>> = (0..total)
        .map(|i| format!("{i:0170}").into_bytes())
        .collect();
    let start = Instant::now();
    let mut seq = 1u64;
    for chunk in envelopes.chunks(batch) {
        let rows: Vec<(Row, &[u8])> = chunk
            .iter()
            .map(|b| {
                let r = Row {
                    seq,
                    id: ProofId::of(b),
                    kind: Kind::Heartbeat,
                    created_ms: seq,
                    len: b.len(),
                };
                seq += 1;
                (r, b.as_slice())
            })
            .collect();
        store.commit(&rows, &[], &[("heartbeat_seq", seq)]).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let commits = total.div_ceil(batch) as f64;
    (commits / secs, total as f64 / secs)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn idle_rss() -> u64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "id = 0\n[router]\nid = 0\nmax_connections = 10\nmax_outgoing_packet_count = 100\nmax_segment_size = 1048576\nmax_segment_count = 2\n\
         [v4.1]\nname = \"v4\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 1\n\
         [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 65536\nmax_inflight_count = 100\ndynamic_filters = true\n"
    );
    let config: rumqttd::Config = toml::from_str(&cfg).unwrap();
    std::thread::spawn(move || {
        let _ = rumqttd::Broker::new(config).start();
    });
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let oracle = wisp_protocol::NodeKey::from_seed(&[1; 32]).id().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .arg("run")
        .env("WISP_NODE__DATA_DIR", dir.path())
        .env("WISP_ORACLE__PUBLIC_KEY", oracle)
        .env("WISP_MQTT__URL", format!("mqtt://127.0.0.1:{port}"))
        .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
        .env("WISP_LOG__LEVEL", "warn")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_kib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    rss
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it briefly with no argument.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick { 64 } else { 2_000 };
    println!(
        "outbox commit throughput (append-only log, fdatasync per commit, 170-byte envelopes, {total} proofs):"
    );
    for batch in [1usize, 16, 64] {
        let (commits, proofs) = commit_throughput(batch, total);
        println!("  batch {batch:>2}: {commits:>8.0} commits/s  {proofs:>9.0} proofs/s");
    }
    if !quick {
        println!(
            "agent RSS, idle broker connection, after 5 s: {} KiB",
            idle_rss()
        );
    }
}
