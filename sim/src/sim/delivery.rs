//! Delivery to the oracle (event 5): proofs travel through loss, partitions and downtime,
//! and the oracle's verdicts go into the event log and the tally.

use super::{Ev, Pending, Sim, T0_MS};
use crate::cheaters::Archetype;
use crate::oracle::Verdict;

impl Sim<'_> {
    pub(super) fn send(&mut self, n: u32, bytes: Vec<u8>) {
        self.send_at(n, bytes, self.q.now_us());
    }

    pub(super) fn send_at(&mut self, n: u32, bytes: Vec<u8>, t_us: u64) {
        self.nonce += 1;
        let p = Pending {
            node: n,
            bytes,
            nonce: self.nonce,
            attempt: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.pending[s as usize] = Some(p);
                s
            }
            None => {
                self.pending.push(Some(p));
                u32::try_from(self.pending.len() - 1).unwrap_or(u32::MAX)
            }
        };
        // Half the access RTT plus the broker hop.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let half_rtt = (self.world.nodes[n as usize].link.rtt_us / 2.0) as u64;
        let at = t_us + self.sc.oracle.delivery_ms * 1000 + half_rtt;
        self.q.schedule(at, Ev::Deliver(slot));
    }

    pub(super) fn deliver(&mut self, slot: u32) {
        let now = self.q.now_us();
        let Some(p) = self.pending[slot as usize].as_mut() else {
            return;
        };
        let x = self.world.nodes[p.node as usize].phys.x;
        let hold = self
            .faults
            .oracle_down_until(now)
            .into_iter()
            .chain(self.faults.partitioned_until(x, now))
            .max();
        if let Some(until) = hold {
            self.q.schedule(until + 1, Ev::Deliver(slot));
            return;
        }
        if self.faults.lost(p.node, p.nonce, p.attempt) {
            p.attempt += 1;
            self.stats.lost += 1;
            self.q
                .schedule(now + self.faults.retry_us(), Ev::Deliver(slot));
            return;
        }
        let Some(p) = self.pending[slot as usize].take() else {
            return;
        };
        self.free.push(slot);
        self.stats.delivered += 1;
        let id = self.world.nodes[p.node as usize].id;
        self.oracle.arrive(&id, p.bytes, T0_MS + now / 1000);
        if self.oracle.wants_flush() {
            let verdicts = self.oracle.flush();
            self.record_verdicts(&verdicts);
        }
    }

    pub(super) fn record_verdicts(&mut self, verdicts: &[Verdict]) {
        for v in verdicts {
            self.log.record_bytes(v.id.as_bytes());
            self.log
                .record_bytes(&v.reason.map_or(0, |r| r.code()).to_le_bytes());
            if let Some(r) = v.reason {
                // A refused receipt counts against its prover too: it is about the prover.
                let mut who = vec![v.node];
                if v.subject != v.node {
                    who.push(v.subject);
                }
                for n in who {
                    let arch = self
                        .world
                        .nodes
                        .get(n as usize)
                        .map_or(Archetype::Honest, |x| x.role.archetype);
                    self.stats.reject(n, arch, v.kind, r);
                }
            }
        }
    }
}
