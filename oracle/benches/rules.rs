//! Throughput of the oracle's pure core.
//!
//! - `witness/*`: checks of witnesses against a 10 000-node registry, with signature
//!   verification excluded (beacon opened by the caller), included one by one
//!   (`envelope::open` of the witness, then its beacon), and batch-verified.
//! - `receipt/*`: the measurer-assignment rule, whose cost grows with the eligible pool.
//! - `epoch/*`: pushing and closing a realistic epoch of 10 000 nodes (one beacon each, about
//!   eight witnesses per beacon, three measurers per prover in both directions, twelve
//!   heartbeats), then rewards, manifest pages and the Merkle root.
//!
//! Run with `cargo bench -p wisp-oracle`. Building the 10 000-node epoch signs and verifies
//! about 400 000 envelopes and takes a while before the first measurement.

// A bench panics on a broken setup; that is its error handling.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wisp_oracle::{EpochState, MeasurerPool, RulesConfig, rewards};
use wisp_protocol::envelope::{self, EnvelopeRef};
use wisp_protocol::msg::{Beacon, Direction, EpochParams, Witness};

const SIDE: usize = 100;
const NODES: usize = SIDE * SIDE;

fn fixture() -> Fixture {
    Fixture::grid(
        NODES,
        SIDE,
        RulesConfig::permissionless(),
        EpochParams::default(),
    )
}

/// Witness envelopes by each of node `c`'s eight neighbours, for `count` centre nodes.
fn witnesses(fx: &Fixture, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Interior nodes only (not on the grid's first or last column), so all eight neighbours
    // are 250 or 354 m away.
    let interior = (SIDE + 1..NODES - SIDE - 1).filter(|c| (1..SIDE - 1).contains(&(c % SIDE)));
    for c in interior.step_by(7).take(count) {
        let b = fx.beacon_msg(c);
        let bytes = fx.sign(c, &b);
        for j in [
            c - SIDE - 1,
            c - SIDE,
            c - SIDE + 1,
            c - 1,
            c + 1,
            c + SIDE - 1,
            c + SIDE,
            c + SIDE + 1,
        ] {
            out.push(fx.sign(j, &fx.witness_msg(j, &bytes, &b, c)));
        }
    }
    out
}

fn witness_checks(c: &mut Criterion) {
    let fx = fixture();
    let envs = witnesses(&fx, 250);
    let now = fx.seed.end_ms();
    let opened: Vec<_> = envs
        .iter()
        .map(|e| {
            let w = envelope::open::<Witness>(e).unwrap();
            let b = w.msg.open_beacon().unwrap();
            (w, b)
        })
        .collect();
    let checker = fx.checker();
    for (w, b) in &opened {
        checker.witness_with_beacon(w, b, now).unwrap();
    }
    let mut g = c.benchmark_group("witness");
    g.throughput(Throughput::Elements(envs.len() as u64));
    g.bench_function("check_without_signatures", |bch| {
        bch.iter(|| {
            for (w, b) in &opened {
                black_box(checker.witness_with_beacon(w, b, now).is_ok());
            }
        })
    });
    g.bench_function("open_and_check_with_signatures", |bch| {
        bch.iter(|| {
            for e in &envs {
                let w = envelope::open::<Witness>(e).unwrap();
                black_box(checker.witness(&w, now).is_ok());
            }
        })
    });
    g.bench_function("batch_verify_then_check", |bch| {
        bch.iter(|| {
            // Witness and embedded beacon signatures in one batch, then decode and check.
            let mut refs = Vec::with_capacity(envs.len() * 2);
            for e in &envs {
                let w = EnvelopeRef::parse(e).unwrap();
                let inner = envelope::decode_canonical::<Witness>(w.payload).unwrap();
                refs.push(w);
                // The beacon bytes live inside the payload we just decoded; re-parse them
                // from the envelope bytes to borrow for the batch.
                let start = e
                    .windows(inner.beacon.len())
                    .position(|s| s == inner.beacon.as_slice())
                    .unwrap();
                refs.push(EnvelopeRef::parse(&e[start..start + inner.beacon.len()]).unwrap());
            }
            let results = envelope::verify_batch(&refs);
            assert!(results.iter().all(Result::is_ok));
            for pair in refs.chunks(2) {
                let w = pair[0].decode::<Witness>().unwrap();
                let b = pair[1].decode::<Beacon>().unwrap();
                black_box(checker.witness_with_beacon(&w, &b, now).is_ok());
            }
        })
    });
    g.finish();
}

fn receipt_checks(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("receipt");
    for pool_size in [1_000usize, 10_000] {
        let pool = MeasurerPool::new(fx.ids.iter().step_by(NODES / pool_size).copied());
        let k = usize::from(fx.seed.params.measurers_per_prover);
        let index: std::collections::BTreeMap<_, _> =
            fx.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let receipts: Vec<_> = (0..20)
            .map(|p| {
                let m = index[&pool.assigned(&fx.seed.seed.0, &fx.ids[p], k)[0]];
                envelope::open(&fx.receipt_bytes(p, m, Direction::Down, 300_000_000)).unwrap()
            })
            .collect();
        let checker = fx.checker();
        g.throughput(Throughput::Elements(receipts.len() as u64));
        g.bench_function(format!("check_assigned_pool_{pool_size}"), |bch| {
            bch.iter(|| {
                for r in &receipts {
                    assert!(checker.receipt(r, &pool).is_ok());
                }
            })
        });
    }
    g.finish();
}

fn epoch_close(c: &mut Criterion) {
    let started = Instant::now();
    let mut fx = fixture();
    let items = honest_epoch(
        &mut fx,
        &HonestOpts {
            witness_radius_m: 360.0,
            measurers: (0..NODES).step_by(10).collect(),
            heartbeats: 12,
        },
    );
    eprintln!(
        "epoch of {NODES} nodes: {} proofs built and checked in {:.1} s",
        items.len(),
        started.elapsed().as_secs_f64()
    );
    let closes = close_time(&fx);
    let state = state_of(&fx, &items);
    let outcome = state.close(&fx.registry, closes).unwrap();
    let r = rewards::compute(&fx.registry, &outcome, 1_000_000_000_000);
    assert_eq!(r.total_paid(), 1_000_000_000_000);
    eprintln!(
        "{} rejections, {} paid entries, {} manifest pages",
        outcome.rejections.len(),
        r.entries.len(),
        r.manifest_pages().len()
    );
    let mut g = c.benchmark_group("epoch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("push_10k_nodes", |bch| {
        bch.iter(|| {
            let mut s = EpochState::new(fx.seed.clone());
            for (a, f) in &items {
                f.push(&mut s, *a).unwrap();
            }
            black_box(s.len())
        })
    });
    g.bench_function("close_10k_nodes", |bch| {
        bch.iter(|| black_box(state.close(&fx.registry, closes).unwrap()))
    });
    g.throughput(Throughput::Elements(NODES as u64));
    g.bench_function("rewards_and_manifest_10k_nodes", |bch| {
        bch.iter(|| {
            let r = rewards::compute(&fx.registry, &outcome, 1_000_000_000_000);
            black_box(r.manifest_pages())
        })
    });
    g.finish();
}

criterion_group!(benches, witness_checks, receipt_checks, epoch_close);
criterion_main!(benches);
