#![forbid(unsafe_code)]
//! cams-flows: a gRPC gateway in front of Alibaba Cloud CAMS's WhatsApp Flows API.
//!
//! A call travels one way: [`grpc`] validates it into a [`gateway::FlowQuery`], the [`gateway`]
//! asks the [`cams`] client, and [`grpc::status`] maps every failure to a gRPC status.

pub mod app;
pub mod auth;
pub mod cache;
pub mod cams;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod limits;
pub mod retry;
pub mod sandbox;
pub mod server;
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
