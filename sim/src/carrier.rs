//! Carriers in the usage model: offload partners that account their subscribers' sessions
//! themselves (RADIUS, in the real world) and report them to the oracle as signed
//! `carrier_report`s (docs/PROTOCOL.md §5.12), and the two carrier cheater archetypes.
//!
//! Off by default (`[usage] carriers = 0`, no carrier archetype): a scenario without them runs
//! exactly as before, event-log hash included.
//!
//! **Carriers.** Each has a key of its own, put on the oracle's `[rules] usage_carriers`
//! allow-list, and `carrier_credits_dc` granted at time zero through the engine's own
//! `submit_grant`, signed with the oracle's key, as subscribers are. A `carrier_share` of the
//! honest subscribers (drawn from the run's seed) is offloaded to one of them (drawn too):
//! their sessions are planned as every subscriber's (demand, nearby hotspot, the hotspot's link
//! shared pro rata), but instead of the client signing and the hotspot co-signing, the carrier
//! reports each session: [`INTERIM_REPORTS`] cumulative reports (seq 1, 2, …; the counters at
//! 1/n, 2/n, … of the session), naming the hotspot and the epoch, each posted into the engine's
//! own `Engine::submit_carrier` — the entry point `POST /v1/usage/carrier` hands reports to.
//!
//! **Paid through carriers.** The engine pays a hotspot's usage in one sum for all its payers.
//! The report attributes that sum to the carriers pro rata to the bytes each reported on the
//! hotspot in the epoch among all bytes its sessions carried (the engine's backhaul cap scales
//! every session on a hotspot alike, so the shares are those of the DC burned but for
//! rounding).
//!
//! **Archetypes**, in the usage archetypes' reward ÷ fair framework ([`crate::usage`]):
//!
//! - `forged_carrier`: a hotspot reports usage on itself as a carrier would, claiming its
//!   whole link, with a key not on the allow-list. Its instances take turns among three
//!   forgeries: a key of the owner's own (`usage_carrier_unknown`), the hotspot's node key
//!   (`signer_mismatch`: a key cannot report its own traffic), and a listed carrier named in
//!   the report but the owner's key signing (`signer_mismatch`). Each report is posted at the
//!   carrier door and also published on the hotspot's proof topic (`unexpected_kind`). It burns
//!   nothing. Fair: the same hotspot in the fair baseline, where the instance's subscriber is an
//!   honest customer of it (as for the self-dealers).
//! - `inflated_carrier`: an allow-listed carrier of its own, granted `carrier_credits_dc`,
//!   colludes with a hotspot and reports `inflation` × the hotspot's link each epoch. The
//!   carrier's credits are the cheater's money (it colludes), so the gain is the hotspot's pay
//!   less the value of the carrier's burns. Fair: the same hotspot in the fair baseline, where
//!   the same carrier reports the honest demand of the instance's subscriber on it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::usage::UsageTally;

/// Reports a carrier posts per session: cumulative interim updates, the last one the totals.
pub const INTERIM_REPORTS: u64 = 2;

/// What one carrier did in a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CarrierTally {
    /// Its key (a PeerId string, as on the allow-list).
    pub key: String,
    /// The usage cheater instance it colludes with (`None`: an honest carrier).
    pub instance: Option<usize>,
    /// Subscribers offloaded to it.
    pub subscribers: u64,
    /// Sessions it reported.
    pub sessions: u64,
    /// Reports posted.
    pub reports: u64,
    /// Reports accepted at ingest.
    pub accepted: u64,
    /// Reports refused (at the door or by the usage rules), by reason name.
    pub refused: BTreeMap<String, u64>,
    /// Its accepted reports flagged at close, by reason name.
    pub flagged: BTreeMap<String, u64>,
    /// Credits granted at time zero.
    pub granted_dc: u64,
    /// Credits burned over the run.
    pub burned_dc: u128,
    /// Usage paid to honest hotspots attributed to its reports (see the module documentation).
    pub paid_honest: u128,
}

/// Forged carrier reports and the oracle's answers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgedTally {
    /// Reports forged (each posted at the carrier door and published over MQTT).
    pub reports: u64,
    /// Accepted at either door (the target: none).
    pub accepted: u64,
    /// Refused at the carrier door, by reason name.
    pub door: BTreeMap<String, u64>,
    /// Refused on the hotspot's proof topic, by reason name.
    pub mqtt: BTreeMap<String, u64>,
}

/// The carriers' part of the usage report.
#[derive(Clone, Debug, Serialize)]
pub struct CarriersReport {
    /// Per carrier, honest ones first.
    pub carriers: Vec<CarrierTally>,
    /// Usage paid to honest hotspots through honest carriers.
    pub paid_honest: u128,
    /// Forged reports.
    pub forged: ForgedTally,
}

/// The carriers' report of a run (`None` when it had no carrier and forged nothing).
pub fn report(t: &UsageTally) -> Option<CarriersReport> {
    if t.carriers.is_empty() && t.forged.reports == 0 {
        return None;
    }
    Some(CarriersReport {
        carriers: t.carriers.clone(),
        paid_honest: t
            .carriers
            .iter()
            .filter(|c| c.instance.is_none())
            .map(|c| c.paid_honest)
            .sum(),
        forged: t.forged.clone(),
    })
}

/// The carriers' target beside the archetypes' gain ÷ fair: no forged report accepted.
pub fn targets(r: &CarriersReport) -> Vec<crate::report::TargetCheck> {
    if r.forged.reports == 0 {
        return Vec::new();
    }
    vec![crate::report::TargetCheck {
        name: "usage: forged carrier reports accepted".into(),
        value: r.forged.accepted as f64,
        limit: 0.0,
        met: r.forged.accepted == 0,
    }]
}

impl CarriersReport {
    /// The Markdown section.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if !self.carriers.is_empty() {
            let _ = writeln!(
                s,
                "\nCarriers: usage paid to honest hotspots through honest carriers {}.\n\n\
                 | carrier | colludes | subscribers | sessions | reports | accepted | refused | \
                 flagged | granted DC | burned DC | paid to honest hotspots |\n\
                 |---|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
                self.paid_honest
            );
            for (i, c) in self.carriers.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {i} | {} | {} | {} | {} | {} | {:?} | {:?} | {} | {} | {} |",
                    c.instance
                        .map_or("–".to_string(), |n| format!("instance {n}")),
                    c.subscribers,
                    c.sessions,
                    c.reports,
                    c.accepted,
                    c.refused,
                    c.flagged,
                    c.granted_dc,
                    c.burned_dc,
                    c.paid_honest
                );
            }
        }
        if self.forged.reports > 0 {
            let _ = writeln!(
                s,
                "\nForged carrier reports: {} sent, {} accepted; refused at the carrier door \
                 {:?}, on the proof topic {:?}.",
                self.forged.reports, self.forged.accepted, self.forged.door, self.forged.mqtt
            );
        }
        s
    }
}
