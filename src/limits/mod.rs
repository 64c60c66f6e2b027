//! Rate limits: each caller ([`caller`]) and each tenant ([`tenant`]) within its own quota, kept
//! by one keyed limiter ([`keyed`]), and all of them together within the account's CAMS quota
//! ([`account`]: 5 calls per second of each CAMS action for the whole account). Each is a seam with an
//! in-process implementation, the default and the test double, and one shared through Redis.

pub mod account;
pub mod caller;
pub mod keyed;
pub mod tenant;

use std::{collections::HashMap, sync::Arc, time::Duration};

pub use account::{
    AccountGate, AccountLimits, AccountQuota, AccountQuotas, AccountRejection, Busy, Claim, Class,
    Lease, LocalSlots, Party, RedisSlots, RejectionCause, SlotLease, SlotStore, Weights,
};
pub use caller::{
    CallerCheck, CallerLimit, CallerLimits, CallerQuotaMap, CallerRejection, GovernorCallerLimits,
    RedisCallerLimits,
};
pub use keyed::{Quota, Standing, Verdict};
pub use tenant::{
    GovernorTenantLimits, RedisTenantLimits, TenantCheck, TenantLimits, TenantRejection,
};

use crate::domain::{Action, TenantId};

/// How often idle tenants are forgotten.
pub const EVICT_INTERVAL: Duration = Duration::from_secs(30);

/// The span in which CAMS counts its quota.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(1);

/// The validated `[limits]` configuration. Its `Default` is the section's defaults
/// (`config::sections::limits`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// GetFlow's budget (`limits.account_rps`), calls per sliding second.
    pub account_rps: u32,
    /// The account's budget of each other CAMS action.
    pub actions: ActionBudgets,
    pub tenant: Quota,
    pub tenants: HashMap<TenantId, Quota>,
    /// Tenants' weights in the account queue; 1 for any not named.
    pub weights: HashMap<TenantId, f64>,
    /// Callers' weights in the account queue, by key name or identity (the `weight` of their
    /// `[[auth.keys]]` or `[[auth.identities]]` entry); 1 for any not named.
    pub callers: HashMap<Arc<str>, f64>,
    /// Longest a call waits for account capacity.
    pub max_wait: Duration,
    /// Calls that may wait for account capacity at once.
    pub max_queue: usize,
    /// The tenant and caller limits evaluated without refusing anyone.
    pub shadow: ShadowLimits,
}

/// Limits in shadow: evaluated, a would-be refusal counted
/// (`cams_flows_shadow_rejections_total`) and logged, but the call goes on. The account's quota is
/// never in shadow: CAMS would throttle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowLimits {
    /// Every tenant's and every caller's limit (`limits.shadow`).
    pub all: bool,
    /// Tenants whose own entry says (`limits.tenants."<id>".shadow`), either way: `false` keeps
    /// a tenant enforced under `limits.shadow`. A caller's own is on its `[[auth.keys]]` or
    /// `[[auth.identities]]` entry.
    pub tenants: HashMap<TenantId, bool>,
}

impl ShadowLimits {
    /// Whether `tenant`'s limit is in shadow.
    pub fn tenant(&self, tenant: &TenantId) -> bool {
        self.tenants.get(tenant).copied().unwrap_or(self.all)
    }
}

impl LimitsConfig {
    /// The tenants' and the callers' weights in the account queue.
    pub fn weights(&self) -> Weights {
        Weights {
            tenants: self.weights.clone(),
            callers: self.callers.clone(),
        }
    }

    /// The account's limits for `action`.
    pub fn account(&self, action: Action) -> AccountLimits {
        AccountLimits {
            rps: match action {
                Action::GetFlow => self.account_rps,
                Action::ListFlow => self.actions.list_flow,
                Action::GetFlowPreviewUrl => self.actions.get_flow_preview_url,
                Action::GetFlowJsonAsset => self.actions.get_flow_json_asset,
            },
            window: QUOTA_WINDOW,
            max_wait: self.max_wait,
            max_queue: self.max_queue,
        }
    }
}

/// The account's budget of each CAMS action but GetFlow, calls per sliding second
/// (`limits.actions.<Action>.account_rps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionBudgets {
    pub list_flow: u32,
    pub get_flow_preview_url: u32,
    pub get_flow_json_asset: u32,
}
