//! The read-through cache in front of CAMS, and the coalescer that makes concurrent misses for
//! one key share a single fetch.
//!
//! Entries are keyed by [`Read`] (tenant and flow id), so tenants never share one. An entry
//! is fresh for the configured TTL and may then stand in as a stale fallback for
//! `stale_if_error` more; neither ever outlives the flow's `PreviewUrlExpires`, so no cached
//! answer hands out a dead preview URL.
//!
//! `PreviewUrlExpires` is a time on CAMS's clock, which the host's may be seconds or minutes off.
//! So the cache's clock is CAMS's as this replica knows it (`cams::CamsClock`: its own clock plus
//! the offset measured from CAMS's `Date` headers), entries end a margin before the preview URL
//! does (the reading's own error, `entry::servable_until`), and their times (not `Instant`s) are
//! CAMS's: they mean the same to every process that shares a tier, each reading them against its
//! own measurement. [`CacheTier`] is that seam (`tier.rs`),
//! [`LocalTier`] (moka) is the in-process tier every gateway has, and [`RedisTier`] the one the
//! replicas share. Who fetches a missing entry is a seam of its own, the fetch lock ([`lock`]).
//!
//! Refresh-ahead: a hit within `refresh_window` of the end of the entry's TTL asks, once, for
//! the entry to be fetched again in the background while callers keep getting it as a hit; the
//! reads in that window are counted, so that the most-read entries are refreshed first when the
//! account's quota cannot refresh them all. TTLs are jittered so that entries fetched together
//! do not expire, or come due, together.
//!
//! Purges ([`purge`]) drop named flows, or a whole tenant, from both tiers and every replica.

mod coalesce;
mod entry;
mod keys;
mod local;
pub mod lock;
pub mod purge;
mod redis;
#[cfg(test)]
mod tests;
mod tier;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

pub(crate) use coalesce::{Coalescer, Joined, LoadResult, Loaded, Waiters};
pub use entry::{CachedFlow, Demand, RefreshDue};
pub(crate) use keys::SharedKeys;
pub(crate) use local::LocalTier;
pub(crate) use redis::RedisTier;
pub use tier::{CacheTier, Tier};

use arc_swap::ArcSwap;

use crate::{clock::SharedClock, domain::Answer, domain::Read, store::StoreError};
use entry::{jittered, servable_until};
use lock::WritePermit;
use purge::{Epoch, Epochs, Purged, Scope};

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

/// The cache's times (TTL, jitter, stale window, refresh window), shared by the cache and its
/// shared tier and replaced whole by a configuration reload: entries made from then on follow
/// the new times, entries already kept keep theirs. `max_entries` is read once, at start.
pub type LivePolicy = Arc<ArcSwap<CacheConfig>>;

/// A cached answer: fresh (perhaps due for a refresh), or only good as a fallback.
pub enum Lookup {
    Fresh {
        answer: Arc<Answer>,
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
    config: LivePolicy,
    local: LocalTier,
    shared: Option<Arc<dyn CacheTier>>,
    clock: SharedClock,
    /// Refreshes asked for so far, for the demand on the account quota.
    refreshes: Arc<AtomicU64>,
    /// Moved on by each purge: an answer fetched before is not kept after.
    epochs: Epochs,
}

impl std::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowCache")
            .field("config", &self.config.load())
            .field("local", &self.local)
            .field("shared", &self.shared)
            .finish()
    }
}

impl FlowCache {
    /// `None` when the configuration keeps nothing (no TTL and no stale window). `clock` is
    /// CAMS's as the gateway knows it ([`crate::cams::CamsClient::cams_clock`]); the tiers'
    /// clock must be the same.
    pub fn new(
        config: CacheConfig,
        shared: Option<Arc<dyn CacheTier>>,
        clock: SharedClock,
    ) -> Option<Self> {
        Self::with_policy(Arc::new(ArcSwap::from_pointee(config)), shared, clock)
    }

    /// [`Self::new`] with times that a reload may replace (shared with the shared tier).
    pub fn with_policy(
        policy: LivePolicy,
        shared: Option<Arc<dyn CacheTier>>,
        clock: SharedClock,
    ) -> Option<Self> {
        let config = **policy.load();
        if config.ttl.is_zero() && config.stale_if_error.is_zero() {
            return None;
        }
        Some(Self {
            config: policy,
            local: LocalTier::new(config.max_entries, Arc::clone(&clock)),
            shared,
            clock,
            refreshes: Arc::default(),
            epochs: Epochs::default(),
        })
    }

    /// The purge epoch now: a fetch notes it before asking CAMS, and keeps its answer with
    /// [`Self::keep`] only if no purge began since.
    pub fn epoch(&self) -> Epoch {
        self.epochs.now()
    }

    /// [`Self::epoch`], with the shared tier's purge mark: what a fetch notes before it asks
    /// CAMS, so that its answer is kept in neither tier if a purge began since, on any replica.
    /// Without the mark (Redis did not answer) the answer is kept in this replica's tier only.
    pub async fn began(&self) -> Epoch {
        let mut epoch = self.epochs.now();
        if let Some(shared) = &self.shared {
            epoch.shared = shared.mark().await;
        }
        epoch
    }

    /// Drops what `scope` covers from the shared tier (which tells the other replicas) and from
    /// this replica's. The local tier is purged even when the shared one cannot be, and after
    /// it: a local miss meanwhile would otherwise copy the shared entry back.
    pub async fn purge(&self, scope: &Scope) -> (Purged, Result<(), StoreError>) {
        self.epochs.advance();
        let shared = match &self.shared {
            Some(shared) => shared.purge(scope).await,
            None => Ok(0),
        };
        let local = self.local.remove(scope).await;
        let purged = Purged {
            local,
            shared: *shared.as_ref().unwrap_or(&0),
        };
        (purged, shared.map(|_| ()))
    }

    /// Drops what `scope` covers from this replica's tier only: another replica purged it.
    pub async fn purge_local(&self, scope: &Scope) -> u64 {
        self.epochs.advance();
        self.local.remove(scope).await
    }

    /// Drops this replica's whole tier: purges were made that it did not hear of.
    pub(crate) async fn purge_all_local(&self) -> u64 {
        self.epochs.advance();
        self.local.clear().await
    }

    /// Entries in this replica's own tier.
    pub(crate) fn local_entries(&self) -> u64 {
        self.local.len()
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
    pub async fn lookup(&self, key: &Read) -> Lookup {
        self.look(key, true).await
    }

    /// [`Self::lookup`] of a read, or, for a read another read's answer carries (a preview URL
    /// is part of a flow), of that one when it is fresh and the read's own entry is not, or
    /// carries a preview URL that dies sooner. An answer served so counts no demand of the
    /// other entry (its own reads decide its refresh).
    pub async fn lookup_for(&self, key: &Read) -> Lookup {
        let Some(other) = key.answered_by_flow() else {
            return self.lookup(key).await;
        };
        let own = self.lookup(key).await;
        let own_expires = match &own {
            Lookup::Fresh { answer, .. } => answer.preview_url_expires(),
            Lookup::Stale(_) | Lookup::Absent => None,
        };
        match self.look(&other, false).await {
            Lookup::Fresh { answer, tier, .. }
                if !matches!(own, Lookup::Fresh { .. })
                    || answer.preview_url_expires() > own_expires =>
            {
                Lookup::Fresh {
                    answer,
                    tier,
                    refresh: None,
                }
            }
            _ => own,
        }
    }

    async fn look(&self, key: &Read, demand: bool) -> Lookup {
        let local = self.local.lookup(key).await;
        let now = self.clock.now();
        let due = |entry: &CachedFlow| {
            if demand {
                self.refresh_due(entry, now)
            } else {
                None
            }
        };
        if let Some(entry) = &local
            && now < entry.fresh_until
        {
            return Lookup::Fresh {
                answer: Arc::clone(&entry.answer),
                tier: Tier::Local,
                refresh: due(entry),
            };
        }
        let epoch = self.epochs.now();
        if let Some(shared) = &self.shared
            && let Some(entry) = shared.get(key).await
            && now < entry.fresh_until
        {
            let answer = Arc::clone(&entry.answer);
            let refresh = due(&entry);
            // Read before a purge that has since dropped it here: served, not copied back.
            if self.epochs.unchanged_since(epoch) {
                self.local.insert(key.clone(), entry).await;
            }
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

    /// Keeps a fresh answer in every tier, unless its preview URL is already dead (or within the
    /// margin of dying, by CAMS's clock): such an answer is passed on, never kept. `permit` is the fetch lock the answer was fetched
    /// under: it is released once the answer is where the waiters will look.
    pub async fn store(&self, key: Read, answer: Arc<Answer>, permit: WritePermit) {
        let since = self.began().await;
        self.keep(key, answer, permit, since).await;
    }

    /// [`Self::store`] of an answer whose fetch began at `since`: if a purge began after, the
    /// answer may be what the purge meant to drop, and is passed on, never kept.
    pub async fn keep(&self, key: Read, answer: Arc<Answer>, permit: WritePermit, since: Epoch) {
        let Some(entry) = self
            .entry(Arc::clone(&answer), since.shared)
            .filter(|_| self.epochs.unchanged_since(since))
        else {
            permit.release().await;
            return;
        };
        self.freshen_flow(&key, &answer, since).await;
        self.local.insert(key.clone(), entry.clone()).await;
        match (&self.shared, since.shared) {
            // The answer need not wait for Redis: the fill, then the release that tells the
            // replicas waiting for it, run on their own. The local epoch alone cannot stop the
            // fill: a purge may come between its check and the write, or from another replica
            // whose notice is still on its way; the shared tier refuses an answer fetched
            // before a purge of its tenant, by the mark.
            (Some(shared), Some(began)) => {
                let shared = Arc::clone(shared);
                let epochs = self.epochs.clone();
                tokio::spawn(async move {
                    if epochs.unchanged_since(since) {
                        shared.put(key, entry, began).await;
                    }
                    permit.release().await;
                });
            }
            _ => permit.release().await,
        }
    }

    /// A preview URL learnt on its own serves GetFlow too: the cached answer of the same flow
    /// and space, if its URL dies sooner, gets this one (its other fields and times stay).
    /// The entry is put back to the shared tier under the mark of its own fetch, older than
    /// this one's: a purge since (whose notice may not have reached this replica yet) refuses it.
    async fn freshen_flow(&self, key: &Read, answer: &Answer, since: Epoch) {
        let (Some(flow_key), Some(preview)) = (key.answered_by_flow(), answer.preview_url()) else {
            return;
        };
        let Some(entry) = self.local.lookup(&flow_key).await else {
            return;
        };
        let Some(fresher) = entry.answer.with_fresher_preview(&preview) else {
            return;
        };
        let entry = CachedFlow {
            answer: Arc::new(fresher),
            ..entry
        };
        if !self.epochs.unchanged_since(since) {
            return;
        }
        self.local.insert(flow_key.clone(), entry.clone()).await;
        if let (Some(shared), Some(began)) = (&self.shared, entry.began) {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { shared.put(flow_key, entry, began).await });
        }
    }

    /// An entry another replica stored in the shared tier since this one looked, and that is
    /// not yet due for a refresh: with it, the fetch (or refresh) this replica just got the lock
    /// for would be a second CAMS call for the same answer.
    pub async fn settled_elsewhere(&self, key: &Read) -> Option<CachedFlow> {
        let entry = self.shared.as_ref()?.get(key).await?;
        (self.clock.now() < entry.refresh_at).then_some(entry)
    }

    /// A fresh entry in either tier, and which: after a wait on another's fetch, its answer.
    /// (An entry that was already there was not fresh, or the lookup would have served it.)
    pub async fn fresh_now(&self, key: &Read) -> Option<(CachedFlow, Tier)> {
        let now = self.clock.now();
        if let Some(entry) = self.local.lookup(key).await
            && now < entry.fresh_until
        {
            return Some((entry, Tier::Local));
        }
        let entry = self.shared.as_ref()?.get(key).await?;
        (now < entry.fresh_until).then_some((entry, Tier::Shared))
    }

    /// The age of a stale entry that may still stand in for a failed fetch now, `None` once its
    /// `usable_until` has passed: a fetch can outlast the entry it would have replaced (up to
    /// the caller's deadline), and the preview URL of an answer past that time may be dead.
    pub fn stale_age(&self, entry: &CachedFlow) -> Option<Duration> {
        let now = self.clock.now();
        (now < entry.usable_until).then(|| now.duration_since(entry.fetched_at).unwrap_or_default())
    }

    /// Keeps locally an entry another replica fetched, read from the shared tier after `since`
    /// ([`Self::epoch`]): unless a purge began here since, which the read may have raced.
    pub async fn adopt(&self, key: Read, entry: CachedFlow, since: Epoch) {
        if self.epochs.unchanged_since(since) {
            self.local.insert(key, entry).await;
        }
    }

    /// The times of an answer fetched now, on CAMS's clock.
    fn entry(&self, answer: Arc<Answer>, began: Option<u64>) -> Option<CachedFlow> {
        let now = self.clock.now();
        let cap = |t: SystemTime| match answer.preview_url_expires() {
            Some(preview_ends) => t.min(servable_until(preview_ends)),
            None => t,
        };
        let config = self.config.load();
        let ttl = jittered(config.ttl, config.ttl_jitter_percent);
        let fresh_until = cap(now + ttl);
        let usable_until = cap(now + ttl + config.stale_if_error);
        if usable_until <= now {
            return None;
        }
        let refresh_at = if config.refresh_window.is_zero() {
            fresh_until
        } else {
            fresh_until
                .checked_sub(config.refresh_window)
                .map_or(now, |at| at.max(now))
        };
        Some(CachedFlow {
            answer,
            fetched_at: now,
            fresh_until,
            usable_until,
            refresh_at,
            demand: Arc::default(),
            began,
        })
    }
}
