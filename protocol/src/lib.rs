//! wisp-protocol: the wire format every wisp component shares.
//!
//! A hotspot proves its radio coverage, backhaul bandwidth and location with signed messages;
//! the oracle verifies them and pays rewards. This crate defines those messages and the rules
//! that make one proof have exactly one byte form. `cargo run -p wisp-protocol --example demo`
//! shows them: two hotspots and an oracle sign an epoch seed, a beacon, a witness and an ack,
//! each verified from its raw bytes and printed as JSON with its size on the wire.
//!
//! - [`envelope`]: the signed envelope (`version, kind, payload, signer, signature, cosigners`),
//!   domain-separated signatures verified over the raw bytes *before* any decoding under one
//!   rule for single and batch verification ([`envelope::verify_signature`]: cofactored, with
//!   canonical encodings and no small-order key or `R`), canonical decoding, per-kind size
//!   limits, and [`ProofId`] (BLAKE3 of the bytes).
//! - [`msg`]: the payloads (`Onboard`, `EpochSeed`, `Beacon`, `Witness`, `BandwidthReceipt`,
//!   `Heartbeat`, `Ack`, `RewardManifest`, `StatusReport`, `UsageReceipt`, `CreditGrant`,
//!   `CarrierReport`), all
//!   integers and bytes (no floats), encoded with postcard.
//! - [`id`]: node and subscriber identity (ed25519, displayed as the libp2p PeerId string).
//! - [`reason`]: the stable rejection codes the oracle stores, counts and acks, and which of
//!   them are transient ("not judged now": resend later) rather than final.
//! - [`schedule`]: beacon slots, nonces and measurer assignment derived from the epoch seed.
//! - [`geo`] and [`physics`]: H3 cells, great-circle distance, free-space path loss, the
//!   plausible-RSSI bound and the speed-of-light RTT bound.
//! - [`merkle`]: the reward manifest's Merkle tree and inclusion proofs.
//! - [`topics`]: MQTT topic names, and who may publish and subscribe where ([`topics::may_publish`], [`topics::may_subscribe`]).
//! - [`login`]: the broker password a node derives from its key, and its check.
//!
//! Nothing here reads the clock, a socket or an unseeded RNG: time and randomness are inputs,
//! so the agent, the oracle and the simulator compute identical results from identical inputs.
//! There is no I/O at all: key files live in `wisp-shell`. The byte-level format is
//! specified in `docs/PROTOCOL.md`.
#![warn(missing_docs)]

extern crate alloc;

pub mod bytes;
pub mod envelope;
pub mod geo;
pub mod id;
pub mod kind;
pub mod login;
pub mod merkle;
pub mod msg;
pub mod physics;
pub mod reason;
pub mod schedule;
pub mod topics;
pub mod units;

pub use envelope::{Envelope, EnvelopeError, Opened, ProofId};
pub use geo::Cell;
pub use id::{NodeId, NodeKey, SubscriberId};
pub use kind::Kind;
pub use reason::Reason;

/// Protocol version carried in every envelope and in every domain tag (`wisp/v1/...`).
pub const VERSION: u8 = 1;
