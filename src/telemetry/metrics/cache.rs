//! How the cache served: each answer by where it came from (the `x-cams-cache` header), and the
//! refresh-ahead fetches by result.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{CacheResult, Labels, Metrics, RefreshResult, labels};
use crate::domain::Action;

/// By [`Action::index`], then by result.
pub(super) struct Results([[Counter; 5]; 4]);

impl Results {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_results",
            "Answers served, by the CAMS action that answers them and how they were obtained (the \
             x-cams-cache header)",
            family.clone(),
        );
        Self(Action::ALL.map(|action| {
            CacheResult::ALL.map(|r| {
                family.get_or_create_owned(&labels([
                    ("action", action.cams_name()),
                    ("result", r.as_str()),
                ]))
            })
        }))
    }
}

/// By [`Action::index`], then by result.
pub(super) struct Refreshes([[Counter; 3]; 4]);

impl Refreshes {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_refreshes",
            "Refresh-ahead fetches, by CAMS action and result",
            family.clone(),
        );
        Self(Action::ALL.map(|action| {
            RefreshResult::ALL.map(|r| {
                family.get_or_create_owned(&labels([
                    ("action", action.cams_name()),
                    ("result", r.as_str()),
                ]))
            })
        }))
    }
}

impl Metrics {
    pub fn served(&self, action: Action, result: CacheResult) {
        if let Some(inner) = &self.0 {
            inner.cache_results.0[action.index()][result as usize].inc();
        }
    }

    pub fn refreshed(&self, action: Action, result: RefreshResult) {
        if let Some(inner) = &self.0 {
            inner.refreshes.0[action.index()][result as usize].inc();
        }
    }
}
