//! One load: the fetch that coalesced callers share, run in its own task. It asks for the
//! credentials first (so that a slow credential source never holds a quota slot), then, for
//! each attempt, takes an account lease, sends one signed call and completes the lease once the
//! answer is read, retrying what may succeed on another attempt. A refresh-ahead is the same
//! fetch in the background class: nobody waits for it, callers' misses go first, and it gives up
//! once the entry it would replace stops being a hit.

use std::{
    future::Future,
    sync::{Arc, LazyLock},
    time::Duration,
};

use tokio::time::Instant;

use super::retry::{RetryBudget, RetryConfig};
use crate::{
    cache::{CachedFlow, Coalescer, FetchRole, FlowCache, LoadResult, Loaded, RefreshDue, Waiters},
    cams::{CamsClient, FlowAnswer},
    domain::FlowQuery,
    error::Error,
    limits::{AccountQuota, Claim, Class, Party, RejectionCause},
    telemetry::{
        metrics::{Metrics, QuotaRefusal, RefreshResult, UpstreamOutcome},
        trace::{AttemptOutcome, AttemptSpan, CallTracer, note_queue_wait},
    },
};

/// Refreshes are nobody's calls: in the account queue they are the background class, and this
/// name stands for them where a caller's name would.
static REFRESH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("refresh-ahead"));

/// A refresh must have its answer before the entry stops being a hit, or callers miss anyway
/// (and fetch it themselves); it waits for a slot until this long before then at most.
const REFRESH_MARGIN: Duration = Duration::from_millis(200);

/// A claim to fetch a flow outlives the load that made it by this much at most.
const CLAIM_SLACK: Duration = Duration::from_secs(1);

/// Kept between the end of a caller's wait for account capacity and its deadline.
const WAIT_MARGIN: Duration = Duration::from_millis(20);

/// Everything a load needs, shared by the gateway and the load tasks it spawns.
#[derive(Debug)]
pub(super) struct Loader {
    client: CamsClient,
    account: Arc<dyn AccountQuota>,
    cache: Option<FlowCache>,
    retry: RetryConfig,
    budget: RetryBudget,
    coalescer: Coalescer,
    load_timeout: Duration,
    metrics: Metrics,
    tracer: CallTracer,
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: CamsClient,
        account: Arc<dyn AccountQuota>,
        cache: Option<FlowCache>,
        retry: RetryConfig,
        coalescer: Coalescer,
        load_timeout: Duration,
        metrics: Metrics,
        tracer: CallTracer,
    ) -> Self {
        Self {
            client,
            account,
            cache,
            budget: RetryBudget::new(&retry),
            retry,
            coalescer,
            load_timeout,
            metrics,
            tracer,
        }
    }

    /// Whether calls are traced (their loads then carry the call's context).
    pub(super) fn traced(&self) -> bool {
        self.tracer.enabled()
    }

    pub(super) fn coalescer(&self) -> &Coalescer {
        &self.coalescer
    }

    /// Fetch with retries, keep a good answer, let the next caller start anew. The caller who
    /// started the load bounds the wait for account capacity (so that a call that cannot be
    /// served in time fails at once); an attempt under way runs on for the callers that joined,
    /// up to the load timeout; a retry starts only if it can end before the latest deadline
    /// among the waiting callers.
    pub(super) async fn load(
        self: Arc<Self>,
        query: FlowQuery,
        party: Party,
        caller_deadline: Instant,
        waiters: Arc<Waiters>,
    ) -> LoadResult {
        // However the load ends (a panic included), later callers start anew rather than join a
        // load that will never answer.
        let _finish = Finish {
            coalescer: &self.coalescer,
            key: &query,
        };
        let bound = Instant::now() + self.load_timeout;
        // The wait for a slot ends a little before the caller's deadline, so that the caller
        // hears why (ACCOUNT_RATE_LIMITED and when to retry) rather than only that its deadline
        // passed.
        let first_wait = caller_deadline.min(bound) - WAIT_MARGIN;
        let fetch = self.fetch(&query, &party, &Class::Caller, first_wait, bound, &waiters);
        self.coordinated(&query, fetch, waiters.latest().min(bound))
            .await
            .map_err(Arc::new)
    }

    /// Runs `fetch` as the one replica that fetches `query` (or the only one there is), keeping
    /// its answer; or, when another replica is fetching it already, waits for that replica's
    /// answer until `until`, and fetches itself only if that one gives up.
    async fn coordinated(
        &self,
        query: &FlowQuery,
        fetch: impl Future<Output = Result<FlowAnswer, Error>>,
        until: Instant,
    ) -> Result<Loaded, Error> {
        let Some(cache) = &self.cache else {
            return fetch.await.map(|answer| Loaded {
                answer: Arc::new(answer),
                shared: false,
            });
        };
        match self.turn(cache, query).await {
            Turn::Settled(loaded) => Ok(loaded),
            Turn::Fetch(token) => Self::fetch_and_keep(cache, query, fetch, token).await,
            Turn::Elsewhere => {
                if let Some(shared) = cache.shared()
                    && let Some(entry) = shared.wait_for(query, until).await
                {
                    return Ok(Self::adopted(cache, query, entry).await);
                }
                // The replica that held it gave up (its fetch failed, or it died and its claim
                // expired): this one tries.
                Self::fetch_and_keep(cache, query, fetch, None).await
            }
        }
    }

    /// Whether this replica fetches `query`, another one is fetching it, or another one has
    /// just stored it.
    async fn turn(&self, cache: &FlowCache, query: &FlowQuery) -> Turn {
        let Some(shared) = cache.shared() else {
            return Turn::Fetch(None);
        };
        match shared.claim(query, self.claim_hold()).await {
            FetchRole::Fetcher(token) => {
                // Another replica may have filled the entry between this one's lookup and its
                // claim (or refreshed it just before this one's refresh came due).
                match cache.settled_elsewhere(query).await {
                    Some(entry) => {
                        shared.release(query, token).await;
                        Turn::Settled(Self::adopted(cache, query, entry).await)
                    }
                    None => Turn::Fetch(Some(token)),
                }
            }
            FetchRole::Waiter => Turn::Elsewhere,
            FetchRole::Alone | FetchRole::Unknown => Turn::Fetch(None),
        }
    }

    /// Fetches and keeps a good answer; a failed fetch gives up the claim made with `token`, so
    /// that another replica may try.
    async fn fetch_and_keep(
        cache: &FlowCache,
        query: &FlowQuery,
        fetch: impl Future<Output = Result<FlowAnswer, Error>>,
        token: Option<String>,
    ) -> Result<Loaded, Error> {
        match fetch.await {
            Ok(answer) => {
                let answer = Arc::new(answer);
                cache.store(query.clone(), Arc::clone(&answer), token).await;
                Ok(Loaded {
                    answer,
                    shared: false,
                })
            }
            Err(error) => {
                if let (Some(shared), Some(token)) = (cache.shared(), token) {
                    shared.release(query, token).await;
                }
                Err(error)
            }
        }
    }

    async fn adopted(cache: &FlowCache, query: &FlowQuery, entry: CachedFlow) -> Loaded {
        let answer = Arc::clone(&entry.answer);
        cache.adopt(query.clone(), entry).await;
        Loaded {
            answer,
            shared: true,
        }
    }

    /// How long a replica's claim to fetch a flow lasts at most: its whole load. If the replica
    /// dies, another takes over when the claim expires.
    fn claim_hold(&self) -> Duration {
        self.load_timeout + CLAIM_SLACK
    }

    /// Attempts until one succeeds, the error is final, attempts or budget run out, or the
    /// next attempt could not end before the waiters' latest deadline. Every attempt spends
    /// account quota; the first waits for it until `first_wait` at most.
    async fn fetch(
        &self,
        query: &FlowQuery,
        party: &Party,
        class: &Class,
        first_wait: Instant,
        bound: Instant,
        waiters: &Waiters,
    ) -> Result<FlowAnswer, Error> {
        self.budget.record_call();
        let mut retry = 0;
        // The failure a retry is retrying: what the callers hear if the retry cannot be made.
        let mut retrying: Option<Error> = None;
        loop {
            let credentials = self.client.credentials().await?;
            // A retry's wait for a slot ends before the waiters' latest deadline too, so that
            // they hear CAMS's failure rather than only that their deadline passed.
            let wait_until = if retry == 0 {
                first_wait
            } else {
                waiters.latest().min(bound) - WAIT_MARGIN
            };
            let wait_started = Instant::now();
            let acquired = self
                .account
                .acquire(Claim {
                    party,
                    class: class.clone(),
                    deadline: wait_until,
                })
                .await
                .map_err(|r| {
                    self.metrics.quota_refused(match r.cause {
                        RejectionCause::QueueFull => QuotaRefusal::QueueFull,
                        RejectionCause::WouldWaitTooLong => QuotaRefusal::WouldWaitTooLong,
                        RejectionCause::StoreUnavailable => QuotaRefusal::StoreUnavailable,
                    });
                    match r.cause {
                        RejectionCause::StoreUnavailable => Error::QuotaStoreUnavailable {
                            retry_after: r.retry_after,
                        },
                        RejectionCause::QueueFull | RejectionCause::WouldWaitTooLong => {
                            Error::AccountRateLimited {
                                tenant: query.tenant.clone(),
                                account_rps: self.account.rps(),
                                retry_after: r.retry_after,
                                queue_full: r.cause == RejectionCause::QueueFull,
                            }
                        }
                    }
                });
            let lease = match (acquired, retrying.take()) {
                (Ok(lease), _) => lease,
                // No slot in time for the retry: the failure it retried stands.
                (Err(_), Some(failure)) => return Err(failure),
                (Err(refused), None) => return Err(refused),
            };
            let waited = wait_started.elapsed();
            let _in_use = self.metrics.slot_taken(waited);
            let span = self.tracer.attempt(retry + 1, self.client.host());
            if let Some(span) = &span {
                span.waited(waited);
                note_queue_wait(waited);
            }
            let attempt_started = Instant::now();
            let attempt = self.client.get_flow(
                &query.tenant,
                &query.flow_id,
                &credentials,
                span.as_ref().and_then(AttemptSpan::propagated),
            );
            // Past the bound the attempt is dropped mid-flight and its lease abandoned: the
            // request may still reach CAMS, and the store keeps counting it.
            let Ok(result) = tokio::time::timeout_at(bound, attempt).await else {
                self.attempted(
                    UpstreamOutcome::Abandoned,
                    None,
                    None,
                    attempt_started,
                    span,
                );
                // CAMS was too slow for the load (a caller whose own deadline came first has
                // already heard DEADLINE_EXCEEDED): for the callers still waiting this is CAMS
                // failing, so a stale answer may stand in.
                return Err(Error::from(crate::cams::CamsError::Timeout));
            };
            // Completing only ends the call's count: done late, it ends later, never sooner. With
            // the quota in Redis it is a round trip the answer need not wait for.
            tokio::spawn(lease.complete());
            match &result {
                Ok(answer) => self.attempted(
                    UpstreamOutcome::Code("OK"),
                    Some(&answer.request_id),
                    None,
                    attempt_started,
                    span,
                ),
                Err(error) => self.attempted(
                    error.outcome(),
                    match error {
                        crate::cams::CamsError::Api(api) => Some(&api.request_id),
                        _ => None,
                    },
                    error.http_status(),
                    attempt_started,
                    span,
                ),
            }
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(e) => Error::from(e),
            };
            retry += 1;
            if !error.disposition().retry || retry >= self.retry.max_attempts {
                return Err(error);
            }
            let pause = self.retry.backoff(retry - 1, error_retry_after(&error));
            // The next attempt is expected to take about as long as this one did.
            let expected_end = Instant::now() + pause + attempt_started.elapsed();
            if expected_end >= waiters.latest().min(bound) {
                return Err(error);
            }
            if !self.budget.try_retry() {
                self.metrics.retry_budget_exhausted();
                return Err(error);
            }
            self.metrics.retried();
            tracing::debug!(
                tenant = query.tenant.as_str(),
                flow_id = query.flow_id.as_str(),
                %error,
                retry,
                ?pause,
                "retrying CAMS"
            );
            tokio::time::sleep(pause).await;
            retrying = Some(error);
        }
    }
}

impl Loader {
    /// Records how one attempt ended, in the metrics and on its span.
    fn attempted(
        &self,
        outcome: UpstreamOutcome<'_>,
        request_id: Option<&str>,
        http_status: Option<u16>,
        started: Instant,
        span: Option<AttemptSpan>,
    ) {
        self.metrics.upstream_attempt(outcome, started.elapsed());
        if let Some(span) = span {
            span.finish(AttemptOutcome {
                code: outcome.name(),
                request_id,
                http_status: http_status
                    .or((outcome == UpstreamOutcome::Code("OK")).then_some(200)),
                error: outcome != UpstreamOutcome::Code("OK"),
            });
        }
    }
}

impl Loader {
    /// Fetches `query` again in the background and keeps the answer; a refresh that fails
    /// leaves the cached answer as it is until its TTL ends.
    pub(super) fn spawn_refresh(self: &Arc<Self>, query: FlowQuery, due: RefreshDue) {
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
            let waiters = Waiters::new(deadline);
            let bound = Instant::now() + loader.load_timeout;
            let fetch = loader.fetch(&query, &party, &class, deadline, bound, &waiters);
            // Refreshed once for all replicas. One that finds another refreshing leaves it to
            // that one and keeps its own entry: when it ends, the shared tier has the new
            // answer (or, if that refresh failed, this entry ends at its TTL, as it would here).
            let token = match loader.turn(cache, &query).await {
                Turn::Fetch(token) => token,
                Turn::Settled(_) | Turn::Elsewhere => {
                    loader.metrics.refreshed(RefreshResult::LeftToOthers);
                    return;
                }
            };
            let kept = Self::fetch_and_keep(cache, &query, fetch, token).await;
            loader.metrics.refreshed(if kept.is_ok() {
                RefreshResult::Ok
            } else {
                RefreshResult::Failed
            });
            if let Err(error) = kept {
                tracing::debug!(
                    tenant = query.tenant.as_str(),
                    flow_id = query.flow_id.as_str(),
                    %error,
                    "refresh-ahead failed; the cached answer stays until its TTL"
                );
            }
        });
    }
}

/// What a replica does about a flow that other replicas may be fetching too.
enum Turn {
    /// Fetch it, under this claim on the shared tier, if there is one.
    Fetch(Option<String>),
    /// Another replica is fetching it.
    Elsewhere,
    /// Another replica has just stored it; here it is.
    Settled(Loaded),
}

fn error_retry_after(error: &Error) -> Option<Duration> {
    match error {
        Error::Cams(cams) => cams.retry_after(),
        _ => None,
    }
}

/// Ends a load's place in the coalescer when dropped.
struct Finish<'a> {
    coalescer: &'a Coalescer,
    key: &'a FlowQuery,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.coalescer.finish(self.key);
    }
}
