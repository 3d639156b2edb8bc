//! Routine trouble costs an honest node nothing: its agent (the real core and outbox, over a
//! modelled store and broker) restarts, loses its broker for a while, resends its backlog, and
//! the oracle's real engine accepts every heartbeat, at ingest and at the epoch's close.
//!
//! No I/O and no clock: time advances in 100 ms steps, so the run is the same every time.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};

use wisp_agent::core::{Core, CoreConfig, Proof};
use wisp_agent::outbox::{Outbox, OutboxConfig};
use wisp_oracle::acks::AckBatcher;
use wisp_oracle::engine::{BatchVerifier, Engine, Incoming, Prechecker, RateLimiter};
use wisp_oracle::{Registry, RulesConfig};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Band, EpochParams, EpochSeed, Onboard, Verdict, Versions};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeKey, ProofId, Reason, topics};

const T0: u64 = 1_800_000_000_000;
const INTERVAL_MS: u64 = 10_000;
const STEP_MS: u64 = 100;
/// Broker delivery time, each way.
const LATENCY_MS: u64 = 50;
const RUN_MS: u64 = 300_000;

/// What the agent keeps on disk: the outbox rows and the heartbeat counters.
#[derive(Default)]
struct Disk {
    rows: BTreeMap<u64, (ProofId, Kind, Vec<u8>, u64)>,
    heartbeat_seq: u64,
    heartbeat_ms: Option<u64>,
}

/// A running agent process: what it holds in memory.
struct Process {
    core: Core,
    outbox: Outbox,
}

impl Process {
    /// Starts (or restarts) from `disk`, as the shell does.
    fn start(key: &NodeKey, oracle: &NodeKey, seed: &[u8], disk: &Disk, now: u64) -> Process {
        let mut core = Core::new(
            key.clone(),
            CoreConfig::new(None, Versions::new("t", "test")),
            oracle.id(),
            now,
            disk.heartbeat_seq,
        );
        if let Some(ms) = disk.heartbeat_ms {
            core.resume_heartbeats(ms, now);
        }
        core.handle_seed(seed, now).unwrap();
        let mut outbox = Outbox::new(OutboxConfig::default(), now);
        for (seq, (id, kind, bytes, created)) in &disk.rows {
            let proof = Proof {
                id: *id,
                kind: *kind,
                bytes: bytes.clone(),
                created_ms: *created,
            };
            outbox.restore(*seq, proof, now);
        }
        Process { core, outbox }
    }

    /// Signs what is due and commits it with the deletions of the acks since the last turn
    /// (before anything of it is sent).
    fn turn(&mut self, disk: &mut Disk, now: u64) {
        self.core.handle_timeout(now);
        while let Some(p) = self.core.poll_proof() {
            self.outbox.stage(p, now);
        }
        if let Some(c) = self.outbox.poll_commit(now, true) {
            for w in c.writes {
                disk.rows
                    .insert(w.seq, (w.id, w.kind, w.bytes, w.created_ms));
            }
            disk.rows.retain(|_, (id, ..)| !c.deletions.contains(id));
            disk.heartbeat_seq = self.core.heartbeat_seq();
            disk.heartbeat_ms = self.core.activity().last_heartbeat_ms;
            self.outbox.handle_committed(now);
        }
    }
}

#[test]
fn restarts_and_broker_outages_cost_no_honest_heartbeat() {
    let oracle_key = NodeKey::from_seed(&[1; 32]);
    let node = NodeKey::from_seed(&[2; 32]);
    let seed_msg = EpochSeed {
        epoch: 1,
        start_ms: T0,
        duration_ms: 2 * RUN_MS,
        seed: [7; 32].into(),
        params: EpochParams {
            heartbeat_interval_ms: u32::try_from(INTERVAL_MS).unwrap(),
            settle_ms: 60_000,
            ..EpochParams::default()
        },
    };
    let seed = Envelope::sign(&oracle_key, &seed_msg).to_bytes();

    let rules = RulesConfig::permissionless().validate().unwrap();
    let mut engine = Engine::new(oracle_key.clone(), Registry::new(rules));
    engine.open_epoch(seed_msg.clone());
    let mut pre = Prechecker::new(RateLimiter::new(100.0, 100.0, 10), BatchVerifier::new());
    let mut verdicts: BTreeMap<ProofId, Verdict> = BTreeMap::new();
    let mut ingest = |engine: &mut Engine, payload: Vec<u8>, at_ms: u64| {
        let checked = pre.check(vec![Incoming {
            topic: topics::proofs(&node.id()),
            payload,
            at_ms,
        }]);
        engine.ingest(checked, |_| None).acks
    };
    let onboard = Onboard {
        owner: "owner".into(),
        cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
        antenna_gain: DeciDb(30),
        antenna_height_dm: 100,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(360),
        }],
        measurer: false,
        issued_ms: T0,
        attestation: None,
    };
    let acks = ingest(&mut engine, Envelope::sign(&node, &onboard).to_bytes(), T0);
    assert_eq!(acks[0].1.verdict, Verdict::Accepted);

    // Restarts: just after a heartbeat, twice; once more in the middle of an outage.
    let restarts = [T0 + 23_000, T0 + 130_000, T0 + 200_300];
    // Outages: (start, end), each just after a heartbeat was sent: publishes not yet
    // delivered are lost with the connection (the heartbeat stays in flight, unacked), and
    // nothing is sent until the end, while later heartbeats pile up.
    let outages = [(T0 + 60_100, T0 + 65_100), (T0 + 100_100, T0 + 161_000)];
    let mut disk = Disk::default();
    let mut agent = Process::start(&node, &oracle_key, &seed, &disk, T0);
    let mut to_oracle: VecDeque<(u64, u64, Vec<u8>)> = VecDeque::new(); // (arrival, sent, bytes)
    let mut to_agent: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut was_connected = true;
    let mut now = T0;
    while now < T0 + RUN_MS {
        let connected = !outages.iter().any(|(a, b)| (*a..*b).contains(&now));
        if restarts.contains(&now) {
            // Killed and started again: memory gone, the disk and the broker's queues kept.
            agent = Process::start(&node, &oracle_key, &seed, &disk, now);
            if connected {
                agent.outbox.reconnected(now);
            } else {
                agent.outbox.disconnected();
            }
        }
        if was_connected && !connected {
            agent.outbox.disconnected();
            to_oracle.retain(|(_, sent, _)| *sent + 2_000 < now);
            to_agent.clear();
        }
        if !was_connected && connected {
            agent.outbox.reconnected(now);
        }
        was_connected = connected;
        agent.turn(&mut disk, now);
        if connected {
            while let Some(e) = agent.outbox.poll_send(now) {
                let (id, bytes) = (e.id, e.envelope().to_vec());
                agent.outbox.mark_sent(&id, now);
                to_oracle.push_back((now + LATENCY_MS, now, bytes));
            }
        }
        // The oracle judges what arrived, in arrival order, and acks it.
        let mut batcher = AckBatcher::new();
        while to_oracle.front().is_some_and(|(at, ..)| *at <= now) {
            let (at, _, bytes) = to_oracle.pop_front().unwrap();
            for (n, entry) in ingest(&mut engine, bytes, at) {
                let previous = verdicts.insert(entry.proof_id, entry.verdict);
                assert!(previous.is_none_or(|v| v == entry.verdict));
                batcher.push(n, entry.proof_id, entry.verdict);
            }
        }
        for (_, ack) in batcher.flush(&oracle_key, now) {
            to_agent.push_back((now + LATENCY_MS, ack));
        }
        while connected && to_agent.front().is_some_and(|(at, _)| *at <= now) {
            let (_, ack) = to_agent.pop_front().unwrap();
            // As the shell does: a transient verdict (`rate_limited`) leaves the proof to be
            // resent; only a final one deletes it, by the next commit.
            for e in agent.core.handle_ack(&ack, now).unwrap() {
                if e.verdict.is_final() {
                    agent.outbox.stage_deletion(&e.proof_id, now);
                }
            }
        }
        now += STEP_MS;
    }

    let rejected: Vec<(&ProofId, &Verdict)> = verdicts
        .iter()
        .filter(|(_, v)| **v != Verdict::Accepted)
        .collect();
    assert!(rejected.is_empty(), "rejected at ingest: {rejected:?}");
    let heartbeats = disk.heartbeat_seq;
    assert_eq!(
        heartbeats,
        RUN_MS / INTERVAL_MS,
        "one heartbeat per interval"
    );
    assert_eq!(verdicts.len(), usize::try_from(heartbeats).unwrap());

    let end = seed_msg.start_ms + seed_msg.duration_ms + 60_000;
    let closed = engine.close(1, end, 1_000_000).unwrap();
    let refused: Vec<&(ProofId, Reason)> = closed.outcome.rejections.iter().collect();
    assert!(refused.is_empty(), "refused at the close: {refused:?}");
    let facts = &closed.outcome.nodes[&node.id()];
    assert_eq!(
        u64::from(facts.heartbeats),
        RUN_MS / INTERVAL_MS,
        "every interval of the run covered"
    );
}
