//! What cheaters do beyond their agent core: relayed frames with forged readings, altered
//! driver readings, replayed witnesses, back-dated heartbeats (event 10).

use std::sync::Arc;

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Heartbeat, Versions, Witness};
use wisp_protocol::physics;
use wisp_protocol::units::DeciDb;

use super::{CAPTURE_CAP, Ev, Sim, T0_MS, whole_db};
use crate::cheaters::{self, Archetype};
use crate::radio;
use crate::rng;
use crate::world;

impl Sim<'_> {
    /// The RSSI cheater `j` claims for a beacon of `tx`, plausible for their asserted cells.
    fn forged_rssi(&self, tx: u32, j: u32) -> (i16, i16) {
        let t = &self.world.nodes[tx as usize];
        let me = &self.world.nodes[j as usize];
        let p = &self.world.profiles[t.profile];
        let claimed = t.asserted.dist(&me.asserted);
        let e = self.current.unwrap_or(0);
        let noise = rng::hash_normal(
            self.sc.seed,
            rng::Purpose::Cheat,
            &[u64::from(tx), u64::from(j), e],
        );
        let mean =
            p.tx_power_dbm + t.declared_gain_dbi + me.declared_gain_dbi - p.path_loss_db(claimed);
        // The oracle's bound uses the nearest the two cells can be (about 25 m closer).
        let bound = physics::max_rssi_dbm(
            p.tx_power_dbm,
            t.declared_gain_dbi,
            me.declared_gain_dbi,
            (claimed - 25.0).max(0.0),
            p.freq_hz(),
            6.0,
        );
        let rssi =
            cheaters::plausible_rssi(mean, bound, noise, 2.0).clamp(-99.0, radio::RSSI_MAX_DBM);
        let snr = (rssi - p.noise_dbm()).clamp(p.snr_min_db, radio::SNR_MAX_DB);
        (whole_db(rssi), whole_db(snr))
    }

    pub(super) fn relay_to(&mut self, tx: u32, j: u32, frame: &Arc<[u8]>) {
        let role = self.world.nodes[j as usize].role;
        let e = self.current.unwrap_or(0);
        let u = rng::unit(rng::hash_u64(
            self.sc.seed,
            rng::Purpose::Cheat,
            &[7, u64::from(tx), u64::from(j), e],
        ));
        let delay_us = match role.archetype {
            // Relayed over the internet; some arrive too late for the lag rule.
            Archetype::Relay => {
                if role.variant {
                    if self.rt[j as usize].captured.len() < CAPTURE_CAP {
                        self.rt[j as usize].captured.push(frame.clone());
                    }
                    return;
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let d = (50_000.0 + u * 3_000_000.0) as u64;
                d
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Archetype::InflatedGain => (30_000.0 + u * 170_000.0) as u64,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            _ => (20_000.0 + u * 60_000.0) as u64,
        };
        let (rssi, snr) = self.forged_rssi(tx, j);
        let freq = self.world.profiles[self.world.nodes[tx as usize].profile].freq_khz;
        self.stats.relayed += 1;
        self.q.schedule(
            self.q.now_us() + delay_us,
            Ev::Rx {
                node: j,
                frame: frame.clone(),
                rssi,
                snr,
                freq,
                forged: true,
                backdate_ms: if self.sc.cheaters.evasive {
                    delay_us / 1_000
                } else {
                    0
                },
            },
        );
    }

    /// What a cheater's modified driver hands its core instead of the real reading.
    pub(super) fn alter(&self, n: u32, rssi: i16, snr: i16, forged: bool) -> (i16, i16) {
        if forged {
            return (rssi, snr);
        }
        let role = self.world.nodes[n as usize].role;
        match role.archetype {
            Archetype::ForgedRssi if role.variant => (-65, 25),
            Archetype::ForgedRssi if self.sc.cheaters.evasive => (
                rssi.saturating_add(cheaters::RSSI_INFLATION_EVASIVE_DB),
                snr,
            ),
            Archetype::ForgedRssi => (rssi.saturating_add(cheaters::RSSI_INFLATION_DB), snr),
            Archetype::InflatedGain => {
                #[allow(clippy::cast_possible_truncation)]
                let g = world::GAIN_INFLATION_DB as i16;
                (rssi.saturating_add(g), snr)
            }
            _ => (rssi, snr),
        }
    }

    /// A replaying cheater signs a witness of an old beacon itself (the core would refuse it).
    pub(super) fn replay(&mut self, n: u32, frame: &[u8]) {
        let spec = &self.world.nodes[n as usize];
        let Ok(opened) = wisp_protocol::envelope::open::<wisp_protocol::msg::Beacon>(frame) else {
            return;
        };
        let Some(tx) = self.oracle.index_of(&opened.signer) else {
            return;
        };
        let (rssi, snr) = self.forged_rssi(tx, n);
        let w = Witness {
            beacon: frame.to_vec(),
            rssi: DeciDb(rssi * 10),
            snr: DeciDb(snr * 10),
            freq_khz: opened.msg.freq_khz,
            rx_ms: self.local_ms(n),
            cell: spec.cell,
        };
        let bytes = Envelope::sign(&spec.key, &w).to_bytes();
        self.stats.signatures += 1;
        self.send(n, bytes);
    }

    /// A fake-heartbeat cheater sends heartbeats for the whole epoch, back-dated.
    pub(super) fn backdate(&mut self, n: u32, e: u64) {
        let spec = &self.world.nodes[n as usize];
        let interval = u64::from(self.sc.epoch.heartbeat_interval_ms).max(1);
        let start = T0_MS + e * self.sc.epoch.duration_ms;
        let count = self.sc.epoch.duration_ms.div_ceil(interval);
        let mut out = Vec::new();
        for k in 0..count {
            let sent = start + k * interval + 1_000;
            if sent > self.local_ms(n) {
                break;
            }
            self.rt[n as usize].hb_seq += 1;
            let hb = Heartbeat {
                epoch: e,
                seq: self.rt[n as usize].hb_seq,
                uptime_s: (sent - T0_MS) / 1000,
                sent_ms: sent,
                fix: Some(world::fix_at(
                    self.sc.seed,
                    n,
                    e,
                    &spec.asserted,
                    &self.world.proj,
                    sent,
                )),
                cell: Some(spec.cell),
                versions: Versions::new("wisp-sim", "sim"),
                peers: 3,
            };
            out.push(Envelope::sign(&spec.key, &hb).to_bytes());
        }
        self.stats.signatures += out.len() as u64;
        for b in out {
            self.send(n, b);
        }
    }
}
