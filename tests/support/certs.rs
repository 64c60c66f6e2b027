//! Certificates made for the tests: the crate's own factory, shared with its unit tests.

// Each test binary compiles support/ whole, and most of them make no certificate.
#[allow(unused_imports)]
pub use cams_flows::testing::certs::*;
