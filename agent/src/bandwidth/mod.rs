//! Proof of backhaul: the QUIC bandwidth test between a measurer and a prover.
//!
//! Layout, sans-IO parts first (`stats`, `stream`, the address-free bodies of `negotiate` and
//! [`EpochView`] live in [`wisp_agent_core::bandwidth`] and are re-exported here under their old
//! paths):
//! - [`stats`]: 100 ms bins, warm-up, median and p10 of 1 s windows, RTT medians.
//! - [`stream`]: the keyed ChaCha20 content, the receiver state machine (byte cap, time cap,
//!   stall, wrong bytes, truncation) and the check of a receiver's report against what was sent.
//! - [`negotiate`]: the `/wisp/bw/1` request and response bodies, the [`Negotiator`] trait the
//!   measurer calls, and the refusal receipts.
//! - [`wire`]: control frames on the test's QUIC connection.
//! - [`quic`]: the dedicated, throughput-tuned quinn endpoint and the pinned certificate.
//!
//! The thin async shells, each role in its own module: [`Measurer::measure`] (`measurer.rs`),
//! [`Prover::handle_request`] / [`Prover::run`] (`prover.rs`), the content sender and receiver
//! they share (`content.rs`), control-stream plumbing (`control.rs`), what they hand back
//! ([`MeasureReport`], [`ProverReport`]; `report.rs`) and the fault injection of tests and the
//! benchmark (`Cheat`, `cheat.rs`, only with the `cheats` feature).
//!
//! One test, both directions:
//!
//! ```text
//! measurer                                   prover
//!   bind QUIC endpoint, fresh cert
//!   ── /wisp/bw/1 BwRequest (addr, cert sha256, commitment) ──▶  epoch? assigned? caps?
//!   ◀── SignedResponse: Accept | Refuse(reason, co-signed refusal receipts) ──
//!   ◀═══════ QUIC connect (cert pinned), control stream: Hello{test_id} ═══
//!   ═══ Reveal{secret} ═▶                        checks the commitment
//!   ═══ Ping ×5 ═▶ ◀═ Pong ═                     (idle RTT)
//!   ═══ Begin{Down} ═▶, uni stream of keyed bytes ─▶ receiver: bins, verify, caps
//!   ═══ Ping every 100 ms ═▶ ◀═ Pong ═           (loaded RTT)
//!   ◀═ Report{bins} ═  checked against what was written
//!   ═══ Begin{Up} ═▶   ◀─ uni stream of keyed bytes; the measurer receives, bins, verifies
//!   ═══ Ended ═▶
//!   ═══ Sign{receipts} ═▶                        checks each against its own view
//!   ◀═ Cosigned{signatures} ═                    both keep the co-signed receipts
//! ```

mod cheat;
mod content;
mod control;
mod measurer;
pub mod negotiate;
mod prover;
pub mod quic;
mod report;
pub mod wire;

/// The sans-IO statistics, from [`wisp_agent_core::bandwidth::stats`].
pub use wisp_agent_core::bandwidth::stats;
/// The sans-IO keyed content and receiver, from [`wisp_agent_core::bandwidth::stream`].
pub use wisp_agent_core::bandwidth::stream;

use std::time::Duration;

#[cfg(feature = "cheats")]
pub use cheat::Cheat;
pub use measurer::{Measurer, MeasurerError};
pub use negotiate::{
    BwInvite, BwRequest, BwResponse, Directions, INVITE_TAG, InviteAnswer, InviteRefusal,
    NegotiateError, Negotiator, RefuseReason, SignedResponse,
};
pub use prover::{Prover, ProverError, ProverJob};
pub use quic::{SocketBuffers, Tuning};
pub use report::{DirectionDetail, MeasureReport, ProverReport};
pub use stream::End;
pub use wisp_agent_core::bandwidth::EpochView;

/// The longest a direction may last.
pub const MAX_DURATION: Duration = Duration::from_secs(8);
/// The smallest byte cap accepted (a smaller test measures nothing useful).
pub const MIN_BYTE_CAP: u64 = 1 << 20;

/// Settings of the bandwidth test, for both roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BwConfig {
    /// Time cap per direction, from the first byte. At most [`MAX_DURATION`].
    pub duration: Duration,
    /// Byte cap per direction. A prover refuses requests above its own cap.
    pub byte_cap: u64,
    /// A direction fails if no byte arrives for this long.
    pub stall: Duration,
    /// Endpoint sizing.
    pub tuning: Tuning,
    /// Pings before the load, for the idle RTT.
    pub idle_pings: u32,
    /// Ping period under load, for the loaded RTT.
    pub ping_interval: Duration,
    /// How long the measurer waits for the negotiation and then for the prover to connect.
    pub connect_timeout: Duration,
    /// Concurrent tests a prover accepts.
    pub max_concurrent: usize,
}

impl Default for BwConfig {
    /// 5 s and 1 GiB per direction, 2 s stall limit, 5 idle pings, a ping every 100 ms under
    /// load, 10 s to connect, one test at a time.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(5),
            byte_cap: 1 << 30,
            stall: Duration::from_secs(2),
            tuning: Tuning::default(),
            idle_pings: 5,
            ping_interval: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            max_concurrent: 1,
        }
    }
}

/// Why a [`BwConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BwConfigError {
    /// The duration is zero or above [`MAX_DURATION`].
    #[error("bandwidth test duration must be between 1 ms and 8 s")]
    Duration,
    /// The byte cap is below [`MIN_BYTE_CAP`].
    #[error("bandwidth byte cap must be at least 1 MiB")]
    ByteCap,
    /// A zero stall limit, ping interval, connect timeout or concurrency.
    #[error("bandwidth stall, ping interval, connect timeout and concurrency must be non-zero")]
    Zero,
}

impl BwConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), BwConfigError> {
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(BwConfigError::Duration);
        }
        if self.byte_cap < MIN_BYTE_CAP {
            return Err(BwConfigError::ByteCap);
        }
        if self.stall.is_zero()
            || self.ping_interval.is_zero()
            || self.connect_timeout.is_zero()
            || self.max_concurrent == 0
        {
            return Err(BwConfigError::Zero);
        }
        Ok(())
    }
}
