//! The read-through cache in front of CAMS, and the coalescer that makes concurrent misses for
//! one key share a single fetch.
//!
//! Entries are keyed by [`FlowQuery`] (tenant and flow id), so tenants never share one. An entry
//! is fresh for the configured TTL and may then stand in as a stale fallback for
//! `stale_if_error` more; neither ever outlives the flow's `PreviewUrlExpires`, so no cached
//! answer hands out a dead preview URL. Entries carry wall-clock times (not `Instant`s) so that a
//! tier shared by several processes can hold them too: [`CacheTier`] is that seam, and
//! [`LocalTier`] (moka) is the in-process tier every gateway has.

mod coalesce;
mod local;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

pub(crate) use coalesce::{Coalescer, LoadResult, Waiters};
pub(crate) use local::LocalTier;

use crate::{cams::FlowAnswer, clock::SharedClock, domain::FlowQuery};

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

/// A cached answer and the wall-clock times that bound its use.
#[derive(Debug, Clone)]
pub struct CachedFlow {
    pub answer: Arc<FlowAnswer>,
    pub fetched_at: SystemTime,
    /// Served as a hit until then.
    pub fresh_until: SystemTime,
    /// Served as a stale fallback until then; never past the preview URL's expiry.
    pub usable_until: SystemTime,
}

/// One tier of the cache. Each tier keeps an entry no longer than its `usable_until`.
#[async_trait::async_trait]
pub trait CacheTier: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &FlowQuery) -> Option<CachedFlow>;
    async fn put(&self, key: FlowQuery, entry: CachedFlow);
}

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This process's own cache.
    Local,
    /// The tier shared with other replicas.
    Shared,
}

/// A cached answer: fresh, or only good as a fallback.
pub enum Lookup {
    Fresh { answer: Arc<FlowAnswer>, tier: Tier },
    Stale(CachedFlow),
    Absent,
}

/// The cache policy (how long an answer is good for) over its tiers: the in-process tier every
/// gateway has, and optionally a tier shared with other replicas behind it.
#[derive(Clone)]
pub struct FlowCache {
    config: CacheConfig,
    local: LocalTier,
    shared: Option<Arc<dyn CacheTier>>,
    clock: SharedClock,
}

impl std::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowCache")
            .field("config", &self.config)
            .field("local", &self.local)
            .field("shared", &self.shared)
            .finish()
    }
}

impl FlowCache {
    /// `None` when the configuration keeps nothing (no TTL and no stale window).
    pub fn new(
        config: CacheConfig,
        shared: Option<Arc<dyn CacheTier>>,
        clock: SharedClock,
    ) -> Option<Self> {
        if config.ttl.is_zero() && config.stale_if_error.is_zero() {
            return None;
        }
        Some(Self {
            config,
            local: LocalTier::new(config.max_entries, Arc::clone(&clock)),
            shared,
            clock,
        })
    }

    /// The local tier first (a hit there touches nothing else), then the shared tier, whose
    /// fresh answer is kept locally for the lifetime it has left.
    pub async fn lookup(&self, key: &FlowQuery) -> Lookup {
        let local = self.local.lookup(key).await;
        let now = self.clock.now();
        if let Some(entry) = &local
            && now < entry.fresh_until
        {
            return Lookup::Fresh {
                answer: Arc::clone(&entry.answer),
                tier: Tier::Local,
            };
        }
        if let Some(shared) = &self.shared
            && let Some(entry) = shared.get(key).await
            && now < entry.fresh_until
        {
            let answer = Arc::clone(&entry.answer);
            self.local.insert(key.clone(), entry).await;
            return Lookup::Fresh {
                answer,
                tier: Tier::Shared,
            };
        }
        match local {
            Some(entry) if now < entry.usable_until => Lookup::Stale(entry),
            _ => Lookup::Absent,
        }
    }

    /// Keeps a fresh answer in every tier, unless its preview URL is already dead: such an
    /// answer is passed on, never kept.
    pub async fn store(&self, key: FlowQuery, answer: Arc<FlowAnswer>) {
        let Some(entry) = self.entry(answer) else {
            return;
        };
        if let Some(shared) = &self.shared {
            shared.put(key.clone(), entry.clone()).await;
        }
        self.local.insert(key, entry).await;
    }

    /// The times of an answer fetched now.
    fn entry(&self, answer: Arc<FlowAnswer>) -> Option<CachedFlow> {
        let now = self.clock.now();
        let cap = |t: SystemTime| match answer.flow.preview_url_expires {
            Some(preview_ends) => t.min(preview_ends),
            None => t,
        };
        let fresh_until = cap(now + self.config.ttl);
        let usable_until = cap(now + self.config.ttl + self.config.stale_if_error);
        (usable_until > now).then_some(CachedFlow {
            answer,
            fetched_at: now,
            fresh_until,
            usable_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Mutex,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::{
        clock::Clock,
        domain::{Flow, FlowId, TenantId},
    };

    /// A wall clock the test moves by hand.
    #[derive(Debug)]
    struct Manual(Mutex<SystemTime>);

    impl Clock for Manual {
        fn now(&self) -> SystemTime {
            *self.0.lock().expect("clock")
        }
    }

    impl Manual {
        fn advance(&self, by: Duration) {
            *self.0.lock().expect("clock") += by;
        }
    }

    fn answer(preview_expires: Option<SystemTime>) -> Arc<FlowAnswer> {
        Arc::new(FlowAnswer {
            flow: Flow {
                flow_id: "f".into(),
                flow_name: "n".into(),
                raw_status: "DRAFT".into(),
                raw_categories: Vec::new(),
                json_version: String::new(),
                data_api_version: String::new(),
                preview_url: String::new(),
                preview_url_expires: preview_expires,
                endpoint_uri: String::new(),
            },
            request_id: "r".into(),
        })
    }

    fn key(tenant: &str) -> FlowQuery {
        FlowQuery {
            tenant: TenantId::parse(tenant).expect("tenant"),
            flow_id: FlowId::parse("f").expect("flow"),
        }
    }

    fn config(ttl_s: u64, stale_s: u64) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(ttl_s),
            max_entries: 100,
            stale_if_error: Duration::from_secs(stale_s),
        }
    }

    #[tokio::test]
    async fn fresh_then_stale_then_gone_on_the_wall_clock() {
        let clock = Arc::new(Manual(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )));
        let cache = FlowCache::new(config(30, 60), None, clock.clone()).expect("on");
        cache.store(key("a"), answer(None)).await;
        assert!(matches!(
            cache.lookup(&key("a")).await,
            Lookup::Fresh {
                tier: Tier::Local,
                ..
            }
        ));
        assert!(
            matches!(cache.lookup(&key("b")).await, Lookup::Absent),
            "tenants never share"
        );
        clock.advance(Duration::from_secs(31));
        assert!(matches!(cache.lookup(&key("a")).await, Lookup::Stale(_)));
        clock.advance(Duration::from_secs(60));
        assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));
    }

    #[tokio::test]
    async fn never_past_the_preview_url() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Arc::new(Manual(Mutex::new(start)));
        let cache = FlowCache::new(config(30, 60), None, clock.clone()).expect("on");
        cache
            .store(key("a"), answer(Some(start + Duration::from_secs(5))))
            .await;
        assert!(matches!(
            cache.lookup(&key("a")).await,
            Lookup::Fresh { .. }
        ));
        clock.advance(Duration::from_secs(5));
        assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));
        // Already dead: passed on, never kept.
        cache.store(key("b"), answer(Some(start))).await;
        assert!(matches!(cache.lookup(&key("b")).await, Lookup::Absent));
    }

    /// The shared tier behind the local one (here an in-process tier as its test double): an
    /// answer stored by one gateway is found by another, and then kept locally.
    #[tokio::test]
    async fn a_second_tier_serves_what_another_process_stored() {
        let clock: SharedClock = Arc::new(Manual(Mutex::new(SystemTime::now())));
        let shared: Arc<dyn CacheTier> = Arc::new(LocalTier::new(100, Arc::clone(&clock)));
        let writer = FlowCache::new(config(30, 0), Some(Arc::clone(&shared)), Arc::clone(&clock))
            .expect("on");
        let reader = FlowCache::new(config(30, 0), Some(shared), clock).expect("on");
        writer.store(key("a"), answer(None)).await;
        assert!(matches!(
            reader.lookup(&key("a")).await,
            Lookup::Fresh {
                tier: Tier::Shared,
                ..
            }
        ));
        assert!(matches!(
            reader.lookup(&key("a")).await,
            Lookup::Fresh {
                tier: Tier::Local,
                ..
            }
        ));
    }
}
