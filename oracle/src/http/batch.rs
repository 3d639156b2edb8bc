//! Many carrier reports in one request: `POST /v1/usage/carrier/batch`.
//!
//! The body is JSON, `{"reports": ["<envelope hex>", …]}`: at most [`BATCH_BODY_MAX`] bytes
//! (else a 413) and [`BATCH_ITEMS_MAX`] envelopes (else a 400), checked before any is judged. Each envelope is
//! judged in order by `carrier::judge`, the single endpoint's own path (its signature
//! checked over its raw bytes before anything is decoded, the allow-list, the carrier's rate,
//! the worker), and the answer lists one result per envelope, in order: that endpoint's
//! status and JSON body for it, with `status` added. An item that is not hex, or longer than
//! a carrier report's envelope, gets the 400 or 413 the single endpoint would give its bytes.
//!
//! **A rate-limited item stops the batch.** The items after it are not judged and get the
//! same 429 (counted as `rate_limited` too), so a carrier resending from the first 429 on, after
//! the `Retry-After` the batch answer carries, keeps each session's reports in order.

use std::sync::Arc;

use axum::Json;
use axum::body::{Bytes, to_bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::carrier::{self, CARRIER_BODY_MAX, RATE_LIMITED};
use super::error;
use crate::state::Shared;

/// Most envelopes in one batch.
pub const BATCH_ITEMS_MAX: usize = 256;

/// The largest batch body: [`BATCH_ITEMS_MAX`] envelopes at their limit in hex, quoted and
/// separated, and the object around them.
pub const BATCH_BODY_MAX: usize = BATCH_ITEMS_MAX * (2 * CARRIER_BODY_MAX + 4) + 64;

/// The largest item answer read back from the single path (a refusal names a key and why).
const ITEM_ANSWER_MAX: usize = 4096;

/// The body as posted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    reports: Vec<String>,
}

/// `POST /v1/usage/carrier/batch`: judges each report in order (see the module documentation).
pub(super) async fn reports(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a batch of carrier reports is at most {BATCH_BODY_MAX} bytes"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "not a batch of carrier reports ({{\"reports\": [\"<envelope hex>\", …]}}): {e}"
                ),
            );
        }
    };
    if batch.reports.len() > BATCH_ITEMS_MAX {
        // A 400, not a 413: the body fit; what it says breaks the schema's `maxItems`.
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "a batch holds at most {BATCH_ITEMS_MAX} carrier reports, not {}: split it",
                batch.reports.len()
            ),
        );
    }
    let mut results = Vec::with_capacity(batch.reports.len());
    let mut stopped: Option<u64> = None;
    for item in &batch.reports {
        if let Some(secs) = stopped {
            carrier::count(&s, RATE_LIMITED);
            results.push(json!({
                "status": 429,
                "error": "not judged: an earlier report of this batch was rate limited; post \
                          it again from that one on",
                "reason": RATE_LIMITED,
                "retry_after_s": secs,
            }));
            continue;
        }
        let answer = match hex::decode(item.trim()) {
            Err(e) => error(
                StatusCode::BAD_REQUEST,
                format!("an item is not an envelope in hex: {e}"),
            ),
            Ok(b) if b.len() > CARRIER_BODY_MAX => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a carrier report envelope is at most {CARRIER_BODY_MAX} bytes"),
            ),
            Ok(b) => carrier::judge(&s, Bytes::from(b)).await,
        };
        let result = item_result(answer).await;
        if result["status"] == 429 {
            stopped = Some(result["retry_after_s"].as_u64().unwrap_or(1));
        }
        results.push(result);
    }
    let body = Json(json!({ "results": results }));
    match stopped {
        Some(secs) => (
            StatusCode::OK,
            [(header::RETRY_AFTER, secs.to_string())],
            body,
        )
            .into_response(),
        None => body.into_response(),
    }
}

/// The single endpoint's answer as one item of the batch's: its JSON body with its status.
async fn item_result(answer: Response) -> Value {
    let status = answer.status().as_u16();
    let body = to_bytes(answer.into_body(), ITEM_ANSWER_MAX)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut v = match body {
        Some(Value::Object(o)) => Value::Object(o),
        _ => json!({ "error": "the answer could not be read back" }),
    };
    v["status"] = json!(status);
    v
}
