//! How the cache served: each answer by where it came from (the `x-cams-cache` header), and the
//! refresh-ahead fetches by result.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{CacheResult, Labels, Metrics, RefreshResult, labels};

pub(super) struct Results([Counter; 5]);

impl Results {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_results",
            "Answers served, by how they were obtained (the x-cams-cache header)",
            family.clone(),
        );
        Self(
            CacheResult::ALL.map(|r| family.get_or_create_owned(&labels([("result", r.as_str())]))),
        )
    }
}

pub(super) struct Refreshes([Counter; 3]);

impl Refreshes {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_refreshes",
            "Refresh-ahead fetches, by result",
            family.clone(),
        );
        Self(
            RefreshResult::ALL
                .map(|r| family.get_or_create_owned(&labels([("result", r.as_str())]))),
        )
    }
}

impl Metrics {
    pub fn served(&self, result: CacheResult) {
        if let Some(inner) = &self.0 {
            inner.cache_results.0[result as usize].inc();
        }
    }

    pub fn refreshed(&self, result: RefreshResult) {
        if let Some(inner) = &self.0 {
            inner.refreshes.0[result as usize].inc();
        }
    }
}
