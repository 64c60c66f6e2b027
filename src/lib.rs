#![forbid(unsafe_code)]
#![warn(unreachable_pub)]
//! cams-flows: a gRPC gateway in front of Alibaba Cloud CAMS's WhatsApp Flows API.
//!
//! A call travels one way, and the modules follow it:
//!
//! ```text
//! client ─gRPC─▶ server (accept, TLS) ─▶ grpc (auth, validate, deadline) ─▶ gateway
//!    gateway: tenant limit ─▶ cache ─▶ coalesced load
//!    load:    credentials ─▶ account quota (fair queue, lease) ─▶ cams client (acs signature)
//! client ◀─ gRPC status + google.rpc details ◀─ error (one decision per failure) ◀─┘
//! ```
//!
//! [`app`] wires it together and owns the background tasks; [`config`] reads the settings;
//! [`domain`] holds the vocabulary every layer shares. The simulated CAMS ([`sandbox`]) is
//! behind the default-on `sandbox` feature.

pub mod acs;
pub mod app;
pub mod auth;
pub mod cache;
pub mod cams;
pub mod clock;
pub mod config;
pub mod credentials;
pub(crate) mod deadline;
pub mod domain;
pub mod error;
pub(crate) mod gateway;
pub mod grpc;
pub(crate) mod http_failure;
pub mod limits;
pub(crate) mod reload;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod server;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;

/// Generated protobuf and gRPC code for `cams.flows.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cams.flows.v1");
    /// Encoded descriptor set (with imports) for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("flows_descriptor");
}
