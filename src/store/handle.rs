//! The one handle on the shared state's Redis: whatever the topology, every command is bounded by
//! `redis.timeout_ms`, and a connection that misses that bound, or answers that its server is no
//! longer the primary, is suspect: it is dropped, never used again, and a new one is made (the
//! sentinels are asked again, the cluster's map of slots read again). Changes between reachable
//! and unreachable are logged once, not once per call.
//!
//! The connection is made lazily and in the background: a gateway started while Redis is down
//! starts, says so, and recovers like one that lost Redis later. A probe every second notices
//! a loss, and a recovery, while no call needs Redis.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use redis::RedisError;

use super::{
    config::RedisConfig,
    connect::Connector,
    connection::Connection,
    policy::{EvictionPolicy, eviction_policy},
};
use crate::telemetry::metrics::{RedisFailure, RedisMetrics};

/// How often the connection is probed while nothing else talks to Redis, so that a loss and a
/// recovery are noticed (and logged) within this much.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Waits between attempts to connect, doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_LAST: Duration = Duration::from_secs(1);

/// Why Redis could not serve a command. Never carries an address or a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no connection to Redis (reconnecting)")]
    NotConnected,
    #[error("Redis failed: {0}")]
    Redis(#[source] RedisError),
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(&'static str),
    #[error(
        "the Redis that holds the account's quota evicts keys (maxmemory-policy {policy}): set \
         maxmemory-policy noeviction there, or give the cache a Redis of its own \
         (cache.redis_url) and keep the quota on a Redis that never evicts"
    )]
    Evicting { policy: String },
}

impl StoreError {
    /// Whether the connection that gave this error is no use any more: it did not answer in
    /// time, it is gone, or its server is no longer (or not yet) the primary.
    fn condemns_connection(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::NotConnected => true,
            Self::Redis(error) => {
                error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_timeout()
                    || matches!(
                        error.code(),
                        Some("READONLY" | "LOADING" | "MASTERDOWN" | "NOREPLICAS")
                    )
            }
            Self::Unexpected(_) | Self::Evicting { .. } => false,
        }
    }
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The connection in use, and which one it is.
struct Current {
    generation: u64,
    connection: Option<Connection>,
}

struct Inner {
    connector: Connector,
    current: ArcSwap<Current>,
    /// Told when a connection is put in use.
    connected: tokio::sync::Notify,
    generations: AtomicU64,
    reconnecting: AtomicBool,
    prefix: String,
    timeout: Duration,
    endpoint: String,
    state: AtomicU8,
    metrics: RedisMetrics,
    /// What callers see while this Redis is down, for the log line that says it is.
    when_down: &'static str,
    /// Whether this Redis holds the account's quota, which it must never evict: each new
    /// connection is checked before it is used.
    holds_quota: bool,
}

/// While the Redis of the account quota (and perhaps the cache) is down.
pub const QUOTA_WHEN_DOWN: &str =
    "calls that need CAMS fail with QUOTA_STORE_UNAVAILABLE, cache hits go on";
/// While a Redis that holds only the shared cache is down.
pub const CACHE_WHEN_DOWN: &str =
    "the shared cache is skipped, each replica answers from its own cache and from CAMS";

/// A cheap handle to the process's Redis.
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

/// What a handle is for: what callers see while it is down, and whether it holds the quota.
#[derive(Debug, Clone, Copy)]
pub struct Purpose {
    pub when_down: &'static str,
    pub holds_quota: bool,
}

impl Purpose {
    /// The account's quota and the limits (and the cache, when it shares this Redis).
    pub const STATE: Self = Self {
        when_down: QUOTA_WHEN_DOWN,
        holds_quota: true,
    };
    /// Only the shared cache: it may evict.
    pub const CACHE: Self = Self {
        when_down: CACHE_WHEN_DOWN,
        holds_quota: false,
    };
}

impl Redis {
    /// A handle for `config` holding the quota, connecting lazily; fails only for a
    /// configuration redis-rs refuses (never because Redis is down).
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        Self::observed(config, RedisMetrics::default(), Purpose::STATE)
    }

    /// As [`Self::new`], with every exchange's duration and failure counted in `metrics`.
    pub fn observed(
        config: &RedisConfig,
        metrics: RedisMetrics,
        purpose: Purpose,
    ) -> Result<Self, StoreError> {
        let connector = Connector::new(config).map_err(StoreError::Redis)?;
        Ok(Self {
            inner: Arc::new(Inner {
                connector,
                current: ArcSwap::from_pointee(Current {
                    generation: 0,
                    connection: None,
                }),
                connected: tokio::sync::Notify::new(),
                generations: AtomicU64::new(0),
                reconnecting: AtomicBool::new(false),
                prefix: config.key_prefix.clone(),
                timeout: config.timeout,
                endpoint: config.describe(),
                state: AtomicU8::new(UNKNOWN),
                metrics,
                when_down: purpose.when_down,
                holds_quota: purpose.holds_quota,
            }),
        })
    }

    /// A key under the configured prefix: `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.inner.prefix)
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A connection of its own for subscriptions (a subscribed connection carries nothing else),
    /// to the primary as it is now.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        let outcome = tokio::time::timeout(self.inner.timeout * 2, self.inner.connector.pubsub())
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer in time",
                )))
            });
        outcome.map_err(StoreError::Redis)
    }

    /// Runs one exchange with Redis on the connection in use, bounded by the timeout, and notes
    /// whether Redis answered. A connection the exchange condemns is replaced.
    pub async fn run<'a, T, F, Fut>(&'a self, exchange: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>> + 'a,
    {
        let started = tokio::time::Instant::now();
        let current = self.current_or_first().await;
        let outcome = match current.connection.clone() {
            None => Err(StoreError::NotConnected),
            Some(connection) => {
                match tokio::time::timeout(self.inner.timeout, exchange(connection)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => Err(StoreError::Redis(error)),
                    Err(_) => Err(StoreError::Timeout(self.inner.timeout)),
                }
            }
        };
        self.inner.metrics.exchange(
            started.elapsed(),
            match &outcome {
                Ok(_) => None,
                Err(StoreError::Timeout(_)) => Some(RedisFailure::Timeout),
                Err(_) => Some(RedisFailure::Error),
            },
        );
        if let Err(error) = &outcome
            && error.condemns_connection()
        {
            self.condemn(current.generation);
        }
        self.note(outcome.as_ref().err());
        outcome
    }

    /// The connection in use. Before the first exchange (nothing known of Redis yet) a command
    /// waits for the first connection, within its bound; once Redis is known to be down, a
    /// command fails at once while the connection is made again in the background.
    async fn current_or_first(&self) -> Arc<Current> {
        let current = self.inner.current.load_full();
        if current.connection.is_some() || self.inner.state.load(Ordering::Relaxed) == DOWN {
            if current.connection.is_none() {
                self.ensure_reconnecting();
            }
            return current;
        }
        let connected = self.inner.connected.notified();
        tokio::pin!(connected);
        connected.as_mut().enable();
        let current = self.inner.current.load_full();
        if current.connection.is_some() {
            return current;
        }
        self.ensure_reconnecting();
        let _ = tokio::time::timeout(self.inner.timeout, connected).await;
        self.inner.current.load_full()
    }

    /// Whether the last exchange with Redis succeeded.
    pub fn reachable(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) == UP
    }

    /// Whether the last exchange with Redis failed (not merely: none has happened yet).
    pub fn down(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) == DOWN
    }

    /// At start: connects, and refuses a Redis that holds the quota but may evict keys. A Redis
    /// that does not answer yet is not an error: the gateway starts, says so, and checks it when
    /// it connects.
    pub async fn check_at_start(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let attempt = tokio::time::timeout(inner.timeout * 2, inner.connector.connect()).await;
        let connection = match attempt {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                note(inner, Some(&StoreError::Redis(error)));
                self.ensure_reconnecting();
                return Ok(());
            }
            Err(_) => {
                note(inner, Some(&StoreError::Timeout(inner.timeout * 2)));
                self.ensure_reconnecting();
                return Ok(());
            }
        };
        match admit(inner, connection).await {
            Ok(connection) => {
                let generation = inner.generations.fetch_add(1, Ordering::AcqRel) + 1;
                inner.current.store(Arc::new(Current {
                    generation,
                    connection: Some(connection),
                }));
                note(inner, None);
                Ok(())
            }
            Err(error @ StoreError::Evicting { .. }) => Err(error),
            Err(error) => {
                note(inner, Some(&error));
                self.ensure_reconnecting();
                Ok(())
            }
        }
    }

    /// Stops using the connection of `generation` (if it is still the one in use) and makes a
    /// new one.
    fn condemn(&self, generation: u64) {
        let current = self.inner.current.load();
        if current.generation == generation && current.connection.is_some() {
            self.inner.current.store(Arc::new(Current {
                generation,
                connection: None,
            }));
            tracing::debug!(endpoint = %self.inner.endpoint, "Redis connection dropped; reconnecting");
        }
        self.ensure_reconnecting();
    }

    /// One reconnecting task at a time, which connects (with backoff) until a connection is in
    /// use.
    fn ensure_reconnecting(&self) {
        if self.inner.current.load().connection.is_some()
            || self.inner.reconnecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(reconnect(weak));
    }

    fn note(&self, error: Option<&StoreError>) {
        note(&self.inner, error);
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
                if redis.inner.current.load().connection.is_none() {
                    redis.ensure_reconnecting();
                    continue;
                }
                let _ = redis
                    .run(|mut connection| async move {
                        redis::cmd("PING")
                            .query_async::<String>(&mut connection)
                            .await
                    })
                    .await;
            }
        }
    }
}

fn note(inner: &Inner, error: Option<&StoreError>) {
    let new = if error.is_some() { DOWN } else { UP };
    let old = inner.state.swap(new, Ordering::Relaxed);
    if old == new {
        return;
    }
    let endpoint = &inner.endpoint;
    match (old, error) {
        (UNKNOWN, None) => tracing::info!(%endpoint, "Redis connected"),
        (_, None) => tracing::info!(%endpoint, "Redis reachable again"),
        (_, Some(error)) => tracing::warn!(
            %endpoint,
            %error,
            "Redis unreachable: {}; reconnecting",
            inner.when_down
        ),
    }
}

/// Connects until a connection is in use; gives up only when the handle is gone.
async fn reconnect(weak: Weak<Inner>) {
    let mut pause = RECONNECT_FIRST;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let attempt = tokio::time::timeout(inner.timeout * 2, inner.connector.connect()).await;
        let outcome = match attempt {
            Ok(Ok(connection)) => admit(&inner, connection).await,
            Ok(Err(error)) => Err(StoreError::Redis(error)),
            Err(_) => Err(StoreError::Timeout(inner.timeout * 2)),
        };
        match outcome {
            Ok(connection) => {
                let generation = inner.generations.fetch_add(1, Ordering::AcqRel) + 1;
                inner.current.store(Arc::new(Current {
                    generation,
                    connection: Some(connection),
                }));
                inner.reconnecting.store(false, Ordering::Release);
                inner.connected.notify_waiters();
                return;
            }
            Err(error) => {
                note(&inner, Some(&error));
                if let StoreError::Evicting { .. } = error {
                    tracing::error!(endpoint = %inner.endpoint, %error, "Redis refused for the account's quota");
                }
            }
        }
        drop(inner);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_LAST);
    }
}

/// A new connection is used only if its servers may hold the quota: a Redis that may evict
/// could lose the lease log alone and admit calls over the quota.
async fn admit(inner: &Inner, mut connection: Connection) -> Result<Connection, StoreError> {
    if !inner.holds_quota {
        return Ok(connection);
    }
    let infos = tokio::time::timeout(inner.timeout, connection.info_of_primaries("memory"))
        .await
        .map_err(|_| StoreError::Timeout(inner.timeout))?
        .map_err(StoreError::Redis)?;
    match eviction_policy(&infos) {
        EvictionPolicy::NoEviction => Ok(connection),
        EvictionPolicy::Evicting(policy) => Err(StoreError::Evicting { policy }),
        // A server that does not say (a proxy that filters INFO) is taken at its word.
        EvictionPolicy::Unknown => Ok(connection),
    }
}
