//! Data credits: the operator's grants in (`POST /v1/credits`) and a subscriber's balance out
//! (`GET /v1/subscribers/{peer_id}`).
//!
//! **Only the oracle's key holder can grant.** The body is a `credit_grant` envelope
//! (docs/PROTOCOL.md §5.11); the ingest worker applies it only if this oracle's key signed it,
//! so the signature is the authorization and the endpoint needs no other (anyone else's bytes
//! get a 400 and change nothing). A grant applies once per grant id: posting the same envelope
//! again, or another one with its id, credits nothing more. The body is limited to the kind's
//! envelope size before it is read.
//!
//! **Any process of a cluster takes a grant.** Only the leader's worker judges and writes; a
//! standby checks the envelope as the leader would (a `credit_grant`, the signature over the
//! raw bytes, signed by this oracle's key) and hands it to the leader through the database's
//! intake, the way standbys hand over proofs (the leader takes intake rows only while its
//! lease holds). It then waits for the grant's row to be committed and answers as the leader
//! would, `duplicate` meaning "stored before this post", with the balance its own follower
//! has replayed. A grant not committed within the wait (no leader, or a leader that died
//! holding it) gets a 202, nothing promised: posting the same envelope again is safe, and
//! once the grant is stored the answer is a 200 with `duplicate: true`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::oneshot;
use wisp_protocol::envelope;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{CreditGrant, Verdict};
use wisp_protocol::{NodeId, ProofId, Reason, SubscriberId};

use super::{bad_path, error, peer, role};
use crate::state::{GrantAnswer, GrantRequest, Role, Shared};
use crate::store::intake::{GRANT_TOPIC, Handed};
use crate::usage::Balance;

/// The largest body `POST /v1/credits` reads: the envelope limit of a `credit_grant`.
pub const GRANT_BODY_MAX: usize = Kind::CreditGrant.max_envelope_len();

/// How long the API waits for the worker to take a grant and to answer it. The worker takes
/// it between two steps (a batch, a close), each well under a second on a healthy store.
const GRANT_WAIT: Duration = Duration::from_secs(10);

/// `POST /v1/credits`: applies an operator's credit grant.
pub(super) async fn grant(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match envelope_body(body, "a credit grant", GRANT_BODY_MAX) {
        Ok(b) => b,
        Err((code, why)) => return error(code, why),
    };
    // Refused here what needs no engine (not a grant, or a key other than the one the snapshot
    // names), so garbage never waits in the worker's queue; the worker checks the key again.
    let opened = match envelope::open::<CreditGrant>(&body) {
        Ok(o) => o,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a credit grant envelope: {e}"),
            );
        }
    };
    let oracle = s.snapshot.read().ok().map(|x| x.oracle.clone());
    if let Some(oracle) = oracle.and_then(|o| o.parse::<NodeId>().ok())
        && opened.signer != oracle
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the grant is signed by {}, not by this oracle's key {oracle}",
                opened.signer
            ),
        );
    }
    if role(&s) == Role::Standby {
        return forward(&s, body.to_vec(), opened.msg.subscriber).await;
    }
    match to_worker(&s, body.to_vec()).await {
        Ok(answer) => answered(answer),
        Err(response) => response,
    }
}

/// Hands an envelope (a grant or a carrier report) to the ingest worker and waits for its
/// answer; a 503 when the worker does not take it or answer within the wait.
pub(super) async fn to_worker(s: &Shared, envelope: Vec<u8>) -> Result<GrantAnswer, Response> {
    let (reply, answer) = oneshot::channel();
    let request = GrantRequest { envelope, reply };
    let taken = tokio::time::timeout(GRANT_WAIT, s.grants.send(request)).await;
    if !matches!(taken, Ok(Ok(()))) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest worker is not taking envelopes now (starting, stopping or busy): \
             nothing was stored; try again",
        ));
    }
    match tokio::time::timeout(GRANT_WAIT, answer).await {
        Ok(Ok(a)) => Ok(a),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest worker did not answer: the envelope may or may not be stored; posting \
             the same envelope again is safe (each is judged once)",
        )),
    }
}

/// The body of a POST of one envelope, read within `max` bytes (the route's body limit), or
/// the error to answer: a 413 naming `what` and its limit when over, a 400 when it could not
/// be read.
pub(super) fn envelope_body(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    max: usize,
) -> Result<Bytes, (StatusCode, String)> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what} envelope is at most {max} bytes"),
            )
        } else {
            (StatusCode::BAD_REQUEST, e.body_text())
        }
    })
}

/// The response to the worker's answer: a refusal is a 403 for a carrier off the
/// allow-list, a 400 otherwise, with its reason code.
pub(super) fn answered(answer: GrantAnswer) -> Response {
    match answer {
        GrantAnswer::Refused { reason, why } => refusal(reason, why),
        GrantAnswer::Judged {
            verdict,
            subscriber,
            balance,
            duplicate,
        } => judged(verdict, subscriber, balance, duplicate),
    }
}

/// An envelope refused before it was judged (nothing stored): `{"error", "reason"}`, 403 when
/// the signer is not allowed (`usage_carrier_unknown`), else 400.
pub(super) fn refusal(reason: Reason, why: impl Into<String>) -> Response {
    let code = if reason == Reason::UsageCarrierUnknown {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        code,
        Json(json!({ "error": why.into(), "reason": reason.name() })),
    )
        .into_response()
}

/// How often a standby reads whether the grant it handed over was committed, and whether its
/// follower replayed it.
const COMMIT_POLL: Duration = Duration::from_millis(100);

/// A subscriber's balance in this process's snapshot.
fn snapshot_balance(s: &Shared, subscriber: &SubscriberId) -> Option<Balance> {
    s.snapshot
        .read()
        .ok()
        .and_then(|snap| snap.credits.balance(subscriber))
}

/// A standby's part: hands the verified grant (or carrier report) to the leader through the intake, unless it is
/// stored already, and answers once its row is committed (see the module documentation).
pub(super) async fn forward(s: &Shared, envelope: Vec<u8>, subscriber: SubscriberId) -> Response {
    let oracle = s.snapshot.read().ok().map(|x| x.oracle.clone());
    if oracle.and_then(|o| o.parse::<NodeId>().ok()).is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "standing by, and not yet following the leader (no oracle key known): nothing was \
             stored; try again",
        );
    }
    let id = ProofId::of(&envelope);
    let before = snapshot_balance(s, &subscriber);
    let stored = match s.reader.verdict(&id).await {
        Ok(v) => v,
        Err(e) => return super::internal(e),
    };
    let duplicate = stored.is_some();
    if !duplicate {
        let row = Handed {
            topic: GRANT_TOPIC.into(),
            payload: envelope,
            // Not read: the leader judges a grant at its own time, as one posted to it.
            at_ms: 0,
        };
        if let Err(e) = s.reader.hand_over(&row).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("handing the envelope to the leader failed: {e}; nothing was stored"),
            );
        }
        s.metrics.handed.inc();
    }
    let deadline = tokio::time::Instant::now() + GRANT_WAIT;
    let mut verdict = stored;
    while verdict.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(COMMIT_POLL).await;
        verdict = match s.reader.verdict(&id).await {
            Ok(v) => v,
            Err(e) => return super::internal(e),
        };
    }
    let Some(verdict) = verdict else {
        return (
            StatusCode::ACCEPTED,
            Json(json!({
                "state": "handed",
                "proof_id": id.to_string(),
                "message": "handed to the leader, not committed within the wait (no leader, or \
                            a takeover): post the same envelope again, which is safe; once \
                            stored the answer is 200 with duplicate: true",
            })),
        )
            .into_response();
    };
    // An accepted grant or report changes the balance once this process's follower replays
    // it.
    if !duplicate && verdict == Verdict::Accepted {
        while snapshot_balance(s, &subscriber) == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }
    judged(
        verdict,
        subscriber,
        snapshot_balance(s, &subscriber),
        duplicate,
    )
}

/// The answer to a judged grant or carrier report.
fn judged(
    verdict: Verdict,
    subscriber: SubscriberId,
    balance: Option<Balance>,
    duplicate: bool,
) -> Response {
    let (verdict, reason) = match verdict {
        Verdict::Accepted => ("accepted", None),
        Verdict::Rejected(r) => ("rejected", Some(r.name())),
    };
    let mut body = json!({
        "verdict": verdict,
        "duplicate": duplicate,
        "subscriber": subscriber.to_string(),
        "balance_dc": balance.map_or(0, |b| b.balance_dc),
    });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    Json(body).into_response()
}

/// `GET /v1/subscribers/{peer_id}`: a subscriber's data credits, from the engine the API
/// serves (the leader's, or a standby's follower); 404 for one never granted any.
pub(super) async fn subscriber(
    State(s): State<Arc<Shared>>,
    peer_id: Result<Path<String>, PathRejection>,
) -> Response {
    let peer_id = match peer_id {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(&e),
    };
    let id = match peer::<SubscriberId>(&peer_id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let balance = s
        .snapshot
        .read()
        .ok()
        .and_then(|snap| snap.credits.balance(&id));
    match balance {
        Some(b) => Json(json!({
            "subscriber": id.to_string(),
            "balance_dc": b.balance_dc,
            "burned_dc": b.burned_dc,
            "pending_dc": b.pending_dc,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("subscriber {peer_id} was never granted data credits"),
        ),
    }
}
