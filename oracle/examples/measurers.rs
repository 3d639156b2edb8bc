//! Measurer assignment at scale: what one bandwidth receipt's assignment check costs with a
//! pool rebuilt per receipt and with the engine's per-epoch `MeasurerCache`, for a
//! registry of N nodes (default 100,000; `cargo run --release -p wisp-oracle --example
//! measurers -- 100000`). Prints figures; checks that both answer the same.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::time::Instant;

use wisp_oracle::rules::{Candidates, MeasurerCache, MeasurerPool};
use wisp_protocol::{NodeId, schedule};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let k = 3;
    let seed = [9u8; 32];
    let ids: Vec<NodeId> = (0..n as u64)
        .map(|i| NodeId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let provers: Vec<NodeId> = ids.iter().step_by(n / 20).copied().take(20).collect();

    // Before: every receipt rebuilt the pool from the registry, then scanned it.
    let t = Instant::now();
    let mut assigned = Vec::new();
    for p in &provers {
        let pool = MeasurerPool::new(ids.iter().copied());
        let m = schedule::assign_measurers(&seed, p, pool.eligible(), k)[0];
        assert!(pool.is_assigned(&seed, p, &m, k));
        assigned.push(m);
    }
    let rebuilt = t.elapsed() / provers.len() as u32;

    // After: the candidates are kept as nodes onboard and snapshot when an epoch opens; a
    // prover's first receipt of the epoch scores every candidate once, its others are
    // answered from memory.
    let t = Instant::now();
    let mut candidates = Candidates::new();
    for id in &ids {
        candidates.add(*id);
    }
    let mut cache = MeasurerCache::new(candidates.snapshot());
    let build = t.elapsed();
    let t = Instant::now();
    for (p, m) in provers.iter().zip(&assigned) {
        assert!(cache.is_assigned(&seed, p, m, k));
    }
    let first = t.elapsed() / provers.len() as u32;
    let t = Instant::now();
    let rounds = 1_000u32;
    for _ in 0..rounds {
        for (p, m) in provers.iter().zip(&assigned) {
            assert!(cache.is_assigned(&seed, p, m, k));
        }
    }
    let again = t.elapsed() / (rounds * provers.len() as u32);
    // A node onboarding mid-epoch only joins the candidates (the open epoch's pool is fixed).
    let t = Instant::now();
    candidates.add(NodeId([0xEE; 32]));
    let onboard = t.elapsed();

    println!("{n} nodes, k = {k}:");
    println!("  pool rebuilt per receipt + scan: {rebuilt:?} per receipt");
    println!(
        "  cache: built once {build:?}; first receipt of a prover {first:?}; later receipts {again:?}"
    );
    println!("  a node onboarding: {onboard:?}");
}
