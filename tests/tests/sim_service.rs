//! The simulator's verdicts are the service's: a run's whole oracle input (onboards, epoch
//! opens, every batch of publishes, closes) is replayed through the service's own code path —
//! the prechecker with the service's threaded signature check, `service::commit_batch` into
//! SQLite, `service::close_epoch`, and a restart in the middle rebuilt from the database by
//! `service::rebuild` — in batches of another size. Every ack, every refusal at close and every
//! signed manifest page must be the same, byte for byte.
#![allow(clippy::unwrap_used)]

use wisp_oracle::Registry;
use wisp_oracle::engine::{Engine, Prechecker, RateLimiter};
use wisp_oracle::service::{self, ThreadedVerifier};
use wisp_oracle::store::Store;
use wisp_protocol::envelope::Envelope;
use wisp_sim::oracle::Input;
use wisp_sim::scenario::Scenario;
use wisp_sim::sim::{self, Sim};

fn prechecker() -> Prechecker<ThreadedVerifier> {
    // The service's default limits (`ingest.rate_per_s`, `ingest.burst`).
    Prechecker::new(
        RateLimiter::new(50.0, 500.0, 1_000_000),
        ThreadedVerifier::new(4),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_path_gives_the_simulators_verdicts_and_manifests() {
    let sc = Scenario::from_toml(include_str!("../../sim/scenarios/ci.toml")).unwrap();
    let out = Sim::recording(&sc, false).unwrap().run();
    assert!(
        out.stats.violations.is_empty(),
        "{:?}",
        out.stats.violations
    );
    let log = out.oracle_log.unwrap();
    let key = sim::oracle_key(sc.seed);
    let rules = sc.oracle.rules.validate().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_sqlite(&dir.path().join("oracle.db"))
        .await
        .unwrap();
    let mut engine = Engine::new(key.clone(), Registry::new(rules.clone()));
    let mut pre = prechecker();
    let closes_total = log
        .inputs
        .iter()
        .filter(|i| matches!(i, Input::Close { .. }))
        .count();
    assert!(closes_total >= 4, "{closes_total} closes");
    let (mut acks, mut closes, mut restarted) = (Vec::new(), Vec::new(), false);
    // The first batch of the first epoch and where its acks are, to send again at the end.
    let (mut opened, mut first_batch) = (false, None);
    for input in log.inputs {
        if let (Input::Batch(batch), true, None) = (&input, opened, &first_batch) {
            first_batch = Some((batch.clone(), acks.len()));
        }
        opened |= matches!(input, Input::Open(_));
        match input {
            Input::Open(seed) => {
                let bytes = Envelope::sign(&key, &seed).to_bytes();
                store
                    .insert_epoch(seed.epoch, &bytes, sc.emission_per_epoch, engine.next_seq())
                    .await
                    .unwrap();
                engine.open_epoch(seed);
            }
            Input::Batch(batch) => {
                // Other batch boundaries than the simulator's: verdicts must not depend on them.
                let mut rest = batch;
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(97));
                    let ingested;
                    (engine, ingested) = service::commit_batch(engine, &mut store, pre.check(rest))
                        .await
                        .unwrap();
                    acks.extend(ingested.acks.iter().map(|(_, a)| (a.proof_id, a.verdict)));
                    rest = tail;
                }
            }
            Input::Close {
                epoch,
                at_ms,
                emission,
            } => {
                let closed;
                (engine, closed) = service::close_epoch(engine, &mut store, epoch, at_ms, emission)
                    .await
                    .unwrap();
                let (closed, committed) =
                    closed.unwrap_or_else(|| panic!("epoch {epoch} did not close"));
                assert!(committed);
                closes.push((epoch, closed.outcome.rejections, closed.manifests));
                if !restarted && closes.len() * 2 >= closes_total {
                    // A restart: the engine is rebuilt from the database alone.
                    restarted = true;
                    engine = service::rebuild(&mut store, key.clone(), &rules)
                        .await
                        .unwrap();
                    pre = prechecker();
                }
            }
        }
    }
    assert!(restarted);
    // Its epoch is closed now, and the engine forgot its proofs: sent again, each is acked
    // with its stored verdict (read before the batch is judged) and none is stored twice.
    let (batch, from) = first_batch.unwrap();
    let first_acks = acks[from..from + batch.len().min(acks.len() - from)].to_vec();
    let stored = store.proof_count().await.unwrap();
    let mut pre = Prechecker::new(
        RateLimiter::new(1e9, 1e9, 1_000_000),
        ThreadedVerifier::new(4),
    );
    let again;
    (engine, again) = service::commit_batch(engine, &mut store, pre.check(batch))
        .await
        .unwrap();
    let again: Vec<_> = again
        .acks
        .iter()
        .map(|(_, a)| (a.proof_id, a.verdict))
        .collect();
    assert!(!again.is_empty());
    for ack in &again {
        let first = first_acks.iter().find(|(id, _)| *id == ack.0);
        assert_eq!(
            Some(ack),
            first,
            "a resent proof is acked as it was the first time"
        );
    }
    assert_eq!(store.proof_count().await.unwrap(), stored);
    drop(engine);
    assert_eq!(acks.len(), log.acks.len());
    for (i, (a, b)) in acks.iter().zip(&log.acks).enumerate() {
        assert_eq!(a, b, "ack {i} differs");
    }
    assert_eq!(closes.len(), log.closes.len());
    for (a, b) in closes.iter().zip(&log.closes) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1, "epoch {}: refusals at close differ", a.0);
        assert_eq!(a.2, b.2, "epoch {}: manifests differ", a.0);
    }
    // The run had something to judge: refusals at ingest and at close, and rewards.
    assert!(
        acks.iter()
            .any(|(_, v)| v != &wisp_protocol::msg::Verdict::Accepted)
    );
    assert!(closes.iter().any(|c| !c.1.is_empty() && !c.2.is_empty()));
}
