//! The usage model on a tiny network: honest hotspots are paid for their subscribers' usage,
//! the usage pool is exactly what its hotspots were paid and at most the payout cap of the
//! credits burned (the run's invariants), every usage cheater archetype gains at most
//! [`wisp_sim::report::TARGET_VS_FAIR`] of its fair reward, and a self-dealer gets back less
//! than it burned. Same seed, same event-log hash.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::field_reassign_with_default
)]

mod common;

use wisp_sim::report::TARGET_VS_FAIR;
use wisp_sim::scenario::Scenario;
use wisp_sim::usage::UsageArchetype;

fn tiny() -> Scenario {
    let mut sc = common::tiny_usage("usage-test", 3);
    let u = &mut sc.usage;
    u.self_dealing = 1;
    u.self_dealing_unlinked = 1;
    u.inflated_counters = 1;
    u.colluding_subscriber = 1;
    u.replayed_receipt = 1;
    sc
}

#[test]
fn usage_is_paid_and_cheating_does_not_pay() {
    let sc = tiny();
    let (main, fair, r) = wisp_sim::run(&sc, false).unwrap();
    assert!(fair.is_some());
    // Includes: every epoch's usage pool equals what its hotspots were paid, within the cap.
    assert!(r.invariants_ok(), "{:?}", r.violations);
    let tally = main.usage.as_ref().unwrap();
    assert_eq!(tally.paid.iter().sum::<u128>(), tally.pool_paid);
    let u = r.usage.clone().unwrap();
    println!("{}", u.markdown());
    assert!(u.honest_hotspots_paid > 0 && u.honest_paid > 0, "{u:?}");
    assert!(u.burned_dc > 0);
    for a in UsageArchetype::ALL
        .into_iter()
        .filter(|a| a.count(&sc.usage) > 0)
    {
        let row = u
            .archetypes
            .iter()
            .find(|x| x.archetype == a.name())
            .unwrap();
        assert!(row.vs_fair <= TARGET_VS_FAIR, "{}: {row:?}", a.name());
    }
    let linked = &u.archetypes[0];
    assert_eq!(linked.archetype, "self_dealing");
    assert_eq!(linked.paid, 0, "a linked self-dealer is refused outright");
    let unlinked = &u.archetypes[1];
    assert!(
        unlinked.burned_value > 0 && unlinked.paid < unlinked.burned_value,
        "{unlinked:?}"
    );
    for reason in ["usage_self_dealing", "usage_session_conflict"] {
        assert!(
            u.refused.get(reason).copied().unwrap_or(0) > 0,
            "{reason}: {:?}",
            u.refused
        );
    }
    assert!(r.targets_missed().is_empty(), "{:?}", r.targets_missed());
    // Deterministic: the same run again gives the same hash.
    let again = wisp_sim::sim::Sim::new(&sc, false, false).unwrap().run();
    assert_eq!(again.hash, main.hash);
}
