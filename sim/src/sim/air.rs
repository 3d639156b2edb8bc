//! The air (event 4): a frame's receivers (fading, decoding, the receiver cap, remote
//! sniffers, a ring's internet relay), and receptions handed to the cores one by one or in
//! parallel batches.

use std::sync::Arc;

use rayon::prelude::*;
use wisp_protocol::physics;
use wisp_protocol::units::DeciDb;

use super::{Ev, Outputs, RxJob, Sim, drain, whole_db};
use crate::cheaters::Archetype;
use crate::radio;

impl Sim<'_> {
    /// Receptions due within [`RX_BATCH_WINDOW_US`] of each other at distinct nodes run on
    /// all cores: each core is independent, and their outputs are applied in event order, so
    /// the result does not depend on the number of threads.
    pub(super) fn rx_batch(&mut self, batch: Vec<(u64, u64, Ev)>) {
        let mut jobs: Vec<RxJob> = Vec::with_capacity(batch.len());
        for (t, seq, ev) in batch {
            let Ev::Rx {
                node,
                frame,
                rssi,
                snr,
                freq,
                forged,
                backdate_ms,
            } = ev
            else {
                continue;
            };
            self.record_rx(t, seq, node, &frame, rssi, snr, freq, forged);
            let (rssi, snr) = self.alter(node, rssi, snr, forged);
            let local = self.local_ms_at(node, t);
            let rx_ms = local.saturating_sub(backdate_ms);
            if let Some(core) = self.rt[node as usize].core.take() {
                jobs.push(RxJob {
                    t,
                    node,
                    frame,
                    rssi,
                    snr,
                    freq,
                    local,
                    rx_ms,
                    core,
                    out: Outputs::default(),
                });
            }
        }
        jobs.par_iter_mut().for_each(|j| {
            let _ = j.core.handle_radio_frame(
                &j.frame,
                DeciDb(j.rssi.saturating_mul(10)),
                DeciDb(j.snr.saturating_mul(10)),
                j.freq,
                j.rx_ms,
                j.local,
            );
            j.out = drain(&mut j.core);
        });
        for j in jobs {
            self.rt[j.node as usize].core = Some(j.core);
            self.apply(j.node, j.out, j.t);
        }
    }

    /// A frame leaves node `n`'s radio (or, for a ring, its internet relay).
    pub(super) fn transmit(&mut self, n: u32, frame: Arc<[u8]>) {
        let now = self.q.now_us();
        let e = self.current.unwrap_or(0);
        let seed = self.sc.seed;
        let spec = &self.world.nodes[n as usize];
        let (on_air, role, phys) = (spec.radio_on_air, spec.role, spec.phys);
        let p = self.world.profiles[spec.profile].clone();
        let cap = self.sc.radio.max_receivers_per_beacon as usize;
        let mut heard: Vec<(u64, u32, i16, i16)> = Vec::new();
        if on_air {
            for (rx, mean) in &self.world.neighbours[n as usize] {
                if self.rt[*rx as usize].core.is_none() {
                    continue;
                }
                let rssi = f64::from(*mean) + p.fading_sigma_db * radio::fading(seed, e, n, *rx);
                let Some((reported, snr)) = p.decode(rssi) else {
                    continue;
                };
                let rank = radio::mix(seed ^ radio::mix(e ^ (u64::from(n) << 32) ^ u64::from(*rx)));
                heard.push((rank, *rx, whole_db(reported), whole_db(snr)));
            }
            if heard.len() > cap {
                heard.select_nth_unstable(cap);
                heard.truncate(cap);
            }
            heard.sort_unstable_by_key(|h| h.1);
            for (_, rx, rssi, snr) in heard {
                let d = phys.dist(&self.world.nodes[rx as usize].phys);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let delay = (d / physics::VACUUM_M_PER_US).ceil().max(1.0) as u64;
                self.stats.receptions += 1;
                self.q.schedule(
                    now + delay,
                    Ev::Rx {
                        node: rx,
                        frame: frame.clone(),
                        rssi,
                        snr,
                        freq: p.freq_khz,
                        forged: false,
                        backdate_ms: 0,
                    },
                );
            }
            // Remote accomplices' receivers.
            let sniffers = self.sniffers_of[n as usize].clone();
            for (j, mean) in sniffers {
                if self.rt[j as usize].core.is_none() {
                    continue;
                }
                let rssi = f64::from(mean)
                    + p.fading_sigma_db * radio::fading(seed, e, n, j | 0x8000_0000);
                if rssi < p.sensitivity_dbm || rssi - p.noise_dbm() < p.snr_min_db {
                    continue;
                }
                self.relay_to(n, j, &frame);
            }
        } else if role.archetype == Archetype::CollusionRing {
            let mates = self
                .groups
                .get(&(Archetype::CollusionRing, role.group))
                .cloned()
                .unwrap_or_default();
            for j in mates {
                if j != n && self.rt[j as usize].core.is_some() {
                    self.relay_to(n, j, &frame);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_rx(
        &mut self,
        t: u64,
        seq: u64,
        node: u32,
        frame: &[u8],
        rssi: i16,
        snr: i16,
        freq: u32,
        forged: bool,
    ) {
        self.log.record(
            t,
            seq,
            4,
            &[
                u64::from(node),
                u64::from(rssi.cast_unsigned()),
                u64::from(snr.cast_unsigned()),
                u64::from(freq),
                u64::from(forged),
            ],
        );
        // The tail of the envelope is its signature: it names the frame.
        self.log
            .record_bytes(&frame[frame.len().saturating_sub(16)..]);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive(
        &mut self,
        n: u32,
        frame: &[u8],
        rssi: i16,
        snr: i16,
        freq: u32,
        forged: bool,
        backdate_ms: u64,
    ) {
        let (rssi, snr) = self.alter(n, rssi, snr, forged);
        let local = self.local_ms(n);
        let rx_ms = local.saturating_sub(backdate_ms);
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        let _ = core.handle_radio_frame(
            frame,
            DeciDb(rssi.saturating_mul(10)),
            DeciDb(snr.saturating_mul(10)),
            freq,
            rx_ms,
            local,
        );
        self.pump(n);
    }
}
