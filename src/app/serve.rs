//! Serving gRPC: FlowService with health and reflection, and a shutdown that reports
//! NOT_SERVING before it stops accepting and bounds how long calls in flight may take.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use super::ServeError;
use crate::{
    grpc::FlowApi,
    pb::{self, flow_service_server::FlowServiceServer},
    server::{self, TlsServer},
};

/// A valid GetFlow request is two ids of at most 128 bytes. Up to this size an oversized id is
/// decoded and refused by validation (INVALID_ARGUMENT naming the field); beyond it the transport
/// refuses the message unread (OUT_OF_RANGE).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

pub(super) struct Serving {
    pub listener: TcpListener,
    pub api: FlowApi,
    pub tls: Option<Arc<TlsServer>>,
    pub drain_timeout: Duration,
    pub max_concurrent_streams: u32,
}

pub(super) async fn serve(
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<FlowServiceServer<FlowApi>>().await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    // google.rpc is registered too, so that reflection clients can decode error details.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let flows = FlowServiceServer::new(serving.api).max_decoding_message_size(MAX_REQUEST_BYTES);

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: reporting NOT_SERVING and draining in-flight calls");
        reporter
            .set_not_serving::<FlowServiceServer<FlowApi>>()
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let _ = drain_tx.send(());
    };

    let addr = serving.listener.local_addr().map_err(ServeError::Address)?;
    tracing::info!(%addr, tls = serving.tls.is_some(), "listening");
    let serve = Server::builder()
        .max_concurrent_streams(Some(serving.max_concurrent_streams))
        // GetFlow metadata is a few headers; 16 KiB leaves room for tracing and auth headers.
        .http2_max_header_list_size(Some(16 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flows)
        .serve_with_incoming_shutdown(server::incoming(serving.listener, serving.tls), signal);

    let drain_timeout = serving.drain_timeout;
    let drain_bound = async move {
        if drain_rx.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serve => served?,
        () = drain_bound => {
            tracing::warn!(?drain_timeout, "drain timeout reached; closing remaining calls");
        }
    }
    Ok(())
}
