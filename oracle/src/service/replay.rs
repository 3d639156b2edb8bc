//! The engine rebuilt from the store: the replay of every stored row in arrival order, with
//! epoch opens and closes where they happened. A restart replays everything ([`rebuild`]); a
//! standby keeps a [`Follower`] that replays what the leader committed since it last looked,
//! so that its API shows what the leader's does and a takeover replays only the last few
//! rows.
//!
//! Why looking now and then gives the same engine as one replay of everything: only the
//! leader writes, one batch after the other, each row numbered by its engine, and an open or
//! close is recorded with the next row's number before any row after it is committed. So a
//! follower reads the highest stored number `m` first, then the epochs, then the rows up to
//! `m`: every open or close numbered `m` or lower is already recorded. Those numbered `m + 1`
//! are applied too; one recorded later at that same point happened later live, and so sorts
//! after them (steps at one point sort by time, see [`StepKey`]). A follower that ever finds
//! otherwise stops with an error rather than go on with a different engine.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tracing::{info, warn};
use wisp_protocol::NodeKey;
use wisp_protocol::envelope;
use wisp_protocol::msg::EpochSeed;

use super::off_runtime;
use super::stages::stopped;
use crate::config::Rules;
use crate::engine::{Engine, Row};
use crate::registry::Registry;
use crate::state::{Shared, Snapshot};
use crate::store::{SeqRange, Store};

/// An epoch opening or closing.
enum Step {
    Open(EpochSeed),
    Close {
        epoch: u64,
        at_ms: u64,
        emission: u64,
    },
}

/// Where a step goes: before the row of this arrival number; among steps at one point, in
/// the order they happened live — by time (an epoch's start for an open, its closing time for
/// a close), then opens before closes (one wake of the worker opens, then closes), then by
/// epoch.
pub(crate) type StepKey = (u64, u64, u8, u64);

/// The part of a [`Follower`] that moves to the blocking pool for each chunk.
struct Replay {
    engine: Engine,
    pending: BTreeMap<StepKey, Step>,
    /// The last step applied.
    applied: Option<StepKey>,
    replayed: u64,
}

impl Replay {
    /// Applies the opens and closes that happened before arrival number `seq`.
    fn apply_steps_before(&mut self, seq: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > seq {
                break;
            }
            self.applied = Some(*entry.key());
            match entry.remove() {
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

/// An engine kept up to date with the database by replaying what was committed since it
/// last looked.
pub struct Follower {
    replay: Replay,
    /// The opens and closes already known, as `(epoch, 0)` and `(epoch, 1)`.
    known: HashSet<(u64, u8)>,
    /// The last arrival number replayed.
    through: Option<u64>,
    /// The rules it was made with (to start over with them).
    rules: Rules,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("through", &self.through)
            .field("replayed", &self.replay.replayed)
            .field("pending", &self.replay.pending.len())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower that has seen nothing yet.
    pub fn new(key: NodeKey, rules: &Rules) -> Follower {
        Follower {
            replay: Replay {
                engine: Engine::new(key, Registry::new(rules.clone())),
                pending: BTreeMap::new(),
                applied: None,
                replayed: 0,
            },
            known: HashSet::new(),
            through: None,
            rules: rules.clone(),
        }
    }

    /// The engine as of the last look.
    pub fn engine(&self) -> &Engine {
        &self.replay.engine
    }

    /// Rows replayed in all.
    pub fn replayed(&self) -> u64 {
        self.replay.replayed
    }

    /// Replays what the store holds beyond what this follower saw. The rows are read a
    /// chunk at a time, and each chunk is replayed in `spawn_blocking` (replay is CPU-bound,
    /// and long for a large history).
    pub async fn catch_up(self, store: &mut Store) -> anyhow::Result<Follower> {
        self.look(store).await
    }

    /// The engine with everything the store holds, for a process that now writes alone (a
    /// start, a takeover).
    pub async fn finish(self, store: &mut Store) -> anyhow::Result<Engine> {
        let before = self.replayed();
        let f = self.look(store).await?;
        info!(
            replayed = f.replayed() - before,
            followed = before,
            epochs = f.known.iter().filter(|(_, k)| *k == 0).count(),
            "state rebuilt from the database"
        );
        Ok(f.replay.engine)
    }

    async fn look(mut self, store: &mut Store) -> anyhow::Result<Follower> {
        // First the highest number, then the epochs, then the rows up to that number (see
        // the module's documentation).
        let last = store.last_seq().await?;
        for e in store.epochs().await? {
            let mut steps = Vec::with_capacity(2);
            if !self.known.contains(&(e.epoch, 0)) {
                let seed = envelope::open::<EpochSeed>(&e.seed)
                    .context("a stored epoch seed does not verify")?;
                // Epochs stored before their opening point was recorded open first.
                let (at, time) = (e.opened_at_seq.unwrap_or(0), seed.msg.start_ms);
                steps.push((at, time, 0, Step::Open(seed.msg)));
            }
            if let (false, Some(at), Some(at_ms)) = (
                self.known.contains(&(e.epoch, 1)),
                e.closed_at_seq,
                e.closed_ms,
            ) {
                let close = Step::Close {
                    epoch: e.epoch,
                    at_ms,
                    emission: e.emission,
                };
                steps.push((at, at_ms, 1, close));
            }
            for (at, time, order, step) in steps {
                let key = (at, time, order, e.epoch);
                if self.through.is_some_and(|t| at <= t) || self.replay.applied >= Some(key) {
                    bail!(
                        "epoch {} was {} at arrival number {at}, before what this follower already replayed (rows through {:?}, step {:?}): the database changed behind it",
                        e.epoch,
                        if order == 0 { "opened" } else { "closed" },
                        self.through,
                        self.replay.applied,
                    );
                }
                self.known.insert((e.epoch, order));
                self.replay.pending.insert(key, step);
            }
        }
        let mut replay = self.replay;
        if let Some(last) = last.filter(|l| self.through.is_none_or(|t| *l > t)) {
            let mut rows = store
                .rows_in(SeqRange {
                    after: self.through,
                    through: last,
                })
                .await?;
            while let Some(chunk) = rows.next_chunk().await? {
                (replay, ()) = off_runtime(replay, move |r| r.rows(chunk)).await?;
            }
            self.through = Some(last);
        }
        (replay, ()) = off_runtime(replay, |r| r.apply_steps_before(u64::MAX)).await?;
        self.replay = replay;
        Ok(self)
    }
}

/// Rebuilds the engine from the store: epochs opened, every row replayed in arrival order,
/// closes applied where they happened.
pub async fn rebuild(store: &mut Store, key: NodeKey, rules: &Rules) -> anyhow::Result<Engine> {
    Follower::new(key, rules).finish(store).await
}

/// How often a standby looks at what the leader committed.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// A standby's follower at work until `stop`: it looks every [`FOLLOW_EVERY`] and serves the
/// API its view of the engine. Returns the follower; a look that failed loses it, and the
/// next look replays from the start.
pub(super) async fn follow(
    mut follower: Follower,
    mut store: Store,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Follower {
    let (key, rules) = (follower.engine().key().clone(), follower.rules.clone());
    let mut failing = false;
    loop {
        match follower.catch_up(&mut store).await {
            Ok(f) => {
                let view = off_runtime(f, |f| Snapshot::of(f.engine(), f.replayed())).await;
                let Ok((f, snap)) = view else {
                    return Follower::new(key, &rules);
                };
                shared.publish(snap);
                follower = f;
                if std::mem::take(&mut failing) {
                    info!("following the leader's database again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(
                        "this standby could not follow the leader's database: {e:#}; it starts over"
                    );
                }
                follower = Follower::new(key.clone(), &rules);
            }
        }
        tokio::select! {
            () = stopped(&mut stop) => return follower,
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}
