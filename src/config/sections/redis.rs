//! `[redis]`: the Redis the replicas share.

use std::time::Duration;

use secrecy::SecretString;

use super::{CacheSettings, bad, millis};
use crate::{
    config::{ConfigError, keys::settings},
    store::RedisConfig,
};

settings! {
    /// `[redis]`: off without a URL, and every replica keeps its limits to itself.
    section struct RedisSettings in "redis." {
        /// Redis shared by the replicas (redis:// or rediss://): the account quota and the
        /// tenant limits hold for all of them together. A password goes in the URL or in
        /// CAMS_FLOWS_REDIS_PASSWORD
        key(value_name = "URL", default = "none, each replica on its own")
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Prefix of every key the gateway writes in Redis
        key(value_name = "PREFIX")
        key_prefix: String = "cams-flows".to_owned(),
        /// Bound on one Redis command; past it calls that need CAMS fail with
        /// QUOTA_STORE_UNAVAILABLE
        key(value_name = "MS")
        timeout_ms: u64 = 500,
        /// The Alibaba Cloud account's UID, which names its state in Redis. The gateway learns
        /// it at start from STS GetCallerIdentity; when set, it must match, and stands in for STS
        /// when STS cannot be reached
        key(value_name = "UID", default = "from STS GetCallerIdentity")
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    }
}

impl RedisSettings {
    /// `None` without a URL: every replica keeps its limits to itself. The URL may carry a
    /// password, so no message quotes it.
    pub(super) fn validate(&self) -> Result<Option<RedisConfig>, ConfigError> {
        self.at("redis.url", self.url.as_deref())
    }

    /// The Redis of the shared cache: `cache.redis_url` when set, else `[redis]`'s; `None` when
    /// the cache is not shared.
    pub(super) fn validate_for_cache(
        &self,
        cache: &CacheSettings,
    ) -> Result<Option<RedisConfig>, ConfigError> {
        let url = cache.redis_url.as_deref().or(self.url.as_deref());
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
        self.at(key, url)
    }

    fn at(&self, key: &str, url: Option<&str>) -> Result<Option<RedisConfig>, ConfigError> {
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
        let prefix = self.key_prefix.trim();
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
        let timeout = millis("redis.timeout_ms", self.timeout_ms)?;
        if timeout > Duration::from_secs(10) {
            return Err(bad(
                "redis.timeout_ms",
                format!(
                    "{} ms is over 10 s: calls would wait that long for a lost Redis",
                    self.timeout_ms
                ),
            ));
        }
        let account = match self.account.as_deref().map(str::trim) {
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
}
