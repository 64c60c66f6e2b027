//! Configuration reloads, by result: applied, or refused (the running settings kept).

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{Labels, Metrics, labels};

/// `[ok, error]`.
pub(super) struct Reloads([Counter; 2]);

impl Reloads {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_config_reloads",
            "Reloads of the configuration file (on SIGHUP or when it changes), by result: ok \
             (applied) or error (refused: the running settings are kept)",
            family.clone(),
        );
        Self(
            ["ok", "error"].map(|result| family.get_or_create_owned(&labels([("result", result)]))),
        )
    }
}

impl Metrics {
    /// A reload of the configuration file, applied (`ok`) or refused.
    pub fn config_reloaded(&self, ok: bool) {
        if let Some(inner) = &self.0 {
            inner.reloads.0[usize::from(!ok)].inc();
        }
    }
}
