//! The upstream edge: HTTP, JSON and signatures. Knows CAMS's wire format; hands the rest of the
//! gateway domain values and [`CamsError`].

pub mod client;
pub mod error;
mod skew;
pub mod wire;

pub use client::{CamsClient, ClientError, UpstreamConfig};
pub use error::{ApiError, ApiErrorKind, CamsError};
pub use wire::FlowAnswer;

/// The CAMS API version every call names.
pub const API_VERSION: &str = "2020-06-06";
/// The operation this gateway serves.
pub const ACTION_GET_FLOW: &str = "GetFlow";
/// The only endpoint Alibaba documents for CAMS.
pub const DEFAULT_ENDPOINT: &str = "https://cams.ap-southeast-1.aliyuncs.com";
/// Response header CAMS uses to say how long to back off, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
