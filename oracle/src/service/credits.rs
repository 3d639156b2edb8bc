//! The operator's credit grants in the ingest worker: each is judged by the engine and its row
//! stored like a proof's (with its arrival number, in the proofs table), so a restart, a
//! standby's follower and a takeover all replay it where it happened.

use anyhow::Context as _;
use wisp_protocol::msg::CreditGrant;

use super::off_runtime;
use crate::engine::Engine;
use crate::state::GrantAnswer;
use crate::store::Store;

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
            .map_err(|err| format!("not a credit grant signed by this oracle's key: {err}"))?
            .msg
            .subscriber;
        e.submit_grant(envelope, now_ms)
            .map(|(verdict, row)| (verdict, row, subscriber))
            .map_err(|r| {
                format!(
                    "not a credit grant signed by this oracle's key: {}",
                    r.name()
                )
            })
    })
    .await?;
    let (verdict, row, subscriber) = match judged {
        Ok(x) => x,
        Err(why) => return Ok((engine, GrantAnswer::Refused(why), false)),
    };
    let stored = row.is_some();
    if let Some(row) = row {
        store
            .insert_rows(std::slice::from_ref(&row))
            .await
            .context("storing a credit grant")?;
    }
    let answer = GrantAnswer::Judged {
        verdict,
        subscriber,
        balance: engine.balance(&subscriber),
        duplicate: !stored,
    };
    Ok((engine, answer, stored))
}
