//! What happens to a validated call between the gRPC edge and the CAMS client:
//! tenant limit → cache → coalesced load (account limit, signed attempt, retries) → cache.

use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::time::Instant;

use crate::{
    cache::{Coalescer, FlowCache, Lookup, Waiters},
    cams::{CamsClient, CamsError, FlowAnswer},
    domain::{FlowId, TenantId},
    error::Error,
    limits::{Limits, RejectionCause},
    retry::{RetryBudget, RetryConfig},
};

/// A validated GetFlow call; also the cache and coalescing key, so tenants never share answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowQuery {
    pub tenant: TenantId,
    pub flow_id: FlowId,
}

/// How an answer was obtained; reported to callers in the `x-cams-cache` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the cache, without asking CAMS.
    Hit,
    /// Fetched from CAMS for this call.
    Miss,
    /// Shared from a fetch another call started.
    Coalesced,
    /// An answer past its TTL, served because CAMS is failing or throttling.
    Stale,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Served {
    pub answer: Arc<FlowAnswer>,
    pub source: Source,
}

/// Everything a load needs, shared by the gateway and the load tasks it spawns.
#[derive(Debug)]
struct Upstream {
    client: CamsClient,
    limits: Arc<Limits>,
    retry: RetryConfig,
    budget: RetryBudget,
    cache: Option<FlowCache>,
    coalescer: Coalescer,
    /// Bound on one load, whoever waits for it.
    load_timeout: Duration,
}

/// The request path behind the gRPC service.
#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Arc<Upstream>,
}

/// The parts of the gateway's configuration beyond the client and the limits.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub retry: RetryConfig,
    pub cache: Option<FlowCache>,
    pub load_timeout: Duration,
}

impl Gateway {
    pub fn new(client: CamsClient, limits: Arc<Limits>, options: GatewayOptions) -> Self {
        let budget = RetryBudget::new(&options.retry);
        Self {
            upstream: Arc::new(Upstream {
                client,
                limits,
                retry: options.retry,
                budget,
                cache: options.cache,
                coalescer: Coalescer::default(),
                load_timeout: options.load_timeout,
            }),
        }
    }

    pub async fn get_flow(&self, query: &FlowQuery, deadline: Instant) -> Result<Served, Error> {
        let up = &self.upstream;
        up.limits
            .tenants
            .check(&query.tenant)
            .map_err(|r| Error::TenantRateLimited {
                tenant: query.tenant.clone(),
                quota: r.quota,
                retry_after: r.retry_after,
            })?;

        let cached = match &up.cache {
            Some(cache) => cache.lookup(query).await,
            None => Lookup::Absent,
        };
        let stale = match cached {
            Lookup::Fresh(answer) => {
                return Ok(Served {
                    answer,
                    source: Source::Hit,
                });
            }
            Lookup::Stale(answer) => Some(answer),
            Lookup::Absent => None,
        };

        let (load, started) = up.coalescer.join(query, deadline, |waiters| {
            let up = Arc::clone(&self.upstream);
            let query = query.clone();
            async move { up.load(query, deadline, waiters).await }.boxed()
        });
        let outcome = tokio::time::timeout_at(deadline, load)
            .await
            .unwrap_or(Err(Error::Cams(CamsError::DeadlineExceeded)));
        match (outcome, stale) {
            (Ok(answer), _) => Ok(Served {
                answer,
                source: if started {
                    Source::Miss
                } else {
                    Source::Coalesced
                },
            }),
            (Err(error), Some(answer)) if error.is_upstream_trouble() => {
                tracing::warn!(
                    tenant = query.tenant.as_str(),
                    flow_id = query.flow_id.as_str(),
                    %error,
                    "serving a stale answer"
                );
                Ok(Served {
                    answer,
                    source: Source::Stale,
                })
            }
            (Err(error), _) => Err(error),
        }
    }
}

impl Upstream {
    /// One load, in its own task: fetch with retries, keep a good answer, let the next caller
    /// start anew. The caller who started it bounds the wait for account capacity (so that a
    /// call that cannot be served in time fails at once); an attempt under way runs on for the
    /// callers that joined, up to the load timeout; a retry starts only if it can end before
    /// the latest deadline among the waiting callers.
    async fn load(
        self: Arc<Self>,
        query: FlowQuery,
        caller_deadline: Instant,
        waiters: Arc<Waiters>,
    ) -> Result<Arc<FlowAnswer>, Error> {
        let bound = Instant::now() + self.load_timeout;
        let result = self
            .fetch(&query, caller_deadline.min(bound), bound, &waiters)
            .await
            .map(Arc::new);
        if let (Ok(answer), Some(cache)) = (&result, &self.cache) {
            cache.store(query.clone(), Arc::clone(answer)).await;
        }
        self.coalescer.finish(&query);
        result
    }

    /// Attempts until one succeeds, the error is final, attempts or budget run out, or the
    /// next attempt could not end before the waiters' latest deadline. Every attempt spends
    /// account quota; the first waits for it until `first_wait` at most.
    async fn fetch(
        &self,
        query: &FlowQuery,
        first_wait: Instant,
        bound: Instant,
        waiters: &Waiters,
    ) -> Result<FlowAnswer, Error> {
        self.budget.record_call();
        let mut retry = 0;
        loop {
            let wait_until = if retry == 0 {
                first_wait
            } else {
                waiters.latest().min(bound)
            };
            let permit = self
                .limits
                .account
                .acquire(&query.tenant, wait_until)
                .await
                .map_err(|r| Error::AccountRateLimited {
                    tenant: query.tenant.clone(),
                    account_rps: self.limits.account.rps(),
                    retry_after: r.retry_after,
                    queue_full: r.cause == RejectionCause::QueueFull,
                })?;
            let attempt_started = Instant::now();
            let result = self
                .client
                .get_flow(&query.tenant, &query.flow_id, bound)
                .await;
            drop(permit);
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            retry += 1;
            if !error.is_retryable() || retry >= self.retry.max_attempts {
                return Err(error.into());
            }
            let pause = self.retry.backoff(retry - 1, error.retry_after());
            // The next attempt is expected to take about as long as this one did.
            let expected_end = Instant::now() + pause + attempt_started.elapsed();
            if expected_end >= waiters.latest().min(bound) || !self.budget.try_retry() {
                return Err(error.into());
            }
            tracing::debug!(
                tenant = query.tenant.as_str(),
                flow_id = query.flow_id.as_str(),
                %error,
                retry,
                ?pause,
                "retrying CAMS"
            );
            tokio::time::sleep(pause).await;
        }
    }
}
