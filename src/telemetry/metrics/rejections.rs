//! The calls the gateway refused itself, by reason and tenant. Only the tenants named in the
//! configuration get a `tenant` value of their own; every other caller counts as `_other`, so
//! that no id a caller sends can add a series.

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
            tenants: tenant_index,
        }
    }
}

impl Metrics {
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
