//! Helpers shared by the crate's unit tests and its integration tests (`tests/`), compiled only
//! with the `test-support` feature: the crate turns it on for its own tests through a
//! dev-dependency on itself, so release builds carry none of this (nor rcgen).
//!
//! Everything here panics on failure instead of returning errors: a helper that cannot make its
//! fixture has nothing better to do than fail the test that asked for it.

pub mod certs;
