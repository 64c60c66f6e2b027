//! Who fetches a flow: this process, under the fetch lock, keeping the answer it gets; or the
//! process holding the lock, whose answer this one waits for and adopts.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{Loader, fetch::Fetched};
use crate::{
    cache::{
        CachedFlow, FlowCache, Loaded, Tier, Waiters,
        lock::{Locked, Waited, WritePermit},
        purge::Epoch,
    },
    domain::Read,
    error::Error,
};

/// The fetch lock outlives the load that took it by this much at most: a process that dies
/// holding it loses it then.
const LOCK_SLACK: Duration = Duration::from_secs(1);

/// What this process does about a flow that others may be fetching too.
pub(super) enum Turn {
    /// Fetch it, under this permit.
    Fetch(WritePermit),
    /// Another process is fetching it.
    Elsewhere(crate::cache::lock::Waiting),
    /// Another process has just stored it; here it is.
    Settled(Loaded),
}

impl Loader {
    /// Runs `fetch` as the one process that fetches `query` (or the only one there is), keeping
    /// its answer; or waits for the one fetching it and adopts its answer. When that one gives
    /// up, the lock is asked for again, so that one process fetches per attempt; a wait ends
    /// when the waiting callers' time does, and a load whose callers have all gone fetches
    /// nothing.
    pub(super) async fn coordinated(
        &self,
        query: &Read,
        fetch: impl Future<Output = Result<Fetched, Error>>,
        waiters: &Waiters,
        bound: Instant,
    ) -> Result<Loaded, Error> {
        let Some(cache) = &self.cache else {
            return fetch.await.map(|fetched| Loaded {
                answer: Arc::new(fetched.answer),
                shared: false,
            });
        };
        loop {
            let waiting = match self.turn(cache, query).await {
                Turn::Settled(loaded) => return Ok(loaded),
                Turn::Fetch(permit) => {
                    return Self::fetch_and_keep(cache, query, fetch, permit).await;
                }
                Turn::Elsewhere(waiting) => waiting,
            };
            let waited = waiting.until(waiters.latest().min(bound)).await;
            let since = cache.epoch();
            match cache.fresh_now(query).await {
                Some((entry, Tier::Shared)) => {
                    return Ok(Self::adopted(cache, query, entry, since).await);
                }
                Some((entry, Tier::Local)) => {
                    return Ok(Loaded {
                        answer: entry.answer,
                        shared: false,
                    });
                }
                None => {}
            }
            if !waiters.anyone() {
                // Nobody is left to hear an answer: no CAMS call for it.
                return Err(Error::DeadlineExceeded);
            }
            if waited == Waited::TimedOut && Instant::now() >= waiters.latest().min(bound) {
                return Err(Error::DeadlineExceeded);
            }
            // The holder gave up (its fetch failed, or it died and its lock expired), or a
            // caller with a later deadline joined: ask again.
        }
    }

    /// Whether this process fetches `query`, another one is fetching it, or another one has
    /// just stored it.
    pub(super) async fn turn(&self, cache: &FlowCache, query: &Read) -> Turn {
        match self.lock.lock(query, self.lock_hold()).await {
            Locked::Write(permit) => {
                // Another replica may have filled the entry between this one's lookup and its
                // lock (or refreshed it just before this one's refresh came due).
                let since = cache.epoch();
                match cache.settled_elsewhere(query).await {
                    Some(entry) => {
                        permit.release().await;
                        Turn::Settled(Self::adopted(cache, query, entry, since).await)
                    }
                    None => Turn::Fetch(permit),
                }
            }
            Locked::Read(waiting) => Turn::Elsewhere(waiting),
        }
    }

    /// Fetches and keeps a good answer (and the answer of the other read it was made through,
    /// if any), releasing the lock once it is kept; a failed fetch drops the permit, which lets
    /// the others try.
    pub(super) async fn fetch_and_keep(
        cache: &FlowCache,
        query: &Read,
        fetch: impl Future<Output = Result<Fetched, Error>>,
        permit: WritePermit,
    ) -> Result<Loaded, Error> {
        // A purge while CAMS answers may have been meant for this very answer: see cache::purge.
        let since = cache.began().await;
        let fetched = fetch.await?;
        if let Some((made, answer)) = fetched.also {
            cache
                .keep(made, Arc::new(answer), WritePermit::alone(), since)
                .await;
        }
        let answer = Arc::new(fetched.answer);
        cache
            .keep(query.clone(), Arc::clone(&answer), permit, since)
            .await;
        Ok(Loaded {
            answer,
            shared: false,
        })
    }

    /// `since` is the purge epoch from before the shared read that found `entry`.
    async fn adopted(cache: &FlowCache, query: &Read, entry: CachedFlow, since: Epoch) -> Loaded {
        let answer = Arc::clone(&entry.answer);
        cache.adopt(query.clone(), entry, since).await;
        Loaded {
            answer,
            shared: true,
        }
    }

    /// How long a process's lock on a fetch lasts at most: its whole load.
    fn lock_hold(&self) -> Duration {
        self.load_timeout + LOCK_SLACK
    }
}
