//! Gauges read at scrape time from the state their owners already keep (the in-flight
//! semaphore, the account queue, the credentials' expiry, the measured clock skew, whether Redis
//! answers): nothing on the call path updates them, and a value that does not exist (temporary
//! credentials' lifetime when the keys never expire) is left out rather than shown as 0.

use std::sync::{Arc, RwLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};

/// Reads the gauge's value now; `None` leaves the series out of this scrape.
pub type Read = Box<dyn Fn() -> Option<f64> + Send + Sync>;

struct Probe {
    name: &'static str,
    help: &'static str,
    /// One fixed label, if any (`store="cache"`).
    label: Option<(&'static str, &'static str)>,
    read: Read,
}

/// The probes registered so far, encoded on every scrape, grouped by name.
#[derive(Clone, Default)]
pub(super) struct Probes {
    probes: Arc<RwLock<Vec<Probe>>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

impl Probes {
    pub(super) fn add(
        &self,
        name: &'static str,
        help: &'static str,
        label: Option<(&'static str, &'static str)>,
        read: Read,
    ) {
        let mut probes = self
            .probes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        probes.push(Probe {
            name,
            help,
            label,
            read,
        });
    }
}

impl Collector for Probes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let probes = self
            .probes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names: Vec<&'static str> = probes.iter().map(|p| p.name).collect();
        names.dedup();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let values: Vec<_> = probes
                .iter()
                .filter(|p| p.name == name)
                .filter_map(|p| (p.read)().map(|v| (p, v)))
                .collect();
            let Some((first, _)) = values.first() else {
                continue;
            };
            let mut family = encoder.encode_descriptor(
                name,
                first.help,
                None,
                ConstGauge::new(0.0).metric_type(),
            )?;
            for (probe, value) in values {
                let gauge = ConstGauge::new(value);
                let labels: Vec<(&str, &str)> = probe.label.into_iter().collect();
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
