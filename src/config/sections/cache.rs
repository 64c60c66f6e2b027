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
    let ttl = ms("cache.ttl_ms", s.ttl_ms)?;
    let refresh_window = match s.refresh_window_ms {
        None => ttl / 5,
        Some(window) if window > s.ttl_ms => {
            return Err(bad(
                "cache.refresh_window_ms",
                format!("{window} is longer than cache.ttl_ms ({})", s.ttl_ms),
            ));
        }
        Some(window) => Duration::from_millis(window),
    };
    Ok(CacheConfig {
        ttl,
        max_entries: bounded("cache.max_entries", s.max_entries, 1..=100_000_000)?,
        stale_if_error: ms("cache.stale_if_error_ms", s.stale_if_error_ms)?,
        refresh_window,
        ttl_jitter_percent: bounded("cache.ttl_jitter_percent", s.ttl_jitter_percent, 0..=50)?,
    })
}
