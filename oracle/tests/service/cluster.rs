//! Three oracle processes on one PostgreSQL database and one Mosquitto: the holder of the
//! leader lease judges and closes epochs, the others stand by and verify the proofs the
//! broker's shared subscription hands them, for the leader to judge. The leader is SIGKILLed in the
//! middle of an epoch, again just as an epoch closes, and paused past its lease (it must stop
//! when it resumes, writing nothing); every proof is acked and stored once, every epoch closed
//! once, and the rewards and signed manifests equal, byte for byte, those of one oracle that
//! ran the same schedule on SQLite without a crash. `.ci/run` sets `WISP_TEST_POSTGRES` and
//! `WISP_TEST_MOSQUITTO`; without them the test fails, naming them.

use super::crash::{
    EPOCH_MS, EPOCHS, Outcome, Run, STEP_MS, Schedule, Storage, T0, outcome_of, run_schedule,
};
use super::*;

/// The lease of these tests, seconds: short, so that takeovers are quick.
pub(super) const LEASE_S: f64 = 1.5;

/// The processes of one cluster.
pub(super) struct Cluster<'a> {
    dirs: Vec<PathBuf>,
    pub(super) names: Vec<String>,
    pub(super) procs: Vec<Option<Oracle>>,
    clock: PathBuf,
    port: u16,
    url: String,
    storage: &'a Storage,
    /// More settings for every process, as environment variables.
    pub(super) extra: Vec<(String, String)>,
}

impl<'a> Cluster<'a> {
    pub(super) fn new(
        root: &Path,
        key: &NodeKey,
        storage: &'a Storage,
        mosquitto: &str,
    ) -> Cluster<'a> {
        let port: u16 = mosquitto
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("WISP_TEST_MOSQUITTO is host:port");
        // Names of their own: a broker keeps each name's session (and what it queued) across
        // runs, and the lease names its holder.
        let run = format!("{}-{}", std::process::id(), wall_ms());
        let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("oracle-{i}"))).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            wisp_shell::keyfile::save_new(&d.join("oracle.key"), key).unwrap();
        }
        let clock = root.join("clock");
        std::fs::write(&clock, T0.to_string()).unwrap();
        Cluster {
            names: (0..3).map(|i| format!("o{i}-{run}")).collect(),
            procs: (0..3).map(|_| None).collect(),
            dirs,
            clock,
            port,
            url: format!("mqtt://{mosquitto}"),
            storage,
            // A share group of this run's own: dead sessions other runs left in a group on
            // the shared broker would take their share of this run's proofs.
            extra: vec![("WISP_CLUSTER__SHARE_GROUP".into(), format!("test-{run}"))],
        }
    }

    /// Each process's broker client id (`wisp-oracle-<cluster.name>`).
    pub(super) fn client_id(&self, i: usize) -> String {
        format!("wisp-oracle-{}", self.names[i])
    }

    pub(super) fn start(&mut self, i: usize) {
        let mut env: Vec<(String, String)> = [
            ("WISP_ORACLE_CLOCK_FILE", self.clock.display().to_string()),
            ("WISP_EPOCH__DURATION_S", (EPOCH_MS / 1000).to_string()),
            (
                "WISP_EPOCH__SETTLE_S",
                format!("{}", super::crash::SETTLE_MS as f64 / 1000.0),
            ),
            ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "1".into()),
            ("WISP_INGEST__BURST", "100000".into()),
            ("WISP_CLUSTER__ENABLED", "true".into()),
            ("WISP_CLUSTER__NAME", self.names[i].clone()),
            ("WISP_CLUSTER__LEASE_S", LEASE_S.to_string()),
            // The default rules, with one carrier allowed (its reports go through a standby
            // in the grants' test).
            ("WISP_RULES__PERMISSIONLESS", "true".into()),
            (
                "WISP_RULES__USAGE_CARRIERS",
                format!("[\"{}\"]", carrier().id()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.storage.env());
        env.extend(self.extra.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.procs[i] = Some(Oracle::spawn_with(
            &self.dirs[i],
            self.port,
            &["--broker", &self.url],
            &env,
        ));
    }

    /// The roles the running processes report, by index.
    pub(super) fn roles(&self, skip: Option<usize>) -> BTreeMap<usize, String> {
        self.procs
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .filter_map(|(i, o)| {
                let role = o.as_ref()?.get("/v1/status")["role"].as_str()?.to_string();
                Some((i, role))
            })
            .collect()
    }

    /// Waits for exactly one leader among the running processes (`skip`: one that is paused,
    /// whose API cannot answer), and returns it.
    pub(super) fn await_leader(&self, skip: Option<usize>) -> usize {
        let mut leader = None;
        assert!(
            wait_for(Duration::from_secs(30), || {
                let roles = self.roles(skip);
                let leaders: Vec<usize> = roles
                    .iter()
                    .filter(|(_, r)| r.as_str() == "leader")
                    .map(|(i, _)| *i)
                    .collect();
                leader = (leaders.len() == 1).then(|| leaders[0]);
                leader.is_some()
            }),
            "no single leader: {:?}",
            self.roles(skip)
        );
        leader.unwrap()
    }

    pub(super) fn kill(&mut self, i: usize) {
        self.procs[i].take().unwrap().kill9();
    }

    fn set_clock(&self, t: u64) {
        let tmp = self.clock.with_extension("tmp");
        std::fs::write(&tmp, t.to_string()).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    /// Any running process: every one serves the stored epochs.
    fn any(&self) -> &Oracle {
        self.procs.iter().flatten().next().unwrap()
    }
}

/// The broker keeps a persistent session, and its place in the proofs' share group, for every
/// client id a test's process used: on a broker kept across runs, a dead one would take its
/// share of a later test's proofs. Each is ended with a clean session once its process is gone.
impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for p in &mut self.procs {
            drop(p.take());
        }
        for i in 0..self.names.len() {
            forget_session(self.port, &self.client_id(i));
        }
    }
}

/// Ends the broker's session of `client_id`: a clean-session connection under it.
pub(super) fn forget_session(port: u16, client_id: &str) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(true);
    let (client, mut conn) = rumqttc::Client::new(o, 10);
    for ev in conn.iter().take(20) {
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.disconnect();
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends every proof not acked yet until all are (resends reach whichever process leads).
fn deliver(c: &Client, proofs: &[(&NodeKey, &Vec<u8>)]) {
    assert!(
        wait_for(Duration::from_secs(60), || {
            for (k, p) in proofs {
                if c.verdict(&ProofId::of(p)).is_none() {
                    c.send(k, p);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            proofs
                .iter()
                .all(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        }),
        "some proofs were never acked"
    );
}

pub(super) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Runs the schedule on the cluster with its leader killed and paused. Returns the acks seen.
fn cluster_schedule(
    cluster: &mut Cluster<'_>,
    key: &NodeKey,
    s: &Schedule,
) -> BTreeMap<ProofId, Verdict> {
    // A broker kept from earlier runs may hold an older retained seed of this same key.
    clear_retained(cluster.port, topics::EPOCH);
    for i in 0..3 {
        cluster.start(i);
    }
    let first = cluster.await_leader(None);
    let roles = cluster.roles(None);
    assert_eq!(
        roles.values().filter(|r| r.as_str() == "standby").count(),
        2,
        "{roles:?}"
    );
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(cluster.port, key, &refs);
    let onboards: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).collect();
    deliver(&c, &onboards);
    let per_epoch = EPOCH_MS / STEP_MS;
    let mut takeovers = Vec::new();
    for k in 0..=EPOCHS * per_epoch + 1 {
        let t = T0 + k * STEP_MS;
        let closing = (k > 1 && (k - 1) % per_epoch == 0).then(|| (k - 1) / per_epoch - 1);
        cluster.set_clock(t);
        if closing == Some(1) {
            // Killed as the close begins (within the next clock reading, 100 ms): before,
            // during or just after its transaction; the next leader closes it, once.
            let leader = cluster.await_leader(None);
            std::thread::sleep(Duration::from_millis(60));
            let at = Instant::now();
            cluster.kill(leader);
            let next = cluster.await_leader(None);
            takeovers.push(("mid-close SIGKILL", at.elapsed()));
            assert_ne!(next, leader);
            cluster.start(leader);
        }
        if let Some(epoch) = closing {
            assert!(
                wait_for(Duration::from_secs(30), || cluster
                    .any()
                    .get(&format!("/v1/epochs/{epoch}/rewards"))["entries"]
                    .is_array()),
                "epoch {epoch} did not close"
            );
        }
        let current = k / per_epoch;
        assert!(
            wait_for(Duration::from_secs(30), || c.seed().epoch >= current),
            "epoch {current} did not open"
        );
        let Some(step) = s.steps.get(k as usize) else {
            continue;
        };
        let proofs: Vec<(&NodeKey, &Vec<u8>)> =
            step.iter().map(|(i, p)| (&s.nodes[*i], p)).collect();
        if k == per_epoch + 4 {
            // Mid-epoch: proofs in flight when the leader dies.
            for (n, p) in &proofs {
                c.send(n, p);
            }
            let leader = cluster.await_leader(None);
            let at = Instant::now();
            cluster.kill(leader);
            cluster.await_leader(None);
            takeovers.push(("mid-epoch SIGKILL", at.elapsed()));
            cluster.start(leader);
        }
        if k == 2 * per_epoch + 4 {
            // Paused past its lease: another takes over; resumed, the old leader must stop
            // without writing (its store is fenced, its lease gone).
            let leader = cluster.await_leader(None);
            let child = &cluster.procs[leader].as_ref().unwrap().child;
            signal(child, "-STOP");
            let at = Instant::now();
            let next = cluster.await_leader(Some(leader));
            takeovers.push(("paused (SIGSTOP)", at.elapsed()));
            assert_ne!(next, leader);
            for (n, p) in &proofs {
                c.send(n, p);
            }
            std::thread::sleep(Duration::from_millis(300));
            let o = cluster.procs[leader].as_mut().unwrap();
            signal(&o.child, "-CONT");
            let mut status = None;
            assert!(
                wait_for(Duration::from_secs(15), || {
                    status = o.child.try_wait().unwrap();
                    status.is_some()
                }),
                "the old leader went on after it resumed"
            );
            assert!(!status.unwrap().success(), "the old leader stopped cleanly");
            cluster.procs[leader] = None;
            cluster.start(leader);
        }
        deliver(&c, &proofs);
    }
    let lease = Duration::from_secs_f64(LEASE_S);
    println!("first leader: {first}; takeovers: {takeovers:?} (lease {lease:?})");
    for (what, took) in &takeovers {
        // A standby tries every third of the lease; the rest is the poll of the roles and the
        // new leader's start (rebuild, broker).
        assert!(
            *took <= lease * 2 + Duration::from_secs(5),
            "{what}: the takeover took {took:?}"
        );
    }
    // The broker shared the proofs out: the standbys verified some and handed them over.
    let handed: u64 = cluster
        .procs
        .iter()
        .flatten()
        .map(|o| o.counter("wisp_oracle_handed_total"))
        .sum();
    let taken: u64 = cluster
        .procs
        .iter()
        .flatten()
        .map(|o| o.counter("wisp_oracle_taken_total"))
        .sum();
    println!(
        "since the last restarts: {handed} proofs handed over by standbys, {taken} taken by the leader"
    );
    assert!(handed > 0 && taken > 0, "handed {handed}, taken {taken}");
    // Every process lists the nodes as the leader does: the standbys follow its commits (each
    // list is refreshed every second, so both are read again until they agree).
    let leader = cluster.await_leader(None);
    let nodes = |i: usize| cluster.procs[i].as_ref().unwrap().get("/v1/nodes");
    for i in (0..3).filter(|i| *i != leader) {
        let (mut got, mut want) = (serde_json::Value::Null, serde_json::Value::Null);
        assert!(
            wait_for(Duration::from_secs(10), || {
                (got, want) = (nodes(i), nodes(leader));
                got == want && want.as_array().map(Vec::len) == Some(s.nodes.len())
            }),
            "standby {i} lists {got}, the leader {want}"
        );
    }
    let acks = c.acks.lock().unwrap().clone();
    for i in 0..3 {
        if cluster.procs[i].is_some() {
            cluster.kill(i);
        }
    }
    acks
}

/// Deletes a retained message (an empty retained publish) on the broker at `port`.
pub(super) fn clear_retained(port: u16, topic: &str) {
    let mut o = MqttOptions::new(format!("test-clear-{}", free_port()), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = rumqttc::Client::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, Vec::new())
        .unwrap();
    for ev in conn.iter().take(20) {
        if matches!(ev, Ok(Event::Incoming(Packet::PubAck(_)))) {
            return;
        }
        assert!(ev.is_ok(), "clearing {topic}: {ev:?}");
    }
    panic!("no PUBACK clearing {topic}");
}

#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_three_oracles_on_one_broker_one_leader_killed_and_paused_pay_as_one_oracle() {
    let _serial = serial();
    let mosquitto = std::env::var("WISP_TEST_MOSQUITTO").unwrap_or_else(|_| {
        panic!("set WISP_TEST_MOSQUITTO to a Mosquitto address, e.g. 127.0.0.1:1883 (.ci/run starts one)")
    });
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[42; 32]);
    let schedule = Schedule::new(24);

    let clean_storage = Storage::sqlite(&dir.path().join("clean"));
    let mut clean = Run::new(&dir.path().join("clean"), &key, &clean_storage);
    let clean_acks = run_schedule(&mut clean, &key, &schedule, None);

    let storage = Storage::postgres();
    let mut cluster = Cluster::new(&dir.path().join("cluster"), &key, &storage, &mosquitto);
    let acks = cluster_schedule(&mut cluster, &key, &schedule);

    let a: Outcome = outcome_of(&clean_storage);
    let b: Outcome = outcome_of(&storage);
    for p in schedule.all() {
        let id = ProofId::of(p);
        assert_eq!(acks.get(&id), clean_acks.get(&id), "proof {id}");
        assert_eq!(acks.get(&id), Some(&Verdict::Accepted), "proof {id}");
        assert_eq!(b.proofs.get(&id).map(|x| x.1), Some(Verdict::Accepted));
    }
    // `outcome_of` refuses a proof stored twice.
    assert_eq!(a.proofs, b.proofs, "stored proofs differ");
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (epoch, (closed, rewards, pages)) in &a.epochs {
        let (closed_b, rewards_b, pages_b) = &b.epochs[epoch];
        if *epoch < EPOCHS {
            assert!(closed_b.is_some(), "epoch {epoch} not closed");
        }
        assert_eq!(closed, closed_b, "epoch {epoch} closed at a different time");
        assert_eq!(rewards, rewards_b, "epoch {epoch}: rewards differ");
        assert_eq!(pages, pages_b, "epoch {epoch}: signed manifests differ");
    }
    // The lease moved on at each takeover: three takeovers after the first leader.
    let lease = block_on(async { storage.open().await.lease().await.unwrap().unwrap() });
    assert!(lease.token >= 4, "{lease:?}");
    println!(
        "{} proofs, {} epochs, lease token {}",
        b.proofs.len(),
        b.epochs.len(),
        lease.token
    );
}

/// POSTs `body` to `o`'s API: the status and the JSON answer.
fn post(o: &Oracle, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = std::fs::read_to_string(o.data.join("http.addr")).unwrap();
    let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = r.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap_or(body.into()))
}

/// An operator's grant of `amount_dc` to `subscriber`, grant id `id`, signed by `by`.
fn grant(by: &NodeKey, id: u8, subscriber: &NodeKey, amount_dc: u64) -> Vec<u8> {
    let g = wisp_protocol::msg::CreditGrant {
        grant: [id; 16].into(),
        subscriber: wisp_protocol::SubscriberId::of(subscriber),
        amount_dc,
        issued_ms: T0,
        memo: "cluster".into(),
    };
    Envelope::sign(by, &g).to_bytes()
}

/// The carrier the cluster's oracles allow.
fn carrier() -> NodeKey {
    NodeKey::from_seed(&[46; 32])
}

/// A report by `by` naming itself as carrier, in `epoch`, of a session on a hotspot that never
/// onboarded.
fn report(by: &NodeKey, epoch: u64) -> Vec<u8> {
    let r = wisp_protocol::msg::CarrierReport {
        session: [0xca; 16].into(),
        hotspot: NodeKey::from_seed(&[47; 32]).id(),
        carrier: by.id(),
        epoch,
        seq: 1,
        bytes_down: 1 << 20,
        bytes_up: 0,
        signed_ms: T0,
        start_ms: None,
    };
    Envelope::sign(by, &r).to_bytes()
}

/// A grant posted to a standby is checked there, handed to the leader through the database's
/// intake, judged and stored once by the leader, and answered by the standby once committed:
/// accepted with the new balance, then a duplicate, then another envelope with its id refused;
/// a stranger's grant is refused by the standby itself and never reaches the leader. A carrier
/// report goes the same way (judged by the leader, stored once, a resend a duplicate), and one
/// by a key off the allow-list is refused by the standby.
#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_a_standby_hands_a_credit_grant_to_the_leader_and_answers_once_committed() {
    let _serial = serial();
    let mosquitto = std::env::var("WISP_TEST_MOSQUITTO").unwrap_or_else(|_| {
        panic!("set WISP_TEST_MOSQUITTO to a Mosquitto address, e.g. 127.0.0.1:1883 (.ci/run starts one)")
    });
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[43; 32]);
    let storage = Storage::postgres();
    let mut cluster = Cluster::new(dir.path(), &key, &storage, &mosquitto);
    cluster.start(0);
    let leader = cluster.await_leader(None);
    cluster.start(1);
    let standby = 1 - leader;
    assert!(
        wait_for(Duration::from_secs(30), || cluster
            .roles(None)
            .get(&standby)
            == Some(&"standby".to_string())),
        "{:?}",
        cluster.roles(None)
    );
    let (lead, stand) = (
        cluster.procs[leader].as_ref().unwrap(),
        cluster.procs[standby].as_ref().unwrap(),
    );
    let sub = NodeKey::from_seed(&[44; 32]);
    let path = format!("/v1/subscribers/{}", wisp_protocol::SubscriberId::of(&sub));
    // The standby knows the oracle's key once its follower has run.
    assert!(wait_for(Duration::from_secs(10), || {
        stand.get("/v1/status")["oracle"] == key.id().to_string()
    }));

    let first = grant(&key, 1, &sub, 500);
    let (code, answer) = post(stand, "/v1/credits", &first);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (
            &answer["verdict"],
            &answer["duplicate"],
            &answer["balance_dc"]
        ),
        (&"accepted".into(), &false.into(), &500.into()),
        "{answer}"
    );
    assert_eq!(lead.get(&path)["balance_dc"], 500);
    assert!(stand.counter("wisp_oracle_handed_total") >= 1);
    assert!(lead.counter("wisp_oracle_taken_total") >= 1);

    // The same envelope again: stored already, nothing more credited.
    let (code, answer) = post(stand, "/v1/credits", &first);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (&answer["duplicate"], &answer["balance_dc"]),
        (&true.into(), &500.into()),
        "{answer}"
    );
    // Another envelope with the same grant id: judged by the leader, refused.
    let (code, answer) = post(stand, "/v1/credits", &grant(&key, 1, &sub, 900));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (&answer["verdict"], &answer["reason"], &answer["balance_dc"]),
        (
            &"rejected".into(),
            &Reason::UsageGrantReused.name().into(),
            &500.into()
        ),
        "{answer}"
    );
    // A grant signed by another key is refused by the standby: nothing handed over.
    let handed = stand.counter("wisp_oracle_handed_total");
    let stranger = NodeKey::from_seed(&[45; 32]);
    let (code, answer) = post(stand, "/v1/credits", &grant(&stranger, 2, &sub, 700));
    assert_eq!(code, 400, "{answer}");
    assert_eq!(stand.counter("wisp_oracle_handed_total"), handed);
    // The leader takes grants itself as before.
    let (code, answer) = post(lead, "/v1/credits", &grant(&key, 3, &sub, 25));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["balance_dc"], 525, "{answer}");
    assert!(wait_for(
        Duration::from_secs(10),
        || stand.get(&path)["balance_dc"] == 525
    ));

    // A carrier's report through the standby: handed over, judged by the leader (its hotspot
    // never onboarded), stored once.
    let epoch = lead.get("/v1/status")["epoch"].as_u64().unwrap();
    let first = report(&carrier(), epoch);
    let (code, answer) = post(stand, "/v1/usage/carrier", &first);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (&answer["verdict"], &answer["reason"], &answer["duplicate"]),
        (
            &"rejected".into(),
            &Reason::UnknownNode.name().into(),
            &false.into()
        ),
        "{answer}"
    );
    assert_eq!(answer["subscriber"], carrier().id().to_string(), "{answer}");
    let (code, answer) = post(stand, "/v1/usage/carrier", &first);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["duplicate"], true, "{answer}");
    // Off the allow-list: refused by the standby, nothing handed over.
    let handed = stand.counter("wisp_oracle_handed_total");
    let stranger = NodeKey::from_seed(&[48; 32]);
    let (code, answer) = post(stand, "/v1/usage/carrier", &report(&stranger, epoch));
    assert_eq!(code, 403, "{answer}");
    assert_eq!(answer["reason"], "usage_carrier_unknown", "{answer}");
    assert_eq!(stand.counter("wisp_oracle_handed_total"), handed);
    for i in [0, 1] {
        cluster.kill(i);
    }

    // Stored once each: the accepted grant, the refused one, the leader's own.
    let grants: Vec<Verdict> = block_on(async {
        let mut store = storage.open().await;
        let mut v = Vec::new();
        store
            .for_each_row(|r| {
                if r.kind == Kind::CreditGrant {
                    v.push(r.verdict);
                }
            })
            .await
            .unwrap();
        v
    });
    assert_eq!(
        grants,
        [
            Verdict::Accepted,
            Verdict::Rejected(Reason::UsageGrantReused),
            Verdict::Accepted
        ]
    );
    let reports: usize = block_on(async {
        let mut store = storage.open().await;
        let mut n = 0;
        store
            .for_each_row(|r| n += usize::from(r.kind == Kind::CarrierReport))
            .await
            .unwrap();
        n
    });
    assert_eq!(reports, 1);
}
