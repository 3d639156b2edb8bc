//! Crashes: in the middle of a close, SIGKILL during ingest, and repeated SIGKILLs on the file
//! clock compared byte for byte with a run without crashes.

use super::*;

#[test]
fn crash_in_the_middle_of_an_epoch_close_leaves_the_old_state_then_closes_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let timing = [
        ("WISP_EPOCH__DURATION_S", "4"),
        ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.5"),
    ];
    let oracle = Oracle::spawn(dir.path(), port, &timing);
    let okey = Oracle::key(dir.path());
    let nodes: Vec<NodeKey> = (10..13u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    let refs: Vec<&NodeKey> = nodes.iter().collect();
    let c = Client::connect(port, &okey, &refs);
    for (i, k) in nodes.iter().enumerate() {
        let id = c.send(k, &onboard(k, 38.7 + i as f64 * 0.01));
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    // Heartbeat through one whole epoch, from its start, every 450 ms.
    let first = c.seed().epoch;
    assert!(wait_for(Duration::from_secs(10), || c.seed().epoch > first));
    let seed = c.seed();
    let epoch = seed.epoch;
    let mut seq = 0;
    while wall_ms() + 450 < seed.end_ms() {
        seq += 1;
        for k in &nodes {
            let id = c.send(
                k,
                &Envelope::sign(k, &heartbeat_at(epoch, seq, wall_ms())).to_bytes(),
            );
            assert_eq!(c.await_verdict(&id), Verdict::Accepted);
        }
        std::thread::sleep(Duration::from_millis(450));
    }
    // Restart (the state is replayed from the database) with a crash point in the close.
    oracle.kill9();
    let mut crashing = Oracle::spawn(
        dir.path(),
        port,
        &[
            timing[0],
            timing[1],
            ("WISP_ORACLE_CRASH_AT", "close-mid-transaction"),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(15), || crashing
            .child
            .try_wait()
            .unwrap()
            .is_some()),
        "did not crash"
    );
    let db = rusqlite::Connection::open(dir.path().join("oracle.db")).unwrap();
    let closed: Option<i64> = db
        .query_row(
            "SELECT closed_ms FROM epochs WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rewards WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (closed, rows),
        (None, 0),
        "a crash mid-close must leave the epoch open and unpaid"
    );
    drop(crashing);

    // Restarted without the crash point: the epoch closes once and pays exactly the emission.
    let oracle = Oracle::spawn(dir.path(), port, &timing);
    let path = format!("/v1/epochs/{epoch}/rewards");
    assert!(wait_for(Duration::from_secs(15), || {
        oracle.get(&path)["entries"].is_array()
    }));
    let r = oracle.get(&path);
    let entries = r["entries"].as_array().unwrap();
    let total: u64 = entries.iter().map(|e| e["amount"].as_u64().unwrap()).sum();
    println!("epoch {epoch}: {seq} heartbeats per node, rewards {entries:?}");
    assert_eq!(entries.len(), 3, "{r}");
    assert_eq!(total, 1_000_000_000);
    // Every manifest page verifies and carries the root the API shows.
    for page in r["manifest_pages_hex"].as_array().unwrap() {
        let bytes = hex::decode(page.as_str().unwrap()).unwrap();
        let m = envelope::open::<wisp_protocol::msg::RewardManifest>(&bytes).unwrap();
        assert_eq!(m.signer, okey.id());
        assert_eq!(m.msg.root.to_string(), r["merkle_root"].as_str().unwrap());
    }
    let rows: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rewards WHERE epoch = ?1",
            [epoch as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 3);
    oracle.kill9();
}

#[test]
fn sigkill_during_ingest_loses_no_acked_proof_and_counts_none_twice() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut oracle = Some(Oracle::spawn(
        dir.path(),
        port,
        &[("WISP_EPOCH__DURATION_S", "60")],
    ));
    let okey = Oracle::key(dir.path());
    let nodes: Vec<NodeKey> = (0..100u32)
        .map(|i| NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let refs: Vec<&NodeKey> = nodes.iter().collect();
    let c = Client::connect(port, &okey, &refs);
    for (i, k) in nodes.iter().enumerate() {
        c.send(k, &onboard(k, 38.0 + i as f64 * 0.01));
    }
    assert!(wait_for(Duration::from_secs(20), || c
        .acks
        .lock()
        .unwrap()
        .len()
        >= nodes.len()));
    let epoch = c.seed().epoch;
    let mut proofs: Vec<(usize, Vec<u8>)> = Vec::new();
    for seq in 1..=6u64 {
        for (i, k) in nodes.iter().enumerate() {
            proofs.push((i, Envelope::sign(k, &heartbeat(k, epoch, seq)).to_bytes()));
        }
    }
    let send_unacked = |c: &Client| {
        for (i, p) in &proofs {
            if c.verdict(&ProofId::of(p)).is_none() {
                c.send(&nodes[*i], p);
            }
        }
    };
    // Send everything; kill the oracle three times while it ingests; resend what is unacked.
    let mut rng = 7u64;
    for round in 0..4 {
        send_unacked(&c);
        if round < 3 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_millis(20 + (rng >> 33) % 200));
            oracle.take().unwrap().kill9();
            oracle = Some(Oracle::spawn(
                dir.path(),
                port,
                &[("WISP_EPOCH__DURATION_S", "60")],
            ));
        }
    }
    assert!(
        wait_for(Duration::from_secs(30), || {
            send_unacked(&c);
            std::thread::sleep(Duration::from_millis(200));
            proofs
                .iter()
                .all(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        }),
        "some proofs were never acked"
    );
    let verdicts: BTreeMap<String, usize> = proofs.iter().fold(BTreeMap::new(), |mut m, (_, p)| {
        *m.entry(format!("{:?}", c.verdict(&ProofId::of(p)).unwrap()))
            .or_default() += 1;
        m
    });
    println!("verdicts after 3 SIGKILLs: {verdicts:?}");
    oracle.take().unwrap().kill9();
    let db = rusqlite::Connection::open(dir.path().join("oracle.db")).unwrap();
    for (_, p) in &proofs {
        let id = ProofId::of(p);
        let stored: Option<i64> = db
            .query_row(
                "SELECT verdict FROM proofs WHERE id = ?1",
                [id.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .ok();
        // Every acked proof is stored (exactly once: the id is unique), with the acked verdict.
        let code = match c.verdict(&id).unwrap() {
            Verdict::Accepted => 0,
            Verdict::Rejected(r) => i64::from(r.code()),
        };
        assert_eq!(stored, Some(code), "proof {id}");
    }
    assert_eq!(
        verdicts.get("Accepted"),
        Some(&proofs.len()),
        "{verdicts:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Repeated SIGKILL, compared with a run without crashes.
//
// Both runs use the oracle's file clock (`WISP_ORACLE_CLOCK_FILE`), the same oracle key and the
// same pre-signed proofs, so a run is a function of its inputs: the rewards and the signed
// manifests of the crashing run must equal those of the clean run byte for byte.

pub(super) const EPOCH_MS: u64 = 10_000;
pub(super) const SETTLE_MS: u64 = 1_500;
pub(super) const STEP_MS: u64 = 1_000;
pub(super) const EPOCHS: u64 = 3;
/// The clock at step 0: epoch 0 starts at `T0 - 500` (genesis is the clock rounded down).
pub(super) const T0: u64 = 1_800_000_000_500;

/// An epoch as stored: closed_ms, rewards and signed manifest pages.
pub(super) type StoredEpoch = (
    Option<u64>,
    Vec<wisp_protocol::msg::RewardEntry>,
    Vec<Vec<u8>>,
);

/// What a run leaves in its store, for comparison.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    /// Per epoch.
    pub(super) epochs: BTreeMap<u64, StoredEpoch>,
    /// Every stored proof: id → (epoch, verdict).
    pub(super) proofs: BTreeMap<ProofId, (Option<u64>, Verdict)>,
}

pub(super) fn outcome_of(storage: &Storage) -> Outcome {
    block_on(async {
        let mut store = storage.open().await;
        let mut epochs = BTreeMap::new();
        for e in store.epochs().await.unwrap() {
            epochs.insert(
                e.epoch,
                (
                    e.closed_ms,
                    store.rewards(e.epoch).await.unwrap(),
                    store.manifests(e.epoch).await.unwrap(),
                ),
            );
        }
        let mut proofs = BTreeMap::new();
        store
            .for_each_row(|r| {
                assert!(
                    proofs.insert(r.id, (r.epoch, r.verdict)).is_none(),
                    "proof {} stored twice",
                    r.id
                );
            })
            .await
            .unwrap();
        Outcome { epochs, proofs }
    })
}

/// Where a run stores its data: SQLite in the data directory, or a fresh PostgreSQL schema.
pub(super) struct Storage {
    cfg: StorageConfig,
}

impl Storage {
    pub(super) fn sqlite(dir: &Path) -> Storage {
        Storage {
            cfg: StorageConfig::Sqlite(dir.join("oracle.db")),
        }
    }

    pub(super) fn postgres() -> Storage {
        Storage { cfg: pg::fresh() }
    }

    pub(super) fn env(&self) -> Vec<(String, String)> {
        match &self.cfg {
            StorageConfig::Sqlite(_) => vec![],
            StorageConfig::Postgres { url, schema } => {
                let mut v = vec![("WISP_STORAGE__URL".to_string(), url.clone())];
                v.extend(
                    schema
                        .iter()
                        .map(|s| ("WISP_STORAGE__SCHEMA".to_string(), s.clone())),
                );
                v
            }
        }
    }

    pub(super) async fn open(&self) -> wisp_oracle::store::Store {
        wisp_oracle::store::Store::open(&self.cfg).await.unwrap()
    }
}

pub(super) struct Schedule {
    pub(super) nodes: Vec<NodeKey>,
    pub(super) onboards: Vec<Vec<u8>>,
    /// Per step: the heartbeats sent at it, with the sending node's index.
    pub(super) steps: Vec<Vec<(usize, Vec<u8>)>>,
}

impl Schedule {
    pub(super) fn new(n: usize) -> Schedule {
        let nodes: Vec<NodeKey> = (0..n as u32)
            .map(|i| NodeKey::from_seed(blake3::hash(&(i + 5000).to_le_bytes()).as_bytes()))
            .collect();
        let onboards = nodes
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Envelope::sign(
                    k,
                    &Onboard {
                        owner: format!("owner-{}", i % 4),
                        cell: Cell::from_degrees(38.0 + i as f64 * 0.02, -9.1, 12).unwrap(),
                        antenna_gain: DeciDb(30),
                        antenna_height_dm: 50,
                        bands: vec![Band {
                            low_khz: 2_400_000,
                            high_khz: 2_483_500,
                            max_eirp: DeciDb(200),
                        }],
                        measurer: true,
                        issued_ms: T0 - 400,
                        attestation: None,
                    },
                )
                .to_bytes()
            })
            .collect();
        let per_epoch = EPOCH_MS / STEP_MS;
        let steps = (0..EPOCHS * per_epoch)
            .map(|k| {
                let epoch = k / per_epoch;
                // The heartbeat counter runs on across epochs, as an agent's does.
                let seq = k + 1;
                let t = T0 + k * STEP_MS;
                nodes
                    .iter()
                    .enumerate()
                    // Uneven uptime: some nodes miss beats, every fifth stops halfway.
                    .filter(|(i, _)| !(i * 7 + k as usize * 3).is_multiple_of(11))
                    .filter(|(i, _)| i % 5 != 0 || k % per_epoch < per_epoch / 2)
                    .map(|(i, key)| {
                        (
                            i,
                            Envelope::sign(key, &heartbeat_at(epoch, seq, t - 200)).to_bytes(),
                        )
                    })
                    .collect()
            })
            .collect();
        Schedule {
            nodes,
            onboards,
            steps,
        }
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.onboards
            .iter()
            .chain(self.steps.iter().flatten().map(|(_, p)| p))
    }
}

/// A small deterministic generator for the kill moments.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub(super) struct Run<'a> {
    data: PathBuf,
    clock: PathBuf,
    port: u16,
    storage: &'a Storage,
    oracle: Option<Oracle>,
    kills: u32,
}

impl<'a> Run<'a> {
    pub(super) fn new(data: &Path, key: &NodeKey, storage: &'a Storage) -> Run<'a> {
        std::fs::create_dir_all(data).unwrap();
        wisp_shell::keyfile::save_new(&data.join("oracle.key"), key).unwrap();
        let clock = data.join("clock");
        std::fs::write(&clock, T0.to_string()).unwrap();
        Run {
            data: data.to_path_buf(),
            clock,
            port: free_port(),
            storage,
            oracle: None,
            kills: 0,
        }
    }

    fn env(&self, crash_at: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("WISP_ORACLE_CLOCK_FILE", self.clock.display().to_string()),
            ("WISP_EPOCH__DURATION_S", (EPOCH_MS / 1000).to_string()),
            (
                "WISP_EPOCH__SETTLE_S",
                format!("{}", SETTLE_MS as f64 / 1000.0),
            ),
            ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "1".into()),
            ("WISP_INGEST__BURST", "100000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.storage.env());
        if let Some(c) = crash_at {
            env.push(("WISP_ORACLE_CRASH_AT".into(), c.into()));
        }
        env
    }

    fn start(&mut self) {
        let env = self.env(None);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.oracle = Some(Oracle::spawn(&self.data, self.port, &env));
    }

    fn kill(&mut self) {
        if let Some(o) = self.oracle.take() {
            o.kill9();
            self.kills += 1;
        }
    }

    /// Starts the oracle with a crash point and waits for it to abort there.
    fn crash_at(&mut self, point: &str) {
        self.crash_at_while(point, || {});
    }

    /// Starts the oracle with a crash point and waits for it to abort there, calling
    /// `meanwhile` every 300 ms (to send it what makes it reach the point).
    fn crash_at_while(&mut self, point: &str, mut meanwhile: impl FnMut()) {
        use std::os::unix::process::ExitStatusExt;
        assert!(self.oracle.is_none());
        let mut child = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
            .args(["run", "--data-dir", &self.data.display().to_string()])
            .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
            .env("WISP_LOG", "error,rumqttd=off")
            .envs(self.env(Some(point)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut status = None;
        let mut last = Instant::now();
        assert!(
            wait_for(Duration::from_secs(30), || {
                if last.elapsed() > Duration::from_millis(300) {
                    meanwhile();
                    last = Instant::now();
                }
                status = child.try_wait().unwrap();
                status.is_some()
            }),
            "the oracle did not reach crash point {point}"
        );
        assert_eq!(
            status.unwrap().signal(),
            Some(6),
            "the oracle should have aborted at {point}"
        );
        self.kills += 1;
    }

    fn set_clock(&self, t: u64) {
        // Atomic replace: the oracle never reads a half-written number.
        let tmp = self.clock.with_extension("tmp");
        std::fs::write(&tmp, t.to_string()).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    fn oracle(&self) -> &Oracle {
        self.oracle.as_ref().unwrap()
    }
}

/// Sends `proofs` until every one is acked; with `kills`, SIGKILLs the oracle at random
/// moments while it ingests them and restarts it.
fn deliver(
    run: &mut Run<'_>,
    c: &Client,
    proofs: &[(&NodeKey, &Vec<u8>)],
    kills: Option<&mut Lcg>,
) {
    let send_unacked = |c: &Client| {
        for (k, p) in proofs {
            if c.verdict(&ProofId::of(p)).is_none() {
                c.send(k, p);
            }
        }
    };
    if let Some(rng) = kills {
        for _ in 0..rng.next(3) {
            send_unacked(c);
            std::thread::sleep(Duration::from_millis(rng.next(40)));
            run.kill();
            if rng.next(4) == 0 {
                // The next start dies inside its first ingest transaction.
                run.crash_at_while("ingest-before-commit", || send_unacked(c));
            }
            run.start();
        }
    }
    assert!(
        wait_for(Duration::from_secs(60), || {
            send_unacked(c);
            std::thread::sleep(Duration::from_millis(150));
            proofs
                .iter()
                .all(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        }),
        "some proofs were never acked"
    );
}

fn epoch_closed(run: &Run<'_>, epoch: u64) -> bool {
    run.oracle().get(&format!("/v1/epochs/{epoch}/rewards"))["entries"].is_array()
}

/// Runs the whole schedule; with `seed`, kills the oracle repeatedly. Returns the acks seen.
pub(super) fn run_schedule(
    run: &mut Run<'_>,
    key: &NodeKey,
    s: &Schedule,
    seed: Option<u64>,
) -> BTreeMap<ProofId, Verdict> {
    let mut rng = seed.map(Lcg);
    run.start();
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(run.port, key, &refs);
    let onboards: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).collect();
    deliver(run, &c, &onboards, rng.as_mut());
    let per_epoch = EPOCH_MS / STEP_MS;
    for k in 0..=EPOCHS * per_epoch + 1 {
        let t = T0 + k * STEP_MS;
        // The step after an epoch's end + settle window closes it.
        let closing = (k > 1 && (k - 1) % per_epoch == 0).then(|| (k - 1) / per_epoch - 1);
        match (closing, rng.is_some()) {
            (Some(epoch), true) => {
                // Kill, move the clock past the settle window, and crash inside the close
                // transaction, then after its commit (before the manifest is published).
                run.kill();
                run.set_clock(t);
                run.crash_at("close-mid-transaction");
                let (closed_ms, rewards) = block_on(async {
                    let store = run.storage.open().await;
                    let e = store
                        .epochs()
                        .await
                        .unwrap()
                        .into_iter()
                        .find(|e| e.epoch == epoch)
                        .unwrap();
                    (e.closed_ms, store.rewards(epoch).await.unwrap())
                });
                assert_eq!(
                    closed_ms, None,
                    "a crash mid-close left epoch {epoch} closed"
                );
                assert!(rewards.is_empty(), "a crash mid-close left rewards");
                run.crash_at("close-after-commit");
                let manifests = block_on(async {
                    let store = run.storage.open().await;
                    store.manifests(epoch).await.unwrap()
                });
                assert!(
                    !manifests.is_empty(),
                    "the close committed before the crash"
                );
                run.start();
            }
            _ => run.set_clock(t),
        }
        if let Some(epoch) = closing {
            assert!(
                wait_for(Duration::from_secs(30), || epoch_closed(run, epoch)),
                "epoch {epoch} did not close"
            );
        }
        // Proofs of an epoch go out once the oracle has opened it (it notices the clock
        // within 100 ms), as an agent waits for the seed.
        let current = k / per_epoch;
        assert!(
            wait_for(Duration::from_secs(30), || c.seed().epoch >= current),
            "epoch {current} did not open"
        );
        if let Some(step) = s.steps.get(k as usize) {
            let proofs: Vec<(&NodeKey, &Vec<u8>)> =
                step.iter().map(|(i, p)| (&s.nodes[*i], p)).collect();
            deliver(run, &c, &proofs, rng.as_mut());
        }
    }
    // The dashboard's witness links come from the last closed epoch (heartbeats only here).
    let links = run.oracle().get("/v1/witness-links");
    assert_eq!(links["epoch"], EPOCHS - 1, "{links}");
    assert_eq!(links["links"], serde_json::json!([]), "{links}");
    let acks = c.acks.lock().unwrap().clone();
    run.kill();
    acks
}

fn crash_run_equals_clean_run(clean_storage: &Storage, crash_storage: &Storage, root: &Path) {
    let key = NodeKey::from_seed(&[42; 32]);
    let schedule = Schedule::new(24);

    let mut clean = Run::new(&root.join("clean"), &key, clean_storage);
    let clean_acks = run_schedule(&mut clean, &key, &schedule, None);
    let mut crashing = Run::new(&root.join("crashing"), &key, crash_storage);
    let crash_acks = run_schedule(&mut crashing, &key, &schedule, Some(0x5eed));

    let a = outcome_of(clean_storage);
    let b = outcome_of(crash_storage);
    // Every proof was acked, in both runs, with the same verdict; every acked proof is stored
    // (once: `outcome_of` refuses a proof stored twice) with the verdict its ack carried.
    for p in schedule.all() {
        let id = ProofId::of(p);
        let v = crash_acks.get(&id).copied();
        assert!(v.is_some(), "proof {id} never acked");
        assert_eq!(v, clean_acks.get(&id).copied(), "proof {id}");
        assert_eq!(
            b.proofs.get(&id).map(|x| x.1),
            v,
            "acked proof {id} not stored as acked"
        );
    }
    assert_eq!(a.proofs, b.proofs, "stored proofs differ");
    let accepted = b
        .proofs
        .values()
        .filter(|x| x.1 == Verdict::Accepted)
        .count();
    let by_verdict = b.proofs.values().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(format!("{:?} {:?}", x.0, x.1)).or_insert(0) += 1;
        m
    });
    assert_eq!(
        accepted,
        schedule.all().count(),
        "every proof of the schedule is honest: {by_verdict:?}"
    );
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (epoch, (closed, rewards, pages)) in &a.epochs {
        let (closed_b, rewards_b, pages_b) = &b.epochs[epoch];
        if *epoch < EPOCHS {
            assert!(closed.is_some(), "epoch {epoch} not closed");
            assert_eq!(
                rewards.iter().map(|e| e.amount).sum::<u64>(),
                1_000_000_000,
                "epoch {epoch} pays its emission"
            );
        }
        assert_eq!(closed, closed_b, "epoch {epoch} closed at a different time");
        assert_eq!(rewards, rewards_b, "epoch {epoch}: rewards differ");
        assert_eq!(pages, pages_b, "epoch {epoch}: signed manifests differ");
    }
    println!(
        "{} kills and crashes over {EPOCHS} epochs; {} proofs; rewards per epoch: {:?}",
        crashing.kills,
        b.proofs.len(),
        b.epochs
            .iter()
            .map(|(e, (_, r, _))| (*e, r.len()))
            .collect::<Vec<_>>()
    );
    assert!(crashing.kills >= EPOCHS as u32 * 2 + 3);
}

#[test]
fn repeated_sigkill_in_ingest_and_close_gives_the_rewards_of_a_run_without_crashes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clean = Storage::sqlite(&dir.path().join("clean"));
    let crash = Storage::sqlite(&dir.path().join("crashing"));
    crash_run_equals_clean_run(&clean, &crash, dir.path());
}

#[test]
#[ignore = "needs PostgreSQL: WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test'"]
fn postgres_repeated_sigkill_in_ingest_and_close_gives_the_rewards_of_a_run_without_crashes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clean = Storage::postgres();
    let crash = Storage::postgres();
    crash_run_equals_clean_run(&clean, &crash, dir.path());
}
