//! A cluster's processes and the broker's share group (`oracle/src/service/members.rs`): a
//! process stopped with SIGTERM leaves the group first, so no proof waits in its session; the
//! session of one SIGKILLed is reaped by the leader after `cluster.reap_after_s`, which judges
//! what the broker queued there. In both, every proof is sent once (no agent resend) and must be
//! acked. Real PostgreSQL and Mosquitto, as `cluster.rs`: `WISP_TEST_POSTGRES`,
//! `WISP_TEST_MOSQUITTO`; without them the tests fail, naming them.

use super::cluster::{Cluster, LEASE_S, clear_retained, signal};
use super::crash::{Schedule, Storage};
use super::*;

/// Reaping in these tests: twice the lease (members are seen every third of it).
const REAP_AFTER_S: f64 = 3.0;

fn mosquitto() -> String {
    std::env::var("WISP_TEST_MOSQUITTO").unwrap_or_else(|_| {
        panic!("set WISP_TEST_MOSQUITTO to a Mosquitto address, e.g. 127.0.0.1:1883 (.ci/run starts one)")
    })
}

/// The members as the database lists them: name → (state, ms unseen).
fn members(storage: &Storage) -> BTreeMap<String, (String, i64)> {
    block_on(async {
        storage
            .open()
            .await
            .members()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.member.name, (r.state, r.unseen_ms)))
            .collect()
    })
}

/// Two processes of a fresh cluster, both live members, the first leading; a client of
/// `nodes` connected. Returns the leader's index.
fn two_members(cluster: &mut Cluster<'_>, storage: &Storage, port: u16) -> usize {
    clear_retained(port, topics::EPOCH);
    cluster.start(0);
    let leader = cluster.await_leader(None);
    cluster.start(1);
    assert!(
        wait_for(Duration::from_secs(30), || {
            let m = members(storage);
            m.len() == 2 && m.values().all(|(state, _)| state == "live")
        }),
        "not both live members: {:?}",
        members(storage)
    );
    assert!(
        wait_for(Duration::from_secs(30), || cluster.roles(None).len() == 2),
        "{:?}",
        cluster.roles(None)
    );
    leader
}

/// Sends each proof once and waits for all their acks; the time it took.
fn send_once_and_await(c: &Client, proofs: &[(&NodeKey, &Vec<u8>)], within: Duration) -> Duration {
    let at = Instant::now();
    for (k, p) in proofs {
        c.send(k, p);
    }
    let acked = || {
        proofs
            .iter()
            .filter(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
            .count()
    };
    assert!(
        wait_for(within, || acked() == proofs.len()),
        "{} of {} proofs acked within {within:?} of being sent once",
        acked(),
        proofs.len()
    );
    at.elapsed()
}

/// The leader is stopped with SIGTERM while a standby runs: it leaves the share group before
/// it disconnects (the member row says `left`), exits cleanly, the standby takes over, and every
/// proof sent once afterwards is judged and acked promptly — none waits in the stopped
/// process's session (with it still in the group, Mosquitto would queue about half for it).
#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_cluster_a_member_stopped_with_sigterm_leaves_the_share_group_and_no_proof_waits_for_it()
{
    let _serial = serial();
    let mosquitto = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[50; 32]);
    let storage = Storage::postgres();
    let mut cluster = Cluster::new(dir.path(), &key, &storage, &mosquitto);
    let port = cluster_port(&mosquitto);
    let leader = two_members(&mut cluster, &storage, port);
    let standby = 1 - leader;
    let s = Schedule::new(40);
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(port, &key, &refs);

    let stopping = Instant::now();
    let mut o = cluster.procs[leader].take().unwrap();
    signal(&o.child, "-TERM");
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            status = o.child.try_wait().unwrap();
            status.is_some()
        }),
        "the leader did not stop on SIGTERM"
    );
    assert!(status.unwrap().success(), "{status:?}");
    let stopped = stopping.elapsed();
    assert_eq!(cluster.await_leader(None), standby);

    let proofs: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).collect();
    let took = send_once_and_await(&c, &proofs, Duration::from_secs(15));
    println!(
        "stopped (left the share group) in {stopped:?}; {} proofs sent once, all acked in {took:?}",
        proofs.len()
    );
    // The standby, not a leftover session, got them all.
    assert!(
        proofs
            .iter()
            .all(|(_, p)| c.verdict(&ProofId::of(p)) == Some(Verdict::Accepted))
    );
    let name = &cluster.names[leader];
    assert_eq!(members(&storage)[name].0, "left", "{:?}", members(&storage));
    assert_eq!(members(&storage)[&cluster.names[standby]].0, "live");
}

/// The broker's port in `host:port`.
fn cluster_port(mosquitto: &str) -> u16 {
    mosquitto
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("WISP_TEST_MOSQUITTO is host:port")
}

/// A member is SIGKILLed (the standby, or the leader: then the standby takes the lease over
/// first); proofs are sent once, and Mosquitto queues some of them in the dead member's
/// session. Once it has been unseen for `cluster.reap_after_s`, the (new) leader takes the
/// session over: every proof is judged and acked with no resend, the dead member is `reaped`,
/// and proofs sent afterwards all reach the live process at once.
fn a_killed_members_queued_proofs_are_reaped(kill_leader: bool, seed: u8) {
    let _serial = serial();
    let mosquitto = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[seed; 32]);
    let storage = Storage::postgres();
    let mut cluster = Cluster::new(dir.path(), &key, &storage, &mosquitto);
    cluster.extra.push((
        "WISP_CLUSTER__REAP_AFTER_S".into(),
        REAP_AFTER_S.to_string(),
    ));
    let port = cluster_port(&mosquitto);
    let leader = two_members(&mut cluster, &storage, port);
    let dead = if kill_leader { leader } else { 1 - leader };
    let live = 1 - dead;
    let s = Schedule::new(60);
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(port, &key, &refs);

    let killed = Instant::now();
    cluster.kill(dead);
    let proofs: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).take(40).collect();
    for (k, p) in &proofs {
        c.send(k, p);
    }
    // Before the reap: the live process has judged its share, the dead session holds the rest.
    std::thread::sleep(Duration::from_secs_f64(LEASE_S));
    let early = proofs
        .iter()
        .filter(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
        .count();
    if !kill_leader {
        assert!(
            early < proofs.len(),
            "every proof was acked before any reap: none was queued for the dead member"
        );
    }
    let acked = || {
        proofs
            .iter()
            .filter(|(_, p)| c.verdict(&ProofId::of(p)).is_some())
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(60), || acked() == proofs.len()),
        "{} of {} proofs acked after the reap",
        acked(),
        proofs.len()
    );
    let all_acked = killed.elapsed();
    assert_eq!(cluster.await_leader(None), live);
    // Some were queued in the dead session, and taken from it.
    let reaped = cluster.procs[live]
        .as_ref()
        .unwrap()
        .counter("wisp_oracle_reaped_total");
    assert!(
        reaped > 0,
        "nothing was taken from the dead member's session"
    );
    let name = &cluster.names[dead];
    assert!(
        wait_for(Duration::from_secs(10), || members(&storage)[name].0
            == "reaped"),
        "{:?}",
        members(&storage)
    );
    // The dead session is out of the share group: what is sent now all reaches the live one.
    let after: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).skip(40).collect();
    let took = send_once_and_await(&c, &after, Duration::from_secs(10));
    println!(
        "killed the {}: {early} of {} acked before the reap, {reaped} taken from its session, \
         all acked {} s after the kill (reap_after_s {REAP_AFTER_S}, lease {LEASE_S} s); \
         {} more sent once after it, acked in {took:?}",
        if kill_leader { "leader" } else { "standby" },
        proofs.len(),
        all_acked.as_secs_f64(),
        after.len()
    );
    assert!(
        proofs
            .iter()
            .chain(&after)
            .all(|(_, p)| c.verdict(&ProofId::of(p)) == Some(Verdict::Accepted))
    );
}

#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_cluster_a_killed_standbys_queued_proofs_are_reaped_and_judged_without_resends() {
    a_killed_members_queued_proofs_are_reaped(false, 51);
}

#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_cluster_a_killed_leaders_queued_proofs_are_reaped_and_judged_without_resends() {
    a_killed_members_queued_proofs_are_reaped(true, 52);
}

/// The last live member stopped with SIGTERM keeps its place in the share group (it stays
/// `live`): the broker queues the proofs sent while it is down, and when it comes back under
/// its name it judges and acks them all, with no resend.
#[test]
#[ignore = "needs PostgreSQL and Mosquitto: WISP_TEST_POSTGRES, WISP_TEST_MOSQUITTO (.ci/run sets them)"]
fn postgres_cluster_the_last_member_stopped_keeps_its_place_and_the_broker_queues_for_it() {
    let _serial = serial();
    let mosquitto = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[53; 32]);
    let storage = Storage::postgres();
    let mut cluster = Cluster::new(dir.path(), &key, &storage, &mosquitto);
    let port = cluster_port(&mosquitto);
    clear_retained(port, topics::EPOCH);
    cluster.start(0);
    assert_eq!(cluster.await_leader(None), 0);
    let s = Schedule::new(20);
    let refs: Vec<&NodeKey> = s.nodes.iter().collect();
    let c = Client::connect(port, &key, &refs);

    let mut o = cluster.procs[0].take().unwrap();
    signal(&o.child, "-TERM");
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            status = o.child.try_wait().unwrap();
            status.is_some()
        }),
        "the oracle did not stop on SIGTERM"
    );
    assert!(status.unwrap().success(), "{status:?}");
    assert_eq!(members(&storage)[&cluster.names[0]].0, "live");
    let proofs: Vec<(&NodeKey, &Vec<u8>)> = s.nodes.iter().zip(&s.onboards).collect();
    for (k, p) in &proofs {
        c.send(k, p);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        proofs
            .iter()
            .all(|(_, p)| c.verdict(&ProofId::of(p)).is_none())
    );
    let back = Instant::now();
    cluster.start(0);
    assert!(
        wait_for(Duration::from_secs(30), || proofs.iter().all(|(_, p)| c
            .verdict(&ProofId::of(p))
            == Some(Verdict::Accepted))),
        "the proofs queued while the last member was down were not all acked once it was back: {:?}",
        proofs
            .iter()
            .map(|(_, p)| c.verdict(&ProofId::of(p)))
            .collect::<Vec<_>>()
    );
    println!(
        "{} proofs queued while the only member was down, all acked {:?} after its restart",
        proofs.len(),
        back.elapsed()
    );
}
