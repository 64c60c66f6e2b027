//! Starts the real gateway on 127.0.0.1:0 against a simulated CAMS on another loopback port, and
//! hands tests a generated tonic client plus an HTTP view of the simulated CAMS.

pub mod certs;

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use cams_flows::{
    app::Application,
    config::Config,
    credentials::{Credentials, StaticCredentials},
    limits::TenantQuota,
    pb::{GetFlowRequest, GetFlowResponse, flow_service_client::FlowServiceClient},
    sandbox::{RecordedRequest, Sandbox, SandboxConfig, SandboxHandle, SandboxStats},
};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tonic::{Code, Status, transport::Channel};
use tonic_types::{ErrorDetails, StatusExt};

pub const DOC_FLOW: &str = "926753328126430";
pub const KEY_ID: &str = "test-key-id";
pub const KEY_SECRET: &str = "test-key-secret-do-not-leak";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: FlowServiceClient<Channel>,
    pub channel: Channel,
    pub tenants: Arc<dyn cams_flows::limits::TenantLimits>,
    pub sandbox_endpoint: String,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), cams_flows::app::ServeError>>>,
    _sandbox: Option<SandboxHandle>,
}

/// What to change from the defaults of a test gateway.
pub struct Options {
    /// Upstream quota of the simulated CAMS; generous by default so that only tests about
    /// throttling meet it.
    pub sandbox_rps: u32,
    pub sandbox_token: Option<&'static str>,
    pub secret: &'static str,
    pub key_id: &'static str,
    pub token: Option<&'static str>,
    /// Point the gateway at this endpoint instead of the simulated CAMS.
    pub endpoint: Option<String>,
    pub tweak: fn(&mut Config),
    /// Serve TLS with these files, and connect the test client with this client config.
    pub tls: Option<(
        cams_flows::server::TlsSettings,
        tonic::transport::ClientTlsConfig,
    )>,
    pub auth: Option<cams_flows::auth::AuthConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sandbox_rps: 10_000,
            sandbox_token: None,
            secret: KEY_SECRET,
            key_id: KEY_ID,
            token: None,
            endpoint: None,
            tweak: |_| {},
            tls: None,
            auth: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let mut sandbox_config = SandboxConfig::new(KEY_ID, KEY_SECRET);
    sandbox_config.rps_per_key = options.sandbox_rps;
    sandbox_config.security_token = options
        .sandbox_token
        .map(|t| SecretString::from(t.to_owned()));
    let sandbox = Sandbox::bind(localhost(), sandbox_config)
        .await
        .expect("bind simulated CAMS");
    let sandbox_endpoint = sandbox.endpoint();
    let sandbox = sandbox.spawn();

    let endpoint = options.endpoint.unwrap_or_else(|| sandbox_endpoint.clone());
    let mut config = Config::new(localhost(), endpoint.parse().expect("endpoint URL"));
    // Limits are lifted unless a test is about them, so that other tests meet only what they test.
    config.limits.account_rps = 10_000;
    config.limits.tenant = TenantQuota {
        rps: 10_000.0,
        burst: NonZeroU32::new(10_000).expect("non-zero"),
    };
    // Caching and retries are off unless a test is about them: the mapping tests must see each
    // CAMS answer exactly once.
    config.cache.ttl = Duration::ZERO;
    config.retry.max_attempts = 1;
    config.tls = options.tls.as_ref().map(|(settings, _)| settings.clone());
    if let Some(auth) = options.auth {
        config.auth = auth;
    }
    (options.tweak)(&mut config);
    let credentials = Credentials::new(
        options.key_id,
        SecretString::from(options.secret.to_owned()),
        options.token.map(|t| SecretString::from(t.to_owned())),
    );
    let app =
        Application::build_with_credentials(config, Arc::new(StaticCredentials::new(credentials)))
            .await
            .expect("build gateway");
    let addr = app.local_addr().expect("local addr");
    let tenants = app.tenant_limits();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let channel = match options.tls {
        None => Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to gateway"),
        Some((_, client_tls)) => Channel::from_shared(format!("https://{addr}"))
            .expect("uri")
            .tls_config(client_tls)
            .expect("client TLS")
            .connect()
            .await
            .expect("connect to gateway over TLS"),
    };
    TestApp {
        addr,
        client: FlowServiceClient::new(channel.clone()),
        channel,
        tenants,
        sandbox_endpoint,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
        _sandbox: Some(sandbox),
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl TestApp {
    pub async fn get_flow(&self, flow_id: &str, space: &str) -> Result<GetFlowResponse, Status> {
        self.get_flow_within(flow_id, space, None).await
    }

    pub async fn get_flow_within(
        &self,
        flow_id: &str,
        space: &str,
        timeout: Option<Duration>,
    ) -> Result<GetFlowResponse, Status> {
        let mut request = tonic::Request::new(GetFlowRequest {
            flow_id: flow_id.to_owned(),
            cust_space_id: space.to_owned(),
        });
        if let Some(t) = timeout {
            request.set_timeout(t);
        }
        self.client
            .clone()
            .get_flow(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn sandbox_stats(&self) -> SandboxStats {
        let body = self
            .http
            .get(format!("{}/_sandbox/stats", self.sandbox_endpoint))
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .expect("stats body");
        serde_json::from_slice(&body).expect("stats JSON")
    }

    pub async fn sandbox_requests(&self) -> Vec<RecordedRequest> {
        let body = self
            .http
            .get(format!("{}/_sandbox/requests", self.sandbox_endpoint))
            .send()
            .await
            .expect("requests")
            .bytes()
            .await
            .expect("requests body");
        serde_json::from_slice(&body).expect("requests JSON")
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) -> Result<(), cams_flows::app::ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The ErrorInfo of a status, which every failure must carry.
pub fn error_info(status: &Status) -> tonic_types::ErrorInfo {
    details(status)
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

pub fn details(status: &Status) -> ErrorDetails {
    status.get_error_details()
}

/// Asserts the code and the ErrorInfo reason and domain of a failure.
#[track_caller]
pub fn assert_failure(
    result: Result<GetFlowResponse, Status>,
    code: Code,
    reason: &str,
    domain: &str,
) -> Status {
    let status = match result {
        Ok(r) => panic!("expected {code:?}/{reason}, got success {r:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, domain, "{status:?}");
    status
}
