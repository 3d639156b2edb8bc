//! wisp-devnet: the whole network on one machine — the real `wisp-oracle` and `wisp-agent`
//! binaries as processes on loopback, their simulated devices sharing one simulated air.
//!
//! - [`air`]: the shared simulated air (a UDP service with the simulator's radio model,
//!   [`wisp_sim::radio`]).
//! - [`devnet`]: starting, onboarding, polling and stopping the processes; real cheaters
//!   around the unchanged agent.
#![warn(missing_docs)]

pub mod air;
pub mod devnet;
