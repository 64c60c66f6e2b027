//! Purging cached answers: the named flows of a tenant, or every answer of a tenant, from both
//! tiers and every replica.
//!
//! The replica that is asked drops the entries from the shared tier (found through the tenant's
//! index, `keys.rs`) and from its own, then publishes a [`Notice`] on the channel the replicas
//! already listen to for fetch-lock releases (`lock/redis.rs`); each other replica drops its own
//! copies when it hears it. A notice is JSON that no lock key can be mistaken for, so replicas of
//! an earlier release, which read every message as a lock key, wake nobody with it.
//!
//! A notice sent while a replica's subscription is down is lost; each purge also moves the
//! account's purge counter on, and a replica that subscribes again and finds it moved past the
//! last notice it heard (or cannot read it) drops its whole tier ([`follow`]); so does one that
//! dropped a notice because too many were queued ([`Heard::Missed`]).
//!
//! A fetch that was under way when the purge came must not put back the answer it got before
//! the flow changed: each purge moves the cache's epoch on, a fetch notes the epoch before it
//! asks CAMS, and an answer fetched under an older epoch is passed to its callers but not kept
//! (nor is an entry read from the shared tier while a purge ran). The epoch covers this
//! replica's tier; the shared tier has a mark of its own, the account's purge counter as the
//! fetch began, against which it refuses the answer if its tenant was purged since, on any
//! replica (`redis/mod.rs`).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::FlowCache;
use crate::{
    domain::{FlowId, Read, TenantId},
    telemetry::metrics::{Metrics, PurgeOrigin},
};

/// What a purge drops: the named flows' answers (GetFlow, preview URL, JSON asset) and the
/// tenant's ListFlows pages, which may list them; with no flows named, every answer of the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub tenant: TenantId,
    pub flows: Vec<FlowId>,
}

impl Scope {
    /// Every cached answer of `tenant`.
    pub fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant,
            flows: Vec::new(),
        }
    }

    pub fn is_tenant_wide(&self) -> bool {
        self.flows.is_empty()
    }

    /// Whether the entry of `key` is one this purge drops.
    pub fn covers(&self, key: &Read) -> bool {
        if key.tenant != self.tenant {
            return false;
        }
        match key.flow_id() {
            // A page of the list may name one of the flows, or name it as it was.
            None => true,
            Some(flow) => self.is_tenant_wide() || self.flows.contains(flow),
        }
    }
}

/// How many entries a purge dropped, in each tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// From this replica's own tier.
    pub local: u64,
    /// From the tier the replicas share.
    pub shared: u64,
}

/// The cache's purge epoch: moved on by every purge, noted by a fetch before it asks CAMS.
#[derive(Debug, Clone, Default)]
pub(crate) struct Epochs(Arc<AtomicU64>);

/// One reading of [`Epochs`], and of the shared tier's purge mark when the fetch that noted it
/// asked for one (`FlowCache::began`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    local: u64,
    pub(crate) shared: Option<u64>,
}

impl Epochs {
    pub(crate) fn now(&self) -> Epoch {
        Epoch {
            local: self.0.load(Ordering::Acquire),
            shared: None,
        }
    }

    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether no purge began here since `then`.
    pub(crate) fn unchanged_since(&self, then: Epoch) -> bool {
        self.now().local == then.local
    }
}

/// A purge as one replica tells the others. `from` is the sender, which ignores its own notice;
/// `account` is the account's tag, so that replicas of another account sharing the Redis (and
/// its channel) ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    pub from: String,
    pub account: String,
    /// The account's purge counter after this purge (see [`Heard::Subscribed`]).
    #[serde(default)]
    pub seq: u64,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<String>,
}

/// What the subscription to the replicas' channel hears, for [`follow`].
#[derive(Debug)]
pub(crate) enum Heard {
    Purge(Notice),
    /// The subscription is (again) in place. Notices sent while it was not are lost: the
    /// account's purge counter, compared with the last notice heard, tells whether there were
    /// any.
    Subscribed,
    /// Notices were heard but dropped (too many queued): which entries they covered is not
    /// known.
    Missed,
}

/// The account's purge counter in the shared tier, read by [`follow`].
#[async_trait::async_trait]
pub(crate) trait PurgeCounter: Send + Sync {
    async fn purges_so_far(&self) -> Result<u64, crate::store::StoreError>;
}

/// The wire form: `{"purge":{…}}`. A lock key, the channel's other messages, starts with the
/// configured key prefix and never parses as this.
#[derive(Serialize, Deserialize)]
struct Wire {
    purge: Notice,
}

impl Notice {
    pub(crate) fn of(scope: &Scope, from: &str, account: &str, seq: u64) -> Self {
        Self {
            from: from.to_owned(),
            account: account.to_owned(),
            seq,
            tenant: scope.tenant.as_str().to_owned(),
            flows: scope.flows.iter().map(|f| f.as_str().to_owned()).collect(),
        }
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(&Wire {
            purge: self.clone(),
        })
        .unwrap_or_default()
    }

    /// The notice a message carries, if it is one.
    pub(crate) fn decode(message: &str) -> Option<Self> {
        if !message.starts_with("{\"purge\"") {
            return None;
        }
        serde_json::from_str::<Wire>(message).ok().map(|w| w.purge)
    }

    /// The scope it names; `None` for ids that do not parse (another release's, or garbage).
    pub(crate) fn scope(&self) -> Option<Scope> {
        Some(Scope {
            tenant: TenantId::parse(self.tenant.as_str()).ok()?,
            flows: self
                .flows
                .iter()
                .map(|f| FlowId::parse(f.as_str()).ok())
                .collect::<Option<_>>()?,
        })
    }
}

/// Applies the other replicas' purge notices to this replica's tier, until the channel closes.
/// `me` is this replica's name in its own notices, `account` its account's tag.
///
/// A notice sent while this replica's subscription was down is lost. So each time the
/// subscription is made again the account's purge counter is read: if it moved past the last
/// notice heard, purges were missed, and which entries they covered is not known: the whole local
/// tier is dropped (it refills from the shared tier, which the purges did reach).
pub(crate) async fn follow(
    cache: FlowCache,
    mut heard: mpsc::Receiver<Heard>,
    counter: std::sync::Arc<dyn PurgeCounter>,
    (me, account): (String, String),
    metrics: Metrics,
) {
    // The counter as of the last notice heard; unknown until the first subscription.
    let mut seen: Option<u64> = None;
    while let Some(next) = heard.recv().await {
        match next {
            Heard::Purge(notice) => {
                if notice.account != account {
                    continue;
                }
                seen = Some(notice.seq);
                if notice.from != me {
                    applied(&cache, &notice, &metrics).await;
                }
            }
            Heard::Subscribed => {
                let missed = match counter.purges_so_far().await {
                    Ok(now) => {
                        let missed = match seen {
                            Some(before) => now != before,
                            // Entries cached before the first subscription may predate a purge.
                            None => cache.local_entries() > 0,
                        };
                        seen = Some(now);
                        missed
                    }
                    // Whether purges were missed cannot be known: as if they were.
                    Err(_) => true,
                };
                if missed {
                    let local = dropped_all(&cache, &metrics).await;
                    tracing::warn!(
                        dropped = local,
                        "purges were made while this replica was not subscribed to their \
                         notices (or the count of purges could not be read): its own cache is \
                         dropped (it refills from the shared cache)"
                    );
                }
            }
            Heard::Missed => {
                let local = dropped_all(&cache, &metrics).await;
                tracing::warn!(
                    dropped = local,
                    "purge notices were dropped (too many queued): this replica's own cache is \
                     dropped (it refills from the shared cache)"
                );
            }
        }
    }
}

/// Drops the whole local tier: purges were made that this replica did not hear of, or may have
/// been. How many entries it held.
async fn dropped_all(cache: &FlowCache, metrics: &Metrics) -> u64 {
    let local = cache.purge_all_local().await;
    metrics.purged_everything(local);
    local
}

async fn applied(cache: &FlowCache, notice: &Notice, metrics: &Metrics) {
    let Some(scope) = notice.scope() else {
        tracing::warn!("a purge notice names ids this release cannot read; ignored");
        return;
    };
    let local = cache.purge_local(&scope).await;
    metrics.purged(scope.is_tenant_wide(), PurgeOrigin::Peer, local, 0);
    tracing::info!(
        tenant = scope.tenant.as_str(),
        flows = scope.flows.len(),
        local,
        "cached answers purged at another replica's notice"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ListPage, What};

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).expect("tenant")
    }

    fn flow(f: &str) -> FlowId {
        FlowId::parse(f).expect("flow")
    }

    #[test]
    fn a_named_purge_covers_the_flows_reads_and_the_tenants_lists_only() {
        let scope = Scope {
            tenant: tenant("t"),
            flows: vec![flow("f")],
        };
        let read = |t: &str, what: What| Read {
            tenant: tenant(t),
            what,
        };
        assert!(scope.covers(&read("t", What::Flow(flow("f")))));
        assert!(scope.covers(&read("t", What::PreviewUrl(flow("f")))));
        assert!(scope.covers(&read("t", What::JsonAsset(flow("f")))));
        let page = What::List(ListPage {
            flow_name: String::new(),
            index: 1,
            size: 20,
        });
        assert!(scope.covers(&read("t", page.clone())));
        assert!(!scope.covers(&read("t", What::Flow(flow("g")))));
        assert!(!scope.covers(&read("u", What::Flow(flow("f")))));
        assert!(!scope.covers(&read("u", page)));
        let all = Scope::tenant(tenant("t"));
        assert!(all.covers(&read("t", What::Flow(flow("g")))));
        assert!(!all.covers(&read("", What::Flow(flow("g")))));
    }

    /// A purge counter that cannot be read.
    struct Unreadable;

    #[async_trait::async_trait]
    impl PurgeCounter for Unreadable {
        async fn purges_so_far(&self) -> Result<u64, crate::store::StoreError> {
            Err(crate::store::StoreError::NotConnected)
        }
    }

    /// What is left in a cache holding one entry after [`follow`] has heard `heard`, then the
    /// end of the channel.
    async fn left_after(heard: Vec<Heard>) -> u64 {
        let cache = FlowCache::new(
            crate::cache::CacheConfig {
                ttl: std::time::Duration::from_secs(30),
                ..crate::cache::CacheConfig::default()
            },
            None,
            crate::clock::system(),
        )
        .expect("on");
        let read = Read::flow(tenant("t"), flow("f"));
        let answer = Arc::new(crate::domain::Answer {
            data: crate::domain::Data::Flow(crate::domain::Flow {
                flow_id: "f".into(),
                flow_name: "n".into(),
                raw_status: "DRAFT".into(),
                raw_categories: Vec::new(),
                json_version: String::new(),
                data_api_version: String::new(),
                preview_url: String::new(),
                preview_url_expires: None,
                endpoint_uri: String::new(),
            }),
            request_id: "r".into(),
        });
        cache
            .keep(
                read.clone(),
                answer,
                crate::cache::lock::WritePermit::alone(),
                cache.epoch(),
            )
            .await;
        assert!(cache.local.lookup(&read).await.is_some(), "kept");
        let (sender, receiver) = mpsc::channel(8);
        for h in heard {
            sender.try_send(h).expect("room");
        }
        drop(sender);
        follow(
            cache.clone(),
            receiver,
            Arc::new(Unreadable),
            ("me".into(), "acct".into()),
            Metrics::new(std::iter::empty()),
        )
        .await;
        u64::from(cache.local.lookup(&read).await.is_some())
    }

    #[tokio::test]
    async fn dropped_notices_or_an_unreadable_counter_drop_the_local_tier() {
        assert_eq!(left_after(vec![]).await, 1, "nothing heard: kept");
        assert_eq!(left_after(vec![Heard::Missed]).await, 0);
        assert_eq!(left_after(vec![Heard::Subscribed]).await, 0);
    }

    #[test]
    fn notices_round_trip_and_lock_keys_are_not_notices() {
        let scope = Scope {
            tenant: tenant("cams-a"),
            flows: vec![flow("1"), flow("2")],
        };
        let notice = Notice::of(&scope, "me", "acct:1", 7);
        let decoded = Notice::decode(&notice.encode()).expect("a notice");
        assert_eq!(decoded, notice);
        assert_eq!(decoded.scope(), Some(scope));
        assert_eq!(Notice::decode("cams-flows:v1:lock:{acct:1:1:t:f}"), None);
        assert_eq!(Notice::decode("{\"purge\":1}"), None);
        let own_space = Notice::of(&Scope::tenant(TenantId::own_space()), "me", "a", 1);
        assert_eq!(
            Notice::decode(&own_space.encode()).and_then(|n| n.scope()),
            Some(Scope::tenant(TenantId::own_space()))
        );
    }
}
