//! wisp-oracle: the rewards oracle's service — the broker, the MQTT loop, storage, the HTTP
//! API and metrics around the pure core ([`wisp_oracle_core`], re-exported here module by
//! module, so `wisp_oracle::engine` and `wisp_oracle_core::engine` are the same code).
//!
//! The service (binary `wisp-oracle`):
//!
//! - [`store`]: SQLite (WAL, `synchronous=FULL`) or PostgreSQL behind one async API; the
//!   close is one transaction.
//! - [`service`]: the embedded broker or an external one, the MQTT loop, the ingest worker
//!   (commit, then ack), epoch seeds and closes as [`calendar`] decides (submodules: the
//!   clock, the replay at start, the precheck, ingest and acks tasks); [`http`]: the JSON API and
//!   dashboard; [`state`]: what the service shares with the API;
//!   [`settings`]: TOML + `WISP_` environment; [`metrics`]: Prometheus. Broker trouble told
//!   to operators and the default log filter are [`wisp_shell`]'s, shared with the agent.
#![warn(missing_docs)]

pub mod broker;
pub mod carrier_limit;
pub mod http;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;

pub use wisp_oracle_core::{
    Arrival, BeaconFact, Change, Checker, CloseError, ConfigError, EpochOutcome, EpochRewards,
    EpochState, GnssEvidence, HeartbeatFact, InclusionProof, MeasurerPool, NodeFacts, NodeRecord,
    Push, ReceiptFact, Registry, Rules, RulesConfig, WitnessFact,
};
/// The pure core's modules, under the names the service has always used.
pub use wisp_oracle_core::{
    acks, calendar, config, engine, epoch, facts, links, registry, rewards, rules, usage,
};
