//! The shell's unit tests: what an operator is told about a refused login, and how inviting a
//! measurer ends.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use wisp_protocol::{NodeId, NodeKey};

use super::backhaul::{Invited, invite};
use super::mqtt::refusal_hint;
use crate::bandwidth::negotiate::encode_body;
use crate::bandwidth::{InviteAnswer, InviteRefusal, NegotiateError, Negotiator};

#[test]
fn a_refused_login_says_what_to_check() {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError};
    let login = refusal_hint(&ConnectionError::ConnectionRefused(
        Code::BadUserNamePassword,
    ));
    assert!(login.contains("refused this node's login"), "{login}");
    assert!(login.contains("pinned oracle key"), "{login}");
    let id = refusal_hint(&ConnectionError::ConnectionRefused(Code::BadClientId));
    assert!(id.contains("client id"), "{id}");
    let other = refusal_hint(&ConnectionError::RequestsDone);
    assert!(!other.contains("login"), "{other}");
}

/// Answers the invitations with scripted results, in order, and counts them.
struct Scripted(StdMutex<Vec<Result<Vec<u8>, NegotiateError>>>);

impl Scripted {
    fn new(answers: Vec<Result<Vec<u8>, NegotiateError>>) -> Self {
        Self(StdMutex::new(answers))
    }

    fn left(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Negotiator for Scripted {
    async fn request(&self, _peer: NodeId, _body: Vec<u8>) -> Result<Vec<u8>, NegotiateError> {
        self.0.lock().unwrap().remove(0)
    }
}

fn busy() -> Result<Vec<u8>, NegotiateError> {
    Ok(encode_body(&InviteAnswer::Refused(InviteRefusal::Busy)))
}

#[tokio::test]
async fn a_failed_invitation_says_why() {
    let measurer = NodeKey::from_seed(&[2; 32]).id();
    let unreachable = || {
        Err(NegotiateError::unreachable(
            "dialling 12D3KooW… failed: Connection refused (os error 111)",
        ))
    };
    // (answers, outcome)
    let cases = [
        (
            vec![busy(), unreachable(), unreachable()],
            Invited::Failed("dialling 12D3KooW… failed: Connection refused (os error 111)".into()),
        ),
        (
            vec![unreachable(), busy(), busy()],
            Invited::Failed("the measurer is busy (its test queue is full)".into()),
        ),
        (
            vec![Err(NegotiateError::Timeout); 3],
            Invited::Failed("no answer in time".into()),
        ),
        (
            vec![Ok(Vec::new()); 3],
            Invited::Failed(
                "the measurer takes no bandwidth tests (bandwidth.enabled = false)".into(),
            ),
        ),
        (
            vec![Ok(vec![0xff]); 3],
            Invited::Failed("the measurer's answer was unreadable".into()),
        ),
        (
            vec![busy(), Ok(encode_body(&InviteAnswer::Queued))],
            Invited::Queued,
        ),
        (
            vec![Ok(encode_body(&InviteAnswer::Refused(
                InviteRefusal::NotAssigned,
            )))],
            Invited::Declined(InviteRefusal::NotAssigned),
        ),
    ];
    for (i, (answers, want)) in cases.into_iter().enumerate() {
        let tries = answers.len() as u64;
        let n = Scripted::new(answers);
        let mut pauses = Vec::new();
        let got = invite(&n, measurer, 5, Duration::MAX, |d| {
            pauses.push(d);
            std::future::ready(())
        })
        .await;
        assert_eq!(got, want, "case {i}");
        assert_eq!(n.left(), 0, "case {i}: every scripted answer was asked for");
        // 10 s after the first attempt, 20 s after the second; none after the last.
        let want_pauses: Vec<Duration> = (1..tries).map(|a| Duration::from_secs(10 * a)).collect();
        assert_eq!(pauses, want_pauses, "case {i}");
    }
    // A measurer that has not got the epoch yet is asked again, until the epoch's end:
    // 15 s left allow the 10 s pause, not the 20 s one.
    let not_yet = || Ok(encode_body(&InviteAnswer::Refused(InviteRefusal::NotYet)));
    let n = Scripted::new(vec![not_yet(), not_yet()]);
    let mut pauses = Vec::new();
    let got = invite(&n, measurer, 5, Duration::from_secs(15), |d| {
        pauses.push(d);
        std::future::ready(())
    })
    .await;
    assert_eq!(
        got,
        Invited::Failed(
            "the measurer has not got this epoch yet; the epoch ended before another attempt"
                .into()
        )
    );
    assert_eq!((n.left(), pauses), (0, vec![Duration::from_secs(10)]));
}

#[test]
fn a_build_without_fault_injection_refuses_a_fault_rather_than_ignore_it() {
    use super::Faults;
    let shave = Faults {
        shave_uploads_permille: Some(100),
    };
    let refused = shave.check_injectable(false).unwrap_err().to_string();
    assert!(refused.contains("100 thousandths"), "{refused}");
    assert!(refused.contains("`cheats`"), "{refused}");
    assert!(shave.check_injectable(true).is_ok());
    assert!(Faults::default().check_injectable(false).is_ok());
}

/// Lets the spawned tasks run as far as they can without time passing (the clock is paused).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Moves the paused clock to `at` after `start`.
async fn advance_to(start: tokio::time::Instant, at: Duration) {
    let now = tokio::time::Instant::now();
    tokio::time::advance((start + at).saturating_duration_since(now)).await;
    settle().await;
}

/// A broker that refuses every connection attempt at once, except the attempts the script
/// says connect (`true`).
struct ScriptedBroker(std::collections::VecDeque<bool>);

impl super::mqtt::PollEvents for ScriptedBroker {
    fn poll(
        &mut self,
    ) -> impl std::future::Future<Output = Result<rumqttc::Event, rumqttc::ConnectionError>> + Send
    {
        std::future::ready(if self.0.pop_front().unwrap_or(false) {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(
                rumqttc::ConnAck {
                    session_present: false,
                    code: rumqttc::ConnectReturnCode::Success,
                },
            )))
        } else {
            Err(rumqttc::ConnectionError::RequestsDone)
        })
    }
}

#[test]
fn the_reconnect_jitter_is_at_most_half_the_wait() {
    use super::mqtt::Backoff;
    for entropy in [0, 1, 249, 250, 251, 12_345, u64::MAX] {
        let mut b = Backoff::new();
        for base in [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000] {
            let wait = b.next_wait(entropy);
            assert!(
                wait >= Duration::from_millis(base) && wait <= Duration::from_millis(base * 3 / 2),
                "entropy {entropy}: {wait:?} for a wait of {base} ms"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn reconnects_back_off_from_half_a_second_doubling_to_thirty_and_afresh_once_connected() {
    use super::mqtt::{Incoming, forward_events};
    // Nine refusals, a connection that drops at once, then refusals again.
    let script = (0..14).map(|i| i == 9).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let start = tokio::time::Instant::now();
    tokio::spawn(forward_events(ScriptedBroker(script), || 0, tx));
    settle().await;
    assert!(matches!(rx.try_recv(), Ok(Incoming::Disconnected(_))));
    // Each wait (no jitter here), and whether the attempt at its end connects first.
    let waits = [
        (500, false),
        (1_000, false),
        (2_000, false),
        (4_000, false),
        (8_000, false),
        (16_000, false),
        (30_000, false),
        (30_000, false),
        (30_000, true),
        (500, false),
        (1_000, false),
    ];
    let mut at = Duration::ZERO;
    for (i, (wait, connects)) in waits.into_iter().enumerate() {
        at += Duration::from_millis(wait);
        advance_to(start, at - Duration::from_millis(1)).await;
        assert!(rx.try_recv().is_err(), "attempt {i}: before its time");
        advance_to(start, at).await;
        if connects {
            assert!(
                matches!(rx.try_recv(), Ok(Incoming::Connected)),
                "attempt {i}"
            );
        }
        assert!(
            matches!(rx.try_recv(), Ok(Incoming::Disconnected(_))),
            "attempt {i}: at {at:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_busy_prover_is_tried_again_after_busy_retry_and_not_before() {
    use super::backhaul::{BUSY_RETRY, retry_later};
    let prover = NodeKey::from_seed(&[3; 32]).id();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let start = tokio::time::Instant::now();
    tokio::spawn(retry_later(tx.downgrade(), (prover, 5, 1, 99)));
    settle().await;
    advance_to(start, BUSY_RETRY - Duration::from_millis(1)).await;
    assert!(rx.try_recv().is_err(), "retried early");
    advance_to(start, BUSY_RETRY).await;
    assert_eq!(rx.try_recv().unwrap(), (prover, 5, 1, 99));
    // The daemon stopped in the meantime (the queue's last sender is gone): nothing is queued.
    tokio::spawn(retry_later(tx.downgrade(), (prover, 5, 2, 99)));
    settle().await;
    drop(tx);
    advance_to(start, BUSY_RETRY * 2).await;
    assert!(matches!(
        rx.try_recv(),
        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_invitation_waits_for_its_turn_then_ten_and_twenty_seconds_between_attempts() {
    use super::backhaul::invite_after;
    let measurer = NodeKey::from_seed(&[2; 32]).id();
    let n = std::sync::Arc::new(Scripted::new(vec![
        busy(),
        busy(),
        Ok(encode_body(&InviteAnswer::Queued)),
    ]));
    let start = tokio::time::Instant::now();
    let task = tokio::spawn({
        let n = n.clone();
        async move { invite_after(&*n, measurer, 5, Duration::from_secs(7), Duration::MAX).await }
    });
    settle().await;
    // The attempts at 7 s (`after`), 17 s and 37 s; none a millisecond before.
    for (asked, at_s) in [(1, 7), (2, 17), (3, 37)] {
        advance_to(start, Duration::from_secs(at_s) - Duration::from_millis(1)).await;
        assert_eq!(3 - n.left(), asked - 1, "before the attempt at {at_s} s");
        advance_to(start, Duration::from_secs(at_s)).await;
        assert_eq!(3 - n.left(), asked, "the attempt at {at_s} s");
    }
    assert_eq!(task.await.unwrap(), Invited::Queued);
}

#[tokio::test(start_paused = true)]
async fn the_loop_wakes_at_its_deadline_and_not_before() {
    let now = 1_800_000_000_000;
    let start = tokio::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let woke = |deadline, tx: tokio::sync::mpsc::Sender<u64>| async move {
        super::sleep_until(deadline, now).await;
        let _ = tx.send(deadline).await;
    };
    tokio::spawn(woke(now + 250, tx.clone()));
    // A deadline already past is no wait at all.
    tokio::spawn(woke(now - 5, tx));
    settle().await;
    assert_eq!(rx.try_recv().ok(), Some(now - 5));
    advance_to(start, Duration::from_millis(249)).await;
    assert!(rx.try_recv().is_err(), "woke before the deadline");
    advance_to(start, Duration::from_millis(250)).await;
    assert_eq!(rx.try_recv().ok(), Some(now + 250));
}

#[test]
fn an_older_agents_sqlite_outbox_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    super::startup::open_store(dir.path()).unwrap();
    std::fs::write(dir.path().join("outbox.db"), b"SQLite format 3\0").unwrap();
    let e = format!("{:#}", super::startup::open_store(dir.path()).unwrap_err());
    assert!(e.contains("outbox.db"), "{e}");
    assert!(
        e.contains("Run the previous version until its outbox is empty"),
        "{e}"
    );
    assert!(e.contains("lost"), "{e}");
    std::fs::remove_file(dir.path().join("outbox.db")).unwrap();
    super::startup::open_store(dir.path()).unwrap();
}
