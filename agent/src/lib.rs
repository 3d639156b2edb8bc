//! wisp-agent: the hotspot daemon.
//!
//! - [`core`], [`clock`], [`trust`]: the sans-IO decision logic (heartbeats, beacon slot,
//!   witnesses; the oracle's time; the pinned oracle key), from [`wisp_agent_core`], which the
//!   simulator drives too.
//! - [`outbox`]: the sans-IO outbox, also from [`wisp_agent_core`]: staged and committed proofs
//!   with their bytes, what to commit and when, send, resend with backoff and jitter, evict; the
//!   shell only writes and publishes.
//! - [`backhaul`]: the sans-IO proof-of-backhaul decisions (who measures whom, invitations,
//!   summaries), also from [`wisp_agent_core`].
//! - [`store`]: the durable outbox (SQLite WAL, `synchronous=FULL`, batched commits).
//! - [`config`]: TOML + `WISP_` environment + flags, validated.
//! - [`metrics`], [`status`]: Prometheus metrics and the status routes; [`http`]: the minimal
//!   HTTP/1.1 server they are served by.
//! - the log subscriber and the broker trouble reports are [`wisp_shell`]'s, shared with the
//!   oracle.
//! - [`air`]: the shared simulated air of a devnet (UDP to the air service).
//! - [`device`]: firmware devices (real drivers or simulated) as the daemon's hardware.
//! - [`net`]: the libp2p network (gossip of witnesses and seeds, `/wisp/status/1`,
//!   `/wisp/bw/1`), driven by its own task.
//! - [`wallclock`]: the system clock corrected by the oracle's (what the shells stamp).
//! - [`shell`]: the tokio daemon tying it together (MQTT, libp2p, device, store, HTTP).
#![warn(missing_docs)]

pub mod air;
pub mod bandwidth;
pub mod config;
pub mod device;
pub mod http;
pub mod metrics;
pub mod net;
pub mod shell;
pub mod status;
pub mod store;
pub mod wallclock;

/// The sans-IO core's modules, under the names the daemon has always used.
pub use wisp_agent_core::{backhaul, clock, core, outbox, trust};

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
