//! The one place that picks the backends: which credentials, which tenant limits, which account
//! slot store, which cache tiers. Everything else takes them through their seams.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    auth::Authenticator,
    cache::FlowCache,
    cams::CamsClient,
    clock::SharedClock,
    config::Config,
    credentials::CredentialsProvider,
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

/// The GetFlow service with everything behind it (client, limits, cache, authentication) as
/// `config` describes it; its background loops go to `tasks`.
pub fn flow_api(
    config: &Config,
    credentials: Arc<dyn CredentialsProvider>,
    clock: SharedClock,
    drain_expired: CancellationToken,
    tasks: &mut Tasks,
) -> Result<Wired, StartError> {
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

    let gateway = Gateway::new(Parts {
        client,
        tenants: Arc::clone(&tenants),
        account: Arc::clone(&account),
        cache: FlowCache::new(config.cache, None, clock),
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

async fn evict_idle_tenants(tenants: Arc<dyn TenantLimits>) {
    let mut tick = tokio::time::interval(EVICT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        tenants.evict_idle();
    }
}
