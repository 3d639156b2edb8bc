//! wisp-shell: what the daemons (`wisp-agent`, `wisp-oracle`) share around their cores.
//!
//! - [`logging`]: the log subscriber — the configured level with dependencies' routine
//!   chatter out of sight, or `WISP_LOG`/`RUST_LOG` as given.
//! - [`broker_health`]: what operators are told when the MQTT broker cannot be reached (WARN
//!   lines at a bounded rate, the reason for `/readyz`); sans-IO, time is an argument.
//! - [`envconfig`]: `WISP_<SECTION>__<KEY>` environment overrides on the TOML configuration.
#![warn(missing_docs)]

pub mod broker_health;
pub mod envconfig;
pub mod logging;
