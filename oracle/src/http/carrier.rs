//! Carriers' usage reports in: `POST /v1/usage/carrier` (docs/PROTOCOL.md §5.12).
//!
//! **Only an allow-listed carrier can report.** The body is a `carrier_report` envelope; its
//! signature, checked over the raw bytes before anything is decoded, is the authorization: the
//! signer must be the carrier the report names (else a 400, `signer_mismatch`) and on the
//! rules' `usage_carriers` (else a 403, `usage_carrier_unknown`). Neither is stored, so keys off
//! the list cannot grow the database. The body is limited to the kind's envelope size before it
//! is read.
//!
//! A report that passes goes to the ingest worker, on the grants' channel, and is judged by
//! the same usage rules as a subscriber's receipt (`usage::Ledger::check_carrier`); its row is
//! stored like a proof's and its verdict answered as a grant's is (`verdict`, `reason`,
//! `duplicate`, the carrier account's `balance_dc`; the account's pending credits are at
//! `GET /v1/subscribers/{carrier}`). A standby hands it to the leader through the database's
//! intake, as it does grants, and answers once it is committed.
//!
//! **A rate per carrier.** A listed carrier's reports pass a token bucket of its key
//! (`[http] carrier_reports_per_s`, `carrier_burst`; [`crate::carrier_limit`]): over it, a 429 with
//! `Retry-After` and the reason `rate_limited`, and nothing stored.
//!
//! Each answer counts in `wisp_oracle_carrier_reports_total{verdict}`: `accepted`, the reason
//! of a refusal or a rejection, `rate_limited`, or `handed` on a standby.
//!
//! `POST /v1/usage/carrier/batch` (`batch.rs`) judges many reports in one body, each through
//! `judge` as this endpoint does.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wisp_protocol::envelope;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{CarrierReport, Verdict};
use wisp_protocol::{Reason, SubscriberId};

use super::credits::{answered, envelope_body, forward, refusal, to_worker};
use super::{error, role};
use crate::metrics::VerdictLabel;
use crate::state::{GrantAnswer, Role, Shared};

/// The verdict label and reason of a report refused for its carrier's rate.
pub const RATE_LIMITED: &str = "rate_limited";

/// A 429 for a carrier over its rate: `Retry-After` in whole seconds (at least 1), and the
/// same in the body with the reason.
pub(super) fn rate_limited(carrier: &wisp_protocol::NodeId, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        Json(json!({
            "error": format!(
                "carrier {carrier} is over its rate of reports ([http] carrier_reports_per_s, \
                 carrier_burst): nothing was stored; post it again after {secs} s"
            ),
            "reason": RATE_LIMITED,
            "retry_after_s": secs,
        })),
    )
        .into_response()
}

/// Counts one answer in `carrier_reports{verdict}`.
pub(super) fn count(s: &Shared, verdict: &'static str) {
    s.metrics
        .carrier_reports
        .get_or_create(&VerdictLabel { verdict })
        .inc();
}

/// The largest body `POST /v1/usage/carrier` reads: the envelope limit of a `carrier_report`.
pub const CARRIER_BODY_MAX: usize = Kind::CarrierReport.max_envelope_len();

/// `POST /v1/usage/carrier`: judges a carrier's usage report.
pub(super) async fn report(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match envelope_body(body, "a carrier report", CARRIER_BODY_MAX) {
        Ok(b) => b,
        Err((code, why)) => return error(code, why),
    };
    judge(&s, body).await
}

/// One report judged: the whole answer of `POST /v1/usage/carrier`, and each item of a batch
/// (`batch.rs`), so both judge alike.
pub(super) async fn judge(s: &Shared, body: Bytes) -> Response {
    // Refused here what needs no engine, so garbage never waits in the worker's queue: not a
    // report signed by the carrier it names, or a carrier the rules do not allow. The worker
    // checks both again.
    let opened = match envelope::open::<CarrierReport>(&body) {
        Ok(o) => o,
        Err(e) => {
            count(s, e.reason().name());
            return refusal(e.reason(), format!("not a carrier report envelope: {e}"));
        }
    };
    let allowed = s
        .snapshot
        .read()
        .ok()
        .and_then(|snap| snap.credits.rules().map(|r| r.is_carrier(&opened.signer)));
    if allowed == Some(false) {
        count(s, Reason::UsageCarrierUnknown.name());
        return refusal(
            Reason::UsageCarrierUnknown,
            format!(
                "{} is not on this oracle's allow-list of carriers ([rules] usage_carriers)",
                opened.signer
            ),
        );
    }
    // After the allow-list, so only listed carriers hold a bucket; before the worker, so
    // nothing rate-limited is stored.
    if let Err(wait) = s.carrier_limit.check(&opened.signer) {
        count(s, RATE_LIMITED);
        return rate_limited(&opened.signer, wait);
    }
    let account = SubscriberId(opened.msg.carrier);
    if role(s) == Role::Standby {
        count(s, "handed");
        return forward(s, body.to_vec(), account).await;
    }
    match to_worker(s, body.to_vec()).await {
        Ok(answer) => {
            count(
                s,
                match &answer {
                    GrantAnswer::Refused { reason, .. } => reason.name(),
                    GrantAnswer::Judged {
                        verdict: Verdict::Rejected(r),
                        ..
                    } => r.name(),
                    GrantAnswer::Judged { .. } => "accepted",
                },
            );
            answered(answer)
        }
        Err(response) => response,
    }
}
