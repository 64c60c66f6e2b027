//! The upstream edge: HTTP, JSON and signatures. Knows CAMS's wire format; hands the rest of the
//! gateway domain values and [`CamsError`].

pub mod client;
pub mod error;
mod skew;
pub mod wire;

pub use client::{CamsClient, ClientError, UpstreamConfig};
pub use error::{ApiError, ApiErrorKind, CamsError};
pub(crate) use skew::MARGIN as CLOCK_MARGIN;

/// The only endpoint Alibaba documents for CAMS.
pub const DEFAULT_ENDPOINT: &str = "https://cams.ap-southeast-1.aliyuncs.com";
