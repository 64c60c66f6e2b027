//! Certificates made for the tests: the crate's own factory, shared with its unit tests.

pub use cams_flows::testing::certs::*;
