//! The calls the gateway refused itself, by reason and tenant, and those a limit in shadow would
//! have refused. Only the tenants named in the configuration get a `tenant` value of their own;
//! every other caller counts as `_other`, so that no id a caller sends can add a series.

use std::collections::HashMap;

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{
    Labels, Metrics, Rejection, labels,
    labels::{OTHER_TENANT, OWN_SPACE},
};
use crate::domain::TenantId;

pub(super) struct Rejections {
    /// `tenant index × reason`; index 0 is `_other`.
    rows: Vec<[Counter; 11]>,
    /// `tenant index × reason` of the would-be refusals of limits in shadow (the caller's and the
    /// tenant's), by [`shadow_index`].
    shadow: Vec<[Counter; 2]>,
    /// Named tenants by their `CustSpaceId`, to their row in `rows`.
    tenants: HashMap<String, usize>,
}

impl Rejections {
    pub(super) fn register<'a>(
        registry: &mut Registry,
        tenants: impl IntoIterator<Item = &'a TenantId>,
    ) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_rejections",
            "Calls the gateway refused itself, by reason (the ErrorInfo reason) and tenant (named \
             tenants only, the rest as _other)",
            family.clone(),
        );
        let mut tenant_index = HashMap::new();
        let mut tenant_names = vec![OTHER_TENANT.to_owned()];
        for tenant in tenants {
            if tenant_index.contains_key(tenant.as_str()) {
                continue;
            }
            tenant_index.insert(tenant.as_str().to_owned(), tenant_names.len());
            tenant_names.push(match tenant.as_str() {
                "" => OWN_SPACE.to_owned(),
                name => name.to_owned(),
            });
        }
        let shadow_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_shadow_rejections",
            "Calls a limit in shadow would have refused and let through, by reason (the ErrorInfo \
             reason an enforced limit gives) and tenant (named tenants only, the rest as _other)",
            shadow_family.clone(),
        );
        let shadow = tenant_names
            .iter()
            .map(|tenant| {
                SHADOWED.map(|reason| {
                    shadow_family.get_or_create_owned(&labels([
                        ("reason", reason.as_str()),
                        ("tenant", tenant),
                    ]))
                })
            })
            .collect();
        let rows = tenant_names
            .iter()
            .map(|tenant| {
                Rejection::ALL.map(|reason| {
                    family.get_or_create_owned(&labels([
                        ("reason", reason.as_str()),
                        ("tenant", tenant),
                    ]))
                })
            })
            .collect();
        Self {
            rows,
            shadow,
            tenants: tenant_index,
        }
    }
}

/// The refusals a limit in shadow can stand in for.
const SHADOWED: [Rejection; 2] = [Rejection::CallerRateLimited, Rejection::TenantRateLimited];

fn shadow_index(reason: Rejection) -> Option<usize> {
    SHADOWED.iter().position(|r| *r == reason)
}

impl Metrics {
    /// A limit in shadow would have refused a call for `tenant` (the raw `CustSpaceId`) for
    /// `reason`, and let it through; labelled like [`Self::rejected`].
    pub fn shadow_rejected(&self, reason: Rejection, tenant: &str) {
        if let Some(inner) = &self.0 {
            let rejections = &inner.rejections;
            let index = rejections.tenants.get(tenant).copied().unwrap_or(0);
            if let (Some(row), Some(reason)) = (rejections.shadow.get(index), shadow_index(reason))
            {
                row[reason].inc();
            }
        }
    }

    /// The gateway refused a call for `tenant` (the raw `CustSpaceId`, which may not even be
    /// valid): labelled with the tenant only if it is named in the configuration.
    pub fn rejected(&self, reason: Rejection, tenant: &str) {
        if let Some(inner) = &self.0 {
            let rejections = &inner.rejections;
            let index = rejections.tenants.get(tenant).copied().unwrap_or(0);
            if let Some(row) = rejections.rows.get(index) {
                row[reason as usize].inc();
            }
        }
    }
}
