//! A cached answer and the times that bound its use: times on CAMS's clock as this replica
//! reads it (`cams::CamsClock`), not `Instant`s, so that they compare with CAMS's
//! `PreviewUrlExpires` as they are and mean the same in every process that shares a tier.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::{Duration, SystemTime},
};

use rand::Rng;

use crate::{cams::CLOCK_MARGIN, domain::Answer};

/// A cached answer and the times (on CAMS's clock) that bound its use.
#[derive(Debug, Clone)]
pub struct CachedFlow {
    pub answer: Arc<Answer>,
    pub fetched_at: SystemTime,
    /// Served as a hit until then.
    pub fresh_until: SystemTime,
    /// Served as a stale fallback until then; never past [`servable_until`] the preview URL's
    /// expiry.
    pub usable_until: SystemTime,
    /// From then on, a hit asks for a background refresh (`fresh_until` when refresh-ahead is
    /// off).
    pub refresh_at: SystemTime,
    /// This process's view of the entry's demand; not shared with other processes.
    pub demand: Arc<Demand>,
    /// The shared tier's purge mark as the entry's fetch began (`CacheTier::mark`), when this
    /// process fetched it: what a later put of the entry (a fresher preview URL) is checked
    /// against. `None` for an entry read from the shared tier, which is then not put back.
    pub(crate) began: Option<u64>,
}

/// How much an entry is wanted near the end of its TTL, and whether its refresh has started.
#[derive(Debug, Default)]
pub struct Demand {
    /// Hits within the refresh window: the priority of the entry's refresh.
    pub reads: Arc<AtomicU64>,
    pub(super) refresh_started: AtomicBool,
}

/// A background refresh the cache asks for: how long the entry stays a hit (after that the
/// refresh is pointless), and the entry's demand.
#[derive(Debug, Clone)]
pub struct RefreshDue {
    pub hit_for: Duration,
    pub reads: Arc<AtomicU64>,
}

/// The last moment an answer whose preview URL dies at `expires` (on CAMS's clock) is served:
/// a margin before, since this replica's reading of CAMS's clock may lag CAMS's by that much
/// (`cams::skew::MARGIN` says what it covers).
pub(super) fn servable_until(expires: SystemTime) -> SystemTime {
    expires.checked_sub(CLOCK_MARGIN).unwrap_or(expires)
}

/// `ttl`, moved uniformly by up to `percent` either way.
pub(super) fn jittered(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 || ttl.is_zero() {
        return ttl;
    }
    let spread = f64::from(percent.min(100)) / 100.0;
    ttl.mul_f64(1.0 + rand::rng().random_range(-spread..=spread))
}
