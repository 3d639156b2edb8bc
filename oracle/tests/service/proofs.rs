//! Proofs through the running service: every verdict, rate limiting, garbage on a node's
//! topic, and an owner-only data directory.

use super::*;

#[test]
fn verdicts_for_honest_replayed_forged_and_malformed_proofs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let oracle = Oracle::spawn(dir.path(), port, &[]);
    let okey = Oracle::key(dir.path());
    let a = NodeKey::from_seed(&[1; 32]);
    let b = NodeKey::from_seed(&[2; 32]);
    let c = Client::connect(port, &okey, &[&a, &b]);

    let on = c.send(&a, &onboard(&a, 38.7));
    assert_eq!(c.await_verdict(&on), Verdict::Accepted);
    let epoch = c.seed().epoch;
    let hb = Envelope::sign(&a, &heartbeat(&a, epoch, 1)).to_bytes();
    let id = c.send(&a, &hb);
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    // Replayed: acked again, with the same verdict, and stored once.
    c.acks.lock().unwrap().remove(&id);
    c.send(&a, &hb);
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);

    let check = |topic_node: &NodeKey, bytes: Vec<u8>, want: Reason| {
        c.publish(topics::proofs(&topic_node.id()), bytes.clone());
        assert_eq!(
            c.await_verdict(&ProofId::of(&bytes)),
            Verdict::Rejected(want),
            "{want}"
        );
    };
    // What did not verify is refused without an ack: nothing says the topic's node sent it.
    // A proof the oracle acks follows it on the same topic; once that ack is in, an ack for
    // the refused one would have come before it (one batch order, one ack order). On a's
    // topic the follower is the replayed heartbeat, acked again and never stored twice.
    let b_hb = Envelope::sign(&b, &heartbeat(&b, epoch, 1)).to_bytes();
    let silent = |topic_node: &NodeKey, bytes: Vec<u8>| {
        let follower = if topic_node.id() == a.id() {
            &hb
        } else {
            &b_hb
        };
        let fid = ProofId::of(follower);
        c.acks.lock().unwrap().remove(&fid);
        c.publish(topics::proofs(&topic_node.id()), bytes.clone());
        c.send(topic_node, follower);
        c.await_verdict(&fid);
        assert_eq!(c.verdict(&ProofId::of(&bytes)), None, "acked");
    };
    // Forged: one flipped bit in the signature.
    let mut forged = Envelope::sign(&a, &heartbeat(&a, epoch, 2)).to_bytes();
    let n = forged.len();
    forged[n - 10] ^= 1;
    silent(&a, forged);
    // Wrong topic: a's heartbeat on b's topic.
    silent(&b, Envelope::sign(&a, &heartbeat(&a, epoch, 3)).to_bytes());
    // Wrong epoch.
    check(
        &a,
        Envelope::sign(&a, &heartbeat(&a, epoch + 50, 4)).to_bytes(),
        Reason::WrongEpoch,
    );
    // Not onboarded (the follower above).
    assert_eq!(
        c.verdict(&ProofId::of(&b_hb)),
        Some(Verdict::Rejected(Reason::UnknownNode))
    );
    // Oversize: larger than any envelope may be.
    let mut big = vec![1u8, Kind::Heartbeat.as_u8()];
    big.resize(300_000, 0);
    silent(&a, big);
    // Non-canonical: an over-long varint, properly signed.
    let payload = envelope::encode_payload(&heartbeat(&a, epoch, 5));
    let mut padded = vec![payload[0] | 0x80, 0x00];
    padded.extend_from_slice(&payload[1..]);
    let sig = a.sign_raw(&signed_bytes(Kind::Heartbeat, &padded));
    let env = Envelope {
        version: 1,
        kind: Kind::Heartbeat,
        payload: padded,
        signer: a.id(),
        signature: sig.into(),
        cosigners: vec![],
    };
    check(&a, env.to_bytes(), Reason::NonCanonical);
    // Not a proof kind.
    let seed_like = Envelope::sign(&a, &c.seed()).to_bytes();
    silent(&a, seed_like);

    // The API shows the node, its proofs and the rejections (the node list refreshes each second).
    let path = format!("/v1/nodes/{}", a.id());
    assert!(wait_for(Duration::from_secs(5), || {
        oracle.get(&path)["node"].is_object()
    }));
    let node = oracle.get(&path);
    assert_eq!(node["node"]["peer_id"], a.id().to_string());
    let kinds: Vec<&str> = node["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "heartbeat").count(),
        3,
        "{node}"
    );
    let rej = oracle.get("/v1/rejections").to_string();
    // Authentic proofs are stored with their rejection; the rest are only counted.
    for r in ["wrong_epoch", "non_canonical", "unknown_node"] {
        assert!(rej.contains(r), "{r} missing from {rej}");
    }
    let metrics = oracle.metrics();
    for r in [
        "bad_signature",
        "topic_mismatch",
        "oversize",
        "unexpected_kind",
    ] {
        assert!(
            metrics.contains(&format!(
                "wisp_oracle_unverified_total{{reason=\"{r}\"}} 1\n"
            )),
            "{r} not counted:\n{metrics}"
        );
        assert!(
            !metrics.contains(&format!("verdict=\"{r}\"")),
            "{r} counted as a verdict:\n{metrics}"
        );
    }
    assert!(metrics.contains("verdict=\"accepted\""), "{metrics}");
    // The replay, and the heartbeat that followed three of the refusals on a's topic.
    assert!(
        metrics.contains("wisp_oracle_duplicates_total 4"),
        "{metrics}"
    );
    assert_eq!(
        oracle.get("/v1/nodes/not-a-peer-id")["error"]
            .as_str()
            .map(|s| s.contains("peer id")),
        Some(true)
    );
}

#[test]
fn a_flood_is_rate_limited_while_others_are_served() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _oracle = Oracle::spawn(
        dir.path(),
        port,
        &[
            ("WISP_INGEST__RATE_PER_S", "20"),
            ("WISP_INGEST__BURST", "50"),
        ],
    );
    let okey = Oracle::key(dir.path());
    let flooder = NodeKey::from_seed(&[3; 32]);
    let honest = NodeKey::from_seed(&[4; 32]);
    let c = Client::connect(port, &okey, &[&flooder, &honest]);
    for (k, lat) in [(&flooder, 38.7), (&honest, 38.71)] {
        let id = c.send(k, &onboard(k, lat));
        assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    }
    let epoch = c.seed().epoch;
    let flood: Vec<ProofId> = (1..=1000)
        .map(|s| {
            c.send(
                &flooder,
                &Envelope::sign(&flooder, &heartbeat(&flooder, epoch, s)).to_bytes(),
            )
        })
        .collect();
    let honest_ids: Vec<ProofId> = (1..=10)
        .map(|s| {
            std::thread::sleep(Duration::from_millis(30));
            c.send(
                &honest,
                &Envelope::sign(&honest, &heartbeat(&honest, epoch, s)).to_bytes(),
            )
        })
        .collect();
    for id in &honest_ids {
        assert_eq!(c.await_verdict(id), Verdict::Accepted);
    }
    assert!(wait_for(Duration::from_secs(20), || flood
        .iter()
        .all(|id| c.verdict(id).is_some())));
    let limited = flood
        .iter()
        .filter(|id| c.verdict(id) == Some(Verdict::Rejected(Reason::RateLimited)))
        .count();
    println!("flood: {limited} of 1000 rate-limited");
    assert!(limited >= 900, "only {limited} rate-limited");
}

#[test]
fn garbage_on_a_nodes_topic_costs_the_node_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let oracle = Oracle::spawn(
        dir.path(),
        port,
        &[
            ("WISP_INGEST__RATE_PER_S", "20"),
            ("WISP_INGEST__BURST", "50"),
        ],
    );
    let okey = Oracle::key(dir.path());
    let victim = NodeKey::from_seed(&[5; 32]);
    let stranger = NodeKey::from_seed(&[6; 32]);
    let c = Client::connect(port, &okey, &[&victim, &stranger]);
    let id = c.send(&victim, &onboard(&victim, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let epoch = c.seed().epoch;
    // 2,000 publishes on the victim's topic from someone without its key, forty times its
    // burst: its heartbeats with made-up signatures, a stranger's genuine heartbeats,
    // envelopes cut short.
    let mut garbage: Vec<ProofId> = Vec::new();
    for n in 0..2_000u64 {
        let hb = heartbeat_at(epoch, 1_000 + n, wall_ms() - 1_000);
        let bytes = match n % 3 {
            0 => {
                let mut b = Envelope::sign(&victim, &hb).to_bytes();
                let len = b.len();
                b[len - 5] ^= 1 << (n % 8);
                b
            }
            1 => Envelope::sign(&stranger, &hb).to_bytes(),
            _ => {
                let mut b = Envelope::sign(&stranger, &hb).to_bytes();
                b.truncate(b.len() - 7);
                b
            }
        };
        garbage.push(c.send(&victim, &bytes));
    }
    // Then the victim's own heartbeats: every one accepted, none rate-limited.
    let genuine: Vec<ProofId> = (1..=10)
        .map(|s| {
            c.send(
                &victim,
                &Envelope::sign(&victim, &heartbeat(&victim, epoch, s)).to_bytes(),
            )
        })
        .collect();
    for id in &genuine {
        assert_eq!(c.await_verdict(id), Verdict::Accepted);
    }
    // The garbage went before them on the same topic: had any of it been acked, that ack
    // would be in by now.
    let acked: Vec<&ProofId> = garbage
        .iter()
        .filter(|id| c.verdict(id).is_some())
        .collect();
    assert!(acked.is_empty(), "{} garbage publishes acked", acked.len());
    let metrics = oracle.metrics();
    let count = |line: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("wisp_oracle_unverified_total{reason=\"bad_signature\"}")
            + count("wisp_oracle_unverified_total{reason=\"topic_mismatch\"}")
            + count("wisp_oracle_unverified_total{reason=\"malformed\"}"),
        2_000,
        "{metrics}"
    );
    assert!(!metrics.contains("verdict=\"rate_limited\""), "{metrics}");
}

#[test]
fn the_data_directory_and_the_database_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // Neither the data directory nor its parent exists yet.
    let data = root.path().join("srv/oracle");
    let port = free_port();
    let oracle = Oracle::spawn(&data, port, &[]);
    let okey = Oracle::key(&data);
    let node = NodeKey::from_seed(&[7; 32]);
    let c = Client::connect(port, &okey, &[&node]);
    // A stored proof: the write-ahead log exists.
    let id = c.send(&node, &onboard(&node, 38.7));
    assert_eq!(c.await_verdict(&id), Verdict::Accepted);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("srv")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for f in ["oracle.db", "oracle.db-wal", "oracle.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    drop(oracle);
}
