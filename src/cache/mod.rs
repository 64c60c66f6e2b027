//! The read-through cache in front of CAMS, and the coalescer that makes concurrent misses for
//! one key share a single fetch.
//!
//! Entries are keyed by [`FlowQuery`] (tenant and flow id), so tenants never share one. An entry
//! is fresh for the configured TTL and may then stand in as a stale fallback for
//! `stale_if_error` more; neither ever outlives the flow's `PreviewUrlExpires`, so no cached
//! answer hands out a dead preview URL. Entries carry wall-clock times (not `Instant`s) so that a
//! tier shared by several processes can hold them too: [`CacheTier`] is that seam, and
//! [`LocalTier`] (moka) is the in-process tier every gateway has.
//!
//! Refresh-ahead: a hit within `refresh_window` of the end of the entry's TTL asks, once, for
//! the entry to be fetched again in the background while callers keep getting it as a hit; the
//! reads in that window are counted, so that the most-read entries are refreshed first when the
//! account's quota cannot refresh them all. TTLs are jittered so that entries fetched together
//! do not expire, or come due, together.

mod coalesce;
mod local;
mod redis;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use rand::Rng;

pub(crate) use coalesce::{Coalescer, LoadResult, Loaded, Waiters};
pub(crate) use local::LocalTier;
pub(crate) use redis::RedisTier;

use crate::{cams::FlowAnswer, clock::SharedClock, domain::FlowQuery};

/// The validated `[cache]` section. Its `Default` is the section's defaults
/// (`config::sections::cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is served without asking CAMS; zero disables caching.
    pub ttl: Duration,
    pub max_entries: u64,
    /// How long past its TTL an answer may still be served while CAMS fails or throttles.
    pub stale_if_error: Duration,
    /// A hit this close to the end of the TTL starts a background refresh; zero turns
    /// refresh-ahead off.
    pub refresh_window: Duration,
    /// Each entry's TTL is drawn from ±this percentage of `ttl`.
    pub ttl_jitter_percent: u8,
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
    refresh_started: AtomicBool,
}

/// A background refresh the cache asks for: how long the entry stays a hit (after that the
/// refresh is pointless), and the entry's demand.
#[derive(Debug, Clone)]
pub struct RefreshDue {
    pub hit_for: Duration,
    pub reads: Arc<AtomicU64>,
}

/// Whether this process may fetch a flow that other processes may want at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchRole {
    /// This process fetches: it fills the entry with this token, or releases it if the fetch
    /// fails.
    Fetcher(String),
    /// Another process is fetching it: wait for its fill.
    Waiter,
    /// Nobody to coordinate with (an in-process tier, or a shared one that does not answer):
    /// fetch.
    Alone,
    /// The shared tier did not answer: fetch, uncoordinated.
    Unknown,
}

/// One tier of the cache. Each tier keeps an entry no longer than its `usable_until`. A tier
/// shared by several processes also coordinates their fetches; the defaults are those of a tier
/// no other process sees.
#[async_trait::async_trait]
pub trait CacheTier: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &FlowQuery) -> Option<CachedFlow>;
    async fn put(&self, key: FlowQuery, entry: CachedFlow);

    /// Asks to be the one process that fetches `key` for the next `hold` at most.
    async fn claim(&self, _key: &FlowQuery, _hold: Duration) -> FetchRole {
        FetchRole::Alone
    }

    /// Stores the fetched entry, releasing the claim made with `token`, if any, and tells the
    /// processes waiting for it.
    async fn fill(&self, key: &FlowQuery, entry: CachedFlow, _token: Option<String>) {
        self.put(key.clone(), entry).await;
    }

    /// Gives up a claim whose fetch failed, so that another process may try.
    async fn release(&self, _key: &FlowQuery, _token: String) {}

    /// Waits until the process holding the claim has filled `key`; `None` if it gave up, or at
    /// `until`.
    async fn wait_for(&self, _key: &FlowQuery, _until: tokio::time::Instant) -> Option<CachedFlow> {
        None
    }
}

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This process's own cache.
    Local,
    /// The tier shared with other replicas.
    Shared,
}

/// A cached answer: fresh (perhaps due for a refresh), or only good as a fallback.
pub enum Lookup {
    Fresh {
        answer: Arc<FlowAnswer>,
        tier: Tier,
        refresh: Option<RefreshDue>,
    },
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
    /// Refreshes asked for so far, for the demand on the account quota.
    refreshes: Arc<AtomicU64>,
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
            refreshes: Arc::default(),
        })
    }

    /// Refreshes asked for since the start.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// A hit's refresh, if it falls in the refresh window and is the first to ask.
    fn refresh_due(&self, entry: &CachedFlow, now: SystemTime) -> Option<RefreshDue> {
        if now < entry.refresh_at {
            return None;
        }
        entry.demand.reads.fetch_add(1, Ordering::Relaxed);
        // Load before swap: the reads after the first need no write to the shared line.
        if entry.demand.refresh_started.load(Ordering::Relaxed)
            || entry.demand.refresh_started.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        Some(RefreshDue {
            hit_for: entry.fresh_until.duration_since(now).unwrap_or_default(),
            reads: Arc::clone(&entry.demand.reads),
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
                refresh: self.refresh_due(entry, now),
            };
        }
        if let Some(shared) = &self.shared
            && let Some(entry) = shared.get(key).await
            && now < entry.fresh_until
        {
            let answer = Arc::clone(&entry.answer);
            let refresh = self.refresh_due(&entry, now);
            self.local.insert(key.clone(), entry).await;
            return Lookup::Fresh {
                answer,
                tier: Tier::Shared,
                refresh,
            };
        }
        match local {
            Some(entry) if now < entry.usable_until => Lookup::Stale(entry),
            _ => Lookup::Absent,
        }
    }

    /// Keeps a fresh answer in every tier, unless its preview URL is already dead: such an
    /// answer is passed on, never kept. `claim` is the token of the shared tier's claim the
    /// answer was fetched under, which storing it releases.
    pub async fn store(&self, key: FlowQuery, answer: Arc<FlowAnswer>, claim: Option<String>) {
        let Some(entry) = self.entry(answer) else {
            if let (Some(shared), Some(token)) = (&self.shared, claim) {
                shared.release(&key, token).await;
            }
            return;
        };
        self.local.insert(key.clone(), entry.clone()).await;
        // The answer need not wait for Redis: the fill (which also lifts the claim and tells the
        // replicas waiting for it) runs on its own.
        if let Some(shared) = &self.shared {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { shared.fill(&key, entry, claim).await });
        }
    }

    /// The tier shared with other replicas, when there is one.
    pub fn shared(&self) -> Option<&Arc<dyn CacheTier>> {
        self.shared.as_ref()
    }

    /// An entry another replica stored in the shared tier since this one looked, and that is
    /// not yet due for a refresh: with it, the fetch (or refresh) this replica just claimed
    /// would be a second CAMS call for the same answer.
    pub async fn settled_elsewhere(&self, key: &FlowQuery) -> Option<CachedFlow> {
        let entry = self.shared.as_ref()?.get(key).await?;
        (self.clock.now() < entry.refresh_at).then_some(entry)
    }

    /// The age of a stale entry that may still stand in for a failed fetch now, `None` once its
    /// `usable_until` has passed: a fetch can outlast the entry it would have replaced (up to
    /// the caller's deadline), and the preview URL of an answer past that time may be dead.
    pub fn stale_age(&self, entry: &CachedFlow) -> Option<Duration> {
        let now = self.clock.now();
        (now < entry.usable_until).then(|| now.duration_since(entry.fetched_at).unwrap_or_default())
    }

    /// Keeps locally an entry another replica fetched.
    pub async fn adopt(&self, key: FlowQuery, entry: CachedFlow) {
        self.local.insert(key, entry).await;
    }

    /// The times of an answer fetched now.
    fn entry(&self, answer: Arc<FlowAnswer>) -> Option<CachedFlow> {
        let now = self.clock.now();
        let cap = |t: SystemTime| match answer.flow.preview_url_expires {
            Some(preview_ends) => t.min(preview_ends),
            None => t,
        };
        let ttl = jittered(self.config.ttl, self.config.ttl_jitter_percent);
        let fresh_until = cap(now + ttl);
        let usable_until = cap(now + ttl + self.config.stale_if_error);
        if usable_until <= now {
            return None;
        }
        let refresh_at = if self.config.refresh_window.is_zero() {
            fresh_until
        } else {
            fresh_until
                .checked_sub(self.config.refresh_window)
                .map_or(now, |at| at.max(now))
        };
        Some(CachedFlow {
            answer,
            fetched_at: now,
            fresh_until,
            usable_until,
            refresh_at,
            demand: Arc::default(),
        })
    }
}

/// `ttl`, moved uniformly by up to `percent` either way.
fn jittered(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 || ttl.is_zero() {
        return ttl;
    }
    let spread = f64::from(percent.min(100)) / 100.0;
    ttl.mul_f64(1.0 + rand::rng().random_range(-spread..=spread))
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
            refresh_window: Duration::ZERO,
            ttl_jitter_percent: 0,
        }
    }

    fn due(lookup: Lookup) -> Option<RefreshDue> {
        match lookup {
            Lookup::Fresh { refresh, .. } => refresh,
            _ => panic!("not a hit"),
        }
    }

    #[tokio::test]
    async fn a_read_in_the_refresh_window_asks_once_and_reads_are_counted() {
        let clock = Arc::new(Manual(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )));
        let cache = FlowCache::new(
            CacheConfig {
                refresh_window: Duration::from_secs(6),
                ..config(30, 0)
            },
            None,
            clock.clone(),
        )
        .expect("on");
        cache.store(key("a"), answer(None), None).await;
        cache.store(key("b"), answer(None), None).await;
        // Before the window: hits, no refresh, nothing counted.
        clock.advance(Duration::from_secs(23));
        assert!(due(cache.lookup(&key("a")).await).is_none());
        // In the window: the first read asks, the next ones only count.
        clock.advance(Duration::from_secs(2));
        let first = due(cache.lookup(&key("a")).await).expect("asks for a refresh");
        assert_eq!(first.hit_for, Duration::from_secs(5));
        for _ in 0..4 {
            assert!(due(cache.lookup(&key("a")).await).is_none());
        }
        assert_eq!(first.reads.load(Ordering::Relaxed), 5);
        assert_eq!(cache.refreshes(), 1);
        // An entry nobody read in its window never asked; once past its TTL it is gone.
        clock.advance(Duration::from_secs(6));
        assert!(matches!(cache.lookup(&key("b")).await, Lookup::Absent));
        assert_eq!(cache.refreshes(), 1);
    }

    #[tokio::test]
    async fn the_refresh_window_and_jitter_never_pass_the_preview_url() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Arc::new(Manual(Mutex::new(start)));
        let cache = FlowCache::new(
            CacheConfig {
                refresh_window: Duration::from_secs(6),
                ttl_jitter_percent: 10,
                ..config(30, 60)
            },
            None,
            clock.clone(),
        )
        .expect("on");
        let expires = start + Duration::from_secs(10);
        for _ in 0..50 {
            let entry = cache.entry(answer(Some(expires))).expect("kept");
            assert!(entry.refresh_at <= entry.fresh_until);
            assert!(entry.fresh_until <= expires && entry.usable_until <= expires);
            let plain = cache.entry(answer(None)).expect("kept");
            let ttl = plain.fresh_until.duration_since(start).expect("after");
            assert!(
                ttl >= Duration::from_secs(27) && ttl <= Duration::from_secs(33),
                "{ttl:?} within 10 % of 30 s"
            );
        }
    }

    #[tokio::test]
    async fn fresh_then_stale_then_gone_on_the_wall_clock() {
        let clock = Arc::new(Manual(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )));
        let cache = FlowCache::new(config(30, 60), None, clock.clone()).expect("on");
        cache.store(key("a"), answer(None), None).await;
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
            .store(key("a"), answer(Some(start + Duration::from_secs(5))), None)
            .await;
        assert!(matches!(
            cache.lookup(&key("a")).await,
            Lookup::Fresh { .. }
        ));
        clock.advance(Duration::from_secs(5));
        assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));
        // Already dead: passed on, never kept.
        cache.store(key("b"), answer(Some(start)), None).await;
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
        let reader = FlowCache::new(config(30, 0), Some(Arc::clone(&shared)), clock).expect("on");
        writer.store(key("a"), answer(None), None).await;
        // The fill runs on its own task: give it its turn.
        for _ in 0..100 {
            if shared.get(&key("a")).await.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
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
