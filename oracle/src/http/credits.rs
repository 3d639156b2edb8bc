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
//! A standby (cluster mode) answers 503: only the leader's worker judges and writes, and
//! standbys hand proofs over through the database's intake, which takes MQTT proofs only. The
//! operator posts to the leader (`/v1/status` says `"role": "leader"`).

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
use wisp_protocol::{NodeId, SubscriberId};

use super::{bad_path, error, role};
use crate::state::{GrantAnswer, GrantRequest, Role, Shared};

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
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a credit grant envelope is at most {GRANT_BODY_MAX} bytes"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
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
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "standing by: another oracle process leads; post the grant to the leader's API \
             (its /v1/status says \"role\": \"leader\")",
        );
    }
    let (reply, answer) = oneshot::channel();
    let request = GrantRequest {
        envelope: body.to_vec(),
        reply,
    };
    let taken = tokio::time::timeout(GRANT_WAIT, s.grants.send(request)).await;
    if !matches!(taken, Ok(Ok(()))) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest worker is not taking grants now (starting, stopping or busy): \
             nothing was stored; try again",
        );
    }
    let answer = match tokio::time::timeout(GRANT_WAIT, answer).await {
        Ok(Ok(a)) => a,
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ingest worker did not answer: the grant may or may not be stored; posting \
                 the same envelope again is safe (a grant applies once)",
            );
        }
    };
    match answer {
        GrantAnswer::Refused(why) => error(StatusCode::BAD_REQUEST, why),
        GrantAnswer::Judged {
            verdict,
            subscriber,
            balance,
            duplicate,
        } => {
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
    }
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
    let Ok(id) = peer_id.parse::<SubscriberId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{peer_id}` is not an ed25519 peer id"),
        );
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
