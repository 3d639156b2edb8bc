//! Crash points, for tests: with the cargo feature `failpoints`, `WISP_ORACLE_CRASH_AT=<name>`
//! makes the process abort at the named point, as a power cut would stop it, so the crash
//! tests can check what a transaction leaves behind. Without the feature nothing is compiled
//! at the points, and the variable is refused at start-up ([`arm`]).
//!
//! The points are [`fail`](https://docs.rs/fail) fail points, configured once, at start-up;
//! the `crash_point!` macro places one.

/// Inside the ingest transaction, before commit.
pub const INGEST_BEFORE_COMMIT: &str = "ingest-before-commit";
/// Inside the close transaction, after the rewards were written, before commit.
pub const CLOSE_MID_TRANSACTION: &str = "close-mid-transaction";
/// After the close committed, before the manifest was published.
pub const CLOSE_AFTER_COMMIT: &str = "close-after-commit";

/// Every crash point.
pub const ALL: [&str; 3] = [
    INGEST_BEFORE_COMMIT,
    CLOSE_MID_TRANSACTION,
    CLOSE_AFTER_COMMIT,
];

/// The environment variable naming the point to crash at.
pub const ENV: &str = "WISP_ORACLE_CRASH_AT";

/// Why the crash point asked for cannot be armed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrashPointError {
    /// The name is not one of [`ALL`].
    #[error("{ENV}=`{0}` is not a crash point; the crash points are {list}", list = ALL.join(", "))]
    Unknown(String),
    /// This build was made without the feature `failpoints`.
    #[error(
        "{ENV} is set, but this build has no crash points (they are compiled in with the cargo \
         feature `failpoints`, for tests): unset it"
    )]
    NotCompiled,
    /// The fail point registry refused the configuration.
    #[error("arming crash point {0}: {1}")]
    Arm(&'static str, String),
}

/// Arms the crash point `point` names (the value of [`ENV`], read once at start-up); `None`
/// arms nothing.
pub fn arm(point: Option<&str>) -> Result<(), CrashPointError> {
    let Some(point) = point else {
        return Ok(());
    };
    let Some(name) = ALL.into_iter().find(|p| *p == point) else {
        return Err(CrashPointError::Unknown(point.to_string()));
    };
    arm_named(name)
}

#[cfg(feature = "failpoints")]
fn arm_named(name: &'static str) -> Result<(), CrashPointError> {
    // `return`: the point calls its closure, which aborts.
    fail::cfg(name, "return").map_err(|e| CrashPointError::Arm(name, e))
}

#[cfg(not(feature = "failpoints"))]
fn arm_named(_: &'static str) -> Result<(), CrashPointError> {
    Err(CrashPointError::NotCompiled)
}

/// Aborts the process at crash point `name`, saying so on stderr first (the tests look for
/// the line).
#[cfg(feature = "failpoints")]
pub(crate) fn abort_at(name: &str) -> ! {
    eprintln!("crash point {name} reached: aborting");
    std::process::abort()
}

/// A crash point named `$name` (one of [`ALL`]): aborts the process there if it was armed.
/// Without the feature `failpoints`, nothing.
macro_rules! crash_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| $crate::store::crash::abort_at($name));
        #[cfg(not(feature = "failpoints"))]
        let _ = $name;
    };
}
pub(crate) use crash_point;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_arms_nothing_and_an_unknown_name_lists_the_points() {
        assert_eq!(arm(None), Ok(()));
        let e = arm(Some("close-twice")).unwrap_err();
        assert_eq!(e, CrashPointError::Unknown("close-twice".into()));
        let msg = e.to_string();
        for p in ALL {
            assert!(msg.contains(p), "{msg}");
        }
    }
}
