//! End-to-end ingest throughput, printed: `cargo bench -p wisp-oracle --bench ingest`.
//!
//! The real `wisp-oracle` binary with its embedded broker; N pre-signed heartbeats from many
//! onboarded nodes are published over MQTT, each node over a connection of its own logged in
//! as itself (as agents do: the broker lets a node publish only its own proofs and read only
//! its own acks); the clock stops when the last oracle-signed ack arrives (acks go out only after the batch is committed to SQLite). In the
//! same run, the raw ed25519 batch-verification rate of this machine on the same envelopes, on
//! one thread and on two.
//!
//! With `WISP_BENCH_MOSQUITTO` (`host:port`) set, the drain part then measures broker →
//! committed alone (`ingest/drain.rs`): the oracle on SQLite stopped while the nodes publish
//! into that broker, timed from the moment it goes on.
//!
//! With `WISP_BENCH_POSTGRES` (a `postgres://` URL or libpq `key=value` pairs) and
//! `WISP_BENCH_MOSQUITTO` (`host:port`) set, the same workload then runs through that broker
//! into that database with 1, 2 and 3 `wisp-oracle run` processes in cluster mode
//! (`WISP_BENCH_CLUSTER_SIZES`, e.g. `1,3`, changes that; a fresh schema each, dropped after
//! it), against the single-process figure above measured in the same run, with the CPU each
//! process spent (the oracles, the broker, the database's processes serving them, this load
//! generator) read from `/proc`. The broker must queue a burst of every node publishing at once
//! for the oracles (`max_queued_messages`, `max_inflight_messages` as in
//! deploy/mosquitto/wisp.conf), and must not be serving another oracle: every process joins the
//! shared subscription's group `oracle`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

#[path = "ingest/cluster.rs"]
mod cluster;
#[path = "ingest/drain.rs"]
mod drain;
#[path = "ingest/load.rs"]
mod load;
// The libpq-to-URL reading of the oracle's tests.
#[path = "../tests/pg/mod.rs"]
mod pg;

use load::{Broker, Load};

/// The oracle process, killed however the bench ends (a failed run leaves none behind).
struct Oracle(std::process::Child);

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let nodes = load::node_keys(nodes_n);
    let setup = cluster::Setup::from_env();
    let mosquitto = cluster::mosquitto_from_env();

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let oracle = load::oracle_command(dir.path(), "warn,rumqttd=off")
        .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WISP_BROKER__MAX_CONNECTIONS_PER_IP", "100000")
        .spawn()
        .map(Oracle)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !dir.path().join("oracle.key").exists()
    {
        assert!(Instant::now() < deadline, "oracle did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let okey = wisp_shell::keyfile::load(&dir.path().join("oracle.key")).unwrap();
    let broker = Broker {
        host: "127.0.0.1".into(),
        port,
        clean: false,
    };
    let load = Load::connect(&broker, okey.id(), &nodes);
    load.onboard(&nodes);
    let proofs = load.sign_heartbeats(&nodes, per_node);
    // Raw verification rate of this machine on the same envelopes.
    let (one, two, raw_us) = load::raw_verify_rates(&proofs);
    let (secs, cpu) = load.publish_timed(proofs, &[oracle.0.id().to_string()]);
    drop(load);
    drop(oracle);
    let e2e = total as f64 / secs;
    let (oracle_cpu, self_cpu) = (cpu[0].unwrap_or(f64::NAN), cpu[1].unwrap_or(f64::NAN));
    let per_k = |cpu: f64| cpu / (total as f64 / 1000.0);
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
        "  CPU during the timed run: oracle + embedded broker {oracle_cpu:.2} s ({:.3} s per 1,000 proofs), load generator {self_cpu:.2} s, of {:.2} s available on 2 cores",
        per_k(oracle_cpu),
        2.0 * secs
    );

    println!(
        "  oracle CPU per proof {:.1} µs against {raw_us:.1} µs of CPU per signature of raw verification (one thread): {:.2} × raw in CPU",
        1e6 * oracle_cpu / total as f64,
        raw_us / (1e6 * oracle_cpu / total as f64)
    );

    if let Some(broker) = &mosquitto {
        let f = drain::run(broker, &nodes, per_node);
        let rate = total as f64 / f.secs;
        println!(
            "drain: the same {total} heartbeats held by Mosquitto {}:{} while the oracle was stopped, then taken, verified, committed to SQLite and acked",
            broker.host, broker.port
        );
        println!(
            "  broker → committed → ack received: {:.2} s = {rate:.0} proofs/s = {:.2} × raw (2 threads), {:.2} × the embedded run",
            f.secs,
            rate / two,
            rate / e2e
        );
        let us = |c: Option<f64>| c.map_or(f64::NAN, |c| 1e6 * c / total as f64);
        println!(
            "  CPU per proof: oracle {:.1} µs ({:.2} × raw in CPU), Mosquitto {:.1} µs, load generator {:.1} µs; of {:.2} s available on 2 cores, {:.2} s used",
            us(f.oracle_cpu),
            raw_us / us(f.oracle_cpu),
            us(f.broker_cpu),
            us(f.load_cpu),
            2.0 * f.secs,
            f.oracle_cpu.unwrap_or(0.0) + f.broker_cpu.unwrap_or(0.0) + f.load_cpu.unwrap_or(0.0)
        );
    }

    let Some(setup) = setup else {
        return;
    };
    let sizes: Vec<usize> = std::env::var("WISP_BENCH_CLUSTER_SIZES")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("WISP_BENCH_CLUSTER_SIZES: e.g. 1,2,3")
        })
        .collect();
    println!(
        "cluster: the same {total} heartbeats through Mosquitto {}:{} into PostgreSQL, oracle processes in cluster mode (a fresh schema each)",
        setup.broker.host, setup.broker.port
    );
    let fmt = |c: Option<f64>| match c {
        Some(c) => format!("{c:.2} ({:.3})", per_k(c)),
        None => "–".into(),
    };
    let mut rows = Vec::new();
    for &n in &sizes {
        let f = cluster::run(&setup, n, &nodes, per_node);
        let rate = total as f64 / f.secs;
        let oracles: Vec<String> = f
            .oracles
            .iter()
            .map(|(role, c)| format!("{role} {}", fmt(*c)))
            .collect();
        let all: f64 = f.oracles.iter().filter_map(|x| x.1).sum::<f64>()
            + f.broker_cpu.unwrap_or(0.0)
            + f.db_cpu.unwrap_or(0.0)
            + f.load_cpu.unwrap_or(0.0);
        println!(
            "  {n} process(es): {:.2} s = {rate:.0} proofs/s = {:.2} × one process on SQLite, {:.2} × raw (2 threads); {} handed over by standbys",
            f.secs,
            rate / e2e,
            rate / two,
            f.handed
        );
        println!(
            "    CPU s (per 1,000 proofs): {}; Mosquitto {}; PostgreSQL {}; load generator {}; all {all:.2} of {:.2} available on 2 cores",
            oracles.join(", "),
            fmt(f.broker_cpu),
            fmt(f.db_cpu),
            fmt(f.load_cpu),
            2.0 * f.secs
        );
        rows.push(format!(
            "| {n} | {:.2} | {rate:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            f.secs,
            rate / e2e,
            rate / two,
            oracles.join("; "),
            fmt(f.broker_cpu),
            fmt(f.db_cpu),
            fmt(f.load_cpu),
            f.handed
        ));
    }
    println!(
        "| processes | s | proofs/s | × SQLite | × raw | oracle CPU s (per 1,000) | Mosquitto | PostgreSQL | load generator | handed over |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| SQLite, embedded broker | {secs:.2} | {e2e:.0} | 1.00 | {:.2} | {} | – | – | {} | – |",
        e2e / two,
        fmt(Some(oracle_cpu)),
        fmt(Some(self_cpu))
    );
    for r in rows {
        println!("{r}");
    }
}
