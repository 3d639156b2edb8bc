//! wisp-oracle: the rewards oracle.
//!
//! This crate will hold the pure verification rules and reward math, and the service shell
//! (MQTT ingest, storage, HTTP API). Its first piece is [`acks`]: batching verdicts into
//! oracle-signed acks, one signature per node per batch.
#![warn(missing_docs)]

pub mod acks;
