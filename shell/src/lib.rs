//! wisp-shell: what the daemons (`wisp-agent`, `wisp-oracle`) share around their cores.
//!
//! - [`logging`]: the log subscriber — the configured level with dependencies' routine
//!   chatter out of sight, or `WISP_LOG`/`RUST_LOG` as given.
//! - [`broker_health`]: what operators are told when the MQTT broker cannot be reached (WARN
//!   lines at a bounded rate, the reason for `/readyz`); sans-IO, time is an argument.
//! - [`envconfig`]: a daemon's raw configuration, its TOML file with `WISP_<SECTION>__<KEY>`
//!   environment overrides.
#![warn(missing_docs)]

pub mod broker_health;
pub mod envconfig;
pub mod logging;
