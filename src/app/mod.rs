//! The application: builds the gateway from a [`Config`] ([`wiring`] picks the backends), binds
//! the listener (port 0 works, for tests) and serves gRPC until told to stop, then shuts down in
//! a stated order: NOT_SERVING, stop accepting, drain the calls in flight (bounded), stop the
//! background loops ([`tasks`]).

mod admin;
mod observe;
mod reload;
#[cfg(feature = "sandbox")]
mod sandbox;
mod serve;
mod tasks;
mod wiring;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use reload::Live;
pub use tasks::Tasks;
pub use wiring::{Wired, flow_api};

use crate::{
    auth::AuthMode,
    cams::ClientError,
    clock,
    config::{Config, ConfigSource},
    credentials::{CredentialsError, CredentialsProvider, StaticCredentials},
    domain::Action,
    grpc::FlowApi,
    limits::{AccountQuota, AccountQuotas, TenantLimits},
    server::{Drain, HttpLimits, TlsError, TlsServer},
    store::StoreError,
    telemetry::trace::Tracing,
};

/// How often the certificate files and the configuration file are checked for changes (SIGHUP
/// reloads at once).
const RELOAD_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Why the gateway could not start. Each names what to fix; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the simulated CAMS")]
    Sandbox(#[source] std::io::Error),
    #[error("the simulated CAMS has an unusable endpoint {0}")]
    SandboxEndpoint(String),
    #[error("this build has no simulated CAMS (the `sandbox` feature is off)")]
    NoSandbox,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account's UID names its state in Redis; `redis.account` states another one.
    #[error(
        "redis.account is {stated}, but the credentials belong to the account {actual} (as {by} \
         says): the account's state in Redis is named after its UID, so that no two accounts \
         share it. Set redis.account to {actual} (or remove it), or give the gateway credentials \
         of the account {stated}"
    )]
    RedisAccountMismatch {
        stated: String,
        actual: String,
        by: &'static str,
    },
    #[error(
        "redis.account is {0:?}, which is not an Alibaba Cloud account's UID (its digits, as the \
         console or `aliyun sts GetCallerIdentity` shows them): the account's state in Redis is \
         named after its UID. Set redis.account to the UID, or remove it and let STS tell it"
    )]
    RedisAccountNotUid(String),
    /// Neither STS nor `redis.account` said which account the credentials belong to.
    #[error(
        "cannot name the account's state in Redis: redis.account is not set, and STS \
         GetCallerIdentity could not tell which account the credentials belong to ({0}). Let the \
         gateway reach STS (credentials.sts_endpoint, credentials.sts_region), or set \
         redis.account to the account's UID"
    )]
    RedisAccountUnknown(#[source] CredentialsError),
    #[error(transparent)]
    Tracing(#[from] crate::telemetry::trace::ExporterError),
}

/// Why serving stopped other than by a shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot read the listener's address")]
    Address(#[source] std::io::Error),
}

pub struct Application {
    listener: TcpListener,
    api: FlowApi,
    tenants: Arc<dyn TenantLimits>,
    accounts: AccountQuotas,
    drain_timeout: Duration,
    limits: HttpLimits,
    drain: Drain,
    tls: Option<Arc<TlsServer>>,
    tasks: Tasks,
    sandbox_endpoint: Option<String>,
    admin_addr: Option<SocketAddr>,
    tracing: Tracing,
    /// Listening since the start, so that SIGHUP never ends the process.
    hangup: Option<crate::reload::Hangup>,
    live: Live,
    /// The configuration the gateway runs with, and where to read it again.
    config: Config,
    source: Option<ConfigSource>,
    reload_poll: Duration,
}

/// Names the provider in use and when its credentials expire (never a secret); fails the start
/// when it has none to give.
async fn log_credentials(provider: &dyn CredentialsProvider) -> Result<(), StartError> {
    let current = provider.credentials().await?;
    let expires_at = current
        .expires_at()
        .map(|at| humantime::format_rfc3339_seconds(at).to_string());
    tracing::info!(
        provider = current.source().as_str(),
        expires_at = expires_at.as_deref().unwrap_or("never"),
        refreshed = expires_at.is_some(),
        "credentials ready"
    );
    Ok(())
}

impl Application {
    /// Builds with the credentials the configuration calls for: generated ones against an
    /// in-process simulated CAMS under `sandbox`, otherwise the credential chain (or the provider
    /// `[credentials]` pins) over the process's `ALIBABA_CLOUD_*` variables and files.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if config.sandbox {
            return Self::build_sandbox(config).await;
        }
        let credentials = wiring::credentials(&config).await?;
        Self::build_with_credentials(config, credentials).await
    }

    #[cfg(feature = "sandbox")]
    async fn build_sandbox(mut config: Config) -> Result<Self, StartError> {
        let mut tasks = Tasks::default();
        let (endpoint, credentials) = sandbox::start(&mut tasks).await?;
        config.upstream.endpoint = endpoint;
        let sandbox_endpoint = Some(config.upstream.endpoint.to_string());
        let mut app =
            Self::build_in(config, Arc::new(StaticCredentials::new(credentials)), tasks).await?;
        app.sandbox_endpoint = sandbox_endpoint;
        Ok(app)
    }

    #[cfg(not(feature = "sandbox"))]
    async fn build_sandbox(_config: Config) -> Result<Self, StartError> {
        Err(StartError::NoSandbox)
    }

    pub async fn build_with_credentials(
        config: Config,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, StartError> {
        Self::build_in(config, credentials, Tasks::default()).await
    }

    async fn build_in(
        config: Config,
        credentials: Arc<dyn CredentialsProvider>,
        mut tasks: Tasks,
    ) -> Result<Self, StartError> {
        // First, so that SIGHUP cannot end the process once it is starting, whatever the
        // configuration: it reloads what can be reloaded (and nothing, when nothing can).
        let hangup = crate::reload::hangup_signal();
        log_credentials(credentials.as_ref()).await?;
        let drain = Drain::default();
        let wired = flow_api(
            &config,
            credentials,
            clock::system(),
            drain.expired.clone(),
            &mut tasks,
        )
        .await?;
        if config.auth.mode == AuthMode::None {
            tracing::warn!(
                "caller authentication is off (auth.mode = none): every caller may read every tenant"
            );
        }
        let tls = config.tls.clone().map(TlsServer::load).transpose()?;
        let listener = bind(config.listen).await?;
        let admin_addr = match config.admin_listen {
            Some(addr) => {
                let admin = bind(addr).await?;
                let local = admin
                    .local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?;
                admin::spawn(admin, wired.metrics.clone(), &mut tasks);
                tracing::info!(addr = %local, "admin listener: GET /metrics");
                Some(local)
            }
            None => None,
        };
        Ok(Self {
            listener,
            api: wired.api,
            tenants: wired.tenants,
            accounts: wired.accounts,
            drain_timeout: config.drain_timeout,
            limits: HttpLimits {
                max_connections: config.max_connections,
                preface_timeout: config.preface_timeout,
                idle_timeout: config.idle_timeout,
                max_connection_age: config.max_connection_age,
                max_concurrent_streams: config.max_concurrent_streams,
                max_call: config.call_timeout,
            },
            drain,
            tls,
            tasks,
            sandbox_endpoint: None,
            admin_addr,
            tracing: wired.tracing,
            hangup,
            live: wired.live,
            config,
            source: None,
            reload_poll: RELOAD_POLL_INTERVAL,
        })
    }

    /// Reloads the configuration from `source` (the one this gateway was built from) on SIGHUP
    /// and when its file changes: its limits, keys and identities and cache times
    /// (`app::reload`).
    pub fn reloading(mut self, source: ConfigSource) -> Self {
        self.source = Some(source);
        self
    }

    /// How often the watched files are checked for changes (the default: every 5 s);
    /// `Duration::ZERO`: on SIGHUP only.
    pub fn reload_poll(mut self, every: Duration) -> Self {
        self.reload_poll = every;
        self
    }

    /// Where the admin listener (`/metrics`) listens, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The tenant limits, for inspection (tests, diagnostics).
    pub fn tenant_limits(&self) -> Arc<dyn TenantLimits> {
        Arc::clone(&self.tenants)
    }

    /// The account's GetFlow budget, for inspection (tests, diagnostics).
    pub fn account_quota(&self) -> Arc<dyn AccountQuota> {
        Arc::clone(self.accounts.of(Action::GetFlow))
    }

    /// The account's budget of each CAMS action, for inspection (tests, diagnostics).
    pub fn account_quotas(&self) -> AccountQuotas {
        self.accounts.clone()
    }

    /// The simulated CAMS's endpoint, under `--sandbox`.
    pub fn sandbox_endpoint(&self) -> Option<String> {
        self.sandbox_endpoint.clone()
    }

    /// Serves until `shutdown` completes, then reports NOT_SERVING, stops accepting, gives
    /// in-flight calls up to the drain timeout, and stops the background loops.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        // One watcher and one SIGHUP listener for everything that reloads; it holds weak
        // references, which these keep alive until the background tasks stop.
        // Without a file, a reload would read the same flags and environment again.
        let source = self.source.take().filter(|s| s.file().is_some());
        let config_reload = source.map(|source| {
            let target: Arc<dyn crate::reload::Reload> =
                Arc::new(reload::ConfigReload::new(source, self.live, self.config));
            target
        });
        let mut targets = Vec::new();
        if let Some(tls) = &self.tls {
            targets.push(tls.watched());
        }
        if let Some(config) = &config_reload {
            targets.push(Arc::downgrade(config));
        }
        self.tasks.spawn(
            "reloader",
            crate::reload::watch(targets, self.reload_poll, self.hangup.take()),
        );
        let served = serve::serve(
            serve::Serving {
                listener: self.listener,
                api: self.api,
                tls: self.tls,
                drain_timeout: self.drain_timeout,
                limits: self.limits,
                drain: self.drain,
            },
            shutdown,
        )
        .await;
        // The drain is over: the last spans go out before the background loops (the admin
        // listener among them) stop.
        self.tracing.shutdown().await;
        self.tasks.stop().await;
        drop(config_reload);
        tracing::info!("stopped");
        served
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}
