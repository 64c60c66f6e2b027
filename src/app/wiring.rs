//! The one place that picks the backends: which credentials, which tenant limits, which account
//! slot store, which cache tiers. Everything else takes them through their seams.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    auth::Authenticator,
    cache::FlowCache,
    cams::CamsClient,
    clock::{self, SharedClock},
    config::Config,
    credentials::{self, CredentialsProvider, Vars},
    gateway::{Gateway, Parts},
    grpc::FlowApi,
    limits::{
        AccountGate, AccountQuota, EVICT_INTERVAL, GovernorTenantLimits, LocalSlots, TenantLimits,
    },
};

use super::{StartError, tasks::Tasks};

/// The GetFlow service and what tests and operators may inspect of it.
pub struct Wired {
    pub api: FlowApi,
    pub tenants: Arc<dyn TenantLimits>,
    pub account: Arc<dyn AccountQuota>,
}

/// The credentials `[credentials]` calls for: the default chain (or the pinned provider) over
/// the process's `ALIBABA_CLOUD_*` variables and files; fixed keys, or temporary ones whose
/// refresh loop [`flow_api`] hands to the task owner.
pub(super) async fn credentials(
    config: &Config,
) -> Result<Arc<dyn CredentialsProvider>, StartError> {
    Ok(credentials::resolve(&config.credentials, &Vars::process(), clock::system()).await?)
}

/// The GetFlow service with everything behind it (client, limits, cache, authentication) as
/// `config` describes it; its background loops go to `tasks`.
pub fn flow_api(
    config: &Config,
    credentials: Arc<dyn CredentialsProvider>,
    clock: SharedClock,
    drain_expired: CancellationToken,
    tasks: &mut Tasks,
) -> Result<Wired, StartError> {
    if let Some(refresh) = credentials.refresh_task() {
        tasks.spawn("credentials refresh", refresh);
    }
    let client = CamsClient::new(config.upstream.clone(), credentials, Arc::clone(&clock))?;

    let tenants: Arc<dyn TenantLimits> = Arc::new(GovernorTenantLimits::new(
        config.limits.tenant,
        config.limits.tenants.clone(),
    ));
    tasks.spawn("tenant evictor", evict_idle_tenants(Arc::clone(&tenants)));

    let account_limits = config.limits.account();
    let slots = Arc::new(LocalSlots::new(account_limits.rps, account_limits.window));
    let gate = AccountGate::new(account_limits, config.limits.weights(), slots);
    tasks.spawn("account dispatcher", gate.dispatcher());
    let account: Arc<dyn AccountQuota> = Arc::new(gate);

    let cache = FlowCache::new(config.cache, None, clock);
    if let Some(cache) = &cache
        && !config.cache.refresh_window.is_zero()
    {
        tasks.spawn(
            "refresh demand",
            watch_refresh_demand(cache.clone(), config.limits.account_rps),
        );
    }
    let gateway = Gateway::new(Parts {
        client,
        tenants: Arc::clone(&tenants),
        account: Arc::clone(&account),
        cache,
        retry: config.retry,
        load_timeout: config.call_timeout,
    });
    let api = FlowApi::new(
        gateway,
        Arc::new(Authenticator::new(config.auth.clone())),
        config.call_timeout,
        config.max_in_flight,
        drain_expired,
    );
    Ok(Wired {
        api,
        tenants,
        account,
    })
}

/// How often the demand of refresh-ahead on the account quota is checked (and, when too high,
/// logged).
const DEMAND_EVERY: Duration = Duration::from_secs(60);

/// Warns, at most once per [`DEMAND_EVERY`], when the hot entries need more refreshes per second
/// than the account's quota allows: then the most-read are refreshed first, and the others
/// expire and are fetched by the callers that miss them.
async fn watch_refresh_demand(cache: FlowCache, account_rps: u32) {
    let mut tick = tokio::time::interval(DEMAND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut before = cache.refreshes();
    loop {
        tick.tick().await;
        let now = cache.refreshes();
        let per_second = (now - before) as f64 / DEMAND_EVERY.as_secs_f64();
        before = now;
        if per_second > f64::from(account_rps) {
            tracing::warn!(
                refreshes_per_second = format!("{per_second:.1}"),
                account_rps,
                "refresh-ahead needs more CAMS calls than the account quota allows; the most-read \
                 entries are refreshed first and the others expire"
            );
        }
    }
}

async fn evict_idle_tenants(tenants: Arc<dyn TenantLimits>) {
    let mut tick = tokio::time::interval(EVICT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        tenants.evict_idle();
    }
}
