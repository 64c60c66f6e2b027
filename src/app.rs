//! Wiring: builds the gateway from a [`Config`], binds the listener (port 0 works, for tests) and
//! serves gRPC until told to stop, with health, reflection and a bounded drain.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::{
    auth::{AuthMode, Authenticator},
    cache::FlowCache,
    cams::{CamsClient, Credentials, CredentialsProvider, StaticCredentials},
    config::Config,
    gateway::{Gateway, GatewayOptions},
    grpc::FlowApi,
    limits::{EVICT_INTERVAL, Limits},
    pb::{self, flow_service_server::FlowServiceServer},
    sandbox::{Sandbox, SandboxConfig, SandboxHandle},
    server::{self, TlsServer},
};

/// How often certificate files are checked for rotation (SIGHUP reloads at once).
const CERT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A valid GetFlow request is two ids of at most 128 bytes. Up to this size an oversized id is
/// decoded and refused by validation (INVALID_ARGUMENT naming the field); beyond it the transport
/// refuses the message unread (OUT_OF_RANGE).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

pub struct Application {
    listener: TcpListener,
    api: FlowApi,
    limits: Arc<Limits>,
    drain_timeout: Duration,
    max_concurrent_streams: u32,
    tls: Option<Arc<TlsServer>>,
    /// Keeps the in-process simulated CAMS alive for `serve --sandbox`.
    sandbox: Option<SandboxHandle>,
}

impl Application {
    /// Builds with the credentials the configuration calls for: generated ones against an
    /// in-process simulated CAMS under `sandbox`, the `ALIBABA_CLOUD_*` variables otherwise.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.sandbox {
            let sandbox_config = SandboxConfig::generated();
            let credentials = sandbox_config.credentials();
            let sandbox = Sandbox::bind(SocketAddr::from(([127, 0, 0, 1], 0)), sandbox_config)
                .await
                .context("cannot start the simulated CAMS")?;
            let mut config = config;
            config.upstream.endpoint = sandbox
                .endpoint()
                .parse()
                .context("simulated CAMS endpoint")?;
            tracing::info!(endpoint = %config.upstream.endpoint, "simulated CAMS started (sandbox mode)");
            let mut app =
                Self::build_with_credentials(config, Arc::new(StaticCredentials::new(credentials)))
                    .await?;
            app.sandbox = Some(sandbox.spawn());
            return Ok(app);
        }
        let credentials = Credentials::from_env().map_err(anyhow::Error::msg)?;
        Self::build_with_credentials(config, Arc::new(StaticCredentials::new(credentials))).await
    }

    pub async fn build_with_credentials(
        config: Config,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> anyhow::Result<Self> {
        let (api, limits) = flow_api(&config, credentials)?;
        if config.auth.mode == AuthMode::None {
            tracing::warn!(
                "caller authentication is off (auth.mode = none): every caller may read every tenant"
            );
        }
        let tls = config.tls.clone().map(TlsServer::load).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            api,
            limits,
            drain_timeout: config.drain_timeout,
            max_concurrent_streams: config.max_concurrent_streams,
            tls,
            sandbox: None,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The limiters, for inspection (tests, diagnostics).
    pub fn limits(&self) -> Arc<Limits> {
        Arc::clone(&self.limits)
    }

    /// The simulated CAMS's endpoint, under `--sandbox`.
    pub fn sandbox_endpoint(&self) -> Option<String> {
        self.sandbox.as_ref().map(SandboxHandle::endpoint)
    }

    /// Serves until `shutdown` completes, then reports NOT_SERVING, stops accepting and gives
    /// in-flight calls up to the drain timeout before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
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
            .build_v1()
            .context("reflection v1")?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("reflection v1alpha")?;

        let evictor = tokio::spawn(evict_idle_tenants(Arc::clone(&self.limits)));
        let reloader = self
            .tls
            .as_ref()
            .map(|tls| tokio::spawn(tls.reloader(CERT_POLL_INTERVAL)));
        let flows = FlowServiceServer::new(self.api).max_decoding_message_size(MAX_REQUEST_BYTES);

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

        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, tls = self.tls.is_some(), "listening");
        let serve = Server::builder()
            .max_concurrent_streams(Some(self.max_concurrent_streams))
            // GetFlow metadata is a few headers; 16 KiB leaves room for tracing and auth headers.
            .http2_max_header_list_size(Some(16 * 1024))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(flows)
            .serve_with_incoming_shutdown(server::incoming(self.listener, self.tls), signal);

        let drain_timeout = self.drain_timeout;
        let drain_bound = async move {
            if drain_rx.await.is_ok() {
                tokio::time::sleep(drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serve => served.context("gRPC server failed")?,
            () = drain_bound => {
                tracing::warn!(?drain_timeout, "drain timeout reached; closing remaining calls");
            }
        }
        evictor.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        tracing::info!("stopped");
        drop(self.sandbox);
        Ok(())
    }
}

async fn evict_idle_tenants(limits: Arc<Limits>) {
    let mut tick = tokio::time::interval(EVICT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        limits.tenants.evict_idle();
    }
}

/// The GetFlow service with everything behind it (client, limits, cache, authentication) as
/// `config` describes it, without a listener; the limiters are returned for inspection.
pub fn flow_api(
    config: &Config,
    credentials: Arc<dyn CredentialsProvider>,
) -> anyhow::Result<(FlowApi, Arc<Limits>)> {
    let client =
        CamsClient::new(config.upstream.clone(), credentials).map_err(anyhow::Error::msg)?;
    let limits = Arc::new(Limits::in_process(&config.limits));
    let gateway = Gateway::new(
        client,
        Arc::clone(&limits),
        GatewayOptions {
            retry: config.retry,
            cache: FlowCache::new(config.cache),
            load_timeout: config.call_timeout,
        },
    );
    let api = FlowApi::new(
        gateway,
        Arc::new(Authenticator::new(config.auth.clone())),
        config.call_timeout,
        config.max_in_flight,
    );
    Ok((api, limits))
}
