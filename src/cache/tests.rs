//! The cache policy over its tiers: TTL, stale window, refresh-ahead and PreviewUrlExpires, on a
//! wall clock the tests move by hand.
use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use super::*;
use crate::{
    clock::Clock,
    domain::{Data, Flow, FlowId, TenantId},
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

fn answer(preview_expires: Option<SystemTime>) -> Arc<Answer> {
    Arc::new(Answer {
        data: Data::Flow(Flow {
            flow_id: "f".into(),
            flow_name: "n".into(),
            raw_status: "DRAFT".into(),
            raw_categories: Vec::new(),
            json_version: String::new(),
            data_api_version: String::new(),
            preview_url: String::new(),
            preview_url_expires: preview_expires,
            endpoint_uri: String::new(),
        }),
        request_id: "r".into(),
    })
}

fn key(tenant: &str) -> Read {
    Read::flow(
        TenantId::parse(tenant).expect("tenant"),
        FlowId::parse("f").expect("flow"),
    )
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
    cache
        .store(key("a"), answer(None), WritePermit::alone())
        .await;
    cache
        .store(key("b"), answer(None), WritePermit::alone())
        .await;
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
        let entry = cache.entry(answer(Some(expires)), None).expect("kept");
        assert!(entry.refresh_at <= entry.fresh_until);
        assert!(entry.fresh_until <= expires && entry.usable_until <= expires);
        let plain = cache.entry(answer(None), None).expect("kept");
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
    cache
        .store(key("a"), answer(None), WritePermit::alone())
        .await;
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
        .store(
            key("a"),
            answer(Some(start + Duration::from_secs(5))),
            WritePermit::alone(),
        )
        .await;
    assert!(matches!(
        cache.lookup(&key("a")).await,
        Lookup::Fresh { .. }
    ));
    clock.advance(Duration::from_secs(5));
    assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));
    // Already dead: passed on, never kept.
    cache
        .store(key("b"), answer(Some(start)), WritePermit::alone())
        .await;
    assert!(matches!(cache.lookup(&key("b")).await, Lookup::Absent));
}

/// The cache's clock is CAMS's as the gateway reads it, which may lag CAMS's by up to the
/// margin: an entry ends that much before its preview URL, and an answer whose preview URL dies
/// within the margin is not kept.
#[tokio::test]
async fn the_margin_before_the_preview_url() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let clock = Arc::new(Manual(Mutex::new(start)));
    let cache = FlowCache::new(config(30, 60), None, clock.clone()).expect("on");
    let margin = crate::cams::CLOCK_MARGIN;
    let preview_ends = start + Duration::from_secs(5);
    cache
        .store(key("a"), answer(Some(preview_ends)), WritePermit::alone())
        .await;
    clock.advance(Duration::from_secs(5) - margin - Duration::from_millis(1));
    assert!(matches!(
        cache.lookup(&key("a")).await,
        Lookup::Fresh { .. }
    ));
    clock.advance(Duration::from_millis(1));
    assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));

    let now = clock.now();
    cache
        .store(
            key("b"),
            answer(Some(now + margin - Duration::from_millis(1))),
            WritePermit::alone(),
        )
        .await;
    assert!(matches!(cache.lookup(&key("b")).await, Lookup::Absent));
}

/// The shared tier behind the local one (here an in-process tier as its test double): an
/// answer stored by one gateway is found by another, and then kept locally.
#[tokio::test]
async fn a_second_tier_serves_what_another_process_stored() {
    let clock: SharedClock = Arc::new(Manual(Mutex::new(SystemTime::now())));
    let shared: Arc<dyn CacheTier> = Arc::new(LocalTier::new(100, Arc::clone(&clock)));
    let writer =
        FlowCache::new(config(30, 0), Some(Arc::clone(&shared)), Arc::clone(&clock)).expect("on");
    let reader = FlowCache::new(config(30, 0), Some(Arc::clone(&shared)), clock).expect("on");
    writer
        .store(key("a"), answer(None), WritePermit::alone())
        .await;
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

/// A fetch under way when a purge comes may bring back what the purge meant to drop: its answer
/// is passed on but not kept. One that begins after the purge is kept.
#[tokio::test]
async fn an_answer_fetched_across_a_purge_is_not_kept() {
    let cache = FlowCache::new(config(30, 0), None, crate::clock::system()).expect("on");
    cache
        .store(key("a"), answer(None), WritePermit::alone())
        .await;
    let before = cache.epoch();
    let (purged, shared) = cache
        .purge(&purge::Scope::tenant(TenantId::parse("a").expect("tenant")))
        .await;
    assert_eq!(purged.local, 1);
    assert!(shared.is_ok());
    assert!(matches!(cache.lookup(&key("a")).await, Lookup::Absent));

    cache
        .keep(key("a"), answer(None), WritePermit::alone(), before)
        .await;
    assert!(
        matches!(cache.lookup(&key("a")).await, Lookup::Absent),
        "fetched before the purge: not kept"
    );
    cache
        .keep(key("a"), answer(None), WritePermit::alone(), cache.epoch())
        .await;
    assert!(matches!(
        cache.lookup(&key("a")).await,
        Lookup::Fresh { .. }
    ));
}

/// An entry read from the shared tier while a purge dropped this replica's copies (a wait on
/// another replica's fetch, then the read of its answer) is served, not kept here.
#[tokio::test]
async fn an_entry_adopted_across_a_purge_is_not_kept() {
    let cache = FlowCache::new(config(30, 0), None, crate::clock::system()).expect("on");
    let tenant = purge::Scope::tenant(TenantId::parse("a").expect("tenant"));
    let entry = cache.entry(answer(None), None).expect("an entry");

    let before = cache.epoch();
    cache.purge_local(&tenant).await;
    cache.adopt(key("a"), entry.clone(), before).await;
    assert!(
        matches!(cache.lookup(&key("a")).await, Lookup::Absent),
        "read before the purge: not kept"
    );

    cache.adopt(key("a"), entry, cache.epoch()).await;
    assert!(matches!(
        cache.lookup(&key("a")).await,
        Lookup::Fresh { .. }
    ));
}

/// A shared tier that records what is put in it, under which mark, and hands out `mark`.
#[derive(Debug, Default)]
struct Recording {
    puts: Mutex<Vec<(Read, u64)>>,
    mark: AtomicU64,
}

#[async_trait::async_trait]
impl CacheTier for Recording {
    async fn get(&self, _: &Read) -> Option<CachedFlow> {
        None
    }

    async fn put(&self, key: Read, _: CachedFlow, began: u64) {
        self.puts.lock().expect("puts").push((key, began));
    }

    async fn mark(&self) -> Option<u64> {
        Some(self.mark.load(Ordering::Relaxed))
    }

    async fn purge(&self, _: &purge::Scope) -> Result<u64, StoreError> {
        Ok(0)
    }
}

impl Recording {
    /// The puts so far, once there are `n` (the fills run on their own).
    async fn puts(&self, n: usize) -> Vec<(Read, u64)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let puts = self.puts.lock().expect("puts").clone();
            if puts.len() >= n {
                return puts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} puts, got {puts:?}"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// A preview URL fetched later gives the cached GetFlow answer its fresher URL; that entry goes
/// back to the shared tier under the mark of its own (older) fetch, so that a purge between the
/// two refuses it there, and not at all if it was read from the shared tier.
#[tokio::test]
async fn a_freshened_flow_is_put_under_its_own_fetchs_mark() {
    let shared = Arc::new(Recording::default());
    let cache = FlowCache::new(
        config(30, 0),
        Some(Arc::clone(&shared) as Arc<dyn CacheTier>),
        crate::clock::system(),
    )
    .expect("on");
    let now = SystemTime::now();
    let preview = |tenant: &str, dies: SystemTime| {
        (
            Read {
                tenant: TenantId::parse(tenant).expect("tenant"),
                what: crate::domain::What::PreviewUrl(FlowId::parse("f").expect("flow")),
            },
            Arc::new(Answer {
                data: Data::PreviewUrl(crate::domain::PreviewUrl {
                    flow_id: "f".into(),
                    preview_url: "https://fresher".into(),
                    preview_url_expires: Some(dies),
                }),
                request_id: "r".into(),
            }),
        )
    };

    shared.mark.store(3, Ordering::Relaxed);
    let flow_began = cache.began().await;
    cache
        .keep(
            key("a"),
            answer(Some(now + Duration::from_secs(600))),
            WritePermit::alone(),
            flow_began,
        )
        .await;
    shared.mark.store(5, Ordering::Relaxed);
    let (read, fresher) = preview("a", now + Duration::from_secs(1200));
    let since = cache.began().await;
    cache
        .keep(read.clone(), fresher, WritePermit::alone(), since)
        .await;
    let mut puts = shared.puts(3).await;
    puts.sort_by_key(|(_, began)| *began);
    assert_eq!(puts, vec![(key("a"), 3), (key("a"), 3), (read, 5)]);

    // Read from the shared tier: freshened here, not put back.
    shared.puts.lock().expect("puts").clear();
    let adopted = cache
        .entry(answer(Some(now + Duration::from_secs(600))), None)
        .expect("an entry");
    cache.adopt(key("b"), adopted, cache.epoch()).await;
    let (read, fresher) = preview("b", now + Duration::from_secs(1200));
    let since = cache.began().await;
    cache
        .keep(read.clone(), fresher, WritePermit::alone(), since)
        .await;
    assert_eq!(shared.puts(1).await, vec![(read, 5)]);
}
