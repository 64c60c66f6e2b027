//! Where the shared tier keeps an entry and its fetch lock in Redis. One name per (account,
//! tenant, flow), used by the tier and the lock alike:
//! `<prefix>:v1:flow:{<account>:<tenant length>:<tenant>:<flow id>}` for the value,
//! `<prefix>:v1:lock:{…}` for the lock. The braces make the name a hash tag (in a Redis Cluster
//! an entry and its lock share a slot); the tenant's length keeps the name unambiguous whatever
//! the ids contain, so tenants never share an entry, nor accounts.

use crate::{domain::FlowQuery, store::Redis};

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

    fn name(&self, key: &FlowQuery) -> String {
        let tenant = key.tenant.as_str();
        format!(
            "{{{}:{}:{tenant}:{}}}",
            self.account_tag,
            tenant.len(),
            key.flow_id.as_str()
        )
    }

    pub(crate) fn value(&self, key: &FlowQuery) -> String {
        format!("{}flow:{}", self.base, self.name(key))
    }

    pub(crate) fn lock(&self, key: &FlowQuery) -> String {
        format!("{}lock:{}", self.base, self.name(key))
    }

    /// The channel on which a released lock is announced (its key is the message).
    pub(crate) fn released_channel(&self) -> String {
        format!("{}released", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FlowId, TenantId};

    fn keys() -> SharedKeys {
        SharedKeys {
            base: "p:v1:".into(),
            account_tag: "acct:0123".into(),
        }
    }

    fn query(tenant: &str, flow: &str) -> FlowQuery {
        FlowQuery {
            tenant: TenantId::parse(tenant).expect("tenant"),
            flow_id: FlowId::parse(flow).expect("flow"),
        }
    }

    #[test]
    fn entries_of_different_tenants_never_share_a_name() {
        let k = keys();
        assert_ne!(k.value(&query("a:b", "c")), k.value(&query("a", "b:c")));
        assert_eq!(k.value(&query("t", "f")), "p:v1:flow:{acct:0123:1:t:f}");
        assert_eq!(k.lock(&query("t", "f")), "p:v1:lock:{acct:0123:1:t:f}");
    }
}
