//! wisp-sim: a deterministic discrete-event simulator of whole hotspot networks, cheaters
//! included.
//!
//! It drives the agent's sans-IO [`wisp_agent_core::core::Core`] and the oracle's own ingest
//! and epoch close ([`wisp_oracle_core::engine::Prechecker`], [`wisp_oracle_core::engine::Engine`])
//! unmodified, over a
//! simulated radio, backhaul, faults and cheaters. A run is a pure function of its scenario
//! and seed: events are ordered by `(time_us, seq)`, every random draw comes from a stream
//! keyed by `(seed, node, purpose)` or a hash of the moment it belongs to, no wall clock
//! reaches the results, and every processed event goes into a BLAKE3 event-log hash.
//!
//! Layout:
//!
//! - [`engine`]: the event queue and the event-log hash.
//! - [`rng`]: random streams per `(seed, node, purpose)` and hash-derived draws.
//! - [`scenario`]: the TOML scenario, every key with its default.
//! - [`world`]: identities, placement ([`world::placement`]), roles, radios, backhaul links,
//!   clocks, and the radio neighbourhoods.
//! - [`radio`]: WiFi 2.4/5/6 GHz and 60 GHz parameter sets, path loss, shadowing, fading,
//!   the spatial grid.
//! - [`backhaul`]: capacities, RTTs, bandwidth tests and receipts.
//! - [`cheaters`]: the archetypes and their forged values.
//! - [`faults`]: loss, partitions, churn, crashes, oracle downtime.
//! - [`oracle`]: the oracle's own engine (wisp-oracle-core's `Prechecker` and `Engine`, as
//!   the service runs them) fed every proof that reaches it, in arrival order.
//! - [`sim`]: the run itself (events and what each does).
//! - [`usage`]: the usage model (subscribers, sessions, usage cheaters; off by default), and
//!   [`carrier`]: its carriers' reports and their cheaters (off by default).
//! - [`stats`], [`report`], [`plot`]: the tally, Markdown/JSON report, SVG plots.
//!
//! **This crate depends on the pure crates only** (wisp-protocol, wisp-agent-core,
//! wisp-oracle-core, and wisp-client without its `cli` feature): no daemon, broker, database or network stack is linked in. The devnet,
//! which runs the real binaries, is the `wisp-devnet` crate (`sim/devnet/`).
#![warn(missing_docs)]

pub mod backhaul;
pub mod carrier;
pub mod cheaters;
pub mod engine;
pub mod faults;
pub mod oracle;
pub mod plot;
pub mod radio;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod stats;
pub mod usage;
pub mod world;

use anyhow::Result;

/// Runs `sc` (and, if its report asks for it, the honest-only baseline), returning the main
/// run, the baseline and the report.
pub fn run(
    sc: &scenario::Scenario,
    progress: bool,
) -> Result<(sim::RunOutput, Option<sim::RunOutput>, report::Report)> {
    let main = sim::Sim::new(sc, false, progress)?.run();
    let fair = if sc.report.fair_baseline {
        Some(sim::Sim::new(sc, true, progress)?.run())
    } else {
        None
    };
    let report = report::build(sc, &main, fair.as_ref());
    Ok((main, fair, report))
}
