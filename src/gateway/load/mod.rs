//! One load: the fetch that coalesced callers share, run in its own task.
//!
//! - `coordinate.rs`: who fetches. With a cache, the fetch lock decides: this process fetches
//!   and keeps the answer, or waits for the one fetching and adopts its answer, and asks again
//!   when that one gives up, so that the fleet makes one CAMS call per flow per attempt.
//! - `fetch.rs`: the attempts. Credentials first (a slow credential source never holds a quota
//!   slot), then for each attempt an account lease, one signed call, and the lease completed
//!   once the answer is read; what may succeed on another attempt is retried.
//! - `refresh.rs`: refresh-ahead, the same fetch in the background class.

mod coordinate;
mod fetch;
mod refresh;

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::retry::{RetryBudget, RetryConfig};
use crate::{
    cache::{Coalescer, FlowCache, LoadResult, Waiters, lock::FetchLock},
    cams::CamsClient,
    deadline::wait_end,
    domain::Read,
    limits::{AccountQuotas, Class, Party},
    telemetry::{metrics::Metrics, trace::CallTracer},
};

/// What a fetch talks to: CAMS, and the account's budget of each CAMS action, with the retry
/// policy.
#[derive(Debug)]
pub(super) struct Upstream {
    pub client: CamsClient,
    pub accounts: AccountQuotas,
    pub retry: RetryConfig,
    pub budget: RetryBudget,
}

/// Everything a load needs, shared by the gateway and the load tasks it spawns.
#[derive(Debug)]
pub(super) struct Loader {
    pub upstream: Upstream,
    pub cache: Option<FlowCache>,
    pub lock: Arc<dyn FetchLock>,
    pub coalescer: Coalescer,
    /// Bound on one load, whoever waits for it.
    pub load_timeout: Duration,
    pub metrics: Metrics,
    pub tracer: CallTracer,
}

impl Loader {
    /// Fetch with retries, keep a good answer, let the next caller start anew. The caller who
    /// started the load bounds the wait for account capacity (so that a call that cannot be
    /// served in time fails at once); an attempt under way runs on for the callers that joined,
    /// up to the load timeout; a retry starts only if it can end before the latest deadline
    /// among the waiting callers.
    pub(super) async fn load(
        self: Arc<Self>,
        query: Read,
        party: Party,
        answer_by: Instant,
        waiters: Arc<Waiters>,
    ) -> LoadResult {
        // However the load ends (a panic included), later callers start anew rather than join a
        // load that will never answer.
        let _finish = Finish {
            coalescer: &self.coalescer,
            key: &query,
        };
        let bound = Instant::now() + self.load_timeout;
        let first_wait = wait_end(answer_by.min(bound));
        let fetch = self.fetch(&query, &party, &Class::Caller, first_wait, bound, &waiters);
        self.coordinated(&query, fetch, &waiters, bound)
            .await
            .map_err(Arc::new)
    }
}

/// Ends a load's place in the coalescer when dropped.
struct Finish<'a> {
    coalescer: &'a Coalescer,
    key: &'a Read,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.coalescer.finish(self.key);
    }
}
