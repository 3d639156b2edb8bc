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
