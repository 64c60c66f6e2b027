//! The sections of the written configuration, one file each: the struct as written (every field
//! once, with its default and meaning, declared with [`settings!`](super::keys::settings)), and
//! its `validate()`, which makes the owner's runtime type of it (`CacheConfig`, `LimitsConfig`,
//! ...). The runtime types' own defaults are the sections' defaults, validated. A refused value is
//! reported with its key; the loader adds the layer it came from.

mod auth;
mod cache;
mod credentials;
pub(super) mod limits;
mod redis;
mod retry;
mod server;
mod telemetry;
mod tls;
mod upstream;

use std::time::Duration;

pub(super) use auth::{AuthModeName, AuthSettings};
pub(super) use cache::CacheSettings;
pub(super) use credentials::CredentialsSettings;
pub(super) use limits::LimitsSettings;
pub(super) use redis::RedisSettings;
pub(super) use retry::RetrySettings;
pub(super) use server::ServerSettings;
pub(super) use telemetry::{AdminSettings, TracingSettings};
pub(super) use tls::TlsFiles;
pub(super) use upstream::UpstreamSettings;

use super::{Config, ConfigError, settings::Settings};
use crate::telemetry::trace::TracingConfig;

/// The whole configuration, in the order its sections depend on each other: the limits need to
/// know whether there is a cache, and the authentication whether there is TLS.
pub(super) fn config(s: &Settings) -> Result<Config, ConfigError> {
    let listen = server::listen(&s.listen)?;
    let upstream = s.upstream.validate(&s.endpoint)?;
    let drain_timeout = millis("drain_timeout_ms", s.drain_timeout_ms)?;
    let call_timeout = millis("call_timeout_ms", s.call_timeout_ms)?;
    let cache = s.cache.validate()?;
    let retry = s.retry.validate()?;
    let mut limits = s.limits.validate(!cache.ttl.is_zero())?;
    let server = s.server.validate()?;
    let tls = s.tls.validate()?;
    let (auth, caller_weights) = s.auth.validate(s.sandbox, tls.as_ref())?;
    limits.callers = caller_weights;
    Ok(Config {
        listen,
        log_format: s.log_format,
        sandbox: s.sandbox,
        drain_timeout,
        call_timeout,
        upstream,
        limits,
        cache,
        retry,
        max_in_flight: server.max_in_flight,
        max_concurrent_streams: server.max_concurrent_streams,
        max_connections: server.max_connections,
        preface_timeout: server.preface_timeout,
        idle_timeout: server.idle_timeout,
        max_connection_age: server.max_connection_age,
        ratelimit_metadata: server.ratelimit_metadata,
        auth,
        tls,
        redis: s.redis.validate()?,
        cache_redis: s.redis.validate_for_cache(&s.cache)?,
        credentials: s.credentials.validate()?,
        admin_listen: s.admin.validate()?,
        tracing: TracingConfig {
            propagate_upstream: s.tracing.propagate_upstream,
            ..TracingConfig::default()
        },
    })
}

fn bad(key: impl Into<String>, problem: impl ToString) -> ConfigError {
    ConfigError {
        key: key.into(),
        origin: None,
        problem: problem.to_string(),
    }
}

fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
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

/// A timeout: zero would fail every call, and over an hour is a unit mistake.
fn millis(key: &str, ms: u64) -> Result<Duration, ConfigError> {
    match ms {
        0 => Err(bad(key, "must be greater than 0")),
        ms if ms > 3_600_000 => Err(bad(key, format!("{ms} ms is over one hour"))),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A runtime type's defaults: its section's, validated. They are valid (a test holds them to
/// it), so this cannot fail but on a mistake in a section's declaration.
fn valid_defaults<T>(section: &str, validated: Result<T, ConfigError>) -> T {
    validated.unwrap_or_else(|e| panic!("the [{section}] defaults are not valid: {e}"))
}
