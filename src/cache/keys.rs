//! Where the shared tier keeps an entry and its fetch lock in Redis. One name per (account,
//! tenant, read), used by the tier and the lock alike. A GetFlow answer is
//! `<prefix>:v1:flow:{<account>:<tenant length>:<tenant>:<flow id>}` and its lock
//! `<prefix>:v1:lock:{…}` (the names of earlier releases, so that replicas of both share them);
//! the other reads say what they are in front: `<prefix>:v1:preview:{…}` and
//! `<prefix>:v1:lock:preview:{…}`, `asset`, and `list` whose name also holds the filter's length,
//! the filter and the page. The braces make the name a hash tag (in a Redis Cluster an entry and
//! its lock share a slot, and the entries spread over the slots); the lengths keep the name
//! unambiguous whatever the ids contain, so tenants never share an entry, nor accounts, nor two
//! reads.
//!
//! Each tenant also has an index of its entries, `<prefix>:v1:index:{<account>:<tenant length>:
//! <tenant>}`, a sorted set of their names scored by when they end, so that a purge finds a
//! tenant's entries without a `SCAN` of every server (a tenant's entries are spread over the
//! slots), and the hit path reads nothing more.

use crate::{
    domain::{FlowId, Read, TenantId, What},
    store::Redis,
};

/// Bump when the encoding of entries changes: replicas of two versions then use different keys.
const VERSION: &str = "v1";

#[derive(Debug, Clone)]
pub(crate) struct SharedKeys {
    /// `<prefix>:v1:`
    base: String,
    account_tag: String,
}

impl SharedKeys {
    pub(crate) fn new(redis: &Redis, account_tag: &str) -> Self {
        Self {
            base: redis.key(&format!("{VERSION}:")),
            account_tag: account_tag
                .trim_matches(|c| c == '{' || c == '}')
                .to_owned(),
        }
    }

    /// The kind's word (GetFlow's is `flow` for values and nothing for locks) and the entry's
    /// hash tag.
    fn name(&self, key: &Read) -> (&'static str, String) {
        let tenant = key.tenant.as_str();
        let (kind, rest) = match &key.what {
            What::Flow(id) => ("flow", id.as_str().to_owned()),
            What::PreviewUrl(id) => ("preview", id.as_str().to_owned()),
            What::JsonAsset(id) => ("asset", id.as_str().to_owned()),
            What::List(page) => (
                "list",
                format!(
                    "{}:{}:{}:{}",
                    page.flow_name.len(),
                    page.flow_name,
                    page.index,
                    page.size
                ),
            ),
        };
        let tag = format!("{{{}:{}:{tenant}:{rest}}}", self.account_tag, tenant.len());
        (kind, tag)
    }

    pub(crate) fn value(&self, key: &Read) -> String {
        let (kind, tag) = self.name(key);
        format!("{}{kind}:{tag}", self.base)
    }

    pub(crate) fn lock(&self, key: &Read) -> String {
        match self.name(key) {
            ("flow", tag) => format!("{}lock:{tag}", self.base),
            (kind, tag) => format!("{}lock:{kind}:{tag}", self.base),
        }
    }

    /// The index of `tenant`'s entries in the shared tier.
    pub(crate) fn index(&self, tenant: &TenantId) -> String {
        let tenant = tenant.as_str();
        format!(
            "{}index:{{{}:{}:{tenant}}}",
            self.base,
            self.account_tag,
            tenant.len()
        )
    }

    /// The number of the last purge of `tenant`'s entries: in the index's slot, so that the
    /// script that indexes an entry reads it too.
    pub(crate) fn purged(&self, tenant: &TenantId) -> String {
        let tenant = tenant.as_str();
        format!(
            "{}purged:{{{}:{}:{tenant}}}",
            self.base,
            self.account_tag,
            tenant.len()
        )
    }

    /// The names of the entries about one flow (GetFlow, its preview URL, its JSON asset).
    pub(crate) fn of_flow(&self, tenant: &TenantId, flow: &FlowId) -> [String; 3] {
        let read = |what: What| {
            self.value(&Read {
                tenant: tenant.clone(),
                what,
            })
        };
        [
            read(What::Flow(flow.clone())),
            read(What::PreviewUrl(flow.clone())),
            read(What::JsonAsset(flow.clone())),
        ]
    }

    /// Whether `name` is the name of a ListFlows page.
    pub(crate) fn is_list(&self, name: &str) -> bool {
        name.strip_prefix(self.base.as_str())
            .is_some_and(|rest| rest.starts_with("list:"))
    }

    /// How many purges the replicas of this account have made, a counter each purge moves on: a
    /// replica that subscribes again compares it with the last notice it heard.
    pub(crate) fn purges(&self) -> String {
        format!("{}purges:{{{}}}", self.base, self.account_tag)
    }

    /// This account's tag, which purge notices carry so that the replicas of another account
    /// sharing the Redis ignore them.
    pub(crate) fn account(&self) -> &str {
        &self.account_tag
    }

    /// The channel on which a released lock is announced (its key is the message).
    pub(crate) fn released_channel(&self) -> String {
        format!("{}released", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SharedKeys {
        SharedKeys {
            base: "p:v1:".into(),
            account_tag: "acct:0123".into(),
        }
    }

    fn query(tenant: &str, flow: &str) -> Read {
        Read::flow(
            TenantId::parse(tenant).expect("tenant"),
            FlowId::parse(flow).expect("flow"),
        )
    }

    #[test]
    fn entries_of_different_tenants_never_share_a_name() {
        let k = keys();
        assert_ne!(k.value(&query("a:b", "c")), k.value(&query("a", "b:c")));
        assert_eq!(k.value(&query("t", "f")), "p:v1:flow:{acct:0123:1:t:f}");
        assert_eq!(k.lock(&query("t", "f")), "p:v1:lock:{acct:0123:1:t:f}");
        let t = TenantId::parse("t").expect("tenant");
        assert_eq!(k.index(&t), "p:v1:index:{acct:0123:1:t}");
        assert_ne!(
            k.index(&TenantId::parse("a:1:b").expect("tenant")),
            k.index(&TenantId::parse("a").expect("tenant")),
        );
    }

    #[test]
    fn a_flows_entries_and_the_list_pages_are_known_by_name() {
        let k = keys();
        let t = TenantId::parse("t").expect("tenant");
        let f = FlowId::parse("f").expect("flow");
        assert_eq!(
            k.of_flow(&t, &f),
            [
                "p:v1:flow:{acct:0123:1:t:f}".to_owned(),
                "p:v1:preview:{acct:0123:1:t:f}".to_owned(),
                "p:v1:asset:{acct:0123:1:t:f}".to_owned(),
            ]
        );
        let page = Read {
            tenant: t,
            what: What::List(crate::domain::ListPage {
                flow_name: "flow:".into(),
                index: 1,
                size: 20,
            }),
        };
        assert!(k.is_list(&k.value(&page)));
        assert!(!k.is_list(&k.value(&query("t", "list:"))));
    }

    #[test]
    fn reads_of_different_kinds_never_share_a_name() {
        let k = keys();
        let tenant = || TenantId::parse("t").expect("tenant");
        let id = || FlowId::parse("f").expect("flow");
        let reads = [
            query("t", "f"),
            Read {
                tenant: tenant(),
                what: What::PreviewUrl(id()),
            },
            Read {
                tenant: tenant(),
                what: What::JsonAsset(id()),
            },
            Read {
                tenant: tenant(),
                what: What::List(crate::domain::ListPage {
                    flow_name: "a:1".into(),
                    index: 2,
                    size: 20,
                }),
            },
            Read {
                tenant: tenant(),
                what: What::List(crate::domain::ListPage {
                    flow_name: "a".into(),
                    index: 1,
                    size: 220,
                }),
            },
        ];
        let values: std::collections::HashSet<_> = reads.iter().map(|r| k.value(r)).collect();
        let locks: std::collections::HashSet<_> = reads.iter().map(|r| k.lock(r)).collect();
        assert_eq!(values.len(), reads.len(), "{values:?}");
        assert_eq!(locks.len(), reads.len(), "{locks:?}");
        assert_eq!(
            k.value(&reads[1]),
            "p:v1:preview:{acct:0123:1:t:f}",
            "the kind stands outside the hash tag"
        );
    }
}
