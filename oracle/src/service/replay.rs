//! The engine rebuilt from the store after a (re)start: the replay of every stored row, with
//! epoch opens and closes where they happened.

use anyhow::Context as _;
use tracing::info;
use wisp_protocol::NodeKey;
use wisp_protocol::envelope;
use wisp_protocol::msg::EpochSeed;

use crate::config::Rules;
use crate::engine::Engine;
use crate::registry::Registry;
use crate::store::Store;

/// Rebuilds the engine from the store: epochs opened, every row replayed in arrival order,
/// closes applied where they happened.
pub fn rebuild(store: &mut Store, key: NodeKey, rules: &Rules) -> anyhow::Result<Engine> {
    let mut engine = Engine::new(key, Registry::new(rules.clone()));
    let epochs = store.epochs()?;
    // Opens and closes happen where they happened live, between rows: an epoch opened at
    // sequence number s saw the onboards of rows before s (its measurer pool), and a close at s
    // included the rows before s. Epochs stored without their opening point open first.
    enum Step {
        Open(EpochSeed),
        Close {
            epoch: u64,
            at_ms: u64,
            emission: u64,
        },
    }
    let mut steps: Vec<(u64, u8, u64, Step)> = Vec::new();
    for e in &epochs {
        let seed =
            envelope::open::<EpochSeed>(&e.seed).context("a stored epoch seed does not verify")?;
        steps.push((
            e.opened_at_seq.unwrap_or(0),
            0,
            e.epoch,
            Step::Open(seed.msg),
        ));
        if let (Some(at), Some(at_ms)) = (e.closed_at_seq, e.closed_ms) {
            let close = Step::Close {
                epoch: e.epoch,
                at_ms,
                emission: e.emission,
            };
            steps.push((at, 1, e.epoch, close));
        }
    }
    steps.sort_unstable_by_key(|(at, order, epoch, _)| (*at, *order, *epoch));
    let mut steps = steps.into_iter().peekable();
    let mut replayed = 0u64;
    let mut apply_steps_before = |engine: &mut Engine, seq: u64| {
        while let Some((at, ..)) = steps.peek() {
            if *at > seq {
                break;
            }
            let Some((_, _, _, step)) = steps.next() else {
                break;
            };
            match step {
                Step::Open(seed) => engine.open_epoch(seed),
                Step::Close {
                    epoch,
                    at_ms,
                    emission,
                } => {
                    if let Some(c) = engine.close(epoch, at_ms, emission) {
                        engine.finish_close(epoch, &c.outcome);
                    }
                }
            }
        }
    };
    store.for_each_row(|row| {
        apply_steps_before(&mut engine, row.seq);
        engine.replay(&row);
        replayed += 1;
    })?;
    apply_steps_before(&mut engine, u64::MAX);
    info!(
        replayed,
        epochs = epochs.len(),
        "state rebuilt from the database"
    );
    Ok(engine)
}
