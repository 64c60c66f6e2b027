//! What happens to a validated call between the gRPC edge and the CAMS client:
//! tenant limit → cache → coalesced load (see [`load`]: credentials, account quota, signed
//! attempt, retries) → cache.

mod load;
pub(crate) mod retry;
mod shadow;

use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::time::Instant;

use crate::{
    cache::{FlowCache, Joined, Lookup, Tier, lock::FetchLock},
    cams::CamsClient,
    domain::Answer,
    domain::{CacheResult, Read},
    error::{Error, Failure},
    limits::{AccountQuotas, Party, ShadowLimits, TenantCheck, TenantLimits},
    telemetry::{
        metrics::{Metrics, Rejection},
        trace::CallTracer,
    },
};
use load::{Loader, Upstream};
use retry::RetryBudget;
pub use retry::RetryConfig;
pub(crate) use shadow::{Noted, Shadow};

#[derive(Debug, Clone)]
pub(crate) struct Served {
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
    /// The tenant and caller limits in shadow.
    pub shadow: ShadowLimits,
}

/// The request path behind the gRPC service.
#[derive(Debug, Clone)]
pub struct Gateway {
    tenants: Arc<dyn TenantLimits>,
    cache: Option<FlowCache>,
    loader: Arc<Loader>,
    shadow: Arc<Shadow>,
}

impl Gateway {
    pub fn new(parts: Parts) -> Self {
        Self {
            shadow: Arc::new(Shadow::new(parts.shadow, parts.metrics.clone())),
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

    /// The limits in shadow.
    pub(crate) fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    /// The limits in shadow, for a reload to replace.
    pub(crate) fn shadow_handle(&self) -> Arc<Shadow> {
        Arc::clone(&self.shadow)
    }

    /// The account's budget of each CAMS action, for a look that spends nothing (`GetQuota`).
    pub(crate) fn accounts(&self) -> &AccountQuotas {
        &self.loader.upstream.accounts
    }

    /// The tenants' limits, for a look that spends nothing (`GetQuota`).
    pub(crate) fn tenants(&self) -> &Arc<dyn TenantLimits> {
        &self.tenants
    }

    /// The tenant within its own rate, or its limit in shadow. A call a limit in shadow already
    /// would have refused is not charged to a tenant limit in shadow (an enforced refusal would
    /// never have reached it).
    async fn admit_tenant(&self, query: &Read, caller: &str, noted: &Noted) -> Result<(), Error> {
        let shadow = self.shadow.tenant(&query.tenant);
        if shadow && noted.shadow_refused() {
            return Ok(());
        }
        let verdict = match self.tenants.check(&query.tenant) {
            TenantCheck::Decided(verdict) => verdict,
            TenantCheck::Pending(verdict) => verdict.await,
        };
        match verdict {
            Ok(standing) => {
                if let Some(standing) = standing {
                    let _ = noted.tenant.set(standing);
                }
                Ok(())
            }
            Err(r) => {
                let _ = noted.tenant.set(r.standing());
                if !shadow {
                    return Err(Error::TenantRateLimited {
                        tenant: query.tenant.clone(),
                        quota: r.quota,
                        retry_after: r.retry_after,
                    });
                }
                self.shadow.refused(
                    noted,
                    Rejection::TenantRateLimited,
                    query.tenant.as_str(),
                    caller,
                    r.quota,
                    r.retry_after,
                );
                Ok(())
            }
        }
    }

    /// Serves one read of `caller`, whose share of the account's budget a fetch spends,
    /// answering by `answer_by` (the call's budget). The answer is of the read's own kind, but
    /// for a preview URL, which a GetFlow answer of the same flow and space may carry (see
    /// [`Answer::preview_url`]).
    /// Where the tenant's limit leaves the tenant is noted in `noted`.
    pub(crate) async fn read(
        &self,
        query: &Read,
        caller: &Arc<str>,
        answer_by: Instant,
        noted: &Noted,
    ) -> Result<Served, Failure> {
        self.admit_tenant(query, caller, noted).await?;

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
