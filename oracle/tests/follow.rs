//! A standby's [`Follower`] against a leader writing the same database: looking between the
//! leader's commits, it holds what the leader's engine holds, and the engine it finishes with
//! closes the next epoch byte for byte as the leader and a full replay do. SQLite always;
//! PostgreSQL `#[ignore]`d (needs `WISP_TEST_POSTGRES`).
#![allow(clippy::unwrap_used)]

mod common;
mod pg;

use wisp_oracle::engine::{BatchVerifier, Engine, Incoming, Prechecker, RateLimiter};
use wisp_oracle::service::{Follower, close_epoch, commit_batch, rebuild};
use wisp_oracle::state::Snapshot;
use wisp_oracle::store::{StorageConfig, Store};
use wisp_oracle::{Registry, Rules, RulesConfig};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Beacon, EpochParams, EpochSeed, Heartbeat, Onboard, Versions, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey, schedule, topics};

const T0: u64 = 1_800_000_000_000;
const EPOCH_MS: u64 = 60_000;
const INTERVAL_MS: u32 = 5_000;
const SETTLE_MS: u32 = 2_000;
const EMISSION: u64 = 1_000_000_000;

fn rules() -> Rules {
    RulesConfig::permissionless().validate().unwrap()
}

fn oracle() -> NodeKey {
    NodeKey::from_seed(&[1; 32])
}

/// Node `i`'s onboard: each node 0.002° north and 0.001° east of the one before, one owner in
/// four, every third a measurer.
fn onboard(i: usize, issued_ms: u64) -> Onboard {
    let step = 0.002 * f64::from(u32::try_from(i).unwrap());
    let cell = Cell::from_degrees(38.7 + step, -9.1 + step / 2.0, 12).unwrap();
    Onboard {
        owner: format!("owner-{}", i % 4),
        measurer: i.is_multiple_of(3),
        ..common::onboard_msg(cell, issued_ms)
    }
}

fn seed(epoch: u64) -> EpochSeed {
    EpochSeed {
        epoch,
        start_ms: T0 + epoch * EPOCH_MS,
        duration_ms: EPOCH_MS,
        seed: [u8::try_from(epoch).unwrap(); 32].into(),
        params: EpochParams {
            heartbeat_interval_ms: INTERVAL_MS,
            settle_ms: SETTLE_MS,
            ..EpochParams::default()
        },
    }
}

/// A leader as the worker runs it: the precheck, the engine and the writable store.
struct Leader {
    pre: Prechecker<BatchVerifier>,
    engine: Option<Engine>,
    store: Store,
    keys: Vec<NodeKey>,
    heartbeats: Vec<u64>,
}

impl Leader {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// One batch of publishes, judged and committed.
    async fn batch(&mut self, publishes: Vec<(usize, Vec<u8>)>, at_ms: u64) {
        let incoming = publishes
            .into_iter()
            .map(|(i, payload)| Incoming {
                topic: topics::proofs(&self.keys[i].id()),
                payload,
                at_ms,
            })
            .collect();
        let checked = self.pre.check(incoming);
        let engine = self.engine.take().unwrap();
        let (engine, out) = commit_batch(engine, &mut self.store, checked)
            .await
            .unwrap();
        assert!(!out.rows.is_empty());

        self.engine = Some(engine);
    }

    async fn open(&mut self, epoch: u64) {
        let s = seed(epoch);
        let signed = Envelope::sign(&oracle(), &s).to_bytes();
        let at = self.engine().next_seq();
        self.store
            .insert_epoch(epoch, &signed, EMISSION, at)
            .await
            .unwrap();
        self.engine.as_mut().unwrap().open_epoch(s);
    }

    async fn close(&mut self, epoch: u64) {
        let now = T0 + (epoch + 1) * EPOCH_MS + u64::from(SETTLE_MS);
        let engine = self.engine.take().unwrap();
        let (engine, closed) = close_epoch(engine, &mut self.store, epoch, now, EMISSION)
            .await
            .unwrap();
        assert!(closed.is_some_and(|(_, committed)| committed));
        self.engine = Some(engine);
    }

    /// Every node's heartbeats of `epoch` from `from_ms` to `to_ms`, one batch per beat.
    async fn heartbeats(&mut self, epoch: u64, nodes: usize, from_ms: u64, to_ms: u64) {
        let mut t = from_ms;
        while t < to_ms {
            let batch = (0..nodes)
                .map(|i| {
                    self.heartbeats[i] += 1;
                    let hb = Heartbeat {
                        epoch,
                        seq: self.heartbeats[i],
                        uptime_s: self.heartbeats[i],
                        sent_ms: t,
                        fix: None,
                        cell: None,
                        versions: Versions::new("test", "none"),
                        peers: 3,
                    };
                    (i, Envelope::sign(&self.keys[i], &hb).to_bytes())
                })
                .collect();
            self.batch(batch, t + 40).await;
            t += u64::from(INTERVAL_MS);
        }
    }
}

/// When node `i`'s beacon of `epoch` was sent, and its witnesses came: just after it.
fn cheat_time(leader: &Leader, i: usize, epoch: u64) -> u64 {
    let (from, to) = schedule::beacon_window(&seed(epoch), &leader.keys[i].id());
    (from + to) / 2 + 50
}

/// What the API shows of an engine, and each open epoch's measurer pool.
fn view(engine: &Engine) -> String {
    let pools: Vec<_> = engine
        .open_epochs()
        .map(|(e, _)| (*e, engine.measurer_pool(*e).map(|p| p.eligible().to_vec())))
        .collect();
    format!(
        "{}\n{pools:?}",
        serde_json::to_string(&Snapshot::of(engine, 0)).unwrap()
    )
}

/// Node `i`'s beacon in `epoch`, and two witnesses of it by node `j` at a level no radio
/// reports: marks enough for a penalty at the close.
fn implausibly_witnessed(leader: &Leader, i: usize, j: usize, epoch: u64) -> Vec<(usize, Vec<u8>)> {
    let id = leader.keys[i].id();
    let s = seed(epoch);
    let (from, to) = schedule::beacon_window(&s, &id);
    let beacon = Beacon {
        epoch,
        nonce: ByteArray(schedule::beacon_nonce(&s.seed.0, &id)),
        freq_khz: 2_412_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(30),
        cell: onboard(i, 0).cell,
        tx_ms: (from + to) / 2,
    };
    let beacon_bytes = Envelope::sign(&leader.keys[i], &beacon).to_bytes();
    let mut out = vec![(i, beacon_bytes.clone())];
    for rssi in [300, 310] {
        let w = Witness {
            beacon: beacon_bytes.clone(),
            rssi: DeciDb(rssi),
            snr: DeciDb(900),
            freq_khz: beacon.freq_khz,
            rx_ms: beacon.tx_ms + 3,
            cell: onboard(j, 0).cell,
        };
        out.push((j, Envelope::sign(&leader.keys[j], &w).to_bytes()));
    }
    out
}

/// The follower looks, then must hold what the leader's engine holds (as the API shows it).
async fn look(follower: Follower, store: &mut Store, leader: &Leader, when: &str) -> Follower {
    let f = follower.catch_up(store).await.unwrap();
    assert_eq!(view(f.engine()), view(leader.engine()), "{when}");
    assert_eq!(f.engine().next_seq(), leader.engine().next_seq(), "{when}");
    f
}

async fn follows_the_leader(cfg: &StorageConfig) {
    let store = Store::open(cfg).await.unwrap();
    let mut mine = Store::open(cfg).await.unwrap();
    let keys: Vec<NodeKey> = (0..10u8)
        .map(|i| NodeKey::from_seed(&[i + 10; 32]))
        .collect();
    let mut leader = Leader {
        pre: Prechecker::new(RateLimiter::new(100.0, 100.0, 1_000), BatchVerifier::new()),
        engine: Some(Engine::new(oracle(), Registry::new(rules()))),
        store,
        heartbeats: vec![0; keys.len()],
        keys,
    };
    let mut follower = Follower::new(oracle(), &rules());

    // Epoch 0 opens on an empty database; eight nodes onboard, then beat.
    leader.open(0).await;
    let onboards = (0..8)
        .map(|i| {
            (
                i,
                Envelope::sign(&leader.keys[i], &onboard(i, T0 + 10)).to_bytes(),
            )
        })
        .collect();
    leader.batch(onboards, T0 + 20).await;
    follower = look(follower, &mut mine, &leader, "after the onboards").await;
    leader.heartbeats(0, 8, T0 + 100, T0 + EPOCH_MS / 2).await;
    follower = look(follower, &mut mine, &leader, "half way through epoch 0").await;
    leader
        .heartbeats(0, 8, T0 + EPOCH_MS / 2, T0 + EPOCH_MS)
        .await;

    // Epoch 1 opens, then 0 closes at the same point, with no row between; the follower
    // looks after each.
    leader.open(1).await;
    follower = look(follower, &mut mine, &leader, "after epoch 1's open").await;
    leader.close(0).await;
    follower = look(follower, &mut mine, &leader, "after epoch 0's close").await;
    // Two more nodes onboard in epoch 1; everyone beats.
    let onboards = (8..10)
        .map(|i| {
            let b = onboard(i, T0 + EPOCH_MS + 10);
            (i, Envelope::sign(&leader.keys[i], &b).to_bytes())
        })
        .collect();
    leader.batch(onboards, T0 + EPOCH_MS + 3_000).await;
    follower = look(follower, &mut mine, &leader, "after the late onboards").await;
    leader
        .heartbeats(1, 10, T0 + EPOCH_MS + 3_100, T0 + 2 * EPOCH_MS)
        .await;
    leader.open(2).await;
    leader.close(1).await;
    leader
        .heartbeats(2, 10, T0 + 2 * EPOCH_MS + 100, T0 + 3 * EPOCH_MS)
        .await;
    // Node 3, a measurer, reports node 1's beacon at a level no radio reports, twice:
    // penalized at epoch 2's close, it is out of the measurer pool of the epochs opened after
    // that close.
    let cheat = implausibly_witnessed(&leader, 1, 3, 2);
    let at = cheat_time(&leader, 1, 2);
    leader.batch(cheat, at).await;
    follower = look(follower, &mut mine, &leader, "in epoch 2").await;

    // Epoch 3 passes without a proof: its open, epoch 2's close, epoch 4's open and epoch
    // 3's close all come before the same row, in that order (as they happened, not opens
    // first).
    leader.open(3).await;
    follower = look(follower, &mut mine, &leader, "after epoch 3's open").await;
    leader.close(2).await;
    leader.open(4).await;
    follower = look(follower, &mut mine, &leader, "after epoch 4's open").await;
    leader.close(3).await;
    follower = look(follower, &mut mine, &leader, "after epoch 3's close").await;
    let cheater = leader.keys[3].id();
    let pool = leader
        .engine()
        .measurer_pool(4)
        .unwrap()
        .eligible()
        .to_vec();
    assert!(!pool.contains(&cheater) && !pool.is_empty(), "{pool:?}");
    leader
        .heartbeats(4, 10, T0 + 4 * EPOCH_MS + 100, T0 + 5 * EPOCH_MS)
        .await;
    follower = look(follower, &mut mine, &leader, "in epoch 4").await;
    assert_eq!(Snapshot::of(follower.engine(), 0).nodes.len(), 10);

    // The follower takes over: its engine, a full replay's and the leader's close epoch 4
    // alike, to the byte.
    let taken = follower.finish(&mut mine).await.unwrap();
    let replayed = rebuild(&mut mine, oracle(), &rules()).await.unwrap();
    let now = T0 + 5 * EPOCH_MS + u64::from(SETTLE_MS);
    let by_leader = leader.engine().close(4, now, EMISSION).unwrap();
    let by_follower = taken.close(4, now, EMISSION).unwrap();
    let by_replay = replayed.close(4, now, EMISSION).unwrap();
    assert!(by_leader.rewards.entries.iter().any(|e| e.amount > 0));
    assert_eq!(by_follower.manifests, by_leader.manifests);
    assert_eq!(by_replay.manifests, by_leader.manifests);
    assert_eq!(by_follower.rewards.entries, by_leader.rewards.entries);
}

#[tokio::test]
async fn sqlite_a_follower_holds_what_the_leader_holds() {
    let dir = tempfile::tempdir().unwrap();
    follows_the_leader(&StorageConfig::Sqlite(dir.path().join("oracle.db"))).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
async fn postgres_a_follower_holds_what_the_leader_holds() {
    follows_the_leader(&pg::fresh()).await;
}
