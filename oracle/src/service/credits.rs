//! The operator's credit grants and carriers' usage reports in the ingest worker: each is
//! judged by the engine and its row stored like a proof's (with its arrival number, in the
//! proofs table), so a restart, a standby's follower and a takeover all replay it where it
//! happened. Both come from the API on one channel; the envelope's kind tells them apart.

use anyhow::Context as _;
use wisp_protocol::envelope::EnvelopeRef;
use wisp_protocol::kind::Kind;
use wisp_protocol::msg::CreditGrant;
use wisp_protocol::{ProofId, Reason};

use super::off_runtime;
use crate::engine::{Engine, Row};
use crate::state::GrantAnswer;
use crate::store::Store;

/// Judges one envelope from the API at oracle time `now_ms`: a carrier report when its kind
/// says so, a credit grant otherwise ([`submit_grant`], [`submit_carrier`]).
pub(super) async fn submit(
    engine: Engine,
    store: &mut Store,
    envelope: Vec<u8>,
    now_ms: u64,
) -> anyhow::Result<(Engine, GrantAnswer, bool)> {
    let kind = EnvelopeRef::parse(&envelope).map(|e| e.kind);
    if kind == Ok(Kind::CarrierReport) {
        submit_carrier(engine, store, envelope, now_ms).await
    } else {
        submit_grant(engine, store, envelope, now_ms).await
    }
}

/// Judges one grant's envelope at oracle time `now_ms` (in `spawn_blocking`) and stores its
/// row if it is new. Returns the engine, the answer and whether a row was stored. A grant that
/// is not signed by this oracle's key, or not a grant, changes nothing. On an error the engine
/// is dropped (the worker stops), as when a batch fails to commit.
pub(super) async fn submit_grant(
    engine: Engine,
    store: &mut Store,
    envelope: Vec<u8>,
    now_ms: u64,
) -> anyhow::Result<(Engine, GrantAnswer, bool)> {
    let (engine, judged) = off_runtime(engine, move |e| {
        // Opened here too (the engine opens it again) for the subscriber and a message that
        // says what is wrong with a refused one.
        let subscriber = CreditGrant::open_from(&envelope, &e.key().id())
            .map_err(|err| refused(err.reason(), &err))?
            .msg
            .subscriber;
        e.submit_grant(envelope, now_ms)
            .map(|(verdict, row)| (verdict, row, subscriber))
            .map_err(|r| refused(r, &r.name()))
    })
    .await?;
    let (verdict, row, subscriber) = match judged {
        Ok(x) => x,
        Err(answer) => return Ok((engine, answer, false)),
    };
    finish(engine, store, verdict, row, subscriber, "a credit grant").await
}

fn refused(reason: Reason, err: &dyn std::fmt::Display) -> GrantAnswer {
    GrantAnswer::Refused {
        reason,
        why: format!("not a credit grant signed by this oracle's key: {err}"),
    }
}

/// Judges one carrier report's envelope at oracle time `now_ms` like [`submit_grant`] a
/// grant. A report of a closed epoch that the store holds gets its stored verdict (the
/// engine forgot it at the close). One that does not open as a report signed by the carrier
/// it names, or whose carrier is not on the allow-list, changes nothing.
pub(super) async fn submit_carrier(
    engine: Engine,
    store: &mut Store,
    envelope: Vec<u8>,
    now_ms: u64,
) -> anyhow::Result<(Engine, GrantAnswer, bool)> {
    let id = ProofId::of(&envelope);
    let stored = if engine.known(&id).is_none() {
        store
            .verdict(&id)
            .await
            .context("reading a carrier report's stored verdict")?
    } else {
        None
    };
    let (engine, judged) = off_runtime(engine, move |e| {
        e.submit_carrier(envelope, now_ms, stored)
            .map_err(|reason| GrantAnswer::Refused {
                reason,
                why: match reason {
                    Reason::UsageCarrierUnknown => {
                        "the report's signer is not on this oracle's allow-list of carriers \
                         ([rules] usage_carriers)"
                            .to_string()
                    }
                    r => format!(
                        "not a carrier report signed by the carrier it names: {} ({})",
                        r.name(),
                        r.describe()
                    ),
                },
            })
    })
    .await?;
    let (verdict, row, account) = match judged {
        Ok(x) => x,
        Err(answer) => return Ok((engine, answer, false)),
    };
    finish(engine, store, verdict, row, account, "a carrier report").await
}

/// Stores the row of a judged envelope, if new, and makes the answer.
async fn finish(
    engine: Engine,
    store: &mut Store,
    verdict: wisp_protocol::msg::Verdict,
    row: Option<Row>,
    subscriber: wisp_protocol::SubscriberId,
    what: &str,
) -> anyhow::Result<(Engine, GrantAnswer, bool)> {
    let stored = row.is_some();
    if let Some(row) = row {
        store
            .insert_rows(std::slice::from_ref(&row))
            .await
            .with_context(|| format!("storing {what}"))?;
    }
    let answer = GrantAnswer::Judged {
        verdict,
        subscriber,
        balance: engine.balance(&subscriber),
        duplicate: !stored,
    };
    Ok((engine, answer, stored))
}
