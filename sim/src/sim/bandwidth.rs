//! Bandwidth test rounds (event 7): provers drawn, measurers assigned from the epoch's pool,
//! measurements (colluders' included) signed into receipts on all cores.

use rayon::prelude::*;
use wisp_protocol::msg::Direction;

use super::Sim;
use crate::backhaul;
use crate::cheaters::{self, Archetype};
use crate::rng;

impl Sim<'_> {
    pub(super) fn bandwidth(&mut self, e: u64) {
        let Some(pool) = self.oracle.pool(e).cloned() else {
            return;
        };
        let seed = {
            let h = blake3::Hasher::new_derive_key("wisp-sim epoch seed")
                .update(&self.sc.seed.to_le_bytes())
                .update(&e.to_le_bytes())
                .finalize();
            *h.as_bytes()
        };
        let k = usize::from(self.sc.epoch.measurers_per_prover);
        let (world_ref, rt_ref) = (&self.world, &self.rt);
        let can_test = |i: usize| {
            let n = &world_ref.nodes[i];
            rt_ref[i].core.is_some()
                && n.role.archetype != Archetype::FakeHeartbeat
                && n.role.helper_of.is_none()
        };
        let provers: Vec<u32> = (0..self.world.nodes.len())
            .filter(|i| can_test(*i))
            .filter(|i| {
                rng::unit(rng::hash_u64(
                    self.sc.seed,
                    rng::Purpose::Backhaul,
                    &[e, *i as u64],
                )) < self.sc.backhaul.tested_share
            })
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        let world = &self.world;
        let oracle = &self.oracle;
        let sc_seed = self.sc.seed;
        // Assignment and signing on all cores; results in prover order.
        let receipts: Vec<(u32, Vec<u8>)> = provers
            .par_iter()
            .flat_map_iter(|&p| {
                let prover = &world.nodes[p as usize];
                let mut out = Vec::new();
                for m_id in pool.assigned(&seed, &prover.id, k) {
                    let Some(m) = oracle.index_of(&m_id) else {
                        continue;
                    };
                    if !can_test(m as usize) {
                        continue;
                    }
                    let measurer = &world.nodes[m as usize];
                    let d = prover.phys.dist(&measurer.phys);
                    for dir in [Direction::Down, Direction::Up] {
                        let noise = rng::hash_normal(
                            sc_seed,
                            rng::Purpose::Backhaul,
                            &[
                                e,
                                u64::from(p),
                                u64::from(m),
                                u64::from(dir == Direction::Up),
                            ],
                        );
                        let mut meas =
                            backhaul::measure(&prover.link, &measurer.link, dir, d, noise);
                        if measurer.role.archetype == Archetype::ColludingMeasurer {
                            meas = if prover.role.archetype == Archetype::ColludingMeasurer {
                                // A fellow: as fast as the tiers pay.
                                backhaul::to_measurement(
                                    2e9,
                                    2e9 / 8.0 * 9.5,
                                    f64::from(meas.rtt_idle_us),
                                )
                            } else {
                                // Anyone else: slower than measured, so the colluders' share
                                // of the backhaul pool grows.
                                backhaul::scaled(
                                    &meas,
                                    if self.sc.cheaters.evasive {
                                        cheaters::MEASURER_DEFLATION_EVASIVE
                                    } else {
                                        cheaters::MEASURER_DEFLATION
                                    },
                                )
                            };
                        }
                        let tid = backhaul::test_id(e, &prover.id, &measurer.id, dir);
                        out.push((
                            m,
                            backhaul::receipt(e, tid, &prover.key, &measurer.key, dir, meas),
                        ));
                    }
                }
                if prover.role.archetype == Archetype::BandwidthInflation {
                    // Receipts from its own helper identities, claiming a fast link.
                    for h in world.nodes.iter().filter(|h| h.role.helper_of == Some(p)) {
                        for (dir, bps) in [(Direction::Down, 1.5e9), (Direction::Up, 6e8)] {
                            let meas = backhaul::to_measurement(bps, bps / 8.0 * 9.5, 8_000.0);
                            let tid = backhaul::test_id(e, &prover.id, &h.id, dir);
                            out.push((
                                h.idx,
                                backhaul::receipt(e, tid, &prover.key, &h.key, dir, meas),
                            ));
                        }
                    }
                }
                out
            })
            .collect();
        self.stats.signatures += 2 * receipts.len() as u64;
        for (m, bytes) in receipts {
            self.send(m, bytes);
        }
    }
}
