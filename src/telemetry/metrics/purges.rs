//! Purges of cached answers: how many, of what scope, where they began (here, or at another
//! replica whose notice this one heard), and how many entries each tier dropped.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{Labels, Metrics, labels};

/// Where a purge began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeOrigin {
    /// Asked of this replica (`FlowAdminService/InvalidateFlows`).
    Local,
    /// Another replica's notice.
    Peer,
}

impl PurgeOrigin {
    const ALL: [Self; 2] = [Self::Local, Self::Peer];

    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
        }
    }
}

const SCOPES: [&str; 2] = ["flows", "tenant"];
const TIERS: [&str; 2] = ["local", "shared"];

pub(super) struct Purges {
    /// By scope (flows, tenant), then by origin.
    purges: [[Counter; 2]; 2],
    /// By tier (local, shared).
    entries: [Counter; 2],
}

impl Purges {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let purges = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_purges",
            "Purges of cached answers, by scope (named flows or a whole tenant) and origin (asked \
             of this replica, or another replica's notice)",
            purges.clone(),
        );
        let entries = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_purged_entries",
            "Cached answers dropped by purges, by tier (this replica's own, or the one the \
             replicas share)",
            entries.clone(),
        );
        Self {
            purges: SCOPES.map(|scope| {
                PurgeOrigin::ALL.map(|origin| {
                    purges.get_or_create_owned(&labels([
                        ("scope", scope),
                        ("origin", origin.as_str()),
                    ]))
                })
            }),
            entries: TIERS.map(|tier| entries.get_or_create_owned(&labels([("tier", tier)]))),
        }
    }
}

impl Metrics {
    /// One purge (of a whole tenant, or of named flows) that began at `origin`, and the entries
    /// it dropped here from the local and the shared tier.
    pub fn purged(&self, tenant_wide: bool, origin: PurgeOrigin, local: u64, shared: u64) {
        if let Some(inner) = &self.0 {
            inner.purges.purges[usize::from(tenant_wide)][origin as usize].inc();
            inner.purges.entries[0].inc_by(local);
            inner.purges.entries[1].inc_by(shared);
        }
    }

    /// The whole local tier dropped for other replicas' purges whose notices this replica
    /// missed: counted as one tenant-wide purge at a peer's word, which it covers (so that a
    /// replica that made up for missed notices does not look as if it had ignored them).
    pub fn purged_everything(&self, local: u64) {
        if let Some(inner) = &self.0 {
            inner.purges.purges[1][PurgeOrigin::Peer as usize].inc();
            inner.purges.entries[0].inc_by(local);
        }
    }
}
