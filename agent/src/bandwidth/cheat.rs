//! Fault injection: how a dishonest prover behaves, for tests and the benchmark's cheat runs.

/// Fault injection for tests and the benchmark's cheat runs: how a dishonest prover behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Upload: after `after` bytes, send bytes of another stream.
    Garbage {
        /// Honest bytes first.
        after: u64,
    },
    /// Upload: after `after` bytes, send the first bytes again.
    Replay {
        /// Honest bytes first.
        after: u64,
    },
    /// Upload: end the stream after `after` bytes.
    Truncate {
        /// Bytes sent.
        after: u64,
    },
    /// Upload: stop sending after `after` bytes but keep the stream open.
    Stall {
        /// Bytes sent.
        after: u64,
    },
    /// Download: report this many times the bytes received.
    InflateReport {
        /// Multiplier.
        factor: u64,
    },
}
