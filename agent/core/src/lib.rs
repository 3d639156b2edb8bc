//! wisp-agent-core: the hotspot agent's sans-IO decision logic.
//!
//! **This crate has no tokio, no sockets, no file system and no clock** (`.ci/run` fails the
//! build if its dependency tree gains one): every input carries `now_ms`, every output is
//! polled, so the daemon (`wisp-agent`) and the simulator (`wisp-sim`) drive the same code.
//!
//! - [`core`]: what to sign and transmit, and when (heartbeats, the beacon slot, witnesses).
//! - [`clock`]: the agent's view of the oracle's time, from its signed clock messages.
//! - [`trust`]: only the pinned oracle key is believed.
//! - [`outbox`]: staged and committed proofs with their bytes, what to commit and when, send,
//!   resend with backoff and jitter, evict; the daemon only writes and publishes.
//! - [`backhaul`]: proof of backhaul's decisions: who measures whom this epoch, the invitations
//!   and the summaries of finished tests; the daemon sends, queues and runs the tests.
//! - [`bandwidth`]: the bandwidth test's statistics, keyed content, address-free negotiation
//!   bodies and epoch view; the daemon's QUIC shells drive them.
//! - [`usage`]: proof of usage, the hotspot's side: subscribers' receipts checked against the
//!   router's counters, co-signed, one per session per epoch for the outbox, and whom to block.
#![warn(missing_docs)]

pub mod backhaul;
pub mod bandwidth;
pub mod clock;
pub mod core;
pub mod outbox;
pub mod trust;
pub mod usage;
