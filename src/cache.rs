//! The read-through cache and the coalescer in front of CAMS.
//!
//! Entries are keyed by (tenant, flow id), so tenants never share one. An entry is fresh for the
//! configured TTL and may then serve as a stale fallback for `stale_if_error` more; neither ever
//! outlives the flow's `PreviewUrlExpires`, so no cached answer hands out a dead preview URL.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use moka::{Expiry, future::Cache};

use crate::{cams::FlowAnswer, error::Error, gateway::FlowQuery};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is served without asking CAMS; zero disables caching.
    pub ttl: Duration,
    pub max_entries: u64,
    /// How long past its TTL an answer may still be served while CAMS fails or throttles.
    pub stale_if_error: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            max_entries: 10_000,
            stale_if_error: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Arc<FlowAnswer>,
    fresh_until: Instant,
    usable_until: Instant,
}

struct UntilUsable;

impl Expiry<FlowQuery, Entry> for UntilUsable {
    fn expire_after_create(
        &self,
        _: &FlowQuery,
        entry: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.usable_until.saturating_duration_since(created_at))
    }
}

/// A cached answer: fresh, or only good as a fallback.
pub enum Lookup {
    Fresh(Arc<FlowAnswer>),
    Stale(Arc<FlowAnswer>),
    Absent,
}

#[derive(Clone)]
pub struct FlowCache {
    config: CacheConfig,
    entries: Cache<FlowQuery, Entry>,
}

impl std::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowCache")
            .field("config", &self.config)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl FlowCache {
    /// `None` when the configuration keeps nothing (no TTL and no stale window).
    pub fn new(config: CacheConfig) -> Option<Self> {
        if config.ttl.is_zero() && config.stale_if_error.is_zero() {
            return None;
        }
        let entries = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(UntilUsable)
            .build();
        Some(Self { config, entries })
    }

    pub async fn lookup(&self, key: &FlowQuery) -> Lookup {
        match self.entries.get(key).await {
            Some(entry) if Instant::now() < entry.fresh_until => Lookup::Fresh(entry.answer),
            Some(entry) if Instant::now() < entry.usable_until => Lookup::Stale(entry.answer),
            _ => Lookup::Absent,
        }
    }

    pub async fn store(&self, key: FlowQuery, answer: Arc<FlowAnswer>) {
        let now = Instant::now();
        let preview_ends = match answer.flow.preview_url_expires {
            None => None,
            Some(at) => match at.duration_since(SystemTime::now()) {
                Ok(left) => Some(now + left),
                // The preview URL is already dead: such an answer is passed on, never kept.
                Err(_) => return,
            },
        };
        let cap = |t: Instant| preview_ends.map_or(t, |p| t.min(p));
        let fresh_until = cap(now + self.config.ttl);
        let usable_until = cap(now + self.config.ttl + self.config.stale_if_error);
        if usable_until <= now {
            return;
        }
        self.entries
            .insert(
                key,
                Entry {
                    answer,
                    fresh_until,
                    usable_until,
                },
            )
            .await;
    }
}

type Load = Shared<BoxFuture<'static, Result<Arc<FlowAnswer>, Error>>>;

/// The latest deadline among the callers waiting for one load: retries stop in time for it.
#[derive(Debug)]
pub struct Waiters {
    latest: Mutex<tokio::time::Instant>,
}

impl Waiters {
    fn new(deadline: tokio::time::Instant) -> Self {
        Self {
            latest: Mutex::new(deadline),
        }
    }

    fn extend(&self, deadline: tokio::time::Instant) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        *latest = (*latest).max(deadline);
    }

    pub fn latest(&self) -> tokio::time::Instant {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running load and who waits for it.
type Joinable = (Load, Arc<Waiters>);

/// Joins concurrent callers for the same key onto one load that runs in its own task, so that a
/// caller who gives up (deadline, cancellation) never takes the load away from the others.
/// Shared through the gateway's `Arc`, so the map itself needs no second one.
#[derive(Default)]
pub struct Coalescer {
    in_flight: Mutex<HashMap<FlowQuery, Joinable>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("in_flight", &self.running())
            .finish()
    }
}

impl Coalescer {
    /// The load for `key`: a running one (`false`) or a new one started from `start` (`true`).
    /// Either way the caller's `deadline` joins the load's waiters.
    pub fn join<F>(&self, key: &FlowQuery, deadline: tokio::time::Instant, start: F) -> (Load, bool)
    where
        F: FnOnce(Arc<Waiters>) -> BoxFuture<'static, Result<Arc<FlowAnswer>, Error>>,
    {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((load, waiters)) = in_flight.get(key) {
            waiters.extend(deadline);
            return (load.clone(), false);
        }
        let waiters = Arc::new(Waiters::new(deadline));
        let task = tokio::spawn(start(Arc::clone(&waiters)));
        let load = async move {
            task.await
                .unwrap_or(Err(Error::Internal("the upstream load task failed")))
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), (load.clone(), waiters));
        (load, true)
    }

    /// Called by a load when it has finished (and stored its answer), so later callers start anew.
    pub fn finish(&self, key: &FlowQuery) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Loads running now (for `Debug`).
    fn running(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
