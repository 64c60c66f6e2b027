//! Refresh-ahead: a hit near the end of its TTL fetches the flow again in the background while
//! callers keep getting it as a hit. Nobody waits for a refresh: in the account queue it is the
//! background class (callers' misses go first), it gives up once the entry it would replace
//! stops being a hit, and one process refreshes a flow for all replicas.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use tokio::time::Instant;

use super::{Loader, coordinate::Turn};
use crate::{
    cache::{RefreshDue, Waiters},
    domain::Read,
    limits::{Class, Party},
    telemetry::metrics::RefreshResult,
};

/// Refreshes are nobody's calls: in the account queue they are the background class, and this
/// name stands for them where a caller's name would.
static REFRESH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("refresh-ahead"));

/// A refresh must have its answer before the entry stops being a hit, or callers miss anyway
/// (and fetch it themselves); it waits for a slot until this long before then at most.
const REFRESH_MARGIN: Duration = Duration::from_millis(200);

impl Loader {
    /// Fetches `query` again in the background and keeps the answer; a refresh that fails
    /// leaves the cached answer as it is until its TTL ends.
    pub(in crate::gateway) fn spawn_refresh(self: &Arc<Self>, query: Read, due: RefreshDue) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let left = due.hit_for.saturating_sub(REFRESH_MARGIN);
        if left.is_zero() {
            return;
        }
        let loader = Arc::clone(self);
        tokio::spawn(async move {
            let cache = &cache;
            let deadline = Instant::now() + left;
            let party = Party {
                caller: Arc::clone(&REFRESH),
                tenant: query.tenant.clone(),
            };
            let class = Class::Background { reads: due.reads };
            let waiters = Waiters::background(deadline);
            let bound = Instant::now() + loader.load_timeout;
            let fetch = loader.fetch(&query, &party, &class, deadline, bound, &waiters);
            // Refreshed once for all replicas. One that finds another refreshing leaves it to
            // that one and keeps its own entry: when it ends, the shared tier has the new
            // answer (or, if that refresh failed, this entry ends at its TTL, as it would here).
            let permit = match loader.turn(cache, &query).await {
                Turn::Fetch(permit) => permit,
                Turn::Settled(_) | Turn::Elsewhere(_) => {
                    loader
                        .metrics
                        .refreshed(query.action(), RefreshResult::LeftToOthers);
                    return;
                }
            };
            let kept = Self::fetch_and_keep(cache, &query, fetch, permit).await;
            loader.metrics.refreshed(
                query.action(),
                if kept.is_ok() {
                    RefreshResult::Ok
                } else {
                    RefreshResult::Failed
                },
            );
            if let Err(error) = kept {
                tracing::debug!(
                    tenant = query.tenant.as_str(),
                    action = query.action().cams_name(),
                    %error,
                    "refresh-ahead failed; the cached answer stays until its TTL"
                );
            }
        });
    }
}
