//! The oracle's clock: the wall clock, or a file clock for tests that replay a run.

use std::sync::atomic::Ordering;
use std::time::Duration;

/// Milliseconds since the Unix epoch, from the system clock.
pub use wisp_shell::clock::system_ms as wall_ms;

/// The oracle's clock: the wall clock, or (for tests that must replay the same run with and
/// without crashes) a file holding the current Unix ms, named by `WISP_ORACLE_CLOCK_FILE`.
/// Every time the service reads — arrivals, epoch opens and closes, ack stamps — comes from
/// here, so a run on the file clock is a function of its inputs.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `SystemTime::now()`.
    Wall,
    /// The number in this file (re-read at every call).
    File(std::path::PathBuf),
}

impl Clock {
    /// The wall clock unless `WISP_ORACLE_CLOCK_FILE` names a file clock.
    pub fn from_env() -> Clock {
        match std::env::var_os("WISP_ORACLE_CLOCK_FILE") {
            Some(p) if !p.is_empty() => Clock::File(p.into()),
            _ => Clock::Wall,
        }
    }

    /// Milliseconds since the Unix epoch. A file clock that cannot be read (a test is
    /// rewriting it) answers the last value it read.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Wall => wall_ms(),
            Clock::File(p) => {
                static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                match std::fs::read_to_string(p)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(v) => {
                        LAST.store(v, Ordering::Relaxed);
                        v
                    }
                    None => LAST.load(Ordering::Relaxed),
                }
            }
        }
    }

    /// How long the service may wait on tokio's timers, which follow the monotonic clock,
    /// before it reads this clock again: a step of the wall clock (NTP, an operator) is seen
    /// within a second, a file clock (which moves only when a test writes it) within 100 ms.
    pub fn recheck(&self) -> Duration {
        match self {
            Clock::Wall => Duration::from_secs(1),
            Clock::File(_) => Duration::from_millis(100),
        }
    }
}
