//! Configuration of `cams-flows serve`, layered: defaults < TOML file < `CAMS_FLOWS_*` environment
//! < command-line flags.
//!
//! Each section of the file is one struct in [`sections`], which declares each of its settings
//! once (type, default, meaning, value name, old name) and validates itself into its owner's
//! runtime type. The key table in [`keys`] is read from those structs; the flags, the
//! environment variables, `serve --help` and the settings reference (docs/configuration.md)
//! follow from it. A bad value is reported with its key and the layer it came from.

mod cli;
mod env;
mod keys;
mod load;
mod sections;
mod settings;
mod source;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use reqwest::Url;

use crate::{
    auth::AuthConfig, cams::UpstreamConfig, credentials::CredentialsConfig, limits::LimitsConfig,
    server::TlsSettings, store::RedisConfig, telemetry::trace::TracingConfig,
};
pub use crate::{cache::CacheConfig, gateway::RetryConfig, telemetry::LogFormat};

pub use cli::{FlagValue, ServeArgs};
pub use env::{Environment, Warning};
pub use source::ConfigSource;

/// The validated configuration of `cams-flows serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// Run against an in-process simulated CAMS with generated credentials.
    pub sandbox: bool,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// Bound on every call, and the deadline of one whose caller sets none.
    pub call_timeout: Duration,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub retry: RetryConfig,
    /// Calls (of every RPC) served at once; more are refused with UNAVAILABLE.
    pub max_in_flight: usize,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// Client connections served at once.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface.
    pub preface_timeout: Duration,
    /// Time a connection may stay open with no stream.
    pub idle_timeout: Duration,
    /// Age at which a connection is told to go away however busy; `None`: never.
    pub max_connection_age: Option<Duration>,
    /// The RateLimit metadata (`ratelimit-policy`, `ratelimit`) on every FlowService answer.
    pub ratelimit_metadata: bool,
    pub auth: AuthConfig,
    pub tls: Option<TlsSettings>,
    /// The Redis shared by the replicas; `None` keeps every limit in this process.
    pub redis: Option<RedisConfig>,
    /// The Redis of the cache tier shared by the replicas; `None` when the cache is not shared.
    pub cache_redis: Option<RedisConfig>,
    /// Where the CAMS credentials come from (ignored under `sandbox`).
    pub credentials: CredentialsConfig,
    /// The admin listener (`GET /metrics`); `None` keeps it, and the metrics, off.
    pub admin_listen: Option<SocketAddr>,
    /// Trace export (from the `OTEL_*` environment) and propagation.
    pub tracing: TracingConfig,
}

impl Config {
    /// Every section's defaults, for a gateway on `listen` in front of `endpoint` (taken as it
    /// is), with no authentication.
    pub fn new(listen: SocketAddr, endpoint: Url) -> Self {
        let mut defaults = settings::Settings::default();
        defaults.auth.mode = Some(sections::AuthModeName::None);
        let mut config = sections::config(&defaults)
            .unwrap_or_else(|e| panic!("the defaults are not valid: {e}"));
        config.listen = listen;
        config.upstream.endpoint = endpoint;
        config
    }
}

/// A configuration error: the key, the layer its value came from, and what is wrong with it.
///
/// The layer is named `origin`, not `source`: thiserror takes a field called `source` for the
/// underlying error, which this is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {key}{}: {problem}", Parenthesized(.origin.as_ref()))]
pub struct ConfigError {
    /// The TOML key (`limits.account_rps`, `auth.keys[0].sha256`), or `config` for the file as
    /// a whole.
    pub key: String,
    /// Where the value came from; `None` when the key has no value (e.g. a required one).
    pub origin: Option<Origin>,
    pub problem: String,
}

/// The layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    /// The variable's name (a canonical name or an old alias, whichever was set).
    Env(String),
    /// The flag as typed, with its dashes (`--account-rps`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default value"),
            Self::File(path) => write!(f, "from {}", path.display()),
            Self::Env(name) => write!(f, "from environment variable {name}"),
            Self::Flag(flag) => write!(f, "from flag {flag}"),
        }
    }
}

struct Parenthesized<'a>(Option<&'a Origin>);

impl fmt::Display for Parenthesized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(origin) => write!(f, " ({origin})"),
            None => Ok(()),
        }
    }
}
