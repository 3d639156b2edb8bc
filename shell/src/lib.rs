//! wisp-shell: what the daemons (`wisp-agent`, `wisp-oracle`) share around their cores.
//!
//! - [`keyfile`]: PKCS#8 PEM key files, written atomically with mode 0600, and the owner-only
//!   data directories (0700) and database files (0600) the daemons create, and the address
//!   files they replace whole (a reader never sees half of one).
//! - [`clock`]: the system clock in Unix ms, the one place a daemon reads it.
//! - [`exposition`]: the metrics text format every service's `/metrics` serves.
//! - [`logging`]: the log subscriber — the configured level with dependencies' routine
//!   chatter out of sight, or `WISP_LOG`/`RUST_LOG` as given.
//! - [`broker`]: an MQTT broker's URL, login and CA as both daemons configure them.
//! - [`broker_health`]: what operators are told when the MQTT broker cannot be reached (WARN
//!   lines at a bounded rate, the reason for `/readyz`); sans-IO, time is an argument.
//! - [`envconfig`]: a daemon's raw configuration, its TOML file with `WISP_<SECTION>__<KEY>`
//!   environment overrides.
//! - [`http_get`]: a bounded HTTP GET (and POST) on a std socket, for a local daemon's JSON API.
#![warn(missing_docs)]

pub mod broker;
pub mod broker_health;
pub mod clock;
pub mod envconfig;
pub mod exposition;
pub mod http_get;
pub mod keyfile;
pub mod logging;
