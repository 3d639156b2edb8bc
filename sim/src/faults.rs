//! Faults: message loss, partitions, churn, crash/restart, oracle and broker downtime. (Clock
//! skew is a per-node property drawn in [`crate::world`].)
//!
//! Every fault decision is a hash of `(seed, Faults, node, moment)`, so it does not depend on
//! the order in which other decisions were drawn.

use crate::rng::{self, Purpose};
use crate::scenario::{FaultsCfg, Window};

/// Microseconds per hour.
const US_PER_H: f64 = 3_600_000_000.0;

fn span(w: &Window) -> (u64, u64) {
    // Hours in a scenario are small and positive.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = (w.start_h.max(0.0) * US_PER_H) as u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let e = s + (w.hours.max(0.0) * US_PER_H) as u64;
    (s, e)
}

/// The fault plan of a run.
#[derive(Debug, Clone)]
pub struct Faults {
    cfg: FaultsCfg,
    seed: u64,
    /// x coordinate west of which a partition cuts nodes off, per partition.
    cut_x: Vec<f64>,
}

impl Faults {
    /// The plan for `cfg`; `xs` are the nodes' x coordinates (for the partitions' extent).
    pub fn new(cfg: &FaultsCfg, seed: u64, xs: &[f64]) -> Faults {
        let mut sorted: Vec<f64> = xs.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        let cut_x = cfg
            .partitions
            .iter()
            .map(|w| {
                if sorted.is_empty() {
                    return f64::NEG_INFINITY;
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let k = ((w.share.clamp(0.0, 1.0)) * sorted.len() as f64) as usize;
                if k == 0 {
                    f64::NEG_INFINITY
                } else {
                    sorted[k - 1]
                }
            })
            .collect();
        Faults {
            cfg: cfg.clone(),
            seed,
            cut_x,
        }
    }

    /// If the oracle is down at `t_us`, when it comes back.
    pub fn oracle_down_until(&self, t_us: u64) -> Option<u64> {
        self.cfg
            .oracle_down
            .iter()
            .map(span)
            .filter(|(s, e)| (*s..*e).contains(&t_us))
            .map(|(_, e)| e)
            .max()
    }

    /// If a node at `x` is cut off from the oracle at `t_us`, when the partition heals.
    pub fn partitioned_until(&self, x: f64, t_us: u64) -> Option<u64> {
        self.cfg
            .partitions
            .iter()
            .zip(&self.cut_x)
            .filter(|(_, cut)| x <= **cut)
            .map(|(w, _)| span(w))
            .filter(|(s, e)| (*s..*e).contains(&t_us))
            .map(|(_, e)| e)
            .max()
    }

    /// Whether delivery attempt `attempt` of proof `nonce` from `node` is lost.
    pub fn lost(&self, node: u32, nonce: u64, attempt: u32) -> bool {
        self.cfg.loss > 0.0
            && rng::unit(rng::hash_u64(
                self.seed,
                Purpose::Faults,
                &[1, u64::from(node), nonce, u64::from(attempt)],
            )) < self.cfg.loss
    }

    /// Resend delay of the outbox.
    pub fn retry_us(&self) -> u64 {
        self.cfg.retry_ms.max(1) * 1000
    }

    /// Whether `node` is powered off for all of `epoch`.
    pub fn churned(&self, node: u32, epoch: u64) -> bool {
        self.cfg.churn_per_epoch > 0.0
            && rng::unit(rng::hash_u64(
                self.seed,
                Purpose::Faults,
                &[2, u64::from(node), epoch],
            )) < self.cfg.churn_per_epoch
    }

    /// If `node` crashes during `epoch` (of `epoch_us`), the offset into the epoch.
    pub fn crash_in(&self, node: u32, epoch: u64, epoch_us: u64) -> Option<u64> {
        let p = self.cfg.crash_per_day * epoch_us as f64 / (24.0 * US_PER_H);
        if p <= 0.0 {
            return None;
        }
        let u = rng::unit(rng::hash_u64(
            self.seed,
            Purpose::Faults,
            &[3, u64::from(node), epoch],
        ));
        (u < p).then(|| {
            let v = rng::unit(rng::hash_u64(
                self.seed,
                Purpose::Faults,
                &[4, u64::from(node), epoch],
            ));
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let off = (v * epoch_us as f64) as u64;
            off
        })
    }

    /// Downtime after a crash, µs.
    pub fn restart_after_us(&self) -> u64 {
        self.cfg.restart_after_ms * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_partitions() {
        let cfg = FaultsCfg {
            partitions: vec![Window {
                start_h: 1.0,
                hours: 1.0,
                share: 0.5,
            }],
            oracle_down: vec![Window {
                start_h: 2.0,
                hours: 0.5,
                share: 0.0,
            }],
            ..FaultsCfg::default()
        };
        let f = Faults::new(&cfg, 1, &[0.0, 1.0, 2.0, 3.0]);
        let h = 3_600_000_000u64;
        assert_eq!(f.partitioned_until(0.5, h + 5), Some(2 * h));
        assert_eq!(f.partitioned_until(2.5, h + 5), None);
        assert_eq!(f.partitioned_until(0.5, 3 * h), None);
        assert_eq!(f.oracle_down_until(2 * h + 1), Some(2 * h + h / 2));
        assert_eq!(f.oracle_down_until(h), None);
    }
}
