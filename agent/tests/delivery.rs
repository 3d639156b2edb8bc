//! The agent with real parts: the real binary, an embedded MQTT broker (rumqttd), a test oracle
//! that signs real acks, real SQLite on disk, real sockets.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::*;
use rand_chacha::rand_core::{Rng, SeedableRng};
use wisp_protocol::msg::{Ack, AckEntry, Verdict, seal_acks};
use wisp_protocol::{NodeKey, ProofId, topics};

fn node_id(data_dir: &std::path::Path) -> wisp_protocol::NodeId {
    wisp_shell::keyfile::load(&data_dir.join("node.key"))
        .unwrap()
        .id()
}

#[test]
fn heartbeats_flow_acks_empty_the_outbox_and_forgeries_are_refused() {
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 100);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env(dir.path(), broker, &oracle.key);
    let agent = Agent::spawn(dir.path(), &env);

    assert!(
        wait_for(Duration::from_secs(20), || agent
            .metric("wisp_proofs_accepted_total")
            >= 10.0),
        "acks never came"
    );
    let status = agent.status();
    assert_eq!(status["epoch"], 1);
    assert_eq!(status["broker_connected"], true);
    assert!(status["outbox_depth"].as_u64().unwrap() <= 3, "{status}");
    assert_eq!(agent.get("/readyz").0, 200);
    assert_eq!(agent.get("/healthz").0, 200);
    // .ci/run checks the live exposition with `promtool check metrics`.
    if let Ok(path) = std::env::var("WISP_METRICS_DUMP") {
        std::fs::write(path, agent.get("/metrics").1).unwrap();
    }

    // A seed for epoch 2 signed by someone else: refused and counted, the epoch stays 1.
    let forger = NodeKey::from_seed(&[0x66; 32]);
    oracle.publish(
        topics::EPOCH,
        false,
        seed_envelope(&forger, 2, wisp_agent::wallclock::wall_ms(), 100),
    );
    assert!(wait_for(Duration::from_secs(10), || agent
        .metric("wisp_oracle_messages_refused_total")
        >= 1.0));
    assert_eq!(agent.status()["epoch"], 1);

    // A forged ack for a real pending proof id must not delete anything: stop the oracle from
    // acking by cutting nothing; instead forge an ack for an id and check the refusal count.
    let me = node_id(dir.path());
    let fake = Ack {
        node: me,
        issued_ms: 1,
        entries: vec![AckEntry {
            proof_id: ProofId::of(b"whatever"),
            verdict: Verdict::Accepted,
        }],
    };
    let before = agent.metric("wisp_oracle_messages_refused_total");
    oracle.publish(
        &topics::acks(&me),
        false,
        seal_acks(&forger, 1, &[fake]).remove(0),
    );
    assert!(wait_for(Duration::from_secs(10), || agent
        .metric("wisp_oracle_messages_refused_total")
        > before));

    // Every heartbeat the oracle saw is distinct, in sequence, from 1.
    let seen = oracle.seen.lock().unwrap();
    let seqs: Vec<u64> = seen.heartbeat_seqs.keys().copied().collect();
    assert_eq!(seqs[0], 1);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps in {seqs:?}"
    );
    assert_eq!(seen.invalid, 0);
    // Monitors see the retained status: online while running, offline after a clean stop.
    let status_topic = topics::status(&me);
    assert!(
        seen.status
            .get(&status_topic)
            .is_some_and(|s| s.contains("\"state\":\"online\"")),
        "{:?}",
        seen.status
    );
    drop(seen);
    assert!(agent.stop().success());
    assert!(wait_for(Duration::from_secs(10), || {
        oracle
            .seen
            .lock()
            .unwrap()
            .status
            .get(&status_topic)
            .is_some_and(|s| s.contains("\"state\":\"offline\""))
    }));
}

#[test]
fn a_rate_limited_proof_stays_in_the_outbox_and_is_resent_until_accepted() {
    use wisp_protocol::Reason;
    let broker = start_broker();
    // Each proof's first two copies are refused `rate_limited` (not judged now), the third is
    // accepted: only an agent that keeps a proof through a transient rejection and resends it
    // gets anything accepted.
    let oracle = TestOracle::start_with_verdicts(broker, 1_000, |_, copy| {
        if copy <= 2 {
            Verdict::Rejected(Reason::RateLimited)
        } else {
            Verdict::Accepted
        }
    });
    let dir = tempfile::tempdir().unwrap();
    // Acks time out after 2 s: the resends come 2 s, then 4 s (plus jitter) after a send.
    let env = agent_env(dir.path(), broker, &oracle.key);
    let agent = Agent::spawn(dir.path(), &env);
    assert!(
        wait_for(Duration::from_secs(60), || agent
            .metric("wisp_proofs_accepted_total")
            >= 3.0),
        "nothing accepted: deferred {}, rejected {}",
        agent.metric("wisp_proofs_deferred_total"),
        agent.metric("wisp_proofs_rejected_total")
    );
    let accepted = agent.metric("wisp_proofs_accepted_total");
    assert!(
        agent.metric("wisp_proofs_deferred_total{reason=\"rate_limited\"}") >= 2.0 * accepted,
        "{}",
        agent.get("/metrics").1
    );
    assert_eq!(agent.metric("wisp_proofs_rejected_total"), 0.0);
    assert!(agent.stop().success());

    // Every heartbeat signed is accounted for: still in the outbox, or delivered until the
    // oracle accepted it (a third copy). None was deleted on a `rate_limited` ack.
    let store =
        wisp_agent::store::Store::open(&dir.path().join(wisp_agent::store::FILE_NAME)).unwrap();
    let last = store.meta("heartbeat_seq").unwrap();
    let pending: Vec<ProofId> = store.load().unwrap().iter().map(|(r, _)| r.id).collect();
    let seen = oracle.seen.lock().unwrap();
    assert!(last >= 3, "{last}");
    let mut resent_to_acceptance = 0;
    let mut never_sent = 0;
    for seq in 1..=last {
        let Some(ids) = seen.heartbeat_seqs.get(&seq) else {
            // Signed and committed, not yet published when the agent stopped.
            never_sent += 1;
            continue;
        };
        assert_eq!(ids.len(), 1, "seq {seq} signed twice: {ids:?}");
        let copies = seen.proofs[&ids[0]];
        assert!(
            pending.contains(&ids[0]) || copies >= 3,
            "heartbeat {seq} left the outbox after {copies} copies, all refused rate_limited"
        );
        if copies >= 3 {
            resent_to_acceptance += 1;
        }
    }
    let pending_unseen = pending
        .iter()
        .filter(|id| !seen.proofs.contains_key(id))
        .count();
    assert!(
        pending_unseen >= never_sent,
        "{never_sent} signed heartbeats neither sent nor kept"
    );
    println!("{last} heartbeats signed, {resent_to_acceptance} accepted at their third copy");
    assert!(resent_to_acceptance >= 3);
}

#[test]
fn the_data_directory_and_the_outbox_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 200);
    let root = tempfile::tempdir().unwrap();
    // Neither the data directory nor its parent exists yet.
    let data = root.path().join("var/wisp");
    let env = agent_env(&data, broker, &oracle.key);
    let agent = Agent::spawn(&data, &env);
    // A proof committed and acked: the outbox log exists.
    assert!(wait_for(Duration::from_secs(20), || agent
        .metric("wisp_proofs_accepted_total")
        >= 1.0));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("var")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for f in [wisp_agent::store::FILE_NAME, "node.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert!(agent.stop().success());
}

#[test]
fn sigkill_at_random_moments_loses_no_signed_proof() {
    let broker = start_broker();
    // Heartbeats every 20 ms: 50 proofs/s to kill the agent in the middle of.
    let oracle = TestOracle::start(broker, 20);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env(dir.path(), broker, &oracle.key);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261128);
    const KILLS: usize = 20;
    for round in 0..KILLS {
        let agent = Agent::spawn(dir.path(), &env);
        let _ = agent.http_addr();
        let ms = 100 + rng.next_u64() % 600;
        std::thread::sleep(Duration::from_millis(ms));
        agent.kill9();
        println!("round {round}: SIGKILL after {ms} ms");
    }
    // A last run, long enough to deliver the backlog, then a clean stop.
    let agent = Agent::spawn(dir.path(), &env);
    assert!(
        wait_for(Duration::from_secs(60), || {
            let s = agent.status();
            s["broker_connected"] == true && s["outbox_depth"].as_u64() == Some(0)
                || s["outbox_depth"].as_u64().unwrap_or(9) <= 1
        }),
        "backlog never drained"
    );
    assert!(agent.stop().success());
    // Everything the agent committed (heartbeat seq 1..=last) reached the oracle: once per
    // sequence number (one proof id each), no gaps.
    let store =
        wisp_agent::store::Store::open(&dir.path().join(wisp_agent::store::FILE_NAME)).unwrap();
    let last = store.meta("heartbeat_seq").unwrap();
    let pending = store.load().unwrap().len();
    let seen = oracle.seen.lock().unwrap();
    let seqs: Vec<u64> = seen.heartbeat_seqs.keys().copied().collect();
    println!(
        "{} heartbeats committed, {} pending at the end, {} distinct proofs seen",
        last,
        pending,
        seen.proofs.len()
    );
    assert!(last > 50, "too few heartbeats to mean anything: {last}");
    let missing: Vec<u64> = (1..=last)
        .filter(|s| !seen.heartbeat_seqs.contains_key(s))
        .collect();
    // Proofs still pending at the stop were committed but their ack had not come back yet; they
    // are not lost (they are on disk), so they may be the only "missing" ones.
    assert!(missing.len() <= pending, "lost heartbeats: {missing:?}");
    for (seq, ids) in &seen.heartbeat_seqs {
        assert_eq!(
            ids.len(),
            1,
            "seq {seq} was signed twice with different content: {ids:?}"
        );
    }
    assert!(
        seqs.iter().all(|s| *s <= last),
        "the oracle saw a heartbeat that was never committed"
    );
    let dups: u32 = seen.proofs.values().map(|n| n - 1).sum();
    println!("duplicate deliveries collapsed by proof id: {dups}");
}

#[test]
fn broker_outage_backlog_drains_when_it_returns() {
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 50);
    let proxy = Proxy::start(broker);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env(dir.path(), proxy.port, &oracle.key);
    let agent = Agent::spawn(dir.path(), &env);
    assert!(wait_for(Duration::from_secs(20), || agent
        .metric("wisp_proofs_accepted_total")
        >= 5.0));

    proxy.set_down(true);
    assert!(
        wait_for(
            Duration::from_secs(20),
            || agent.status()["broker_connected"] == false
        ),
        "the agent never noticed"
    );
    // 20 heartbeats per second pile up while the broker is away.
    assert!(
        wait_for(Duration::from_secs(20), || agent
            .metric("wisp_outbox_entries")
            >= 40.0),
        "no backlog built up"
    );
    let backlog = agent.metric("wisp_outbox_entries");
    let accepted_before = agent.metric("wisp_proofs_accepted_total");
    println!("backlog during the outage: {backlog} proofs");

    proxy.set_down(false);
    assert!(
        wait_for(Duration::from_secs(60), || agent
            .metric("wisp_outbox_entries")
            <= 2.0),
        "the backlog did not drain: {}",
        agent.metric("wisp_outbox_entries")
    );
    assert!(agent.metric("wisp_proofs_accepted_total") >= accepted_before + backlog - 2.0);
    assert!(agent.metric("wisp_mqtt_connections_total") >= 2.0);
    assert!(agent.stop().success());
    // The backlog went out in signing order: the oracle first saw every heartbeat after the
    // ones signed before it.
    let arrivals = oracle.seen.lock().unwrap().heartbeat_arrivals.clone();
    assert!(
        arrivals.windows(2).all(|w| w[0] < w[1]),
        "heartbeats arrived out of order: {arrivals:?}"
    );
}

#[test]
fn a_restart_keeps_a_full_heartbeat_interval_after_the_last_heartbeat() {
    let broker = start_broker();
    let interval_ms = 10_000;
    let oracle = TestOracle::start(broker, interval_ms);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env(dir.path(), broker, &oracle.key);
    let sent = |seq: u64| {
        oracle
            .seen
            .lock()
            .unwrap()
            .heartbeat_sent
            .get(&seq)
            .copied()
    };
    let agent = Agent::spawn(dir.path(), &env);
    // The first heartbeat goes out as soon as the seed is known.
    assert!(
        wait_for(Duration::from_secs(20), || sent(1).is_some()),
        "no first heartbeat"
    );
    // A routine restart right after it.
    assert!(agent.stop().success());
    let agent = Agent::spawn(dir.path(), &env);
    assert!(
        wait_for(Duration::from_secs(30), || sent(2).is_some()),
        "no heartbeat after the restart"
    );
    let (first, second) = (sent(1).unwrap(), sent(2).unwrap());
    assert!(
        second >= first + u64::from(interval_ms),
        "signed {} ms after the last one, the interval is {interval_ms} ms",
        second - first
    );
    assert_eq!(agent.status()["heartbeat_seq"], 2);
    assert!(agent.stop().success());
}

#[test]
fn an_agent_whose_clock_is_30_s_ahead_stamps_its_proofs_with_the_oracles_time() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::msg::OracleClock;

    let broker = start_broker();
    // The oracle's clock is 30 s behind this machine's: to the agent, its own clock is 30 s
    // ahead. Every time below is on the oracle's clock.
    let behind = 30_000u64;
    let oracle_now = move || wisp_agent::wallclock::system_ms() - behind;
    let interval_ms = 2_000;
    let seed = seed_envelope(&oracle_key(), 1, oracle_now() - 60_000, interval_ms);
    let oracle = TestOracle::start_with_seed("127.0.0.1", broker, seed);
    let clock = |now_ms| {
        Envelope::sign(
            &oracle.key,
            &OracleClock {
                now_ms,
                interval_ms: 1_000,
            },
        )
        .to_bytes()
    };
    // The retained copy is 900 ms old, as it may be: no sample, but the agent waits for a live
    // one before it signs.
    oracle.publish(topics::CLOCK, true, clock(oracle_now() - 900));
    let stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                oracle.publish(topics::CLOCK, true, clock(oracle_now()));
            }
        });
        let env = agent_env(dir.path(), broker, &oracle.key);
        let started = oracle_now();
        let agent = Agent::spawn(dir.path(), &env);
        let arrived = || oracle.seen.lock().unwrap().heartbeat_sent.len();
        let ok = wait_for(Duration::from_secs(30), || arrived() >= 3);
        stop.store(true, Ordering::Relaxed);
        assert!(ok, "fewer than 3 heartbeats");
        let sent: Vec<u64> = oracle
            .seen
            .lock()
            .unwrap()
            .heartbeat_sent
            .values()
            .copied()
            .collect();
        let now = oracle_now();
        for t in &sent {
            assert!(
                (started..=now).contains(t),
                "a heartbeat stamped {} ms off the oracle's clock (window {started}..{now})",
                i128::from(*t) - i128::from(now)
            );
        }
        let offset = agent.metric("wisp_clock_offset_seconds");
        assert!((-30.5..=-29.5).contains(&offset), "offset {offset} s");
        assert!(agent.stop().success());
    });
}

#[test]
fn simulated_gnss_fix_reaches_the_oracle_in_heartbeats() {
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(dir.path(), broker, &oracle.key);
    env.push(("WISP_DEVICE__KIND".into(), "sim".into()));
    env.push(("WISP_LOCATION__LAT".into(), "38.7139".into()));
    env.push(("WISP_LOCATION__LON".into(), "-9.1394".into()));
    let agent = Agent::spawn(dir.path(), &env);
    // The simulated receiver speaks NMEA once per second through the real parser.
    assert!(
        wait_for(
            Duration::from_secs(20),
            || agent.status()["device"]["gnss_ok"] == true
        ),
        "no GNSS fix"
    );
    let fix = agent.status()["fix"].clone();
    let lat = fix["lat_e7"].as_i64().unwrap();
    assert!((lat - 387_139_000).abs() < 2_000, "{fix}");
    assert_eq!(agent.status()["firmware_version"], "sim");
    // A heartbeat signed after the fix carries it, and the oracle accepts it.
    assert!(wait_for(Duration::from_secs(20), || {
        let seen = oracle.seen.lock().unwrap();
        seen.heartbeat_seqs.len() >= 3
    }));
    assert!(agent.stop().success());
}

#[test]
fn operator_commands() {
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 1000);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env(dir.path(), broker, &oracle.key);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = cli(&["keygen"]);
    assert!(ok);
    let id = out.trim().to_string();
    assert!(id.starts_with("12D3KooW"), "{out}");
    assert_eq!(cli(&["keygen"]).1.trim(), id, "keygen never replaces a key");
    let (ok, out, _) = cli(&["config", "check"]);
    assert!(
        ok && out.contains("configuration OK") && out.contains(&id),
        "{out}"
    );
    // A key `run` refuses fails the check too: here a symlink to a copy others can read.
    {
        use std::os::unix::fs::PermissionsExt;
        let key_file = dir.path().join("node.key");
        let shared = dir.path().join("shared.key");
        std::fs::copy(&key_file, &shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let kept = dir.path().join("node.key.kept");
        std::fs::rename(&key_file, &kept).unwrap();
        std::os::unix::fs::symlink(&shared, &key_file).unwrap();
        let (ok, _, err) = cli(&["config", "check"]);
        assert!(!ok && err.contains("644"), "{err}");
        std::fs::remove_file(&key_file).unwrap();
        std::fs::rename(&kept, &key_file).unwrap();
    }
    let (ok, _, err) = cli(&["config", "check", "--broker", "ftp://x"]);
    assert!(!ok && err.contains("mqtt.url"), "{err}");
    // Onboarding without an owner is refused with a clear message, before anything is sent.
    let (ok, _, err) = cli(&["onboard"]);
    assert!(!ok && err.contains("node.owner"), "{err}");
    // With an owner and a location it is signed, sent and acked by the oracle.
    let mut onboard_env = env.clone();
    onboard_env.push(("WISP_NODE__OWNER".into(), "owner-1".into()));
    onboard_env.push(("WISP_LOCATION__LAT".into(), "38.7".into()));
    onboard_env.push(("WISP_LOCATION__LON".into(), "-9.1".into()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .args(["onboard", "--wait-s", "20"])
        .envs(onboard_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("onboarded"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        oracle.seen.lock().unwrap().proofs.len(),
        1,
        "exactly the onboarding reached the oracle"
    );

    let agent = Agent::spawn(dir.path(), &env);
    let addr = agent.http_addr().to_string();
    assert!(wait_for(
        Duration::from_secs(20),
        || agent.status()["epoch"] == 1
    ));
    let (ok, out, _) = cli(&["status", "--addr", &addr]);
    assert!(ok, "{out}");
    assert!(out.contains(&id) && out.contains("connected"), "{out}");
    assert!(out.contains("no test as prover yet"), "{out}");
    let (ok, out, _) = cli(&["status", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["peer_id"], id.as_str());
    assert!(v["backhaul"].is_null(), "{v}");
    assert!(agent.stop().success());
    let (ok, _, err) = cli(&["status", "--addr", &addr]);
    assert!(!ok && err.contains("is it running"), "{err}");
}

#[test]
fn an_onboarding_refused_rate_limited_is_sent_again_and_accepted() {
    use wisp_protocol::Reason;
    let broker = start_broker();
    let oracle = TestOracle::start_with_verdicts(broker, 1_000, |_, copy| {
        if copy == 1 {
            Verdict::Rejected(Reason::RateLimited)
        } else {
            Verdict::Accepted
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(dir.path(), broker, &oracle.key);
    env.extend(
        [
            ("WISP_NODE__OWNER", "owner-3"),
            ("WISP_LOCATION__LAT", "38.7"),
            ("WISP_LOCATION__LON", "-9.1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    };
    assert!(cli(&["keygen"]).status.success());
    let out = cli(&["onboard", "--wait-s", "20"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("onboarded"),
        "{stdout} {stderr}"
    );
    assert!(stderr.contains("rate_limited"), "{stderr}");
    let seen = oracle.seen.lock().unwrap();
    assert_eq!(seen.proofs.len(), 1);
    assert_eq!(seen.proofs.values().next(), Some(&2), "sent twice");
}

#[test]
fn onboarding_carries_a_secure_element_attestation_the_maker_certified() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 1000);
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(dir.path(), broker, &oracle.key);
    env.extend(
        [
            ("WISP_DEVICE__KIND", "sim"),
            ("WISP_NODE__OWNER", "owner-2"),
            ("WISP_LOCATION__LAT", "38.7"),
            ("WISP_LOCATION__LON", "-9.1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let cli = |env: &[(String, String)], args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The factory reads the chip's serial and key and certifies them with the maker's key.
    let info = cli(&env, &["device"]);
    let field = |name: &str| {
        hex::decode(
            info.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap(),
        )
        .unwrap()
    };
    let serial: [u8; 9] = field("serial").try_into().unwrap();
    let device_key: [u8; 64] = field("device_key").try_into().unwrap();
    let maker_key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let digest = wisp_protocol::msg::Attestation::certificate_digest(&serial, &device_key, "acme");
    let cert: p256::ecdsa::Signature = maker_key.sign_prehash(&digest).unwrap();
    env.push(("WISP_DEVICE__MAKER".into(), "acme".into()));
    env.push((
        "WISP_DEVICE__MAKER_CERTIFICATE".into(),
        hex::encode(cert.to_bytes()),
    ));

    let out = cli(&env, &["onboard", "--wait-s", "20"]);
    assert!(out.contains("onboarded"), "{out}");
    let seen = oracle.seen.lock().unwrap();
    let opened =
        wisp_protocol::envelope::open::<wisp_protocol::msg::Onboard>(&seen.onboards[0]).unwrap();
    let att = opened.msg.attestation.expect("attestation attached");
    assert_eq!(att.serial.0, serial);
    assert_eq!(
        att.verify(&opened.signer, maker_key.verifying_key()),
        Ok(())
    );
    // Another maker's key does not verify it.
    let other = p256::ecdsa::SigningKey::from_slice(&[0x43; 32]).unwrap();
    assert!(att.verify(&opened.signer, other.verifying_key()).is_err());
}
