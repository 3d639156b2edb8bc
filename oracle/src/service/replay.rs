//! The engine rebuilt from the store after a (re)start: the replay of every stored row, with
//! epoch opens and closes where they happened.

use anyhow::Context as _;
use tracing::info;
use wisp_protocol::NodeKey;
use wisp_protocol::envelope;
use wisp_protocol::msg::EpochSeed;

use super::off_runtime;
use crate::config::Rules;
use crate::engine::{Engine, Row};
use crate::registry::Registry;
use crate::store::Store;

/// A replay in progress: the engine and the opens and closes still to apply, in the order
/// they happened (by arrival sequence number).
struct Replay {
    engine: Engine,
    steps: std::iter::Peekable<std::vec::IntoIter<(u64, u8, u64, Step)>>,
    replayed: u64,
}

/// An epoch opening or closing at a sequence number.
enum Step {
    Open(EpochSeed),
    Close {
        epoch: u64,
        at_ms: u64,
        emission: u64,
    },
}

impl Replay {
    /// Applies the opens and closes that happened before sequence number `seq`.
    fn apply_steps_before(&mut self, seq: u64) {
        while let Some((at, ..)) = self.steps.peek() {
            if *at > seq {
                break;
            }
            let Some((_, _, _, step)) = self.steps.next() else {
                break;
            };
            match step {
                Step::Open(seed) => self.engine.open_epoch(seed),
                Step::Close {
                    epoch,
                    at_ms,
                    emission,
                } => {
                    if let Some(c) = self.engine.close(epoch, at_ms, emission) {
                        self.engine.finish_close(epoch, &c.outcome);
                    }
                }
            }
        }
    }

    /// Replays a chunk of rows, in arrival order.
    fn rows(&mut self, rows: Vec<Row>) {
        for row in rows {
            self.apply_steps_before(row.seq);
            self.engine.replay(&row);
            self.replayed += 1;
        }
    }
}

/// Rebuilds the engine from the store: epochs opened, every row replayed in arrival order,
/// closes applied where they happened. The rows are read a chunk at a time, and each chunk
/// is replayed in `spawn_blocking` (replay is CPU-bound, and long for a large history).
pub async fn rebuild(store: &mut Store, key: NodeKey, rules: &Rules) -> anyhow::Result<Engine> {
    let engine = Engine::new(key, Registry::new(rules.clone()));
    let epochs = store.epochs().await?;
    // Opens and closes happen where they happened live, between rows: an epoch opened at
    // sequence number s saw the onboards of rows before s (its measurer pool), and a close at s
    // included the rows before s. Epochs stored without their opening point open first.
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
    let mut replay = Replay {
        engine,
        steps: steps.into_iter().peekable(),
        replayed: 0,
    };
    let mut rows = store.rows().await?;
    while let Some(chunk) = rows.next_chunk().await? {
        (replay, ()) = off_runtime(replay, move |r| r.rows(chunk)).await?;
    }
    drop(rows);
    let (replay, ()) = off_runtime(replay, |r| r.apply_steps_before(u64::MAX)).await?;
    info!(
        replayed = replay.replayed,
        epochs = epochs.len(),
        "state rebuilt from the database"
    );
    Ok(replay.engine)
}
