//! The gRPC edge: protobuf in, protobuf and `tonic::Status` out. Conversions to and from the
//! domain happen here and only here. A call becomes a [`call::Call`] once, then passes the same
//! stack of layers (`layers`) on its way to its RPC's handler (`get_flow.rs`, `list_flows.rs`,
//! `preview_url.rs`, `json_asset.rs`).

mod admin;
mod call;
pub mod codec;
mod convert;
mod get_flow;
mod json_asset;
mod layers;
mod list_flows;
mod page_token;
mod preview_url;
mod quota;
mod ratelimit;
mod service;
pub mod status;

pub use admin::{FlowAdminApi, MAX_FLOWS};
pub use quota::QuotaApi;
pub use service::{FlowApi, Observe};

/// The failure of a handler that got an answer of another read than it asked for: the cache or
/// the gateway mixed them up, which no caller can cause.
fn unexpected() -> crate::error::Error {
    crate::error::Error::Internal("the gateway answered a read with another read's answer")
}

/// The `google.rpc.ErrorInfo.domain` of failures decided by the gateway itself.
pub const LOCAL_DOMAIN: &str = "cams-flows";
/// The `google.rpc.ErrorInfo.domain` of failures reported by CAMS.
pub const CAMS_DOMAIN: &str = "cams.aliyuncs.com";
/// Response header naming how a successful answer was served.
pub const CACHE_HEADER: &str = "x-cams-cache";
