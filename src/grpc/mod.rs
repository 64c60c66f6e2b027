//! The gRPC edge: protobuf in, protobuf and `tonic::Status` out. Conversions to and from the
//! domain happen here and only here. A call becomes a [`call::Call`] once, then passes the same
//! stack of layers (`layers`) on its way to its RPC's handler (`get_flow.rs`).

mod call;
pub mod codec;
mod convert;
mod get_flow;
mod layers;
mod service;
pub mod status;

pub use service::{FlowApi, Observe};

/// The `google.rpc.ErrorInfo.domain` of failures decided by the gateway itself.
pub const LOCAL_DOMAIN: &str = "cams-flows";
/// The `google.rpc.ErrorInfo.domain` of failures reported by CAMS.
pub const CAMS_DOMAIN: &str = "cams.aliyuncs.com";
/// Response header naming how a successful answer was served.
pub const CACHE_HEADER: &str = "x-cams-cache";
