//! wisp-tests: cross-crate integration and fault tests. The tests live in `tests/tests/`.
#![warn(missing_docs)]
