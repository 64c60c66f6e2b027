//! The one Redis connection of the process: a redis-rs `ConnectionManager`, which reconnects by
//! itself, with every command bounded by `redis.timeout_ms` and every change between reachable
//! and unreachable logged once (not once per call).
//!
//! The connection is made lazily: a gateway started while Redis is down starts, says so, and
//! recovers like one that lost Redis later.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use redis::{
    Client, IntoConnectionInfo, RedisError, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use secrecy::{ExposeSecret, SecretString};

use crate::telemetry::metrics::{RedisFailure, RedisMetrics};

/// How often the connection is probed while nothing else talks to Redis, so that a recovery is
/// noticed (and logged) within this much.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The validated `[redis]` section.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`; may carry a password, so it is never shown.
    pub url: SecretString,
    /// Used when the URL carries none (`CAMS_FLOWS_REDIS_PASSWORD`).
    pub password: Option<SecretString>,
    pub key_prefix: String,
    pub timeout: Duration,
    /// The account's name in Redis; the AccessKeyId when `None`.
    pub account: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("endpoint", &endpoint_of(self.url.expose_secret()))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl PartialEq for RedisConfig {
    fn eq(&self, other: &Self) -> bool {
        self.url.expose_secret() == other.url.expose_secret()
            && self.key_prefix == other.key_prefix
            && self.timeout == other.timeout
            && self.account == other.account
    }
}

/// `scheme://host:port/db`, without user information: what logs may say about the URL.
fn endpoint_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}:{}{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or("?"),
            parsed.port().unwrap_or(6379),
            parsed.path()
        ),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The hash tag of one account's keys: `{acct:<first 16 hex digits of its SHA-256>}`. Hashed,
/// so that an AccessKeyId is not spelled out in Redis; a hash tag, so that in a Redis Cluster a
/// script can touch all of one account's keys.
pub fn account_tag(account: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(account.as_bytes()));
    format!("{{acct:{}}}", &digest[..16])
}

/// Why Redis could not serve a command. Never carries the URL or the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis failed: {0}")]
    Redis(#[source] RedisError),
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(&'static str),
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

struct Inner {
    client: Client,
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
    endpoint: String,
    state: AtomicU8,
    metrics: RedisMetrics,
    /// What callers see while this Redis is down, for the log line that says it is.
    when_down: &'static str,
}

/// While the Redis of the account quota (and perhaps the cache) is down.
pub const QUOTA_WHEN_DOWN: &str =
    "calls that need CAMS fail with QUOTA_STORE_UNAVAILABLE, cache hits go on";
/// While a Redis that holds only the shared cache is down.
pub const CACHE_WHEN_DOWN: &str =
    "the shared cache is skipped, each replica answers from its own cache and from CAMS";

/// A cheap handle to the process's Redis connection.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("endpoint", &self.inner.endpoint)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A client for `config`, connecting lazily; fails only for a configuration redis-rs
    /// refuses (never because Redis is down).
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        Self::observed(config, RedisMetrics::default(), QUOTA_WHEN_DOWN)
    }

    /// As [`Self::new`], with every exchange's duration and failure counted in `metrics`, and
    /// `when_down` (what callers see while it is down) in the log line that says so.
    pub fn observed(
        config: &RedisConfig,
        metrics: RedisMetrics,
        when_down: &'static str,
    ) -> Result<Self, StoreError> {
        let mut info = config
            .url
            .expose_secret()
            .into_connection_info()
            .map_err(StoreError::Redis)?;
        if info.redis_settings().password().is_none()
            && let Some(password) = &config.password
        {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(StoreError::Redis)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(StoreError::Redis)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager,
                prefix: config.key_prefix.clone(),
                timeout: config.timeout,
                endpoint: endpoint_of(config.url.expose_secret()),
                state: AtomicU8::new(UNKNOWN),
                metrics,
                when_down,
            }),
        })
    }

    /// A key under the configured prefix: `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.inner.prefix)
    }

    /// A connection to send commands on (cheap: they share one multiplexed connection).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A connection of its own for subscriptions (a subscribed connection carries nothing else).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        let client = self.inner.client.clone();
        self.run(async move { client.get_async_pubsub().await })
            .await
    }

    /// Runs one exchange with Redis, bounded by the timeout, and notes whether Redis answered.
    pub async fn run<T>(
        &self,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = tokio::time::Instant::now();
        let outcome = match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Redis(error)),
            Err(_) => Err(StoreError::Timeout(self.inner.timeout)),
        };
        self.inner.metrics.exchange(
            started.elapsed(),
            match &outcome {
                Ok(_) => None,
                Err(StoreError::Timeout(_)) => Some(RedisFailure::Timeout),
                Err(_) => Some(RedisFailure::Error),
            },
        );
        self.note(outcome.as_ref().err());
        outcome
    }

    /// Whether the last exchange with Redis succeeded.
    pub fn reachable(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) == UP
    }

    /// Whether the last exchange with Redis failed (not merely: none has happened yet).
    pub fn down(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) == DOWN
    }

    fn note(&self, error: Option<&StoreError>) {
        let new = if error.is_some() { DOWN } else { UP };
        let old = self.inner.state.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        let endpoint = &self.inner.endpoint;
        match (old, error) {
            (UNKNOWN, None) => tracing::info!(%endpoint, "Redis connected"),
            (_, None) => tracing::info!(%endpoint, "Redis reachable again"),
            (_, Some(error)) => tracing::warn!(
                %endpoint,
                %error,
                "Redis unreachable: {}; reconnecting",
                self.inner.when_down
            ),
        }
    }

    /// Probes Redis every second, so that losing and regaining it is noticed (and logged) even
    /// while no call needs it. Runs until dropped.
    pub fn watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let redis = self.clone();
        async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut connection = redis.connection();
                let _ = redis
                    .run(async move {
                        redis::cmd("PING")
                            .query_async::<String>(&mut connection)
                            .await
                    })
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_without_the_password() {
        let config = RedisConfig {
            url: SecretString::from("redis://user:hunter2@redis.example:6380/2".to_owned()),
            password: Some(SecretString::from("also-secret".to_owned())),
            key_prefix: "cams-flows".into(),
            timeout: Duration::from_millis(500),
            account: None,
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("redis://redis.example:6380/2"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("also-secret"));
    }
}
