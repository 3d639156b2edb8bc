//! The agent cores: started and stopped (crash, churn, restart with the persisted sequence
//! number and activity), and their outputs applied: events tallied, frames transmitted, proofs
//! sent, the next wake-up scheduled.

use wisp_agent_core::core::{Core, CoreConfig, Event as CoreEvent, Ignored, RadioParams};
use wisp_protocol::msg::Versions;

use super::{Ev, Outputs, Sim, deci, drain};

impl Sim<'_> {
    pub(super) fn start_core(&mut self, node: u32) {
        let n = &self.world.nodes[node as usize];
        let p = &self.world.profiles[n.profile];
        let mut cfg = CoreConfig::new(Some(n.cell), Versions::new("wisp-sim", "sim"));
        cfg.radio = RadioParams {
            freq_khz: p.freq_khz,
            width_mhz: p.width_mhz,
            tx_power: deci(p.tx_power_dbm),
            antenna_gain: deci(n.declared_gain_dbi),
        };
        cfg.heartbeat_interval_ms = u64::from(self.sc.epoch.heartbeat_interval_ms);
        cfg.max_witnesses_per_epoch = self.sc.radio.max_witnesses_per_epoch as usize;
        let now = self.local_ms(node);
        let rt = &mut self.rt[node as usize];
        let mut core = Core::new(n.key.clone(), cfg, self.oracle_key.id(), now, rt.hb_seq);
        if let Some(ms) = rt.hb_ms {
            core.resume_heartbeats(ms, now);
        }
        if let Some(ms) = rt.beacon_ms {
            core.resume_beacon(ms);
        }
        rt.core = Some(core);
        rt.wake_at = None;
        rt.wake_gen += 1;
    }

    pub(super) fn stop_core(&mut self, node: u32) {
        let rt = &mut self.rt[node as usize];
        if let Some(c) = rt.core.take() {
            rt.hb_seq = c.heartbeat_seq();
            let a = c.activity();
            rt.hb_ms = a.last_heartbeat_ms.or(rt.hb_ms);
            rt.beacon_ms = a.last_beacon_ms.or(rt.beacon_ms);
        }
        rt.wake_at = None;
        rt.wake_gen += 1;
    }

    pub(super) fn pump(&mut self, n: u32) {
        let Some(core) = self.rt[n as usize].core.as_mut() else {
            return;
        };
        let out = drain(core);
        self.apply(n, out, self.q.now_us());
    }

    /// Applies a core's outputs as of time `t_us`.
    pub(super) fn apply(&mut self, n: u32, out: Outputs, t_us: u64) {
        for e in out.events {
            let name = match e {
                CoreEvent::NewEpoch { .. } => continue,
                CoreEvent::ClockSkew { .. } => "clock_skew_warning",
                CoreEvent::BeaconMissed { .. } => "beacon_missed",
                CoreEvent::OutputDropped => "output_dropped",
                CoreEvent::Ignored(why) => match why {
                    Ignored::Invalid(_) => "ignored_invalid",
                    Ignored::Own => "ignored_own",
                    Ignored::WrongEpoch => "ignored_wrong_epoch",
                    Ignored::BadNonce => "ignored_bad_nonce",
                    Ignored::WrongSlot => "ignored_wrong_slot",
                    Ignored::BadRxTime => "ignored_bad_rx_time",
                    Ignored::Duplicate => "ignored_duplicate",
                    Ignored::Budget => "ignored_budget",
                    Ignored::NoLocation => "ignored_no_location",
                    Ignored::NoBeacon => "ignored_no_beacon",
                },
            };
            self.stats.core_event(name);
        }
        self.stats.signatures += out.proofs.len() as u64;
        for f in out.frames {
            self.transmit(n, f);
        }
        for p in out.proofs {
            self.send_at(n, p, t_us);
        }
        if let Some(t) = out.timeout {
            let at = self.sim_us_of_local(n, t);
            let rt = &mut self.rt[n as usize];
            if rt.wake_at != Some(t) {
                rt.wake_gen += 1;
                rt.wake_at = Some(t);
                let g = rt.wake_gen;
                self.q.schedule(at, Ev::Wake(n, g));
            }
        }
    }
}
