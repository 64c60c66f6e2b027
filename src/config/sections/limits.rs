//! The account's CAMS quota and each tenant's share of it.

use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use super::{bad, bounded};
use crate::{
    config::{
        ConfigError,
        settings::{LimitsSettings, TenantSettings},
    },
    domain::TenantId,
    limits::{LimitsConfig, Quota},
};

/// `cached`: with a cache, a tenant may be faster than the account (hits cost no quota).
pub(super) fn limits(s: &LimitsSettings, cached: bool) -> Result<LimitsConfig, ConfigError> {
    let account_rps = bounded("limits.account_rps", s.account_rps, 1..=1_000_000)?;
    let uncached_account_rps = (!cached).then_some(account_rps);
    let tenant = quota(
        "limits.tenant_rps",
        "limits.tenant_burst",
        s.tenant_rps,
        s.tenant_burst,
        uncached_account_rps,
    )?;
    let mut tenants = HashMap::new();
    let mut weights = HashMap::new();
    for (id, t) in &s.tenants {
        let key = format!("limits.tenants.{id:?}");
        let tenant_id = TenantId::parse(id.as_str()).map_err(|e| bad(&key, e))?;
        if let Some(weight) = t.weight {
            if !weight.is_finite() || !(0.01..=1000.0).contains(&weight) {
                return Err(bad(
                    format!("{key}.weight"),
                    format!("{weight} must be between 0.01 and 1000"),
                ));
            }
            weights.insert(tenant_id.clone(), weight);
        }
        if t.rps.is_some() || t.burst.is_some() {
            let q = tenant_override(&key, t, tenant, uncached_account_rps)?;
            tenants.insert(tenant_id, q);
        }
    }
    if s.max_wait_ms > 60_000 {
        return Err(bad(
            "limits.max_wait_ms",
            format!("{} is over one minute", s.max_wait_ms),
        ));
    }
    if s.max_queue > 1_000_000 {
        return Err(bad(
            "limits.max_queue",
            format!("{} is over 1000000", s.max_queue),
        ));
    }
    Ok(LimitsConfig {
        account_rps,
        tenant,
        tenants,
        weights,
        max_wait: Duration::from_millis(s.max_wait_ms),
        max_queue: s.max_queue,
    })
}

/// An override's unset parts fall back to the default tenant quota.
fn tenant_override(
    key: &str,
    t: &TenantSettings,
    fallback: Quota,
    uncached_account_rps: Option<u32>,
) -> Result<Quota, ConfigError> {
    quota(
        &format!("{key}.rps"),
        &format!("{key}.burst"),
        t.rps.unwrap_or(fallback.rps),
        t.burst.unwrap_or(fallback.burst.get()),
        uncached_account_rps,
    )
}

/// `uncached_account_rps` is the account's rate when every call goes to CAMS (no cache), which
/// no tenant can exceed.
pub(super) fn quota(
    rps_key: &str,
    burst_key: &str,
    rps: f64,
    burst: u32,
    uncached_account_rps: Option<u32>,
) -> Result<Quota, ConfigError> {
    if !rps.is_finite() || rps <= 0.0 {
        return Err(bad(rps_key, format!("{rps} must be a positive number")));
    }
    if let Some(account_rps) = uncached_account_rps.filter(|a| rps > f64::from(*a)) {
        return Err(bad(
            rps_key,
            format!(
                "{rps} is above limits.account_rps ({account_rps}) with the cache off \
                 (cache.ttl_ms = 0): every call goes to CAMS, so a tenant can never be served \
                 faster than the account"
            ),
        ));
    }
    let burst = NonZeroU32::new(burst)
        .filter(|b| b.get() <= 100_000)
        .ok_or_else(|| bad(burst_key, format!("{burst} must be between 1 and 100000")))?;
    Ok(Quota { rps, burst })
}
