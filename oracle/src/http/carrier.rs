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
//! Each answer counts in `wisp_oracle_carrier_reports_total{verdict}`: `accepted`, the reason
//! of a refusal or a rejection, or `handed` on a standby.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use wisp_protocol::envelope;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{CarrierReport, Verdict};
use wisp_protocol::{Reason, SubscriberId};

use super::credits::{answered, envelope_body, forward, refusal, to_worker};
use super::{error, role};
use crate::metrics::VerdictLabel;
use crate::state::{GrantAnswer, Role, Shared};

/// Counts one answer in `carrier_reports{verdict}`.
fn count(s: &Shared, verdict: &'static str) {
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
    // Refused here what needs no engine, so garbage never waits in the worker's queue: not a
    // report signed by the carrier it names, or a carrier the rules do not allow. The worker
    // checks both again.
    let opened = match envelope::open::<CarrierReport>(&body) {
        Ok(o) => o,
        Err(e) => {
            count(&s, e.reason().name());
            return refusal(e.reason(), format!("not a carrier report envelope: {e}"));
        }
    };
    let allowed = s
        .snapshot
        .read()
        .ok()
        .and_then(|snap| snap.credits.rules().map(|r| r.is_carrier(&opened.signer)));
    if allowed == Some(false) {
        count(&s, Reason::UsageCarrierUnknown.name());
        return refusal(
            Reason::UsageCarrierUnknown,
            format!(
                "{} is not on this oracle's allow-list of carriers ([rules] usage_carriers)",
                opened.signer
            ),
        );
    }
    let account = SubscriberId(opened.msg.carrier);
    if role(&s) == Role::Standby {
        count(&s, "handed");
        return forward(&s, body.to_vec(), account).await;
    }
    match to_worker(&s, body.to_vec()).await {
        Ok(answer) => {
            count(
                &s,
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
