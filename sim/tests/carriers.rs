//! Carriers in the usage model on a tiny network: an allow-listed carrier's reports are
//! accepted and burned from its own credits, and the honest hotspots that carried its
//! subscribers are paid for them; a forged carrier report is refused at both doors and pays
//! nothing; an inflating carrier gains at most [`wisp_sim::report::TARGET_VS_FAIR`] of its fair
//! reward (it pays for what it reports). Same seed, same event-log hash, carriers on.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::field_reassign_with_default
)]

mod common;

use wisp_sim::report::TARGET_VS_FAIR;
use wisp_sim::scenario::Scenario;

fn tiny() -> Scenario {
    let mut sc = common::tiny_usage("carriers-test", 5);
    let u = &mut sc.usage;
    u.carriers = 2;
    u.carrier_share = 0.5;
    // Three forgers: one of each forgery (an unlisted key, the hotspot's own key, a listed
    // carrier named but not signing).
    u.forged_carrier = 3;
    u.inflated_carrier = 1;
    sc
}

#[test]
fn carriers_are_paid_and_their_cheaters_are_not() {
    let sc = tiny();
    let (main, fair, r) = wisp_sim::run(&sc, false).unwrap();
    assert!(fair.is_some());
    // Includes: every epoch's usage pool equals what its hotspots were paid, within the cap.
    assert!(r.invariants_ok(), "{:?}", r.violations);
    let u = r.usage.clone().unwrap();
    println!("{}", u.markdown());
    let c = u.carriers.as_ref().unwrap();
    assert_eq!(
        c.carriers.len(),
        3,
        "two honest carriers and the inflater's"
    );
    for honest in c.carriers.iter().filter(|c| c.instance.is_none()) {
        assert!(honest.subscribers > 0 && honest.sessions > 0, "{honest:?}");
        assert_eq!(honest.accepted, honest.reports, "{honest:?}");
        assert!(honest.refused.is_empty(), "{honest:?}");
        assert!(
            honest.burned_dc > 0 && honest.paid_honest > 0,
            "an allow-listed carrier's reports are burned and paid: {honest:?}"
        );
    }
    assert!(c.paid_honest > 0 && c.paid_honest <= u.honest_paid);
    // Forged: refused at the door for each forgery and on the proof topic, paid nothing.
    assert!(c.forged.reports > 0);
    assert_eq!(c.forged.accepted, 0, "{:?}", c.forged);
    for reason in ["usage_carrier_unknown", "signer_mismatch"] {
        assert!(
            c.forged.door.get(reason).copied().unwrap_or(0) > 0,
            "{reason}: {:?}",
            c.forged
        );
    }
    assert_eq!(
        c.forged.mqtt.get("unexpected_kind").copied(),
        Some(c.forged.reports),
        "{:?}",
        c.forged
    );
    let row = |name: &str| {
        u.archetypes
            .iter()
            .find(|x| x.archetype == name)
            .unwrap()
            .clone()
    };
    let forged = row("forged_carrier");
    assert_eq!((forged.paid, forged.burned_value), (0, 0), "{forged:?}");
    assert!(forged.fair > 0, "{forged:?}");
    let inflated = row("inflated_carrier");
    assert!(inflated.vs_fair <= TARGET_VS_FAIR, "{inflated:?}");
    assert!(
        inflated.paid > 0 && inflated.paid < inflated.burned_value,
        "paid only for what it burned, and at most the payout cap of it: {inflated:?}"
    );
    let inflater = c.carriers.iter().find(|c| c.instance.is_some()).unwrap();
    assert!(
        inflater
            .flagged
            .get("usage_exceeds_backhaul")
            .copied()
            .unwrap_or(0)
            > 0,
        "{inflater:?}"
    );
    assert!(r.targets_missed().is_empty(), "{:?}", r.targets_missed());
    // Deterministic: the same run again gives the same hash.
    let again = wisp_sim::sim::Sim::new(&sc, false, false).unwrap().run();
    assert_eq!(again.hash, main.hash);
}

#[test]
fn carriers_change_the_run() {
    // Carriers on and off give different runs (their reports are in the event log), and with
    // no carrier nobody is offloaded, whatever the share.
    let mut off = tiny();
    off.report.fair_baseline = false;
    off.usage.forged_carrier = 0;
    off.usage.inflated_carrier = 0;
    let mut on = off.clone();
    off.usage.carriers = 0;
    let a = wisp_sim::sim::Sim::new(&off, false, false).unwrap().run();
    let mut share = off.clone();
    share.usage.carrier_share = 0.9;
    let b = wisp_sim::sim::Sim::new(&share, false, false).unwrap().run();
    assert_eq!(a.hash, b.hash, "no carrier: carrier_share changes nothing");
    on.usage.carriers = 1;
    let c = wisp_sim::sim::Sim::new(&on, false, false).unwrap().run();
    assert_ne!(a.hash, c.hash);
    assert!(a.usage.unwrap().carriers.is_empty());
}
