//! The sans-IO parts of the bandwidth test (proof of backhaul); the daemon's async shells
//! (`wisp_agent::bandwidth`) drive them over QUIC and re-export them under their old paths.
//!
//! - [`stats`]: 100 ms bins, warm-up, median and p10 of 1 s windows, RTT medians, the IP/payload
//!   ratio.
//! - [`stream`]: the keyed ChaCha20 content, the receiver state machine (byte cap, time cap,
//!   stall, wrong bytes, truncation) and the check of a receiver's report against what was sent.

pub mod stats;
pub mod stream;
