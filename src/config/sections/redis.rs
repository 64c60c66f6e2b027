//! The Redis the replicas share.

use std::time::Duration;

use secrecy::SecretString;

use super::{bad, millis};
use crate::{
    config::{
        ConfigError,
        settings::{CacheSettings, RedisSettings},
    },
    store::RedisConfig,
};

/// `None` without a URL: every replica keeps its limits to itself. The URL may carry a password,
/// so no message quotes it.
pub(super) fn redis(s: &RedisSettings) -> Result<Option<RedisConfig>, ConfigError> {
    redis_at("redis.url", s.url.as_deref(), s)
}

/// The Redis of the shared cache: `cache.redis_url` when set, else `[redis]`'s; `None` when the
/// cache is not shared.
pub(super) fn cache_redis(
    cache: &CacheSettings,
    s: &RedisSettings,
) -> Result<Option<RedisConfig>, ConfigError> {
    let url = cache.redis_url.as_deref().or(s.url.as_deref());
    let shared = cache.shared.unwrap_or(url.is_some());
    if !shared {
        return Ok(None);
    }
    if url.is_none() {
        return Err(bad(
            "cache.shared",
            "a shared cache needs a Redis: set redis.url (or cache.redis_url)",
        ));
    }
    let key = if cache.redis_url.is_some() {
        "cache.redis_url"
    } else {
        "redis.url"
    };
    redis_at(key, url, s)
}

fn redis_at(
    key: &str,
    url: Option<&str>,
    s: &RedisSettings,
) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(bad(
            key,
            "must be a redis:// or rediss:// URL (the value is not repeated: it may hold a \
             password)",
        ));
    }
    if redis::Client::open(url).is_err() {
        return Err(bad(
            key,
            "is not a usable Redis URL (the value is not repeated: it may hold a password)",
        ));
    }
    let prefix = s.key_prefix.trim();
    if prefix.is_empty()
        || prefix.len() > 64
        || prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(bad(
            "redis.key_prefix",
            format!("{prefix:?} must be 1 to 64 characters without spaces or braces"),
        ));
    }
    let timeout = millis("redis.timeout_ms", s.timeout_ms)?;
    if timeout > Duration::from_secs(10) {
        return Err(bad(
            "redis.timeout_ms",
            format!(
                "{} ms is over 10 s: calls would wait that long for a lost Redis",
                s.timeout_ms
            ),
        ));
    }
    let account = match s.account.as_deref().map(str::trim) {
        Some("") => return Err(bad("redis.account", "must not be empty")),
        Some(a) if a.len() > 128 || a.chars().any(char::is_control) => {
            return Err(bad(
                "redis.account",
                "must be at most 128 printable characters",
            ));
        }
        other => other.map(str::to_owned),
    };
    Ok(Some(RedisConfig {
        url: SecretString::from(url.to_owned()),
        password: None,
        key_prefix: prefix.to_owned(),
        timeout,
        account,
    }))
}
