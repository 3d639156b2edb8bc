//! wisp-oracle-core: the rewards oracle's pure core — verification rules, ingest, epochs and
//! reward math, with no I/O.
//!
//! **This crate has no tokio, no sockets, no file system and no clock** (`.ci/run` fails the
//! build if its dependency tree gains one): time is always an argument (`now_ms`) and
//! signature checking is injected, so the service shell (`wisp-oracle`) and the simulator
//! (`wisp-sim`) get identical results from identical inputs. Results never depend on hash-map
//! iteration order (maps are `BTreeMap`, lists are sorted), and the only order that matters is
//! an explicit arrival sequence number.
//!
//! Layout, in the order the service calls it:
//!
//! - [`config`]: [`RulesConfig`] (TOML, every key documented with its default) validated into
//!   [`Rules`].
//! - [`registry`]: [`Registry`] of onboarded nodes — attestation, serial binding, re-assertion
//!   rate limit, replay of old onboards, recent heartbeats, carried location trust.
//! - [`rules`]: [`Checker`], the stateless checks of beacons, witnesses, bandwidth receipts and
//!   heartbeats against one epoch's seed, each returning a compact fact or a `Reason`.
//! - [`facts`]: the facts of proofs that passed the stateless rules and an epoch's outcome
//!   (plain data the registry applies).
//! - [`epoch`]: [`EpochState`] collects one epoch's facts with their arrival order and, after
//!   the settle window, applies the rules that need several proofs (duplicates, one beacon per
//!   node, witness limit, reciprocity, distinct measurers, uptime, location trust, measurers
//!   that disagree, evidence of cheating, penalties; the close in `epoch/close.rs`).
//! - [`links`]: the epoch's radio links judged together: the network's propagation model and
//!   reach per band, implausible links, nodes whose links betray a false place, a relay or
//!   inflated levels, and groups of nodes nobody outside hears.
//! - [`rewards`]: integer pools, units and largest-remainder allocation whose amounts sum to
//!   the emission exactly; manifest pages, Merkle root and inclusion proofs.
//! - [`share`]: the largest-remainder allocation itself, below both `rewards` and `usage`.
//! - [`usage`]: proof of usage — the [`Ledger`] of subscribers' data credits (grants applied
//!   once, burns at close), the ingest rules of usage receipts (sessions bound to one
//!   subscriber and hotspot, increasing seq and counters, no self-dealing), which judge an
//!   allow-listed carrier's reports too (a [`usage::Claim`] either way, the carrier paying
//!   from its own account), and the close's backhaul cap and burns.
//! - [`acks`]: batching verdicts into oracle-signed acks.
//! - [`calendar`]: [`EpochCalendar`], the epoch policy as decisions — the genesis, which
//!   epoch is current and must be opened, each epoch's emission, the next deadline.
//! - [`engine`]: ingest without I/O: publishes in, rows to store and acks out (the stateless
//!   precheck stage in `engine/precheck.rs`, re-exported); replay after a restart; epoch close
//!   into rewards and signed manifest pages.
//!
//! A typical epoch:
//!
//! ```text
//! registry.apply_onboard(&onboard, now)?;                // whenever an Onboard arrives
//! let checker = Checker::new(&registry, &seed);
//! let fact = checker.witness(&opened, now)?;           // Err(reason) → ack rejected(reason)
//! state.push_witness(Arrival::new(seq, now), &fact)?;    // stored → ack accepted
//! let outcome = state.close(&registry, now)?;            // after end + settle
//! registry.apply_epoch(&outcome);
//! let rewards = rewards::compute(&registry, &outcome, emission);
//! let pages = rewards.manifest_pages();                  // sign and publish
//! ```
#![warn(missing_docs)]

pub mod acks;
pub mod calendar;
pub mod config;
pub mod engine;
pub mod epoch;
pub mod facts;
pub mod links;
pub mod registry;
pub mod rewards;
pub mod rules;
pub mod share;
pub mod usage;

pub use calendar::{Due, EpochCalendar, Opening};
pub use config::{ConfigError, Rules, RulesConfig};
pub use epoch::{Arrival, CloseError, EpochOutcome, EpochState, NodeFacts, Push};
pub use registry::{Change, NodeRecord, Registry};
pub use rewards::{EpochRewards, InclusionProof};
pub use rules::{
    BeaconFact, Checker, GnssEvidence, HeartbeatFact, MeasurerPool, ReceiptFact, WitnessFact,
};
pub use usage::{Balance, Ledger, UsageOutcome};
