//! Serving gRPC: FlowService with health and reflection over the server's HTTP/2, and the
//! shutdown sequence: NOT_SERVING, then the drain (no new connections, GOAWAY to open ones,
//! long-lived streams ended), and when `drain_timeout` runs out, every call still in flight
//! answered UNAVAILABLE.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use super::ServeError;
use crate::{
    grpc::{FlowAdminApi, FlowApi, QuotaApi, status},
    pb::{
        self, flow_admin_service_server::FlowAdminServiceServer,
        flow_service_server::FlowServiceServer, quota_service_server::QuotaServiceServer,
    },
    server::{self, Drain, HttpLimits, TlsServer},
};

/// A valid GetFlow request is two ids of at most 128 bytes. Up to this size an oversized id is
/// decoded and refused by validation (INVALID_ARGUMENT naming the field); beyond it the transport
/// refuses the message unread (OUT_OF_RANGE).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Kept on top of the calls' own bound so that FlowService, which answers its deadline itself
/// with details, always gets to answer before the server's bound would.
const SERVER_SLACK: Duration = Duration::from_millis(100);

pub(super) struct Serving {
    pub listener: TcpListener,
    pub api: FlowApi,
    pub admin: FlowAdminApi,
    pub tls: Option<Arc<TlsServer>>,
    pub drain_timeout: Duration,
    pub limits: HttpLimits,
    pub drain: Drain,
}

pub(super) async fn serve(
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<FlowServiceServer<FlowApi>>().await;
    reporter.set_serving::<QuotaServiceServer<QuotaApi>>().await;
    reporter
        .set_serving::<FlowAdminServiceServer<FlowAdminApi>>()
        .await;
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
    let quota = QuotaServiceServer::new(serving.api.quota_service())
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let flows = FlowServiceServer::new(serving.api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let routes = Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flows)
        .add_service(
            FlowAdminServiceServer::new(serving.admin).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(quota)
        .prepare();

    let drain = serving.drain.clone();
    let drain_timeout = serving.drain_timeout;
    let sequence = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: reporting NOT_SERVING and draining in-flight calls");
        reporter
            .set_not_serving::<FlowServiceServer<FlowApi>>()
            .await;
        reporter
            .set_not_serving::<FlowAdminServiceServer<FlowAdminApi>>()
            .await;
        reporter
            .set_not_serving::<QuotaServiceServer<QuotaApi>>()
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        drain.started.cancel();
        tokio::time::sleep(drain_timeout).await;
        tracing::warn!(
            ?drain_timeout,
            "drain timeout reached; answering the calls still in flight"
        );
        drain.expired.cancel();
    });

    let addr = serving.listener.local_addr().map_err(ServeError::Address)?;
    tracing::info!(%addr, tls = serving.tls.is_some(), "listening");
    let mut limits = serving.limits;
    limits.max_call += SERVER_SLACK;
    server::serve(
        server::incoming(serving.listener, serving.tls),
        routes,
        limits,
        serving.drain,
        status::answers(),
    )
    .await;
    sequence.abort();
    Ok(())
}
