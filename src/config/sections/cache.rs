//! The answer cache.

use std::time::Duration;

use super::{bad, bounded};
use crate::{
    cache::CacheConfig,
    config::{ConfigError, settings::CacheSettings},
};

pub(super) fn cache(s: &CacheSettings) -> Result<CacheConfig, ConfigError> {
    // Zero is meaningful here (no cache, never stale), unlike for a timeout.
    let ms = |key: &str, ms: u64| {
        if ms > 86_400_000 {
            Err(bad(key, format!("{ms} ms is over one day")))
        } else {
            Ok(Duration::from_millis(ms))
        }
    };
    Ok(CacheConfig {
        ttl: ms("cache.ttl_ms", s.ttl_ms)?,
        max_entries: bounded("cache.max_entries", s.max_entries, 1..=100_000_000)?,
        stale_if_error: ms("cache.stale_if_error_ms", s.stale_if_error_ms)?,
    })
}
