//! Validation: the settings as written become the owners' configuration types. One file per
//! section, so that each can later move next to the type it builds. A refused value is reported
//! with its key; the loader adds the layer it came from.

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

use super::{Config, ConfigError, settings::Settings};

/// The whole configuration, in the order its sections depend on each other: the limits need to
/// know whether there is a cache, and the authentication whether there is TLS.
pub(super) fn config(s: &Settings) -> Result<Config, ConfigError> {
    let listen = server::listen(&s.listen)?;
    let upstream = upstream::upstream(&s.endpoint, &s.upstream)?;
    let mut config = Config::new(listen, upstream.endpoint.clone());
    config.upstream = upstream;
    config.log_format = s.log_format;
    config.sandbox = s.sandbox;
    config.drain_timeout = millis("drain_timeout_ms", s.drain_timeout_ms)?;
    config.call_timeout = millis("call_timeout_ms", s.call_timeout_ms)?;
    config.cache = cache::cache(&s.cache)?;
    config.retry = retry::retry(&s.retry)?;
    config.limits = limits::limits(&s.limits, !config.cache.ttl.is_zero())?;
    server::server(&s.server, &mut config)?;
    config.tls = tls::tls(&s.tls)?;
    config.auth = auth::auth(&s.auth, config.sandbox, config.tls.as_ref())?;
    config.redis = redis::redis(&s.redis)?;
    config.cache_redis = redis::cache_redis(&s.cache, &s.redis)?;
    config.credentials = credentials::credentials(&s.credentials)?;
    config.admin_listen = telemetry::admin_listen(&s.admin)?;
    config.tracing.propagate_upstream = s.tracing.propagate_upstream;
    Ok(config)
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
