//! Tenant limits shared by every replica: the keyed limiter in Redis
//! ([`RedisKeyed`](crate::limits::keyed::RedisKeyed)), one GCRA state per tenant under
//! `<prefix>:<account tag>:tenant:<id>`, taken in batches each replica spends locally. Over any
//! span `T` the service admits at most `burst + rate × (T + 1 s)` of a tenant's calls.

use std::{collections::HashMap, fmt};

use futures_util::future::BoxFuture;

use super::{TenantCheck, TenantLimits};
use crate::{
    domain::TenantId,
    limits::keyed::{Kind, Quota, Quotas, RedisKeyed, Standing},
    store::Redis,
};

pub struct RedisTenantLimits(RedisKeyed<TenantId>);

impl fmt::Debug for RedisTenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisTenantLimits").field(&self.0).finish()
    }
}

impl RedisTenantLimits {
    /// `account_tag` keeps two accounts' tenants apart in one Redis.
    pub fn new(
        redis: Redis,
        account_tag: &str,
        default: Quota,
        overrides: HashMap<TenantId, Quota>,
    ) -> Self {
        let quotas = Quotas {
            default: Some(default),
            each: overrides,
        };
        Self(RedisKeyed::new(redis, account_tag, Kind::Tenant, quotas))
    }
}

impl TenantLimits for RedisTenantLimits {
    fn check<'a>(&'a self, tenant: &'a TenantId) -> TenantCheck<'a> {
        self.0.check(tenant)
    }

    fn peek<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Option<Standing>> {
        Box::pin(self.0.peek(tenant))
    }

    fn evict_idle(&self) {
        self.0.evict_idle();
    }

    fn tracked(&self) -> usize {
        self.0.tracked()
    }

    fn reconfigure(&self, default: Quota, overrides: HashMap<TenantId, Quota>) {
        self.0.reconfigure(Quotas {
            default: Some(default),
            each: overrides,
        });
    }
}
