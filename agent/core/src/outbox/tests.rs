//! The outbox's transitions, one test each: staging, committing, sending, acks, failures,
//! evictions, the clock.

use super::*;

fn id(n: u32) -> ProofId {
    ProofId::of(&n.to_le_bytes())
}

/// Proof `n`: its id is `id(n)`, its `len` bytes all `n`.
fn proof(n: u32, kind: Kind, len: usize, created_ms: u64) -> Proof {
    Proof {
        id: id(n),
        kind,
        bytes: vec![n.to_le_bytes()[0]; len],
        created_ms,
    }
}

fn small() -> OutboxConfig {
    OutboxConfig {
        max_entries: 4,
        max_bytes: 1000,
        ack_timeout_ms: 1_000,
        max_backoff_ms: 8_000,
        max_in_flight: 2,
        reconnect_spread_ms: 100,
    }
}

/// The `(seq, id)` of a commit's new rows.
fn rows(c: &Commit) -> Vec<(u64, ProofId)> {
    c.writes.iter().map(|w| (w.seq, w.id)).collect()
}

/// Sends whatever is due from `from` to `to` (1 ms steps), acking nothing; the ids in order.
fn sends(o: &mut Outbox, from: u64, to: u64) -> Vec<ProofId> {
    let mut out = Vec::new();
    for t in from..=to {
        while let Some(e) = o.poll_send(t) {
            let id = e.id;
            o.mark_sent(&id, t);
            out.push(id);
        }
    }
    out
}

#[test]
fn a_proof_is_committed_before_it_is_sent_and_its_deletion_after_the_ack() {
    let mut o = Outbox::new(small(), 7).with_commit_interval(20);
    assert!(o.stage(proof(1, Kind::Heartbeat, 10, 1_000), 1_000));
    assert!(
        !o.stage(proof(1, Kind::Heartbeat, 10, 1_000), 1_001),
        "staged already"
    );
    assert_eq!((o.len(), o.bytes()), (0, 0), "staged is not pending yet");
    assert_eq!(o.poll_timeout(), Some(1_020), "the commit window");
    assert_eq!(o.poll_commit(1_019, false), None);
    assert_eq!(o.poll_send(1_019), None);
    let c = o.poll_commit(1_020, false).unwrap();
    assert_eq!(
        c,
        Commit {
            writes: vec![Write {
                seq: 1,
                id: id(1),
                kind: Kind::Heartbeat,
                created_ms: 1_000,
                bytes: vec![1; 10],
            }],
            ..Commit::default()
        }
    );
    // Being written: it takes room, but is not sent before it is on disk.
    assert_eq!((o.len(), o.bytes()), (1, 10));
    assert!(
        !o.stage(proof(1, Kind::Heartbeat, 10, 1_000), 1_021),
        "pending"
    );
    assert_eq!(o.poll_send(1_021), None);
    assert_eq!(o.poll_timeout(), None);
    o.handle_committed(1_025);
    assert_eq!(o.poll_timeout(), Some(1_025));
    let e = o.poll_send(1_025).unwrap();
    assert_eq!((e.seq, e.id, e.envelope()), (1, id(1), &[1u8; 10][..]));
    assert_eq!(o.mark_sent(&id(1), 1_025), 1);
    assert_eq!(o.in_flight(), 1);
    // The final ack: gone from the outbox at once, deleted from the store by a commit.
    assert_eq!(o.stage_deletion(&id(1), 1_100), Some(Kind::Heartbeat));
    assert_eq!((o.len(), o.bytes(), o.in_flight()), (0, 0, 0));
    assert_eq!(o.stage_deletion(&id(1), 1_101), None, "a duplicate ack");
    assert_eq!(o.poll_timeout(), Some(1_120));
    assert_eq!(o.poll_commit(1_119, false), None);
    let c = o.poll_commit(1_120, false).unwrap();
    assert_eq!(
        c,
        Commit {
            deletions: vec![id(1)],
            ..Commit::default()
        }
    );
    o.handle_committed(1_130);
    assert_eq!(o.poll_commit(5_000, true), None, "nothing left to write");
    assert_eq!(o.poll_timeout(), None);
}

#[test]
fn a_failed_commit_stages_its_proofs_and_deletions_again_and_retries_in_a_second() {
    let mut o = Outbox::new(small(), 7);
    assert!(o.restore(1, proof(1, Kind::Witness, 10, 0), 0));
    o.stage(proof(2, Kind::Heartbeat, 10, 100), 100);
    o.stage(proof(3, Kind::Witness, 10, 100), 100);
    assert_eq!(o.stage_deletion(&id(1), 100), Some(Kind::Witness));
    let c = o.poll_commit(120, false).unwrap();
    assert_eq!(rows(&c), [(2, id(2)), (3, id(3))]);
    assert_eq!(c.deletions, [id(1)]);
    // Signed while the commit is written: staged behind it.
    o.stage(proof(4, Kind::Heartbeat, 10, 130), 130);
    o.handle_commit_failed(120);
    assert_eq!((o.len(), o.bytes()), (0, 0), "nothing was written");
    assert_eq!(o.poll_send(10_000), None);
    assert_eq!(o.poll_timeout(), Some(1_120));
    assert_eq!(o.poll_commit(1_119, false), None);
    let c = o.poll_commit(1_120, false).unwrap();
    // In the same order; sequence numbers are not reused.
    assert_eq!(rows(&c), [(4, id(2)), (5, id(3)), (6, id(4))]);
    assert_eq!(c.writes[0].bytes, vec![2; 10]);
    assert_eq!(c.deletions, [id(1)]);
    o.handle_committed(1_130);
    assert_eq!(sends(&mut o, 1_130, 1_130), [id(2), id(3)]);
}

#[test]
fn staging_into_a_full_outbox_evicts_stored_and_staged_heartbeats() {
    let mut o = Outbox::new(small(), 1);
    o.restore(1, proof(1, Kind::Heartbeat, 100, 0), 0);
    o.restore(2, proof(2, Kind::Onboard, 100, 0), 0);
    o.restore(3, proof(3, Kind::BandwidthReceipt, 100, 0), 0);
    // Room for one more: the heartbeat fits; each witness then evicts the oldest heartbeat,
    // first the stored one, then the one of this very commit.
    o.stage(proof(4, Kind::Heartbeat, 100, 10), 10);
    o.stage(proof(5, Kind::Witness, 100, 10), 10);
    o.stage(proof(6, Kind::Witness, 100, 10), 10);
    let c = o.poll_commit(30, false).unwrap();
    assert_eq!(
        c,
        Commit {
            writes: vec![
                Write {
                    seq: 5,
                    id: id(5),
                    kind: Kind::Witness,
                    created_ms: 10,
                    bytes: vec![5; 100],
                },
                Write {
                    seq: 6,
                    id: id(6),
                    kind: Kind::Witness,
                    created_ms: 10,
                    bytes: vec![6; 100],
                },
            ],
            // The stored victim is deleted in the same commit; the staged one never written.
            deletions: vec![id(1)],
            evicted: vec![(id(1), Kind::Heartbeat), (id(4), Kind::Heartbeat)],
            refused: vec![],
        }
    );
    assert_eq!((o.len(), o.bytes()), (4, 400));
    assert!(!o.contains(&id(1)) && !o.contains(&id(4)));
}

#[test]
fn a_proof_that_would_evict_a_higher_priority_one_is_refused() {
    let mut o = Outbox::new(small(), 1);
    o.restore(1, proof(1, Kind::Onboard, 100, 0), 0);
    o.restore(2, proof(2, Kind::Witness, 100, 0), 0);
    o.restore(3, proof(3, Kind::BandwidthReceipt, 100, 0), 0);
    o.restore(4, proof(4, Kind::BandwidthReceipt, 100, 0), 0);
    // A heartbeat may not evict a witness; a witness may; an onboarding may evict the new
    // witness; a receipt finds only critical proofs.
    o.stage(proof(5, Kind::Heartbeat, 10, 10), 10);
    o.stage(proof(6, Kind::Witness, 10, 10), 10);
    o.stage(proof(7, Kind::Onboard, 10, 10), 10);
    o.stage(proof(8, Kind::BandwidthReceipt, 10, 10), 10);
    let c = o.poll_commit(30, false).unwrap();
    assert_eq!(rows(&c), [(6, id(7))]);
    assert_eq!(c.deletions, [id(2)]);
    assert_eq!(c.evicted, [(id(2), Kind::Witness), (id(6), Kind::Witness)]);
    assert_eq!(
        c.refused,
        [(id(5), Kind::Heartbeat), (id(8), Kind::BandwidthReceipt)]
    );
    o.handle_committed(30);
    assert_eq!((o.len(), o.bytes()), (4, 310));
}

#[test]
fn usage_receipts_give_way_to_critical_proofs_but_not_to_heartbeats() {
    let mut o = Outbox::new(small(), 1);
    for n in 1..=4 {
        o.restore(u64::from(n), proof(n, Kind::UsageReceipt, 100, 0), 0);
    }
    // Cumulative receipts: the next one repeats a lost one's totals, so a bandwidth receipt
    // evicts the oldest; a heartbeat is worth less and is refused.
    o.stage(proof(5, Kind::Heartbeat, 10, 10), 10);
    o.stage(proof(6, Kind::BandwidthReceipt, 10, 10), 10);
    let c = o.poll_commit(30, false).unwrap();
    assert_eq!(rows(&c), [(5, id(6))]);
    assert_eq!(c.evicted, [(id(1), Kind::UsageReceipt)]);
    assert_eq!(c.refused, [(id(5), Kind::Heartbeat)]);
}

#[test]
fn an_ack_of_a_proof_not_yet_committed_drops_it_from_the_stage() {
    let mut o = Outbox::new(small(), 1);
    o.stage(proof(1, Kind::Heartbeat, 10, 0), 0);
    o.stage(proof(2, Kind::Heartbeat, 10, 0), 0);
    assert_eq!(o.stage_deletion(&id(1), 5), Some(Kind::Heartbeat));
    let c = o.poll_commit(20, false).unwrap();
    // Never written, so nothing to delete.
    assert_eq!((rows(&c), c.deletions), (vec![(1, id(2))], vec![]));
    // A stage emptied by an ack leaves nothing to commit and no deadline behind.
    let mut o = Outbox::new(small(), 1);
    o.stage(proof(1, Kind::Heartbeat, 10, 0), 0);
    assert_eq!(o.stage_deletion(&id(1), 5), Some(Kind::Heartbeat));
    assert_eq!(o.poll_timeout(), None);
    assert_eq!(o.poll_commit(100, true), None);
}

#[test]
fn one_commit_at_a_time() {
    let mut o = Outbox::new(small(), 1);
    o.stage(proof(1, Kind::Heartbeat, 10, 0), 0);
    let c = o.poll_commit(0, true).unwrap();
    assert_eq!(rows(&c), [(1, id(1))]);
    o.stage(proof(2, Kind::Heartbeat, 10, 5), 5);
    assert_eq!(o.poll_commit(1_000, true), None, "the first is in flight");
    assert_eq!(o.poll_timeout(), None);
    // Acked while being written (in case it was): deleted by the next commit.
    assert_eq!(o.stage_deletion(&id(1), 6), Some(Kind::Heartbeat));
    o.handle_committed(10);
    assert_eq!(o.poll_send(10), None);
    assert_eq!(
        o.poll_timeout(),
        Some(25),
        "the second's window, from its staging"
    );
    let c = o.poll_commit(25, false).unwrap();
    assert_eq!((rows(&c), c.deletions), (vec![(2, id(2))], vec![id(1)]));
    o.handle_committed(30);
    // A report with no commit in flight changes nothing.
    o.handle_commit_failed(30);
    assert_eq!((o.len(), o.poll_timeout()), (1, Some(30)));
}

#[test]
fn a_full_batch_is_due_at_once() {
    let cfg = OutboxConfig {
        max_entries: 100,
        max_bytes: 100_000,
        ..small()
    };
    let mut o = Outbox::new(cfg, 1).with_commit_interval(500);
    assert_eq!(COMMIT_BATCH, 64);
    for n in 1..64 {
        o.stage(proof(n, Kind::Heartbeat, 10, 0), 0);
    }
    assert_eq!(o.poll_commit(1, false), None, "63 wait for the window");
    o.stage(proof(64, Kind::Heartbeat, 10, 1), 1);
    assert_eq!(o.poll_commit(1, false).map(|c| c.writes.len()), Some(64));
}

#[test]
fn a_clock_step_moves_the_commit_window() {
    let mut o = Outbox::new(small(), 1).with_commit_interval(300);
    o.stage(proof(1, Kind::Heartbeat, 10, 1_000), 1_000);
    assert_eq!(o.poll_timeout(), Some(1_300));
    o.clock_stepped(-500);
    assert_eq!(o.poll_timeout(), Some(800));
    assert_eq!(o.poll_commit(799, false), None);
    o.clock_stepped(200);
    assert_eq!(o.poll_commit(999, false), None);
    assert!(o.poll_commit(1_000, false).is_some());
}

#[test]
fn restored_rows_are_due_in_order_and_new_proofs_numbered_after_them() {
    let mut o = Outbox::new(small(), 1);
    assert!(o.restore(7, proof(7, Kind::Witness, 10, 5), 100));
    assert!(o.restore(3, proof(3, Kind::Heartbeat, 20, 9), 100));
    assert!(
        !o.restore(9, proof(3, Kind::Heartbeat, 20, 9), 100),
        "same id"
    );
    assert_eq!(
        (o.len(), o.bytes(), o.oldest_created_ms()),
        (2, 30, Some(5))
    );
    assert_eq!(o.poll_timeout(), Some(100));
    assert_eq!(
        o.get(&id(7)).map(|e| e.envelope().to_vec()),
        Some(vec![7; 10])
    );
    assert_eq!(sends(&mut o, 100, 100), [id(3), id(7)]);
    o.stage(proof(1, Kind::Heartbeat, 10, 100), 100);
    let c = o.poll_commit(100, true).unwrap();
    assert_eq!(rows(&c), [(8, id(1))]);
}

#[test]
fn nothing_is_sent_or_scheduled_while_disconnected_but_commits_go_on() {
    let mut o = Outbox::new(small(), 1);
    o.restore(1, proof(1, Kind::Heartbeat, 10, 0), 0);
    o.disconnected();
    o.stage(proof(2, Kind::Heartbeat, 10, 0), 0);
    assert_eq!(o.poll_timeout(), Some(20), "the commit window alone");
    assert_eq!(o.poll_send(50), None);
    let c = o.poll_commit(20, false).unwrap();
    o.handle_committed(20);
    assert_eq!(rows(&c), [(2, id(2))]);
    assert_eq!(o.poll_timeout(), None);
    o.reconnected(50);
    let t = o.poll_timeout().unwrap();
    assert!((50..=150).contains(&t), "{t}");
    assert_eq!(sends(&mut o, 50, 150), [id(1), id(2)]);
}

#[test]
fn a_clock_step_moves_every_pending_time_with_it() {
    let mut o = Outbox::new(small(), 7);
    let t = 100_000;
    o.restore(1, proof(1, Kind::Heartbeat, 10, t), t + 2_000);
    o.restore(2, proof(2, Kind::Heartbeat, 10, t), t);
    assert_eq!(o.poll_send(t).map(|e| e.seq), Some(2));
    o.mark_sent(&id(2), t);
    // The clock is set back 30 s: the first is still due 2 s from "now", the second's
    // resend timeout still 1 s (plus jitter) after its send.
    o.clock_stepped(-30_000);
    let now = t - 30_000;
    let resend = o.poll_timeout().unwrap();
    assert!((now + 1_000..=now + 1_200).contains(&resend), "{resend}");
    assert!(o.poll_send(now + 500).is_none());
    assert_eq!(o.poll_send(now + 2_000).map(|e| e.seq), Some(1));
}

#[test]
fn sends_in_order_respecting_the_in_flight_limit() {
    let mut o = Outbox::new(small(), 7);
    for n in 0..3 {
        assert!(o.restore(u64::from(n) + 1, proof(n, Kind::Witness, 100, 0), 0));
    }
    let a = o.poll_send(0).unwrap().id;
    o.mark_sent(&a, 0);
    let b = o.poll_send(0).unwrap().id;
    o.mark_sent(&b, 0);
    assert_eq!((a, b), (id(0), id(1)));
    assert!(o.poll_send(0).is_none(), "two in flight is the limit");
    o.stage_deletion(&a, 0);
    assert_eq!(o.poll_send(0).unwrap().id, id(2));
    assert_eq!(o.len(), 2);
    assert_eq!(o.bytes(), 200);
}

#[test]
fn resends_back_off_exponentially_with_bounded_jitter() {
    let mut o = Outbox::new(
        OutboxConfig {
            max_in_flight: 10,
            ..small()
        },
        3,
    );
    o.restore(1, proof(1, Kind::Witness, 10, 0), 0);
    let mut t = 0;
    let mut sends = Vec::new();
    while t < 40_000 {
        if let Some(e) = o.poll_send(t) {
            let id = e.id;
            o.mark_sent(&id, t);
            sends.push(t);
        }
        t += 10;
    }
    // Gaps of ~1, 2, 4, 8, 8, 8 s (+ up to 20% jitter each).
    let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = [1_000u64, 2_000, 4_000, 8_000, 8_000];
    for (g, e) in gaps.iter().zip(expected) {
        assert!(*g >= e && *g <= e + e / 5 + 210, "gaps {gaps:?}");
    }
}

#[test]
fn reconnect_makes_everything_in_flight_due_soon() {
    let mut o = Outbox::new(
        OutboxConfig {
            max_in_flight: 10,
            ..small()
        },
        3,
    );
    for n in 1..=3 {
        o.restore(u64::from(n), proof(n, Kind::Witness, 10, 0), 0);
        let e = o.poll_send(0).unwrap().id;
        o.mark_sent(&e, 0);
    }
    assert!(o.poll_send(50).is_none());
    o.reconnected(100);
    assert_eq!(sends(&mut o, 100, 200).len(), 3);
}

#[test]
fn a_proof_due_again_keeps_its_attempt_count_after_a_timeout_or_a_reconnect() {
    let mut o = Outbox::new(small(), 3);
    o.restore(1, proof(1, Kind::Witness, 10, 0), 0);
    assert_eq!(o.poll_send(0).map(|e| e.id), Some(id(1)));
    assert_eq!(o.mark_sent(&id(1), 0), 1);
    // Not acked within the timeout (1 s plus at most a fifth of it): due again, second send.
    let t = (1..=1_300)
        .find(|&t| o.poll_send(t).is_some())
        .expect("resent");
    assert_eq!(o.mark_sent(&id(1), t), 2);
    // The connection came back: due again at once (after the spread), third send, and the
    // next resend waits the backoff of a third attempt (4 s), not a first one.
    o.reconnected(t + 10);
    let r = (t + 10..=t + 200)
        .find(|&r| o.poll_send(r).is_some())
        .expect("resent after the reconnect");
    assert_eq!(o.mark_sent(&id(1), r), 3);
    assert!(o.poll_send(r + 3_999).is_none());
    assert_eq!(o.poll_send(r + 4_200).map(|e| e.id), Some(id(1)));
    assert_eq!(o.mark_sent(&id(1), r + 4_200), 4);
}

#[test]
fn a_backlog_goes_out_in_signing_order_after_an_outage_a_timeout_or_a_restart() {
    let cfg = OutboxConfig {
        max_entries: 100,
        max_bytes: 100_000,
        max_in_flight: 100,
        ..small()
    };
    let signed: Vec<ProofId> = (1..=20).map(id).collect();
    for seed in [1, 3, 7, 42] {
        let mut o = Outbox::new(cfg.clone(), seed);
        // Signed and sent over a second, never acked: the broker went away unnoticed.
        for n in 1..=10 {
            let t = u64::from(n - 1) * 100;
            o.restore(u64::from(n), proof(n, Kind::Heartbeat, 10, t), t);
            assert_eq!(o.poll_send(t).map(|e| e.id), Some(id(n)));
            o.mark_sent(&id(n), t);
        }
        // Signed while disconnected: never sent.
        for n in 11..=20 {
            let t = u64::from(n - 1) * 100;
            o.restore(u64::from(n), proof(n, Kind::Heartbeat, 10, t), t);
        }
        // Reconnected: the whole backlog, in flight or never sent, oldest first.
        o.reconnected(2_500);
        assert_eq!(sends(&mut o, 2_500, 2_700), signed, "seed {seed}");
        // Sent together and never acked: the resend timeout (1 s, plus one jitter for the
        // burst) brings them back together, in order again.
        let mut b = Outbox::new(cfg.clone(), seed);
        for n in 1..=20 {
            b.restore(u64::from(n), proof(n, Kind::Heartbeat, 10, 0), 0);
        }
        assert_eq!(sends(&mut b, 0, 0), signed, "seed {seed}");
        assert_eq!(sends(&mut b, 1, 2_500), signed, "seed {seed}");
        // A restart loads the rows (in any order) into a new outbox: sent in signing order.
        let mut r = Outbox::new(cfg.clone(), seed);
        for n in [
            5u32, 1, 20, 3, 2, 4, 19, 18, 17, 16, 6, 7, 8, 9, 10, 15, 14, 13, 12, 11,
        ] {
            r.restore(u64::from(n), proof(n, Kind::Heartbeat, 10, 0), 30_000);
        }
        assert_eq!(sends(&mut r, 30_000, 30_000), signed, "seed {seed}");
    }
}

#[test]
fn eviction_takes_oldest_low_priority_first_and_never_critical() {
    let mut o = Outbox::new(small(), 1);
    o.restore(1, proof(1, Kind::Witness, 100, 0), 0);
    o.restore(2, proof(2, Kind::Heartbeat, 100, 0), 0);
    o.restore(3, proof(3, Kind::BandwidthReceipt, 100, 0), 0);
    o.restore(4, proof(4, Kind::Heartbeat, 100, 0), 0);
    // Full by count: a new witness evicts the oldest heartbeat.
    assert_eq!(o.make_room(Kind::Witness, 100), Ok(vec![id(2)]));
    // A heartbeat may not evict a witness, only heartbeats.
    assert_eq!(o.make_room(Kind::Heartbeat, 100), Ok(vec![id(2)]));
    o.stage_deletion(&id(2), 0);
    o.stage_deletion(&id(4), 0);
    o.restore(5, proof(5, Kind::Onboard, 100, 0), 0);
    o.restore(6, proof(6, Kind::BandwidthReceipt, 100, 0), 0);
    // Now: witness, receipt, onboard, receipt. A heartbeat cannot displace any of them.
    assert_eq!(o.make_room(Kind::Heartbeat, 10), Err(Full));
    // A receipt may displace the witness.
    assert_eq!(o.make_room(Kind::BandwidthReceipt, 10), Ok(vec![id(1)]));
    o.stage_deletion(&id(1), 0);
    // Critical only: nothing can be evicted.
    o.restore(7, proof(7, Kind::Onboard, 100, 0), 0);
    assert_eq!(o.make_room(Kind::BandwidthReceipt, 10), Err(Full));
    // Byte limit too.
    let mut o = Outbox::new(small(), 1);
    o.restore(1, proof(1, Kind::Heartbeat, 600, 0), 0);
    assert_eq!(o.make_room(Kind::Witness, 500), Ok(vec![id(1)]));
    assert_eq!(o.make_room(Kind::Witness, 300), Ok(vec![]));
}

#[test]
fn poll_timeout_tracks_due_and_resends() {
    let mut o = Outbox::new(small(), 1);
    assert_eq!(o.poll_timeout(), None);
    o.restore(1, proof(1, Kind::Witness, 10, 0), 500);
    assert_eq!(o.poll_timeout(), Some(500));
    let e = o.poll_send(500).unwrap().id;
    o.mark_sent(&e, 500);
    let t = o.poll_timeout().unwrap();
    assert!((1_500..=1_700).contains(&t), "{t}");
    assert_eq!(o.oldest_created_ms(), Some(0));
    o.stage_deletion(&id(1), 600);
    assert_eq!(
        o.poll_timeout(),
        Some(620),
        "the deletion's commit window alone"
    );
}
