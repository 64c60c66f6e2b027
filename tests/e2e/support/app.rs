//! The test app: the real gateway on 127.0.0.1:0 against a simulated CAMS on another loopback
//! port, started by [`TestApp::builder`] (or [`spawn_app`] for the defaults).

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use cams_flows::{
    app::{Application, ServeError},
    auth::AuthConfig,
    clock,
    config::Config,
    credentials::{
        Credentials, CredentialsConfig, CredentialsProvider, ProviderChoice, RefreshPolicy,
        StaticCredentials, Vars,
    },
    limits::{LimitsConfig, Quota, TenantLimits},
    pb::{
        GetFlowJsonAssetRequest, GetFlowJsonAssetResponse, GetFlowPreviewUrlRequest,
        GetFlowPreviewUrlResponse, GetFlowRequest, GetFlowResponse, ListFlowsRequest,
        ListFlowsResponse, flow_service_client::FlowServiceClient,
    },
    sandbox::{
        Identity, IdentityConfig, IdentityHandle, RecordedRequest, Sandbox, SandboxConfig,
        SandboxHandle, SandboxStats,
    },
    server::TlsSettings,
};
use secrecy::SecretString;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Status,
    transport::{Channel, ClientTlsConfig},
};

use super::{KEY_ID, KEY_SECRET};

/// A running gateway, a client connected to it, and the simulated CAMS behind it. Dropping it
/// stops both.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: FlowServiceClient<Channel>,
    pub channel: Channel,
    pub tenants: Arc<dyn TenantLimits>,
    pub sandbox_endpoint: String,
    /// The admin listener (`/metrics`), with [`TestAppBuilder::admin`].
    pub admin_addr: Option<SocketAddr>,
    /// The simulated STS and metadata service, with [`TestAppBuilder::sts`].
    pub identity: Option<IdentityHandle>,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
    _sandbox: SandboxHandle,
    /// The OIDC token file, with [`TestAppBuilder::sts`].
    _token_dir: Option<tempfile::TempDir>,
}

/// A test app with the defaults: limits lifted, caching and retries off, no caller
/// authentication, plaintext, and credentials the simulated CAMS accepts.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

type ConfigChange = Box<dyn FnOnce(&mut Config) + Send>;

/// What to change from the defaults of [`spawn_app`], one method per setting; `spawn` starts it.
///
/// Each setting is a method with a default, so a new capability is a field, a method and a step in
/// [`TestAppBuilder::spawn`], and no existing test changes. Those planned go here:
///
/// - a shared Redis: `redis()` starts a `redis-server` on a loopback port, sets the gateway's
///   configuration to use it before the [`config`](Self::config) closures run (so a test can
///   still override it), and the `TestApp` keeps the server, stopped on drop, beside the
///   simulated CAMS;
/// - several replicas: `replicas(n)` calls `start_gateway` `n` times with the one
///   configuration, against the one simulated CAMS (and Redis); the `TestApp` keeps the first
///   in its fields, as today, and all of them in a list.
///
/// Temporary credentials are here: [`sts`](Self::sts) starts a simulated STS and metadata
/// service beside the simulated CAMS and runs the gateway on RRSA (OIDC) credentials from it,
/// through the same chain and refresher as production.
#[must_use]
pub struct TestAppBuilder {
    sandbox: SandboxConfig,
    credentials: Arc<dyn CredentialsProvider>,
    sts: Option<(Duration, RefreshPolicy)>,
    endpoint: Option<String>,
    tls: Option<(TlsSettings, ClientTlsConfig)>,
    config: Vec<ConfigChange>,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        let mut sandbox = SandboxConfig::new(KEY_ID, KEY_SECRET);
        // Generous, so that only the tests about throttling meet CAMS's quota.
        sandbox.rps_per_key = 10_000;
        TestAppBuilder {
            sandbox,
            credentials: fixed_credentials(KEY_ID, KEY_SECRET, None),
            sts: None,
            endpoint: None,
            tls: None,
            config: Vec::new(),
        }
    }
}

impl TestAppBuilder {
    /// Calls per sliding second per AccessKey that the simulated CAMS accepts (CAMS: 5).
    pub fn sandbox_rps(mut self, rps: u32) -> Self {
        self.sandbox.rps_per_key = rps;
        self
    }

    /// The simulated CAMS accepts only calls signed with this STS token.
    pub fn sandbox_token(mut self, token: &str) -> Self {
        self.sandbox.security_token = Some(SecretString::from(token.to_owned()));
        self
    }

    /// The simulated CAMS's clock runs `ms` milliseconds ahead of the host's (negative: behind),
    /// as CAMS looks to a gateway whose host clock is that far off: its `Date`, its check of the
    /// signature's date and the `PreviewUrlExpires` it sends follow it (and the simulated STS's,
    /// when there is one).
    pub fn sandbox_clock_offset_ms(mut self, ms: i64) -> Self {
        self.sandbox.clock_offset_ms(ms);
        self
    }

    /// The gateway signs with these credentials instead of the ones the simulated CAMS accepts.
    pub fn credentials(mut self, key_id: &str, secret: &str, token: Option<&str>) -> Self {
        self.credentials = fixed_credentials(key_id, secret, token);
        self
    }

    /// The gateway gets its credentials from a simulated STS (`AssumeRoleWithOIDC` with a token
    /// file), which issues keys that live `lifetime` and that the simulated CAMS accepts until
    /// they expire; they are refreshed in the background under `refresh`. The STS is
    /// [`TestApp::identity`], where a test can make it fail.
    pub fn sts(mut self, lifetime: Duration, refresh: RefreshPolicy) -> Self {
        self.sts = Some((lifetime, refresh));
        self
    }

    /// Points the gateway at this endpoint instead of the simulated CAMS (which still runs).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Serves TLS with these files, and connects the test client with this client config.
    pub fn tls(mut self, settings: TlsSettings, client: ClientTlsConfig) -> Self {
        self.tls = Some((settings, client));
        self
    }

    /// Caller authentication (none by default).
    pub fn auth(self, auth: AuthConfig) -> Self {
        self.config(move |c| c.auth = auth)
    }

    /// These limits instead of the lifted ones, e.g. `LimitsConfig::default()` for the product's.
    pub fn limits(self, limits: LimitsConfig) -> Self {
        self.config(move |c| c.limits = limits)
    }

    /// Turns the admin listener (and so the metrics) on, on a loopback port.
    pub fn admin(self) -> Self {
        self.config(|c| c.admin_listen = Some(localhost()))
    }

    /// Any other change to the gateway's configuration. The changes run in the order given,
    /// after the test defaults and the other settings.
    pub fn config(mut self, change: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.config.push(Box::new(change));
        self
    }

    /// Starts the simulated CAMS, then the gateway, and connects a client to the gateway.
    pub async fn spawn(mut self) -> TestApp {
        let keyring = Arc::clone(&self.sandbox.keyring);
        let sandbox_clock = Arc::clone(&self.sandbox.clock);
        let sandbox = Sandbox::bind(localhost(), self.sandbox)
            .await
            .expect("bind simulated CAMS");
        let sandbox_endpoint = sandbox.endpoint();
        let sandbox = sandbox.spawn();

        let endpoint = self.endpoint.unwrap_or_else(|| sandbox_endpoint.clone());
        let mut config = test_config(&endpoint);
        let client_tls = self.tls.map(|(settings, client)| {
            config.tls = Some(settings);
            client
        });
        for change in self.config {
            change(&mut config);
        }
        // A simulated STS for temporary credentials, and for a gateway with a Redis, which asks
        // STS which account it serves; `[credentials] sts_endpoint` points at it.
        let needs_sts =
            self.sts.is_some() || config.redis.is_some() || config.cache_redis.is_some();
        let identity = if needs_sts {
            let mut identity = IdentityConfig::new(keyring);
            identity.clock = sandbox_clock;
            if let Some((lifetime, _)) = self.sts {
                identity.lifetime = lifetime;
            }
            identity.signers = vec![(KEY_ID.to_owned(), SecretString::from(KEY_SECRET.to_owned()))];
            let identity = Identity::bind(localhost(), identity)
                .await
                .expect("bind simulated STS")
                .spawn();
            config
                .credentials
                .variables
                .push(("ALIBABA_CLOUD_STS_ENDPOINT".to_owned(), identity.endpoint()));
            Some(identity)
        } else {
            None
        };
        let token_dir = match (self.sts, &identity) {
            (Some((_, refresh)), Some(identity)) => {
                let (credentials, dir) = oidc_credentials(identity, refresh).await;
                self.credentials = credentials;
                Some(dir)
            }
            _ => None,
        };
        let gateway = start_gateway(config, self.credentials, client_tls).await;
        TestApp {
            addr: gateway.addr,
            client: FlowServiceClient::new(gateway.channel.clone()),
            channel: gateway.channel,
            tenants: gateway.tenants,
            sandbox_endpoint,
            admin_addr: gateway.admin_addr,
            http: reqwest::Client::new(),
            shutdown: Some(gateway.shutdown),
            server: Some(gateway.server),
            _sandbox: sandbox,
            identity,
            _token_dir: token_dir,
        }
    }
}

/// RRSA as ACK sets it up, against the simulated STS: the three variables and a token file.
async fn oidc_credentials(
    identity: &IdentityHandle,
    refresh: RefreshPolicy,
) -> (Arc<dyn CredentialsProvider>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("token dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln").expect("token");
    let vars = Vars::from_pairs([
        ("HOME", dir.path().display().to_string()),
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            "acs:ram::1234:role/cams".to_owned(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234:oidc-provider/ack".to_owned(),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
        ("ALIBABA_CLOUD_STS_ENDPOINT", identity.endpoint()),
    ]);
    let config = CredentialsConfig {
        provider: ProviderChoice::Oidc,
        refresh,
        ..CredentialsConfig::default()
    };
    let credentials = cams_flows::credentials::resolve(&config, &vars, clock::system())
        .await
        .expect("OIDC credentials from the simulated STS");
    (credentials, dir)
}

fn fixed_credentials(
    key_id: &str,
    secret: &str,
    token: Option<&str>,
) -> Arc<dyn CredentialsProvider> {
    let credentials = Credentials::new(
        key_id,
        SecretString::from(secret.to_owned()),
        token.map(|t| SecretString::from(t.to_owned())),
    );
    Arc::new(StaticCredentials::new(credentials))
}

/// The configuration every test app starts from.
fn test_config(endpoint: &str) -> Config {
    let mut config = Config::new(localhost(), endpoint.parse().expect("endpoint URL"));
    // Limits are lifted unless a test is about them, so that other tests meet only what they test.
    config.limits.account_rps = 10_000;
    config.limits.tenant = Quota {
        rps: 10_000.0,
        burst: NonZeroU32::new(10_000).expect("non-zero"),
    };
    // Caching and retries are off unless a test is about them: the mapping tests must see each
    // CAMS answer exactly once.
    config.cache.ttl = Duration::ZERO;
    config.retry.max_attempts = 1;
    config
}

/// One gateway, serving until `shutdown` is sent or dropped, and a channel to it.
struct Gateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    channel: Channel,
    tenants: Arc<dyn TenantLimits>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServeError>>,
}

async fn start_gateway(
    config: Config,
    credentials: Arc<dyn CredentialsProvider>,
    client_tls: Option<ClientTlsConfig>,
) -> Gateway {
    let app = Application::build_with_credentials(config, credentials)
        .await
        .expect("build gateway");
    let addr = app.local_addr().expect("local addr");
    let admin_addr = app.admin_addr();
    let tenants = app.tenant_limits();
    let (shutdown, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channel = match client_tls {
        None => Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to gateway"),
        Some(client_tls) => Channel::from_shared(format!("https://{addr}"))
            .expect("uri")
            .tls_config(client_tls)
            .expect("client TLS")
            .connect()
            .await
            .expect("connect to gateway over TLS"),
    };
    Gateway {
        addr,
        admin_addr,
        channel,
        tenants,
        shutdown,
        server,
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

    /// A call and how it was served (`x-cams-cache`: hit, shared, miss, coalesced, stale).
    pub async fn call(
        &self,
        flow_id: &str,
        space: &str,
    ) -> Result<(GetFlowResponse, String), Status> {
        call_with_source(&self.client, flow_id, space).await
    }

    /// A page of flows, and how it was served.
    pub async fn list_flows(
        &self,
        request: ListFlowsRequest,
    ) -> Result<(ListFlowsResponse, String), Status> {
        list_flows_with_source(&self.client, request).await
    }

    /// A flow's preview URL, and how it was served.
    pub async fn preview_url(
        &self,
        flow_id: &str,
        space: &str,
    ) -> Result<(GetFlowPreviewUrlResponse, String), Status> {
        preview_url_with_source(&self.client, flow_id, space).await
    }

    /// Where a flow's Flow JSON file is, and how it was served.
    pub async fn json_asset(
        &self,
        flow_id: &str,
        space: &str,
    ) -> Result<(GetFlowJsonAssetResponse, String), Status> {
        json_asset_with_source(&self.client, flow_id, space).await
    }

    /// Calls the simulated CAMS accepted for `flow_id` since it started.
    pub async fn upstream_calls(&self, flow_id: &str) -> u64 {
        self.sandbox_stats()
            .await
            .calls_by_flow
            .get(flow_id)
            .copied()
            .unwrap_or(0)
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

    /// `GET /metrics` on the admin listener with this `Accept` (none when `None`): the
    /// content type and the body.
    pub async fn scrape_as(&self, accept: Option<&str>) -> (String, String) {
        let addr = self
            .admin_addr
            .expect("the admin listener is on (builder: admin())");
        let mut request = self.http.get(format!("http://{addr}/metrics"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("scrape");
        assert!(response.status().is_success(), "{}", response.status());
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (content_type, response.text().await.expect("metrics body"))
    }

    /// `GET /metrics` in the Prometheus text format.
    pub async fn scrape(&self) -> String {
        self.scrape_as(None).await.1
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.trigger_shutdown();
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

/// A call through `client` and how it was served (`x-cams-cache`, or `absent`).
pub async fn call_with_source(
    client: &FlowServiceClient<Channel>,
    flow_id: &str,
    space: &str,
) -> Result<(GetFlowResponse, String), Status> {
    let response = client
        .clone()
        .get_flow(GetFlowRequest {
            flow_id: flow_id.into(),
            cust_space_id: space.into(),
        })
        .await?;
    let source = super::cache_header(response.metadata());
    Ok((response.into_inner(), source))
}

/// A ListFlows call through `client` and how it was served (`x-cams-cache`, or `absent`).
pub async fn list_flows_with_source(
    client: &FlowServiceClient<Channel>,
    request: ListFlowsRequest,
) -> Result<(ListFlowsResponse, String), Status> {
    let response = client.clone().list_flows(request).await?;
    let source = super::cache_header(response.metadata());
    Ok((response.into_inner(), source))
}

/// A GetFlowPreviewUrl call through `client` and how it was served.
pub async fn preview_url_with_source(
    client: &FlowServiceClient<Channel>,
    flow_id: &str,
    space: &str,
) -> Result<(GetFlowPreviewUrlResponse, String), Status> {
    let response = client
        .clone()
        .get_flow_preview_url(GetFlowPreviewUrlRequest {
            flow_id: flow_id.into(),
            cust_space_id: space.into(),
        })
        .await?;
    let source = super::cache_header(response.metadata());
    Ok((response.into_inner(), source))
}

/// A GetFlowJsonAsset call through `client` and how it was served.
pub async fn json_asset_with_source(
    client: &FlowServiceClient<Channel>,
    flow_id: &str,
    space: &str,
) -> Result<(GetFlowJsonAssetResponse, String), Status> {
    let response = client
        .clone()
        .get_flow_json_asset(GetFlowJsonAssetRequest {
            flow_id: flow_id.into(),
            cust_space_id: space.into(),
        })
        .await?;
    let source = super::cache_header(response.metadata());
    Ok((response.into_inner(), source))
}
