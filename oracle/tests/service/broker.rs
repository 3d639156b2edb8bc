//! The broker side: Mosquitto as the broker, `check` refusing what `run` would, and the
//! embedded broker letting nobody speak for another.

use super::*;

#[test]
#[ignore = "needs Mosquitto: WISP_TEST_MOSQUITTO=127.0.0.1:1883"]
fn with_mosquitto_as_the_broker() {
    let _serial = serial();
    let addr = std::env::var("WISP_TEST_MOSQUITTO")
        .expect("set WISP_TEST_MOSQUITTO=host:port of a Mosquitto broker (.ci/run starts one on 127.0.0.1:1883)");
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://{addr}");
    let oracle = Oracle::spawn_with(dir.path(), port, &["--broker", &url], &[]);
    let okey = Oracle::key(dir.path());
    let node = NodeKey::from_seed(blake3::hash(okey.id().as_bytes()).as_bytes());
    let c = Client::connect(port, &okey, &[&node]);
    let id = c.send(&node, &onboard(&node, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let epoch = c.seed().epoch;
    for s in 1..=5 {
        let id = c.send(
            &node,
            &Envelope::sign(&node, &heartbeat(&node, epoch, s)).to_bytes(),
        );
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    assert_eq!(oracle.get("/v1/status")["broker_connected"], true);
    // This broker has no ACLs: anyone may replace the retained seed with one of its own making,
    // or delete it with an empty one. The oracle puts its own back at once.
    let real = c.seed();
    // A shared broker may still hold retained messages, and queued ones for the oracle's
    // session, from earlier runs with other oracle keys: those were restored too, so count
    // from here.
    let restored = oracle.counter("wisp_oracle_retained_restored_total");
    let stranger = NodeKey::from_seed(&[66; 32]);
    let forged_seed = [9; 32].into();
    let forged = EpochSeed {
        seed: forged_seed,
        ..real.clone()
    };
    let forged = Envelope::sign(&stranger, &forged).to_bytes();
    assert_eq!(
        publish_retained(port, topics::EPOCH, forged),
        BrokerAnswer::Done
    );
    assert_eq!(
        publish_retained(port, topics::EPOCH, Vec::new()),
        BrokerAnswer::Done
    );
    assert!(
        wait_for(Duration::from_secs(10), || oracle
            .counter("wisp_oracle_retained_restored_total")
            >= restored + 2),
        "{}",
        oracle.metrics()
    );
    // A subscriber that comes now gets the oracle's seed (`connect` waits for one the oracle
    // signed, and fails after 10 s without one). Epochs here last 3 s, so by now the oracle
    // may have opened a later one: the seed is the real one of its epoch, never the forgery.
    let now = Client::connect(port, &okey, &[]).seed();
    assert!(now.epoch >= real.epoch, "{now:?} after {real:?}");
    assert_ne!(now.seed, forged_seed);
    if now.epoch == real.epoch {
        assert_eq!(now, real);
    }
}

/// `check` refuses a key that `run` would refuse (readable by others), and names its mode.
#[test]
fn check_refuses_a_key_run_would_refuse() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let cli = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
            .args([cmd, "--data-dir", &data.path().display().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(cli("check").0, "no key yet: `run` creates one");
    assert!(cli("key").0);
    assert!(cli("check").0);
    let key = data.path().join("oracle.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = cli("check");
    assert!(!ok && err.contains("644"), "{err}");
}

/// What a broker did with one client's one request.
#[derive(Debug, PartialEq, Eq)]
enum BrokerAnswer {
    /// Acknowledged (`PUBACK` or a granting `SUBACK`).
    Done,
    /// The `CONNECT` was refused with this code.
    Refused(rumqttc::ConnectReturnCode),
    /// The connection was closed before an acknowledgement.
    Closed,
}

/// What a client does once connected.
enum Request<'a> {
    PublishRetained(&'a str, Vec<u8>),
    Subscribe(&'a str),
}

/// A node's own login (username, password) on the network of `oracle`.
fn node_login(node: &NodeKey, oracle: NodeId) -> Option<(String, String)> {
    Some((
        node.id().to_string(),
        wisp_protocol::login::password(node, &oracle),
    ))
}

/// Connects as `client_id` (with `login`, a username and password, when given), makes one
/// request, and reports what the broker did.
fn attempt(
    broker: u16,
    client_id: &str,
    login: Option<(String, String)>,
    request: Request<'_>,
) -> BrokerAnswer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", broker);
        if let Some((user, password)) = login {
            o.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(o, 10);
        match request {
            Request::PublishRetained(topic, payload) => client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await
                .unwrap(),
            Request::Subscribe(filter) => client.subscribe(filter, QoS::AtLeastOnce).await.unwrap(),
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("no answer from the broker")
            {
                Ok(Event::Incoming(Packet::PubAck(_))) => return BrokerAnswer::Done,
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    return if s
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                    {
                        BrokerAnswer::Done
                    } else {
                        BrokerAnswer::Closed
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    return BrokerAnswer::Refused(code);
                }
                Err(_) => return BrokerAnswer::Closed,
            }
        }
    })
}

/// A publish as a monitor (no login) under a client id of its own.
fn publish_retained(broker: u16, topic: &str, payload: Vec<u8>) -> BrokerAnswer {
    attempt(
        broker,
        &format!("stranger-{}", free_port()),
        None,
        Request::PublishRetained(topic, payload),
    )
}

#[test]
fn the_embedded_broker_lets_nobody_speak_for_another() {
    use rumqttc::ConnectReturnCode::{BadClientId, BadUserNamePassword};
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = free_port();
    // Hour-long epochs: no new seed would come to mend the topic by itself.
    let oracle = Oracle::spawn(dir.path(), broker, &[("WISP_EPOCH__DURATION_S", "3600")]);
    let key = Oracle::key(dir.path());
    let me = NodeKey::from_seed(&[65; 32]);
    let victim = NodeKey::from_seed(&[66; 32]);
    let c = Client::connect(broker, &key, &[&me, &victim]);
    let real = c.seed();
    let on = c.send(&victim, &onboard(&victim, 38.7));
    assert_eq!(c.await_verdict(&on), Verdict::Accepted);
    let forged = Envelope::sign(
        &me,
        &EpochSeed {
            seed: [9; 32].into(),
            ..real.clone()
        },
    )
    .to_bytes();
    let mine = node_login(&me, key.id());
    let my_id = format!("wisp-agent-{}", me.id());
    // A forged seed, and an empty one that would delete the retained seed: from a monitor and
    // from a logged-in node alike, the connection is closed and nothing is published.
    assert_eq!(
        publish_retained(broker, topics::EPOCH, forged.clone()),
        BrokerAnswer::Closed
    );
    assert_eq!(
        publish_retained(broker, topics::EPOCH, Vec::new()),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::PublishRetained(topics::EPOCH, forged)
        ),
        BrokerAnswer::Closed
    );
    // A node's proofs and acks are its own.
    let hb = Envelope::sign(&me, &heartbeat(&me, real.epoch, 1)).to_bytes();
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::PublishRetained(&topics::proofs(&victim.id()), hb.clone())
        ),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::Subscribe(&topics::acks(&victim.id()))
        ),
        BrokerAnswer::Closed
    );
    assert_eq!(
        attempt(
            broker,
            "monitor-1",
            None,
            Request::Subscribe(topics::PROOFS_FILTER)
        ),
        BrokerAnswer::Closed
    );
    // Client ids: the oracle's, a node's, with or without somebody's login.
    for (id, login) in [
        ("wisp-oracle".to_string(), None),
        ("wisp-oracle".to_string(), mine.clone()),
        (format!("wisp-agent-{}", victim.id()), None),
        (format!("wisp-agent-{}", victim.id()), mine.clone()),
    ] {
        assert_eq!(
            attempt(broker, &id, login, Request::Subscribe(topics::EPOCH)),
            BrokerAnswer::Refused(BadClientId),
            "{id}"
        );
    }
    // Somebody else's name with my token.
    let my_token = wisp_protocol::login::password(&me, &key.id());
    assert_eq!(
        attempt(
            broker,
            "x",
            Some((victim.id().to_string(), my_token)),
            Request::Subscribe(topics::EPOCH)
        ),
        BrokerAnswer::Refused(BadUserNamePassword)
    );
    let as_victim = node_login(&victim, key.id());
    // What a node and a monitor may do, they can.
    assert_eq!(
        attempt(
            broker,
            &my_id,
            mine.clone(),
            Request::Subscribe(&topics::acks(&me.id()))
        ),
        BrokerAnswer::Done
    );
    assert_eq!(
        attempt(
            broker,
            &format!("wisp-agent-{}", victim.id()),
            as_victim,
            Request::PublishRetained(&topics::status(&victim.id()), b"{}".to_vec())
        ),
        BrokerAnswer::Done
    );
    assert_eq!(
        attempt(
            broker,
            "monitor-2",
            None,
            Request::Subscribe("wisp/v1/status/+")
        ),
        BrokerAnswer::Done
    );
    // The oracle stayed connected, kept its seed, and counted every refusal.
    assert_eq!(oracle.get("/v1/status")["broker_connected"], true);
    assert_eq!(Client::connect(broker, &key, &[]).seed(), real);
    let m = oracle.metrics();
    for (reason, n) in [
        ("publish", 4),
        ("subscribe", 2),
        ("client_id", 4),
        ("login", 1),
    ] {
        let line = format!("wisp_oracle_broker_refused_total{{reason=\"{reason}\"}} {n}\n");
        assert!(m.contains(&line), "{line} in\n{m}");
    }
    assert!(m.contains("wisp_oracle_retained_restored_total 0\n"), "{m}");
}
