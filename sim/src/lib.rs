//! wisp-sim: a deterministic discrete-event simulator of hotspot networks.
//!
//! This crate will drive the agent core and the oracle rules unmodified over simulated radios,
//! backhaul and cheaters. Its first piece is [`rng`]: independent random streams per
//! `(seed, node, purpose)`, so adding a node never shifts another node's randomness.
#![warn(missing_docs)]

pub mod rng;
