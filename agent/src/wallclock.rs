//! The daemon's wall clock: the system clock corrected by the offset learnt from the oracle's
//! signed clock ([`crate::clock`]). The shells read time here; the core only gets it as
//! `now_ms`.

use std::sync::atomic::{AtomicI64, Ordering};

/// What is added to the system clock to get the oracle's time, ms ([`crate::clock`]). One per
/// process: the agents of one process (tests, a devnet in one process) share its clock.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

pub use wisp_shell::clock::system_ms;

/// Milliseconds since the Unix epoch on the oracle's clock: the system clock corrected by the
/// offset learnt from the oracle's signed clock (none until one has come). Every timestamp the
/// agent signs, and every radio receive time, is taken from here.
pub fn wall_ms() -> u64 {
    system_ms().saturating_add_signed(CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

/// Sets the offset [`wall_ms`] adds to the system clock (the shell, on each oracle clock).
pub(crate) fn set_offset_ms(offset: i64) {
    CLOCK_OFFSET_MS.store(offset, Ordering::Relaxed);
}
