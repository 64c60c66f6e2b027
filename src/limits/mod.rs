//! Rate limits: each tenant within its own quota, and all tenants together within the account's
//! CAMS quota (5 GetFlow calls per second for the whole account).

mod account;
mod tenant;

use std::{collections::HashMap, time::Duration};

pub use account::{AccountGate, AccountLimits, AccountPermit, AccountRejection, RejectionCause};
pub use tenant::{TenantLimiter, TenantQuota, TenantRejection};
use tokio::time::Instant;

use crate::domain::TenantId;

/// How often idle tenants are forgotten.
pub const EVICT_INTERVAL: Duration = Duration::from_secs(30);

/// The validated `[limits]` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub account_rps: u32,
    pub tenant: TenantQuota,
    pub tenants: HashMap<TenantId, TenantQuota>,
    /// Longest a call waits for account capacity.
    pub max_wait: Duration,
    /// Calls that may wait for account capacity at once.
    pub max_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            account_rps: 5,
            tenant: TenantQuota {
                rps: 5.0,
                burst: std::num::NonZeroU32::new(5).unwrap_or(std::num::NonZeroU32::MIN),
            },
            tenants: HashMap::new(),
            max_wait: Duration::from_millis(2_000),
            max_queue: 256,
        }
    }
}

/// Where the account's quota is kept. In-process today; a shared store (several replicas, one
/// account) is the next implementation.
#[async_trait::async_trait]
pub trait AccountLimiter: Send + Sync {
    async fn acquire(
        &self,
        tenant: &TenantId,
        deadline: Instant,
    ) -> Result<AccountPermit, AccountRejection>;

    /// The account's calls per second, for error details.
    fn rps(&self) -> u32;
}

#[async_trait::async_trait]
impl AccountLimiter for AccountGate {
    async fn acquire(
        &self,
        tenant: &TenantId,
        deadline: Instant,
    ) -> Result<AccountPermit, AccountRejection> {
        AccountGate::acquire(self, tenant, deadline).await
    }

    fn rps(&self) -> u32 {
        self.limits().rps
    }
}

/// Both limits, in the order a call meets them.
pub struct Limits {
    pub tenants: TenantLimiter,
    pub account: Box<dyn AccountLimiter>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("tracked_tenants", &self.tenants.tracked())
            .field("account_rps", &self.account.rps())
            .finish()
    }
}

impl Limits {
    /// Builds the in-process limiters (needs a Tokio runtime for the account dispatcher).
    pub fn in_process(config: &LimitsConfig) -> Self {
        Self {
            tenants: TenantLimiter::new(config.tenant, config.tenants.clone()),
            account: Box::new(AccountGate::new(AccountLimits {
                rps: config.account_rps,
                window: Duration::from_secs(1),
                max_wait: config.max_wait,
                max_queue: config.max_queue,
            })),
        }
    }
}
