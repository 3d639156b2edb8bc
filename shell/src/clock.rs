//! The system clock as the daemons read it: milliseconds since the Unix epoch. The agent
//! corrects it by the oracle's signed clock and the oracle may replace it with a file clock for
//! tests; both start from [`system_ms`]. The cores never read it: time is their input.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock as it is (0 before 1970, which a
/// machine without a real-time clock can report until NTP has run).
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_system_clock_is_after_2026_and_moves_forward() {
        let a = super::system_ms();
        assert!(a > 1_767_225_600_000, "{a} is before 2026-01-01");
        assert!(super::system_ms() >= a);
    }
}
