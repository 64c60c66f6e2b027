//! Layered configuration: defaults < TOML file < `CAMS_FLOWS_*` environment < command-line flags.
//! Everything is validated here, once; a bad value is reported with the key that holds it.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    num::NonZeroU32,
    path::PathBuf,
    time::Duration,
};

use clap::{Args, ValueEnum};
use reqwest::Url;
use serde::Deserialize;

use crate::{
    auth::{ApiKey, AuthConfig, AuthMode, TenantSet},
    cams::{DEFAULT_ENDPOINT, UpstreamConfig},
    domain::TenantId,
    limits::{LimitsConfig, TenantQuota},
    server::TlsSettings,
};
pub use crate::{cache::CacheConfig, gateway::RetryConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

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
    /// GetFlow calls served at once; more are refused with UNAVAILABLE.
    pub max_in_flight: usize,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    pub auth: AuthConfig,
    pub tls: Option<TlsSettings>,
}

impl Config {
    /// Defaults for a gateway on `listen` in front of `endpoint`.
    pub fn new(listen: SocketAddr, endpoint: Url) -> Self {
        Self {
            listen,
            log_format: LogFormat::Json,
            sandbox: false,
            drain_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(10),
            upstream: UpstreamConfig::new(endpoint),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            retry: RetryConfig::default(),
            max_in_flight: 1024,
            max_concurrent_streams: 256,
            auth: AuthConfig::none(),
            tls: None,
        }
    }
}

/// Flags of `cams-flows serve`. Each is also read from its environment variable and from the
/// config file (flag > environment > file > default).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; its keys are the flag names with `_` for `-`
    /// (e.g. `listen`, `[upstream] max_body_bytes`).
    #[arg(long, env = "CAMS_FLOWS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 0.0.0.0:50051].
    #[arg(long, env = "CAMS_FLOWS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// CAMS endpoint [default: https://cams.ap-southeast-1.aliyuncs.com].
    #[arg(long, env = "CAMS_FLOWS_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<Url>,
    /// Log format [default: json].
    #[arg(long, env = "CAMS_FLOWS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve against an in-process simulated CAMS with generated credentials (no cloud account
    /// needed). Ignores --endpoint and the ALIBABA_CLOUD_* variables.
    #[arg(
        long,
        env = "CAMS_FLOWS_SANDBOX",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub sandbox: Option<bool>,
    /// Time in-flight calls get to finish after SIGTERM/SIGINT [default: 10000].
    #[arg(long, env = "CAMS_FLOWS_DRAIN_TIMEOUT_MS", value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Bound on every call, and the deadline of a call whose caller sets none [default: 10000].
    #[arg(long, env = "CAMS_FLOWS_CALL_TIMEOUT_MS", value_name = "MS")]
    pub call_timeout_ms: Option<u64>,
    /// Connect timeout towards CAMS [default: 2000].
    #[arg(
        long,
        env = "CAMS_FLOWS_UPSTREAM_CONNECT_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub upstream_connect_timeout_ms: Option<u64>,
    /// Bound on one HTTP exchange with CAMS [default: 10000].
    #[arg(
        long,
        env = "CAMS_FLOWS_UPSTREAM_REQUEST_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub upstream_request_timeout_ms: Option<u64>,
    /// Largest CAMS response body read; larger ones are refused unread [default: 262144].
    #[arg(long, env = "CAMS_FLOWS_UPSTREAM_MAX_BODY_BYTES", value_name = "BYTES")]
    pub upstream_max_body_bytes: Option<usize>,
    /// The account's CAMS GetFlow quota: upstream calls in any sliding second, shared by all
    /// tenants [default: 5].
    #[arg(long, env = "CAMS_FLOWS_ACCOUNT_RPS", value_name = "N")]
    pub account_rps: Option<u32>,
    /// Default per-tenant (CustSpaceId) rate, calls per second; fractions allowed [default: 5].
    #[arg(long, env = "CAMS_FLOWS_TENANT_RPS", value_name = "RATE")]
    pub tenant_rps: Option<f64>,
    /// Default per-tenant burst [default: 5].
    #[arg(long, env = "CAMS_FLOWS_TENANT_BURST", value_name = "N")]
    pub tenant_burst: Option<u32>,
    /// Longest a call waits for account capacity; 0 never waits [default: 2000].
    #[arg(long, env = "CAMS_FLOWS_MAX_WAIT_MS", value_name = "MS")]
    pub max_wait_ms: Option<u64>,
    /// Calls that may wait for account capacity at once [default: 256].
    #[arg(long, env = "CAMS_FLOWS_MAX_QUEUE", value_name = "N")]
    pub max_queue: Option<usize>,
    /// How long a flow is served from the cache; 0 disables caching [default: 30000].
    #[arg(long, env = "CAMS_FLOWS_CACHE_TTL_MS", value_name = "MS")]
    pub cache_ttl_ms: Option<u64>,
    /// Flows the cache holds at most [default: 10000].
    #[arg(long, env = "CAMS_FLOWS_CACHE_MAX_ENTRIES", value_name = "N")]
    pub cache_max_entries: Option<u64>,
    /// How long past its TTL a cached flow may stand in while CAMS fails or throttles; 0 never
    /// [default: 0].
    #[arg(long, env = "CAMS_FLOWS_STALE_IF_ERROR_MS", value_name = "MS")]
    pub stale_if_error_ms: Option<u64>,
    /// Attempts per CAMS fetch, the first included; 1 disables retries [default: 3].
    #[arg(long, env = "CAMS_FLOWS_RETRY_MAX_ATTEMPTS", value_name = "N")]
    pub retry_max_attempts: Option<u32>,
    /// Retries allowed as a fraction of recent fetches [default: 0.1].
    #[arg(long, env = "CAMS_FLOWS_RETRY_BUDGET_RATIO", value_name = "RATIO")]
    pub retry_budget_ratio: Option<f64>,
    /// GetFlow calls served at once; more are refused at once with UNAVAILABLE [default: 1024].
    #[arg(long, env = "CAMS_FLOWS_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// HTTP/2 streams one client connection may have open [default: 256].
    #[arg(long, env = "CAMS_FLOWS_MAX_CONCURRENT_STREAMS", value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
    /// How callers authenticate: api_key, mtls, mesh_header or none. Required outside the
    /// sandbox (the keys and identities are set in the config file's [auth] section).
    #[arg(long, env = "CAMS_FLOWS_AUTH_MODE", value_enum)]
    pub auth_mode: Option<AuthMode>,
    /// PEM certificate chain the server presents (enables TLS, with --tls-key-file).
    #[arg(long, env = "CAMS_FLOWS_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "CAMS_FLOWS_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (requires client certificates).
    #[arg(long, env = "CAMS_FLOWS_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// The config file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    endpoint: Option<String>,
    log_format: Option<LogFormat>,
    sandbox: Option<bool>,
    drain_timeout_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    retry: FileRetry,
    #[serde(default)]
    server: FileServer,
    auth: Option<FileAuth>,
    #[serde(default)]
    tls: FileTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    mode: Option<AuthMode>,
    #[serde(default)]
    keys: Vec<FileKey>,
    #[serde(default)]
    identities: Vec<FileIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    sha256: String,
    tenants: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    id: String,
    tenants: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    ttl_ms: Option<u64>,
    max_entries: Option<u64>,
    stale_if_error_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    max_attempts: Option<u32>,
    base_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    budget_ratio: Option<f64>,
    budget_min_retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    max_in_flight: Option<usize>,
    max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    account_rps: Option<u32>,
    tenant_rps: Option<f64>,
    tenant_burst: Option<u32>,
    max_wait_ms: Option<u64>,
    max_queue: Option<usize>,
    #[serde(default)]
    tenants: BTreeMap<String, FileTenant>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenant {
    rps: Option<f64>,
    burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    max_body_bytes: Option<usize>,
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl ToString) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.to_string(),
    }
}

impl ServeArgs {
    /// Merges the flags (and environment, already folded in by clap) over the file and defaults.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
                parse_file(&text)?
            }
            None => FileConfig::default(),
        };

        let listen = match (self.listen, file.listen) {
            (Some(addr), _) => addr,
            (None, Some(text)) => text
                .parse()
                .map_err(|e| bad("listen", format!("{text:?} is not an address: {e}")))?,
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 50051)),
        };
        let endpoint = match (&self.endpoint, file.endpoint) {
            (Some(url), _) => url.clone(),
            (None, Some(text)) => Url::parse(&text)
                .map_err(|e| bad("endpoint", format!("{text:?} is not a URL: {e}")))?,
            (None, None) => Url::parse(DEFAULT_ENDPOINT).map_err(|e| bad("endpoint", e))?,
        };
        check_endpoint(&endpoint)?;

        let mut config = Config::new(listen, endpoint);
        config.log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Json);
        config.sandbox = self.sandbox.or(file.sandbox).unwrap_or(false);
        config.drain_timeout = millis(
            "drain_timeout_ms",
            self.drain_timeout_ms.or(file.drain_timeout_ms),
            config.drain_timeout,
        )?;
        config.call_timeout = millis(
            "call_timeout_ms",
            self.call_timeout_ms.or(file.call_timeout_ms),
            config.call_timeout,
        )?;
        let upstream = &mut config.upstream;
        upstream.connect_timeout = millis(
            "upstream.connect_timeout_ms",
            self.upstream_connect_timeout_ms
                .or(file.upstream.connect_timeout_ms),
            upstream.connect_timeout,
        )?;
        upstream.request_timeout = millis(
            "upstream.request_timeout_ms",
            self.upstream_request_timeout_ms
                .or(file.upstream.request_timeout_ms),
            upstream.request_timeout,
        )?;
        if let Some(bytes) = self
            .upstream_max_body_bytes
            .or(file.upstream.max_body_bytes)
        {
            if bytes < 1024 {
                return Err(bad(
                    "upstream.max_body_bytes",
                    format!("{bytes} is below the 1024 bytes a CAMS error envelope can take"),
                ));
            }
            upstream.max_body_bytes = bytes;
        }
        config.cache = self.cache(&file.cache)?;
        config.retry = self.retry(&file.retry)?;
        config.limits = self.limits(&file.limits, !config.cache.ttl.is_zero())?;
        config.max_in_flight = bounded(
            "server.max_in_flight",
            self.max_in_flight.or(file.server.max_in_flight),
            config.max_in_flight,
            1..=1_000_000,
        )?;
        config.max_concurrent_streams = bounded(
            "server.max_concurrent_streams",
            self.max_concurrent_streams
                .or(file.server.max_concurrent_streams),
            config.max_concurrent_streams,
            1..=100_000,
        )?;
        config.tls = self.tls(&file.tls)?;
        config.auth = self.auth(file.auth.as_ref(), config.sandbox, config.tls.as_ref())?;
        Ok(config)
    }

    fn tls(&self, file: &FileTls) -> Result<Option<TlsSettings>, ConfigError> {
        let cert = self.tls_cert_file.clone().or(file.cert_file.clone());
        let key = self.tls_key_file.clone().or(file.key_file.clone());
        let client_ca = self
            .tls_client_ca_file
            .clone()
            .or(file.client_ca_file.clone());
        match (cert, key) {
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
                cert_file,
                key_file,
                client_ca_file: client_ca,
            })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err(bad(
                "tls.client_ca_file",
                "needs tls.cert_file and tls.key_file: client certificates are checked over TLS",
            )),
            (Some(_), None) => Err(bad("tls.key_file", "tls.cert_file is set, its key is not")),
            (None, Some(_)) => Err(bad(
                "tls.cert_file",
                "tls.key_file is set, its certificate is not",
            )),
        }
    }

    fn auth(
        &self,
        file: Option<&FileAuth>,
        sandbox: bool,
        tls: Option<&TlsSettings>,
    ) -> Result<AuthConfig, ConfigError> {
        let mode = match (self.auth_mode, file.and_then(|f| f.mode)) {
            (Some(mode), _) | (None, Some(mode)) => mode,
            (None, None) if sandbox => AuthMode::None,
            (None, None) => {
                return Err(bad(
                    "auth.mode",
                    "not set: choose how callers authenticate (api_key, mtls, mesh_header, or \
                     none to let every caller read every tenant)",
                ));
            }
        };
        let empty = FileAuth::default();
        let file = file.unwrap_or(&empty);
        let mut keys = Vec::new();
        for (i, k) in file.keys.iter().enumerate() {
            let key = |field: &str| format!("auth.keys[{i}].{field}");
            if k.name.trim().is_empty() || keys.iter().any(|e: &ApiKey| e.name == k.name) {
                return Err(bad(
                    &key("name"),
                    format!("{:?} must be non-empty and unique", k.name),
                ));
            }
            let sha256 = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    bad(
                        &key("sha256"),
                        "must be 64 hex digits: the SHA-256 of the key (`cams-flows hash-key`)",
                    )
                })?;
            let tenants = TenantSet::parse(&k.tenants).map_err(|e| bad(&key("tenants"), e))?;
            keys.push(ApiKey {
                name: k.name.clone(),
                sha256,
                tenants,
            });
        }
        let mut identities = HashMap::new();
        for (i, id) in file.identities.iter().enumerate() {
            let key = |field: &str| format!("auth.identities[{i}].{field}");
            if id.id.trim().is_empty() || identities.contains_key(&id.id) {
                return Err(bad(
                    &key("id"),
                    format!("{:?} must be non-empty and unique", id.id),
                ));
            }
            let tenants = TenantSet::parse(&id.tenants).map_err(|e| bad(&key("tenants"), e))?;
            identities.insert(id.id.clone(), tenants);
        }
        match mode {
            AuthMode::ApiKey if keys.is_empty() => {
                return Err(bad(
                    "auth.keys",
                    "api_key mode needs at least one [[auth.keys]]",
                ));
            }
            AuthMode::Mtls if tls.is_none_or(|t| t.client_ca_file.is_none()) => {
                return Err(bad(
                    "auth.mode",
                    "mtls needs tls.cert_file, tls.key_file and tls.client_ca_file",
                ));
            }
            AuthMode::Mtls | AuthMode::MeshHeader if identities.is_empty() => {
                return Err(bad(
                    "auth.identities",
                    "mtls and mesh_header modes need at least one [[auth.identities]]",
                ));
            }
            _ => {}
        }
        Ok(AuthConfig {
            mode,
            keys,
            identities,
        })
    }

    fn cache(&self, file: &FileCache) -> Result<CacheConfig, ConfigError> {
        let defaults = CacheConfig::default();
        let ms = |key: &str, value: Option<u64>, default: Duration| match value {
            Some(ms) if ms > 86_400_000 => Err(bad(key, format!("{ms} ms is over one day"))),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        Ok(CacheConfig {
            ttl: ms(
                "cache.ttl_ms",
                self.cache_ttl_ms.or(file.ttl_ms),
                defaults.ttl,
            )?,
            max_entries: bounded(
                "cache.max_entries",
                self.cache_max_entries.or(file.max_entries),
                defaults.max_entries,
                1..=100_000_000,
            )?,
            stale_if_error: ms(
                "cache.stale_if_error_ms",
                self.stale_if_error_ms.or(file.stale_if_error_ms),
                defaults.stale_if_error,
            )?,
        })
    }

    fn retry(&self, file: &FileRetry) -> Result<RetryConfig, ConfigError> {
        let defaults = RetryConfig::default();
        let base_backoff = millis(
            "retry.base_backoff_ms",
            file.base_backoff_ms,
            defaults.base_backoff,
        )?;
        let max_backoff = millis(
            "retry.max_backoff_ms",
            file.max_backoff_ms,
            defaults.max_backoff,
        )?;
        if max_backoff < base_backoff {
            return Err(bad(
                "retry.max_backoff_ms",
                "must not be below retry.base_backoff_ms",
            ));
        }
        let budget_ratio = self
            .retry_budget_ratio
            .or(file.budget_ratio)
            .unwrap_or(defaults.budget_ratio);
        if !(0.0..=10.0).contains(&budget_ratio) {
            return Err(bad(
                "retry.budget_ratio",
                format!("{budget_ratio} must be between 0 and 10"),
            ));
        }
        Ok(RetryConfig {
            max_attempts: bounded(
                "retry.max_attempts",
                self.retry_max_attempts.or(file.max_attempts),
                defaults.max_attempts,
                1..=10,
            )?,
            base_backoff,
            max_backoff,
            budget_ratio,
            budget_min_retries: bounded(
                "retry.budget_min_retries",
                file.budget_min_retries,
                defaults.budget_min_retries,
                0..=1_000_000,
            )?,
        })
    }

    /// `cached`: with a cache, a tenant may be faster than the account (hits cost no quota).
    fn limits(&self, file: &FileLimits, cached: bool) -> Result<LimitsConfig, ConfigError> {
        let defaults = LimitsConfig::default();
        let account_rps = bounded(
            "limits.account_rps",
            self.account_rps.or(file.account_rps),
            defaults.account_rps,
            1..=1_000_000,
        )?;
        let tenant = quota(
            "limits.tenant_rps",
            "limits.tenant_burst",
            self.tenant_rps.or(file.tenant_rps),
            self.tenant_burst.or(file.tenant_burst),
            defaults.tenant,
            (!cached).then_some(account_rps),
        )?;
        let mut tenants = HashMap::new();
        for (id, t) in &file.tenants {
            let key = format!("limits.tenants.{id:?}");
            let tenant_id = TenantId::parse(id.as_str()).map_err(|e| bad(&key, e))?;
            let q = quota(
                &format!("{key}.rps"),
                &format!("{key}.burst"),
                t.rps,
                t.burst,
                tenant,
                (!cached).then_some(account_rps),
            )?;
            tenants.insert(tenant_id, q);
        }
        let max_wait_ms = self
            .max_wait_ms
            .or(file.max_wait_ms)
            .unwrap_or(defaults.max_wait.as_millis() as u64);
        if max_wait_ms > 60_000 {
            return Err(bad(
                "limits.max_wait_ms",
                format!("{max_wait_ms} is over one minute"),
            ));
        }
        let max_queue = self
            .max_queue
            .or(file.max_queue)
            .unwrap_or(defaults.max_queue);
        if max_queue > 1_000_000 {
            return Err(bad(
                "limits.max_queue",
                format!("{max_queue} is over 1000000"),
            ));
        }
        Ok(LimitsConfig {
            account_rps,
            tenant,
            tenants,
            max_wait: Duration::from_millis(max_wait_ms),
            max_queue,
        })
    }
}

fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(bad(
            key,
            format!(
                "{value} must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// Validates one tenant quota; unset parts fall back to `fallback`. `uncached_account_rps` is
/// the account's rate when every call goes to CAMS (no cache), which no tenant can exceed.
fn quota(
    rps_key: &str,
    burst_key: &str,
    rps: Option<f64>,
    burst: Option<u32>,
    fallback: TenantQuota,
    uncached_account_rps: Option<u32>,
) -> Result<TenantQuota, ConfigError> {
    let rps = rps.unwrap_or(fallback.rps);
    if !rps.is_finite() || rps <= 0.0 {
        return Err(bad(rps_key, format!("{rps} must be a positive number")));
    }
    if let Some(account_rps) = uncached_account_rps.filter(|a| rps > f64::from(*a)) {
        return Err(bad(
            rps_key,
            format!(
                "{rps} is above limits.account_rps ({account_rps}) with the cache off \
                 (cache.ttl_ms = 0): every call goes to CAMS, so a tenant can never be served \
                 faster than the account"
            ),
        ));
    }
    let burst = match burst {
        None => fallback.burst,
        Some(b) => NonZeroU32::new(b)
            .filter(|b| b.get() <= 100_000)
            .ok_or_else(|| bad(burst_key, format!("{b} must be between 1 and 100000")))?,
    };
    Ok(TenantQuota { rps, burst })
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| bad("config", e.message()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        bad(&key, e.into_inner().message())
    })
}

fn millis(key: &str, value: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(bad(key, "must be greater than 0")),
        Some(ms) if ms > 3_600_000 => Err(bad(key, format!("{ms} ms is over one hour"))),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

fn check_endpoint(url: &Url) -> Result<(), ConfigError> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad(
            "endpoint",
            format!("{url}: scheme must be https (or http)"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("endpoint", format!("{url}: has no host")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "endpoint",
            format!("{url}: must be scheme://host[:port] with no path or query (CAMS serves at /)"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("endpoint", "must not carry user information"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(toml: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("cams-flows-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, toml).expect("write");
        let args = ServeArgs {
            config: Some(dir.clone()),
            sandbox: Some(true),
            ..ServeArgs::default()
        };
        let result = args.resolve();
        let _ = std::fs::remove_file(dir);
        result
    }

    #[test]
    fn defaults() {
        let c = ServeArgs {
            auth_mode: Some(AuthMode::None),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("defaults are valid");
        assert_eq!(c.listen.to_string(), "0.0.0.0:50051");
        assert_eq!(
            c.upstream.endpoint.as_str(),
            "https://cams.ap-southeast-1.aliyuncs.com/"
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn file_values_and_flag_precedence() {
        let c = resolve_file(
            "listen = \"127.0.0.1:6000\"\nlog_format = \"text\"\n[upstream]\nmax_body_bytes = 4096\n",
        )
        .expect("valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:6000");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.upstream.max_body_bytes, 4096);

        let args = ServeArgs {
            listen: Some("127.0.0.1:7000".parse().expect("addr")),
            auth_mode: Some(AuthMode::None),
            ..ServeArgs::default()
        };
        assert_eq!(args.resolve().expect("valid").listen.port(), 7000);
    }

    #[test]
    fn account_quota_can_be_lifted_far_above_cams() {
        let c = resolve_file("[limits]\naccount_rps = 1000000\n").expect("valid");
        assert_eq!(c.limits.account_rps, 1_000_000);
    }

    #[test]
    fn limits_with_overrides() {
        let c = resolve_file(
            "[limits]\naccount_rps = 10\ntenant_rps = 0.5\ntenant_burst = 2\nmax_wait_ms = 0\n\
             [limits.tenants.\"vip\"]\nrps = 10\nburst = 20\n[limits.tenants.\"\"]\nburst = 3\n",
        )
        .expect("valid");
        let l = &c.limits;
        assert_eq!(
            (l.account_rps, l.tenant.rps, l.tenant.burst.get()),
            (10, 0.5, 2)
        );
        assert_eq!(l.max_wait, Duration::ZERO);
        let vip = l.tenants[&TenantId::parse("vip").expect("id")];
        assert_eq!((vip.rps, vip.burst.get()), (10.0, 20));
        // An override that leaves a field out inherits the default tenant quota.
        let own = l.tenants[&TenantId::own_space()];
        assert_eq!((own.rps, own.burst.get()), (0.5, 3));
    }

    #[test]
    fn auth_is_required_outside_the_sandbox() {
        let err = ServeArgs::default().resolve().expect_err("no auth");
        assert_eq!(err.key, "auth.mode");
        let c = resolve_file(&format!(
            "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"billing\"\nsha256 = \"{}\"\n\
             tenants = [\"cams-a\", \"team-*\"]\n",
            crate::auth::hash_key("k")
        ))
        .expect("valid");
        assert_eq!(c.auth.mode, AuthMode::ApiKey);
        assert_eq!(c.auth.keys[0].name, "billing");
        let c = resolve_file(
            "[auth]\nmode = \"mesh_header\"\n[[auth.identities]]\nid = \"spiffe://x\"\ntenants = [\"*\"]\n",
        )
        .expect("valid");
        assert_eq!(c.auth.identities.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[upstream]\nmax_body_bytes = \"big\"\n",
                "upstream.max_body_bytes",
            ),
            (
                "[upstream]\nmax_body_bytes = 10\n",
                "upstream.max_body_bytes",
            ),
            ("drain_timeout_ms = 0\n", "drain_timeout_ms"),
            ("listen = \"nowhere\"\n", "listen"),
            ("endpoint = \"ftp://x\"\n", "endpoint"),
            ("endpoint = \"https://x/path\"\n", "endpoint"),
            ("lissten = \"x\"\n", "lissten"),
            ("[upstream]\ntimeout = 1\n", "upstream.timeout"),
            ("listen = [", "config"),
            ("[limits]\naccount_rps = 0\n", "limits.account_rps"),
            ("[limits]\naccount_rps = 1000001\n", "limits.account_rps"),
            ("[limits]\ntenant_rps = -1\n", "limits.tenant_rps"),
            (
                "[cache]\nttl_ms = 0\n[limits]\ntenant_rps = 6\n",
                "limits.tenant_rps",
            ),
            ("[cache]\nttl_ms = 100000000\n", "cache.ttl_ms"),
            ("[cache]\nmax_entries = 0\n", "cache.max_entries"),
            ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
            ("[retry]\nbudget_ratio = -1\n", "retry.budget_ratio"),
            (
                "[retry]\nbase_backoff_ms = 500\nmax_backoff_ms = 100\n",
                "retry.max_backoff_ms",
            ),
            ("[server]\nmax_in_flight = 0\n", "server.max_in_flight"),
            ("[auth]\nmode = \"api_key\"\n", "auth.keys"),
            ("[auth]\nmode = \"sometimes\"\n", "auth.mode"),
            (
                "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"zz\"\ntenants = [\"*\"]\n",
                "auth.keys[0].sha256",
            ),
            (
                "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\ntenants = [\"a*b\"]\n",
                "auth.keys[0].tenants",
            ),
            ("[auth]\nmode = \"mtls\"\n", "auth.mode"),
            ("[auth]\nmode = \"mesh_header\"\n", "auth.identities"),
            ("[tls]\ncert_file = \"x.pem\"\n", "tls.key_file"),
            ("[tls]\nclient_ca_file = \"ca.pem\"\n", "tls.client_ca_file"),
            ("[limits]\ntenant_burst = 0\n", "limits.tenant_burst"),
            ("[limits]\nmax_wait_ms = 120000\n", "limits.max_wait_ms"),
            (
                "[cache]\nttl_ms = 0\n[limits.tenants.\"a\"]\nrps = 50\n",
                "limits.tenants.\"a\".rps",
            ),
            (
                "[limits.tenants.\"a\"]\nburst = 0\n",
                "limits.tenants.\"a\".burst",
            ),
            (
                "[limits.tenants.\"a\"]\nrate = 1\n",
                "limits.tenants.a.rate",
            ),
            (
                "[limits.tenants.\"a\\u0001\"]\nrps = 1\n",
                "limits.tenants.\"a\\u{1}\"",
            ),
        ];
        for (toml, key) in cases {
            let err = resolve_file(toml).expect_err(toml);
            assert!(
                err.key == key || err.problem.contains(key),
                "{toml:?} gave {err}"
            );
        }
    }
}
