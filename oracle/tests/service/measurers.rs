//! Each epoch's published measurer set, and receipts judged by it across a restart.

use super::*;

/// Every complete measurer set seen, by epoch, once per publication.
type SeenSets = Arc<Mutex<BTreeMap<u64, Vec<Vec<NodeId>>>>>;

/// Collects the oracle's `measurer_set` parts (checked: oracle-signed) by epoch.
fn collect_measurer_sets(broker: u16, oracle: NodeId) -> (SeenSets, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sets: SeenSets = Arc::default();
    let mut o = MqttOptions::new(format!("sets-{}", free_port()), "127.0.0.1", broker);
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut events) = AsyncClient::new(o, 100);
    let s = sets.clone();
    rt.spawn(async move {
        let mut asm: BTreeMap<u64, MeasurerSetAssembly> = BTreeMap::new();
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(topics::MEASURERS_FILTER, QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                    let opened = envelope::open::<MeasurerSet>(&p.payload).unwrap();
                    assert_eq!(
                        opened.signer, oracle,
                        "measurer set not signed by the oracle"
                    );
                    assert_eq!(p.topic, topics::measurers(usize::from(opened.msg.part)));
                    let epoch = opened.msg.epoch;
                    let a = asm.entry(epoch).or_default();
                    if a.add(opened.msg) == Ok(true)
                        && let Some((_, nodes)) = a.set()
                    {
                        s.lock().unwrap().entry(epoch).or_default().push(nodes);
                        *a = MeasurerSetAssembly::new();
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (sets, rt)
}

/// A failed test's receipt, measurer-signed and prover co-signed.
fn failed_receipt(
    epoch: u64,
    prover: &NodeKey,
    measurer: &NodeKey,
    direction: Direction,
    test: u8,
) -> Vec<u8> {
    let mut env = Envelope::sign(
        measurer,
        &BandwidthReceipt {
            test_id: ByteArray([test; 16]),
            epoch,
            prover: prover.id(),
            measurer: measurer.id(),
            direction,
            outcome: wisp_protocol::msg::Outcome::Failed(BwFailure::Timeout),
        },
    );
    env.cosign(prover);
    env.to_bytes()
}

#[test]
fn each_epoch_publishes_its_measurer_set_and_judges_receipts_by_it_across_a_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Epochs long enough to send receipts in the one whose set was just seen.
    let long = [("WISP_EPOCH__DURATION_S", "8")];
    let oracle = Oracle::spawn(dir.path(), port, &long);
    let okey = Oracle::key(dir.path());
    let (sets, _rt) = collect_measurer_sets(port, okey.id());
    let nodes: Vec<NodeKey> = (1..=5u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    // A node that does not declare the measurer role is in no set.
    let idle = NodeKey::from_seed(&[6; 32]);
    let mut refs: Vec<&NodeKey> = nodes.iter().collect();
    refs.push(&idle);
    let c = Client::connect(port, &okey, &refs);
    let onboards: Vec<Vec<u8>> = nodes[..4].iter().map(|n| onboard(n, 38.7)).collect();
    for (n, bytes) in nodes.iter().zip(&onboards) {
        assert_eq!(c.await_verdict(&c.send(n, bytes)), Verdict::Accepted);
    }
    assert_eq!(
        c.await_verdict(&c.send(&idle, &onboard_as(&idle, 38.7, false))),
        Verdict::Accepted
    );
    let mut first4: Vec<NodeId> = nodes[..4].iter().map(NodeKey::id).collect();
    first4.sort_unstable();
    // An epoch opened after the onboards lists exactly those nodes.
    let mut epoch = 0;
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = sets.lock().unwrap();
            match s.iter().find(|(_, v)| v[0] == first4) {
                Some((e, _)) => {
                    epoch = *e;
                    true
                }
                None => false,
            }
        }),
        "no measurer set with the four onboarded nodes: {:?}",
        sets.lock().unwrap()
    );
    // A fifth node onboards now: it is not in that epoch's set, whatever the registry says.
    let late = &nodes[4];
    assert_eq!(
        c.await_verdict(&c.send(late, &onboard(late, 38.7))),
        Verdict::Accepted
    );
    let prover = &nodes[0];
    assert!(wait_for(Duration::from_secs(10), || c.seed().epoch >= epoch));
    let seed = c.seed();
    assert_eq!(
        seed.epoch, epoch,
        "the epoch ended before its receipts were sent"
    );
    {
        let assigned =
            wisp_protocol::schedule::assign_measurers(&seed.seed.0, &prover.id(), &first4, 3);
        let measurer = nodes.iter().find(|n| n.id() == assigned[0]).unwrap();
        // Past the assignment check, a failed test is refused for what it is.
        let ok = failed_receipt(epoch, prover, measurer, Direction::Down, 1);
        assert_eq!(
            c.await_verdict(&c.send(measurer, &ok)),
            Verdict::Rejected(Reason::TestFailed)
        );
        // A receipt sent only by its prover (the co-signer), on its own topic, is judged the
        // same way; on a node's topic that signed nothing it is a topic mismatch, dropped
        // without an ack. (Distinct receipts, so that no ack of one check can answer another.)
        let copy = failed_receipt(epoch, prover, measurer, Direction::Up, 2);
        assert_eq!(
            c.await_verdict(&c.send(prover, &copy)),
            Verdict::Rejected(Reason::TestFailed)
        );
        // The seed is random, so the measurer may be any of the other three: pick a node that
        // is neither of the two signers.
        let (bystander, bystander_onboard) = nodes[1..4]
            .iter()
            .zip(&onboards[1..4])
            .find(|(n, _)| n.id() != measurer.id())
            .unwrap();
        let stray = failed_receipt(epoch, prover, measurer, Direction::Down, 3);
        let stray = c.send(bystander, &stray);
        // Its onboarding again, after it on the same topic: acked (a duplicate), and any ack
        // of the stray receipt would have come first.
        let follower = ProofId::of(bystander_onboard);
        c.acks.lock().unwrap().remove(&follower);
        c.send(bystander, bystander_onboard);
        assert_eq!(c.await_verdict(&follower), Verdict::Accepted);
        assert_eq!(c.verdict(&stray), None, "a topic mismatch was acked");
        let bad = failed_receipt(epoch, prover, late, Direction::Down, 4);
        assert_eq!(
            c.await_verdict(&c.send(late, &bad)),
            Verdict::Rejected(Reason::WrongMeasurer),
            "a node that onboarded after the epoch opened does not measure in it"
        );
        let not_measuring = failed_receipt(epoch, prover, &idle, Direction::Down, 5);
        assert_eq!(
            c.await_verdict(&c.send(&idle, &not_measuring)),
            Verdict::Rejected(Reason::WrongMeasurer),
            "a node onboarded without the measurer role does not measure"
        );
    }

    // SIGKILL and restart: the store replays the onboards and reopens every epoch at the point
    // it opened, so each epoch's set is the same as before; later epochs include the fifth node.
    oracle.kill9();
    let _oracle = Oracle::spawn(dir.path(), port, &long);
    let mut all5: Vec<NodeId> = nodes.iter().map(NodeKey::id).collect();
    all5.sort_unstable();
    assert!(
        wait_for(Duration::from_secs(20), || sets
            .lock()
            .unwrap()
            .values()
            .any(|v| v[0] == all5)),
        "no measurer set with all five nodes"
    );
    for (e, seen) in sets.lock().unwrap().iter() {
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "epoch {e}: the set changed between publications: {seen:?}"
        );
    }
}
