//! The one place that picks the backends: which credentials, which tenant limits, which account
//! slot store, which cache tiers. Everything else takes them through their seams.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Authenticator,
    cache::{
        CacheTier, FlowCache, LivePolicy, RedisTier, SharedKeys,
        lock::{FetchLock, LocalLock, RedisLock},
        purge::{self, PurgeCounter},
    },
    cams::CamsClient,
    clock::{self, SharedClock},
    config::Config,
    credentials::{self, CredentialsProvider, Vars},
    domain::Action,
    gateway::{Gateway, Parts},
    grpc::{FlowAdminApi, FlowApi, Observe},
    limits::{
        AccountGate, AccountQuotas, CallerLimits, EVICT_INTERVAL, GovernorCallerLimits,
        GovernorTenantLimits, LocalSlots, RedisCallerLimits, RedisSlots, RedisTenantLimits,
        SlotStore, TenantLimits,
    },
    store::{Purpose, Redis, RedisConfig, account_tag},
    telemetry::{ErrorChain, metrics::Metrics, trace::Tracing},
};

use super::{StartError, observe, reload::Live, tasks::Tasks};

/// The GetFlow service and what tests and operators may inspect of it.
pub struct Wired {
    pub api: FlowApi,
    /// The operators' service (purges).
    pub admin: FlowAdminApi,
    pub tenants: Arc<dyn TenantLimits>,
    /// The account's budget of each CAMS action.
    pub accounts: AccountQuotas,
    /// What the admin listener serves (disabled without one).
    pub metrics: Metrics,
    /// The trace exporter, to be shut down (and flushed) after the drain.
    pub tracing: Tracing,
    /// What a configuration reload changes.
    pub(super) live: Live,
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
pub async fn flow_api(
    config: &Config,
    credentials: Arc<dyn CredentialsProvider>,
    clock: SharedClock,
    drain_expired: CancellationToken,
    tasks: &mut Tasks,
) -> Result<Wired, StartError> {
    let metrics = observe::metrics(config);
    let tracing = Tracing::start(&config.tracing)?;
    let account = match config.redis.as_ref().or(config.cache_redis.as_ref()) {
        Some(redis_config) => Some(account_name(config, redis_config, &credentials, &clock).await?),
        None => None,
    };
    let shared = match (&config.redis, &account) {
        (Some(redis_config), Some(account)) => {
            Some(Shared::connect(redis_config, account, tasks, (&metrics, "state")).await?)
        }
        _ => None,
    };
    // The cache's tier in Redis: the same connection when it is the same Redis.
    let cache_shared = match (&config.cache_redis, &account) {
        (Some(cache_config), Some(account)) => match &shared {
            Some(shared) if config.redis.as_ref() == Some(cache_config) => Some(Shared {
                redis: shared.redis.clone(),
                account_tag: shared.account_tag.clone(),
            }),
            _ => Some(Shared::connect(cache_config, account, tasks, (&metrics, "cache")).await?),
        },
        _ => None,
    };
    if let Some(refresh) = credentials.refresh_task() {
        tasks.spawn("credentials refresh", refresh);
    }
    observe::credentials(&metrics, &credentials, tasks);
    let client = CamsClient::new(config.upstream.clone(), credentials, Arc::clone(&clock))?;
    observe::client(&metrics, &client);

    let tenants: Arc<dyn TenantLimits> = match &shared {
        Some(shared) => Arc::new(RedisTenantLimits::new(
            shared.redis.clone(),
            &shared.account_tag,
            config.limits.tenant,
            config.limits.tenants.clone(),
        )),
        None => Arc::new(GovernorTenantLimits::new(
            config.limits.tenant,
            config.limits.tenants.clone(),
        )),
    };
    tasks.spawn("tenant evictor", evict_idle_tenants(Arc::clone(&tenants)));
    let callers: Arc<dyn CallerLimits> = match &shared {
        Some(shared) => Arc::new(RedisCallerLimits::new(
            shared.redis.clone(),
            &shared.account_tag,
            config.auth.caller_quotas(),
        )),
        None => Arc::new(GovernorCallerLimits::new(config.auth.caller_quotas())),
    };

    // One budget per CAMS action: CAMS counts each operation on its own, and so does the
    // gateway, each with its own fair queue and, with Redis, its own lease log.
    let accounts = AccountQuotas::new(|action| {
        let limits = config.limits.account(action);
        let slots: Arc<dyn SlotStore> = match &shared {
            Some(shared) => {
                let log = match action {
                    // GetFlow's log keeps the names of earlier releases.
                    Action::GetFlow => "",
                    other => other.cams_name(),
                };
                let slots = RedisSlots::for_log(
                    shared.redis.clone(),
                    &shared.account_tag,
                    log,
                    limits.rps,
                    limits.window,
                    config.call_timeout,
                )
                .confirmed_by_replicas(
                    config
                        .redis
                        .as_ref()
                        .is_none_or(|redis| redis.wait_for_replicas),
                );
                tasks.spawn("account quota heartbeat", slots.heartbeat());
                Arc::new(slots)
            }
            None => Arc::new(LocalSlots::new(limits.rps, limits.window)),
        };
        let gate = AccountGate::new(limits, config.limits.weights(), slots);
        tasks.spawn("account dispatcher", gate.dispatcher());
        Arc::new(gate)
    });
    for action in Action::ALL {
        observe::account(&metrics, action, accounts.of(action));
    }

    // The cache compares CAMS's `PreviewUrlExpires`, and times other replicas read: CAMS's clock.
    let cache_clock = client.cams_clock();
    let mut peers = None;
    let policy: LivePolicy = Arc::new(ArcSwap::from_pointee(config.cache));
    let (tier, lock): (Option<Arc<dyn CacheTier>>, Arc<dyn FetchLock>) = match cache_shared {
        Some(shared) => {
            let keys = SharedKeys::new(&shared.redis, &shared.account_tag);
            let lock = RedisLock::with_keys(shared.redis.clone(), keys.clone());
            tasks.spawn("shared cache releases", lock.listen());
            let tier = Arc::new(RedisTier::new(
                shared.redis,
                keys.clone(),
                Arc::clone(&policy),
                Arc::clone(&cache_clock),
            ));
            let names = (tier.replica().to_owned(), keys.account().to_owned());
            let counter: Arc<dyn PurgeCounter> = tier.clone();
            peers = lock
                .purge_notices()
                .map(|notices| (notices, counter, names));
            (Some(tier), Arc::new(lock))
        }
        None => (None, Arc::new(LocalLock::default())),
    };
    let shared_cache = tier.is_some();
    let cache = FlowCache::with_policy(Arc::clone(&policy), tier, cache_clock);
    let cache_policy = cache.is_some().then_some(policy);
    if let (Some(cache), Some((notices, counter, names))) = (&cache, peers) {
        tasks.spawn(
            "purge notices",
            purge::follow(cache.clone(), notices, counter, names, metrics.clone()),
        );
    }
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
        accounts: accounts.clone(),
        cache: cache.clone(),
        lock,
        retry: config.retry,
        load_timeout: config.call_timeout,
        metrics: metrics.clone(),
        tracer: tracing.calls(),
        shadow: config.limits.shadow.clone(),
    });
    let auth = Arc::new(Authenticator::new(config.auth.clone(), callers));
    let live = Live {
        shadow: gateway.shadow_handle(),
        tenants: Arc::clone(&tenants),
        accounts: accounts.clone(),
        auth: Arc::clone(&auth),
        cache: cache_policy,
        metrics: metrics.clone(),
    };
    let admin = FlowAdminApi::new(
        Arc::clone(&auth),
        cache,
        shared_cache,
        config.call_timeout,
        metrics.clone(),
        gateway.shadow_handle(),
    );
    let api = FlowApi::new(
        gateway,
        auth,
        config.call_timeout,
        config.max_in_flight,
        drain_expired,
        Observe {
            metrics: metrics.clone(),
            tracer: tracing.calls(),
        },
        config.ratelimit_metadata,
    );
    Ok(Wired {
        api,
        admin,
        tenants,
        accounts,
        metrics,
        tracing,
        live,
    })
}

/// The Redis the replicas share, and which account's keys this gateway uses there.
struct Shared {
    redis: Redis,
    account_tag: String,
}

impl Shared {
    /// The handle on the Redis of `config`, connected (or connecting, if it does not answer
    /// yet). A Redis that holds the account's quota and may evict keys is refused: the gateway
    /// does not start.
    async fn connect(
        config: &RedisConfig,
        account: &str,
        tasks: &mut Tasks,
        (metrics, store): (&Metrics, &'static str),
    ) -> Result<Self, StartError> {
        let (purpose, shared) = if store == "cache" {
            (Purpose::CACHE, "the cache")
        } else {
            (
                Purpose::STATE,
                "the account quota and the tenant and caller limits",
            )
        };
        let redis = Redis::observed(config, metrics.redis(store), purpose)?;
        redis.check_at_start().await?;
        observe::redis(metrics, &redis, store);
        tasks.spawn("redis watch", redis.watch());
        tracing::info!(
            ?config,
            shared,
            "state shared with other replicas through Redis"
        );
        Ok(Self {
            redis,
            account_tag: account_tag(account),
        })
    }
}

/// The account's name in Redis: its Alibaba Cloud UID. The account, not a key pair, owns the CAMS
/// quota: every key of one account (AccessKeys rotated in a rolling update, temporary keys
/// refreshed) must share one lease log and one cache, and two accounts must never share either.
/// STS `GetCallerIdentity`, asked once with the credentials in use, says whose they are;
/// `redis.account` states the UID, must agree with STS, and stands in for it when STS cannot be
/// asked. Under `--sandbox` the simulated account is known without asking.
async fn account_name(
    config: &Config,
    redis: &RedisConfig,
    credentials: &Arc<dyn CredentialsProvider>,
    clock: &SharedClock,
) -> Result<String, StartError> {
    let stated = redis.account.as_deref();
    if let Some(stated) = stated
        && !credentials::is_account_id(stated)
    {
        return Err(StartError::RedisAccountNotUid(stated.to_owned()));
    }
    let agreed = |actual: &str, by: &'static str| match stated {
        Some(stated) if stated != actual => Err(StartError::RedisAccountMismatch {
            stated: stated.to_owned(),
            actual: actual.to_owned(),
            by,
        }),
        _ => Ok(actual.to_owned()),
    };
    #[cfg(feature = "sandbox")]
    if config.sandbox {
        let account = agreed(
            crate::sandbox::ACCOUNT_ID,
            "the simulated CAMS of --sandbox",
        )?;
        tracing::info!(
            %account,
            "the account's state in Redis is named after the simulated account"
        );
        return Ok(account);
    }
    let signer = credentials.credentials().await?;
    match credentials::caller_identity(
        &config.credentials,
        &Vars::process(),
        Arc::clone(clock),
        &signer,
    )
    .await
    {
        Ok(identity) => {
            let account = agreed(&identity.account_id, "STS GetCallerIdentity")?;
            tracing::info!(
                %account,
                identity_type = %identity.identity_type,
                arn = %identity.arn,
                confirms = stated.is_some(),
                "the account's state in Redis is named after its UID, as STS GetCallerIdentity gave it"
            );
            Ok(account)
        }
        Err(error) => match stated {
            Some(stated) => {
                tracing::warn!(
                    account = stated,
                    error = %ErrorChain(&error),
                    "could not confirm redis.account with STS GetCallerIdentity; the account's \
                     state in Redis is named after it as stated"
                );
                Ok(stated.to_owned())
            }
            None => Err(StartError::RedisAccountUnknown(error)),
        },
    }
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
