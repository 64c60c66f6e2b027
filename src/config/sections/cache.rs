//! `[cache]`: the answer cache.

use std::time::Duration;

use super::{bad, bounded, valid_defaults};
use crate::{
    cache::CacheConfig,
    config::{ConfigError, keys::settings},
};

settings! {
    /// `[cache]`: how long answers are kept, and where.
    section struct CacheSettings in "cache." {
        /// How long a flow is served from the cache; 0 disables caching
        key(value_name = "MS")
        ttl_ms: u64 = 30_000,
        /// Flows the cache holds at most
        key(value_name = "N")
        max_entries: u64 = 10_000,
        /// How long past its TTL a cached flow may stand in while CAMS fails or throttles; 0
        /// never
        key(value_name = "MS", alias = "stale-if-error-ms")
        stale_if_error_ms: u64 = 0,
        /// A hit this close to the end of its TTL refreshes the flow in the background; 0 turns
        /// refresh-ahead off
        key(value_name = "MS", default = "a fifth of cache.ttl_ms")
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_window_ms: Option<u64>,
        /// Keep answers in Redis too, shared by the replicas (a tier behind each replica's own
        /// cache)
        key(value_name = "BOOL", default = "on when a Redis is configured")
        #[serde(skip_serializing_if = "Option::is_none")]
        shared: Option<bool>,
        /// A Redis of its own for the shared cache (it may evict; losing it only costs CAMS
        /// calls)
        key(value_name = "URL", default = "redis.url")
        #[serde(skip_serializing_if = "Option::is_none")]
        redis_url: Option<String>,
        /// Each entry's TTL is drawn from within this percentage of cache.ttl_ms either way, so
        /// that entries fetched together do not expire together
        key(value_name = "PERCENT")
        ttl_jitter_percent: u8 = 10,
    }
}

impl CacheSettings {
    pub(super) fn validate(&self) -> Result<CacheConfig, ConfigError> {
        // Zero is meaningful here (no cache, never stale), unlike for a timeout.
        let ms = |key: &str, ms: u64| {
            if ms > 86_400_000 {
                Err(bad(key, format!("{ms} ms is over one day")))
            } else {
                Ok(Duration::from_millis(ms))
            }
        };
        let ttl = ms("cache.ttl_ms", self.ttl_ms)?;
        let refresh_window = match self.refresh_window_ms {
            None => ttl / 5,
            Some(window) if window > self.ttl_ms => {
                return Err(bad(
                    "cache.refresh_window_ms",
                    format!("{window} is longer than cache.ttl_ms ({})", self.ttl_ms),
                ));
            }
            Some(window) => Duration::from_millis(window),
        };
        Ok(CacheConfig {
            ttl,
            max_entries: bounded("cache.max_entries", self.max_entries, 1..=100_000_000)?,
            stale_if_error: ms("cache.stale_if_error_ms", self.stale_if_error_ms)?,
            refresh_window,
            ttl_jitter_percent: bounded(
                "cache.ttl_jitter_percent",
                self.ttl_jitter_percent,
                0..=50,
            )?,
        })
    }
}

/// The product's cache: the `[cache]` defaults.
impl Default for CacheConfig {
    fn default() -> Self {
        valid_defaults("cache", CacheSettings::default().validate())
    }
}
