//! The configuration as written, before validation: one serde tree that the TOML file, the
//! environment and the flags all fill in. Its defaults are the first layer of the figment.
//!
//! Optional values and the file-only lists are left out of the defaults rather than written as
//! empty, so that a key nobody set has no layer to blame in an error message.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::LogFormat;
use crate::{
    auth::AuthMode, cache::CacheConfig, cams::DEFAULT_ENDPOINT, credentials::CredentialsConfig,
    gateway::RetryConfig, limits::LimitsConfig,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    pub listen: String,
    pub endpoint: String,
    pub log_format: LogFormat,
    #[serde(deserialize_with = "boolish")]
    pub sandbox: bool,
    pub drain_timeout_ms: u64,
    pub call_timeout_ms: u64,
    pub upstream: UpstreamSettings,
    pub limits: LimitsSettings,
    pub cache: CacheSettings,
    pub retry: RetrySettings,
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub tls: TlsFiles,
    pub redis: RedisSettings,
    pub credentials: CredentialsSettings,
    pub admin: AdminSettings,
    pub tracing: TracingSettings,
}

/// `[admin]`: the operators' listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSettings {
    /// Off when left out (or `off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// `[tracing]`: what the gateway does with trace context. Whether spans are exported is the
/// standard `OTEL_*` environment's to say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TracingSettings {
    #[serde(deserialize_with = "boolish")]
    pub propagate_upstream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisSettings {
    /// Off when left out: every replica keeps its own limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub key_prefix: String,
    pub timeout_ms: u64,
    /// The account's name in Redis; its AccessKeyId when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamSettings {
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSettings {
    pub account_rps: u32,
    pub tenant_rps: f64,
    pub tenant_burst: u32,
    pub max_wait_ms: u64,
    pub max_queue: usize,
    /// Per-tenant overrides by CustSpaceId; file only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantSettings>,
}

/// A part left out inherits the default tenant quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantSettings {
    pub rps: Option<f64>,
    pub burst: Option<u32>,
    /// Share of the account queue against other tenants; 1 when left out.
    pub weight: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheSettings {
    pub ttl_ms: u64,
    pub max_entries: u64,
    pub stale_if_error_ms: u64,
    /// A fifth of the TTL when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_window_ms: Option<u64>,
    pub ttl_jitter_percent: u8,
    /// On when a Redis is configured, when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// A Redis of its own for the shared cache; `[redis] url` when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetrySettings {
    pub max_attempts: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub budget_ratio: f64,
    pub budget_min_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSettings {
    pub max_in_flight: usize,
    pub max_concurrent_streams: u32,
    pub max_connections: usize,
    pub preface_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connection_age_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSettings {
    /// No default: outside the sandbox it must be chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthModeName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeySettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentitySettings>,
    /// Every caller's rate limit unless its key or identity sets its own; none when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_burst: Option<u32>,
}

/// `auth.mode` as written. The flag used to take clap's spellings (`api-key`) and the file
/// serde's (`api_key`); both stay valid everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthModeName {
    None,
    #[serde(alias = "api-key")]
    ApiKey,
    Mtls,
    #[serde(alias = "mesh-header")]
    MeshHeader,
}

impl From<AuthModeName> for AuthMode {
    fn from(name: AuthModeName) -> Self {
        match name {
            AuthModeName::None => Self::None,
            AuthModeName::ApiKey => Self::ApiKey,
            AuthModeName::Mtls => Self::Mtls,
            AuthModeName::MeshHeader => Self::MeshHeader,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeySettings {
    pub name: String,
    pub sha256: String,
    pub tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentitySettings {
    pub id: String,
    pub tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFiles {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// `[credentials]`: the chain or one provider, and settings that stand in for the standard
/// `ALIBABA_CLOUD_*` variables (none of them a secret: keys stay in the environment or files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialsSettings {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_vpc_endpoint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli_config_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_role_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imdsv1_disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_session_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_external_id: Option<String>,
    pub sts_connect_timeout_ms: u64,
    pub sts_timeout_ms: u64,
    pub metadata_timeout_ms: u64,
}

impl Default for CredentialsSettings {
    fn default() -> Self {
        let defaults = CredentialsConfig::default();
        Self {
            provider: "chain".to_owned(),
            role_arn: None,
            oidc_provider_arn: None,
            oidc_token_file: None,
            role_session_name: None,
            duration_seconds: None,
            policy: None,
            sts_endpoint: None,
            sts_region: None,
            sts_vpc_endpoint: None,
            profile: None,
            cli_config_file: None,
            credentials_file: None,
            ecs_role_name: None,
            metadata_endpoint: None,
            imdsv1_disabled: None,
            uri: None,
            assume_role_arn: None,
            assume_role_session_name: None,
            assume_role_external_id: None,
            sts_connect_timeout_ms: millis(defaults.sts_connect_timeout),
            sts_timeout_ms: millis(defaults.sts_timeout),
            metadata_timeout_ms: millis(defaults.metadata_timeout),
        }
    }
}

/// The owners' own defaults where they have them (limits, cache, retry); the rest mirror
/// `Config::new` and `UpstreamConfig::new`, which a test holds them to.
impl Default for Settings {
    fn default() -> Self {
        let limits = LimitsConfig::default();
        let cache = CacheConfig::default();
        let retry = RetryConfig::default();
        Self {
            listen: "0.0.0.0:50051".to_owned(),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            log_format: LogFormat::Json,
            sandbox: false,
            drain_timeout_ms: 10_000,
            call_timeout_ms: 10_000,
            upstream: UpstreamSettings {
                connect_timeout_ms: 2_000,
                request_timeout_ms: 10_000,
                max_body_bytes: 256 * 1024,
            },
            limits: LimitsSettings {
                account_rps: limits.account_rps,
                tenant_rps: limits.tenant.rps,
                tenant_burst: limits.tenant.burst.get(),
                max_wait_ms: millis(limits.max_wait),
                max_queue: limits.max_queue,
                tenants: BTreeMap::new(),
            },
            cache: CacheSettings {
                ttl_ms: millis(cache.ttl),
                max_entries: cache.max_entries,
                stale_if_error_ms: millis(cache.stale_if_error),
                refresh_window_ms: None,
                ttl_jitter_percent: cache.ttl_jitter_percent,
                shared: None,
                redis_url: None,
            },
            retry: RetrySettings {
                max_attempts: retry.max_attempts,
                base_backoff_ms: millis(retry.base_backoff),
                max_backoff_ms: millis(retry.max_backoff),
                budget_ratio: retry.budget_ratio,
                budget_min_retries: retry.budget_min_retries,
            },
            server: ServerSettings {
                max_in_flight: 1024,
                max_concurrent_streams: 256,
                max_connections: 4096,
                preface_timeout_ms: 10_000,
                idle_timeout_ms: 300_000,
                max_connection_age_ms: 1_800_000,
            },
            auth: AuthSettings::default(),
            tls: TlsFiles::default(),
            redis: RedisSettings {
                url: None,
                key_prefix: "cams-flows".to_owned(),
                timeout_ms: 500,
                account: None,
            },
            credentials: CredentialsSettings::default(),
            admin: AdminSettings::default(),
            tracing: TracingSettings::default(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What `--sandbox` accepted when clap parsed it (`y`, `t`, `on`, `1`, ...), from every layer.
fn boolish<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean (true/false, yes/no, on/off, 1/0)")
        }
        fn visit_bool<E>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<bool, E> {
            match n {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(n), &self)),
            }
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<bool, E> {
            const TRUE: &[&str] = &["y", "yes", "t", "true", "on", "1"];
            const FALSE: &[&str] = &["n", "no", "f", "false", "off", "0"];
            if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
                Ok(true)
            } else if FALSE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
                Ok(false)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
    }
    deserializer.deserialize_bool(Visitor)
}
