//! wisp-agent: the hotspot daemon.
//!
//! This crate will hold the agent's sans-IO core (schedules, proof assembly, outbox logic) and
//! its tokio shell (MQTT, libp2p, QUIC, store, HTTP status). Its first piece is [`trust`]: the
//! agent acts only on what the pinned oracle key signed.
#![warn(missing_docs)]

pub mod trust;
