//! What happens to a validated call between the gRPC edge and the CAMS client:
//! tenant limit → cache → coalesced load (see [`load`]: credentials, account quota, signed
//! attempt, retries) → cache.

mod load;
pub(crate) mod retry;

use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::time::Instant;

use crate::{
    cache::{FlowCache, Joined, Lookup, Tier, lock::FetchLock},
    cams::CamsClient,
    domain::Answer,
    domain::{CacheResult, Read},
    error::{Error, Failure},
    limits::{AccountQuotas, Party, TenantCheck, TenantLimits},
    telemetry::{metrics::Metrics, trace::CallTracer},
};
use load::{Loader, Upstream};
use retry::RetryBudget;
pub use retry::RetryConfig;

#[derive(Debug, Clone)]
pub struct Served {
    pub answer: Arc<Answer>,
    pub source: CacheResult,
}

/// The parts of the request path behind the gRPC service, as the wiring picks them.
pub struct Parts {
    pub client: CamsClient,
    pub tenants: Arc<dyn TenantLimits>,
    /// The account's budget of each CAMS action.
    pub accounts: AccountQuotas,
    pub cache: Option<FlowCache>,
    /// Who fetches a missing flow, among this process's loads and the replicas sharing its cache.
    pub lock: Arc<dyn FetchLock>,
    pub retry: RetryConfig,
    /// Bound on one load, whoever waits for it.
    pub load_timeout: Duration,
    pub metrics: Metrics,
    pub tracer: CallTracer,
}

/// The request path behind the gRPC service.
#[derive(Debug, Clone)]
pub struct Gateway {
    tenants: Arc<dyn TenantLimits>,
    cache: Option<FlowCache>,
    loader: Arc<Loader>,
}

impl Gateway {
    pub fn new(parts: Parts) -> Self {
        Self {
            tenants: parts.tenants,
            cache: parts.cache.clone(),
            loader: Arc::new(Loader {
                upstream: Upstream {
                    client: parts.client,
                    accounts: parts.accounts,
                    budget: RetryBudget::new(&parts.retry),
                    retry: parts.retry,
                },
                cache: parts.cache,
                lock: parts.lock,
                coalescer: Default::default(),
                load_timeout: parts.load_timeout,
                metrics: parts.metrics,
                tracer: parts.tracer,
            }),
        }
    }

    /// Serves one read of `caller`, whose share of the account's budget a fetch spends,
    /// answering by `answer_by` (the call's budget). The answer is of the read's own kind, but
    /// for a preview URL, which a GetFlow answer of the same flow and space may carry (see
    /// [`Answer::preview_url`]).
    pub async fn read(
        &self,
        query: &Read,
        caller: &Arc<str>,
        answer_by: Instant,
    ) -> Result<Served, Failure> {
        let verdict = match self.tenants.check(&query.tenant) {
            TenantCheck::Decided(verdict) => verdict,
            TenantCheck::Pending(verdict) => verdict.await,
        };
        verdict.map_err(|r| Error::TenantRateLimited {
            tenant: query.tenant.clone(),
            quota: r.quota,
            retry_after: r.retry_after,
        })?;

        let cached = match &self.cache {
            Some(cache) => cache.lookup_for(query).await,
            None => Lookup::Absent,
        };
        let stale = match cached {
            Lookup::Fresh {
                answer,
                tier,
                refresh,
            } => {
                if let Some(due) = refresh {
                    self.loader.spawn_refresh(query.clone(), due);
                }
                return Ok(Served {
                    answer,
                    source: match tier {
                        Tier::Local => CacheResult::Hit,
                        Tier::Shared => CacheResult::Shared,
                    },
                });
            }
            Lookup::Stale(entry) => Some(entry),
            Lookup::Absent => None,
        };

        let Joined {
            load,
            started,
            presence: _waiting,
        } = self.loader.coalescer.join(query, answer_by, |waiters| {
            let loader = Arc::clone(&self.loader);
            let party = Party {
                caller: Arc::clone(caller),
                tenant: query.tenant.clone(),
            };
            let query = query.clone();
            let traced = loader.tracer.enabled();
            let load = async move { loader.load(query, party, answer_by, waiters).await };
            // The load runs in a task of its own: the call's trace goes with it, so that its
            // attempts are children of this call's span.
            if traced {
                opentelemetry::context::FutureExt::with_current_context(load).boxed()
            } else {
                load.boxed()
            }
        });
        let outcome = match tokio::time::timeout_at(answer_by, load).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(shared)) => Err(Failure::Shared(shared)),
            Err(_) => Err(Failure::Own(Error::DeadlineExceeded)),
        };
        // Looked at again: the stale entry found before the fetch may have run out during it.
        let stale = stale.and_then(|entry| {
            let age = self.cache.as_ref()?.stale_age(&entry)?;
            Some((entry, age))
        });
        match (outcome, stale) {
            (Ok(loaded), _) => Ok(Served {
                answer: loaded.answer,
                source: match (loaded.shared, started) {
                    (true, _) => CacheResult::Shared,
                    (false, true) => CacheResult::Miss,
                    (false, false) => CacheResult::Coalesced,
                },
            }),
            (Err(error), Some((entry, age))) if error.disposition().stale_may_serve => {
                tracing::warn!(
                    tenant = query.tenant.as_str(),
                    action = query.action().cams_name(),
                    error = %*error,
                    age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    "serving a stale answer"
                );
                Ok(Served {
                    answer: entry.answer,
                    source: CacheResult::Stale,
                })
            }
            (Err(error), _) => Err(error),
        }
    }
}
