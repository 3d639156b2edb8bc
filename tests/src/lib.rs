//! wisp-tests: cross-crate integration and fault tests. The tests live in `tests/tests/`.
#![warn(missing_docs)]

use std::path::PathBuf;

/// The directory of the workspace's binaries (`target/debug` for `cargo test`), checked to hold
/// each of `needed`: a missing one panics with the command that builds it.
pub fn bin_dir(needed: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/debug")
        .to_path_buf();
    for b in needed {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo test --workspace` first (it builds the binaries with \
             the test features: the oracle's crash points, the agent's cheats)",
            dir.join(b).display()
        );
    }
    dir
}
