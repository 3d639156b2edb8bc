//! The core's tests: heartbeats, the beacon slot, witnesses, seeds and acks.

use super::*;
use wisp_protocol::msg::{Ack, AckEntry, Beacon, EpochParams, Heartbeat, Verdict, seal_acks};
use wisp_protocol::schedule;

const T0: u64 = 1_800_000_000_000;

fn seed(epoch: u64, start: u64) -> EpochSeed {
    EpochSeed {
        epoch,
        start_ms: start,
        duration_ms: 60_000,
        seed: [epoch.to_le_bytes()[0]; 32].into(),
        params: EpochParams {
            slot_count: 10,
            heartbeat_interval_ms: 10_000,
            ..EpochParams::default()
        },
    }
}

fn core(n: u8, oracle: &NodeKey) -> Core {
    let cell = Cell::from_degrees(38.7, -9.1 + f64::from(n) * 0.001, 12).unwrap();
    Core::new(
        NodeKey::from_seed(&[n; 32]),
        CoreConfig::new(Some(cell), Versions::new("t", "sim")),
        oracle.id(),
        T0,
        0,
    )
}

fn drain(c: &mut Core) -> Vec<Proof> {
    std::iter::from_fn(|| c.poll_proof()).collect()
}

/// The witness `handle_radio_frame` made: signed at once (`Some(id)`), or held until `c`'s
/// own beacon, its clock then run from `now` in 100 ms steps until it goes out.
fn signed_witness(c: &mut Core, id: Option<ProofId>, now: u64) -> Proof {
    if let Some(id) = id {
        return drain(c).into_iter().find(|p| p.id == id).unwrap();
    }
    assert!(
        drain(c).iter().all(|p| p.kind != Kind::Witness),
        "a held witness was signed before the beacon"
    );
    let mut t = now;
    loop {
        c.handle_timeout(t);
        if let Some(w) = drain(c).into_iter().find(|p| p.kind == Kind::Witness) {
            return w;
        }
        t += 100;
        assert!(t < now + 120_000, "no beacon, so no witness");
    }
}

#[test]
fn nothing_happens_before_a_seed() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut c = core(1, &oracle);
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(T0 + 1_000_000);
    assert!(c.poll_proof().is_none());
}

#[test]
fn heartbeats_keep_their_phase_and_sequence() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut c = Core::new(
        NodeKey::from_seed(&[1; 32]),
        CoreConfig::new(None, Versions::new("t", "sim")),
        oracle.id(),
        T0,
        41,
    );
    assert!(
        c.handle_seed(&Envelope::sign(&oracle, &seed(1, T0)).to_bytes(), T0)
            .unwrap()
    );
    c.handle_timeout(T0);
    c.handle_timeout(T0 + 25_000); // one heartbeat, though 2.5 intervals passed
    // The next on the phase, but not at T0 + 30 s: that is less than three quarters of
    // an interval after the late one.
    assert_eq!(c.poll_timeout(), Some(T0 + 40_000));
    c.handle_timeout(T0 + 39_999);
    c.handle_timeout(T0 + 40_000);
    let sent: Vec<(u64, u64)> = drain(&mut c)
        .iter()
        .map(|p| envelope::open::<Heartbeat>(&p.bytes).unwrap().msg)
        .map(|h| (h.seq, h.sent_ms))
        .collect();
    assert_eq!(sent, vec![(42, T0), (43, T0 + 25_000), (44, T0 + 40_000)]);
    assert_eq!(c.poll_timeout(), Some(T0 + 50_000));
    // Without a location the node cannot beacon, and says so.
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&Event::BeaconMissed { epoch: 1 }));
}

#[test]
fn no_heartbeat_is_signed_past_the_end_of_the_last_seeds_epoch() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut c = core(1, &oracle);
    // Restarted with the saved seed of an epoch that has just ended.
    let late = T0 + 60_000 + 500;
    c.handle_seed(&Envelope::sign(&oracle, &seed(1, T0)).to_bytes(), late)
        .unwrap();
    c.handle_timeout(late);
    assert!(
        drain(&mut c).iter().all(|p| p.kind != Kind::Heartbeat),
        "a heartbeat for a closed epoch"
    );
    // Nothing is due until the next seed (a timer in the past would spin the driver).
    assert!(
        c.poll_timeout().is_none_or(|t| t > late),
        "{:?}",
        c.poll_timeout()
    );
    // The next seed arrives: the heartbeat goes out at once, in the new epoch.
    c.handle_seed(
        &Envelope::sign(&oracle, &seed(2, T0 + 60_000)).to_bytes(),
        late + 20,
    )
    .unwrap();
    c.handle_timeout(late + 20);
    let hbs: Vec<Heartbeat> = drain(&mut c)
        .iter()
        .filter(|p| p.kind == Kind::Heartbeat)
        .map(|p| envelope::open::<Heartbeat>(&p.bytes).unwrap().msg)
        .collect();
    assert_eq!(hbs.len(), 1);
    assert_eq!(
        (hbs[0].epoch, hbs[0].seq, hbs[0].sent_ms),
        (2, 1, late + 20)
    );
}

#[test]
fn a_restarted_core_waits_an_interval_after_the_last_persisted_heartbeat() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let seed_bytes = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
    let interval = 10_000; // the seed's
    // (last heartbeat signed, restart at): the first heartbeat after the restart.
    let cases = [
        // Restarted 3 s after a heartbeat: the next one a full interval after it.
        (T0 + 20_000, T0 + 23_000, T0 + 20_000 + interval),
        // Down longer than an interval: at once.
        (T0 + 20_000, T0 + 45_000, T0 + 45_000),
        // The clock was set back: at most one interval from now.
        (T0 + 90_000, T0 + 23_000, T0 + 23_000 + interval),
    ];
    for (last, restart, want) in cases {
        let mut c = Core::new(
            NodeKey::from_seed(&[1; 32]),
            CoreConfig::new(None, Versions::new("t", "sim")),
            oracle.id(),
            restart,
            7,
        );
        // The configured interval (5 min) applies until the seed sets 10 s.
        c.resume_heartbeats(last, restart);
        assert_eq!(c.activity().last_heartbeat_ms, Some(last));
        assert!(c.handle_seed(&seed_bytes, restart).unwrap());
        assert_eq!(
            c.poll_timeout(),
            Some(want),
            "last {last} restart {restart}"
        );
        c.handle_timeout(want - 1);
        assert!(c.poll_proof().is_none(), "too early, last {last}");
        c.handle_timeout(want);
        let hb = envelope::open::<Heartbeat>(&c.poll_proof().unwrap().bytes)
            .unwrap()
            .msg;
        assert_eq!((hb.seq, hb.sent_ms), (8, want));
        // Then the usual phase from there.
        assert_eq!(c.poll_timeout(), Some(want + interval));
    }
}

#[test]
fn a_clock_set_back_after_a_restart_moves_the_first_heartbeat_with_it() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let seed_bytes = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
    // The last heartbeat was signed at T0 + 20 s on the oracle's clock; the node restarts
    // at T0 + 23 s with its clock 30 s ahead, then learns the oracle's clock.
    let (last, restart, ahead) = (T0 + 20_000, T0 + 23_000, 30_000);
    let mut c = Core::new(
        NodeKey::from_seed(&[1; 32]),
        CoreConfig::new(None, Versions::new("t", "sim")),
        oracle.id(),
        restart + ahead,
        7,
    );
    c.resume_heartbeats(last, restart + ahead);
    c.handle_seed(&seed_bytes, restart + ahead).unwrap();
    c.clock_stepped(-30_000);
    assert_eq!(c.poll_timeout(), Some(last + 10_000));
    c.handle_timeout(last + 10_000);
    let hb = envelope::open::<Heartbeat>(&c.poll_proof().unwrap().bytes)
        .unwrap()
        .msg;
    assert_eq!((hb.seq, hb.sent_ms), (8, last + 10_000));
    // Set back mid-run: the schedule keeps its phase on the new clock.
    c.clock_stepped(-5_000);
    assert_eq!(c.poll_timeout(), Some(last + 15_000));
}

/// A beacon `a` sends in its slot of `seed(1, T0)`, and when.
fn beacon_of(a: &mut Core) -> (Vec<u8>, u64) {
    let mut t = T0;
    while t < T0 + 60_000 {
        a.handle_timeout(t);
        if let Some(f) = a.poll_transmit() {
            return (f.payload, t);
        }
        t += 100;
    }
    panic!("no beacon");
}

#[test]
fn a_core_that_missed_its_slot_does_not_witness_and_a_restart_does_not_beacon_twice() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
    let window = |n: u8| schedule::beacon_window(&seed(1, T0), &core(n, &oracle).id());
    // b's slot ends before a's begins.
    let (na, nb) = (1..30u8)
        .flat_map(|x| (1..30u8).map(move |y| (x, y)))
        .find(|&(x, y)| x != y && window(y).1 + 2_000 < window(x).0)
        .expect("two nodes with slots apart");
    let mut a = core(na, &oracle);
    a.handle_seed(&s, T0).unwrap();
    let (frame, sent) = beacon_of(&mut a);
    let hear = |c: &mut Core| {
        c.handle_radio_frame(
            &frame,
            DeciDb(-600),
            DeciDb(200),
            2_412_000,
            sent + 1,
            sent + 1,
        )
    };
    // b started after its own slot: it will not beacon this epoch, so it does not witness.
    let mut b = Core::new(
        NodeKey::from_seed(&[nb; 32]),
        CoreConfig::new(core(nb, &oracle).cell(), Versions::new("t", "sim")),
        oracle.id(),
        window(nb).1 + 1,
        0,
    );
    b.handle_seed(&s, window(nb).1 + 1).unwrap();
    assert_eq!(hear(&mut b), Err(Ignored::NoBeacon));
    // b beaconed in its slot, then restarted: it does not beacon again, and it witnesses.
    let mut b = Core::new(
        NodeKey::from_seed(&[nb; 32]),
        CoreConfig::new(core(nb, &oracle).cell(), Versions::new("t", "sim")),
        oracle.id(),
        window(nb).1 + 1,
        0,
    );
    b.resume_beacon(window(nb).0 + 250);
    b.handle_seed(&s, window(nb).1 + 1).unwrap();
    let mut t = window(nb).1 + 1;
    while t < T0 + 60_000 {
        b.handle_timeout(t);
        assert!(b.poll_transmit().is_none(), "a second beacon at {t}");
        t += 500;
    }
    assert!(hear(&mut b).is_ok());
    // A beacon of an earlier epoch does not count, even one sent just before this epoch
    // began (within the slot tolerance of a first slot): this epoch's slot is used.
    for before in [window(nb).0 - 60_000, T0 - 270] {
        let mut c = core(nb, &oracle);
        c.resume_beacon(before);
        c.handle_seed(&s, T0).unwrap();
        assert!(
            (0..600).any(|i| {
                c.handle_timeout(T0 + i * 100);
                c.poll_transmit().is_some()
            }),
            "no beacon after one at {before}"
        );
    }
}

#[test]
fn beacons_once_in_its_slot_and_neighbours_witness_once() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut a = core(1, &oracle);
    let mut b = core(2, &oracle);
    let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
    a.handle_seed(&s, T0).unwrap();
    b.handle_seed(&s, T0).unwrap();
    let (start, end) = schedule::beacon_window(&seed(1, T0), &a.id());
    // Run a's clock through the whole epoch in 100 ms steps.
    let mut frames = Vec::new();
    let mut t = T0;
    while t < T0 + 60_000 {
        a.handle_timeout(t);
        frames.extend(std::iter::from_fn(|| a.poll_transmit()));
        t += 100;
    }
    assert_eq!(frames.len(), 1, "one beacon per epoch");
    let beacon = envelope::open::<Beacon>(&frames[0].payload).unwrap().msg;
    assert!(beacon.tx_ms >= start && beacon.tx_ms < end);
    assert!(drain(&mut a).iter().any(|p| p.kind == Kind::Beacon));

    let rx = beacon.tx_ms + 2;
    let id = b
        .handle_radio_frame(
            &frames[0].payload,
            DeciDb(-700),
            DeciDb(200),
            2_412_000,
            rx,
            rx,
        )
        .unwrap();
    let w = signed_witness(&mut b, id, rx);
    let witness = envelope::open::<Witness>(&w.bytes).unwrap().msg;
    assert_eq!(witness.open_beacon().unwrap().signer, a.id());
    assert_eq!(witness.rx_ms, rx);
    // The same beacon again, and a's own beacon heard by a: ignored.
    assert_eq!(
        b.handle_radio_frame(
            &frames[0].payload,
            DeciDb(-700),
            DeciDb(200),
            2_412_000,
            rx + 5,
            rx + 5
        ),
        Err(Ignored::Duplicate)
    );
    assert_eq!(
        a.handle_radio_frame(
            &frames[0].payload,
            DeciDb(-700),
            DeciDb(200),
            2_412_000,
            rx,
            rx
        ),
        Err(Ignored::Own)
    );
}

#[test]
fn the_beaconer_records_who_witnessed_it() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut a = core(1, &oracle);
    let mut others: Vec<Core> = (2..5).map(|n| core(n, &oracle)).collect();
    let s = Envelope::sign(&oracle, &seed(1, T0)).to_bytes();
    a.handle_seed(&s, T0).unwrap();
    let mut t = T0;
    let frame = loop {
        a.handle_timeout(t);
        if let Some(f) = a.poll_transmit() {
            break f;
        }
        t += 100;
    };
    let mut gossip = Vec::new();
    for (i, o) in others.iter_mut().enumerate() {
        o.handle_seed(&s, T0).unwrap();
        // Each runs its own clock: it beacons in its slot, so it may witness.
        (T0..=t).step_by(100).for_each(|u| o.handle_timeout(u));
        let rssi = DeciDb(-600 - 10 * i16::try_from(i).unwrap());
        let id = o
            .handle_radio_frame(&frame.payload, rssi, DeciDb(150), 2_412_000, t + 3, t + 3)
            .unwrap();
        gossip.push(signed_witness(o, id, t + 3).bytes);
    }
    for g in &gossip {
        assert_eq!(a.handle_peer_witness(g), Ok(()));
    }
    assert_eq!(
        a.handle_peer_witness(&gossip[0]),
        Err(NotRecorded::Duplicate)
    );
    let seen = a.witnessed_by();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].witness, others[1].id());
    assert_eq!(seen[1].rssi, DeciDb(-610));
    // Another node's beacon is not ours; a tampered witness is refused.
    assert_eq!(
        others[0].handle_peer_witness(&gossip[1]),
        Err(NotRecorded::OtherBeacon)
    );
    let mut bad = gossip[0].clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let mut fresh = core(1, &oracle);
    fresh.handle_seed(&s, T0).unwrap();
    assert!(matches!(
        fresh.handle_peer_witness(&bad),
        Err(NotRecorded::Invalid(_))
    ));
    // A new epoch starts a new list.
    a.handle_seed(
        &Envelope::sign(&oracle, &seed(2, T0 + 60_000)).to_bytes(),
        T0 + 60_000,
    )
    .unwrap();
    assert!(a.witnessed_by().is_empty());
}

#[test]
fn suspicious_beacons_are_not_witnessed() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut b = core(2, &oracle);
    let beaconer = NodeKey::from_seed(&[1; 32]);
    let s1 = seed(1, T0);
    b.handle_seed(&Envelope::sign(&oracle, &s1).to_bytes(), T0)
        .unwrap();
    let (start, _) = schedule::beacon_window(&s1, &beaconer.id());
    let good = Beacon {
        epoch: 1,
        nonce: schedule::beacon_nonce(&s1.seed.0, &beaconer.id()).into(),
        freq_khz: 2_412_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(30),
        cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
        tx_ms: start + 100,
    };
    let mut check = |b_msg: &Beacon| {
        let bytes = Envelope::sign(&beaconer, b_msg).to_bytes();
        let rx = start + 200;
        let r = b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, rx);
        // Undo the dedupe so each case is judged alone.
        b.witnessed.clear();
        r.map(drop)
    };
    assert_eq!(check(&good), Ok(()));
    assert_eq!(
        check(&Beacon {
            epoch: 2,
            ..good.clone()
        }),
        Err(Ignored::WrongEpoch)
    );
    assert_eq!(
        check(&Beacon {
            nonce: [0; 16].into(),
            ..good.clone()
        }),
        Err(Ignored::BadNonce)
    );
    assert_eq!(
        check(&Beacon {
            tx_ms: start + 30_000,
            ..good.clone()
        }),
        Err(Ignored::WrongSlot)
    );
    assert_eq!(
        b.handle_radio_frame(b"\x01\x03garbage", DeciDb(0), DeciDb(0), 1, T0, T0),
        Err(Ignored::Invalid(Reason::Malformed))
    );
}

/// A core (node 2) with epoch 1 of [`seed`], and a beacon of node 1 sent `into_slot` ms
/// into node 1's slot: `(core, beacon bytes, beacon tx_ms)`.
fn witness_of_a_beacon(into_slot: u64) -> (Core, Vec<u8>, u64) {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut b = core(2, &oracle);
    let beaconer = NodeKey::from_seed(&[1; 32]);
    let s1 = seed(1, T0);
    b.handle_seed(&Envelope::sign(&oracle, &s1).to_bytes(), T0)
        .unwrap();
    let (start, _) = schedule::beacon_window(&s1, &beaconer.id());
    let tx_ms = start + into_slot;
    let beacon = Beacon {
        epoch: 1,
        nonce: schedule::beacon_nonce(&s1.seed.0, &beaconer.id()).into(),
        freq_khz: 2_412_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(30),
        cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
        tx_ms,
    };
    (b, Envelope::sign(&beaconer, &beacon).to_bytes(), tx_ms)
}

#[test]
fn a_witness_carries_the_radios_receive_time() {
    let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
    // Heard 40 ms after it was sent; the loop gets to it 900 ms later.
    let rx = tx_ms + 40;
    let now = rx + 900;
    let id = b
        .handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, now)
        .unwrap();
    let proof = signed_witness(&mut b, id, now);
    assert_eq!(
        envelope::open::<Witness>(&proof.bytes).unwrap().msg.rx_ms,
        rx
    );
    // Everything else is stamped with the core's clock.
    assert_eq!(proof.created_ms, now);
    assert_eq!(b.activity().last_witness_ms, Some(now));
}

#[test]
fn implausible_receive_times_are_refused() {
    let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
    let tol = b.cfg.slot_tolerance_ms;
    let now = tx_ms + 500;
    let mut check = |rx_ms: u64| {
        let r = b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx_ms, now);
        let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
        if let Err(why) = r {
            assert_eq!(events, vec![Event::Ignored(why)], "rx_ms {rx_ms}");
        }
        // Undo the dedupe so each case is judged alone.
        b.witnessed.clear();
        r.map(drop)
    };
    // Ahead of our clock by up to the tolerance: accepted; beyond it: refused.
    assert_eq!(check(now + tol), Ok(()));
    assert_eq!(check(now + tol + 1), Err(Ignored::BadRxTime));
    assert_eq!(check(now + 3_600_000), Err(Ignored::BadRxTime));
    // Before the beacon's tx_ms by up to the tolerance: accepted; earlier: refused.
    assert_eq!(check(tx_ms - tol), Ok(()));
    assert_eq!(check(tx_ms - tol - 1), Err(Ignored::BadRxTime));
    assert_eq!(check(0), Err(Ignored::BadRxTime));
    // A refused frame does not count as witnessed: the same beacon heard at a plausible
    // time afterwards still is.
    let (mut b, bytes, tx_ms) = witness_of_a_beacon(100);
    let now = tx_ms + 500;
    let frame = |b: &mut Core, rx| {
        b.handle_radio_frame(&bytes, DeciDb(-700), DeciDb(100), 2_412_000, rx, now)
    };
    assert_eq!(frame(&mut b, now + tol + 1), Err(Ignored::BadRxTime));
    assert!(frame(&mut b, tx_ms + 10).is_ok());
    assert_eq!(frame(&mut b, tx_ms + 20), Err(Ignored::Duplicate));
}

#[test]
fn forged_seeds_and_acks_change_nothing() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let forger = NodeKey::from_seed(&[101; 32]);
    let mut c = core(1, &oracle);
    assert!(
        c.handle_seed(&Envelope::sign(&forger, &seed(1, T0)).to_bytes(), T0)
            .is_err()
    );
    assert!(c.epoch().is_none());
    let ack = Ack {
        node: c.id(),
        issued_ms: T0,
        entries: vec![AckEntry {
            proof_id: ProofId::of(b"x"),
            verdict: Verdict::Accepted,
        }],
    };
    assert!(
        c.handle_ack(&seal_acks(&forger, T0, std::slice::from_ref(&ack))[0], T0)
            .is_err()
    );
    assert_eq!(c.activity().last_ack_ms, None);
    assert_eq!(
        c.handle_ack(
            &seal_acks(&oracle, T0, std::slice::from_ref(&ack))[0],
            T0 + 1
        )
        .unwrap(),
        ack.entries
    );
    assert_eq!(c.activity().last_ack_ms, Some(T0 + 1));
    // An older or equal epoch never replaces the current one.
    c.handle_seed(&Envelope::sign(&oracle, &seed(5, T0)).to_bytes(), T0)
        .unwrap();
    assert!(
        !c.handle_seed(&Envelope::sign(&oracle, &seed(4, T0)).to_bytes(), T0)
            .unwrap()
    );
    assert_eq!(c.epoch().unwrap().epoch, 5);
}

#[test]
fn clock_skew_is_reported() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let mut c = core(1, &oracle);
    c.handle_seed(
        &Envelope::sign(&oracle, &seed(1, T0)).to_bytes(),
        T0 + 3_600_000,
    )
    .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        events.contains(&Event::ClockSkew { skew_ms: 3_600_000 }),
        "{events:?}"
    );
}
