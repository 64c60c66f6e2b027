//! `[limits]`: the account's CAMS quota and each tenant's share of it.

use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    time::Duration,
};

use super::{bad, bounded, valid_defaults};
use crate::{
    config::{ConfigError, keys::settings, sections::CacheSettings},
    domain::TenantId,
    limits::{ActionBudgets, LimitsConfig, Quota, ShadowLimits},
};

settings! {
    /// `[limits]`: the account's CAMS quota and each tenant's share of it.
    section struct LimitsSettings in "limits." {
        /// The account's CAMS GetFlow budget: GetFlow calls to CAMS in any sliding second, shared
        /// by all tenants and replicas (the other reads' budgets are limits.actions.*)
        key(value_name = "N", alias = "account-rps")
        account_rps: u32 = 5,
        /// Default per-tenant (CustSpaceId) rate, calls per second; fractions allowed
        key(value_name = "RATE", alias = "tenant-rps")
        tenant_rps: f64 = 5.0,
        /// Default per-tenant burst
        key(value_name = "N", alias = "tenant-burst")
        tenant_burst: u32 = 5,
        /// Longest a call waits for account capacity; 0 never waits
        key(value_name = "MS", alias = "max-wait-ms")
        max_wait_ms: u64 = 2_000,
        /// Calls that may wait for account capacity at once
        key(value_name = "N", alias = "max-queue")
        max_queue: usize = 256,
        /// Evaluate every tenant's and caller's limit without refusing: a would-be refusal is
        /// counted (cams_flows_shadow_rejections_total) and logged, the call goes on. The
        /// account's CAMS quota is always enforced
        key(value_name = "BOOL")
        #[serde(deserialize_with = "crate::config::settings::boolish")]
        shadow: bool = false,
        /// The account's budget of each other CAMS action
        section actions: ActionsSettings,
        /// Per-tenant overrides, one table per CustSpaceId (`""` is the account's own space)
        file_only(value_name = "TABLE", entries = TenantSettings::FIELDS)
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        tenants: BTreeMap<String, TenantSettings>,
    }
}

settings! {
    /// `[limits.actions]`: CAMS counts each operation's calls on their own, 5 per second each for
    /// the whole account; so does the gateway.
    section struct ActionsSettings in "limits.actions." {
        section #[serde(rename = "ListFlow")] list_flow: ListFlowSettings,
        section #[serde(rename = "GetFlowPreviewUrl")] get_flow_preview_url: PreviewUrlSettings,
        section #[serde(rename = "GetFlowJSONAssest")] get_flow_json_asset: JsonAssetSettings,
    }
}

settings! {
    /// `[limits.actions.ListFlow]`.
    section struct ListFlowSettings in "limits.actions.ListFlow." {
        /// The account's CAMS ListFlow budget: calls in any sliding second, all replicas together
        key(value_name = "N")
        account_rps: u32 = 5,
    }
}

settings! {
    /// `[limits.actions.GetFlowPreviewUrl]`.
    section struct PreviewUrlSettings in "limits.actions.GetFlowPreviewUrl." {
        /// The account's CAMS GetFlowPreviewUrl budget: calls in any sliding second, all replicas
        /// together
        key(value_name = "N")
        account_rps: u32 = 5,
    }
}

settings! {
    /// `[limits.actions.GetFlowJSONAssest]` (CAMS spells the action so).
    section struct JsonAssetSettings in "limits.actions.GetFlowJSONAssest." {
        /// The account's CAMS GetFlowJSONAssest budget: calls in any sliding second, all replicas
        /// together
        key(value_name = "N")
        account_rps: u32 = 5,
    }
}

settings! {
    /// One tenant's override; a part left out is the default tenant's.
    entry struct TenantSettings in "limits.tenants.\"<id>\"." {
        /// The tenant's rate, calls per second (may raise or lower the default)
        key(value_name = "RATE", default = "limits.tenant_rps")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rps: Option<f64>,
        /// The tenant's burst
        key(value_name = "N", default = "limits.tenant_burst")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u32>,
        /// The tenant's share of the account queue against the other tenants of the same
        /// caller, 0.01 to 1000
        key(value_name = "WEIGHT", default = "1")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<f64>,
        /// Evaluate the tenant's limit without refusing (counted and logged, see limits.shadow)
        key(value_name = "BOOL", default = "limits.shadow")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<bool>,
    }
}

impl LimitsSettings {
    /// `cached`: with a cache, a tenant may be faster than the account (hits cost no quota).
    /// The callers' weights are the `[auth]` entries' ([`super::AuthSettings::validate`]).
    pub(super) fn validate(&self, cached: bool) -> Result<LimitsConfig, ConfigError> {
        let account_rps = bounded("limits.account_rps", self.account_rps, 1..=1_000_000)?;
        let uncached_account_rps = (!cached).then_some(account_rps);
        let tenant = quota(
            "limits.tenant_rps",
            "limits.tenant_burst",
            self.tenant_rps,
            self.tenant_burst,
            uncached_account_rps,
        )?;
        let mut tenants = HashMap::new();
        let mut weights = HashMap::new();
        let mut shadow = ShadowLimits {
            all: self.shadow,
            tenants: HashMap::new(),
        };
        for (id, t) in &self.tenants {
            let key = format!("limits.tenants.{id:?}");
            let tenant_id = TenantId::parse(id.as_str()).map_err(|e| bad(&key, e))?;
            if let Some(w) = t.weight {
                weights.insert(tenant_id.clone(), weight(&format!("{key}.weight"), w)?);
            }
            if let Some(own) = t.shadow {
                shadow.tenants.insert(tenant_id.clone(), own);
            }
            if t.rps.is_some() || t.burst.is_some() {
                let q = tenant_override(&key, t, tenant, uncached_account_rps)?;
                tenants.insert(tenant_id, q);
            }
        }
        if self.max_wait_ms > 60_000 {
            return Err(bad(
                "limits.max_wait_ms",
                format!("{} is over one minute", self.max_wait_ms),
            ));
        }
        if self.max_queue > 1_000_000 {
            return Err(bad(
                "limits.max_queue",
                format!("{} is over 1000000", self.max_queue),
            ));
        }
        let action = |key: &str, rps: u32| bounded(key, rps, 1..=1_000_000);
        let actions = ActionBudgets {
            list_flow: action(
                "limits.actions.ListFlow.account_rps",
                self.actions.list_flow.account_rps,
            )?,
            get_flow_preview_url: action(
                "limits.actions.GetFlowPreviewUrl.account_rps",
                self.actions.get_flow_preview_url.account_rps,
            )?,
            get_flow_json_asset: action(
                "limits.actions.GetFlowJSONAssest.account_rps",
                self.actions.get_flow_json_asset.account_rps,
            )?,
        };
        Ok(LimitsConfig {
            account_rps,
            actions,
            tenant,
            tenants,
            weights,
            callers: HashMap::new(),
            max_wait: Duration::from_millis(self.max_wait_ms),
            max_queue: self.max_queue,
            shadow,
        })
    }
}

/// The product's limits: the `[limits]` defaults (with the default cache).
impl Default for LimitsConfig {
    fn default() -> Self {
        let cached = CacheSettings::default().ttl_ms > 0;
        valid_defaults("limits", LimitsSettings::default().validate(cached))
    }
}

/// A share of the account queue (a tenant's or a caller's).
pub(super) fn weight(key: &str, weight: f64) -> Result<f64, ConfigError> {
    if weight.is_finite() && (0.01..=1000.0).contains(&weight) {
        Ok(weight)
    } else {
        Err(bad(key, format!("{weight} must be between 0.01 and 1000")))
    }
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
/// The lowest rate a limit may have: below it a call's spacing outgrows what a limiter counts
/// in (and a typo such as `1e-20` is more likely than a wish for one call in a thousand years).
const MIN_RPS: f64 = 1.0 / 86_400.0;

pub(super) fn quota(
    rps_key: &str,
    burst_key: &str,
    rps: f64,
    burst: u32,
    uncached_account_rps: Option<u32>,
) -> Result<Quota, ConfigError> {
    if !rps.is_finite() || rps < MIN_RPS {
        return Err(bad(
            rps_key,
            format!(
                "{rps} must be a positive number of calls per second, at least one a day (0.0000116)"
            ),
        ));
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
