//! The sans-IO parts of the bandwidth test (proof of backhaul); the daemon's async shells
//! (`wisp_agent::bandwidth`) drive them over QUIC and re-export them under their old paths.
//!
//! - [`stats`]: 100 ms bins, warm-up, median and p10 of 1 s windows, RTT medians, the IP/payload
//!   ratio.
//! - [`stream`]: the keyed ChaCha20 content, the receiver state machine (byte cap, time cap,
//!   stall, wrong bytes, truncation) and the check of a receiver's report against what was sent.
//! - [`negotiate`]: the `/wisp/bw/1` bodies without a socket address (the prover's signed
//!   response, the invitation and its answer) and their canonical encoding.
//! - [`EpochView`]: the epoch a prover checks requests against and [`crate::backhaul`] holds.

use wisp_protocol::id::NodeId;
use wisp_protocol::units::EpochNo;

pub mod negotiate;
pub mod stats;
pub mod stream;

/// The prover's view of the current epoch, from the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochView {
    /// The current epoch.
    pub epoch: EpochNo,
    /// Its seed.
    pub seed: [u8; 32],
    /// The nodes eligible to measure.
    pub eligible: Vec<NodeId>,
    /// Measurers per prover (`EpochParams::measurers_per_prover`).
    pub measurers_per_prover: usize,
}
