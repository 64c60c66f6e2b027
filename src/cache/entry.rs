//! A cached answer and the wall-clock times that bound its use. Wall-clock times, not
//! `Instant`s, so that a tier shared by several processes can hold them too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::{Duration, SystemTime},
};

use rand::Rng;

use crate::cams::FlowAnswer;

/// A cached answer and the wall-clock times that bound its use.
#[derive(Debug, Clone)]
pub struct CachedFlow {
    pub answer: Arc<FlowAnswer>,
    pub fetched_at: SystemTime,
    /// Served as a hit until then.
    pub fresh_until: SystemTime,
    /// Served as a stale fallback until then; never past the preview URL's expiry.
    pub usable_until: SystemTime,
    /// From then on, a hit asks for a background refresh (`fresh_until` when refresh-ahead is
    /// off).
    pub refresh_at: SystemTime,
    /// This process's view of the entry's demand; not shared with other processes.
    pub demand: Arc<Demand>,
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

/// `ttl`, moved uniformly by up to `percent` either way.
pub(super) fn jittered(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 || ttl.is_zero() {
        return ttl;
    }
    let spread = f64::from(percent.min(100)) / 100.0;
    ttl.mul_f64(1.0 + rand::rng().random_range(-spread..=spread))
}
